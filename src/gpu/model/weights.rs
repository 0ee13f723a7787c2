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
    /// `(n_head * head_dim, n_embd)`, `(kv_dim, n_embd)` twice, `(n_embd, n_head * head_dim)`.
    pub wq: GpuMatrix,
    pub wk: GpuMatrix,
    pub wv: GpuMatrix,
    pub wo: GpuMatrix,
    /// `(n_ff, n_embd)` twice, `(n_embd, n_ff)`.
    pub w_gate: GpuMatrix,
    pub w_up: GpuMatrix,
    pub w_down: GpuMatrix,
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
        let mut done = 0u64;
        // A header-only file (synthetic benchmark model) gets random weights
        // generated on the GPU, in the same buffers and layout.
        let seed = |name: &str| {
            name.bytes()
                .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619))
        };
        let mut matrix = |wt: &Weight| -> Result<GpuMatrix> {
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
            done += GpuMatrix::gpu_bytes(wt.ty, wt.rows(), wt.cols());
            progress(done, total_bytes);
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
        let token_embd = matrix(&w.token_embd)?;
        let mut layers = Vec::with_capacity(w.layers.len());
        for l in &w.layers {
            layers.push(LayerWeights {
                attn_norm: vector(&l.attn_norm)?,
                ffn_norm: vector(&l.ffn_norm)?,
                wq: matrix(&l.wq)?,
                wk: matrix(&l.wk)?,
                wv: matrix(&l.wv)?,
                wo: matrix(&l.wo)?,
                w_gate: matrix(&l.w_gate)?,
                w_up: matrix(&l.w_up)?,
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
