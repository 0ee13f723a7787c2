//! PEFT LoRA adapters (`adapter_config.json` + `adapter_model.safetensors`):
//! `W += s * B A` with `s = lora_alpha / r` (`/ sqrt(r)` with rsLoRA) times
//! `--lora-scale`, merged in f32 into the model's tensors by their GGUF
//! names, Q and K deltas permuted to the GGUF RoPE layout as their weights are.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::safetensors::{open_file, StTensor};
use super::{gguf_name, permute_rows, HfError};
use crate::gguf::Gguf;
use crate::quant::dequantize_to_vec;

/// One adapted matrix: `B` (rows x r) times `A` (r x cols).
pub struct Delta {
    a: Vec<f32>,
    b: Vec<f32>,
    rank: usize,
    rows: usize,
    cols: usize,
    scale: f32,
    /// Heads to permute the delta's rows by (Q and K), as the weight's were.
    permute_heads: Option<usize>,
}

impl Delta {
    /// `x += user_scale * scale * B A` (x in the model's, GGUF, row order).
    pub fn add_to(&self, x: &mut [f32], user_scale: f32) {
        let s = self.scale * user_scale;
        let mut d = vec![0f32; self.rows * self.cols];
        for (o, row) in d.chunks_exact_mut(self.cols).enumerate() {
            for k in 0..self.rank {
                let bk = self.b[o * self.rank + k] * s;
                let a = &self.a[k * self.cols..(k + 1) * self.cols];
                for (y, &av) in row.iter_mut().zip(a) {
                    *y += bk * av;
                }
            }
        }
        if let Some(heads) = self.permute_heads {
            let bytes: Vec<u8> = bytemuck::cast_slice(&d).to_vec();
            let p = permute_rows(&bytes, heads, self.cols * 4);
            d = bytemuck::pod_collect_to_vec(&p);
        }
        for (y, v) in x.iter_mut().zip(&d) {
            *y += v;
        }
    }
}

pub struct Adapter {
    pub dir: PathBuf,
    deltas: Vec<(String, Delta)>,
}

impl Adapter {
    pub fn delta_for(&self, gguf_name: &str) -> Option<&Delta> {
        self.deltas
            .iter()
            .find(|(n, _)| n == gguf_name)
            .map(|(_, d)| d)
    }

    /// Reads an adapter and checks it against the model it will be merged into.
    pub fn open(dir: &Path, base: &Gguf) -> Result<Adapter, HfError> {
        let cfg_path = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| {
            HfError::file(
                &cfg_path,
                format!(
                    "cannot read (is {} a PEFT adapter folder?): {e}",
                    dir.display()
                ),
            )
        })?;
        let cfg: Json = serde_json::from_str(&text)
            .map_err(|e| HfError::file(&cfg_path, format!("invalid JSON: {e}")))?;
        let bad = |m: String| HfError::file(&cfg_path, m);
        match cfg.get("peft_type").and_then(Json::as_str) {
            Some("LORA") => {}
            other => {
                return Err(bad(format!(
                    "peft_type {other:?} is not supported (LORA only)"
                )))
            }
        }
        let flag = |k: &str| cfg.get(k).and_then(Json::as_bool).unwrap_or(false);
        for k in ["use_dora", "fan_in_fan_out", "lora_bias", "use_bdlora"] {
            if flag(k) {
                return Err(bad(format!("'{k}': true is not supported")));
            }
        }
        for k in ["rank_pattern", "alpha_pattern"] {
            if cfg
                .get(k)
                .and_then(Json::as_object)
                .is_some_and(|m| !m.is_empty())
            {
                return Err(bad(format!("'{k}' (per-module ranks) is not supported")));
            }
        }
        for k in [
            "alora_invocation_tokens",
            "trainable_token_indices",
            "layer_replication",
        ] {
            if cfg.get(k).is_some_and(|v| !v.is_null()) {
                return Err(bad(format!("'{k}' is not supported")));
            }
        }
        if cfg
            .get("modules_to_save")
            .is_some_and(|m| !m.is_null() && m.as_array().is_none_or(|a| !a.is_empty()))
        {
            return Err(bad(
                "'modules_to_save' (fully trained modules) is not supported".into(),
            ));
        }
        let r = cfg
            .get("r")
            .and_then(Json::as_u64)
            .filter(|&r| r > 0)
            .ok_or_else(|| bad("missing or invalid key 'r'".into()))? as f32;
        let alpha = cfg
            .get("lora_alpha")
            .and_then(Json::as_f64)
            .ok_or_else(|| bad("missing key 'lora_alpha'".into()))? as f32;
        // Folders get renamed, so a different base name alone is only worth a
        // warning (once the shapes, which must agree, have been checked).
        let mismatch = match (
            cfg.get("base_model_name_or_path").and_then(Json::as_str),
            base.get_str("general.name"),
        ) {
            (Some(want), Ok(have)) => {
                let last = want
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or(want);
                (!last.eq_ignore_ascii_case(have))
                    .then(|| format!("trained on '{want}', not '{have}'"))
            }
            _ => None,
        };
        let another_base = format!(
            "an adapter for another base model{}",
            mismatch
                .as_ref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_else(|| "?".into())
        );
        let scale = if flag("use_rslora") {
            alpha / r.sqrt()
        } else {
            alpha / r
        };

        let st_path = dir.join("adapter_model.safetensors");
        if !st_path.exists() && dir.join("adapter_model.bin").exists() {
            return Err(HfError::file(
                dir,
                "has a PyTorch adapter_model.bin only; save the adapter as safetensors",
            ));
        }
        let tensors = open_file(&st_path)?;
        let n_head = base
            .get_u64("llama.attention.head_count")
            .map_err(|e| HfError::file(&st_path, e))? as usize;
        let n_head_kv = base
            .opt_u64("llama.attention.head_count_kv")
            .ok()
            .flatten()
            .map_or(n_head, |v| v as usize);
        let mut pairs: std::collections::BTreeMap<String, (Option<StTensor>, Option<StTensor>)> =
            Default::default();
        for (name, t) in tensors {
            let bad = |m: String| HfError::file(&st_path, m);
            let inner = name.strip_prefix("base_model.model.").unwrap_or(&name);
            let (module, which) = if let Some(m) = inner.strip_suffix(".lora_A.weight") {
                (m, 0)
            } else if let Some(m) = inner.strip_suffix(".lora_B.weight") {
                (m, 1)
            } else {
                return Err(bad(format!(
                    "tensor '{name}' is not a LoRA A or B matrix (only plain LoRA is supported)"
                )));
            };
            let entry = pairs.entry(module.to_string()).or_default();
            if which == 0 {
                entry.0 = Some(t);
            } else {
                entry.1 = Some(t);
            }
        }
        let mut deltas = Vec::new();
        for (module, (a, b)) in pairs {
            let bad = |m: String| HfError::file(&st_path, m);
            let (Some(a), Some(b)) = (a, b) else {
                return Err(bad(format!("'{module}' lacks its lora_A or lora_B matrix")));
            };
            let target = gguf_name(&format!("{module}.weight"))
                .ok()
                .flatten()
                .filter(|n| n.starts_with("blk."))
                .ok_or_else(|| {
                    bad(format!(
                        "'{module}' is not a Llama projection (q/k/v/o/gate/up/down_proj)"
                    ))
                })?;
            let info = base.tensor(&target).ok_or_else(|| {
                bad(format!(
                    "adapts '{module}', which the model does not have: {another_base}"
                ))
            })?;
            let (cols, rows) = (
                info.dims[0] as usize,
                info.dims.get(1).copied().unwrap_or(1) as usize,
            );
            let rank = a.shape[0];
            if a.shape.len() != 2
                || b.shape.len() != 2
                || a.shape[1] != cols
                || b.shape[0] != rows
                || b.shape[1] != rank
            {
                return Err(bad(format!(
                    "'{module}': lora_A {:?} and lora_B {:?} do not fit the model's [{rows}, {cols}] weight: {another_base}",
                    a.shape, b.shape
                )));
            }
            let load = |t: &StTensor| {
                dequantize_to_vec(t.ty, t.bytes.bytes(), t.shape.iter().product())
                    .expect("checked by safetensors")
            };
            let permute_heads = if target.ends_with("attn_q.weight") {
                Some(n_head)
            } else if target.ends_with("attn_k.weight") {
                Some(n_head_kv)
            } else {
                None
            };
            deltas.push((
                target,
                Delta {
                    a: load(&a),
                    b: load(&b),
                    rank,
                    rows,
                    cols,
                    scale,
                    permute_heads,
                },
            ));
        }
        if deltas.is_empty() {
            return Err(HfError::file(&st_path, "holds no LoRA matrices"));
        }
        if let Some(m) = mismatch {
            tracing::warn!("{}: adapter {m}", dir.display());
        }
        tracing::info!(
            "{}: {} adapted matrices, scale {scale}",
            dir.display(),
            deltas.len()
        );
        Ok(Adapter {
            dir: dir.to_path_buf(),
            deltas,
        })
    }
}
