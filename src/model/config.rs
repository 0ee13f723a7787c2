//! Model hyper-parameters from GGUF metadata (architecture `llama`).

use serde::Serialize;

use crate::gguf::{Gguf, GgufError};

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
    pub rms_eps: f32,
    /// No `output.weight`: the output projection reuses `token_embd.weight`.
    pub tied_embeddings: bool,
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
        if n_embd % n_head != 0 {
            return Err(GgufError::new(format!(
                "llama.embedding_length {n_embd} is not divisible by llama.attention.head_count {n_head}"
            )));
        }
        if n_head % n_head_kv != 0 {
            return Err(GgufError::new(format!(
                "llama.attention.head_count {n_head} is not a multiple of llama.attention.head_count_kv {n_head_kv}"
            )));
        }
        let head_dim = match g.opt_u64("llama.attention.key_length")? {
            Some(k) if k as usize != n_embd / n_head => {
                return Err(GgufError::new(format!(
                    "llama.attention.key_length {k} differs from embedding_length / head_count = {} (not supported)",
                    n_embd / n_head
                )))
            }
            _ => n_embd / n_head,
        };
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
        let scaling = g.opt_str("llama.rope.scaling.type")?.unwrap_or("none");
        let rope_freq_scale = match scaling {
            "none" => match g.opt_f32("llama.rope.scale_linear")? {
                Some(f) if f > 0.0 => 1.0 / f,
                _ => 1.0,
            },
            "linear" => {
                let f = g.get_f32("llama.rope.scaling.factor")?;
                if !(f > 0.0 && f.is_finite()) {
                    return Err(GgufError::new(format!("llama.rope.scaling.factor {f} must be positive")));
                }
                1.0 / f
            }
            other => {
                return Err(GgufError::new(format!(
                    "unsupported RoPE scaling type '{other}' (llama.rope.scaling.type; supported: none, linear)"
                )))
            }
        };
        if g.tensor("rope_freqs.weight").is_some() {
            return Err(GgufError::new(
                "tensor 'rope_freqs.weight' (Llama 3.1 RoPE frequency factors) is not supported",
            ));
        }
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
            n_ctx_train: g.opt_u64("llama.context_length")?.unwrap_or(2048) as usize,
            rope_freq_base: g.opt_f32("llama.rope.freq_base")?.unwrap_or(10000.0),
            rope_freq_scale,
            rope_dim,
            rms_eps: g
                .opt_f32("llama.attention.layer_norm_rms_epsilon")?
                .unwrap_or(1e-5),
            tied_embeddings: g.tensor("output.weight").is_none(),
        };
        Ok(cfg)
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
