//! `llama-wgpu chat` driven through stdin (the non-interactive mode): replies
//! one per line on stdout, per-turn token accounting from `-v` on stderr.

mod common;

use assert_cmd::Command;

/// Runs a scripted chat; returns (exit ok, stdout lines, stderr).
fn chat(script: &str, extra: &[&str]) -> (bool, Vec<String>, String) {
    let out = Command::cargo_bin("llama-wgpu")
        .unwrap()
        .args(["-v", "chat", "-m"])
        .arg(common::test_model_path())
        .args(["--temp", "0", "-c", "512"])
        .args(extra)
        .write_stdin(script)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        out.status.success(),
        stdout.lines().map(str::to_owned).collect(),
        stderr,
    )
}

/// `turn N: prompt of P tokens, R reused from the cache, X processed` → (P, R, X).
fn turn_stats(stderr: &str, turn: usize) -> (usize, usize, usize) {
    let prefix = format!("turn {turn}: prompt of ");
    let line = stderr
        .lines()
        .find_map(|l| l.split_once(&prefix).map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no stats for turn {turn} in {stderr}"));
    let nums: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(nums.len(), 3, "{line}");
    assert_eq!(nums[0], nums[1] + nums[2], "{line}");
    (nums[0], nums[1], nums[2])
}

const N: &str = "8";
/// SmolLM2-135M recalls the name at greedy with this wording and system
/// prompt (checked by hand; "My name is Alice." alone is not recalled).
const SYSTEM: &str = "You are a helpful assistant.";
const RECALL_SCRIPT: &str = "Hi, I am Alice.\nWhat is my name?\n";
const RECALL_ANSWER: &str = "Alice";

#[test]
fn second_turn_recalls_the_first_and_processes_only_new_tokens() {
    let (ok, lines, stderr) = chat(RECALL_SCRIPT, &["-n", N, "--system", SYSTEM]);
    assert!(ok, "{stderr}");
    assert_eq!(lines.len(), 2, "one reply per message: {lines:?}");
    assert!(lines.iter().all(|l| !l.trim().is_empty()), "{lines:?}");
    assert!(
        lines[1].contains(RECALL_ANSWER),
        "turn 2 should recall {RECALL_ANSWER:?}: {lines:?}"
    );
    let (p1, r1, _) = turn_stats(&stderr, 1);
    let (p2, r2, x2) = turn_stats(&stderr, 2);
    assert_eq!(r1, 0, "nothing is cached before turn 1");
    // Turn 2 reuses turn 1's whole prompt and (nearly all of) its reply: only
    // the end of the reply's turn and the new message are processed.
    assert!(
        r2 >= p1,
        "turn 2 reused {r2} of turn 1's {p1} prompt tokens"
    );
    assert!(
        x2 < p2 - p1,
        "turn 2 processed {x2} tokens of a {p2}-token prompt"
    );
}

/// `--json`: one object per message, aligned with the messages: the same
/// replies as the plain output, each turn's cache reuse as `-v` logs it, and
/// an `error` object for a message that does not fit (exit status 1, as
/// without --json).
#[test]
fn json_gives_one_object_per_message() {
    let long = "This sentence is repeated to overflow the context. ".repeat(60);
    let script = RECALL_SCRIPT.replacen('\n', &format!("\n{long}\n"), 1);
    let args = ["-n", N, "--system", SYSTEM];
    let (ok, plain, _) = chat(&script, &args);
    assert!(!ok);
    let (ok, lines, stderr) = chat(&script, &[&args[..], &["--json"]].concat());
    assert!(!ok, "{stderr}");
    assert_eq!((plain.len(), lines.len()), (3, 3), "{plain:?} {lines:?}");
    let v: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        v[1]["error"].as_str().unwrap().contains("does not fit"),
        "{}",
        v[1]
    );
    for (i, turn) in [(0, 1), (2, 2)] {
        assert_eq!(v[i]["turn"], turn);
        assert_eq!(v[i]["text"], plain[i].as_str(), "the same reply");
        assert_eq!(v[i]["stop_reason"], "length");
        assert_eq!(v[i]["generated_ids"].as_array().unwrap().len(), 8);
        let (_, reused, processed) = turn_stats(&stderr, turn);
        assert_eq!(v[i]["reused_tokens"], reused);
        assert_eq!(v[i]["prompt_ids"].as_array().unwrap().len(), processed);
    }
    assert!(plain[1].is_empty() && plain[2].contains(RECALL_ANSWER));
}

#[test]
fn reset_forgets_the_conversation() {
    let script = RECALL_SCRIPT.replacen('\n', "\n/reset\n", 1);
    let (ok, lines, stderr) = chat(&script, &["-n", N, "--system", SYSTEM]);
    assert!(ok, "{stderr}");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        !lines[1].contains(RECALL_ANSWER),
        "after /reset the model cannot know {RECALL_ANSWER:?}: {lines:?}"
    );
    // After the reset the cache is empty and the prompt is the second message alone.
    let (p1, _, _) = turn_stats(&stderr, 1);
    let (p2, r2, _) = turn_stats(&stderr, 2);
    assert_eq!(r2, 0, "{stderr}");
    assert!(
        p2 < p1 + 8,
        "turn 2's prompt ({p2}) should not hold turn 1 ({p1})"
    );
}

#[test]
fn a_full_context_drops_the_oldest_turn_and_keeps_the_system_prompt() {
    // With -c 64 and 4 tokens kept for each reply, the third turn's prompt
    // (system prompt, three messages, two replies) is over 60 tokens.
    let script = "Hi, I am Alice.\nI like green tea.\nWhat do I like?\n";
    let out = Command::cargo_bin("llama-wgpu")
        .unwrap()
        .args(["-v", "chat", "-m"])
        .arg(common::test_model_path())
        .args(["--temp", "0", "-n", "4", "-c", "64", "--system", SYSTEM])
        .write_stdin(script)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    assert!(
        stderr.contains("context full: dropped the 2 oldest messages"),
        "{stderr}"
    );
    let (p1, _, _) = turn_stats(&stderr, 1);
    let (p2, r2, _) = turn_stats(&stderr, 2);
    let (p3, r3, _) = turn_stats(&stderr, 3);
    assert!(
        r2 >= p1,
        "turn 2 had nothing to drop and reuses turn 1: {stderr}"
    );
    // Turn 3 keeps only the cached system prompt (and the start of a user
    // turn): everything after it moved and is processed again.
    assert!(r3 < p1, "turn 3 reused {r3} tokens: {stderr}");
    assert!(r3 > 0, "the system prompt stays cached: {stderr}");
    assert!(p3 <= 60 && p3 < p2 + 10, "turn 3 prompt {p3}: {stderr}");
}

#[test]
fn a_message_longer_than_the_context_is_a_one_line_error() {
    let long = "This sentence is repeated to overflow the context. ".repeat(40);
    let out = Command::cargo_bin("llama-wgpu")
        .unwrap()
        .args(["chat", "-m"])
        .arg(common::test_model_path())
        .args(["--temp", "0", "-n", "4", "-c", "64"])
        .write_stdin(format!("{long}\n"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("does not fit in the context of 64"),
        "{stderr}"
    );
    // The skipped turn's reply line is empty, so replies stay aligned with messages.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "\n");
}

#[test]
fn missing_model_is_a_one_line_error() {
    let out = Command::cargo_bin("llama-wgpu")
        .unwrap()
        .args(["chat", "-m", "/nonexistent/model.gguf"])
        .write_stdin("hello\n")
        .output()
        .unwrap();
    let stderr = common::one_line_error(&out);
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(out.stdout.is_empty());
}

/// The rendered prompt of a template file is what the chat processes: a
/// custom Jinja file, and the same template inside a tokenizer_config.json,
/// give the token count of the text the template renders (tokenized alone);
/// a broken template is a one-line error naming the file.
#[test]
fn a_chat_template_file_replaces_the_models_template() {
    let dir = std::env::temp_dir().join(format!("llama-wgpu-template-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jinja = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}\
                 {% if add_generation_prompt %}assistant:{% endif %}";
    let raw = dir.join("plain.jinja");
    std::fs::write(&raw, jinja).unwrap();
    let cfg = dir.join("tokenizer_config.json");
    std::fs::write(
        &cfg,
        serde_json::json!({ "chat_template": jinja }).to_string(),
    )
    .unwrap();
    let rendered = "user: Hello there\nassistant:";
    let ids = Command::cargo_bin("llama-wgpu")
        .unwrap()
        .args(["tokenize", "--ids", "-m"])
        .arg(common::test_model_path())
        .args(["-p", rendered])
        .output()
        .unwrap();
    assert!(ids.status.success());
    let want = String::from_utf8(ids.stdout).unwrap().matches(',').count() + 1;
    for file in [&raw, &cfg] {
        let (ok, _, stderr) = chat(
            "Hello there\n",
            &["-n", "2", "--chat-template", file.to_str().unwrap()],
        );
        assert!(ok, "{stderr}");
        let (prompt, _, _) = turn_stats(&stderr, 1);
        assert_eq!(prompt, want, "{}: {stderr}", file.display());
    }
    let bad = dir.join("bad.jinja");
    std::fs::write(&bad, "{% for m in messages %}{{ m.content }").unwrap();
    let (ok, _, stderr) = chat("Hello\n", &["--chat-template", bad.to_str().unwrap()]);
    assert!(!ok);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("bad.jinja"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--context-shift`: a reply that fills the window goes on past it, the
/// shift keeps the system prompt, and the next turn still works (both turns
/// ran: their stats are on stderr). Returns stdout.
fn context_shift_keeps_the_system_prompt(ctx: &str, extra: &[&str]) -> String {
    let out = Command::cargo_bin("llama-wgpu")
        .unwrap()
        .args(["-v", "chat", "-m"])
        .arg(common::test_model_path())
        .args(["--temp", "0", "-n", "40", "-c", ctx, "--context-shift"])
        .args(["--system", SYSTEM])
        .args(extra)
        .write_stdin("Tell me a story about a dragon.\nThanks!\n")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let kept: Vec<usize> = stderr
        .lines()
        .filter_map(|l| {
            l.split_once("context shift: kept the first ")
                .map(|(_, r)| r)
        })
        .map(|r| r.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(!kept.is_empty(), "the first reply shifted: {stderr}");
    // What is kept is the system prompt: the start of turn 1's prompt that
    // turn 2 finds cached again.
    let (p1, _, _) = turn_stats(&stderr, 1);
    assert!(
        kept[0] > 5 && kept[0] < p1,
        "kept {kept:?} of a {p1}-token prompt: {stderr}"
    );
    let (_, r2, _) = turn_stats(&stderr, 2);
    assert!(
        r2 >= kept[0],
        "turn 2 reuses the kept system prompt: {stderr}"
    );
    String::from_utf8(out.stdout).unwrap()
}

/// SmolLM2's own template (ChatML: the system prompt is a block of its own).
#[test]
fn context_shift_lets_a_reply_run_past_the_window_and_keeps_the_system_prompt() {
    let stdout = context_shift_keeps_the_system_prompt("40", &[]);
    // Two single-line replies (greedy SmolLM2 writes no newline in these).
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
}

/// Llama 2's format writes the system prompt inside the first user turn
/// (`<s>[INST] <<SYS>>...<</SYS>>` then the message): rendered alone it is
/// nothing, and the shift used to keep no position at all.
#[test]
fn context_shift_keeps_a_system_prompt_inside_the_first_user_turn() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("llama2-chat.jinja");
    std::fs::write(&path, llama_wgpu::tokenizer::LLAMA2_TEMPLATE).unwrap();
    let stdout =
        context_shift_keeps_the_system_prompt("48", &["--chat-template", path.to_str().unwrap()]);
    assert!(!stdout.trim().is_empty());
}
