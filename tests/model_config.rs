//! Model config from GGUF metadata: the real model, synthetic shapes, and the
//! errors a user sees for files this engine cannot run.

mod common;

use llama_wgpu::gguf::{Gguf, GgufWriter, Value};
use llama_wgpu::model::synthetic::{synthetic_gguf, LlamaShape};
use llama_wgpu::model::{LlamaConfig, ModelWeights};
use llama_wgpu::quant::TensorType;

#[test]
fn smollm2_config() {
    let g = Gguf::open(common::test_model_path()).unwrap();
    let c = LlamaConfig::from_gguf(&g).unwrap();
    assert_eq!((c.n_layer, c.n_embd, c.n_ff), (30, 576, 1536));
    assert_eq!(
        (c.n_head, c.n_head_kv, c.head_dim, c.gqa_group()),
        (9, 3, 64, 3)
    );
    assert_eq!((c.n_vocab, c.n_ctx_train, c.rope_dim), (49152, 8192, 64));
    assert_eq!(c.rope_freq_base, 100000.0);
    assert_eq!(c.rope_freq_scale, 1.0);
    assert!((c.rms_eps - 1e-5).abs() < 1e-9);
    assert!(c.tied_embeddings, "SmolLM2 has no output.weight");
    let w = ModelWeights::resolve(&g, &c).unwrap();
    assert_eq!(w.token_embd.ty, TensorType::Q8_0);
    assert_eq!(w.output.name(), "token_embd.weight");
    assert_eq!(w.layers[29].wk.rows(), 192);
}

#[test]
fn every_preset_shape_round_trips_through_the_reader() {
    // Small stand-ins with the presets' head structure (the real sizes are for benchmarks).
    for shape in LlamaShape::PRESETS.iter().chain([&LlamaShape::tiny()]) {
        let s = LlamaShape {
            n_layer: 1,
            n_embd: shape.n_head * 32,
            n_ff: 64,
            n_vocab: 50,
            ..shape.clone()
        };
        let g = Gguf::from_bytes(synthetic_gguf(&s, TensorType::F16, 1).unwrap()).unwrap();
        let c = LlamaConfig::from_gguf(&g).unwrap();
        assert_eq!(
            (c.n_head, c.n_head_kv, c.head_dim),
            (s.n_head, s.n_head_kv, s.head_dim.unwrap_or(32)),
            "{}",
            s.name
        );
        assert_eq!(c.tied_embeddings, s.tied_embeddings, "{}", s.name);
        ModelWeights::resolve(&g, &c).unwrap();
    }
}

/// Rewrites one metadata entry of a synthetic model.
fn with_kv(key: &str, value: Option<Value>) -> Gguf {
    let base = Gguf::from_bytes(synthetic_gguf(&LlamaShape::tiny(), TensorType::Q8_0, 1).unwrap())
        .unwrap();
    let mut w = GgufWriter::new();
    let mut seen = false;
    for (k, v) in &base.metadata {
        if k == key {
            seen = true;
            if let Some(v) = &value {
                w.kv(k, v.clone());
            }
        } else {
            w.kv(k, v.clone());
        }
    }
    if !seen {
        if let Some(v) = value {
            w.kv(key, v);
        }
    }
    for t in &base.tensors {
        w.tensor(
            &t.name,
            &t.dims,
            t.tensor_type().unwrap(),
            base.tensor_data(t).to_vec(),
        );
    }
    Gguf::from_bytes(w.to_bytes()).unwrap()
}

fn config_error(key: &str, value: Option<Value>) -> String {
    LlamaConfig::from_gguf(&with_kv(key, value))
        .unwrap_err()
        .to_string()
}

#[test]
fn unsupported_or_broken_metadata_gives_errors_that_name_the_problem() {
    let e = config_error("general.architecture", Some(Value::String("gpt2".into())));
    assert!(e.contains("'gpt2'"), "{e}");
    let e = config_error("llama.block_count", None);
    assert!(e.contains("llama.block_count"), "{e}");
    let e = config_error("llama.attention.head_count_kv", Some(Value::U32(3)));
    assert!(e.contains("head_count_kv"), "{e}");
    let e = config_error("llama.embedding_length", Some(Value::String("256".into())));
    assert!(
        e.contains("llama.embedding_length") && e.contains("string"),
        "{e}"
    );
    let e = config_error(
        "llama.rope.scaling.type",
        Some(Value::String("longrope".into())),
    );
    assert!(e.contains("'longrope'"), "{e}");
    // YaRN is read (tests/rope_scaling.rs), and needs its factor.
    let e = config_error(
        "llama.rope.scaling.type",
        Some(Value::String("yarn".into())),
    );
    assert!(e.contains("llama.rope.scaling.factor"), "{e}");
    let e = config_error("llama.expert_count", Some(Value::U32(8)));
    assert!(e.contains("mixture-of-experts"), "{e}");
    let e = config_error("llama.attention.head_count", Some(Value::U32(0)));
    assert!(e.contains("llama.attention.head_count"), "{e}");
    let e = config_error("llama.attention.key_length", Some(Value::U32(0)));
    assert!(e.contains("key_length is 0"), "{e}");
    let e = config_error("llama.attention.key_length", Some(Value::U32(63)));
    assert!(e.contains("head dimension 63 is odd"), "{e}");
    let e = config_error("llama.attention.value_length", Some(Value::U32(32)));
    assert!(
        e.contains("value_length 32 differs from key_length 64"),
        "{e}"
    );
}

#[test]
fn a_key_length_the_tensors_do_not_have_names_the_tensor() {
    // The tiny model's heads are 64 wide; a file that says 128 is read as
    // such (Mistral Nemo's files do say so), and its Q does not fit.
    let g = with_kv("llama.attention.key_length", Some(Value::U32(128)));
    let c = LlamaConfig::from_gguf(&g).unwrap();
    assert_eq!((c.head_dim, c.rope_dim), (128, 128));
    let e = ModelWeights::resolve(&g, &c).unwrap_err().to_string();
    assert!(
        e.contains("blk.0.attn_q.weight") && e.contains("shape"),
        "{e}"
    );
}

#[test]
fn linear_rope_scaling_is_read() {
    let g = with_kv(
        "llama.rope.scaling.type",
        Some(Value::String("linear".into())),
    );
    let e = LlamaConfig::from_gguf(&g).unwrap_err().to_string();
    assert!(e.contains("llama.rope.scaling.factor"), "{e}");
}

#[test]
fn tensor_shape_and_presence_errors_name_the_tensor() {
    let g = with_kv("llama.feed_forward_length", Some(Value::U32(768)));
    let c = LlamaConfig::from_gguf(&g).unwrap();
    let e = ModelWeights::resolve(&g, &c).unwrap_err().to_string();
    assert!(
        e.contains("blk.0.ffn_gate.weight") && e.contains("shape"),
        "{e}"
    );
    let g = with_kv("llama.block_count", Some(Value::U32(3)));
    let c = LlamaConfig::from_gguf(&g).unwrap();
    let e = ModelWeights::resolve(&g, &c).unwrap_err().to_string();
    assert!(e.contains("missing tensor 'blk.2."), "{e}");
}
