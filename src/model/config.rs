//! Model hyper-parameters from GGUF metadata (architecture `llama`).

use serde::Serialize;

use super::rope::RopeScaling;
use crate::gguf::{Gguf, GgufError};
use crate::quant::TensorType;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LlamaConfig {
    pub n_layer: usize,
    /// Embedding (residual stream) width.
    pub n_embd: usize,
    /// SwiGLU hidden width.
    pub n_ff: usize,
    pub n_head: usize,
    /// Key/value heads; fewer than `n_head` means grouped-query attention.
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_vocab: usize,
    /// Context length the model was trained with.
    pub n_ctx_train: usize,
    pub rope_freq_base: f32,
    /// Position multiplier for linear RoPE scaling (1 / scaling factor).
    pub rope_freq_scale: f32,
    /// Leading dimensions of each head that RoPE rotates.
    pub rope_dim: usize,
    /// YaRN or NTK-aware scaling on top of `rope_freq_scale`.
    pub rope_scaling: RopeScaling,
    /// Per-pair frequency divisors (Llama 3.1's `rope_freqs.weight`).
    pub rope_freq_factors: Option<Vec<f32>>,
    pub rms_eps: f32,
    /// No `output.weight`: the output projection reuses `token_embd.weight`.
    pub tied_embeddings: bool,
}

/// llama.cpp's RoPE flags: `--rope-freq-base`, `--rope-freq-scale`,
/// `--rope-scaling none|linear|yarn`, `--yarn-orig-ctx`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RopeOverrides {
    pub freq_base: Option<f32>,
    pub freq_scale: Option<f32>,
    pub scaling: Option<String>,
    pub yarn_orig_ctx: Option<usize>,
}

impl LlamaConfig {
    pub fn from_gguf(g: &Gguf) -> Result<LlamaConfig, GgufError> {
        let arch = g.get_str("general.architecture")?;
        if arch != "llama" {
            return Err(GgufError::new(format!(
                "unsupported model architecture '{arch}' (this engine runs 'llama')"
            )));
        }
        if g.opt_u64("llama.expert_count")?.unwrap_or(0) > 0 {
            return Err(GgufError::new(
                "mixture-of-experts llama models (llama.expert_count) are not supported",
            ));
        }
        let n_embd = g.get_u64("llama.embedding_length")? as usize;
        let n_head = g.get_u64("llama.attention.head_count")? as usize;
        let n_head_kv = g
            .opt_u64("llama.attention.head_count_kv")?
            .unwrap_or(n_head as u64) as usize;
        let positive = |key: &str, v: usize| {
            if v == 0 || v > 1 << 24 {
                Err(GgufError::new(format!(
                    "metadata key '{key}' has implausible value {v}"
                )))
            } else {
                Ok(v)
            }
        };
        let n_embd = positive("llama.embedding_length", n_embd)?;
        let n_head = positive("llama.attention.head_count", n_head)?;
        let n_head_kv = positive("llama.attention.head_count_kv", n_head_kv)?;
        if n_head % n_head_kv != 0 {
            return Err(GgufError::new(format!(
                "llama.attention.head_count {n_head} is not a multiple of llama.attention.head_count_kv {n_head_kv}"
            )));
        }
        // A head width of its own (Mistral Nemo, Mistral Small 3: 128 with
        // 5120 / 32 = 160): Q is n_head * head_dim wide, not n_embd.
        let head_dim = match g.opt_u64("llama.attention.key_length")? {
            Some(0) => return Err(GgufError::new("llama.attention.key_length is 0")),
            Some(k) => usize::try_from(k)
                .ok()
                .filter(|&k| k <= 1 << 16)
                .ok_or_else(|| {
                    GgufError::new(format!("llama.attention.key_length {k} is too large"))
                })?,
            None if n_embd % n_head != 0 => {
                return Err(GgufError::new(format!(
                    "llama.embedding_length {n_embd} is not divisible by llama.attention.head_count {n_head}"
                )))
            }
            None => n_embd / n_head,
        };
        match g.opt_u64("llama.attention.value_length")? {
            Some(v) if v != head_dim as u64 => {
                return Err(GgufError::new(format!(
                    "llama.attention.value_length {v} differs from key_length {head_dim} (not supported)"
                )))
            }
            _ => {}
        }
        if head_dim % 2 != 0 {
            return Err(GgufError::new(format!(
                "head dimension {head_dim} is odd; RoPE needs pairs"
            )));
        }
        let rope_dim = g
            .opt_u64("llama.rope.dimension_count")?
            .unwrap_or(head_dim as u64) as usize;
        if rope_dim > head_dim || rope_dim % 2 != 0 {
            return Err(GgufError::new(format!(
                "llama.rope.dimension_count {rope_dim} must be even and at most the head dimension {head_dim}"
            )));
        }
        let n_ctx_train = g.opt_u64("llama.context_length")?.unwrap_or(2048) as usize;
        let scaling = g.opt_str("llama.rope.scaling.type")?.unwrap_or("none");
        let factor = || -> Result<f32, GgufError> {
            let f = g.get_f32("llama.rope.scaling.factor")?;
            if !(f > 0.0 && f.is_finite()) {
                return Err(GgufError::new(format!(
                    "llama.rope.scaling.factor {f} must be positive"
                )));
            }
            Ok(f)
        };
        let (rope_freq_scale, rope_scaling) = match scaling {
            "none" => match g.opt_f32("llama.rope.scale_linear")? {
                Some(f) if f > 0.0 => (1.0 / f, RopeScaling::None),
                _ => (1.0, RopeScaling::None),
            },
            "linear" => (1.0 / factor()?, RopeScaling::None),
            "yarn" => {
                let key = |k: &str, default: f32| -> Result<f32, GgufError> {
                    let v = g.opt_f32(&format!("llama.rope.scaling.{k}"))?.unwrap_or(default);
                    if !v.is_finite() {
                        return Err(GgufError::new(format!(
                            "llama.rope.scaling.{k} {v} is not finite"
                        )));
                    }
                    Ok(v)
                };
                let orig_ctx = g
                    .opt_u64("llama.rope.scaling.original_context_length")?
                    .unwrap_or(n_ctx_train as u64) as usize;
                (
                    1.0 / factor()?,
                    RopeScaling::Yarn {
                        orig_ctx: orig_ctx.max(1),
                        ext_factor: key("yarn_ext_factor", 1.0)?,
                        attn_factor: key("attn_factor", 1.0)? * key("yarn_attn_factor", 1.0)?,
                        beta_fast: key("yarn_beta_fast", 32.0)?,
                        beta_slow: key("yarn_beta_slow", 1.0)?,
                    },
                )
            }
            // Not a llama.cpp type: what this engine writes for a Hugging
            // Face `rope_type: dynamic` folder (NTK-aware, see RopeScaling).
            "dynamic" => {
                let orig_ctx = g
                    .opt_u64("llama.rope.scaling.original_context_length")?
                    .unwrap_or(n_ctx_train as u64) as usize;
                (
                    1.0,
                    RopeScaling::Dynamic {
                        factor: factor()?,
                        orig_ctx: orig_ctx.max(1),
                    },
                )
            }
            other => {
                return Err(GgufError::new(format!(
                    "unsupported RoPE scaling type '{other}' (llama.rope.scaling.type; supported: none, linear, yarn, dynamic)"
                )))
            }
        };
        let rope_freq_factors = match g.tensor("rope_freqs.weight") {
            None => None,
            Some(t) => {
                if t.type_id != TensorType::F32.ggml_id() || t.n_elements() != (rope_dim / 2) as u64
                {
                    return Err(GgufError::new(format!(
                        "tensor 'rope_freqs.weight' should be {} F32 values (one per rotated pair), found {} of ggml type {}",
                        rope_dim / 2,
                        t.n_elements(),
                        t.type_id
                    )));
                }
                if !g.has_data() {
                    None
                } else {
                    let f: Vec<f32> = g
                        .tensor_data(t)
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    if f.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
                        return Err(GgufError::new(
                            "tensor 'rope_freqs.weight' holds a value that is not a positive number",
                        ));
                    }
                    Some(f)
                }
            }
        };
        let embd = g
            .tensor("token_embd.weight")
            .ok_or_else(|| GgufError::new("missing tensor 'token_embd.weight'"))?;
        let n_vocab = match g.opt_u64("llama.vocab_size")? {
            Some(v) => v as usize,
            None => embd.dims.get(1).copied().unwrap_or(0) as usize,
        };
        let cfg = LlamaConfig {
            n_layer: positive(
                "llama.block_count",
                g.get_u64("llama.block_count")? as usize,
            )?,
            n_embd,
            n_ff: positive(
                "llama.feed_forward_length",
                g.get_u64("llama.feed_forward_length")? as usize,
            )?,
            n_head,
            n_head_kv,
            head_dim,
            n_vocab: positive("llama.vocab_size", n_vocab)?,
            n_ctx_train,
            rope_freq_base: g.opt_f32("llama.rope.freq_base")?.unwrap_or(10000.0),
            rope_freq_scale,
            rope_dim,
            rope_scaling,
            rope_freq_factors,
            rms_eps: g
                .opt_f32("llama.attention.layer_norm_rms_epsilon")?
                .unwrap_or(1e-5),
            tied_embeddings: g.tensor("output.weight").is_none(),
        };
        Ok(cfg)
    }

    /// Applies llama.cpp's `--rope-*` / `--yarn-*` overrides.
    pub fn apply(&mut self, o: &RopeOverrides) -> Result<(), String> {
        if let Some(b) = o.freq_base {
            if !(b > 1.0 && b.is_finite()) {
                return Err(format!("--rope-freq-base {b} must be a number above 1"));
            }
            self.rope_freq_base = b;
        }
        let orig_ctx = o
            .yarn_orig_ctx
            .filter(|&n| n > 0)
            .unwrap_or(match self.rope_scaling {
                RopeScaling::Yarn { orig_ctx, .. } | RopeScaling::Dynamic { orig_ctx, .. } => {
                    orig_ctx
                }
                RopeScaling::None => self.n_ctx_train,
            });
        match o.scaling.as_deref() {
            None => {}
            Some("none") => {
                self.rope_scaling = RopeScaling::None;
                self.rope_freq_scale = 1.0;
            }
            Some("linear") => self.rope_scaling = RopeScaling::None,
            Some("yarn") if !matches!(self.rope_scaling, RopeScaling::Yarn { .. }) => {
                self.rope_scaling = RopeScaling::Yarn {
                    orig_ctx,
                    ext_factor: 1.0,
                    attn_factor: 1.0,
                    beta_fast: 32.0,
                    beta_slow: 1.0,
                };
            }
            Some("yarn") => {}
            Some(other) => {
                return Err(format!(
                    "--rope-scaling '{other}': expected none, linear or yarn"
                ))
            }
        }
        if let Some(s) = o.freq_scale {
            if !(s > 0.0 && s.is_finite()) {
                return Err(format!("--rope-freq-scale {s} must be positive"));
            }
            self.rope_freq_scale = s;
        }
        if let RopeScaling::Yarn { orig_ctx: oc, .. } = &mut self.rope_scaling {
            if o.yarn_orig_ctx.is_some_and(|n| n > 0) {
                *oc = orig_ctx;
            }
        }
        Ok(())
    }

    /// Width of the key (and value) projection: all KV heads side by side.
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// Query heads that share one KV head.
    pub fn gqa_group(&self) -> usize {
        self.n_head / self.n_head_kv
    }
}
