//! Hugging Face folders and PEFT adapters against transformers and peft
//! (`tests/scripts/hf_fixtures.py` made the models and recorded the reference
//! ids, logits and greedy continuations), on the CPU reference and on the GPU.

mod common;

use std::path::{Path, PathBuf};

use llama_wgpu::gguf::{Gguf, TensorBytes, TensorEntry};
use llama_wgpu::hf::{self, LoadSpec};
use llama_wgpu::model::cpu::CpuModel;
use llama_wgpu::model::LlamaConfig;
use llama_wgpu::tokenizer::Tokenizer;
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf")
}

struct Case {
    model: String,
    prompt: String,
    ids: Vec<u32>,
    logits_from: usize,
    logits: Vec<Vec<f32>>,
    greedy: Vec<u32>,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let u32s = |v: &Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            model: c["model"].as_str().unwrap().into(),
            prompt: c["prompt"].as_str().unwrap().into(),
            ids: u32s(&c["ids"]),
            logits_from: c["logits_from"].as_u64().unwrap() as usize,
            logits: c["logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    r.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap() as f32)
                        .collect()
                })
                .collect(),
            greedy: u32s(&c["greedy"]),
        })
        .collect()
}

/// "gqa-f32+lora-a*0.5" -> the folder, the adapters and the scale.
fn spec_of(model: &str) -> (PathBuf, LoadSpec) {
    let (model, scale) = match model.split_once('*') {
        Some((m, s)) => (m, Some(s.parse().unwrap())),
        None => (model, None),
    };
    let mut parts = model.split('+');
    let dir = fixtures().join(parts.next().unwrap());
    let spec = LoadSpec {
        lora: parts.map(|a| fixtures().join(a)).collect(),
        lora_scale: scale,
        quantize: None,
    };
    (dir, spec)
}

fn open(model: &str) -> Gguf {
    let (dir, spec) = spec_of(model);
    hf::open(&dir, &spec).unwrap_or_else(|e| panic!("{model}: {e:#}"))
}

/// Largest |a - b| relative to the logits' scale (their largest magnitude).
fn rel_diff(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    common::max_abs_diff(got, want) / scale
}

fn argmax(x: &[f32]) -> u32 {
    llama_wgpu::model::cpu::argmax(x)
}

/// CPU reference (f32 throughout, f32 KV cache) vs transformers in f32: the
/// same arithmetic in a different order, so the logits agree to float32
/// rounding accumulated over two layers (measured 2.5e-6 of the logit scale).
const CPU_TOL: f32 = 1e-5;
/// The GPU keeps the KV cache in f16 (relative rounding 2^-11 = 5e-4 per
/// stored K/V value), which moves attention outputs by a few 1e-4 of their size.
const GPU_TOL: f32 = 3e-3;

#[test]
fn tokenizers_give_transformers_ids() {
    for c in cases() {
        let g = open(&c.model);
        let tok = Tokenizer::from_gguf(&g).unwrap();
        assert_eq!(
            tok.encode(&c.prompt, true, true).unwrap(),
            c.ids,
            "{} {:?}",
            c.model,
            c.prompt
        );
    }
}

#[test]
fn cpu_reference_matches_transformers() {
    let mut worst = 0f32;
    for c in cases() {
        let g = open(&c.model);
        let mut cpu = CpuModel::load(&g).unwrap();
        let mut last = Vec::new();
        for (pos, &id) in c.ids.iter().enumerate() {
            last = cpu.forward(id);
            if pos >= c.logits_from {
                let d = rel_diff(&last, &c.logits[pos - c.logits_from]);
                assert!(
                    d < CPU_TOL,
                    "{} {:?} position {pos}: {d}",
                    c.model,
                    c.prompt
                );
                worst = worst.max(d);
            }
        }
        let mut greedy = Vec::new();
        for _ in 0..c.greedy.len() {
            let next = argmax(&last);
            greedy.push(next);
            last = cpu.forward(next);
        }
        assert_eq!(greedy, c.greedy, "{} {:?}", c.model, c.prompt);
    }
    eprintln!("CPU reference vs transformers: worst relative logit difference {worst:.2e}");
}

#[test]
fn gpu_matches_transformers() {
    let gpu = common::gpu(false);
    let mut worst = 0f32;
    // One prompt per model keeps lavapipe time small; the CPU test covers all.
    let mut seen = std::collections::BTreeSet::new();
    for c in cases().into_iter().filter(|c| seen.insert(c.model.clone())) {
        let g = open(&c.model);
        let mut m = llama_wgpu::gpu::GpuModel::load(
            gpu.clone(),
            &g,
            &llama_wgpu::gpu::LoadOptions::new(64),
            &|_, _| {},
        )
        .unwrap();
        let mut last = Vec::new();
        for (pos, &id) in c.ids.iter().enumerate() {
            last = m.forward(id).unwrap();
            if pos >= c.logits_from {
                let d = rel_diff(&last, &c.logits[pos - c.logits_from]);
                assert!(
                    d < GPU_TOL,
                    "{} {:?} position {pos}: {d}",
                    c.model,
                    c.prompt
                );
                worst = worst.max(d);
            }
        }
        let mut greedy = Vec::new();
        for _ in 0..c.greedy.len() {
            let next = argmax(&last);
            greedy.push(next);
            last = m.forward(next).unwrap();
        }
        assert_eq!(greedy, c.greedy, "{} {:?}", c.model, c.prompt);
    }
    eprintln!("GPU vs transformers: worst relative logit difference {worst:.2e}");
}

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("hf_models-{name}"))
}

/// A converted file holds the same metadata and tensor bytes as the folder
/// loaded directly, so every command sees the same model either way.
#[test]
fn converted_gguf_reads_back_as_the_same_model() {
    for model in [
        "gqa-f32",
        "mistral-headdim-f32",
        "tied-bf16",
        "spm-f16",
        "gqa-f32+lora-a+lora-b",
    ] {
        let g = open(model);
        let path = tmp(&format!("{}.gguf", model.replace('+', "_")));
        g.write_to(&mut std::io::BufWriter::new(
            std::fs::File::create(&path).unwrap(),
        ))
        .unwrap();
        let back = Gguf::open(&path).unwrap();
        assert_eq!(back.metadata, g.metadata, "{model}");
        assert_eq!(back.tensors.len(), g.tensors.len());
        for (a, b) in g.tensors.iter().zip(&back.tensors) {
            assert_eq!((&a.name, &a.dims, a.type_id), (&b.name, &b.dims, b.type_id));
            assert!(
                g.tensor_data(a) == back.tensor_data(b),
                "{model} {}",
                a.name
            );
        }
        assert_eq!(
            LlamaConfig::from_gguf(&back).unwrap(),
            LlamaConfig::from_gguf(&g).unwrap()
        );
    }
    // An adapter on the converted GGUF base gives the model it gives on the folder.
    let spec = LoadSpec {
        lora: vec![fixtures().join("lora-a")],
        ..Default::default()
    };
    let on_gguf = hf::open(&tmp("gqa-f32.gguf"), &spec).unwrap();
    let on_dir = open("gqa-f32+lora-a");
    assert_eq!(on_dir.tensors.len(), on_gguf.tensors.len());
    for (a, b) in on_dir.tensors.iter().zip(&on_gguf.tensors) {
        assert_eq!(a.name, b.name);
        assert!(
            on_dir.tensor_data(a) == on_gguf.tensor_data(b),
            "{}",
            a.name
        );
    }
}

/// The adapters move the logits far beyond the tolerance, so matching
/// peft's logits is evidence that they were merged (and scaled) right.
#[test]
fn adapters_change_the_logits_well_beyond_the_tolerance() {
    let all = cases();
    let logits = |m: &str| {
        &all.iter()
            .find(|c| c.model == m && c.prompt == "Hello world")
            .unwrap()
            .logits
    };
    let base = logits("gqa-f32");
    for m in [
        "gqa-f32+lora-a",
        "gqa-f32+lora-a*0.5",
        "gqa-f32+lora-a+lora-b",
    ] {
        let d = base
            .iter()
            .zip(logits(m))
            .map(|(a, b)| rel_diff(a, b))
            .fold(0.0, f32::max);
        assert!(d > 1000.0 * CPU_TOL, "{m}: {d}");
    }
}

#[test]
fn layouts_of_transformers_4_and_5_give_their_rope_settings() {
    let c4 = LlamaConfig::from_gguf(&open("gqa-f32")).unwrap();
    assert_eq!(
        (
            c4.rope_freq_base,
            c4.rope_freq_scale,
            c4.n_head,
            c4.n_head_kv
        ),
        (10000.0, 1.0, 4, 2)
    );
    assert!(!c4.tied_embeddings);
    let c5 = LlamaConfig::from_gguf(&open("tied-bf16")).unwrap();
    assert_eq!((c5.rope_freq_base, c5.rope_freq_scale), (500.0, 0.5));
    assert!(c5.tied_embeddings);
}

/// Without the permutation the engine's interleaved RoPE would rotate the
/// wrong pairs: the logits then differ from transformers far beyond tolerance.
#[test]
fn rope_permutation_is_what_makes_the_logits_match() {
    let c = cases()
        .into_iter()
        .find(|c| c.model == "gqa-f32" && c.ids.len() > 3)
        .unwrap();
    let g = open("gqa-f32");
    // Undo the permutation of every Q and K: the rows as Hugging Face stores them.
    let cfg = LlamaConfig::from_gguf(&g).unwrap();
    let tensors = g
        .tensors
        .iter()
        .map(|t| {
            let mut bytes = g.tensor_data(t).to_vec();
            let heads = if t.name.ends_with("attn_q.weight") {
                Some(cfg.n_head)
            } else if t.name.ends_with("attn_k.weight") {
                Some(cfg.n_head_kv)
            } else {
                None
            };
            if let Some(heads) = heads {
                let row = t.dims[0] as usize * 4;
                let d = cfg.head_dim;
                let src = bytes.clone();
                for h in 0..heads {
                    for i in 0..2 {
                        for j in 0..d / 2 {
                            let (from, to) = (h * d + 2 * j + i, h * d + i * (d / 2) + j);
                            bytes[to * row..(to + 1) * row]
                                .copy_from_slice(&src[from * row..(from + 1) * row]);
                        }
                    }
                }
            }
            TensorEntry {
                name: t.name.clone(),
                dims: t.dims.clone(),
                ty: t.tensor_type().unwrap(),
                bytes: TensorBytes::owned(bytes),
            }
        })
        .collect();
    let raw = Gguf::assemble(Path::new("raw"), g.metadata.clone(), tensors).unwrap();
    let mut cpu = CpuModel::load(&raw).unwrap();
    let mut last = Vec::new();
    for &id in &c.ids {
        last = cpu.forward(id);
    }
    let d = rel_diff(&last, c.logits.last().unwrap());
    assert!(d > 100.0 * CPU_TOL, "unpermuted Q/K still match ({d})");
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn info_error(dir: &Path, extra: &[&str]) -> String {
    let out = assert_cmd::Command::cargo_bin("llama-wgpu")
        .unwrap()
        .args(["info", "-m"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    common::one_line_error(&out)
}

#[test]
fn malformed_folders_give_one_line_errors_naming_the_file() {
    let edit_json = |dir: &Path, file: &str, f: &dyn Fn(&mut Value)| {
        let p = dir.join(file);
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(&p, v.to_string()).unwrap();
    };
    let src = fixtures().join("gqa-f32");
    let sharded = fixtures().join("tied-bf16");

    let d = tmp("missing-key");
    copy_dir(&src, &d);
    edit_json(&d, "config.json", &|v| {
        v.as_object_mut().unwrap().remove("hidden_size");
    });
    let e = info_error(&d, &[]);
    assert!(
        e.contains("config.json") && e.contains("missing key 'hidden_size'"),
        "{e}"
    );

    let d = tmp("wrong-shape");
    copy_dir(&src, &d);
    edit_json(&d, "config.json", &|v| v["intermediate_size"] = 96.into());
    let e = info_error(&d, &[]);
    assert!(
        e.contains("model.safetensors") && e.contains("config.json implies"),
        "{e}"
    );

    let d = tmp("missing-shard");
    copy_dir(&sharded, &d);
    std::fs::remove_file(d.join("model-00002-of-00004.safetensors")).unwrap();
    let e = info_error(&d, &[]);
    assert!(
        e.contains("model.safetensors.index.json")
            && e.contains("model-00002-of-00004.safetensors"),
        "{e}"
    );

    let d = tmp("truncated-header");
    copy_dir(&src, &d);
    let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
    std::fs::write(d.join("model.safetensors"), &bytes[..100]).unwrap();
    let e = info_error(&d, &[]);
    assert!(
        e.contains("model.safetensors: not a valid safetensors file"),
        "{e}"
    );

    let d = tmp("bin-only");
    copy_dir(&src, &d);
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    std::fs::write(d.join("pytorch_model.bin"), b"not really").unwrap();
    let e = info_error(&d, &[]);
    assert!(
        e.contains("hf_models-bin-only") && e.contains("safetensors"),
        "{e}"
    );

    let d = tmp("other-arch");
    copy_dir(&src, &d);
    edit_json(&d, "config.json", &|v| {
        v["architectures"] = serde_json::json!(["Qwen2ForCausalLM"])
    });
    let e = info_error(&d, &[]);
    assert!(
        e.contains("config.json") && e.contains("unsupported architecture Qwen2ForCausalLM"),
        "{e}"
    );

    // An adapter trained on the tied model (2 heads of 16) for the GQA one.
    let lora = fixtures().join("lora-tied");
    let e = info_error(&src, &["--lora", lora.to_str().unwrap()]);
    assert!(
        e.contains("lora-tied/adapter_model.safetensors") && e.contains("another base"),
        "{e}"
    );
}

#[test]
fn convert_command_writes_a_gguf_that_generates_the_same_text() {
    let out = tmp("convert-cli.gguf");
    let _ = std::fs::remove_file(&out);
    let run = assert_cmd::Command::cargo_bin("llama-wgpu")
        .unwrap()
        .arg("convert")
        .arg(fixtures().join("gqa-f32"))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let g = Gguf::open(&out).unwrap();
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(g.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(g.get_str("tokenizer.ggml.pre").unwrap(), "gpt-2");
    assert!(g
        .get_str("tokenizer.chat_template")
        .unwrap()
        .contains("<|im_start|>"));
    // An existing file is not overwritten without --force.
    let again = assert_cmd::Command::cargo_bin("llama-wgpu")
        .unwrap()
        .arg("convert")
        .arg(fixtures().join("gqa-f32"))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(common::one_line_error(&again).contains("--force"));
}
