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

/// `--context-shift`: generation runs past a full window (shifting, not
/// re-processing), its tokens up to the first shift are those of a run
/// without it, `-v` logs each shift and the JSON lists them.
#[test]
fn context_shift_generates_past_a_full_window() {
    let model = common::test_model_path();
    let run = |extra: &[&str]| {
        let out = Command::cargo_bin("llama-wgpu")
            .unwrap()
            .args(["-v", "generate", "-m", model.to_str().unwrap()])
            .args(["-p", "The capital of France is", "-c", "24", "--temp", "0"])
            .args(["--ignore-eos", "--json"])
            .args(extra)
            .assert()
            .success();
        let o = out.get_output();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (v, String::from_utf8(o.stderr.clone()).unwrap())
    };
    let (full, _) = run(&["-n", "40"]);
    assert_eq!(full["stop_reason"], "context_full");
    let (shifted, log) = run(&["-n", "40", "--context-shift", "--keep", "2"]);
    assert_eq!(shifted["stop_reason"], "length");
    let ids = shifted["generated_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 40);
    let before = full["generated_ids"].as_array().unwrap();
    assert_eq!(
        &ids[..before.len()],
        &before[..],
        "identical until the first shift"
    );
    // 5 prompt tokens (no BOS in SmolLM2's vocabulary): keep 2, drop half
    // of the other 22 whenever the 24 positions are full.
    let shifts = shifted["context_shifts"].as_array().unwrap();
    assert!(shifts.len() >= 2, "{shifts:?}");
    assert!(
        shifts.iter().all(|s| s == &serde_json::json!([2, 11])),
        "{shifts:?}"
    );
    assert_eq!(
        log.matches("context shift: kept the first 2 positions")
            .count(),
        shifts.len(),
        "{log}"
    );
    // stderr is a pipe here: no terminal colour codes in the log.
    assert!(!log.contains('\x1b'), "{log:?}");
}

/// `--format json`: the reply is a JSON object that ends generation when it
/// closes (the same prompt and seed without it is not JSON), or, cut off by
/// -n, the start of one; an unknown format is refused in one line.
#[test]
fn format_json_constrains_the_reply_to_an_object() {
    use llama_wgpu::engine::json_output::JsonState;
    let model = common::test_model_path();
    let run = |extra: &[&str]| {
        let out = Command::cargo_bin("llama-wgpu")
            .unwrap()
            .args(["generate", "-m", model.to_str().unwrap(), "--json"])
            .args(["-p", "A JSON object describing a cat: "])
            .args(extra)
            .assert()
            .success();
        serde_json::from_slice::<serde_json::Value>(&out.get_output().stdout).unwrap()
    };
    let sampled = ["-n", "60", "--temp", "0.8", "--seed", "3"];
    let r = run(&[&sampled[..], &["--format", "json"]].concat());
    let text = r["text"].as_str().unwrap();
    assert_eq!(r["stop_reason"], "end_of_generation", "{text:?}");
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    assert!(v.is_object(), "{text:?}");
    let free = run(&sampled);
    let free_text = free["text"].as_str().unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(free_text).is_err(),
        "{free_text:?}"
    );
    // Greedy, cut off: a prefix of an object.
    let r = run(&["-n", "12", "--temp", "0", "--format", "json"]);
    assert_eq!(r["stop_reason"], "length");
    let text = r["text"].as_str().unwrap();
    let state = JsonState::new().after(text.as_bytes()).expect(text);
    assert!(!state.is_done());

    let out = generate(&["--format", "yaml"]).failure();
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(err.contains("invalid value 'yaml' for '--format"), "{err}");

    // --json-schema: the cat has the listed properties, in order, of their
    // types, its age in bounds (without them this seed writes 5).
    let schema = r#"{"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 7, "maximum": 9},
        "color": {"enum": ["black", "white", "ginger"]}},
        "required": ["name", "age", "color"]}"#;
    // Seed 3 at temperature 0.8; the reply ends by itself and parses.
    let schema_reply = |n: &str, schema: &str| {
        let r = run(&[
            "-n",
            n,
            "--temp",
            "0.8",
            "--seed",
            "3",
            "--json-schema",
            schema,
        ]);
        let text = r["text"].as_str().unwrap().to_string();
        assert_eq!(r["stop_reason"], "end_of_generation", "{text:?}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        (text, v)
    };
    let (text, v) = schema_reply("40", schema);
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["name", "age", "color"], "{text:?}");
    assert!(
        v["name"].as_str().unwrap().chars().count() <= 12,
        "{text:?}"
    );
    assert!((7..=9).contains(&v["age"].as_i64().unwrap()), "{text:?}");
    assert!(
        ["black", "white", "ginger"].contains(&v["color"].as_str().unwrap()),
        "{text:?}"
    );
    // Shaped strings: a pattern, a date, a uuid.
    let schema = r#"{"type": "object", "properties": {
        "name": {"type": "string", "pattern": "^[A-Z][a-z]+$"},
        "born": {"type": "string", "format": "date"},
        "id": {"type": "string", "format": "uuid"}}, "required": ["name", "born", "id"]}"#;
    let (text, v) = schema_reply("80", schema);
    let name = v["name"].as_str().unwrap();
    assert!(
        name.len() >= 2
            && name.starts_with(|c: char| c.is_ascii_uppercase())
            && name[1..].bytes().all(|b| b.is_ascii_lowercase()),
        "{text:?}"
    );
    let born: Vec<u32> = v["born"]
        .as_str()
        .unwrap()
        .split('-')
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        born.len() == 3 && (1..=12).contains(&born[1]) && (1..=31).contains(&born[2]),
        "{text:?}"
    );
    let id = v["id"].as_str().unwrap();
    let groups: Vec<usize> = id.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12], "{text:?}");
    assert!(
        id.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()),
        "{text:?}"
    );
    // Refused before the model loads, by name.
    for (bad, says) in [
        ("{nope", "--json-schema: not JSON"),
        (
            r#"{"type": "object", "properties": {"a": {"format": "date"}}}"#,
            "keyword 'format'",
        ),
    ] {
        let out = generate(&["--json-schema", bad]).failure();
        let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
        assert!(err.contains(says), "{err}");
    }
    let file = std::env::temp_dir().join(format!("llama-wgpu-schema-{}.json", std::process::id()));
    std::fs::write(
        &file,
        r#"{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["b"]}"#,
    )
    .unwrap();
    let out = generate(&["--json-schema-file", file.to_str().unwrap()]).failure();
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    std::fs::remove_file(&file).unwrap();
    assert!(
        err.contains("--json-schema-file: schema.required: 'b' is not among the properties"),
        "{err}"
    );
    let out = generate(&["--json-schema-file", "/nonexistent/schema.json"]).failure();
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(
        err.contains("--json-schema-file: cannot read /nonexistent/schema.json"),
        "{err}"
    );
    let out = generate(&["--json-schema", "{}", "--format", "json"]).failure();
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn grammar_constrains_the_reply_to_its_strings() {
    let model = common::test_model_path();
    let run = |prompt: &str, extra: &[&str]| {
        let out = Command::cargo_bin("llama-wgpu")
            .unwrap()
            .args(["generate", "-m", model.to_str().unwrap(), "--json", "-q"])
            .args(["-p", prompt])
            .args(extra)
            .assert()
            .success();
        serde_json::from_slice::<serde_json::Value>(&out.get_output().stdout).unwrap()
    };
    // Greedy and sampled: a whole string of the grammar, ended by it.
    let phone = r#"root ::= [0-9]{3} "-" [0-9]{4}"#;
    for extra in [&["--temp", "0"][..], &["--temp", "1.0", "--seed", "7"][..]] {
        let r = run(
            "Call me at",
            &[extra, &["-n", "16", "--grammar", phone]].concat(),
        );
        let text = r["text"].as_str().unwrap();
        assert_eq!(r["stop_reason"], "end_of_generation", "{text:?}");
        let (a, b) = text.split_once('-').unwrap_or_else(|| panic!("{text:?}"));
        assert!(
            a.len() == 3 && b.len() == 4 && (a.to_owned() + b).chars().all(|c| c.is_ascii_digit()),
            "{text:?}"
        );
    }
    // From a file, with a comment and several rules.
    let path = std::env::temp_dir().join(format!("answer-{}.gbnf", std::process::id()));
    std::fs::write(
        &path,
        "# yes or no, then a full stop\nroot ::= answer \".\"\nanswer ::= \"yes\" | \"no\"\n",
    )
    .unwrap();
    let r = run(
        "Is Paris in France? Answer:",
        &[
            "-n",
            "8",
            "--temp",
            "0",
            "--grammar-file",
            path.to_str().unwrap(),
        ],
    );
    assert!(
        ["yes.", "no."].contains(&r["text"].as_str().unwrap()),
        "{r}"
    );
    std::fs::remove_file(&path).unwrap();

    for (args, want) in [
        (
            vec!["--grammar", "root ::= \"a\" | b"],
            "grammar: rule 'b' is used but never defined",
        ),
        (
            vec!["--grammar", "root ::= \"a\"\n\"b\""],
            "grammar, line 2: expected a rule name",
        ),
        (
            vec!["--grammar-file", "/nonexistent.gbnf"],
            "--grammar-file: cannot read /nonexistent.gbnf",
        ),
        (
            vec!["--grammar", "root ::= \"a\"", "--format", "json"],
            "cannot be used with",
        ),
    ] {
        let out = generate(&args).failure();
        let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
