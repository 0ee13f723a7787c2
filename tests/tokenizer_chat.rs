//! Chat templates against Python jinja2's renderings
//! (tests/fixtures/tokenizer/chat.json, from tests/scripts/tok_chat_fixture.py).

mod common;

use common::{test_model_path as model_path, testdata};
use std::path::Path;

use llama_wgpu::gguf::Gguf;
use llama_wgpu::tokenizer::{ChatMessage, ChatTemplate, Tokenizer};
use serde_json::Value as Json;

fn crate_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> Json {
    let p = crate_root().join("tests/fixtures/tokenizer/chat.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn messages(v: &Json) -> Vec<ChatMessage> {
    serde_json::from_value(v.clone()).unwrap()
}

/// Every case of one fixture group rendered by `tmpl`, failures collected.
fn check(tmpl: &ChatTemplate, group: &str) {
    let f = fixture();
    let cases = f[group]["cases"].as_array().unwrap();
    assert!(cases.len() >= 6);
    let mut failures = Vec::new();
    for c in cases {
        let got = tmpl
            .render(
                &messages(&c["messages"]),
                c["add_generation_prompt"].as_bool().unwrap(),
            )
            .unwrap();
        let want = c["expected"].as_str().unwrap();
        if got != want {
            failures.push(format!(
                "{group}/{} gen={}:\n want {want:?}\n  got {got:?}",
                c["name"], c["add_generation_prompt"]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn smollm2_template_from_gguf_matches_jinja2() {
    let g = Gguf::open(model_path()).unwrap();
    let tmpl = ChatTemplate::from_gguf(&g).unwrap();
    assert_eq!(
        tmpl.source(),
        fixture()["smollm2"]["template"].as_str().unwrap()
    );
    check(&tmpl, "smollm2");
}

#[test]
fn smollm2_prompt_tokenizes_with_its_control_tokens() {
    let g = Gguf::open(model_path()).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let tmpl = ChatTemplate::from_gguf(&g).unwrap();
    let prompt = tmpl
        .render(&[ChatMessage::new("user", "Hi")], true)
        .unwrap();
    let ids = tok.encode(&prompt, true, true).unwrap();
    let start = tok.token_id("<|im_start|>").unwrap();
    let end = tok.token_id("<|im_end|>").unwrap();
    // Default system turn, user turn, assistant opening: three starts, two ends.
    assert_eq!(ids.iter().filter(|&&i| i == start).count(), 3, "{ids:?}");
    assert_eq!(ids.iter().filter(|&&i| i == end).count(), 2, "{ids:?}");
}

#[test]
fn builtin_llama2_matches_jinja2_and_meta() {
    check(&ChatTemplate::llama2(), "llama2");
}

#[test]
fn llama2_vocab_without_template_gets_builtin() {
    let g = Gguf::open(testdata("ggml-vocab-llama-spm.gguf")).unwrap();
    assert!(g.get("tokenizer.chat_template").is_none());
    let tmpl = ChatTemplate::from_gguf(&g).unwrap();
    // bos/eos texts come from the vocabulary, which says <s> and </s>.
    check(&tmpl, "llama2");
}

/// Llama 2's format writes `<s>` itself: the rendered prompt gets no second
/// BOS from the tokenizer, and one BOS in all. Text that does not start with
/// BOS's text gets it as the vocabulary asks.
#[test]
fn a_template_that_writes_bos_gets_no_second_one() {
    let g = Gguf::open(testdata("ggml-vocab-llama-spm.gguf")).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    assert!(tok.adds_bos());
    let bos = tok.bos_id().unwrap();
    let text = ChatTemplate::from_gguf(&g)
        .unwrap()
        .render(&[ChatMessage::new("user", "Hi")], true)
        .unwrap();
    assert!(text.starts_with("<s>[INST]"), "{text}");
    assert!(!tok.adds_bos_to_rendered(&text));
    let ids = tok
        .encode(&text, tok.adds_bos_to_rendered(&text), true)
        .unwrap();
    assert_eq!(ids.iter().filter(|&&i| i == bos).count(), 1, "{ids:?}");
    assert_eq!(ids[0], bos);
    assert!(tok.adds_bos_to_rendered("[INST] Hi [/INST]"));
}

#[test]
fn other_vocab_without_template_is_an_error() {
    let g = Gguf::open(testdata("ggml-vocab-gpt-2.gguf")).unwrap();
    let err = ChatTemplate::from_gguf(&g).unwrap_err().to_string();
    assert!(err.contains("tokenizer.chat_template"), "{err}");
}

#[test]
fn llama2_rejects_non_alternating_roles() {
    let msgs = [ChatMessage::new("user", "a"), ChatMessage::new("user", "b")];
    let err = ChatTemplate::llama2()
        .render(&msgs, true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("Conversation roles must alternate"), "{err}");
    assert!(!err.contains('\n'), "one-line error: {err}");
}

#[test]
fn tojson_python_methods_and_loop_controls_match_jinja2() {
    let f = fixture();
    let g = &f["extras"];
    let tmpl = ChatTemplate::new(g["template"].as_str().unwrap(), "extras")
        .unwrap()
        .with_special_tokens(
            g["bos_token"].as_str().unwrap(),
            g["eos_token"].as_str().unwrap(),
        );
    check(&tmpl, "extras");
}

#[test]
fn template_files_override() {
    let f = fixture();
    let dir = std::env::temp_dir().join(format!("llama-wgpu-chat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // A raw Jinja file, special tokens given by the caller.
    let jinja = dir.join("template.jinja");
    std::fs::write(&jinja, f["llama2"]["template"].as_str().unwrap()).unwrap();
    let tmpl = ChatTemplate::from_file(&jinja)
        .unwrap()
        .with_special_tokens("<s>", "</s>");
    check(&tmpl, "llama2");

    // A tokenizer_config.json: template and special tokens from the file.
    let cfg = dir.join("tokenizer_config.json");
    let s = &f["smollm2"];
    let json = serde_json::json!({
        "chat_template": s["template"],
        "bos_token": s["bos_token"],
        "eos_token": {"content": s["eos_token"], "special": true},
    });
    std::fs::write(&cfg, json.to_string()).unwrap();
    check(&ChatTemplate::from_file(&cfg).unwrap(), "smollm2");

    let broken = dir.join("broken.jinja");
    std::fs::write(&broken, "{% for m in messages %}{{ m.content }").unwrap();
    let err = ChatTemplate::from_file(&broken).unwrap_err().to_string();
    assert!(err.contains("broken.jinja"), "{err}");
    let err = ChatTemplate::from_file(&dir.join("nope.jinja"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope.jinja"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Templates that describe tools themselves (Qwen 2.5's and Hermes 3's,
/// the Hermes call syntax; Llama 3.1's and 3.2's), given `tools`, earlier
/// calls and tool results,
/// against jinja2 in transformers' environment
/// (tests/fixtures/tokenizer/tools.json, from tests/scripts/tok_tools_fixture.py).
#[test]
fn tool_templates_match_jinja2() {
    let p = crate_root().join("tests/fixtures/tokenizer/tools.json");
    let f: Json = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let tools = &f["tools"];
    // The fixture's strftime_now gave a placeholder with its format:
    // today's date in that format here.
    let today = |expected: &str| -> String {
        let mut out = expected.to_string();
        while let Some(start) = out.find("@@DATE ") {
            let close = start + 7 + out[start + 7..].find("@@").unwrap();
            let fmt = &out[start + 7..close];
            let date = ChatTemplate::new(format!("{{{{ strftime_now('{fmt}') }}}}"), "date")
                .unwrap()
                .render(&[], false)
                .unwrap();
            out.replace_range(start..close + 2, &date);
        }
        out
    };
    let mut failures = Vec::new();
    let mut n = 0;
    for (key, t) in f["templates"].as_object().unwrap() {
        let tmpl = ChatTemplate::new(t["source"].as_str().unwrap(), key.as_str())
            .unwrap()
            .with_special_tokens("<|begin_of_text|>", "<|im_end|>");
        for c in t["cases"].as_array().unwrap() {
            let with = c["with_tools"].as_bool().unwrap();
            let got = tmpl
                .render_with_tools(&messages(&c["messages"]), with.then_some(tools), true)
                .unwrap_or_else(|e| panic!("{key}/{}: {e}", c["name"]));
            let want = today(c["expected"].as_str().unwrap());
            n += 1;
            if got != want {
                failures.push(format!(
                    "{key}/{} tools={with}:\n want {want:?}\n  got {got:?}",
                    c["name"]
                ));
            }
        }
    }
    assert_eq!(n, 56);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
