//! The model's weights on the GPU: uploaded once at load (or, for a
//! header-only synthetic model, generated there), immutable afterwards and
//! shared by every sequence.

use anyhow::{Context as _, Result};

use crate::gguf::Gguf;
use crate::gpu::weights::{random_norm, GpuMatrix};
use crate::gpu::Gpu;
use crate::model::{ModelWeights, Weight};
use crate::quant::dequantize_to_vec;

pub(crate) struct LayerWeights {
    /// `[n_embd]` f32.
    pub attn_norm: wgpu::Buffer,
    pub ffn_norm: wgpu::Buffer,
    pub qkv: Qkv,
    /// `(n_embd, n_head * head_dim)`.
    pub wo: GpuMatrix,
    pub gate_up: GateUp,
    /// `(n_embd, n_ff)`.
    pub w_down: GpuMatrix,
}

/// Q, K and V (`(n_head * head_dim, n_embd)`, `(kv_dim, n_embd)` twice): one
/// matrix of their rows one after the other when they have one type (one
/// matvec computes all three), else three.
pub(crate) enum Qkv {
    Fused(GpuMatrix),
    Separate([GpuMatrix; 3]),
}

/// Gate and up (`(n_ff, n_embd)` each): one matrix of their rows
/// interleaved (gate 0, up 0, gate 1, ...) when they have one type, so the
/// workgroup that computes a gate row also computes its up row and applies
/// SwiGLU; else two.
pub(crate) enum GateUp {
    Interleaved(GpuMatrix),
    Separate([GpuMatrix; 2]),
}

pub(crate) struct GpuWeights {
    /// `(n_vocab, n_embd)`; also the output projection when embeddings are tied.
    pub token_embd: GpuMatrix,
    pub layers: Vec<LayerWeights>,
    pub output_norm: wgpu::Buffer,
    /// `(n_vocab, n_embd)`, `None` when tied.
    pub output: Option<GpuMatrix>,
}

impl GpuWeights {
    pub fn output(&self) -> &GpuMatrix {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }

    pub fn load(
        gpu: &Gpu,
        g: &Gguf,
        w: &ModelWeights,
        tied: bool,
        total_bytes: u64,
        progress: &dyn Fn(u64, u64),
    ) -> Result<GpuWeights> {
        let done = std::cell::Cell::new(0u64);
        let add = |bytes: u64| {
            done.set(done.get() + bytes);
            progress(done.get(), total_bytes);
        };
        // A header-only file (synthetic benchmark model) gets random weights
        // generated on the GPU, in the same buffers and layout.
        let seed = |name: &str| {
            name.bytes()
                .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619))
        };
        let matrix = |wt: &Weight| -> Result<GpuMatrix> {
            let m = if g.has_data() {
                GpuMatrix::upload(
                    gpu,
                    wt.name(),
                    wt.ty,
                    wt.rows(),
                    wt.cols(),
                    g.tensor_data(wt.info),
                )?
            } else {
                GpuMatrix::random(gpu, wt.name(), wt.ty, wt.rows(), wt.cols(), seed(wt.name()))?
            };
            add(GpuMatrix::gpu_bytes(wt.ty, wt.rows(), wt.cols()));
            Ok(m)
        };
        let vector = |wt: &Weight| -> Result<wgpu::Buffer> {
            if !g.has_data() {
                return Ok(random_norm(gpu, wt.name(), wt.cols(), seed(wt.name())));
            }
            let v = dequantize_to_vec(wt.ty, g.tensor_data(wt.info), wt.cols())
                .with_context(|| format!("tensor '{}'", wt.name()))?;
            Ok(gpu.storage_init(wt.name(), bytemuck::cast_slice(&v)))
        };
        // Several tensors of one type as one matrix of their rows: taken in
        // turn, `group` rows at a time from each (all of a tensor's rows:
        // concatenated; 1: interleaved).
        let merged = |wts: &[&Weight], group: Option<usize>| -> Result<GpuMatrix> {
            let (ty, cols) = (wts[0].ty, wts[0].cols());
            let rows: usize = wts.iter().map(|w| w.rows()).sum();
            let name = wts.iter().map(|w| w.name()).collect::<Vec<_>>().join("+");
            let m = if g.has_data() {
                let row_bytes = ty.row_bytes(cols).expect("row length checked at load");
                let mut data = Vec::with_capacity(rows * row_bytes);
                match group {
                    None => {
                        for w in wts {
                            data.extend_from_slice(g.tensor_data(w.info));
                        }
                    }
                    Some(n) => {
                        let parts: Vec<&[u8]> = wts.iter().map(|w| g.tensor_data(w.info)).collect();
                        for r in (0..wts[0].rows()).step_by(n) {
                            for part in &parts {
                                data.extend_from_slice(&part[r * row_bytes..(r + n) * row_bytes]);
                            }
                        }
                    }
                }
                GpuMatrix::upload(gpu, &name, ty, rows, cols, &data)?
            } else {
                GpuMatrix::random(gpu, &name, ty, rows, cols, seed(&name))?
            };
            add(GpuMatrix::gpu_bytes(ty, rows, cols));
            Ok(m)
        };
        let same = |ws: &[&Weight]| {
            ws.iter()
                .all(|w| w.ty == ws[0].ty && w.cols() == ws[0].cols())
        };
        let token_embd = matrix(&w.token_embd)?;
        let mut layers = Vec::with_capacity(w.layers.len());
        for l in &w.layers {
            let qkv = [&l.wq, &l.wk, &l.wv];
            let gate_up = [&l.w_gate, &l.w_up];
            layers.push(LayerWeights {
                attn_norm: vector(&l.attn_norm)?,
                ffn_norm: vector(&l.ffn_norm)?,
                qkv: if same(&qkv) {
                    Qkv::Fused(merged(&qkv, None)?)
                } else {
                    Qkv::Separate([matrix(&l.wq)?, matrix(&l.wk)?, matrix(&l.wv)?])
                },
                wo: matrix(&l.wo)?,
                gate_up: if same(&gate_up) {
                    GateUp::Interleaved(merged(&gate_up, Some(1))?)
                } else {
                    GateUp::Separate([matrix(&l.w_gate)?, matrix(&l.w_up)?])
                },
                w_down: matrix(&l.w_down)?,
            });
        }
        let output_norm = vector(&w.output_norm)?;
        let output = if tied { None } else { Some(matrix(&w.output)?) };
        Ok(GpuWeights {
            token_embd,
            layers,
            output_norm,
            output,
        })
    }
}
