//! Which tensor is which: names, expected shapes and types, checked once at load.

use crate::gguf::{Gguf, GgufError, TensorInfo};
use crate::model::LlamaConfig;
use crate::quant::TensorType;

/// One weight: its table entry and engine type. Shapes are in ggml order, so a
/// matrix is `[cols, rows]` and `y = W x` reads `cols` inputs per output row.
#[derive(Clone, Debug)]
pub struct Weight<'a> {
    pub info: &'a TensorInfo,
    pub ty: TensorType,
}

impl Weight<'_> {
    pub fn name(&self) -> &str {
        &self.info.name
    }
    pub fn cols(&self) -> usize {
        self.info.dims[0] as usize
    }
    pub fn rows(&self) -> usize {
        self.info.dims.get(1).copied().unwrap_or(1) as usize
    }
}

#[derive(Clone, Debug)]
pub struct LayerWeights<'a> {
    pub attn_norm: Weight<'a>, // [n_embd]
    pub wq: Weight<'a>,        // [n_embd, n_head * head_dim]
    pub wk: Weight<'a>,        // [n_embd, n_head_kv * head_dim]
    pub wv: Weight<'a>,        // [n_embd, n_head_kv * head_dim]
    pub wo: Weight<'a>,        // [n_head * head_dim, n_embd]
    pub ffn_norm: Weight<'a>,  // [n_embd]
    pub w_gate: Weight<'a>,    // [n_embd, n_ff]
    pub w_up: Weight<'a>,      // [n_embd, n_ff]
    pub w_down: Weight<'a>,    // [n_ff, n_embd]
}

#[derive(Clone, Debug)]
pub struct ModelWeights<'a> {
    pub token_embd: Weight<'a>,  // [n_embd, n_vocab]
    pub output_norm: Weight<'a>, // [n_embd]
    /// `token_embd` itself when the embeddings are tied.
    pub output: Weight<'a>, // [n_embd, n_vocab]
    pub layers: Vec<LayerWeights<'a>>,
}

impl<'a> ModelWeights<'a> {
    /// Finds every tensor, checking presence, shape and type.
    pub fn resolve(g: &'a Gguf, cfg: &LlamaConfig) -> Result<ModelWeights<'a>, GgufError> {
        let get = |name: &str, shape: &[usize]| -> Result<Weight<'a>, GgufError> {
            let info = g
                .tensor(name)
                .ok_or_else(|| GgufError::new(format!("missing tensor '{name}'")))?;
            let dims: Vec<usize> = info.dims.iter().map(|&d| d as usize).collect();
            if dims != shape {
                return Err(GgufError::new(format!(
                    "tensor '{name}' has shape {dims:?}, expected {shape:?} from the model metadata"
                )));
            }
            Ok(Weight {
                info,
                ty: info.tensor_type()?,
            })
        };
        let (e, q, kv, ff, v) = (
            cfg.n_embd,
            cfg.n_head * cfg.head_dim,
            cfg.kv_dim(),
            cfg.n_ff,
            cfg.n_vocab,
        );
        let token_embd = get("token_embd.weight", &[e, v])?;
        let output = if cfg.tied_embeddings {
            token_embd.clone()
        } else {
            get("output.weight", &[e, v])?
        };
        let layers = (0..cfg.n_layer)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}.weight");
                Ok(LayerWeights {
                    attn_norm: get(&n("attn_norm"), &[e])?,
                    wq: get(&n("attn_q"), &[e, q])?,
                    wk: get(&n("attn_k"), &[e, kv])?,
                    wv: get(&n("attn_v"), &[e, kv])?,
                    wo: get(&n("attn_output"), &[q, e])?,
                    ffn_norm: get(&n("ffn_norm"), &[e])?,
                    w_gate: get(&n("ffn_gate"), &[e, ff])?,
                    w_up: get(&n("ffn_up"), &[e, ff])?,
                    w_down: get(&n("ffn_down"), &[ff, e])?,
                })
            })
            .collect::<Result<Vec<_>, GgufError>>()?;
        Ok(ModelWeights {
            token_embd,
            output_norm: get("output_norm.weight", &[e])?,
            output,
            layers,
        })
    }
}
