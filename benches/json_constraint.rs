//! `cargo bench --bench json_constraint`: what a refused token costs on the
//! CPU in JSON mode, under a schema and under a GBNF grammar for JSON. A refusal checks every candidate
//! in the vocabulary, the worst case of a constrained step. The tokenizer is
//! the test model's (`BENCH_MODEL`, default
//! `models/SmolLM2-135M-Instruct.Q4_1.gguf`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use llama_wgpu::engine::grammar::Grammar;
use llama_wgpu::engine::json_output::{OutputFormat, Schema};
use llama_wgpu::gguf::Gguf;
use llama_wgpu::tokenizer::Tokenizer;

/// The reply each constraint walks, one single-byte token at a time: keys,
/// a string, numbers and an array, so every kind of state takes refusals.
const REPLY: &[u8] = br#"{"name": "Ann", "age": 37, "tags": ["x", 2.5, "long tag"]}"#;

fn main() {
    let path = std::env::var("BENCH_MODEL")
        .unwrap_or_else(|_| "models/SmolLM2-135M-Instruct.Q4_1.gguf".into());
    let gguf = Gguf::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let tok = Tokenizer::from_gguf(&gguf).expect("tokenizer");
    let n = tok.vocab_size() as u32;
    let eog = (0..n)
        .find(|&i| tok.is_end_of_generation(i))
        .expect("an end-of-generation token");
    let byte_token = |b: u8| {
        (0..n)
            .find(|&i| tok.token_bytes(i) == [b])
            .expect("byte token")
    };
    let ids: Vec<u32> = REPLY.iter().map(|&b| byte_token(b)).collect();
    let schema: serde_json::Value = serde_json::from_str(
        r#"{"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "number"}]}}},
            "required": ["name", "age", "tags"]}"#,
    )
    .expect("schema JSON");
    let schema = Arc::new(Schema::compile(&schema).expect("schema"));
    let grammar = Arc::new(
        Grammar::parse(include_str!("../tests/fixtures/grammars/json.gbnf")).expect("grammar"),
    );
    println!(
        "vocabulary {n}, {} refused tokens per run, median of 5 runs",
        ids.len()
    );
    for (label, format) in [
        ("json_object", OutputFormat::JsonObject),
        ("json_schema", OutputFormat::JsonSchema(schema)),
        ("gbnf_json", OutputFormat::Grammar(grammar)),
    ] {
        let mut runs: Vec<Duration> = (0..5)
            .map(|_| {
                let mut c = format.constraint().expect("a constraint");
                let t = Instant::now();
                for &id in &ids {
                    // The sampler draws end of generation first (refused),
                    // then the best allowed candidate: the reply's byte.
                    let cand: Vec<(u32, f32)> = (0..n)
                        .map(|i| (i, if i == id { 1.0 } else { 0.0 }))
                        .collect();
                    let mut first = true;
                    let got = c
                        .choose(&tok, cand, |c| {
                            if std::mem::take(&mut first) {
                                eog
                            } else {
                                c.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap().0
                            }
                        })
                        .expect("a token fits");
                    assert_eq!(got, id);
                }
                t.elapsed()
            })
            .collect();
        runs.sort();
        let per = runs[2].as_secs_f64() * 1e3 / ids.len() as f64;
        println!("{label:12} {per:.2} ms per refused token");
    }
}
