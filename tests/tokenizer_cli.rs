//! `llama-wgpu tokenize`, checked against the SmolLM2 fixture (ids from
//! transformers, pieces from llama.cpp) and llama.cpp's SentencePiece vectors.

mod common;

use common::test_model_path as model_path;
use std::path::Path;

use assert_cmd::Command;
use serde_json::Value as Json;

fn crate_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> Json {
    let p = crate_root().join("tests/fixtures/tokenizer/smollm2.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// The fixture case for `text`: (ids with special tokens parsed, ids without).
fn case(f: &Json, text: &str) -> (Vec<u64>, Vec<u64>) {
    let c = f["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["text"] == text)
        .unwrap_or_else(|| panic!("no fixture case {text:?}"));
    let ids = |k: &str| {
        c[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect()
    };
    (ids("ids_special"), ids("ids_plain"))
}

/// llama.cpp's piece for an id, special tokens rendered.
fn piece(f: &Json, id: u64) -> String {
    f["llama_cpp_pieces"][id.to_string()][0]
        .as_str()
        .unwrap()
        .to_owned()
}

fn tokenize(args: &[&str]) -> assert_cmd::assert::Assert {
    Command::cargo_bin("llama-wgpu")
        .unwrap()
        .arg("tokenize")
        .args(args)
        .assert()
}

fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(a.get_output().stdout.clone()).unwrap()
}

#[test]
fn human_output_is_llama_tokenize_layout() {
    let f = fixture();
    let model = model_path();
    let text = "Hello<|im_end|>";
    let (special, _) = case(&f, text);
    let a = tokenize(&["-m", model.to_str().unwrap(), "-p", text]).success();
    let want: String = special
        .iter()
        .map(|&id| format!("{id:6} -> '{}'\n", piece(&f, id)))
        .collect();
    assert_eq!(stdout(&a), want);
}

#[test]
fn json_output_has_ids_and_pieces() {
    let f = fixture();
    let model = model_path();
    for text in [
        "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
        "naïve café résumé",
        "1234567890",
    ] {
        let (special, plain) = case(&f, text);
        for (extra, want) in [(None, &special), (Some("--no-parse-special"), &plain)] {
            let mut args = vec!["-m", model.to_str().unwrap(), "-p", text, "--json"];
            args.extend(extra);
            let a = tokenize(&args).success();
            let out: Json = serde_json::from_str(&stdout(&a)).unwrap();
            let ids: Vec<u64> = out["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect();
            assert_eq!(&ids, want, "{text:?} {extra:?}");
            let pieces: Vec<String> = out["pieces"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_owned())
                .collect();
            let want_pieces: Vec<String> = want.iter().map(|&id| piece(&f, id)).collect();
            assert_eq!(pieces, want_pieces, "{text:?}");
        }
    }
}

#[test]
fn file_input_and_ids_output() {
    let f = fixture();
    let model = model_path();
    let text = "def f(x):\n    return x**2\n";
    let (special, _) = case(&f, text);
    let path = std::env::temp_dir().join(format!("llama-wgpu-tokenize-{}.txt", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let a = tokenize(&[
        "-m",
        model.to_str().unwrap(),
        "-f",
        path.to_str().unwrap(),
        "--ids",
    ])
    .success();
    std::fs::remove_file(&path).ok();
    let list: Vec<String> = special.iter().map(u64::to_string).collect();
    assert_eq!(stdout(&a), format!("[{}]\n", list.join(", ")));
}

#[test]
fn bos_follows_the_vocabulary() {
    // The Llama vocabulary asks for BOS; llama.cpp's vector for "Hello world" has none.
    let vocab = crate_root().join("../shared/testdata/tokenizer/ggml-vocab-llama-spm.gguf");
    assert!(vocab.exists(), "{} is missing", vocab.display());
    let inp = std::fs::read_to_string(vocab.with_extension("gguf.inp")).unwrap();
    let out = std::fs::read_to_string(vocab.with_extension("gguf.out")).unwrap();
    let idx = inp
        .split("\n__ggml_vocab_test__\n")
        .position(|t| t == "Hello world")
        .unwrap();
    let expected: Vec<&str> = out.lines().nth(idx).unwrap().split_whitespace().collect();
    let v = vocab.to_str().unwrap();
    let with_bos = stdout(&tokenize(&["-m", v, "-p", "Hello world", "--ids"]).success());
    assert_eq!(with_bos, format!("[1, {}]\n", expected.join(", ")));
    let without = stdout(&tokenize(&["-m", v, "-p", "Hello world", "--ids", "--no-bos"]).success());
    assert_eq!(without, format!("[{}]\n", expected.join(", ")));
}

#[test]
fn errors_are_one_line_and_fail() {
    let a = tokenize(&["-m", "/nonexistent/model.gguf", "-p", "x"]).failure();
    let err = String::from_utf8(a.get_output().stderr.clone()).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/model.gguf"), "{err}");
    assert!(a.get_output().stdout.is_empty());

    // A GGUF without a vocabulary.
    let path = std::env::temp_dir().join(format!("llama-wgpu-novocab-{}.gguf", std::process::id()));
    std::fs::write(&path, llama_wgpu::gguf::GgufWriter::new().to_bytes()).unwrap();
    let a = tokenize(&["-m", path.to_str().unwrap(), "-p", "x"]).failure();
    std::fs::remove_file(&path).ok();
    let err = String::from_utf8(a.get_output().stderr.clone()).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("tokenizer.ggml.model"), "{err}");

    // Neither -p nor -f.
    tokenize(&["-m", model_path().to_str().unwrap()]).failure();
}
