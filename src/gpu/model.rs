//! The Llama forward pass on the GPU: buffers and dispatches built once at
//! load, one command buffer and one submission per token.
//!
//! Reads in the same order as the CPU reference (`model::cpu`): embedding;
//! per layer norm, Q/K/V, RoPE + KV store, attention, output projection with
//! the residual add fused in, norm, gate/up, SwiGLU, down (+ residual); final
//! norm, logits, then what the caller needs of them: the argmax (4 bytes read
//! back), the top k (8k bytes), or all of them.

use std::sync::Arc;

use anyhow::{bail, Context as _, Result};

use super::kernels::{Dispatch, Kernel, ATTN_CHUNK, ATTN_TILE_Q, MATMUL_TILE_T, WG};
use super::params::{AttnParams, CountParams, NormParams, RopeParams, Step, TopKParams};
use super::weights::{random_norm, GpuMatrix};
use super::Gpu;
use crate::gguf::Gguf;
use crate::model::{LlamaConfig, ModelWeights, Weight};
use crate::quant::dequantize_to_vec;

struct LayerOps {
    attn_norm: Dispatch,
    qkv: Vec<Dispatch>,
    rope_kv: Dispatch,
    /// Decode: partial + combine; batch: one tiled causal kernel.
    attention: Vec<Dispatch>,
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
    /// Most prompt tokens processed in one batched step (`--batch-size`);
    /// lowered if the device's binding limit requires it.
    pub n_batch: usize,
}

/// Default prompt-processing batch: weights are read once per this many tokens.
pub const DEFAULT_BATCH: usize = 64;

/// Largest k the GPU top-k serves; samplers needing more read all logits.
pub const MAX_TOP_K: usize = 1024;

impl LoadOptions {
    pub fn new(n_ctx: usize) -> LoadOptions {
        LoadOptions {
            n_ctx,
            n_batch: DEFAULT_BATCH,
        }
    }
}

pub struct GpuModel {
    pub gpu: Arc<Gpu>,
    pub cfg: LlamaConfig,
    pub n_ctx: usize,
    /// Prompt tokens per batched step.
    pub n_batch: usize,
    /// Batches shorter than this run as decode steps. 2 on GPUs (a batch
    /// reads the weights once, however short); 28 on CPU drivers such as
    /// lavapipe, where a matmul tile costs the same for 5 tokens as for 64:
    /// SmolLM2 there measured pp24 2.25 t/s and pp32 3.03 through the
    /// matmul against 2.62 t/s decode (docs/benchmarks.md). Tests lower it
    /// to exercise the batched kernels on short batches.
    pub min_batch: usize,
    n_past: usize,
    /// Bytes of weights on the GPU.
    pub weight_bytes: u64,
    pub kv_bytes: u64,
    embd_bytes: u64,
    embd_row_bytes: u64,
    step: wgpu::Buffer,
    /// Decode activations (one token) and prefill activations (`n_batch` tokens).
    one: Acts,
    batch: Acts,
    logits: wgpu::Buffer,
    /// `[n_batch][n_vocab]` logits of every prompt position, when asked for.
    batch_logits: wgpu::Buffer,
    staging: wgpu::Buffer,
    embed: Vec<Dispatch>,
    layers: Vec<LayerOps>,
    batch_embed: Vec<Dispatch>,
    batch_layers: Vec<LayerOps>,
    output_norm: Dispatch,
    output: Vec<Dispatch>,
    batch_output_norm: Dispatch,
    batch_output: Vec<Dispatch>,
    argmax: Dispatch,
    topk: Dispatch,
    topk_params: wgpu::Buffer,
    topk_out: wgpu::Buffer,
    // Kept alive for the bind groups and for inspection by tests.
    _matrices: Vec<GpuMatrix>,
}

/// Activation buffers for `n` tokens, each row padded to whole 32-element items.
struct Acts {
    n: usize,
    x: wgpu::Buffer,
    xb: wgpu::Buffer,
    q: wgpu::Buffer,
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    att: wgpu::Buffer,
    gate: wgpu::Buffer,
    up: wgpu::Buffer,
    tokens: wgpu::Buffer,
}

/// Floats per padded row.
fn pad(n: usize) -> usize {
    n.div_ceil(32) * 32
}

impl Acts {
    fn new(gpu: &Gpu, cfg: &LlamaConfig, n: usize) -> Acts {
        let buf = |label: &str, width: usize| gpu.storage(label, (n * pad(width) * 4) as u64);
        let q_dim = cfg.n_head * cfg.head_dim;
        Acts {
            n,
            x: buf("x", cfg.n_embd),
            xb: buf("xb", cfg.n_embd),
            q: buf("q", q_dim),
            k: buf("k", cfg.kv_dim()),
            v: buf("v", cfg.kv_dim()),
            att: buf("att", q_dim),
            gate: buf("gate", cfg.n_ff),
            up: buf("up", cfg.n_ff),
            tokens: gpu.storage("tokens", (n.max(4) * 4) as u64),
        }
    }
}

/// Rounds a vector length up to whole 32-element matvec items.
fn padded(n: usize) -> u64 {
    (n.div_ceil(32) * 32 * 4) as u64
}

/// Memory a model will take on the GPU, computed before uploading anything.
pub fn estimate_bytes(
    cfg: &LlamaConfig,
    w: &ModelWeights,
    n_ctx: usize,
    n_batch: usize,
) -> (u64, u64, u64) {
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
    // Activations for one token and for a prefill batch, logits (one token,
    // a batch, and the readback copy), decode attention partials.
    let acts = padded(cfg.n_embd) * 2
        + padded(cfg.n_head * cfg.head_dim) * 2
        + padded(cfg.kv_dim()) * 2
        + padded(cfg.n_ff) * 2;
    let scratch = acts * (1 + n_batch as u64)
        + (cfg.n_vocab * 4 * (1 + 2 * n_batch)) as u64
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
        if cfg.head_dim > 256 || cfg.head_dim % 8 != 0 {
            bail!(
                "head dimension {}: the attention kernels support multiples of 8 up to 256",
                cfg.head_dim
            );
        }
        let per_token_partials =
            (cfg.n_head * n_ctx.div_ceil(ATTN_CHUNK as usize) * cfg.head_dim * 4) as u64;
        if per_token_partials > gpu.max_binding {
            bail!(
                "a context of {n_ctx} needs {per_token_partials} bytes of attention scratch, more than the adapter's largest storage binding ({} bytes): use a smaller --ctx-size",
                gpu.max_binding
            );
        }
        // Every batch buffer (the widest: logits or the feed-forward
        // activations) must fit one binding.
        let per_token = (cfg.n_vocab.max(pad(cfg.n_ff)) * 4) as u64;
        let n_batch = opts
            .n_batch
            .clamp(1, ((gpu.max_binding / per_token.max(1)) as usize).max(1));
        let (weight_bytes, kv_bytes, scratch) = estimate_bytes(&cfg, &w, n_ctx, n_batch);
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
            n_batch,
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
        n_batch: usize,
        weight_bytes: u64,
        kv_bytes: u64,
        progress: &dyn Fn(u64, u64),
    ) -> Result<GpuModel> {
        let gpu_ref = &*gpu;
        let mut done = 0u64;
        // A header-only file (synthetic benchmark model) gets random weights
        // generated on the GPU, in the same buffers and layout.
        let seed = |name: &str| {
            name.bytes()
                .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619))
        };
        let mut upload = |wt: &Weight| -> Result<GpuMatrix> {
            let m = if g.has_data() {
                GpuMatrix::upload(
                    gpu_ref,
                    wt.name(),
                    wt.ty,
                    wt.rows(),
                    wt.cols(),
                    g.tensor_data(wt.info),
                )?
            } else {
                GpuMatrix::random(
                    gpu_ref,
                    wt.name(),
                    wt.ty,
                    wt.rows(),
                    wt.cols(),
                    seed(wt.name()),
                )?
            };
            done += GpuMatrix::gpu_bytes(wt.ty, wt.rows(), wt.cols());
            progress(done, weight_bytes);
            Ok(m)
        };
        let vector = |wt: &Weight| -> Result<wgpu::Buffer> {
            if !g.has_data() {
                return Ok(random_norm(gpu_ref, wt.name(), wt.cols(), seed(wt.name())));
            }
            let v = dequantize_to_vec(wt.ty, g.tensor_data(wt.info), wt.cols())
                .with_context(|| format!("tensor '{}'", wt.name()))?;
            Ok(gpu_ref.storage_init(wt.name(), bytemuck::cast_slice(&v)))
        };

        let one = Acts::new(&gpu, cfg, 1);
        let batch = Acts::new(&gpu, cfg, n_batch);
        let logits = gpu.storage("logits", (cfg.n_vocab * 4) as u64);
        let batch_logits = gpu.storage("batch logits", (n_batch * cfg.n_vocab * 4) as u64);
        let step = gpu.uniform(&Step {
            pos: 0,
            n_pos: 1,
            n_chunks: 1,
            _pad: 0,
        });
        let max_chunks = n_ctx.div_ceil(ATTN_CHUNK as usize);
        let hd = cfg.head_dim;
        // Decode attention's per-chunk results (prefill needs none).
        let att_partial = gpu.storage("attn partial", (cfg.n_head * max_chunks * hd * 4) as u64);
        let att_ml = gpu.storage("attn max/sum", (cfg.n_head * max_chunks * 8) as u64);
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: (n_batch * cfg.n_vocab * 4).max(MAX_TOP_K * 8) as u64,
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
        let (e_pad, q_pad, kv_pad, ff_pad) = (
            pad(cfg.n_embd),
            pad(cfg.n_head * hd),
            pad(cfg.kv_dim()),
            pad(cfg.n_ff),
        );
        let norm = |input: &wgpu::Buffer, weight: &wgpu::Buffer, out: &wgpu::Buffer| {
            let p = gpu.uniform(&NormParams {
                n: cfg.n_embd as u32,
                eps: cfg.rms_eps,
                stride: e_pad as u32,
                _pad: 0,
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
            q_stride: (q_pad / 2) as u32,
            kv_stride: (kv_pad / 2) as u32,
            _pad: [0; 2],
        });
        let attn_params = gpu.uniform(&AttnParams {
            n_head: cfg.n_head as u32,
            n_head_kv: cfg.n_head_kv as u32,
            head_dim: hd as u32,
            max_chunks: max_chunks as u32,
            scale: 1.0 / (hd as f32).sqrt(),
            q_stride: q_pad as u32,
            _pad: [0; 2],
        });
        // SwiGLU runs over whole padded rows (zero past n_ff stays zero).
        let ff_params = gpu.uniform(&CountParams {
            n: (n_batch * ff_pad) as u32,
            _pad: [0; 3],
        });
        // y (+)= W x for one token (matvec) or for a batch (matmul).
        let project = |m: &GpuMatrix,
                       a: &Acts,
                       x: &wgpu::Buffer,
                       x_pad: usize,
                       y: &wgpu::Buffer,
                       y_pad: usize,
                       acc: bool| {
            if a.n == 1 {
                m.matvec(&gpu, x, y, 0, acc)
            } else {
                m.matmul(&gpu, x, x_pad, y, y_pad, acc, a.n)
            }
        };

        let mut matrices = Vec::new();
        let token_embd = upload(&w.token_embd)?;
        let embed = token_embd.embedding(&gpu, &one.tokens, 0, &one.x, e_pad);
        let batch_embed = token_embd.embedding(&gpu, &batch.tokens, 0, &batch.x, e_pad);

        let mut layers = Vec::with_capacity(cfg.n_layer);
        let mut batch_layers = Vec::with_capacity(cfg.n_layer);
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
            for a in [&one, &batch] {
                let mut qkv = project(&wq, a, &a.xb, e_pad, &a.q, q_pad, false);
                qkv.extend(project(&wk, a, &a.xb, e_pad, &a.k, kv_pad, false));
                qkv.extend(project(&wv, a, &a.xb, e_pad, &a.v, kv_pad, false));
                let rope_kv = gpu.dispatch(
                    Kernel::RopeKv,
                    &[
                        a.q.as_entire_binding(),
                        a.k.as_entire_binding(),
                        a.v.as_entire_binding(),
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
                    a.q.as_entire_binding(),
                    kc.as_entire_binding(),
                    vc.as_entire_binding(),
                    att_partial.as_entire_binding(),
                    att_ml.as_entire_binding(),
                    a.att.as_entire_binding(),
                    attn_params.as_entire_binding(),
                    step.as_entire_binding(),
                ];
                let mut gate_up = project(&w_gate, a, &a.xb, e_pad, &a.gate, ff_pad, false);
                gate_up.extend(project(&w_up, a, &a.xb, e_pad, &a.up, ff_pad, false));
                let ops = LayerOps {
                    attn_norm: norm(&a.x, &attn_norm_w, &a.xb),
                    qkv,
                    rope_kv,
                    attention: if a.n == 1 {
                        vec![
                            gpu.dispatch(Kernel::AttnPartial, &attn_bindings, [1, 1, 1]),
                            gpu.dispatch(Kernel::AttnCombine, &attn_bindings, [1, 1, 1]),
                        ]
                    } else {
                        vec![gpu.dispatch(
                            Kernel::AttnTile {
                                head_dim: hd as u32,
                            },
                            &[
                                a.q.as_entire_binding(),
                                kc.as_entire_binding(),
                                vc.as_entire_binding(),
                                a.att.as_entire_binding(),
                                attn_params.as_entire_binding(),
                                step.as_entire_binding(),
                            ],
                            [1, 1, 1],
                        )]
                    },
                    wo: project(&wo, a, &a.att, q_pad, &a.x, e_pad, true),
                    ffn_norm: norm(&a.x, &ffn_norm_w, &a.xb),
                    gate_up,
                    swiglu: gpu.dispatch(
                        Kernel::Swiglu,
                        &[
                            a.gate.as_entire_binding(),
                            a.up.as_entire_binding(),
                            ff_params.as_entire_binding(),
                        ],
                        [1, 1, 1],
                    ),
                    down: project(&w_down, a, &a.gate, ff_pad, &a.x, e_pad, true),
                };
                if a.n == 1 {
                    layers.push(ops);
                } else {
                    batch_layers.push(ops);
                }
            }
            matrices.extend([wq, wk, wv, wo, w_gate, w_up, w_down]);
        }
        let output_norm_w = vector(&w.output_norm)?;
        let output_norm = norm(&one.x, &output_norm_w, &one.xb);
        let batch_output_norm = norm(&batch.x, &output_norm_w, &batch.xb);
        let out_m = if cfg.tied_embeddings {
            None
        } else {
            Some(upload(&w.output)?)
        };
        let out_ref = out_m.as_ref().unwrap_or(&token_embd);
        let output = out_ref.matvec(&gpu, &one.xb, &logits, 0, false);
        let batch_output = out_ref.matmul(
            &gpu,
            &batch.xb,
            e_pad,
            &batch_logits,
            cfg.n_vocab,
            false,
            n_batch,
        );
        matrices.extend(out_m);
        let embd_bytes =
            GpuMatrix::gpu_bytes(w.token_embd.ty, w.token_embd.rows(), w.token_embd.cols());
        matrices.push(token_embd);
        let argmax_params = gpu.uniform(&CountParams {
            n: cfg.n_vocab as u32,
            _pad: [0; 3],
        });
        let argmax = gpu.dispatch(
            Kernel::Argmax,
            &[
                logits.as_entire_binding(),
                one.tokens.as_entire_binding(),
                argmax_params.as_entire_binding(),
            ],
            [1, 1, 1],
        );
        let topk_params = gpu.uniform(&TopKParams {
            n: cfg.n_vocab as u32,
            k: 1,
            _pad: [0; 2],
        });
        let topk_out = gpu.storage("topk", (MAX_TOP_K * 8) as u64);
        let topk = gpu.dispatch(
            Kernel::TopK,
            &[
                logits.as_entire_binding(),
                topk_out.as_entire_binding(),
                topk_params.as_entire_binding(),
            ],
            [1, 1, 1],
        );
        Ok(GpuModel {
            gpu: gpu.clone(),
            cfg: cfg.clone(),
            n_ctx,
            n_batch,
            min_batch: if gpu.info.device_type == wgpu::DeviceType::Cpu {
                28
            } else {
                2
            },
            n_past: 0,
            weight_bytes,
            kv_bytes,
            embd_bytes,
            embd_row_bytes: embd_bytes / w.token_embd.rows() as u64,
            step,
            one,
            batch,
            logits,
            batch_logits,
            staging,
            embed,
            layers,
            batch_embed,
            batch_layers,
            output_norm,
            output,
            batch_output_norm,
            batch_output,
            argmax,
            topk,
            topk_params,
            topk_out,
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
    /// Checks the position, writes the token (if any) and the step uniform;
    /// returns the number of attention chunks for this position.
    fn prepare(&mut self, token: Option<u32>) -> Result<u32> {
        self.prepare_n(token, 1)
    }

    /// As [`Self::prepare`] for `t` tokens from the current position (the
    /// batch's token ids are written by the caller).
    fn prepare_n(&mut self, token: Option<u32>, t: usize) -> Result<u32> {
        let pos = self.n_past;
        if pos + t > self.n_ctx {
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
                .write_buffer(&self.one.tokens, 0, bytemuck::bytes_of(&t));
        }
        let n_pos = (pos + t) as u32;
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
        Ok(n_chunks)
    }

    /// Workgroup counts of a prepared dispatch for `t` tokens whose last
    /// position needs `n_chunks` attention chunks.
    fn groups(&self, d: &Dispatch, t: u32, n_chunks: u32) -> [u32; 3] {
        let heads = self.cfg.n_head as u32;
        match d.kernel {
            Kernel::Embedding { .. } => [d.groups[0], t, 1],
            Kernel::RmsNorm => [t, 1, 1],
            Kernel::Matmul { .. } => [d.groups[0], t.div_ceil(MATMUL_TILE_T), 1],
            Kernel::RopeKv => [d.groups[0], t, 1],
            // Attention grows with the context: one workgroup per 256 positions, head and token.
            Kernel::AttnPartial => [n_chunks, heads, t],
            Kernel::AttnCombine => [heads, t, 1],
            Kernel::AttnTile { .. } => [t.div_ceil(ATTN_TILE_Q), heads, 1],
            Kernel::Swiglu => [(t * pad(self.cfg.n_ff) as u32).div_ceil(WG), 1, 1],
            Kernel::Matvec { .. } | Kernel::Argmax | Kernel::TopK | Kernel::Fill => d.groups,
        }
    }

    /// The dispatches of one step, in order, with their workgroup counts: the
    /// single description of the forward pass that decoding, prefill and the
    /// profiler encode. `t` tokens from the current position; `t > 1` uses
    /// the batch (matmul) ops.
    fn dispatches(
        &self,
        t: usize,
        n_chunks: u32,
        logits: bool,
        argmax: bool,
    ) -> Vec<(&Dispatch, [u32; 3])> {
        let (embed, layers) = if t == 1 {
            (&self.embed, &self.layers)
        } else {
            (&self.batch_embed, &self.batch_layers)
        };
        let mut v: Vec<&Dispatch> = embed.iter().collect();
        for l in layers {
            v.push(&l.attn_norm);
            v.extend(&l.qkv);
            v.push(&l.rope_kv);
            v.extend(&l.attention);
            v.extend(&l.wo);
            v.push(&l.ffn_norm);
            v.extend(&l.gate_up);
            v.push(&l.swiglu);
            v.extend(&l.down);
        }
        if t == 1 && (logits || argmax) {
            v.push(&self.output_norm);
            v.extend(&self.output);
        }
        if t > 1 && logits {
            v.push(&self.batch_output_norm);
            v.extend(&self.batch_output);
        }
        if t == 1 && argmax {
            v.push(&self.argmax);
        }
        v.into_iter()
            .map(|d| (d, self.groups(d, t as u32, n_chunks)))
            .collect()
    }

    /// Records one token's forward pass into one compute pass. `token`: the
    /// input id, or `None` to use the id the previous step's argmax left on the GPU.
    fn record(
        &mut self,
        token: Option<u32>,
        logits: bool,
        argmax: bool,
    ) -> Result<wgpu::CommandEncoder> {
        let n_chunks = self.prepare(token)?;
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for (d, groups) in self.dispatches(1, n_chunks, logits, argmax) {
                d.encode_with(&mut pass, groups);
            }
        }
        self.n_past += 1;
        Ok(enc)
    }

    /// Runs one greedy decode step with every dispatch timed (see
    /// [`Profile`]). `token`: the input id, or `None` for the previous step's
    /// argmax.
    pub fn profile_decode(&mut self, token: Option<u32>) -> Result<Profile> {
        let n_chunks = self.prepare(token)?;
        let ops: Vec<Op> = self
            .dispatches(1, n_chunks, true, true)
            .into_iter()
            .map(|(d, g)| Op::Run(d, g))
            .collect();
        let p = self.time_ops(&ops);
        drop(ops);
        self.n_past += 1;
        p
    }

    /// Processes a prompt exactly as [`Self::prefill`] with a greedy head
    /// does (same chunks, same decode steps for short ones), with every
    /// dispatch timed; returns the sum over the prompt.
    pub fn profile_prefill(&mut self, tokens: &[u32]) -> Result<Profile> {
        self.check_prompt(tokens)?;
        let mut total = Profile::default();
        let chunks: Vec<&[u32]> = tokens.chunks(self.n_batch).collect();
        for (ci, chunk) in chunks.iter().enumerate() {
            let last = ci + 1 == chunks.len();
            let t = chunk.len();
            if t < self.min_batch {
                for &tok in chunk.iter() {
                    total.add(self.profile_decode(Some(tok))?);
                }
                continue;
            }
            self.gpu
                .queue
                .write_buffer(&self.batch.tokens, 0, bytemuck::cast_slice(chunk));
            let n_chunks = self.prepare_n(None, t)?;
            let mut ops: Vec<Op> = self
                .dispatches(t, n_chunks, false, false)
                .into_iter()
                .map(|(d, g)| Op::Run(d, g))
                .collect();
            if last {
                ops.push(Op::LastRowToDecode(t));
                ops.extend(
                    [&self.output_norm]
                        .into_iter()
                        .chain(&self.output)
                        .chain([&self.argmax])
                        .map(|d| Op::Run(d, d.groups)),
                );
            }
            let p = self.time_ops(&ops)?;
            drop(ops);
            total.add(p);
            self.n_past += t;
        }
        Ok(total)
    }

    /// Copies the hidden state of the last of `t` batch positions to the
    /// decode head's input (only the last position's logits are computed).
    fn copy_last_row(&self, enc: &mut wgpu::CommandEncoder, t: usize) {
        let e_row = (pad(self.cfg.n_embd) * 4) as u64;
        enc.copy_buffer_to_buffer(&self.batch.x, (t as u64 - 1) * e_row, &self.one.x, 0, e_row);
    }

    /// Runs `ops` with each dispatch timed. With timestamp queries, each
    /// dispatch gets its own compute pass with begin/end timestamps (so
    /// passes, not the normal single pass, are timed: a small per-pass
    /// overhead is included). Without them, each dispatch is submitted alone
    /// and timed on the CPU up to completion, which includes submission
    /// latency and is only a rough guide.
    fn time_ops(&self, ops: &[Op]) -> Result<Profile> {
        let mut p = Profile::default();
        let runs = ops.iter().filter(|o| matches!(o, Op::Run(..))).count();
        if self.gpu.features.timestamps {
            p.method = "GPU timestamp queries, one compute pass per dispatch";
            let n = (runs * 2) as u32;
            let qs = self.gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile"),
                ty: wgpu::QueryType::Timestamp,
                count: n,
            });
            let resolve = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile resolve"),
                size: n as u64 * 8,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let mut enc = self.gpu.device.create_command_encoder(&Default::default());
            let mut timed = Vec::new();
            for op in ops {
                match *op {
                    Op::Run(d, groups) => {
                        let i = timed.len() as u32;
                        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: None,
                            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                                query_set: &qs,
                                beginning_of_pass_write_index: Some(2 * i),
                                end_of_pass_write_index: Some(2 * i + 1),
                            }),
                        });
                        d.encode_with(&mut pass, groups);
                        timed.push(d.kernel.family());
                    }
                    Op::LastRowToDecode(t) => self.copy_last_row(&mut enc, t),
                }
            }
            enc.resolve_query_set(&qs, 0..n, &resolve, 0);
            self.gpu.queue.submit([enc.finish()]);
            let bytes = self.gpu.read_bytes(&resolve, n as u64 * 8)?;
            let ticks: &[u64] = bytemuck::cast_slice(&bytes);
            let period_ns = self.gpu.queue.get_timestamp_period() as f64;
            for (i, family) in timed.into_iter().enumerate() {
                let dt = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period_ns / 1e6;
                p.add_ms(family, dt);
            }
        } else {
            p.method =
                "CPU wall time per dispatch submitted alone (no timestamp queries on this adapter)";
            for op in ops {
                let t = std::time::Instant::now();
                let mut enc = self.gpu.device.create_command_encoder(&Default::default());
                match *op {
                    Op::Run(d, groups) => {
                        {
                            let mut pass = enc.begin_compute_pass(&Default::default());
                            d.encode_with(&mut pass, groups);
                        }
                        self.gpu.queue.submit([enc.finish()]);
                        self.gpu.wait()?;
                        p.add_ms(d.kernel.family(), t.elapsed().as_secs_f64() * 1e3);
                    }
                    Op::LastRowToDecode(t) => {
                        self.copy_last_row(&mut enc, t);
                        self.gpu.queue.submit([enc.finish()]);
                    }
                }
            }
        }
        Ok(p)
    }

    /// Runs one token and returns the logits (reads back the vocabulary's worth of floats).
    pub fn forward(&mut self, token: u32) -> Result<Vec<f32>> {
        let enc = self.record(Some(token), true, false)?;
        self.finish_head(enc, Head::Logits)?.into_logits()
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
        let enc = self.record(token, true, true)?;
        self.finish_head(enc, Head::Greedy)?.token()
    }

    /// Runs one token and returns the `k` largest logits with their ids, best
    /// first (ties: lower id first); reads back `8 k` bytes. `k` is at most
    /// [`MAX_TOP_K`] (and the vocabulary).
    pub fn forward_top_k(&mut self, token: u32, k: usize) -> Result<Vec<(u32, f32)>> {
        let enc = self.record(Some(token), true, false)?;
        self.finish_head(enc, Head::TopK(k))?.into_top_k()
    }

    /// Encodes what the caller wants of the logits in `self.logits` (already
    /// recorded into `enc`, argmax included for [`Head::Greedy`]), submits,
    /// and reads back only that.
    fn finish_head(&mut self, mut enc: wgpu::CommandEncoder, head: Head) -> Result<Output> {
        let (src, bytes) = match head {
            Head::Logits => (&self.logits, (self.cfg.n_vocab * 4) as u64),
            Head::Greedy => (&self.one.tokens, 4),
            Head::TopK(k) => {
                if k == 0 || k > MAX_TOP_K {
                    bail!("top-k of {k} asked of the GPU (1..={MAX_TOP_K})");
                }
                let k = k.min(self.cfg.n_vocab);
                self.gpu.queue.write_buffer(
                    &self.topk_params,
                    0,
                    bytemuck::bytes_of(&TopKParams {
                        n: self.cfg.n_vocab as u32,
                        k: k as u32,
                        _pad: [0; 2],
                    }),
                );
                let mut pass = enc.begin_compute_pass(&Default::default());
                self.topk.encode(&mut pass);
                drop(pass);
                (&self.topk_out, (k * 8) as u64)
            }
        };
        enc.copy_buffer_to_buffer(src, 0, &self.staging, 0, bytes);
        self.gpu.queue.submit([enc.finish()]);
        let raw = super::kernels::map_read(&self.gpu, &self.staging, bytes)?;
        match head {
            Head::Logits => Ok(Output::Logits(bytemuck::cast_slice(&raw).to_vec())),
            Head::Greedy => {
                let id = u32::from_le_bytes(raw[..4].try_into().expect("4 bytes"));
                if id as usize >= self.cfg.n_vocab {
                    bail!("the GPU produced no valid token (NaN logits?)");
                }
                Ok(Output::Token(id))
            }
            Head::TopK(_) => {
                let words: &[u32] = bytemuck::cast_slice(&raw);
                let mut top: Vec<(u32, f32)> = words
                    .chunks_exact(2)
                    .map(|c| (c[0], f32::from_bits(c[1])))
                    .collect();
                if top
                    .iter()
                    .any(|&(id, l)| id as usize >= self.cfg.n_vocab || l.is_nan())
                {
                    bail!("the GPU produced no valid top-k (NaN logits?)");
                }
                top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                Ok(Output::TopK(top))
            }
        }
    }

    /// A prompt must be non-empty, in the vocabulary, and fit the context.
    fn check_prompt(&self, tokens: &[u32]) -> Result<()> {
        if tokens.is_empty() {
            bail!("nothing to process");
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= self.cfg.n_vocab) {
            bail!(
                "token id {t} is outside the vocabulary (size {})",
                self.cfg.n_vocab
            );
        }
        if self.n_past + tokens.len() > self.n_ctx {
            bail!(
                "{} tokens do not fit in the context of {} ({} used)",
                tokens.len(),
                self.n_ctx,
                self.n_past
            );
        }
        Ok(())
    }

    /// Processes prompt tokens in batches of `n_batch` (weights read once per
    /// batch, causal attention within it). `out` says what to return: nothing,
    /// the logits of the last position or of every position
    /// (`tokens.len() x n_vocab`, perplexity), or, for the last position, the
    /// greedy token or the top k chosen on the GPU.
    pub fn prefill(&mut self, tokens: &[u32], out: BatchOutput) -> Result<Output> {
        self.check_prompt(tokens)?;
        let all_logits = out == BatchOutput::AllLogits;
        let head = match out {
            BatchOutput::None | BatchOutput::AllLogits => None,
            BatchOutput::LastLogits => Some(Head::Logits),
            BatchOutput::Greedy => Some(Head::Greedy),
            BatchOutput::TopK(k) => Some(Head::TopK(k)),
        };
        let mut all = Vec::new();
        let chunks: Vec<&[u32]> = tokens.chunks(self.n_batch).collect();
        for (ci, chunk) in chunks.iter().enumerate() {
            let last = ci + 1 == chunks.len();
            let t = chunk.len();
            if t < self.min_batch {
                // Too few tokens for the batched kernels to pay off on this
                // device (and a single token is a decode step anyway).
                for (i, &tok) in chunk.iter().enumerate() {
                    if all_logits {
                        all.extend(self.forward(tok)?);
                    } else if let (true, Some(head)) = (last && i + 1 == t, head) {
                        let enc = self.record(Some(tok), true, head == Head::Greedy)?;
                        return self.finish_head(enc, head);
                    } else {
                        self.feed(tok)?;
                    }
                }
                continue;
            }
            self.gpu
                .queue
                .write_buffer(&self.batch.tokens, 0, bytemuck::cast_slice(chunk));
            let n_chunks = self.prepare_n(None, t)?;
            let mut enc = self.gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                for (d, groups) in self.dispatches(t, n_chunks, all_logits, false) {
                    d.encode_with(&mut pass, groups);
                }
            }
            self.n_past += t;
            if let (true, Some(head)) = (last, head) {
                // Only the last position's logits: its hidden state goes through the decode head.
                self.copy_last_row(&mut enc, t);
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    for d in std::iter::once(&self.output_norm)
                        .chain(&self.output)
                        .chain((head == Head::Greedy).then_some(&self.argmax))
                    {
                        d.encode_with(&mut pass, d.groups);
                    }
                }
                return self.finish_head(enc, head);
            }
            if all_logits {
                let bytes = t as u64 * (self.cfg.n_vocab * 4) as u64;
                enc.copy_buffer_to_buffer(&self.batch_logits, 0, &self.staging, 0, bytes);
                self.gpu.queue.submit([enc.finish()]);
                let raw = super::kernels::map_read(&self.gpu, &self.staging, bytes)?;
                all.extend_from_slice(bytemuck::cast_slice(&raw));
            } else {
                self.gpu.queue.submit([enc.finish()]);
            }
        }
        Ok(if all_logits {
            Output::Logits(all)
        } else {
            Output::Nothing
        })
    }

    /// Processes a prompt and returns the greedy next token (4-byte readback).
    pub fn prefill_greedy(&mut self, tokens: &[u32]) -> Result<u32> {
        self.prefill(tokens, BatchOutput::Greedy)?.token()
    }
}

/// One step of a profiled run.
enum Op<'a> {
    Run(&'a Dispatch, [u32; 3]),
    /// See [`GpuModel::copy_last_row`] (untimed).
    LastRowToDecode(usize),
}

/// GPU milliseconds by kernel family, in order of first use, and how they
/// were measured.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    pub ms: Vec<(String, f64)>,
    pub method: &'static str,
}

impl Profile {
    fn add_ms(&mut self, family: String, ms: f64) {
        match self.ms.iter_mut().find(|(f, _)| *f == family) {
            Some(e) => e.1 += ms,
            None => self.ms.push((family, ms)),
        }
    }

    /// Adds another run's times (keeps the method of the last).
    pub fn add(&mut self, other: Profile) {
        for (f, ms) in other.ms {
            self.add_ms(f, ms);
        }
        self.method = other.method;
    }
}

/// What the decode head computes from one position's logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Head {
    Logits,
    Greedy,
    TopK(usize),
}

/// What a step returned to the CPU.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Nothing,
    Logits(Vec<f32>),
    Token(u32),
    /// `(id, logit)`, best first (ties: lower id first).
    TopK(Vec<(u32, f32)>),
}

impl Output {
    pub fn into_logits(self) -> Result<Vec<f32>> {
        match self {
            Output::Logits(l) => Ok(l),
            other => bail!("expected logits from the GPU step, got {other:?}"),
        }
    }

    pub fn token(self) -> Result<u32> {
        match self {
            Output::Token(t) => Ok(t),
            other => bail!("expected a token from the GPU step, got {other:?}"),
        }
    }

    pub fn into_top_k(self) -> Result<Vec<(u32, f32)>> {
        match self {
            Output::TopK(t) => Ok(t),
            other => bail!("expected top-k from the GPU step, got {other:?}"),
        }
    }
}

/// What a batched prompt step produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchOutput {
    /// Nothing (the KV cache is filled).
    None,
    /// The logits of the last position.
    LastLogits,
    /// The greedy token after the last position, chosen on the GPU.
    Greedy,
    /// The k largest logits of the last position, selected on the GPU.
    TopK(usize),
    /// The logits of every position (perplexity).
    AllLogits,
}
