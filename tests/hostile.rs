//! Hostile model files and templates (issue 18): each test builds a small
//! input that used to hang, exhaust memory or panic, and checks that it now
//! ends in a clean error or a bounded success. Where the bound is the point,
//! the binary runs under an address-space limit (RLIMIT_AS) and a wall-clock
//! limit, so a regression fails the test instead of the machine.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use llama_wgpu::gguf::{string_array, tag, Gguf, GgufWriter, Value};
use llama_wgpu::tokenizer::{ChatMessage, ChatTemplate, Tokenizer};

const BIN: &str = env!("CARGO_BIN_EXE_llama-wgpu");

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("llama-wgpu-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the binary with at most `mem_mb` MiB of address space and `secs`
/// seconds of wall-clock time; a run past the time is killed and fails.
fn run_limited(args: &[&str], mem_mb: u64, secs: u64) -> Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let bytes = mem_mb << 20;
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn llama-wgpu");
    // Drain the pipes on threads so a chatty child cannot block on them.
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out_pipe, &mut v).ok();
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err_pipe, &mut v).ok();
        v
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            child.kill().ok();
            child.wait().ok();
            panic!("llama-wgpu {args:?} ran past its {secs} s limit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "status {:?}, stderr: {}",
        out.status,
        stderr(out)
    );
}

fn write(dir: &Path, name: &str, w: &GgufWriter) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, w.to_bytes()).unwrap();
    p
}

/// A byte-level BPE vocabulary: the tokens as given, no merges.
fn gpt2_vocab(tokens: &[String]) -> GgufWriter {
    let mut w = GgufWriter::new();
    w.kv("tokenizer.ggml.model", Value::String("gpt2".into()))
        .kv("tokenizer.ggml.pre", Value::String("gpt-2".into()))
        .kv("tokenizer.ggml.tokens", string_array(tokens))
        .kv("tokenizer.ggml.merges", string_array::<&str>(&[]));
    w
}

/// A SentencePiece vocabulary: the tokens as given, scores by position.
fn spm_vocab(tokens: &[String]) -> GgufWriter {
    let scores = (0..tokens.len()).map(|i| Value::F32(-(i as f32))).collect();
    let mut w = GgufWriter::new();
    w.kv("tokenizer.ggml.model", Value::String("llama".into()))
        .kv("tokenizer.ggml.tokens", string_array(tokens))
        .kv("tokenizer.ggml.scores", Value::array(tag::F32, scores));
    w
}

// --- 1. byte-level decoding, linear in the token --------------------------

/// One gpt2 token of 50,000 `Ж` (no byte-level character): llama.cpp's
/// marker repeats the token per character, 5 GB at load.
#[test]
fn long_non_byte_level_token_loads_in_bounded_memory() {
    let dir = scratch("bytelevel");
    let tokens = vec!["a".to_string(), "Ж".repeat(50_000)];
    let model = write(&dir, "vocab.gguf", &gpt2_vocab(&tokens));
    let out = run_limited(
        &["tokenize", "-m", model.to_str().unwrap(), "-p", "a"],
        768,
        60,
    );
    assert_success(&out);
}

/// The same token through a tokenizer.json (its ByteLevel decoder).
#[test]
fn long_non_byte_level_token_in_tokenizer_json_loads_in_bounded_memory() {
    let dir = scratch("bytelevel-json");
    let long = "Ж".repeat(50_000);
    let json = serde_json::json!({
        "version": "1.0",
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "vocab": {"a": 0, long: 1}, "merges": []}
    });
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, json.to_string()).unwrap();
    let out = run_limited(
        &["tokenize", "-m", path.to_str().unwrap(), "-p", "a"],
        768,
        60,
    );
    assert_success(&out);
}

/// A tokenizer.json whose token ids are not below its vocabulary's size:
/// encoding produced ids past every per-token table.
#[test]
fn tokenizer_json_ids_past_the_vocabulary_size_are_refused() {
    let dir = scratch("json-ids");
    let json = serde_json::json!({
        "version": "1.0", "added_tokens": [], "normalizer": null, "pre_tokenizer": null,
        "post_processor": null, "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "vocab": {"a": 0, "b": 4000000000u64}, "merges": []}
    });
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, json.to_string()).unwrap();
    let err = match Tokenizer::from_tokenizer_json(&path) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("id 4000000000"), "{err}");
}

/// Found by the tokenizer_json fuzz target: the tokenizers crate panics on a
/// syntax error inside `decoder` and on a Precompiled normalizer of the wrong
/// shape; both are one-line errors.
#[test]
fn malformed_tokenizer_json_components_are_errors_not_panics() {
    let dir = scratch("json-panics");
    let base = r#"{"version": "1.0", "added_tokens": [], "normalizer": NORM, "pre_tokenizer": null, "post_processor": null, "decoder": DEC, "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "vocab": {"a": 0}, "merges": []}}"#;
    let cases = [
        (
            "decoder-syntax",
            base.replace("NORM", "null")
                .replace("DEC", r#"{"type": "Se": "ByteLevel"}"#),
        ),
        (
            "precompiled",
            base.replace(
                "NORM",
                r#"{"type": "Precompiled", "precompiled_charsmap": 5}"#,
            )
            .replace("DEC", "null"),
        ),
    ];
    for (name, json) in cases {
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, json).unwrap();
        let out = run_limited(
            &["tokenize", "-m", path.to_str().unwrap(), "-p", "a"],
            1024,
            30,
        );
        let err = common::one_line_error(&out);
        assert!(err.contains("cannot load tokenizer"), "{name}: {err}");
    }
}

// --- 2. metadata: error context formatted lazily, compact arrays ----------

/// A 2 MB key holding a 2 M-element u8 array (a 4 MB file): formatting the
/// key into an error context once per element was 4e12 bytes of work.
#[test]
fn long_key_with_long_array_parses_in_linear_time() {
    let dir = scratch("longkey");
    let key = "k".repeat(2 << 20);
    let mut w = GgufWriter::new();
    w.kv(
        &key,
        Value::Array(llama_wgpu::gguf::Array::U8(vec![7; 2 << 20])),
    );
    let model = write(&dir, "longkey.gguf", &w);
    let out = run_limited(&["info", "-m", model.to_str().unwrap()], 768, 30);
    assert_success(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("[u8; 2097152]"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// 48 M one-byte elements: as a `Vec<Value>` (32 bytes each) 1.5 GB, as
/// bytes 48 MB.
#[test]
fn numeric_metadata_arrays_take_their_file_size_in_memory() {
    let dir = scratch("bigarray");
    let mut w = GgufWriter::new();
    w.kv(
        "big",
        Value::Array(llama_wgpu::gguf::Array::U8(vec![1; 48 << 20])),
    )
    .kv("floats", Value::array(tag::F32, vec![Value::F32(0.5); 3]));
    let model = write(&dir, "bigarray.gguf", &w);
    let out = run_limited(&["info", "-m", model.to_str().unwrap()], 768, 60);
    assert_success(&out);
    // And the values survive the compact form.
    let g = Gguf::open(&model).unwrap();
    let big = g.get_array("big").unwrap();
    assert_eq!((big.len(), big.u64_at(12345)), (48 << 20, Some(1)));
    assert_eq!(g.get_array("floats").unwrap().get(2), Some(Value::F32(0.5)));
}

// --- 3. SentencePiece merges: linear search, budgeted count -----------------

/// Tokens `a`, `aa`, ... up to 4,000 `a`s (an 8 MB file): every split of
/// every token is a merge, 8 M merges and 21 GB of strings.
#[test]
fn spm_vocabulary_with_quadratic_merges_is_refused_quickly() {
    let dir = scratch("spm-merges");
    let tokens: Vec<String> = (1..=4000).map(|n| "a".repeat(n)).collect();
    let model = write(&dir, "aaaa.gguf", &spm_vocab(&tokens));
    let out = run_limited(
        &["tokenize", "-m", model.to_str().unwrap(), "-p", "aaa"],
        1024,
        60,
    );
    let err = common::one_line_error(&out);
    assert!(err.contains("merges") && err.contains("budget"), "{err}");
}

/// One 1 MB token (`ab` repeated) beside `a`, `b`, `ab`: hashing each split
/// point's halves was quadratic (5e11 bytes); the tries walk it once.
#[test]
fn spm_vocabulary_with_a_huge_token_loads_in_linear_time() {
    let dir = scratch("spm-long");
    let tokens: Vec<String> = ["a", "b", "ab"]
        .into_iter()
        .map(String::from)
        .chain(["ab".repeat(1 << 19)])
        .collect();
    let model = write(&dir, "long.gguf", &spm_vocab(&tokens));
    let out = run_limited(
        &[
            "tokenize",
            "-m",
            model.to_str().unwrap(),
            "-p",
            "abab",
            "--ids",
        ],
        1024,
        60,
    );
    assert_success(&out);
}

/// The trie-derived merges tokenize as before on a small vocabulary where
/// several splits of one token compete.
#[test]
fn spm_merges_from_the_tries_pick_the_best_split() {
    let tokens: Vec<String> = ["▁", "a", "b", "c", "ab", "bc", "abc", "▁abc"]
        .into_iter()
        .map(String::from)
        .collect();
    let g = Gguf::from_bytes(spm_vocab(&tokens).to_bytes()).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    // "abc" is reachable by a+bc and ab+c; either way the text is one token.
    let ids = tok.encode("abc", false, false).unwrap();
    assert_eq!(ids, vec![7], "{ids:?}");
}

// --- 4. chat templates: fuel, output cap, depth-limited tojson ------------

fn render(src: &str) -> (Result<String, String>, Duration) {
    let t = ChatTemplate::new(src, "hostile.jinja").unwrap();
    let msgs = [ChatMessage::new("user", "hi")];
    let start = Instant::now();
    let r = t.render(&msgs, true).map_err(|e| e.to_string());
    (r, start.elapsed())
}

/// Asserts a one-line error naming the template, within a second.
fn assert_refused(src: &str, want: &str) {
    let (r, took) = render(src);
    let err = r.expect_err("the render should be refused");
    assert!(err.contains("hostile.jinja") && err.contains(want), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn template_nested_loops_run_out_of_fuel() {
    // 10^10 iterations without fuel.
    assert_refused(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "template steps",
    );
}

#[test]
fn template_concatenation_in_a_loop_is_bounded() {
    assert_refused(
        "{% set ns = namespace(s='') %}{% for i in range(100000) %}{% for j in range(100000) %}{% set ns.s = ns.s ~ 'xxxxxxxxxxxxxxxx' %}{% endfor %}{% endfor %}{{ ns.s }}",
        "template steps",
    );
}

#[test]
fn template_output_is_capped() {
    // 100 KB per step: 1 MiB of output is reached long before the fuel runs out.
    assert_refused(
        "{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}",
        "exceeds",
    );
}

#[test]
fn tojson_of_a_self_referencing_value_is_refused() {
    // A namespace holding itself: unbounded recursion (a stack overflow) before.
    assert_refused(
        "{% set ns = namespace() %}{% set ns.me = ns %}{{ ns | tojson }}",
        "nested deeper",
    );
}

#[test]
fn tojson_of_a_huge_lazy_sequence_is_refused() {
    assert_refused("{{ (messages * 100000000) | tojson }}", "tojson");
}

#[test]
fn real_templates_fit_the_budgets() {
    // SmolLM2's template over a long conversation still renders.
    let src = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    let t = ChatTemplate::new(src, "smollm2").unwrap();
    let msgs: Vec<ChatMessage> = (0..2000)
        .map(|i| {
            ChatMessage::new(
                if i % 2 == 0 { "user" } else { "assistant" },
                "x".repeat(500),
            )
        })
        .collect();
    let out = t.render(&msgs, true).unwrap();
    assert!(out.len() > 2000 * 500);
}

// --- 5. dispatch grids and wgpu validation errors ----------------------------

/// A grid beyond the adapter's per-dimension limit is split for kernels
/// that take it (SwiGLU, checked against the CPU) and refused with an error
/// naming the kernel for those that do not; a wgpu validation error is an
/// `Err` from the next wait, not a panic.
#[test]
fn oversized_grids_are_split_or_refused_and_validation_errors_are_errors() {
    use llama_wgpu::gpu::kernels::{fit_grid, Kernel, WG};
    use llama_wgpu::gpu::{Gpu, GpuOptions};
    let gpu = Gpu::new(&GpuOptions::default()).unwrap();
    let max = gpu.limits.max_compute_workgroups_per_dimension;
    let wg = WG;

    // SwiGLU over (max + 3) workgroups of elements.
    let n = (max as usize + 3) * wg as usize;
    let gate: Vec<f32> = (0..n).map(|i| ((i % 17) as f32 - 8.0) * 0.25).collect();
    let up: Vec<f32> = (0..n).map(|i| ((i % 5) as f32) * 0.5).collect();
    let g = gpu.storage_init("gate", bytemuck::cast_slice(&gate));
    let u = gpu.storage_init("up", bytemuck::cast_slice(&up));
    let params = gpu.uniform(&[n as u32, 0, 0, 0]);
    let d = gpu.dispatch(
        Kernel::Swiglu,
        &[
            g.as_entire_binding(),
            u.as_entire_binding(),
            params.as_entire_binding(),
        ],
        [(n as u32).div_ceil(wg), 1, 1],
    );
    gpu.run(&[&d]);
    let h = gpu.read_f32(&g, n).unwrap();
    for i in [0, n / 2, n - 1] {
        let want = gate[i] / (1.0 + (-gate[i]).exp()) * up[i];
        assert!(
            (h[i] - want).abs() <= 1e-5 * want.abs().max(1.0),
            "{i}: {} vs {want}",
            h[i]
        );
    }

    // A grid too large in two dimensions cannot be split: refused and named, once.
    let d = gpu.dispatch(
        Kernel::Swiglu,
        &[
            g.as_entire_binding(),
            u.as_entire_binding(),
            params.as_entire_binding(),
        ],
        [1, 1, 1],
    );
    let err = fit_grid(Kernel::AttnCombine, [max + 1, 1, 1], max).unwrap_err();
    assert!(
        err.contains("attention") && err.contains(&max.to_string()),
        "{err}"
    );
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        d.encode_with(&mut pass, [max + 1, max + 1, 1]);
    }
    gpu.queue.submit([enc.finish()]);
    let err = gpu.wait().unwrap_err().to_string();
    assert!(
        err.contains("swiglu") && err.contains(&max.to_string()),
        "{err}"
    );
    assert!(gpu.wait().is_ok(), "an error is reported once");

    // A validation error (a buffer larger than the adapter allows).
    let _too_big = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("too big"),
        size: gpu.limits.max_buffer_size + 4,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let err = gpu.wait().unwrap_err().to_string();
    assert!(
        err.starts_with("GPU error:") && !err.contains('\n'),
        "{err}"
    );
}

#[test]
fn fit_grid_splits_only_one_dimensional_grids_of_kernels_that_take_them() {
    use llama_wgpu::gpu::kernels::{fit_grid, Kernel};
    assert_eq!(fit_grid(Kernel::Swiglu, [10, 1, 1], 65535), Ok([10, 1, 1]));
    assert_eq!(
        fit_grid(Kernel::Swiglu, [65536, 1, 1], 65535),
        Ok([65535, 2, 1])
    );
    assert_eq!(
        fit_grid(Kernel::Fill, [200_000, 1, 1], 65535),
        Ok([65535, 4, 1])
    );
    assert!(fit_grid(Kernel::Swiglu, [65536, 2, 1], 65535).is_err());
    assert!(fit_grid(Kernel::RmsNorm, [65536, 1, 1], 65535).is_err());
}

// --- 6. vocabulary larger than the embedding ------------------------------------

/// A tiny synthetic model (1,000 embedding rows) whose vocabulary has 1,001
/// tokens, the last one used by the text: perplexity indexed past the logits.
#[test]
fn vocabulary_larger_than_the_embedding_is_refused_at_load() {
    use llama_wgpu::model::synthetic::{synthetic_gguf, LlamaShape};
    use llama_wgpu::quant::TensorType;
    let dir = scratch("vocab");
    let shape = LlamaShape::tiny();
    let base = Gguf::from_bytes(synthetic_gguf(&shape, TensorType::F32, 1).unwrap()).unwrap();
    let mut tokens: Vec<String> = (0..shape.n_vocab - 1).map(|i| format!("<t{i}>")).collect();
    tokens.extend(["a".to_string(), "b".to_string()]);
    let mut w = gpt2_vocab(&tokens);
    for (k, v) in &base.metadata {
        w.kv(k, v.clone());
    }
    for t in &base.tensors {
        w.tensor(
            &t.name,
            &t.dims,
            t.tensor_type().unwrap(),
            base.tensor_data(t).to_vec(),
        );
    }
    let model = write(&dir, "big-vocab.gguf", &w);
    let text = dir.join("text.txt");
    std::fs::write(&text, "ab".repeat(64)).unwrap();
    let out = run_limited(
        &[
            "perplexity",
            "-m",
            model.to_str().unwrap(),
            "-f",
            text.to_str().unwrap(),
            "-c",
            "16",
        ],
        4096,
        120,
    );
    let err = common::one_line_error(&out);
    assert!(err.contains("1001 tokens") && err.contains("1000"), "{err}");
}

#[test]
fn perplexity_token_ids_are_checked() {
    use llama_wgpu::engine::perplexity::{check_token_ids, token_nll};
    assert!(check_token_ids(&[0, 1, 2], 3).is_ok());
    let err = check_token_ids(&[0, 3, 1], 3).unwrap_err();
    assert!(err.contains("token 1") && err.contains("id 3"), "{err}");
    assert!(token_nll(&[0.0, 1.0], 2).is_nan());
}

// --- 8. a model file truncated while mapped --------------------------------------

/// The child (this test re-run with HOSTILE_SIGBUS_CHILD) maps a model,
/// truncates it, and reads the lost tensor bytes: SIGBUS, which used to kill
/// it silently; now the handler names the file and exits with status 1.
#[test]
fn model_truncated_while_mapped_is_a_clear_message() {
    if let Some(path) = std::env::var_os("HOSTILE_SIGBUS_CHILD") {
        let g = Gguf::open(&path).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(4096)
            .unwrap();
        let t = g.tensor("big").unwrap();
        let sum: u64 = g.tensor_data(t).iter().map(|&b| b as u64).sum();
        // Unreachable when the handler works.
        println!("read {sum} without a fault");
        return;
    }
    let dir = scratch("sigbus");
    let mut w = GgufWriter::new();
    w.kv("general.architecture", Value::String("llama".into()))
        .tensor(
            "big",
            &[1 << 20],
            llama_wgpu::quant::TensorType::F32,
            vec![1; 4 << 20],
        );
    let model = write(&dir, "truncated.gguf", &w);
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "model_truncated_while_mapped_is_a_clear_message",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HOSTILE_SIGBUS_CHILD", &model)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "status {:?}, stderr: {err}",
        out.status
    );
    assert!(
        err.contains(&model.display().to_string())
            && err.contains("truncated or changed while in use"),
        "{err}"
    );
}
