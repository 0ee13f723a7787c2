//! JSON mode (OpenAI's `response_format: {"type": "json_object"}`, Ollama's
//! `format: "json"`): the reply is constrained, token by token, to a prefix
//! of one JSON object, and ends when that object closes.
//!
//! [`JsonState`] is a byte-level recognizer of RFC 8259 JSON whose root must
//! be an object. It is `Copy` (the open containers are a bit stack), so
//! trying a token on a copy costs a few instructions per byte: the sampler
//! draws as usual and only when the drawn token does not fit are all the
//! candidates checked (llama.cpp's order too).

/// What a reply must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    #[default]
    Text,
    /// One JSON object, and nothing after it.
    JsonObject,
}

use crate::tokenizer::Tokenizer;

/// Deepest nesting of objects and arrays accepted.
pub const MAX_DEPTH: u8 = 64;
/// Longest run of whitespace between two tokens: small models in JSON mode
/// otherwise fall into emitting newlines forever (llama.cpp's JSON grammar
/// bounds it the same way).
pub const MAX_WHITESPACE: u8 = 24;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Before the root object.
    Root,
    /// A value (after `:` or `,` in an array).
    Value,
    /// A value or `]` (just after `[`).
    ValueOrEnd,
    /// A key or `}` (just after `{`).
    KeyOrEnd,
    /// A key (after `,` in an object).
    Key,
    Colon,
    /// `,` or the end of the innermost container.
    CommaOrEnd,
    /// The root object closed.
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpInt,
}

impl Num {
    /// A number may end here.
    fn complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpInt)
    }

    fn next(self, b: u8) -> Option<Num> {
        use Num::*;
        Some(match (self, b) {
            (Minus, b'0') => Zero,
            (Minus, b'1'..=b'9') => Int,
            (Int, b'0'..=b'9') => Int,
            (Zero | Int, b'.') => Dot,
            (Dot | Frac, b'0'..=b'9') => Frac,
            (Zero | Int | Frac, b'e' | b'E') => Exp,
            (Exp, b'+' | b'-') => ExpSign,
            (Exp | ExpSign | ExpInt, b'0'..=b'9') => ExpInt,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lex {
    /// Between tokens.
    Between,
    /// Inside a string; `key`: an object key (a `:` follows it).
    Str {
        key: bool,
        /// After a backslash.
        escape: bool,
        /// Hex digits still due after `\u`.
        hex: u8,
        /// Continuation bytes still due in a UTF-8 character.
        utf8: u8,
        /// The range the next continuation byte must fall in (see
        /// [`continuation_range`]): strict UTF-8, no overlong forms or
        /// surrogates.
        range: u8,
    },
    Num(Num),
    /// Inside `true`, `false` or `null`: which one and how many bytes read.
    Literal {
        word: u8,
        read: u8,
    },
}

const LITERALS: [&[u8]; 3] = [b"true", b"false", b"null"];

/// The bytes a UTF-8 continuation may take: after E0 only A0..BF (no
/// overlong forms), after ED only 80..9F (no surrogates), after F0 only
/// 90..BF, after F4 only 80..8F (nothing past U+10FFFF); otherwise 80..BF.
fn continuation_range(range: u8) -> std::ops::RangeInclusive<u8> {
    match range {
        1 => 0xa0..=0xbf,
        2 => 0x80..=0x9f,
        3 => 0x90..=0xbf,
        4 => 0x80..=0x8f,
        _ => 0x80..=0xbf,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonState {
    /// Bit i set: the container at depth i is an object, else an array.
    stack: u64,
    depth: u8,
    expect: Expect,
    lex: Lex,
    whitespace: u8,
}

impl Default for JsonState {
    fn default() -> Self {
        JsonState::new()
    }
}

impl JsonState {
    pub fn new() -> JsonState {
        JsonState {
            stack: 0,
            depth: 0,
            expect: Expect::Root,
            lex: Lex::Between,
            whitespace: 0,
        }
    }

    /// The root object has closed: nothing more may follow.
    pub fn is_done(&self) -> bool {
        self.expect == Expect::Done
    }

    /// The state after `bytes`, or `None` if they cannot continue the text.
    pub fn after(mut self, bytes: &[u8]) -> Option<JsonState> {
        for &b in bytes {
            self.push(b)?;
        }
        Some(self)
    }

    fn in_object(&self) -> bool {
        self.depth > 0 && self.stack >> (self.depth - 1) & 1 == 1
    }

    fn open(&mut self, object: bool) -> Option<()> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        let bit = 1u64 << self.depth;
        self.stack = if object {
            self.stack | bit
        } else {
            self.stack & !bit
        };
        self.depth += 1;
        self.expect = if object {
            Expect::KeyOrEnd
        } else {
            Expect::ValueOrEnd
        };
        Some(())
    }

    fn close(&mut self, object: bool) -> Option<()> {
        if self.depth == 0 || self.in_object() != object {
            return None;
        }
        self.depth -= 1;
        self.expect = if self.depth == 0 {
            Expect::Done
        } else {
            Expect::CommaOrEnd
        };
        Some(())
    }

    /// A value just ended (a string, number or literal).
    fn value_done(&mut self) {
        self.lex = Lex::Between;
        self.expect = Expect::CommaOrEnd;
    }

    fn push(&mut self, b: u8) -> Option<()> {
        match self.lex {
            Lex::Str {
                key,
                escape,
                hex,
                utf8,
                range,
            } => {
                let s = |escape, hex, utf8, range| Lex::Str {
                    key,
                    escape,
                    hex,
                    utf8,
                    range,
                };
                self.lex = if utf8 > 0 {
                    if !continuation_range(range).contains(&b) {
                        return None;
                    }
                    s(false, 0, utf8 - 1, 0)
                } else if hex > 0 {
                    if !b.is_ascii_hexdigit() {
                        return None;
                    }
                    s(false, hex - 1, 0, 0)
                } else if escape {
                    match b {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => s(false, 0, 0, 0),
                        b'u' => s(false, 4, 0, 0),
                        _ => return None,
                    }
                } else {
                    match b {
                        b'"' => {
                            if key {
                                self.lex = Lex::Between;
                                self.expect = Expect::Colon;
                            } else {
                                self.value_done();
                            }
                            return Some(());
                        }
                        b'\\' => s(true, 0, 0, 0),
                        0x00..=0x1f => return None,
                        0x20..=0x7f => s(false, 0, 0, 0),
                        0xc2..=0xdf => s(false, 0, 1, 0),
                        0xe0 => s(false, 0, 2, 1),
                        0xed => s(false, 0, 2, 2),
                        0xe1..=0xef => s(false, 0, 2, 0),
                        0xf0 => s(false, 0, 3, 3),
                        0xf4 => s(false, 0, 3, 4),
                        0xf1..=0xf3 => s(false, 0, 3, 0),
                        _ => return None,
                    }
                };
                Some(())
            }
            Lex::Literal { word, read } => {
                let w = LITERALS[word as usize];
                if w[read as usize] != b {
                    return None;
                }
                if read as usize + 1 == w.len() {
                    self.value_done();
                } else {
                    self.lex = Lex::Literal {
                        word,
                        read: read + 1,
                    };
                }
                Some(())
            }
            Lex::Num(n) => match n.next(b) {
                Some(n) => {
                    self.lex = Lex::Num(n);
                    Some(())
                }
                // The number ends; the byte belongs to what follows it.
                None if n.complete() => {
                    self.value_done();
                    self.push(b)
                }
                None => None,
            },
            Lex::Between => self.structural(b),
        }
    }

    fn structural(&mut self, b: u8) -> Option<()> {
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            if self.expect == Expect::Done || self.whitespace >= MAX_WHITESPACE {
                return None;
            }
            self.whitespace += 1;
            return Some(());
        }
        self.whitespace = 0;
        let value_start = |s: &mut JsonState| -> Option<()> {
            match b {
                b'{' => s.open(true),
                b'[' => s.open(false),
                b'"' => {
                    s.lex = Lex::Str {
                        key: false,
                        escape: false,
                        hex: 0,
                        utf8: 0,
                        range: 0,
                    };
                    Some(())
                }
                b'-' => {
                    s.lex = Lex::Num(Num::Minus);
                    Some(())
                }
                b'0' => {
                    s.lex = Lex::Num(Num::Zero);
                    Some(())
                }
                b'1'..=b'9' => {
                    s.lex = Lex::Num(Num::Int);
                    Some(())
                }
                b't' | b'f' | b'n' => {
                    let word = match b {
                        b't' => 0,
                        b'f' => 1,
                        _ => 2,
                    };
                    s.lex = Lex::Literal { word, read: 1 };
                    Some(())
                }
                _ => None,
            }
        };
        let key_start = |s: &mut JsonState| -> Option<()> {
            (b == b'"').then(|| {
                s.lex = Lex::Str {
                    key: true,
                    escape: false,
                    hex: 0,
                    utf8: 0,
                    range: 0,
                }
            })
        };
        match self.expect {
            Expect::Root => (b == b'{').then(|| self.open(true))?,
            Expect::Value => value_start(self),
            Expect::ValueOrEnd if b == b']' => self.close(false),
            Expect::ValueOrEnd => value_start(self),
            Expect::KeyOrEnd if b == b'}' => self.close(true),
            Expect::KeyOrEnd | Expect::Key => key_start(self),
            Expect::Colon => (b == b':').then(|| self.expect = Expect::Value),
            Expect::CommaOrEnd => match b {
                b',' => {
                    self.expect = if self.in_object() {
                        Expect::Key
                    } else {
                        Expect::Value
                    };
                    Some(())
                }
                b'}' => self.close(true),
                b']' => self.close(false),
                _ => None,
            },
            Expect::Done => None,
        }
    }
}

/// JSON mode for one reply: draws tokens that keep it a JSON object prefix.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonConstraint {
    state: JsonState,
}

impl JsonConstraint {
    /// The reply's object has closed: the reply ends here.
    pub fn is_done(&self) -> bool {
        self.state.is_done()
    }

    /// Draws the next token from `cand` with `draw` (greedy or the
    /// request's sampler). A token that cannot continue the JSON is refused
    /// and the draw repeated among the candidates that can: llama.cpp's
    /// order, so the full check runs only on a refusal.
    pub fn choose(
        &mut self,
        tok: &Tokenizer,
        cand: Vec<(u32, f32)>,
        mut draw: impl FnMut(Vec<(u32, f32)>) -> u32,
    ) -> anyhow::Result<u32> {
        let first = draw(cand.clone());
        if let Some(next) = after_token(tok, self.state, first) {
            self.state = next;
            return Ok(first);
        }
        let allowed: Vec<(u32, f32)> = cand
            .into_iter()
            .filter(|&(id, _)| after_token(tok, self.state, id).is_some())
            .collect();
        if allowed.is_empty() {
            anyhow::bail!("JSON mode: no candidate token continues the reply");
        }
        let id = draw(allowed);
        self.state = after_token(tok, self.state, id).expect("drawn from the allowed tokens");
        Ok(id)
    }
}

/// The state after token `id`, if it can continue the reply: end of
/// generation and control tokens cannot (the reply ends by closing its
/// object), nor tokens that print nothing.
fn after_token(tok: &Tokenizer, state: JsonState, id: u32) -> Option<JsonState> {
    if tok.is_end_of_generation(id) || tok.is_control(id) {
        return None;
    }
    match tok.token_bytes(id) {
        [] => None,
        bytes => state.after(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn accepts(text: &str) -> Option<JsonState> {
        JsonState::new().after(text.as_bytes())
    }

    #[test]
    fn objects_are_accepted_byte_by_byte_and_end_the_text() {
        for doc in [
            "{}",
            " {\"a\": 1}",
            "{\"a\":[1,-2.5e+3,0,true,false,null,\"x\\n\\u00e9\"],\"b\":{\"c\":{}}}",
            "{\n  \"name\": \"Zoë 東京 🎉\",\n  \"n\": -0.0E-0\n}",
            "{\"\":[[],[{}]]}",
        ] {
            let s = accepts(doc).unwrap_or_else(|| panic!("{doc}"));
            assert!(s.is_done(), "{doc}");
            assert!(s.after(b" ").is_none(), "nothing after the root: {doc}");
            // Every prefix is accepted and not done.
            for i in 0..doc.len() {
                let p = JsonState::new().after(&doc.as_bytes()[..i]).unwrap();
                assert!(!p.is_done(), "{doc} at {i}");
            }
        }
    }

    #[test]
    fn what_is_not_a_json_object_prefix_is_refused() {
        for bad in [
            "[1]",
            "\"a\"",
            "1",
            "{a",
            "{\"a\" 1",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":01",
            "{\"a\":1.}",
            "{\"a\":-}",
            "{\"a\":1e}",
            "{\"a\":tru }",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12g4\"}",
            "{\"a\":\"line\nbreak\"}",
            "{\"a\":[}",
            "{\"a\":{]",
            "{}}",
            "{\"a\":\u{1}}",
        ] {
            assert!(accepts(bad).is_none(), "{bad:?}");
        }
        // Invalid UTF-8 inside a string.
        assert!(JsonState::new().after(b"{\"a\":\"\xff").is_none());
        assert!(JsonState::new().after(b"{\"a\":\"\xc3(").is_none());
        assert!(JsonState::new().after(b"{\"a\":\"\xc3\xa9\"}").is_some());
        // Overlong forms, surrogates and code points past U+10FFFF.
        for bad in [
            &b"\xe0\x80\x80"[..],
            b"\xed\xa0\x80",
            b"\xf0\x80\x80\x80",
            b"\xf4\x90\x80\x80",
            b"\xc0\xaf",
        ] {
            let doc = [&b"{\"a\":\""[..], bad].concat();
            assert!(JsonState::new().after(&doc).is_none(), "{bad:x?}");
        }
        for good in [
            "\u{7ff}",
            "\u{800}",
            "\u{d7ff}",
            "\u{e000}",
            "\u{10000}",
            "\u{10ffff}",
        ] {
            assert!(
                accepts(&format!("{{\"a\":\"{good}\"}}")).is_some(),
                "{good:?}"
            );
        }
    }

    #[test]
    fn whitespace_runs_and_nesting_are_bounded() {
        let ws = " ".repeat(MAX_WHITESPACE as usize);
        assert!(accepts(&format!("{{{ws}\"a\"{ws}:{ws}1{ws}}}")).is_some());
        assert!(accepts(&format!("{{{ws} ")).is_none());
        // Whitespace inside a string is content, not a run.
        assert!(accepts(&format!("{{\"{ws}{ws}\"")).is_some());
        let deep = |n: usize| format!("{{\"a\":{}", "[".repeat(n - 1));
        assert!(accepts(&deep(MAX_DEPTH as usize)).is_some());
        assert!(accepts(&deep(MAX_DEPTH as usize + 1)).is_none());
    }

    fn random_value(rng: &mut rand::rngs::StdRng, depth: u32) -> serde_json::Value {
        use serde_json::Value;
        match rng.random_range(0..if depth > 3 { 4 } else { 6 }) {
            0 => Value::Null,
            1 => Value::Bool(rng.random()),
            2 => {
                if rng.random() {
                    serde_json::json!(rng.random_range(-1_000_000i64..1_000_000))
                } else {
                    serde_json::json!(rng.random_range(-1e6..1e6f64))
                }
            }
            3 => {
                let chars = ['a', '"', '\\', '\n', '\u{1}', 'é', '東', '🎉', '/', ' '];
                let n = rng.random_range(0..6);
                Value::String(
                    (0..n)
                        .map(|_| chars[rng.random_range(0..chars.len())])
                        .collect(),
                )
            }
            4 => Value::Array(
                (0..rng.random_range(0..4))
                    .map(|_| random_value(rng, depth + 1))
                    .collect(),
            ),
            _ => random_object(rng, depth + 1),
        }
    }

    fn random_object(rng: &mut rand::rngs::StdRng, depth: u32) -> serde_json::Value {
        serde_json::Value::Object(
            (0..rng.random_range(0..4))
                .map(|i| (format!("k{i}é"), random_value(rng, depth + 1)))
                .collect(),
        )
    }

    /// serde_json is the oracle: whatever it writes is accepted (compact and
    /// pretty), and a random edit of it is accepted as a whole object exactly
    /// when serde_json parses the edit as an object.
    #[test]
    fn agrees_with_serde_json_on_random_documents_and_edits() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        let alphabet = b"{}[]:,\"\\ 0123456789-+.eEtrufalsn\n";
        let mut checked_edits = 0;
        for _ in 0..2000 {
            let v = random_object(&mut rng, 0);
            for text in [
                serde_json::to_string(&v).unwrap(),
                serde_json::to_string_pretty(&v).unwrap(),
            ] {
                if text.lines().any(|l| l.len() - l.trim_start().len() > 20) {
                    continue; // deeper indentation than the whitespace bound
                }
                let s = accepts(&text).unwrap_or_else(|| panic!("{text}"));
                assert!(s.is_done(), "{text}");
                let mut bytes = text.clone().into_bytes();
                let i = rng.random_range(0..bytes.len());
                match rng.random_range(0..3) {
                    0 => {
                        bytes.remove(i);
                    }
                    1 => bytes.insert(i, alphabet[rng.random_range(0..alphabet.len())]),
                    _ => bytes[i] = alphabet[rng.random_range(0..alphabet.len())],
                }
                let ours = JsonState::new().after(&bytes).is_some_and(|s| s.is_done());
                // IgnoredAny: serde_json checks the syntax only (11e783 is
                // JSON, though no f64).
                let object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
                let theirs = object
                    && std::str::from_utf8(&bytes).is_ok()
                    && !bytes.last().unwrap().is_ascii_whitespace()
                    && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok();
                assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(&bytes));
                checked_edits += 1;
            }
        }
        assert!(checked_edits > 3000);
    }
}
