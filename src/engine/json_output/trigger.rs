//! A format that applies only after a trigger text (llama.cpp's lazy
//! grammars): the reply is free until the trigger appears, then follows the
//! format. Two uses:
//! - tool calls ([`Trigger::new`], [`Trigger::at_start`]): a model whose
//!   template writes calls as `<tool_call>{"name": ..., "arguments": ...}
//!   </tool_call>` may answer in prose or call, every call it opens is
//!   well-formed, and the reply is free again after each;
//! - a reply format after reasoning ([`Trigger::once`]): a prompt that ends
//!   inside `<think>` leaves the reasoning free, and `response_format`, a
//!   grammar or a tool call binds what follows `</think>`; the reply ends
//!   as that format's value does.

use std::sync::Arc;

use super::schema::Schema;
use super::{JsonConstraint, OutputFormat};

/// The trigger and the format of what follows it.
#[derive(Debug)]
pub struct Trigger {
    text: Vec<u8>,
    then: OutputFormat,
    /// Only a reply that begins with the text (after whitespace) is bound,
    /// and the text is the value's own start (`{` for Llama 3's calls).
    at_start: bool,
    /// The first value bound is the rest of the reply: free text before the
    /// trigger may not end the reply, and the reply ends with the value.
    once: bool,
}

impl Trigger {
    /// What follows each occurrence of `text` is one value of `schema`.
    pub fn new(text: &str, schema: impl Into<Arc<Schema>>) -> Trigger {
        Trigger::binding(text, OutputFormat::JsonSchema(schema.into()))
    }

    /// A reply that begins with `prefix` is one value of `schema`, which
    /// `prefix` starts; any other reply is free.
    pub fn at_start(prefix: &str, schema: impl Into<Arc<Schema>>) -> Trigger {
        Trigger {
            at_start: true,
            ..Trigger::new(prefix, schema)
        }
    }

    /// Free text until `text`, then the rest of the reply in `format`.
    pub fn once(text: &str, format: OutputFormat) -> Trigger {
        Trigger {
            once: true,
            ..Trigger::binding(text, format)
        }
    }

    fn binding(text: &str, then: OutputFormat) -> Trigger {
        assert!(!text.is_empty(), "a trigger is some text");
        assert!(
            !matches!(then, OutputFormat::Text | OutputFormat::Triggered(_)),
            "a trigger binds a constraint"
        );
        Trigger {
            text: text.as_bytes().to_vec(),
            then,
            at_start: false,
            once: false,
        }
    }

    /// Whether the reply ends with the first value bound.
    pub(super) fn is_once(&self) -> bool {
        self.once
    }

    fn value(&self) -> JsonConstraint {
        self.then
            .constraint()
            .expect("a trigger binds a constraint")
    }
}

/// Where a reply is: in free text (with how much of the trigger its end
/// already matches; `armed` false once an `at_start` trigger can no longer
/// fire) or inside a value (`begun` once its first byte has come: whitespace
/// between the trigger and the value is free, so that a grammar need not
/// allow the blank line a template writes after `</think>`).
#[derive(Clone, Debug)]
pub enum TriggerState {
    Free {
        matched: usize,
        armed: bool,
    },
    Inside {
        value: Box<JsonConstraint>,
        begun: bool,
    },
}

impl TriggerState {
    pub fn new() -> TriggerState {
        TriggerState::Free {
            matched: 0,
            armed: true,
        }
    }

    /// The state after `bytes`, or `None` if they break a value.
    pub fn after(&self, t: &Trigger, bytes: &[u8]) -> Option<TriggerState> {
        let mut st = self.clone();
        for &b in bytes {
            st = st.step(t, b)?;
        }
        Some(st)
    }

    fn step(self, t: &Trigger, b: u8) -> Option<TriggerState> {
        match self {
            TriggerState::Inside { value, begun } => {
                let Some(next) = value.state.after(&[b]) else {
                    return (!begun && b.is_ascii_whitespace())
                        .then_some(TriggerState::Inside { value, begun });
                };
                Some(if next.is_done() && !t.once {
                    TriggerState::Free {
                        matched: 0,
                        armed: !t.at_start,
                    }
                } else {
                    TriggerState::Inside {
                        value: Box::new(JsonConstraint { state: next }),
                        begun: true,
                    }
                })
            }
            TriggerState::Free { armed: false, .. } => Some(self),
            TriggerState::Free { matched, .. } => {
                let m = if t.at_start {
                    // Whitespace before the start; then the prefix or nothing.
                    match t.text.get(matched) {
                        _ if matched == 0 && b.is_ascii_whitespace() => 0,
                        Some(&c) if c == b => matched + 1,
                        _ => {
                            return Some(TriggerState::Free {
                                matched: 0,
                                armed: false,
                            })
                        }
                    }
                } else {
                    advance(&t.text, matched, b)
                };
                if m < t.text.len() {
                    return Some(TriggerState::Free {
                        matched: m,
                        armed: true,
                    });
                }
                let mut value = t.value();
                if t.at_start {
                    value.state = value.state.after(&t.text)?;
                }
                Some(TriggerState::Inside {
                    value: Box::new(value),
                    begun: t.at_start,
                })
            }
        }
    }

    /// In free text, outside any value.
    pub fn is_free(&self) -> bool {
        matches!(self, TriggerState::Free { .. })
    }

    /// The value being written is complete and cannot go on.
    pub fn value_is_done(&self) -> bool {
        matches!(self, TriggerState::Inside { value, .. } if value.is_done())
    }

    /// The value being written may end here (a grammar that is complete
    /// but could go on).
    pub fn value_may_end(&self) -> bool {
        matches!(self, TriggerState::Inside { value, .. } if value.state.may_end())
    }
}

impl Default for TriggerState {
    fn default() -> TriggerState {
        TriggerState::new()
    }
}

/// How much of `pat` the text ends with after byte `b`, given it ended with
/// `pat[..matched]`: the longest prefix of `pat` that is a suffix of
/// `pat[..matched] + b` (triggers are a few bytes: no failure table).
fn advance(pat: &[u8], matched: usize, b: u8) -> usize {
    let mut seen = pat[..matched].to_vec();
    seen.push(b);
    (1..=seen.len().min(pat.len()))
        .rev()
        .find(|&k| seen[seen.len() - k..] == pat[..k])
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn trigger() -> Trigger {
        let s = Schema::compile(
            &json!({"type": "object", "properties": {"n": {"type": "integer"}},
                                         "required": ["n"]}),
        )
        .unwrap();
        Trigger::new("<call>", s)
    }

    #[test]
    fn free_until_the_trigger_then_the_schema_then_free() {
        let t = trigger();
        let st = TriggerState::new();
        let st = st
            .after(&t, b"Any text, even {\"n\": \"x\"} or <cal")
            .unwrap();
        assert!(st.is_free());
        let st = st.after(&t, b"l>\n").unwrap();
        assert!(!st.is_free(), "inside after the trigger");
        assert!(st.after(&t, b"{\"n\": \"x\"").is_none(), "the schema holds");
        assert!(st.after(&t, b"hello").is_none());
        let st = st.after(&t, b" {\"n\": 12").unwrap();
        assert!(!st.is_free());
        let st = st.after(&t, b"}").unwrap();
        assert!(st.is_free(), "free again once the value closes");
        let st = st.after(&t, b"\n</call> done <<call>{\"n\":1}").unwrap();
        assert!(st.is_free());
    }

    #[test]
    fn an_at_start_trigger_binds_a_reply_that_begins_with_it() {
        let s = || {
            Schema::compile(
                &json!({"type": "object", "properties": {"n": {"type": "integer"}},
                                    "required": ["n"]}),
            )
            .unwrap()
        };
        let t = Trigger::at_start("{", s());
        let st = TriggerState::new().after(&t, b" \n{").unwrap();
        assert!(!st.is_free());
        assert!(st.after(&t, b"\"m\": 1}").is_none());
        let st = st.after(&t, b"\"n\": 1}").unwrap();
        assert!(st.is_free());
        // A second value is not bound: the reply is free once the first closes.
        assert!(st.after(&t, b" {oops").is_some());
        // Prose first: never bound.
        let st = TriggerState::new().after(&t, b"Sure: {\"m\"").unwrap();
        assert!(st.is_free());
        let t = Trigger::at_start("{\"", s());
        assert!(TriggerState::new().after(&t, b"{x").unwrap().is_free());
        assert!(!TriggerState::new().after(&t, b"{\"").unwrap().is_free());
    }

    #[test]
    fn a_once_trigger_binds_the_rest_of_the_reply_in_any_format() {
        use crate::engine::grammar::Grammar;
        let obj = OutputFormat::JsonObject;
        let gram = OutputFormat::Grammar(Arc::new(
            Grammar::parse(r#"root ::= "yes" | "no" "!"*"#).unwrap(),
        ));
        for (format, answer) in [(obj, "{\"a\": [1]}"), (gram, "yes")] {
            let f = OutputFormat::Triggered(Arc::new(Trigger::once("</think>", format)));
            let start = f.constraint().unwrap().state;
            let thinking = start.after(b"Hmm, {\"a\" or yes? <think> ").unwrap();
            assert!(!thinking.may_end(), "the reasoning alone is not a reply");
            assert!(thinking.passes_control());
            assert!(!thinking.is_done());
            let bound = thinking.after(b"</think>\n\n").unwrap();
            assert!(!bound.may_end() && !bound.passes_control());
            assert!(
                bound.after(b"maybe").is_none(),
                "{answer}: bound after the trigger"
            );
            let done = bound.after(answer.as_bytes()).unwrap();
            assert!(done.is_done() || done.may_end(), "{answer}");
        }
        // The grammar's own choice to end or go on is kept.
        let g = Grammar::parse(r#"root ::= "no" "!"*"#).unwrap();
        let t = Trigger::once("</think>", OutputFormat::Grammar(Arc::new(g)));
        let st = TriggerState::new().after(&t, b"x</think> no").unwrap();
        assert!(st.value_may_end() && !st.value_is_done());
        let st = st.after(&t, b"!!").unwrap();
        assert!(st.value_may_end());
        // Whitespace is free only before the value begins.
        assert!(st.after(&t, b" ").is_none());
        let t = Trigger::once("</think>", OutputFormat::JsonSchema(Arc::new(
            Schema::compile(&json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})).unwrap(),
        )));
        let st = TriggerState::new()
            .after(&t, b"</think>{\"n\": 3}")
            .unwrap();
        assert!(
            st.value_is_done(),
            "a once trigger stays on its finished value"
        );
        assert!(st.after(&t, b"<think>").is_none());
    }

    #[test]
    fn partial_matches_restart_correctly() {
        assert_eq!(advance(b"<<x", 2, b'<'), 2);
        assert_eq!(advance(b"<<x", 2, b'x'), 3);
        assert_eq!(advance(b"abab", 3, b'a'), 1);
        assert_eq!(advance(b"aab", 2, b'a'), 2);
        assert_eq!(advance(b"abc", 2, b'z'), 0);
        let t = trigger();
        let st = TriggerState::new().after(&t, b"<<<call>").unwrap();
        assert!(!st.is_free());
    }
}
