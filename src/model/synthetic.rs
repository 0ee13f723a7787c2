//! Random Llama models of any shape and tensor type, written as GGUF.
//!
//! Tests use them to compare the GPU against the CPU reference for every
//! tensor type; benchmarks use the shapes of real models.

use rand::{Rng, SeedableRng};

use crate::gguf::{GgufWriter, Value};
use crate::quant::{random_tensor, TensorType};

/// The hyper-parameters that decide tensor shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaShape {
    pub name: &'static str,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub rope_freq_base: f32,
    pub tied_embeddings: bool,
    /// Set where it is not `n_embd / n_head` (`llama.attention.key_length`:
    /// Mistral Nemo and Small 3 have 128 with 5120 / 32 = 160).
    pub head_dim: Option<usize>,
}

impl LlamaShape {
    /// Shapes of published models, for benchmarks (`--synthetic NAME:TYPE`).
    pub const PRESETS: [LlamaShape; 6] = [
        LlamaShape::preset(
            "llama2-7b",
            32,
            4096,
            11008,
            32,
            32,
            32000,
            4096,
            10000.0,
            false,
        ),
        LlamaShape::preset(
            "llama2-13b",
            40,
            5120,
            13824,
            40,
            40,
            32000,
            4096,
            10000.0,
            false,
        ),
        LlamaShape::preset(
            "llama2-70b",
            80,
            8192,
            28672,
            64,
            8,
            32000,
            4096,
            10000.0,
            false,
        ),
        LlamaShape::preset(
            "tinyllama-1.1b",
            22,
            2048,
            5632,
            32,
            4,
            32000,
            2048,
            10000.0,
            false,
        ),
        LlamaShape::preset(
            "smollm2-135m",
            30,
            576,
            1536,
            9,
            3,
            49152,
            8192,
            100000.0,
            true,
        ),
        LlamaShape {
            head_dim: Some(128),
            ..LlamaShape::preset(
                "mistral-nemo-12b",
                40,
                5120,
                14336,
                32,
                8,
                131072,
                1024000,
                1000000.0,
                false,
            )
        },
    ];

    #[allow(clippy::too_many_arguments)]
    const fn preset(
        name: &'static str,
        n_layer: usize,
        n_embd: usize,
        n_ff: usize,
        n_head: usize,
        n_head_kv: usize,
        n_vocab: usize,
        n_ctx_train: usize,
        rope_freq_base: f32,
        tied_embeddings: bool,
    ) -> LlamaShape {
        LlamaShape {
            name,
            n_layer,
            n_embd,
            n_ff,
            n_head,
            n_head_kv,
            n_vocab,
            n_ctx_train,
            rope_freq_base,
            tied_embeddings,
            head_dim: None,
        }
    }

    /// A `SHAPE:TYPE` spec (`llama2-7b:q4_0`, as `bench --synthetic` and
    /// `examples/synthetic_gguf.rs` take it): the shape and the matrices' type.
    pub fn parse_spec(spec: &str) -> Result<(LlamaShape, TensorType), String> {
        let (shape, ty) = spec
            .split_once(':')
            .ok_or("expected SHAPE:TYPE, e.g. llama2-7b:q4_0")?;
        let found = LlamaShape::by_name(shape).ok_or_else(|| {
            let names: Vec<&str> = LlamaShape::PRESETS.iter().map(|s| s.name).collect();
            format!("unknown shape '{shape}' (known: {})", names.join(", "))
        })?;
        let ty = TensorType::from_name(ty).ok_or_else(|| format!("unknown tensor type '{ty}'"))?;
        Ok((found, ty))
    }

    pub fn by_name(name: &str) -> Option<LlamaShape> {
        Self::PRESETS
            .into_iter()
            .chain([LlamaShape::tiny()])
            .find(|s| s.name.eq_ignore_ascii_case(name))
    }

    /// A tiny model for tests: every dimension a multiple of 256 so K-quants fit,
    /// GQA with two query heads per KV head, and a vocabulary that is not a round number.
    pub fn tiny() -> LlamaShape {
        LlamaShape::preset("tiny", 2, 256, 512, 4, 2, 1000, 8192, 10000.0, false)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.n_embd / self.n_head)
    }
}

/// The type llama.cpp's quantizer gives the output projection (`output.weight`,
/// or `token_embd.weight` when embeddings are tied) for a file whose other
/// matrices are `ty`: Q8_0 when rows are not whole 256-element super-blocks,
/// else Q6_K, except that float and Q8_0 files keep their type
/// (`llama_tensor_get_type` in llama.cpp's `llama-quant.cpp`).
pub fn llama_cpp_output_type(ty: TensorType, n_embd: usize) -> TensorType {
    if !ty.is_quantized() || ty == TensorType::Q8_0 {
        ty
    } else if n_embd % 256 != 0 {
        TensorType::Q8_0
    } else {
        TensorType::Q6_K
    }
}

/// Writes a random model. Matrices use `ty`; norms are F32 as in real files.
/// Weight spreads are chosen so activations stay of order one through the layers.
pub fn synthetic_gguf(shape: &LlamaShape, ty: TensorType, seed: u64) -> Result<Vec<u8>, String> {
    synthetic_gguf_mixed(shape, ty, ty, seed)
}

/// As [`synthetic_gguf`], with the output projection in `output_ty` (see
/// [`llama_cpp_output_type`]) so a synthetic model reads the same bytes per
/// token as a real file of that quantization.
pub fn synthetic_gguf_mixed(
    shape: &LlamaShape,
    ty: TensorType,
    output_ty: TensorType,
    seed: u64,
) -> Result<Vec<u8>, String> {
    Ok(synthetic_writer(shape, ty, output_ty, Some(seed))?.to_bytes())
}

/// As [`synthetic_gguf`], with RoPE scaling metadata (`llama.rope.*` keys
/// the base model does not set) and a `rope_freqs.weight` tensor.
pub fn synthetic_gguf_rope(
    shape: &LlamaShape,
    ty: TensorType,
    seed: u64,
    rope_keys: &[(String, Value)],
    rope_freqs: Option<&[f32]>,
) -> Result<Vec<u8>, String> {
    let mut w = synthetic_writer(shape, ty, ty, Some(seed))?;
    for (k, v) in rope_keys {
        w.kv(k, v.clone());
    }
    if let Some(f) = rope_freqs {
        w.tensor(
            "rope_freqs.weight",
            &[f.len() as u64],
            TensorType::F32,
            bytemuck::cast_slice(f).to_vec(),
        );
    }
    Ok(w.to_bytes())
}

/// [`synthetic_gguf_mixed`]'s model with `extra` metadata (a vocabulary's
/// `tokenizer.*` keys, say), streamed to `out`: a file other engines load
/// too (`examples/synthetic_gguf.rs`, for llama.cpp's `llama-bench` side by
/// side with `bench -m` on a machine where no real model can be fetched).
pub fn write_synthetic_gguf(
    shape: &LlamaShape,
    ty: TensorType,
    output_ty: TensorType,
    seed: u64,
    extra: &[(String, Value)],
    out: &mut impl std::io::Write,
) -> Result<(), String> {
    let mut w = synthetic_writer(shape, ty, output_ty, Some(seed))?;
    for (k, v) in extra {
        w.kv(k, v.clone());
    }
    w.write_to(out).map_err(|e| e.to_string())
}

/// The header and tensor table of [`synthetic_gguf_mixed`]'s model, without
/// tensor data (for `Gguf::header_only`): `bench --synthetic` generates the
/// weights on the GPU, so even a 70B shape costs no host memory or time.
pub fn synthetic_header(
    shape: &LlamaShape,
    ty: TensorType,
    output_ty: TensorType,
) -> Result<Vec<u8>, String> {
    Ok(synthetic_writer(shape, ty, output_ty, None)?.header_bytes())
}

/// The synthetic model's writer: random data from `seed`, or none.
fn synthetic_writer(
    shape: &LlamaShape,
    ty: TensorType,
    output_ty: TensorType,
    seed: Option<u64>,
) -> Result<GgufWriter, String> {
    let q_dim = shape.n_head * shape.head_dim();
    for (what, n) in [
        ("n_embd", shape.n_embd),
        ("n_ff", shape.n_ff),
        ("n_head * head_dim", q_dim),
    ] {
        if n % ty.block_size() != 0 {
            return Err(format!(
                "{what} = {n} is not a multiple of the {ty} block size {}",
                ty.block_size()
            ));
        }
    }
    let with_data = seed.is_some();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed.unwrap_or(0));
    let mut w = GgufWriter::new();
    let u32v = |v: usize| Value::U32(v as u32);
    w.kv("general.architecture", Value::String("llama".into()))
        .kv(
            "general.name",
            Value::String(format!("synthetic {} {ty}", shape.name)),
        )
        .kv("llama.block_count", u32v(shape.n_layer))
        .kv("llama.context_length", u32v(shape.n_ctx_train))
        .kv("llama.embedding_length", u32v(shape.n_embd))
        .kv("llama.feed_forward_length", u32v(shape.n_ff))
        .kv("llama.attention.head_count", u32v(shape.n_head))
        .kv("llama.attention.head_count_kv", u32v(shape.n_head_kv))
        .kv("llama.rope.freq_base", Value::F32(shape.rope_freq_base))
        .kv("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5))
        .kv("llama.vocab_size", u32v(shape.n_vocab));
    if let Some(hd) = shape.head_dim {
        // llama.cpp's converter writes both for a head_dim of its own.
        w.kv("llama.attention.key_length", u32v(hd))
            .kv("llama.attention.value_length", u32v(hd));
    }

    let (e, hd) = (shape.n_embd, shape.head_dim());
    let (q, kv, ff) = (shape.n_head * hd, shape.n_head_kv * hd, shape.n_ff);
    let typed = |ty: TensorType,
                 w: &mut GgufWriter,
                 rng: &mut rand::rngs::StdRng,
                 name: &str,
                 cols: usize,
                 rows: usize,
                 std: f32| {
        if with_data {
            let data = random_tensor(ty, cols * rows, rng, std);
            w.tensor(name, &[cols as u64, rows as u64], ty, data);
        } else {
            w.tensor_header(name, &[cols as u64, rows as u64], ty);
        }
    };
    let matrix = |w: &mut GgufWriter,
                  rng: &mut rand::rngs::StdRng,
                  name: &str,
                  cols: usize,
                  rows: usize,
                  std: f32| typed(ty, w, rng, name, cols, rows, std);
    if e % output_ty.block_size() != 0 {
        return Err(format!(
            "n_embd = {e} is not a multiple of the {output_ty} block size {}",
            output_ty.block_size()
        ));
    }
    let embd_ty = if shape.tied_embeddings { output_ty } else { ty };
    typed(
        embd_ty,
        &mut w,
        &mut rng,
        "token_embd.weight",
        e,
        shape.n_vocab,
        1.0,
    );
    let norm = |w: &mut GgufWriter, rng: &mut rand::rngs::StdRng, name: &str| {
        if !with_data {
            w.tensor_header(name, &[e as u64], TensorType::F32);
            return;
        }
        let v: Vec<f32> = (0..e).map(|_| rng.random_range(0.8f32..1.2)).collect();
        w.tensor(
            name,
            &[e as u64],
            TensorType::F32,
            bytemuck::cast_slice(&v).to_vec(),
        );
    };
    norm(&mut w, &mut rng, "output_norm.weight");
    for i in 0..shape.n_layer {
        norm(&mut w, &mut rng, &format!("blk.{i}.attn_norm.weight"));
        norm(&mut w, &mut rng, &format!("blk.{i}.ffn_norm.weight"));
    }
    let inv = |n: usize| 1.0 / (n as f32).sqrt();
    if !shape.tied_embeddings {
        typed(
            output_ty,
            &mut w,
            &mut rng,
            "output.weight",
            e,
            shape.n_vocab,
            inv(e),
        );
    }
    for i in 0..shape.n_layer {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        // Larger Q/K spread than 1/sqrt(n) gives attention scores that are not
        // all near zero, so the softmax is exercised rather than uniform.
        matrix(&mut w, &mut rng, &n("attn_q"), e, q, 2.0 * inv(e));
        matrix(&mut w, &mut rng, &n("attn_k"), e, kv, 2.0 * inv(e));
        matrix(&mut w, &mut rng, &n("attn_v"), e, kv, inv(e));
        matrix(&mut w, &mut rng, &n("attn_output"), q, e, 0.5 * inv(q));
        matrix(&mut w, &mut rng, &n("ffn_gate"), e, ff, inv(e));
        matrix(&mut w, &mut rng, &n("ffn_up"), e, ff, inv(e));
        matrix(&mut w, &mut rng, &n("ffn_down"), ff, e, 0.5 * inv(ff));
    }
    Ok(w)
}
