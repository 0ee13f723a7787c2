//! `llama-wgpu bench`: output formats and the JSON schema, on a tiny synthetic model.

use assert_cmd::Command;

fn bench(args: &[&str]) -> assert_cmd::assert::Assert {
    Command::cargo_bin("llama-wgpu")
        .unwrap()
        .arg("bench")
        .args(args)
        .assert()
}

#[test]
fn json_rows_have_the_documented_fields() {
    let out = bench(&[
        "--synthetic",
        "tiny:q4_0",
        "-p",
        "4",
        "-n",
        "3",
        "-r",
        "2",
        "-o",
        "json",
        "--peak-gbps",
        "100",
    ])
    .success();
    let v: serde_json::Value =
        serde_json::from_slice(&out.get_output().stdout).expect("stdout is one JSON document");
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["test"], "pp4");
    assert_eq!(rows[1]["test"], "tg3");
    for r in rows {
        for key in ["model", "types", "backend", "adapter", "driver"] {
            assert!(r[key].is_string(), "{key}: {r}");
        }
        assert!(r["model"].as_str().unwrap().contains("tiny"));
        // Q4_0 matrices, Q6_K output projection (llama.cpp's choice for 256-wide rows).
        assert_eq!(r["types"], "Q4_0,Q6_K");
        for key in ["size_bytes", "params", "bytes_per_token"] {
            assert!(r[key].as_u64().unwrap() > 0, "{key}: {r}");
        }
        assert!(r["tokens_per_second"].as_f64().unwrap() > 0.0);
        assert!(r["tokens_per_second_stddev"].as_f64().unwrap() >= 0.0);
        assert_eq!(r["repetitions"], 2);
        assert_eq!(r["samples_tokens_per_second"].as_array().unwrap().len(), 2);
        let gbps = r["effective_gbps"].as_f64().unwrap();
        let expect =
            r["bytes_per_token"].as_f64().unwrap() * r["tokens_per_second"].as_f64().unwrap() / 1e9;
        assert!((gbps - expect).abs() <= 1e-9 * expect.max(1.0), "{r}");
        assert_eq!(r["peak_gbps"], 100.0);
        assert!((r["percent_of_peak"].as_f64().unwrap() - gbps).abs() < 1e-9);
    }
}

#[test]
fn markdown_csv_and_jsonl_outputs() {
    let md = bench(&["--synthetic", "tiny:f16", "-p", "2", "-n", "0", "-r", "1"]).success();
    let text = String::from_utf8(md.get_output().stdout.clone()).unwrap();
    assert!(text.starts_with("| model |"), "{text}");
    assert_eq!(text.lines().count(), 3, "header, rule, one row:\n{text}");
    let csv = bench(&[
        "--synthetic",
        "tiny:f16",
        "-p",
        "0",
        "-n",
        "2",
        "-r",
        "1",
        "-o",
        "csv",
    ])
    .success();
    let text = String::from_utf8(csv.get_output().stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.lines().nth(1).unwrap().contains(",tg2,"));
    let jsonl = bench(&[
        "--synthetic",
        "tiny:q8_0",
        "-p",
        "2",
        "-n",
        "2",
        "-r",
        "1",
        "-o",
        "jsonl",
    ])
    .success();
    let text = String::from_utf8(jsonl.get_output().stdout.clone()).unwrap();
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
    assert_eq!(text.lines().count(), 2);
}

#[test]
fn bad_arguments_are_one_line_errors() {
    for (args, needle) in [
        (vec!["--synthetic", "llama9-1b:q4_0"], "unknown shape"),
        (vec!["--synthetic", "tiny:q9_9"], "unknown tensor type"),
        (vec!["--synthetic", "tiny"], "SHAPE:TYPE"),
        (vec!["--synthetic", "tiny:q4_0", "-o", "xml"], "expected md"),
        (vec!["-m", "/nonexistent.gguf"], "does not exist"),
        (
            vec!["--synthetic", "tiny:q4_0", "--parallel", "0"],
            "--parallel",
        ),
    ] {
        let out = bench(&args).failure();
        let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn profile_reports_every_kernel_family_with_its_method() {
    let out = bench(&[
        "--synthetic",
        "tiny:q5_k",
        "-p",
        "40",
        "-b",
        "32",
        "-n",
        "2",
        "-r",
        "1",
        "-o",
        "json",
        "--profile",
    ])
    .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    // pp40 with -b 32: one chunk of 32 (the matmul) and one of 8 (the
    // few-token matvec); the head (output projection, one row) runs once.
    let pp = v[0]["profile_ms_per_token"].as_object().unwrap();
    assert_eq!(v[0]["test"], "pp40");
    for family in [
        "matmul_q5_k",
        "matvec_multi_q5_k",
        "matvec_q6_k",
        "rope_kv",
        "attention",
        "rmsnorm",
    ] {
        assert!(pp[family].as_f64().unwrap() > 0.0, "{family}: {pp:?}");
    }
    let row = &v[1];
    assert_eq!(row["test"], "tg2");
    assert!(
        row["profile_method"]
            .as_str()
            .unwrap()
            .contains("timestamp")
            || row["profile_method"]
                .as_str()
                .unwrap()
                .contains("CPU wall time")
    );
    let p = row["profile_ms_per_token"].as_object().unwrap();
    for family in ["embedding", "rmsnorm", "matvec_q5_k", "attention", "argmax"] {
        assert!(p[family].as_f64().unwrap() > 0.0, "{family}: {p:?}");
    }
    // Decode folds SwiGLU into the gate/up matvec, RoPE and the f16 KV
    // store into the Q/K/V matvec (and the layers' norms into the matvecs:
    // only the head's RMSNorm is left): 6 dispatches a layer, one
    // submission per token; the 32-token prefill chunk keeps its norms,
    // RoPE kernel and SwiGLU (12 a layer).
    assert!(!p.contains_key("swiglu"), "{p:?}");
    assert!(!p.contains_key("rope_kv"), "{p:?}");
    assert_eq!(row["dispatches_per_layer"], 6, "{row}");
    assert_eq!(row["submissions_per_token"], 1.0, "{row}");
    assert_eq!(v[0]["dispatches_per_layer"], 12, "{}", v[0]);
    assert!(row["dispatches_per_token"].as_f64().unwrap() > 7.0, "{row}");
    // The output projection of a tiny Q5_K model is Q6_K (llama.cpp's rule).
    assert!(p.contains_key("matvec_q6_k"), "{p:?}");
    assert!(!p.contains_key("matmul_q5_k"), "{p:?}");
}

/// A file and its synthetic twin, side by side in one run: one row each per
/// test, grouped by model, with identical size, parameters, types and bytes
/// per token (the synthetic one reads exactly what the file does).
#[test]
fn a_file_and_its_synthetic_twin_run_side_by_side() {
    use llama_wgpu::model::synthetic::{synthetic_gguf_mixed, LlamaShape};
    use llama_wgpu::quant::TensorType;
    let path = std::env::temp_dir().join(format!("llama-wgpu-bench-{}.gguf", std::process::id()));
    let bytes =
        synthetic_gguf_mixed(&LlamaShape::tiny(), TensorType::Q4_0, TensorType::Q6_K, 3).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let out = bench(&[
        "-m",
        path.to_str().unwrap(),
        "--synthetic",
        "tiny:q4_0",
        "-p",
        "4",
        "-n",
        "3",
        "-r",
        "1",
        "-o",
        "json",
    ])
    .success();
    std::fs::remove_file(&path).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let rows = v.as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["model"].as_str().unwrap()).collect();
    let tests: Vec<&str> = rows.iter().map(|r| r["test"].as_str().unwrap()).collect();
    assert!(
        names[0].ends_with(".gguf") && names[1] == names[0],
        "{names:?}"
    );
    assert!(
        names[2].contains("synthetic") && names[3] == names[2],
        "{names:?}"
    );
    assert_eq!(tests, ["pp4", "tg3", "pp4", "tg3"]);
    for (file, synth) in rows[..2].iter().zip(&rows[2..]) {
        for key in ["size_bytes", "params", "types", "bytes_per_token"] {
            assert_eq!(file[key], synth[key], "{key}");
        }
    }
}

/// `--parallel 1,3`: one row per (test, N), N in `n_parallel`, with
/// aggregate throughput over N sequences and the shared weight bytes split
/// between them.
#[test]
fn parallel_rows_per_sequence_count() {
    let out = bench(&[
        "--synthetic",
        "tiny:q8_0",
        "-p",
        "5",
        "-n",
        "4",
        "-r",
        "1",
        "--parallel",
        "1,3",
        "-o",
        "json",
    ])
    .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let rows = v.as_array().unwrap();
    let got: Vec<(String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["test"].as_str().unwrap().to_string(),
                r["n_parallel"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64)> = [("pp5", 1), ("pp5", 3), ("tg4", 1), ("tg4", 3)]
        .iter()
        .map(|&(t, n)| (t.to_string(), n))
        .collect();
    assert_eq!(got, want);
    for r in rows {
        assert!(r["tokens_per_second"].as_f64().unwrap() > 0.0, "{r}");
    }
    // Three sequences share each step's weight reads.
    assert!(rows[3]["bytes_per_token"].as_u64() < rows[2]["bytes_per_token"].as_u64());
}

/// `-d`: tests after the cache holds d tokens, labelled as llama-bench's;
/// the bytes per token count the KV cache read at that depth, in the
/// cache's types (`-ctk/-ctv`, llama.cpp's spelling).
#[test]
fn depth_runs_after_a_filled_cache_and_counts_its_bytes() {
    let rows = |extra: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec![
            "--synthetic",
            "tiny:q8_0",
            "-p",
            "8",
            "-n",
            "2",
            "-d",
            "0,200",
            "-r",
            "1",
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        let out = bench(&args).success();
        serde_json::from_slice::<serde_json::Value>(&out.get_output().stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    let f16 = rows(&[]);
    let tests: Vec<(String, u64)> = f16
        .iter()
        .map(|r| {
            (
                r["test"].as_str().unwrap().to_string(),
                r["n_depth"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tests,
        [("pp8", 0), ("tg2", 0), ("pp8", 200), ("tg2", 200)].map(|(t, d)| (t.to_string(), d))
    );
    let bytes = |rs: &[serde_json::Value], i: usize| rs[i]["bytes_per_token"].as_u64().unwrap();
    // tiny: 2 layers x (K + V) x 128 values x 2 bytes = 1 KiB of f16 cache
    // per position; tg2 at depth 200 reads 200.5 positions more on average.
    let kv = |depth_bytes: u64, base: u64| depth_bytes - base;
    assert_eq!(kv(bytes(&f16, 3), bytes(&f16, 1)), 200 * 1024);
    // Q8_0 K and V: 136 bytes per 128 values.
    let q8 = rows(&["-ctk", "q8_0", "-ctv", "q8_0"]);
    assert_eq!(kv(bytes(&q8, 3), bytes(&q8, 1)), 200 * 2 * 2 * 136);
    let md = bench(&[
        "--synthetic",
        "tiny:q8_0",
        "-p",
        "0",
        "-n",
        "2",
        "-d",
        "16",
        "-r",
        "1",
    ])
    .success();
    let text = String::from_utf8(md.get_output().stdout.clone()).unwrap();
    assert!(text.contains("tg2 @ d16"), "{text}");
}

#[test]
fn bad_context_flags_are_one_line_errors() {
    for (args, needle) in [
        (vec!["-ctk", "q5_1"], "unsupported KV cache type 'q5_1'"),
        (vec!["--cache-type-v", "bf16"], "--cache-type-v"),
        (vec!["--gpu-memory", "lots"], "--gpu-memory"),
        (vec!["--rope-scaling", "ntk"], "--rope-scaling 'ntk'"),
        (vec!["--rope-freq-scale=-1"], "--rope-freq-scale"),
        (vec!["--gpu-memory", "1M"], "more than the"),
    ] {
        let mut a = vec!["--synthetic", "tiny:q4_0", "-p", "0", "-n", "1", "-r", "1"];
        a.extend(args.iter());
        let out = bench(&a).failure();
        let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
