//! Hugging Face checkpoints: a model folder (`config.json`, tokenizer files,
//! safetensors shards) becomes the same [`Gguf`] a llama.cpp conversion of it
//! would be: llama.cpp's metadata keys and tensor names, Q and K permuted to
//! GGUF's RoPE layout. Untouched weights stay in their memory-mapped
//! safetensors files; only permuted, merged or quantized tensors are owned.
//! LoRA adapters ([`lora`]) and quantization on load ([`transform`]) work on
//! any `Gguf`, so they apply to GGUF bases too, and `convert` is this model
//! written out.

mod config;
pub mod lora;
mod rope;
mod safetensors;
mod spm;
mod tokenizer;

use std::path::{Path, PathBuf};

pub use config::HfConfig;
pub use rope::permute_rows;

use crate::gguf::{Gguf, TensorBytes, TensorEntry, Value};
use crate::quant::{dequantize_to_vec, quantize, TensorType, QUANTIZE_TYPES};

/// A problem with a folder or adapter; the message starts with the file.
#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct HfError {
    msg: String,
}

impl HfError {
    pub fn file(path: &Path, msg: impl std::fmt::Display) -> HfError {
        HfError {
            msg: format!("{}: {msg}", path.display()),
        }
    }
}

/// What to do to a model while loading it.
#[derive(Clone, Debug, Default)]
pub struct LoadSpec {
    /// PEFT LoRA adapter folders, merged in order.
    pub lora: Vec<PathBuf>,
    /// Multiplies every adapter's `lora_alpha / r` (`None`: 1).
    pub lora_scale: Option<f32>,
    /// Quantize the float matrices to this type.
    pub quantize: Option<TensorType>,
}

/// The load options the model commands share (`--lora`, `--lora-scale`, `--quantize`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct LoadArgs {
    /// A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors)
    /// merged into the weights at load; repeat to stack several.
    #[arg(long, value_name = "DIR")]
    pub lora: Vec<PathBuf>,
    /// Multiplies each adapter's lora_alpha / r (default 1).
    #[arg(long, value_name = "S", requires = "lora")]
    pub lora_scale: Option<f32>,
    /// Quantize the weight matrices while loading: f16, bf16, q8_0, q4_0, q4_k, q6_k.
    #[arg(long, value_name = "TYPE", value_parser = parse_quant_type)]
    pub quantize: Option<TensorType>,
}

impl LoadArgs {
    pub fn spec(&self) -> LoadSpec {
        LoadSpec {
            lora: self.lora.clone(),
            lora_scale: self.lora_scale,
            quantize: self.quantize,
        }
    }
}

pub fn parse_quant_type(s: &str) -> Result<TensorType, String> {
    let names = || {
        QUANTIZE_TYPES
            .iter()
            .map(|t| t.name().to_lowercase())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match TensorType::from_name(s) {
        Some(t) if QUANTIZE_TYPES.contains(&t) => Ok(t),
        _ => Err(format!(
            "unknown or unsupported type '{s}' (supported: {})",
            names()
        )),
    }
}

/// Opens a model: a GGUF file or a Hugging Face folder, then merges the
/// adapters and quantizes as `spec` asks. Every command loads through here.
pub fn open(path: &Path, spec: &LoadSpec) -> anyhow::Result<Gguf> {
    if !path.exists() {
        anyhow::bail!("model file {} does not exist", path.display());
    }
    let g = if path.is_dir() {
        open_folder(path)?
    } else {
        Gguf::open(path)?
    };
    Ok(transform(g, spec)?)
}

/// The GGUF name of a Hugging Face Llama tensor, `None` for tensors that are
/// not weights (`rotary_emb.inv_freq`, which transformers recomputes).
fn gguf_name(hf: &str) -> Result<Option<String>, String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Ok(Some(f.into()));
    }
    if hf.ends_with("rotary_emb.inv_freq") {
        return Ok(None);
    }
    let unknown = || format!("tensor '{hf}' is not part of a Llama model");
    let rest = hf.strip_prefix("model.layers.").ok_or_else(unknown)?;
    let (layer, part) = rest.split_once('.').ok_or_else(unknown)?;
    let layer: usize = layer.parse().map_err(|_| unknown())?;
    let part = part.strip_suffix(".weight").ok_or_else(|| {
        if part.ends_with(".bias") {
            format!("tensor '{hf}': biases are not supported")
        } else {
            unknown()
        }
    })?;
    let g = match part {
        "input_layernorm" => "attn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "post_attention_layernorm" => "ffn_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return Err(unknown()),
    };
    Ok(Some(format!("blk.{layer}.{g}.weight")))
}

/// The shape (PyTorch order) config.json implies for a GGUF tensor name.
fn expected_shape(cfg: &HfConfig, name: &str) -> Option<Vec<usize>> {
    let (e, q, kv, ff, v) = (
        cfg.hidden_size,
        cfg.num_attention_heads * cfg.head_dim,
        cfg.num_key_value_heads * cfg.head_dim,
        cfg.intermediate_size,
        cfg.vocab_size,
    );
    Some(match name {
        "token_embd.weight" | "output.weight" => vec![v, e],
        "output_norm.weight" => vec![e],
        _ => {
            let rest = name.strip_prefix("blk.")?;
            let (layer, part) = rest.split_once('.')?;
            if layer.parse::<usize>().ok()? >= cfg.num_hidden_layers {
                return None;
            }
            match part {
                "attn_norm.weight" | "ffn_norm.weight" => vec![e],
                "attn_q.weight" => vec![q, e],
                "attn_k.weight" | "attn_v.weight" => vec![kv, e],
                "attn_output.weight" => vec![e, q],
                "ffn_gate.weight" | "ffn_up.weight" => vec![ff, e],
                "ffn_down.weight" => vec![e, ff],
                _ => return None,
            }
        }
    })
}

/// The GGUF tensor names of a Llama model, in llama.cpp's order.
fn tensor_names(cfg: &HfConfig) -> Vec<String> {
    let mut names = vec!["token_embd.weight".to_string()];
    for i in 0..cfg.num_hidden_layers {
        for p in [
            "attn_norm",
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_norm",
            "ffn_gate",
            "ffn_up",
            "ffn_down",
        ] {
            names.push(format!("blk.{i}.{p}.weight"));
        }
    }
    names.push("output_norm.weight".into());
    if !cfg.tie_word_embeddings {
        names.push("output.weight".into());
    }
    names
}

/// A model folder as a GGUF model (see the module docs).
pub fn open_folder(dir: &Path) -> Result<Gguf, HfError> {
    let config_path = dir.join("config.json");
    if !config_path.exists() {
        return Err(HfError::file(
            dir,
            "is a directory without config.json (neither a GGUF file nor a Hugging Face model folder)",
        ));
    }
    let cfg = HfConfig::read(&config_path)?;
    let weights = safetensors::open_folder(dir)?;
    let mut by_name = std::collections::HashMap::new();
    for (hf, t) in weights {
        let Some(name) = gguf_name(&hf).map_err(|m| HfError::file(&t.file, m))? else {
            continue;
        };
        if name == "output.weight" && cfg.tie_word_embeddings {
            // Tied: the output projection is the embedding, as llama.cpp writes it.
            continue;
        }
        let want = expected_shape(&cfg, &name).ok_or_else(|| {
            HfError::file(
                &t.file,
                format!(
                    "tensor '{hf}' is beyond the {} layers of config.json",
                    cfg.num_hidden_layers
                ),
            )
        })?;
        if t.shape != want {
            return Err(HfError::file(
                &t.file,
                format!(
                    "tensor '{hf}' has shape {:?}, config.json implies {want:?}",
                    t.shape
                ),
            ));
        }
        by_name.insert(name, (hf, t));
    }
    let mut tensors = Vec::new();
    for name in tensor_names(&cfg) {
        let (hf, t) = by_name.remove(&name).ok_or_else(|| {
            let hf = if name == "output.weight" {
                "lm_head.weight (config.json has tie_word_embeddings false)".to_string()
            } else {
                format!("the weight that becomes '{name}'")
            };
            HfError::file(dir, format!("the checkpoint has no {hf}"))
        })?;
        let _ = hf;
        let dims: Vec<u64> = t.shape.iter().rev().map(|&d| d as u64).collect();
        let bytes = if name.ends_with("attn_q.weight") || name.ends_with("attn_k.weight") {
            let heads = if name.ends_with("attn_q.weight") {
                cfg.num_attention_heads
            } else {
                cfg.num_key_value_heads
            };
            let row =
                t.ty.row_bytes(t.shape[1])
                    .expect("float types have no blocks");
            TensorBytes::owned(permute_rows(t.bytes.bytes(), heads, row))
        } else {
            t.bytes
        };
        // Norms in F32, as llama.cpp writes every 1-D tensor.
        let (ty, bytes) = if dims.len() == 1 && t.ty != TensorType::F32 {
            let x = dequantize_to_vec(t.ty, bytes.bytes(), dims[0] as usize)
                .expect("length checked by safetensors");
            (
                TensorType::F32,
                TensorBytes::owned(quantize(TensorType::F32, &x).expect("f32")),
            )
        } else {
            (t.ty, bytes)
        };
        tensors.push(TensorEntry {
            name,
            dims,
            ty,
            bytes,
        });
    }
    if let Some(f) = cfg.rope_freq_factors() {
        tensors.push(TensorEntry {
            name: "rope_freqs.weight".into(),
            dims: vec![f.len() as u64],
            ty: TensorType::F32,
            bytes: TensorBytes::owned(quantize(TensorType::F32, &f).expect("f32")),
        });
    }
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into());
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("general.name".into(), Value::String(name)),
    ];
    meta.extend(cfg.metadata());
    meta.push(("general.file_type".into(), Value::U32(file_type(&tensors))));
    meta.extend(tokenizer::metadata(dir, &cfg)?);
    Gguf::assemble(dir, meta, tensors).map_err(|e| HfError::file(dir, e))
}

/// llama.cpp's `general.file_type` for the type most matrices have.
fn file_type(tensors: &[TensorEntry]) -> u32 {
    let ty = tensors
        .iter()
        .find(|t| t.name.ends_with("attn_q.weight"))
        .map(|t| t.ty)
        .unwrap_or(TensorType::F32);
    match ty {
        TensorType::F32 => 0,
        TensorType::F16 => 1,
        TensorType::Q4_0 => 2,
        TensorType::Q4_1 => 3,
        TensorType::Q8_0 => 7,
        TensorType::Q5_0 => 8,
        TensorType::Q5_1 => 9,
        TensorType::Q2_K => 10,
        TensorType::Q3_K => 11,
        TensorType::Q4_K => 14,
        TensorType::Q5_K => 16,
        TensorType::Q6_K => 18,
        TensorType::BF16 => 32,
    }
}

/// Merges `spec`'s adapters into `g`, then quantizes. Tensors neither
/// touches are shared with `g`, not copied.
pub fn transform(g: Gguf, spec: &LoadSpec) -> Result<Gguf, HfError> {
    if spec.lora.is_empty() && spec.quantize.is_none() {
        return Ok(g);
    }
    let origin = g
        .path()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("<memory>"));
    let adapters = spec
        .lora
        .iter()
        .map(|dir| lora::Adapter::open(dir, &g))
        .collect::<Result<Vec<_>, _>>()?;
    let user_scale = spec.lora_scale.unwrap_or(1.0);
    let mut warned = false;
    let mut tensors = Vec::with_capacity(g.tensors.len());
    for t in &g.tensors {
        let src_ty = t.tensor_type().map_err(|e| HfError::file(&origin, e))?;
        let deltas: Vec<_> = adapters
            .iter()
            .filter_map(|a| a.delta_for(&t.name))
            .collect();
        let target = spec
            .quantize
            .filter(|_| t.dims.len() == 2 && !src_ty.is_quantized())
            .filter(|q| {
                let fits = t.dims[0] as usize % q.block_size() == 0;
                if !fits && !warned {
                    tracing::warn!(
                        "{}: rows of {} elements are not whole {q} blocks; such tensors stay {src_ty}",
                        t.name,
                        t.dims[0]
                    );
                    warned = true;
                }
                fits
            });
        if deltas.is_empty() && target.is_none() {
            tensors.push(TensorEntry {
                name: t.name.clone(),
                dims: t.dims.clone(),
                ty: src_ty,
                bytes: g.tensor_bytes(t),
            });
            continue;
        }
        let n = t.n_elements() as usize;
        let mut x = dequantize_to_vec(src_ty, g.tensor_data(t), n)
            .map_err(|e| HfError::file(&origin, e))?;
        for d in &deltas {
            d.add_to(&mut x, user_scale);
        }
        // A merged quantized tensor is kept in F32: requantizing would add error twice.
        let ty = target.unwrap_or(if src_ty.is_quantized() {
            TensorType::F32
        } else {
            src_ty
        });
        let bytes = quantize(ty, &x).expect("type and length checked above");
        tensors.push(TensorEntry {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ty,
            bytes: TensorBytes::owned(bytes),
        });
    }
    let mut meta = g.metadata.clone();
    if spec.quantize.is_some() {
        let ft = file_type(&tensors);
        meta.retain(|(k, _)| k != "general.file_type" && k != "general.quantization_version");
        meta.push(("general.file_type".into(), Value::U32(ft)));
        meta.push(("general.quantization_version".into(), Value::U32(2)));
    }
    Gguf::assemble(&origin, meta, tensors).map_err(|e| HfError::file(&origin, e))
}
