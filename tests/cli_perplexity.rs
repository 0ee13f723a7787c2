//! `llama-wgpu perplexity` against a direct computation from the CPU
//! reference's logits, with the same chunking written out independently.

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use llama_wgpu::engine::perplexity::{chunk_nll, PerplexityStats};
use llama_wgpu::gguf::Gguf;
use llama_wgpu::model::cpu::CpuModel;
use llama_wgpu::tokenizer::Tokenizer;

const CTX: usize = 64;
/// Two chunks keep the test to ~2 minutes on lavapipe while still checking
/// that the cache is reset between chunks (chunk 2 would be scored against
/// chunk 1's keys otherwise).
const CHUNKS: usize = 2;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/perplexity/lighthouse.txt")
}

fn bin() -> Command {
    Command::cargo_bin("llama-wgpu").unwrap()
}

/// PPL over the first `CHUNKS` chunks from `CpuModel` logits at every position.
fn cpu_reference(model: &Path, text: &str) -> (f64, usize) {
    let g = Gguf::open(model).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let mut cpu = CpuModel::load(&g).unwrap();
    let tokens = tok.encode(text, tok.adds_bos(), false).unwrap();
    assert!(tokens.len() >= CHUNKS * CTX, "fixture too short");
    let mut stats = PerplexityStats::default();
    for c in 0..CHUNKS {
        let mut chunk = tokens[c * CTX..(c + 1) * CTX].to_vec();
        if tok.adds_bos() {
            chunk[0] = tok.bos_id().unwrap();
        }
        cpu.reset();
        let logits: Vec<Vec<f32>> = chunk.iter().map(|&t| cpu.forward(t)).collect();
        chunk_nll(&logits, &chunk)
            .into_iter()
            .for_each(|x| stats.add(x));
    }
    (stats.ppl(), stats.count)
}

#[test]
fn perplexity_matches_the_cpu_reference() {
    let model = common::test_model_path();
    let out = bin()
        .args(["perplexity", "-m"])
        .arg(&model)
        .arg("-f")
        .arg(fixture())
        .args(["-c", &CTX.to_string(), "--chunks", &CHUNKS.to_string()])
        .arg("--json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    assert!(stderr.contains("[1]") && stderr.contains("[2]"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ppl = v["ppl"].as_f64().unwrap();
    assert!(ppl.is_finite() && ppl > 1.0, "{v}");
    assert!(v["ppl_stderr"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["chunks"], CHUNKS);
    assert_eq!(v["ctx"], CTX);
    // Positions CTX/2 .. CTX-2 predict the next token.
    assert_eq!(v["tokens_scored"], CHUNKS * (CTX / 2 - 1));

    let text = std::fs::read_to_string(fixture()).unwrap();
    let (want, count) = cpu_reference(&model, &text);
    assert_eq!(count, CHUNKS * (CTX / 2 - 1));
    let rel = (ppl - want).abs() / want;
    assert!(
        rel < 0.005,
        "GPU ppl {ppl} vs CPU reference {want} ({rel:.4} relative)"
    );
    // A prose text is far from uniform: a 49k vocabulary must do much better.
    assert!(want < 200.0, "{want}");
}

#[test]
fn uniform_logits_give_a_perplexity_of_the_vocabulary_size() {
    let vocab = 49152;
    let tokens: Vec<u32> = (0..CTX as u32).map(|i| i * 7919 % vocab).collect();
    let logits = vec![vec![-3.5f32; vocab as usize]; CTX];
    let mut stats = PerplexityStats::default();
    chunk_nll(&logits, &tokens)
        .into_iter()
        .for_each(|x| stats.add(x));
    assert_eq!(stats.count, CTX / 2 - 1);
    assert!(
        (stats.ppl() / vocab as f64 - 1.0).abs() < 1e-9,
        "{}",
        stats.ppl()
    );
}

#[test]
fn text_shorter_than_one_chunk_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("llama-wgpu-ppl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let short = dir.join("short.txt");
    std::fs::write(&short, "Only a few words here.").unwrap();
    let out = bin()
        .args(["perplexity", "-m"])
        .arg(common::test_model_path())
        .arg("-f")
        .arg(&short)
        .args(["-c", "64"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("fewer than one chunk"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_model_is_a_one_line_error() {
    let out = bin()
        .args(["perplexity", "-m", "/nonexistent/model.gguf", "-f"])
        .arg(fixture())
        .output()
        .unwrap();
    let stderr = common::one_line_error(&out);
    assert!(stderr.contains("does not exist"), "{stderr}");
}
