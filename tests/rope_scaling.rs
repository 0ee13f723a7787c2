//! RoPE scaling: the engine's per-pair frequencies for linear, dynamic, YaRN
//! and llama3 configs against transformers' own initialisation functions
//! (`tests/fixtures/rope/rope_scaling.json`, made by
//! `tests/scripts/rope_fixtures.py`), through the path a Hugging Face folder
//! takes (config.json -> GGUF keys and `rope_freqs.weight` -> LlamaConfig);
//! then the GPU forward pass of scaled models against the CPU reference.

mod common;

use llama_wgpu::gguf::{Gguf, Value};
use llama_wgpu::gpu::{GpuModel, LoadOptions};
use llama_wgpu::hf::HfConfig;
use llama_wgpu::model::cpu::CpuModel;
use llama_wgpu::model::synthetic::{synthetic_gguf_rope, LlamaShape};
use llama_wgpu::model::{LlamaConfig, Rope};
use llama_wgpu::quant::TensorType;
use serde_json::{json, Value as Json};

fn fixture() -> Json {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rope/rope_scaling.json"
    );
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// A small model of this head size whose config.json has these RoPE
/// parameters, as the engine reads it (via the GGUF keys the Hugging Face
/// loader writes).
fn model_with(head_dim: usize, max_pos: usize, params: &Json, seed: u64) -> (Vec<u8>, HfConfig) {
    let hf = HfConfig::from_json(&json!({
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": head_dim * 4,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": head_dim,
        "vocab_size": 96,
        "max_position_embeddings": max_pos,
        "rope_parameters": params,
    }))
    .unwrap();
    let shape = LlamaShape {
        name: "rope test",
        n_layer: 2,
        n_embd: head_dim * 4,
        n_ff: 64,
        n_head: 4,
        n_head_kv: 2,
        n_vocab: 96,
        n_ctx_train: max_pos,
        rope_freq_base: hf.rope_theta,
        tied_embeddings: false,
        head_dim: None,
    };
    let keys: Vec<(String, Value)> = hf
        .metadata()
        .into_iter()
        .filter(|(k, _)| k.starts_with("llama.rope.scaling."))
        .collect();
    let freqs = hf.rope_freq_factors();
    let bytes =
        synthetic_gguf_rope(&shape, TensorType::F32, seed, &keys, freqs.as_deref()).unwrap();
    (bytes, hf)
}

#[test]
fn frequencies_match_transformers_for_every_scaling() {
    let f = fixture();
    let cases = f["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let head_dim = c["head_dim"].as_u64().unwrap() as usize;
        let max_pos = c["max_position_embeddings"].as_u64().unwrap() as usize;
        let (bytes, _) = model_with(head_dim, max_pos, &c["rope_parameters"], 1);
        let g = Gguf::from_bytes(bytes).unwrap();
        let cfg = LlamaConfig::from_gguf(&g).unwrap();
        let n_ctx = c["seq_len"].as_u64().map_or(max_pos, |s| s as usize);
        let rope = Rope::new(&cfg, n_ctx);
        let want: Vec<f64> = c["inv_freq"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(rope.freq.len(), want.len(), "{name}");
        // transformers computes in f32 (relative error ~1e-7, more through
        // pow() for dynamic's stretched base); the engine in f64.
        let worst = rope
            .freq
            .iter()
            .zip(&want)
            .map(|(a, b)| ((a - b) / b).abs())
            .fold(0.0f64, f64::max);
        assert!(
            worst < 2e-6,
            "{name}: frequencies differ by {worst:.2e} relative"
        );
        let af = c["attention_factor"].as_f64().unwrap();
        assert!(
            (rope.attn_factor as f64 - af).abs() < 1e-6,
            "{name}: attention factor {} vs transformers {af}",
            rope.attn_factor
        );
        eprintln!(
            "{name}: {} pairs within {worst:.1e} relative, attention factor {:.6}",
            want.len(),
            rope.attn_factor
        );
    }
}

/// The whole forward pass of YaRN and llama3 (rope_freqs) models on the
/// GPU against the CPU reference, with the cache as f16 on both sides.
#[test]
fn scaled_models_match_cpu_on_the_gpu() {
    let f = fixture();
    let gpu = common::gpu(false);
    for name in ["yarn_beta", "llama3", "dynamic"] {
        let c = f["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap();
        // Head size 64 and a trained context of 128 for all: the scaling
        // parameters are what is tested (dynamic stretches its base only
        // past the trained context).
        let (bytes, _) = model_with(64, 128, &c["rope_parameters"], 5);
        let g = Gguf::from_bytes(bytes).unwrap();
        // Past the original context, where the scalings differ from plain RoPE.
        let n_ctx = 160;
        let mut cpu = CpuModel::load(&g).unwrap();
        cpu.kv_f16 = true;
        cpu.set_context(n_ctx, &Default::default()).unwrap();
        let mut gm = GpuModel::load(gpu.clone(), &g, &LoadOptions::new(n_ctx), &|_, _| {}).unwrap();
        let tokens: Vec<u32> = (0..n_ctx as u32).map(|i| (i * 37 + 5) % 96).collect();
        let lg = gm
            .prefill(&tokens, llama_wgpu::gpu::BatchOutput::LastLogits)
            .unwrap()
            .into_logits()
            .unwrap();
        let mut lc = Vec::new();
        for &t in &tokens {
            lc = cpu.forward(t);
        }
        let err = common::max_abs_diff(&lc, &lg);
        let scale = lc.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        eprintln!("{name}: max |logit diff| {err:.2e} (scale {scale:.2}) after {n_ctx} tokens");
        // As tests/gpu_model.rs: f16 cache on both sides, f32 elsewhere.
        assert!(err <= 1e-3 * scale.max(1.0), "{name}: {err}");
    }
}
