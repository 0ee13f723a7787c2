//! `llama-wgpu info` end to end: the binary on a written file, on the real
//! SmolLM2 model, and on files it must refuse with a one-line error.

mod common;

use common::test_model_path as model_path;
use std::path::PathBuf;

use assert_cmd::Command;
use llama_wgpu::gguf::{string_array, tag, GgufWriter, Value};
use llama_wgpu::quant::TensorType;

fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli_info-{name}"));
    std::fs::write(&path, contents).unwrap();
    path
}

fn small_file() -> PathBuf {
    let mut w = GgufWriter::new();
    w.kv("general.architecture", Value::String("llama".into()))
        .kv("llama.block_count", Value::U32(2))
        .kv("llama.rope.freq_base", Value::F32(10000.0))
        .kv("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5))
        .kv(
            "tokenizer.ggml.tokens",
            string_array(&(0..100).map(|i| format!("tok{i}")).collect::<Vec<_>>()),
        )
        .kv(
            "tokenizer.ggml.scores",
            Value::array(tag::F32, vec![Value::F32(-1.5); 3]),
        )
        .kv("empty", Value::array(tag::I32, vec![]))
        .tensor(
            "token_embd.weight",
            &[64, 100],
            TensorType::Q8_0,
            vec![1; 2 * 34 * 100],
        )
        .tensor("output_norm.weight", &[64], TensorType::F32, vec![2; 256]);
    // Tests run in parallel and several use this file: a name per call keeps
    // one test from truncating it while another's `info` is reading it.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    temp_file(&format!("small-{n}.gguf"), &w.to_bytes())
}

fn run_info(args: &[&std::ffi::OsStr]) -> (bool, String, String) {
    let out = Command::cargo_bin("llama-wgpu")
        .unwrap()
        .arg("info")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    )
}

fn info_json(path: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        std::ffi::OsStr::new("-m"),
        path.as_os_str(),
        "--json".as_ref(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    let (ok, stdout, stderr) = run_info(&args);
    assert!(ok, "info --json failed: {stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{stdout}"))
}

fn info_human(path: &std::path::Path) -> String {
    let (ok, stdout, stderr) = run_info(&["-m".as_ref(), path.as_os_str()]);
    assert!(ok, "info failed: {stderr}");
    stdout
}

/// The line of `text` that starts (after indentation) with `start`.
fn line<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines()
        .find(|l| l.trim_start().starts_with(start))
        .unwrap_or_else(|| panic!("no line starting with {start:?} in:\n{text}"))
}

fn words(l: &str) -> Vec<&str> {
    l.split_whitespace().collect()
}

#[test]
fn human_output_of_a_small_file() {
    let out = info_human(&small_file());
    assert_eq!(words(line(&out, "GGUF version")), ["GGUF", "version", "3"]);
    assert_eq!(words(line(&out, "alignment")), ["alignment", "32"]);
    assert_eq!(
        words(line(&out, "general.architecture")),
        ["general.architecture", "string", "\"llama\""]
    );
    assert_eq!(
        words(line(&out, "llama.block_count")),
        ["llama.block_count", "u32", "2"]
    );
    assert_eq!(
        words(line(&out, "llama.attention.layer_norm_rms_epsilon")),
        ["llama.attention.layer_norm_rms_epsilon", "f32", "0.00001"]
    );
    assert_eq!(
        words(line(&out, "tokenizer.ggml.tokens")),
        ["tokenizer.ggml.tokens", "array[string]", "[string;", "100]"]
    );
    assert_eq!(
        words(line(&out, "tokenizer.ggml.scores")),
        [
            "tokenizer.ggml.scores",
            "array[f32]",
            "[-1.5,",
            "-1.5,",
            "-1.5]"
        ]
    );
    assert_eq!(words(line(&out, "empty")), ["empty", "array[i32]", "[]"]);
    assert_eq!(
        words(line(&out, "token_embd.weight")),
        ["token_embd.weight", "Q8_0", "64", "x", "100", "6.6", "KiB"]
    );
    assert_eq!(
        words(line(&out, "output_norm.weight")),
        ["output_norm.weight", "F32", "64", "256", "B"]
    );
    assert!(line(&out, "2 tensors").contains("6.5K parameters"), "{out}");
    assert_eq!(
        words(line(&out, "types:")),
        ["types:", "F32", "1,", "Q8_0", "1"]
    );
    // Metadata comes before tensors, in file order.
    assert!(out.find("general.architecture").unwrap() < out.find("llama.block_count").unwrap());
    assert!(out.find("empty").unwrap() < out.find("token_embd.weight").unwrap());
}

#[test]
fn json_output_of_a_small_file() {
    let path = small_file();
    let j = info_json(&path, &[]);
    assert_eq!(j["file"], path.display().to_string());
    assert_eq!(j["version"], 3);
    assert_eq!(j["alignment"], 32);
    assert_eq!(j["data_offset"].as_u64().unwrap() % 32, 0);
    assert_eq!(j["file_size"], std::fs::metadata(&path).unwrap().len());
    let md = &j["metadata"];
    assert_eq!(md["general.architecture"], "llama");
    assert_eq!(md["llama.block_count"], 2);
    assert_eq!(md["llama.rope.freq_base"], 10000.0);
    assert_eq!(md["llama.attention.layer_norm_rms_epsilon"], 1e-5);
    assert_eq!(
        md["tokenizer.ggml.scores"],
        serde_json::json!([-1.5, -1.5, -1.5])
    );
    assert_eq!(md["empty"], serde_json::json!([]));
    // 100 tokens is over the summary limit: the length and the first few stay.
    let tokens = &md["tokenizer.ggml.tokens"];
    assert_eq!(tokens["length"], 100);
    assert_eq!(tokens["element_type"], "string");
    assert_eq!(tokens["head"][0], "tok0");
    assert_eq!(
        j["metadata_types"]["tokenizer.ggml.tokens"],
        "array[string]"
    );
    assert_eq!(j["metadata_types"]["llama.block_count"], "u32");

    let tensors = j["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 2);
    assert_eq!(
        tensors[0],
        serde_json::json!({"name": "token_embd.weight", "type": "Q8_0", "shape": [64, 100], "offset": 0, "bytes": 6800})
    );
    assert_eq!(tensors[1]["name"], "output_norm.weight");
    assert_eq!(tensors[1]["offset"], 6816);
    assert_eq!(j["totals"]["tensors"], 2);
    assert_eq!(j["totals"]["parameters"], 6464);
    assert_eq!(j["totals"]["bytes"], 7056);
    assert_eq!(
        j["totals"]["types"],
        serde_json::json!({"Q8_0": 1, "F32": 1})
    );

    // --full prints the whole array.
    let full = info_json(&path, &["--full"]);
    let tokens = full["metadata"]["tokenizer.ggml.tokens"]
        .as_array()
        .unwrap();
    assert_eq!(tokens.len(), 100);
    assert_eq!(tokens[99], "tok99");
}

#[test]
fn smollm2_human() {
    let out = info_human(&model_path());
    assert_eq!(
        words(line(&out, "llama.block_count")),
        ["llama.block_count", "u32", "30"]
    );
    assert_eq!(
        words(line(&out, "token_embd.weight")),
        [
            "token_embd.weight",
            "Q8_0",
            "576",
            "x",
            "49152",
            "28.7",
            "MiB"
        ]
    );
    assert_eq!(
        words(line(&out, "tokenizer.ggml.tokens")),
        [
            "tokenizer.ggml.tokens",
            "array[string]",
            "[string;",
            "49152]"
        ]
    );
    assert!(
        line(&out, "272 tensors").contains("134.5M parameters"),
        "{out}"
    );
    assert_eq!(
        words(line(&out, "types:")),
        ["types:", "Q4_1", "210,", "F32", "61,", "Q8_0", "1"]
    );
    // The chat template is cut to one line.
    let template = line(&out, "tokenizer.chat_template");
    assert!(
        template.len() < 200 && template.ends_with("bytes)"),
        "{template}"
    );
}

#[test]
fn smollm2_json() {
    let j = info_json(&model_path(), &[]);
    assert_eq!(j["version"], 3);
    assert_eq!(j["metadata"]["llama.block_count"], 30);
    assert_eq!(j["metadata"]["tokenizer.ggml.tokens"]["length"], 49152);
    let tensors = j["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 272);
    assert_eq!(j["totals"]["tensors"], 272);
    let emb = tensors
        .iter()
        .find(|t| t["name"] == "token_embd.weight")
        .unwrap();
    assert_eq!(emb["shape"], serde_json::json!([576, 49152]));
    assert_eq!(emb["type"], "Q8_0");
    assert_eq!(emb["bytes"], 576 / 32 * 34 * 49152);
    let bytes: u64 = tensors.iter().map(|t| t["bytes"].as_u64().unwrap()).sum();
    assert_eq!(j["totals"]["bytes"], bytes);
}

#[test]
fn file_without_tensors_or_padding() {
    // The aligned data offset (32) lies past the end of this 28-byte file.
    let mut b = b"GGUF\x03\0\0\0".to_vec();
    b.resize(28, 0);
    let path = temp_file("unpadded.gguf", &b);
    let j = info_json(&path, &[]);
    assert_eq!(
        (j["data_offset"].as_u64(), j["data_size"].as_u64()),
        (Some(32), Some(0))
    );
    assert_eq!(j["totals"]["tensors"], 0);
    let out = info_human(&path);
    assert_eq!(words(line(&out, "types:")), ["types:", "none"]);
}

#[track_caller]
fn assert_one_line_error(args: &[&std::ffi::OsStr], mentions: &[&str]) {
    let (ok, stdout, stderr) = run_info(args);
    assert!(!ok, "info succeeded on a bad file");
    assert!(
        stdout.is_empty(),
        "results belong on stdout only; got {stdout:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "error is not one line: {stderr:?}"
    );
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    for m in mentions {
        assert!(
            stderr.contains(m),
            "error {stderr:?} does not mention {m:?}"
        );
    }
}

#[test]
fn missing_file() {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli_info-missing.gguf");
    assert_one_line_error(
        &["-m".as_ref(), path.as_os_str()],
        &["cli_info-missing.gguf", "does not exist"],
    );
}

#[test]
fn not_a_gguf_file() {
    let path = temp_file("readme.txt", b"# Not a model\nJust some text.\n");
    assert_one_line_error(
        &["-m".as_ref(), path.as_os_str()],
        &["cli_info-readme.txt", "not a GGUF file"],
    );
    let json: Vec<&std::ffi::OsStr> = vec!["-m".as_ref(), path.as_os_str(), "--json".as_ref()];
    assert_one_line_error(&json, &["cli_info-readme.txt", "not a GGUF file"]);
}

#[test]
fn corrupt_gguf_file() {
    let mut b = GgufWriter::new()
        .tensor("blk.0.attn_q.weight", &[32], TensorType::Q8_0, vec![0; 34])
        .to_bytes();
    b.truncate(b.len() - 40);
    let path = temp_file("cut.gguf", &b);
    assert_one_line_error(
        &["-m".as_ref(), path.as_os_str()],
        &["cli_info-cut.gguf", "'blk.0.attn_q.weight'"],
    );
}

#[test]
fn directory() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    assert_one_line_error(&["-m".as_ref(), dir.as_os_str()], &["directory"]);
}
