//! `config.json` of a Llama-architecture Hugging Face model, as GGUF `llama.*` metadata.
//!
//! Keys and defaults follow transformers' `LlamaConfig` (a missing optional
//! key means the transformers default); the GGUF keys are the ones llama.cpp's
//! `convert_hf_to_gguf.py` writes. Transformers 5 moved RoPE settings from
//! `rope_theta` / `rope_scaling` into one `rope_parameters` object; both are read.

use std::path::Path;

use serde_json::Value as Json;

use super::HfError;
use crate::gguf::Value;

/// Architectures whose weights and forward pass are Llama's.
const SUPPORTED: &[&str] = &["LlamaForCausalLM", "MistralForCausalLM"];

#[derive(Clone, Debug, PartialEq)]
pub struct HfConfig {
    pub architecture: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    /// Linear RoPE scaling factor (`None`: no scaling).
    pub rope_linear_factor: Option<f32>,
    /// YaRN, dynamic or llama3 scaling (`None` for none or linear).
    pub rope_scaling: Option<HfRope>,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
}

/// The RoPE scalings of transformers' `rope_type` beyond linear.
#[derive(Clone, Debug, PartialEq)]
pub enum HfRope {
    Yarn {
        factor: f32,
        orig_ctx: usize,
        /// transformers' `attention_factor` (default `0.1 ln(factor) + 1`).
        attention_factor: Option<f32>,
        beta_fast: Option<f32>,
        beta_slow: Option<f32>,
    },
    Dynamic {
        factor: f32,
    },
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        orig_ctx: usize,
    },
}

impl HfConfig {
    pub fn read(path: &Path) -> Result<HfConfig, HfError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| HfError::file(path, format!("cannot read: {e}")))?;
        let json: Json = serde_json::from_str(&text)
            .map_err(|e| HfError::file(path, format!("invalid JSON: {e}")))?;
        HfConfig::from_json(&json).map_err(|m| HfError::file(path, m))
    }

    pub fn from_json(c: &Json) -> Result<HfConfig, String> {
        let archs: Vec<&str> = c
            .get("architectures")
            .and_then(Json::as_array)
            .map(|a| a.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        let architecture = match archs.as_slice() {
            [a] if SUPPORTED.contains(a) => a.to_string(),
            [] => return Err("missing key 'architectures'".into()),
            other => {
                return Err(format!(
                    "unsupported architecture {} (supported: {})",
                    other.join(", "),
                    SUPPORTED.join(", ")
                ))
            }
        };
        let usize_key = |k: &str| -> Result<Option<usize>, String> {
            match c.get(k) {
                None | Some(Json::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .filter(|&x| x > 0 && x < 1 << 32)
                    .map(|x| Some(x as usize))
                    .ok_or_else(|| format!("key '{k}' should be a positive integer, found {v}")),
            }
        };
        let need = |k: &str| usize_key(k)?.ok_or_else(|| format!("missing key '{k}'"));
        let f32_key = |obj: &Json, k: &str| -> Result<Option<f32>, String> {
            match obj.get(k) {
                None | Some(Json::Null) => Ok(None),
                Some(v) => v
                    .as_f64()
                    .filter(|x| x.is_finite())
                    .map(|x| Some(x as f32))
                    .ok_or_else(|| format!("key '{k}' should be a number, found {v}")),
            }
        };
        let flag = |k: &str| c.get(k).and_then(Json::as_bool).unwrap_or(false);
        for k in ["attention_bias", "mlp_bias"] {
            if flag(k) {
                return Err(format!(
                    "'{k}': true is not supported (Llama without biases only)"
                ));
            }
        }
        if let Some(n) = usize_key("num_local_experts")? {
            return Err(format!(
                "mixture-of-experts models (num_local_experts {n}) are not supported"
            ));
        }
        if let Some(act) = c.get("hidden_act").and_then(Json::as_str) {
            if act != "silu" {
                return Err(format!("hidden_act '{act}' is not supported (silu only)"));
            }
        }

        let hidden_size = need("hidden_size")?;
        let num_attention_heads = need("num_attention_heads")?;
        let num_key_value_heads = usize_key("num_key_value_heads")?.unwrap_or(num_attention_heads);
        if num_attention_heads % num_key_value_heads != 0 {
            return Err(format!(
                "num_attention_heads {num_attention_heads} is not a multiple of num_key_value_heads {num_key_value_heads}"
            ));
        }
        // Mistral Nemo and Small 3 set a head_dim of their own (128, with
        // 5120 / 32 = 160); `null` means the quotient, as in transformers.
        let head_dim = match usize_key("head_dim")? {
            Some(d) if d > 1 << 16 => return Err(format!("head_dim {d} is too large")),
            Some(d) if d % 2 != 0 => return Err(format!("head_dim {d} is odd; RoPE needs pairs")),
            Some(d) => d,
            None if hidden_size % num_attention_heads != 0 => {
                return Err(format!(
                    "hidden_size {hidden_size} is not divisible by num_attention_heads {num_attention_heads}"
                ))
            }
            None => hidden_size / num_attention_heads,
        };

        // Transformers 5: {"rope_type", "rope_theta", "factor", ...}; 4: rope_theta + rope_scaling.
        let (rope_theta, scaling) = match c.get("rope_parameters").filter(|v| !v.is_null()) {
            Some(p) => (f32_key(p, "rope_theta")?, Some(p)),
            None => (
                f32_key(c, "rope_theta")?,
                c.get("rope_scaling").filter(|v| !v.is_null()),
            ),
        };
        let max_position_embeddings = usize_key("max_position_embeddings")?.unwrap_or(2048);
        let (mut rope_linear_factor, mut rope_scaling) = (None, None);
        if let Some(sc) = scaling {
            let ty = sc
                .get("rope_type")
                .or_else(|| sc.get("type"))
                .and_then(Json::as_str)
                .unwrap_or("default");
            let factor = || -> Result<f32, String> {
                let f = f32_key(sc, "factor")?
                    .ok_or(format!("RoPE scaling '{ty}' without 'factor'"))?;
                if f <= 0.0 {
                    return Err(format!("RoPE scaling factor {f} must be positive"));
                }
                Ok(f)
            };
            let orig = |default: usize| -> Result<usize, String> {
                match sc.get("original_max_position_embeddings") {
                    None | Some(Json::Null) => Ok(default),
                    Some(v) => v
                        .as_u64()
                        .filter(|&x| x > 0 && x < 1 << 32)
                        .map(|x| x as usize)
                        .ok_or_else(|| {
                            format!(
                                "original_max_position_embeddings {v} should be a positive integer"
                            )
                        }),
                }
            };
            match ty {
                "default" => {}
                "linear" => rope_linear_factor = Some(factor()?),
                "yarn" => {
                    let factor = factor()?;
                    rope_scaling = Some(HfRope::Yarn {
                        factor,
                        orig_ctx: orig(max_position_embeddings)?,
                        attention_factor: f32_key(sc, "attention_factor")?,
                        beta_fast: f32_key(sc, "beta_fast")?,
                        beta_slow: f32_key(sc, "beta_slow")?,
                    })
                }
                "dynamic" => rope_scaling = Some(HfRope::Dynamic { factor: factor()? }),
                "llama3" => {
                    let need = |k: &str| {
                        f32_key(sc, k)?.ok_or(format!("RoPE scaling 'llama3' without '{k}'"))
                    };
                    rope_scaling = Some(HfRope::Llama3 {
                        factor: factor()?,
                        low_freq_factor: need("low_freq_factor")?,
                        high_freq_factor: need("high_freq_factor")?,
                        orig_ctx: orig(8192)?,
                    })
                }
                other => {
                    return Err(format!(
                        "RoPE scaling type '{other}' is not supported (supported: default, linear, yarn, dynamic, llama3)"
                    ))
                }
            }
        }
        // Mistral 7B v0.1 attends to the last 4096 positions only; this
        // engine (as llama.cpp for these models) attends to all of them.
        if let Some(w) = usize_key("sliding_window")? {
            if w < max_position_embeddings {
                tracing::warn!("sliding_window {w}: attention beyond {w} positions will differ from the model's");
            }
        }
        let token = |k: &str| -> Option<u32> {
            match c.get(k) {
                Some(Json::Number(n)) => n.as_u64().map(|x| x as u32),
                // Some configs list several EOS ids; the first is the EOS token.
                Some(Json::Array(a)) => a.first().and_then(Json::as_u64).map(|x| x as u32),
                _ => None,
            }
        };
        Ok(HfConfig {
            architecture,
            hidden_size,
            intermediate_size: need("intermediate_size")?,
            num_hidden_layers: need("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            vocab_size: need("vocab_size")?,
            max_position_embeddings,
            rms_norm_eps: f32_key(c, "rms_norm_eps")?.unwrap_or(1e-6),
            rope_theta: rope_theta.unwrap_or(10000.0),
            rope_linear_factor,
            rope_scaling,
            tie_word_embeddings: c
                .get("tie_word_embeddings")
                .and_then(Json::as_bool)
                .unwrap_or(false),
            bos_token_id: token("bos_token_id"),
            eos_token_id: token("eos_token_id"),
        })
    }

    /// The `llama.*` keys llama.cpp's converter writes for this config.
    pub fn metadata(&self) -> Vec<(String, Value)> {
        let u = |x: usize| Value::U32(x as u32);
        let mut m = vec![
            ("llama.vocab_size".into(), u(self.vocab_size)),
            (
                "llama.context_length".into(),
                u(self.max_position_embeddings),
            ),
            ("llama.embedding_length".into(), u(self.hidden_size)),
            ("llama.block_count".into(), u(self.num_hidden_layers)),
            (
                "llama.feed_forward_length".into(),
                u(self.intermediate_size),
            ),
            ("llama.rope.dimension_count".into(), u(self.head_dim)),
            ("llama.attention.key_length".into(), u(self.head_dim)),
            ("llama.attention.value_length".into(), u(self.head_dim)),
            (
                "llama.attention.head_count".into(),
                u(self.num_attention_heads),
            ),
            (
                "llama.attention.head_count_kv".into(),
                u(self.num_key_value_heads),
            ),
            ("llama.rope.freq_base".into(), Value::F32(self.rope_theta)),
            (
                "llama.attention.layer_norm_rms_epsilon".into(),
                Value::F32(self.rms_norm_eps),
            ),
        ];
        if let Some(f) = self.rope_linear_factor {
            m.push((
                "llama.rope.scaling.type".into(),
                Value::String("linear".into()),
            ));
            m.push(("llama.rope.scaling.factor".into(), Value::F32(f)));
        }
        let kv = |k: &str, v: Value| (format!("llama.rope.scaling.{k}"), v);
        match &self.rope_scaling {
            None | Some(HfRope::Llama3 { .. }) => {} // llama3: the rope_freqs.weight tensor
            Some(HfRope::Yarn {
                factor,
                orig_ctx,
                attention_factor,
                beta_fast,
                beta_slow,
            }) => {
                m.push(kv("type", Value::String("yarn".into())));
                m.push(kv("factor", Value::F32(*factor)));
                m.push(kv("original_context_length", Value::U32(*orig_ctx as u32)));
                // The engine (as llama.cpp) multiplies the attention factor by
                // YaRN's own 1 + 0.1 ln(factor); transformers' value is the product.
                if let Some(a) = attention_factor {
                    let own = 1.0 + 0.1 * factor.ln();
                    m.push(kv("attn_factor", Value::F32(a / own)));
                }
                if let Some(b) = beta_fast {
                    m.push(kv("yarn_beta_fast", Value::F32(*b)));
                }
                if let Some(b) = beta_slow {
                    m.push(kv("yarn_beta_slow", Value::F32(*b)));
                }
            }
            Some(HfRope::Dynamic { factor }) => {
                m.push(kv("type", Value::String("dynamic".into())));
                m.push(kv("factor", Value::F32(*factor)));
                m.push(kv(
                    "original_context_length",
                    Value::U32(self.max_position_embeddings as u32),
                ));
            }
        }
        m
    }

    /// Llama 3.1's `rope_freqs.weight` values for a `llama3` config.
    pub fn rope_freq_factors(&self) -> Option<Vec<f32>> {
        match self.rope_scaling {
            Some(HfRope::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                orig_ctx,
            }) => Some(crate::model::rope::llama3_freq_factors(
                self.rope_theta as f64,
                self.head_dim,
                factor as f64,
                low_freq_factor as f64,
                high_freq_factor as f64,
                orig_ctx,
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Json {
        json!({
            "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": 100, "rope_theta": 500000.0
        })
    }

    fn err(f: impl Fn(&mut Json)) -> String {
        let mut c = base();
        f(&mut c);
        HfConfig::from_json(&c).unwrap_err()
    }

    #[test]
    fn rope_scalings_become_llama_cpp_keys() {
        let with = |p: Json| {
            let mut c = base();
            c["max_position_embeddings"] = json!(16384);
            c["rope_scaling"] = p;
            HfConfig::from_json(&c).unwrap()
        };
        let key = |c: &HfConfig, k: &str| {
            c.metadata()
                .into_iter()
                .find(|(n, _)| n == &format!("llama.rope.scaling.{k}"))
                .map(|(_, v)| v)
        };
        let y = with(json!({"rope_type": "yarn", "factor": 4.0,
            "original_max_position_embeddings": 4096, "attention_factor": 1.5}));
        assert_eq!(key(&y, "type"), Some(Value::String("yarn".into())));
        assert_eq!(key(&y, "original_context_length"), Some(Value::U32(4096)));
        let Some(Value::F32(a)) = key(&y, "attn_factor") else {
            panic!("no attn_factor")
        };
        assert!((a * (1.0 + 0.1 * 4f32.ln()) - 1.5).abs() < 1e-6);
        let d = with(json!({"type": "dynamic", "factor": 2.0}));
        assert_eq!(key(&d, "type"), Some(Value::String("dynamic".into())));
        assert_eq!(key(&d, "original_context_length"), Some(Value::U32(16384)));
        let l = with(
            json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
        );
        assert_eq!(key(&l, "type"), None);
        let f = l.rope_freq_factors().unwrap();
        assert_eq!(f.len(), l.head_dim / 2);
        assert_eq!(f[0], 1.0);
        assert_eq!(*f.last().unwrap(), 8.0);
    }

    #[test]
    fn reads_both_layouts_and_refuses_what_it_cannot_run() {
        let c = HfConfig::from_json(&base()).unwrap();
        assert_eq!(
            (c.head_dim, c.rope_theta, c.rope_linear_factor),
            (16, 500000.0, None)
        );
        let mut v5 = base();
        v5.as_object_mut().unwrap().remove("rope_theta");
        v5["rope_parameters"] = json!({"rope_type": "linear", "factor": 4.0, "rope_theta": 1e4});
        let c = HfConfig::from_json(&v5).unwrap();
        assert_eq!((c.rope_theta, c.rope_linear_factor), (1e4, Some(4.0)));
        assert!(
            err(|c| c["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0}))
                .contains("without 'low_freq_factor'")
        );
        assert!(
            err(|c| c["rope_scaling"] = json!({"rope_type": "longrope", "factor": 8.0}))
                .contains("'longrope' is not supported")
        );
        assert!(err(|c| c["attention_bias"] = json!(true)).contains("attention_bias"));
        assert!(
            err(|c| c["architectures"] = json!(["GemmaForCausalLM"])).contains("GemmaForCausalLM")
        );
        assert!(err(|c| c["head_dim"] = json!(31)).contains("head_dim 31 is odd"));
        assert!(err(|c| c["head_dim"] = json!(0)).contains("'head_dim'"));
        assert!(err(|c| c["num_key_value_heads"] = json!(3)).contains("not a multiple"));
        assert!(err(|c| {
            c.as_object_mut().unwrap().remove("vocab_size");
        })
        .contains("missing key 'vocab_size'"));
    }
}
