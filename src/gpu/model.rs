//! The Llama forward pass on the GPU: buffers and dispatches built once at
//! load, one command buffer and one submission per token.
//!
//! Reads in the same order as the CPU reference (`model::cpu`): embedding;
//! per layer norm, Q/K/V, RoPE + KV store, attention, output projection with
//! the residual add fused in, norm, gate/up, SwiGLU, down (+ residual); final
//! norm, logits, argmax.

use std::sync::Arc;

use anyhow::{bail, Context as _, Result};

use super::kernels::{Dispatch, Kernel, ATTN_CHUNK, WG};
use super::weights::GpuMatrix;
use super::Gpu;
use crate::gguf::Gguf;
use crate::model::{LlamaConfig, ModelWeights, Weight};
use crate::quant::dequantize_to_vec;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct NormParams {
    n: u32,
    eps: f32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RopeParams {
    n_head: u32,
    n_head_kv: u32,
    half_dim: u32,
    rope_pairs: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AttnParams {
    n_head: u32,
    n_head_kv: u32,
    head_dim: u32,
    max_chunks: u32,
    scale: f32,
    _pad: [u32; 3],
}

/// Per-token values, written once before each submission.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Step {
    pos: u32,
    n_pos: u32,
    n_chunks: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CountParams {
    n: u32,
    _pad: [u32; 3],
}

struct LayerOps {
    attn_norm: Dispatch,
    qkv: Vec<Dispatch>,
    rope_kv: Dispatch,
    attn_partial: Dispatch,
    attn_combine: Dispatch,
    wo: Vec<Dispatch>,
    ffn_norm: Dispatch,
    gate_up: Vec<Dispatch>,
    swiglu: Dispatch,
    down: Vec<Dispatch>,
}

/// Options for loading a model onto the GPU.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// KV cache length (positions).
    pub n_ctx: usize,
}

pub struct GpuModel {
    pub gpu: Arc<Gpu>,
    pub cfg: LlamaConfig,
    pub n_ctx: usize,
    n_past: usize,
    /// Bytes of weights on the GPU.
    pub weight_bytes: u64,
    pub kv_bytes: u64,
    embd_bytes: u64,
    embd_row_bytes: u64,
    step: wgpu::Buffer,
    tokens: wgpu::Buffer,
    logits: wgpu::Buffer,
    staging: wgpu::Buffer,
    embed: Vec<Dispatch>,
    layers: Vec<LayerOps>,
    output_norm: Dispatch,
    output: Vec<Dispatch>,
    argmax: Dispatch,
    // Kept alive for the bind groups and for inspection by tests.
    _matrices: Vec<GpuMatrix>,
}

/// Rounds a vector length up to whole 32-element matvec items.
fn padded(n: usize) -> u64 {
    (n.div_ceil(32) * 32 * 4) as u64
}

/// Memory a model will take on the GPU, computed before uploading anything.
pub fn estimate_bytes(cfg: &LlamaConfig, w: &ModelWeights, n_ctx: usize) -> (u64, u64, u64) {
    let mat = |w: &Weight| GpuMatrix::gpu_bytes(w.ty, w.rows(), w.cols());
    let mut weights = mat(&w.token_embd) + (cfg.n_embd * 4) as u64;
    if !cfg.tied_embeddings {
        weights += mat(&w.output);
    }
    for l in &w.layers {
        weights += [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]
            .iter()
            .map(|w| mat(w))
            .sum::<u64>()
            + (2 * cfg.n_embd * 4) as u64;
    }
    let kv = 2 * (cfg.n_layer * n_ctx * cfg.kv_dim() * 2) as u64;
    let max_chunks = n_ctx.div_ceil(ATTN_CHUNK as usize);
    let scratch = padded(cfg.n_embd) * 2
        + padded(cfg.n_head * cfg.head_dim) * 2
        + padded(cfg.kv_dim()) * 2
        + padded(cfg.n_ff) * 2
        + (cfg.n_vocab * 4 * 2) as u64
        + (cfg.n_head * max_chunks * (cfg.head_dim + 2) * 4) as u64
        + (n_ctx * cfg.rope_dim * 4) as u64;
    (weights, kv, scratch)
}

impl GpuModel {
    pub fn load(
        gpu: Arc<Gpu>,
        g: &Gguf,
        opts: &LoadOptions,
        progress: &dyn Fn(u64, u64),
    ) -> Result<GpuModel> {
        let cfg = LlamaConfig::from_gguf(g)?;
        let w = ModelWeights::resolve(g, &cfg)?;
        let n_ctx = opts.n_ctx;
        if n_ctx == 0 {
            bail!("context size must be at least 1");
        }
        if cfg.head_dim > 256 {
            bail!(
                "head dimension {} is larger than the attention kernel supports (256)",
                cfg.head_dim
            );
        }
        let (weight_bytes, kv_bytes, scratch) = estimate_bytes(&cfg, &w, n_ctx);
        let total = weight_bytes + kv_bytes + scratch;
        tracing::info!(
            "GPU memory needed: {:.1} MiB (weights {:.1}, KV cache {:.1}, scratch {:.1})",
            total as f64 / 1048576.0,
            weight_bytes as f64 / 1048576.0,
            kv_bytes as f64 / 1048576.0,
            scratch as f64 / 1048576.0
        );
        let kv_layer = (n_ctx * cfg.kv_dim() * 2) as u64;
        if kv_layer > gpu.max_binding {
            bail!(
                "KV cache of one layer ({kv_layer} bytes for a context of {n_ctx}) exceeds the adapter's largest storage binding ({} bytes): use a smaller --ctx-size",
                gpu.max_binding
            );
        }
        // Out-of-memory errors during upload are captured and reported with the estimate.
        let oom = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let model = Self::build(
            gpu.clone(),
            g,
            &cfg,
            &w,
            n_ctx,
            weight_bytes,
            kv_bytes,
            progress,
        );
        if let Some(e) = pollster::block_on(oom.pop()) {
            bail!(
                "the GPU '{}' ran out of memory loading the model: it needs about {:.2} GiB (weights {:.2} GiB, KV cache {:.2} GiB for a context of {n_ctx}); try a smaller --ctx-size or a smaller quantization ({e})",
                gpu.info.name,
                total as f64 / 1073741824.0,
                weight_bytes as f64 / 1073741824.0,
                kv_bytes as f64 / 1073741824.0
            );
        }
        model
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        gpu: Arc<Gpu>,
        g: &Gguf,
        cfg: &LlamaConfig,
        w: &ModelWeights,
        n_ctx: usize,
        weight_bytes: u64,
        kv_bytes: u64,
        progress: &dyn Fn(u64, u64),
    ) -> Result<GpuModel> {
        let gpu_ref = &*gpu;
        let mut done = 0u64;
        let mut upload = |wt: &Weight| -> Result<GpuMatrix> {
            let m = GpuMatrix::upload(
                gpu_ref,
                wt.name(),
                wt.ty,
                wt.rows(),
                wt.cols(),
                g.tensor_data(wt.info),
            )?;
            done += GpuMatrix::gpu_bytes(wt.ty, wt.rows(), wt.cols());
            progress(done, weight_bytes);
            Ok(m)
        };
        let vector = |wt: &Weight| -> Result<wgpu::Buffer> {
            let v = dequantize_to_vec(wt.ty, g.tensor_data(wt.info), wt.cols())
                .with_context(|| format!("tensor '{}'", wt.name()))?;
            Ok(gpu_ref.storage_init(wt.name(), bytemuck::cast_slice(&v)))
        };

        let hd = cfg.head_dim;
        let q_dim = cfg.n_head * hd;
        // Activations. Inputs of a matvec are padded to whole 32-element items and stay zero past their length.
        let x = gpu.storage("x", padded(cfg.n_embd));
        let xb = gpu.storage("xb", padded(cfg.n_embd));
        let q = gpu.storage("q", padded(q_dim));
        let k = gpu.storage("k", padded(cfg.kv_dim()));
        let v = gpu.storage("v", padded(cfg.kv_dim()));
        let att = gpu.storage("att", padded(q_dim));
        let gate = gpu.storage("gate", padded(cfg.n_ff));
        let up = gpu.storage("up", padded(cfg.n_ff));
        let logits = gpu.storage("logits", (cfg.n_vocab * 4) as u64);
        let tokens = gpu.storage("tokens", 16);
        let step = gpu.uniform(&Step {
            pos: 0,
            n_pos: 1,
            n_chunks: 1,
            _pad: 0,
        });
        let max_chunks = n_ctx.div_ceil(ATTN_CHUNK as usize);
        let att_partial = gpu.storage("attn partial", (cfg.n_head * max_chunks * hd * 4) as u64);
        let att_ml = gpu.storage("attn max/sum", (cfg.n_head * max_chunks * 8) as u64);
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: (cfg.n_vocab * 4).max(16) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });

        // cos/sin for every position, computed exactly as the CPU reference does.
        let pairs = cfg.rope_dim / 2;
        let mut table = Vec::with_capacity(n_ctx * pairs * 2);
        for pos in 0..n_ctx {
            for i in 0..pairs {
                let (sin, cos) = crate::model::cpu::rope_angle(cfg, pos, i).sin_cos();
                table.extend([cos, sin]);
            }
        }
        let rope_table = gpu.storage_init("rope cos/sin", bytemuck::cast_slice(&table));

        let norm = |input: &wgpu::Buffer, weight: &wgpu::Buffer, out: &wgpu::Buffer| {
            let p = gpu.uniform(&NormParams {
                n: cfg.n_embd as u32,
                eps: cfg.rms_eps,
                _pad: [0; 2],
            });
            gpu.dispatch(
                Kernel::RmsNorm,
                &[
                    input.as_entire_binding(),
                    weight.as_entire_binding(),
                    out.as_entire_binding(),
                    p.as_entire_binding(),
                ],
                [1, 1, 1],
            )
        };
        let rope_params = gpu.uniform(&RopeParams {
            n_head: cfg.n_head as u32,
            n_head_kv: cfg.n_head_kv as u32,
            half_dim: (hd / 2) as u32,
            rope_pairs: pairs as u32,
        });
        let attn_params = gpu.uniform(&AttnParams {
            n_head: cfg.n_head as u32,
            n_head_kv: cfg.n_head_kv as u32,
            head_dim: hd as u32,
            max_chunks: max_chunks as u32,
            scale: 1.0 / (hd as f32).sqrt(),
            _pad: [0; 3],
        });
        let ff_params = gpu.uniform(&CountParams {
            n: cfg.n_ff as u32,
            _pad: [0; 3],
        });

        let mut matrices = Vec::new();
        let token_embd = upload(&w.token_embd)?;
        let embed = token_embd.embedding(&gpu, &tokens, 0, &x);

        let mut layers = Vec::with_capacity(cfg.n_layer);
        for (li, lw) in w.layers.iter().enumerate() {
            let attn_norm_w = vector(&lw.attn_norm)?;
            let ffn_norm_w = vector(&lw.ffn_norm)?;
            let wq = upload(&lw.wq)?;
            let wk = upload(&lw.wk)?;
            let wv = upload(&lw.wv)?;
            let wo = upload(&lw.wo)?;
            let w_gate = upload(&lw.w_gate)?;
            let w_up = upload(&lw.w_up)?;
            let w_down = upload(&lw.w_down)?;
            let kc = gpu.storage(&format!("k cache {li}"), (n_ctx * cfg.kv_dim() * 2) as u64);
            let vc = gpu.storage(&format!("v cache {li}"), (n_ctx * cfg.kv_dim() * 2) as u64);

            let mut qkv = wq.matvec(&gpu, &xb, &q, 0, false);
            qkv.extend(wk.matvec(&gpu, &xb, &k, 0, false));
            qkv.extend(wv.matvec(&gpu, &xb, &v, 0, false));
            let rope_kv = gpu.dispatch(
                Kernel::RopeKv,
                &[
                    q.as_entire_binding(),
                    k.as_entire_binding(),
                    v.as_entire_binding(),
                    rope_table.as_entire_binding(),
                    kc.as_entire_binding(),
                    vc.as_entire_binding(),
                    rope_params.as_entire_binding(),
                    step.as_entire_binding(),
                ],
                [
                    ((cfg.n_head + cfg.n_head_kv) * hd / 2).div_ceil(WG as usize) as u32,
                    1,
                    1,
                ],
            );
            let attn_bindings = [
                q.as_entire_binding(),
                kc.as_entire_binding(),
                vc.as_entire_binding(),
                att_partial.as_entire_binding(),
                att_ml.as_entire_binding(),
                att.as_entire_binding(),
                attn_params.as_entire_binding(),
                step.as_entire_binding(),
            ];
            let attn_partial = gpu.dispatch(
                Kernel::AttnPartial,
                &attn_bindings,
                [1, cfg.n_head as u32, 1],
            );
            let attn_combine = gpu.dispatch(
                Kernel::AttnCombine,
                &attn_bindings,
                [cfg.n_head as u32, 1, 1],
            );
            let mut gate_up = w_gate.matvec(&gpu, &xb, &gate, 0, false);
            gate_up.extend(w_up.matvec(&gpu, &xb, &up, 0, false));
            let swiglu = gpu.dispatch(
                Kernel::Swiglu,
                &[
                    gate.as_entire_binding(),
                    up.as_entire_binding(),
                    ff_params.as_entire_binding(),
                ],
                [(cfg.n_ff as u32).div_ceil(WG), 1, 1],
            );
            layers.push(LayerOps {
                attn_norm: norm(&x, &attn_norm_w, &xb),
                qkv,
                rope_kv,
                attn_partial,
                attn_combine,
                wo: wo.matvec(&gpu, &att, &x, 0, true),
                ffn_norm: norm(&x, &ffn_norm_w, &xb),
                gate_up,
                swiglu,
                down: w_down.matvec(&gpu, &gate, &x, 0, true),
            });
            matrices.extend([wq, wk, wv, wo, w_gate, w_up, w_down]);
        }
        let output_norm_w = vector(&w.output_norm)?;
        let output_norm = norm(&x, &output_norm_w, &xb);
        let output = if cfg.tied_embeddings {
            token_embd.matvec(&gpu, &xb, &logits, 0, false)
        } else {
            let out_m = upload(&w.output)?;
            let d = out_m.matvec(&gpu, &xb, &logits, 0, false);
            matrices.push(out_m);
            d
        };
        matrices.push(token_embd);
        let argmax_params = gpu.uniform(&CountParams {
            n: cfg.n_vocab as u32,
            _pad: [0; 3],
        });
        let argmax = gpu.dispatch(
            Kernel::Argmax,
            &[
                logits.as_entire_binding(),
                tokens.as_entire_binding(),
                argmax_params.as_entire_binding(),
            ],
            [1, 1, 1],
        );
        let embd_bytes =
            GpuMatrix::gpu_bytes(w.token_embd.ty, w.token_embd.rows(), w.token_embd.cols());
        Ok(GpuModel {
            gpu: gpu.clone(),
            cfg: cfg.clone(),
            n_ctx,
            n_past: 0,
            weight_bytes,
            kv_bytes,
            embd_bytes,
            embd_row_bytes: embd_bytes / w.token_embd.rows() as u64,
            step,
            tokens,
            logits,
            staging,
            embed,
            layers,
            output_norm,
            output,
            argmax,
            _matrices: matrices,
        })
    }

    /// GPU bytes of the embedding matrix (a decode step reads one row of it,
    /// and all of it again as the output projection when embeddings are tied).
    pub fn token_embd_bytes(&self) -> u64 {
        self.embd_bytes
    }

    pub fn token_embd_row_bytes(&self) -> u64 {
        self.embd_row_bytes
    }

    /// Positions held in the KV cache.
    pub fn n_past(&self) -> usize {
        self.n_past
    }

    /// Forgets the context (the KV cache is overwritten from position 0).
    pub fn reset(&mut self) {
        self.n_past = 0;
    }

    /// Rewinds the context to `n` positions (keeps the first `n` KV entries).
    pub fn truncate(&mut self, n: usize) {
        self.n_past = self.n_past.min(n);
    }

    /// Records one token's forward pass. `token`: the input id, or `None` to
    /// use the id the previous step's argmax left on the GPU.
    fn record(
        &mut self,
        token: Option<u32>,
        logits: bool,
        argmax: bool,
    ) -> Result<wgpu::CommandEncoder> {
        let pos = self.n_past;
        if pos >= self.n_ctx {
            bail!("context full: {} positions (--ctx-size)", self.n_ctx);
        }
        if let Some(t) = token {
            if t as usize >= self.cfg.n_vocab {
                bail!(
                    "token id {t} is outside the vocabulary (size {})",
                    self.cfg.n_vocab
                );
            }
            self.gpu
                .queue
                .write_buffer(&self.tokens, 0, bytemuck::bytes_of(&t));
        }
        let n_pos = pos as u32 + 1;
        let n_chunks = n_pos.div_ceil(ATTN_CHUNK);
        self.gpu.queue.write_buffer(
            &self.step,
            0,
            bytemuck::bytes_of(&Step {
                pos: pos as u32,
                n_pos,
                n_chunks,
                _pad: 0,
            }),
        );
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            self.embed.iter().for_each(|d| d.encode(&mut pass));
            for l in &self.layers {
                l.attn_norm.encode(&mut pass);
                l.qkv.iter().for_each(|d| d.encode(&mut pass));
                l.rope_kv.encode(&mut pass);
                l.attn_partial
                    .encode_with(&mut pass, [n_chunks, self.cfg.n_head as u32, 1]);
                l.attn_combine.encode(&mut pass);
                l.wo.iter().for_each(|d| d.encode(&mut pass));
                l.ffn_norm.encode(&mut pass);
                l.gate_up.iter().for_each(|d| d.encode(&mut pass));
                l.swiglu.encode(&mut pass);
                l.down.iter().for_each(|d| d.encode(&mut pass));
            }
            if logits || argmax {
                self.output_norm.encode(&mut pass);
                self.output.iter().for_each(|d| d.encode(&mut pass));
            }
            if argmax {
                self.argmax.encode(&mut pass);
            }
        }
        self.n_past += 1;
        Ok(enc)
    }

    /// Runs one token and returns the logits (reads back the vocabulary's worth of floats).
    pub fn forward(&mut self, token: u32) -> Result<Vec<f32>> {
        let mut enc = self.record(Some(token), true, false)?;
        let size = (self.cfg.n_vocab * 4) as u64;
        enc.copy_buffer_to_buffer(&self.logits, 0, &self.staging, 0, size);
        self.gpu.queue.submit([enc.finish()]);
        let bytes = super::kernels::map_read(&self.gpu, &self.staging, size)?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }

    /// Runs one token without producing output (prompt tokens before the last).
    pub fn feed(&mut self, token: u32) -> Result<()> {
        let enc = self.record(Some(token), false, false)?;
        self.gpu.queue.submit([enc.finish()]);
        Ok(())
    }

    /// Runs one token and returns the greedy next token; reads back 4 bytes.
    /// `None` continues from the token the previous greedy step chose, without
    /// the CPU ever sending it back.
    pub fn forward_greedy(&mut self, token: Option<u32>) -> Result<u32> {
        let mut enc = self.record(token, true, true)?;
        enc.copy_buffer_to_buffer(&self.tokens, 0, &self.staging, 0, 4);
        self.gpu.queue.submit([enc.finish()]);
        let bytes = super::kernels::map_read(&self.gpu, &self.staging, 4)?;
        let t = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
        if t as usize >= self.cfg.n_vocab {
            bail!("the GPU produced no valid token (NaN logits?)");
        }
        Ok(t)
    }
}
