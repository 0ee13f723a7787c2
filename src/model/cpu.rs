//! The CPU reference forward pass: plain f32, written to be trusted by reading.
//!
//! Every GPU kernel and the whole GPU model are tested against this. It reads
//! like llama2.c's `forward`: per layer, norm, QKV, RoPE, attention, output,
//! residual, norm, SwiGLU, residual; then the final norm and the logits.

use crate::gguf::{Gguf, GgufError};
use crate::model::{LlamaConfig, ModelWeights, Rope, Weight};
use crate::quant::{dequantize_to_vec, TensorType};

/// A dense row-major f32 matrix: `rows` rows of `cols` values.
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    fn load(g: &Gguf, w: &Weight) -> Result<Matrix, GgufError> {
        if !g.has_data() {
            return Err(GgufError::new(format!(
                "tensor '{}': the model has shapes only (a synthetic header), no weights",
                w.name()
            )));
        }
        let data = dequantize_to_vec(w.ty, g.tensor_data(w.info), w.rows() * w.cols())
            .map_err(|e| GgufError::new(format!("tensor '{}': {e}", w.name())))?;
        Ok(Matrix {
            rows: w.rows(),
            cols: w.cols(),
            data,
        })
    }

    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: Matrix,
    wk: Matrix,
    wv: Matrix,
    wo: Matrix,
    ffn_norm: Vec<f32>,
    w_gate: Matrix,
    w_up: Matrix,
    w_down: Matrix,
}

/// All weights dequantized to f32 (fine for the small models tests use) plus a KV cache.
pub struct CpuModel {
    pub cfg: LlamaConfig,
    token_embd: Matrix,
    output_norm: Vec<f32>,
    /// `None` when tied to `token_embd`.
    output: Option<Matrix>,
    layers: Vec<Layer>,
    /// Per layer: `[position][kv_dim]`, grown one position per forward call.
    k_cache: Vec<Vec<f32>>,
    v_cache: Vec<Vec<f32>>,
    /// Round cached keys and values through f16, as the GPU stores them. Off by
    /// default (the reference is f32 throughout); tests turn it on to separate
    /// kernel error from storage precision.
    pub kv_f16: bool,
    /// Round cached keys (`.0`) and values (`.1`) through these block
    /// formats instead (Q8_0, Q4_0: the GPU's quantized cache types), with
    /// llama.cpp's reference quantizers.
    pub kv_quant: Option<(TensorType, TensorType)>,
    /// RoPE frequencies (for the context `set_context` last chose).
    rope: Rope,
}

impl CpuModel {
    pub fn load(g: &Gguf) -> Result<CpuModel, GgufError> {
        let cfg = LlamaConfig::from_gguf(g)?;
        let w = ModelWeights::resolve(g, &cfg)?;
        let vec = |w: &Weight| Matrix::load(g, w).map(|m| m.data);
        let layers = w
            .layers
            .iter()
            .map(|l| {
                Ok(Layer {
                    attn_norm: vec(&l.attn_norm)?,
                    wq: Matrix::load(g, &l.wq)?,
                    wk: Matrix::load(g, &l.wk)?,
                    wv: Matrix::load(g, &l.wv)?,
                    wo: Matrix::load(g, &l.wo)?,
                    ffn_norm: vec(&l.ffn_norm)?,
                    w_gate: Matrix::load(g, &l.w_gate)?,
                    w_up: Matrix::load(g, &l.w_up)?,
                    w_down: Matrix::load(g, &l.w_down)?,
                })
            })
            .collect::<Result<Vec<_>, GgufError>>()?;
        Ok(CpuModel {
            token_embd: Matrix::load(g, &w.token_embd)?,
            output_norm: vec(&w.output_norm)?,
            output: if cfg.tied_embeddings {
                None
            } else {
                Some(Matrix::load(g, &w.output)?)
            },
            k_cache: vec![Vec::new(); cfg.n_layer],
            v_cache: vec![Vec::new(); cfg.n_layer],
            kv_f16: false,
            kv_quant: None,
            rope: Rope::new(&cfg, cfg.n_ctx_train),
            layers,
            cfg,
        })
    }

    /// RoPE frequencies for a KV cache of `n_ctx` positions (only NTK-aware
    /// "dynamic" scaling depends on it), and llama.cpp's RoPE overrides.
    pub fn set_context(
        &mut self,
        n_ctx: usize,
        o: &crate::model::RopeOverrides,
    ) -> Result<(), String> {
        self.cfg.apply(o)?;
        self.rope = Rope::new(&self.cfg, n_ctx);
        Ok(())
    }

    /// Positions held in the KV cache.
    pub fn n_past(&self) -> usize {
        self.k_cache[0].len() / self.cfg.kv_dim()
    }

    /// Context shift as the GPU's: keeps the first `keep` positions, drops
    /// `discard` after them, and re-rotates the keys of the rest to their
    /// new positions (rounded again through the cache's type).
    pub fn shift(&mut self, keep: usize, discard: usize) {
        let (n, kv_dim, hd) = (self.n_past(), self.cfg.kv_dim(), self.cfg.head_dim);
        assert!(keep + discard <= n, "shift past the cached positions");
        for l in 0..self.cfg.n_layer {
            self.k_cache[l].drain(keep * kv_dim..(keep + discard) * kv_dim);
            self.v_cache[l].drain(keep * kv_dim..(keep + discard) * kv_dim);
            for p in keep..n - discard {
                let row = &mut self.k_cache[l][p * kv_dim..(p + 1) * kv_dim];
                for h in row.chunks_mut(hd) {
                    self.rope.rerotate(h, p + discard, p);
                }
                let rounded = match self.kv_quant {
                    Some((kt, _)) => round_through(kt, row),
                    None if self.kv_f16 => round_through(TensorType::F16, row),
                    None => continue,
                };
                row.copy_from_slice(&rounded);
            }
        }
    }

    pub fn reset(&mut self) {
        self.k_cache.iter_mut().for_each(Vec::clear);
        self.v_cache.iter_mut().for_each(Vec::clear);
    }

    /// Runs one token at the next position; returns the logits over the vocabulary.
    pub fn forward(&mut self, token: u32) -> Vec<f32> {
        let xb = self.forward_hidden(token);
        matvec(self.output.as_ref().unwrap_or(&self.token_embd), &xb)
    }

    /// Runs one token at the next position; returns its hidden state after
    /// the final norm (what the output projection reads: llama.cpp's
    /// embedding of the token).
    pub fn forward_hidden(&mut self, token: u32) -> Vec<f32> {
        let c = &self.cfg;
        let pos = self.n_past();
        let (hd, kv_dim) = (c.head_dim, c.kv_dim());
        let mut x = self.token_embd.row(token as usize).to_vec();

        for (l, layer) in self.layers.iter().enumerate() {
            // Attention block.
            let xb = rmsnorm(&x, &layer.attn_norm, c.rms_eps);
            let mut q = matvec(&layer.wq, &xb);
            let mut k = matvec(&layer.wk, &xb);
            let v = matvec(&layer.wv, &xb);
            for h in 0..c.n_head {
                self.rope.rotate(&mut q[h * hd..(h + 1) * hd], pos);
            }
            for h in 0..c.n_head_kv {
                self.rope.rotate(&mut k[h * hd..(h + 1) * hd], pos);
            }
            if let Some((kt, vt)) = self.kv_quant {
                self.k_cache[l].extend(round_through(kt, &k));
                self.v_cache[l].extend(round_through(vt, &v));
            } else if self.kv_f16 {
                let round = |x: &f32| half::f16::from_f32(*x).to_f32();
                self.k_cache[l].extend(k.iter().map(round));
                self.v_cache[l].extend(v.iter().map(round));
            } else {
                self.k_cache[l].extend_from_slice(&k);
                self.v_cache[l].extend_from_slice(&v);
            }

            let mut att_out = vec![0.0f32; c.n_head * hd];
            for h in 0..c.n_head {
                let kvh = h / c.gqa_group();
                let qh = &q[h * hd..(h + 1) * hd];
                let key = |p: usize| &self.k_cache[l][p * kv_dim + kvh * hd..][..hd];
                let val = |p: usize| &self.v_cache[l][p * kv_dim + kvh * hd..][..hd];
                let scale = 1.0 / (hd as f32).sqrt();
                let mut scores: Vec<f32> = (0..=pos).map(|p| dot(qh, key(p)) * scale).collect();
                softmax(&mut scores);
                let out = &mut att_out[h * hd..(h + 1) * hd];
                for (p, &s) in scores.iter().enumerate() {
                    for (o, &vv) in out.iter_mut().zip(val(p)) {
                        *o += s * vv;
                    }
                }
            }
            let proj = matvec(&layer.wo, &att_out);
            add(&mut x, &proj);

            // Feed-forward block (SwiGLU).
            let xb = rmsnorm(&x, &layer.ffn_norm, c.rms_eps);
            let gate = matvec(&layer.w_gate, &xb);
            let up = matvec(&layer.w_up, &xb);
            let hidden: Vec<f32> = gate.iter().zip(&up).map(|(&g, &u)| silu(g) * u).collect();
            let down = matvec(&layer.w_down, &hidden);
            add(&mut x, &down);
        }

        rmsnorm(&x, &self.output_norm, c.rms_eps)
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `y = W x` for a row-major `W` of shape `[rows][cols]`.
pub fn matvec(w: &Matrix, x: &[f32]) -> Vec<f32> {
    assert_eq!(w.cols, x.len());
    (0..w.rows).map(|r| dot(w.row(r), x)).collect()
}

pub fn rmsnorm(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let mean_sq = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let scale = 1.0 / (mean_sq + eps).sqrt();
    x.iter().zip(weight).map(|(v, w)| v * scale * w).collect()
}

/// `x` quantized to `ty` blocks and back (F16: rounded through f16).
pub fn round_through(ty: TensorType, x: &[f32]) -> Vec<f32> {
    if ty == TensorType::F16 {
        return x.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect();
    }
    let bytes = crate::quant::quantize(ty, x).expect("a cache row is whole blocks");
    dequantize_to_vec(ty, &bytes, x.len()).expect("just quantized")
}

pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    x.iter_mut().for_each(|v| *v /= sum);
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

fn add(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

/// Index of the largest value (the first one on ties, as llama.cpp's greedy sampler).
pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}
