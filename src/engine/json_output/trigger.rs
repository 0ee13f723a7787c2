//! A schema that applies only after a trigger text (llama.cpp's lazy
//! grammars): the reply is free until the trigger appears, then follows the
//! schema until its value closes, then is free again. A model whose template
//! writes calls as `<tool_call>{"name": ..., "arguments": ...}</tool_call>`
//! may answer in prose or call, and every call it opens is well-formed.

use std::sync::Arc;

use super::schema::{Schema, SchemaState};

/// The trigger and the schema of what follows it.
#[derive(Debug)]
pub struct Trigger {
    text: Vec<u8>,
    schema: Arc<Schema>,
    /// Only a reply that begins with the text (after whitespace) is bound,
    /// and the text is the value's own start (`{` for Llama 3's calls).
    at_start: bool,
}

impl Trigger {
    /// What follows each occurrence of `text` is one value of `schema`.
    pub fn new(text: &str, schema: impl Into<Arc<Schema>>) -> Trigger {
        assert!(!text.is_empty(), "a trigger is some text");
        Trigger {
            text: text.as_bytes().to_vec(),
            schema: schema.into(),
            at_start: false,
        }
    }

    /// A reply that begins with `prefix` is one value of `schema`, which
    /// `prefix` starts; any other reply is free.
    pub fn at_start(prefix: &str, schema: impl Into<Arc<Schema>>) -> Trigger {
        Trigger {
            at_start: true,
            ..Trigger::new(prefix, schema)
        }
    }
}

/// Where a reply is: in free text (with how much of the trigger its end
/// already matches; `armed` false once an `at_start` trigger can no longer
/// fire) or inside a value.
#[derive(Clone, Debug)]
pub enum TriggerState {
    Free { matched: usize, armed: bool },
    Inside(SchemaState),
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
            st = match st {
                TriggerState::Inside(s) => {
                    let s = s.after(&t.schema, &[b])?;
                    if s.is_done() {
                        TriggerState::Free {
                            matched: 0,
                            armed: !t.at_start,
                        }
                    } else {
                        TriggerState::Inside(s)
                    }
                }
                TriggerState::Free { armed: false, .. } => st,
                TriggerState::Free { matched, .. } => {
                    let m = if t.at_start {
                        // Whitespace before the start; then the prefix or nothing.
                        match t.text.get(matched) {
                            _ if matched == 0 && b.is_ascii_whitespace() => 0,
                            Some(&c) if c == b => matched + 1,
                            _ => {
                                st = TriggerState::Free {
                                    matched: 0,
                                    armed: false,
                                };
                                continue;
                            }
                        }
                    } else {
                        advance(&t.text, matched, b)
                    };
                    if m < t.text.len() {
                        TriggerState::Free {
                            matched: m,
                            armed: true,
                        }
                    } else if t.at_start {
                        TriggerState::Inside(SchemaState::new(&t.schema).after(&t.schema, &t.text)?)
                    } else {
                        TriggerState::Inside(SchemaState::new(&t.schema))
                    }
                }
            };
        }
        Some(st)
    }

    /// Free text may end (or hold a control token); a value being written may not.
    pub fn is_free(&self) -> bool {
        matches!(self, TriggerState::Free { .. })
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
