//! Constrained output on the test model's vocabulary: the set of tokens a
//! refusal allows (the vocabulary walked as a trie for schemas and
//! grammars, by first byte for JSON mode) is exactly the set of tokens that
//! are accepted one at a time, at every point of a reply.

mod common;

use std::sync::Arc;

use llama_wgpu::engine::grammar::Grammar;
use llama_wgpu::engine::json_output::{JsonConstraint, OutputFormat, Schema};
use llama_wgpu::gguf::Gguf;
use llama_wgpu::tokenizer::Tokenizer;

const REPLY: &[u8] = br#"{"name": "Ann", "age": 37, "tags": ["x", 2.5, "long tag"]}"#;

/// The tokens a refusal lets the sampler draw from: the first draw is an
/// end-of-generation token (refused mid-reply), the second sees the rest.
fn allowed_after_refusal(c: &JsonConstraint, tok: &Tokenizer, eog: u32) -> Vec<u32> {
    let n = tok.vocab_size() as u32;
    let cand: Vec<(u32, f32)> = (0..n).map(|i| (i, 0.0)).collect();
    let mut seen = Vec::new();
    let mut first = true;
    let _ = c.clone().choose(tok, cand, |c| {
        if std::mem::take(&mut first) {
            return eog;
        }
        seen = c.iter().map(|p| p.0).collect();
        seen[0]
    });
    seen.sort_unstable();
    seen
}

/// The tokens that fit, each checked alone.
fn allowed_one_by_one(c: &JsonConstraint, tok: &Tokenizer) -> Vec<u32> {
    (0..tok.vocab_size() as u32)
        .filter(|&id| c.fits(tok, id))
        .collect()
}

/// The test model's tokenizer and an end-of-generation token of it.
fn vocab() -> (Tokenizer, u32) {
    let g = Gguf::open(common::test_model_path()).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let n = tok.vocab_size() as u32;
    let eog = (0..n).find(|&i| tok.is_end_of_generation(i)).unwrap();
    (tok, eog)
}

/// A schema `REPLY` follows.
fn reply_schema() -> Schema {
    Schema::compile(&serde_json::json!({"type": "object", "properties": {
        "name": {"type": "string", "pattern": "^[A-Z][a-z]+$"}, "age": {"type": "integer", "minimum": 30, "maximum": 40},
        "tags": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "number", "exclusiveMinimum": 2, "maximum": 3}]}}},
        "required": ["name", "age", "tags"]}))
    .unwrap()
}

#[test]
fn refusals_allow_exactly_the_tokens_that_fit() {
    let (tok, eog) = vocab();
    let n = tok.vocab_size() as u32;
    let byte_token = |b: u8| (0..n).find(|&i| tok.token_bytes(i) == [b]).unwrap();
    let grammar = r#"root ::= "{" ws pair ("," ws pair)* "}"
pair ::= "\"" [a-z]+ "\":" ws (str | num | "[" ws item ("," ws item)* "]")
item ::= str | num
str ::= "\"" [^"]* "\""
num ::= [0-9]+ ("." [0-9]+)?
ws ::= " "?
"#;
    for format in [
        OutputFormat::JsonObject,
        OutputFormat::JsonSchema(Arc::new(reply_schema())),
        OutputFormat::Grammar(Arc::new(Grammar::parse(grammar).unwrap())),
    ] {
        let mut c = format.constraint().unwrap();
        let mut checked = 0;
        for (i, &b) in REPLY.iter().enumerate() {
            // Inside keys, strings and numbers, after separators, in the array.
            if i % 5 == 0 {
                let fast = allowed_after_refusal(&c, &tok, eog);
                let slow = allowed_one_by_one(&c, &tok);
                assert!(!slow.is_empty(), "{format:?} at byte {i}");
                assert_eq!(fast, slow, "{format:?} at byte {i} ({:?})", &REPLY[..i]);
                checked += 1;
            }
            let id = byte_token(b);
            assert!(c.fits(&tok, id));
            assert_eq!(c.choose(&tok, vec![(id, 0.0)], |c| c[0].0).unwrap(), id);
        }
        assert!(checked >= 11);
    }
}

/// A schema behind a trigger (tool calls in `<tool_call>` blocks): free
/// text first (every token, control and end-of-generation ones included),
/// the schema after the trigger (refusals allow exactly what fits), free
/// again once the value closes.
#[test]
fn a_triggered_schema_binds_only_after_its_trigger() {
    use llama_wgpu::engine::json_output::Trigger;
    let (tok, eog) = vocab();
    let n = tok.vocab_size() as u32;
    let control = (0..n)
        .find(|&i| tok.is_control(i) && !tok.is_end_of_generation(i))
        .unwrap();
    let byte_token = |b: u8| (0..n).find(|&i| tok.token_bytes(i) == [b]).unwrap();
    let format = OutputFormat::Triggered(Arc::new(Trigger::new("<tool_call>", reply_schema())));
    let mut c = format.constraint().unwrap();
    let feed = |c: &mut JsonConstraint, text: &[u8]| {
        for &b in text {
            let id = byte_token(b);
            assert_eq!(c.choose(&tok, vec![(id, 0.0)], |c| c[0].0).unwrap(), id);
        }
    };
    let free = |c: &JsonConstraint| {
        assert_eq!(allowed_one_by_one(c, &tok).len(), n as usize, "all tokens");
        assert!(c.fits(&tok, eog) && c.fits(&tok, control));
        assert!(!c.is_done());
    };
    free(&c);
    feed(&mut c, b"Sure, {not json} <tool_call>\n");
    assert!(!c.fits(&tok, eog) && !c.fits(&tok, control));
    let hello = tok.encode("hello", false, false).unwrap()[0];
    assert!(!c.fits(&tok, hello));
    for (i, &b) in REPLY.iter().enumerate() {
        if i % 9 == 0 {
            let fast = allowed_after_refusal(&c, &tok, eog);
            let slow = allowed_one_by_one(&c, &tok);
            assert!(!slow.is_empty() && !slow.contains(&eog), "at byte {i}");
            assert_eq!(fast, slow, "at byte {i}");
        }
        feed(&mut c, &[b]);
    }
    free(&c);
    feed(&mut c, b"\n</tool_call>");
    free(&c);
}

/// Mistral's `[TOOL_CALLS]` is a control token of its vocabulary: a trigger
/// that is a control token's text fires on that token, not only on the
/// same text written byte by byte (here SmolLM2's `<|im_start|>`).
#[test]
fn a_control_token_fires_the_trigger_its_text_names() {
    use llama_wgpu::engine::json_output::Trigger;
    let (tok, _) = vocab();
    let n = tok.vocab_size() as u32;
    let open = (0..n)
        .find(|&i| tok.is_control(i) && tok.token_bytes(i) == b"<|im_start|>")
        .unwrap();
    let other = (0..n)
        .find(|&i| tok.is_control(i) && i != open && !tok.is_end_of_generation(i))
        .unwrap();
    let format = OutputFormat::Triggered(Arc::new(Trigger::new("<|im_start|>", reply_schema())));
    let mut c = format.constraint().unwrap();
    let hello = tok.encode("hello", false, false).unwrap()[0];
    let brace = tok.encode("{", false, false).unwrap()[0];
    let draw = |id: u32| move |c: Vec<(u32, f32)>| c.iter().find(|t| t.0 == id).unwrap().0;
    assert_eq!(
        c.choose(&tok, vec![(other, 0.0)], draw(other)).unwrap(),
        other
    );
    assert!(
        c.fits(&tok, hello),
        "another control token leaves the text free"
    );
    assert_eq!(c.choose(&tok, vec![(open, 0.0)], draw(open)).unwrap(), open);
    assert!(
        !c.fits(&tok, hello) && !c.fits(&tok, open),
        "bound after it"
    );
    assert!(c.fits(&tok, brace));
}

/// A control token may write a literal text of the constraint (Mistral's
/// `[ARGS]` after a tool's name), and only a literal's: in a string it is
/// refused, first drawn or on a refusal.
#[test]
fn a_control_token_may_spell_a_literal_not_a_string() {
    let (tok, _) = vocab();
    let n = tok.vocab_size() as u32;
    let open = (0..n)
        .find(|&i| tok.is_control(i) && tok.token_bytes(i) == b"<|im_start|>")
        .unwrap();
    let doc = serde_json::json!({"$defs": {"args": {"type": "object",
        "properties": {"s": {"type": "string"}}}}});
    let alts = [("f<|im_start|>".to_string(), "#/$defs/args".to_string())];
    let schema = Arc::new(Schema::prefixed_choice(&doc, &alts).unwrap());
    let mut c = OutputFormat::JsonSchema(schema).constraint().unwrap();
    let f = tok.encode("f", false, false).unwrap()[0];
    let draw = |id: u32| move |c: Vec<(u32, f32)>| c.iter().find(|t| t.0 == id).unwrap().0;
    assert!(
        !c.fits(&tok, open),
        "not before the literal's text reaches it"
    );
    assert_eq!(c.choose(&tok, vec![(f, 0.0)], draw(f)).unwrap(), f);
    assert!(c.fits(&tok, open));
    // On a refusal (the first draw does not fit) it is among the allowed.
    let hello = tok.encode("hello", false, false).unwrap()[0];
    let mut first = true;
    let got = c
        .clone()
        .choose(&tok, vec![(hello, 0.0), (open, -1.0)], |cands| {
            if std::mem::take(&mut first) {
                return hello;
            }
            assert_eq!(cands.iter().map(|t| t.0).collect::<Vec<_>>(), [open]);
            open
        })
        .unwrap();
    assert_eq!(got, open);
    assert_eq!(c.choose(&tok, vec![(open, 0.0)], draw(open)).unwrap(), open);
    for piece in ["{", "\"s\"", ":", " \""] {
        for id in tok.encode(piece, false, false).unwrap() {
            assert!(c.fits(&tok, id), "{piece}");
            c.choose(&tok, vec![(id, 0.0)], draw(id)).unwrap();
        }
    }
    assert!(!c.fits(&tok, open), "not inside a string");
}
