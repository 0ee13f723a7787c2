//! `llama-wgpu generate` end to end on SmolLM2: determinism, seeds, JSON, errors.

mod common;

use assert_cmd::Command;

fn generate(args: &[&str]) -> assert_cmd::assert::Assert {
    let model = common::test_model_path();
    Command::cargo_bin("llama-wgpu")
        .unwrap()
        .args([
            "generate",
            "-m",
            model.to_str().unwrap(),
            "-p",
            "The capital of France is",
            "-n",
            "4",
        ])
        .args(args)
        .assert()
}

fn json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = generate(&all).success();
    serde_json::from_slice(&out.get_output().stdout).expect("stdout is exactly one JSON object")
}

#[test]
fn greedy_is_deterministic_and_matches_the_exact_reference() {
    let a = json(&["--temp", "0", "--top-logits", "3"]);
    let b = json(&["--temp", "0", "--top-logits", "3"]);
    assert_eq!(a["generated_ids"], b["generated_ids"]);
    assert_eq!(a["text"], b["text"]);
    // The first greedy tokens of tests/fixtures/model/smollm2_f64.json: " Paris", ".", "\n", "\n".
    assert_eq!(a["generated_ids"], serde_json::json!([7042, 30, 198, 198]));
    assert_eq!(
        a["prompt_ids"],
        serde_json::json!([504, 3575, 282, 4649, 314])
    );
    assert!(a["text"].as_str().unwrap().starts_with(" Paris."));
    let top = a["top_logits"].as_array().unwrap();
    assert_eq!(top.len(), 4);
    assert_eq!(
        top[0][0][0], 7042,
        "the best raw logit is the greedy choice"
    );
    for key in [
        "prompt_tokens_per_second",
        "generation_tokens_per_second",
        "load_ms",
    ] {
        assert!(a["timings"][key].is_number(), "{key}");
    }
}

#[test]
fn a_seed_fixes_sampled_text() {
    let a = json(&[
        "--temp", "1.5", "--top-k", "0", "--top-p", "1", "--min-p", "0", "--seed", "11",
    ]);
    let b = json(&[
        "--temp", "1.5", "--top-k", "0", "--top-p", "1", "--min-p", "0", "--seed", "11",
    ]);
    assert_eq!(a["generated_ids"], b["generated_ids"]);
    assert_eq!(a["seed"], 11);
}

#[test]
fn errors_are_one_line() {
    let out = Command::cargo_bin("llama-wgpu")
        .unwrap()
        .args(["generate", "-m", "/nonexistent/model.gguf", "-p", "hi"])
        .assert()
        .failure();
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(
        err.contains("error: model file /nonexistent/model.gguf does not exist"),
        "{err}"
    );
    let long = "word ".repeat(100);
    let model = common::test_model_path();
    let out = Command::cargo_bin("llama-wgpu")
        .unwrap()
        .args([
            "generate",
            "-m",
            model.to_str().unwrap(),
            "-c",
            "16",
            "-p",
            &long,
        ])
        .assert()
        .failure();
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(err.contains("does not fit in the context"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
