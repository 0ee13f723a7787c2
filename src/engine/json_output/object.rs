//! JSON mode's recognizer: RFC 8259 JSON whose root is an object, byte by
//! byte. It is `Copy` (the open containers are a bit stack), so trying a
//! token on a copy costs a few instructions per byte.

use super::lex::{Num, StrLex, StrStep};
use super::{MAX_DEPTH, MAX_WHITESPACE};

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
enum Lex {
    /// Between tokens.
    Between,
    /// Inside a string; `key`: an object key (a `:` follows it).
    Str {
        key: bool,
        lex: StrLex,
    },
    Num(Num),
    /// Inside `true`, `false` or `null`: which one and how many bytes read.
    Literal {
        word: u8,
        read: u8,
    },
}

const LITERALS: [&[u8]; 3] = [b"true", b"false", b"null"];

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
            Lex::Str { key, mut lex } => {
                match lex.push(b)? {
                    StrStep::Closed if key => {
                        self.lex = Lex::Between;
                        self.expect = Expect::Colon;
                    }
                    StrStep::Closed => self.value_done(),
                    StrStep::Partial | StrStep::Char => self.lex = Lex::Str { key, lex },
                }
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
                        lex: StrLex::default(),
                    };
                    Some(())
                }
                b'-' | b'0'..=b'9' => {
                    s.lex = Lex::Num(Num::start(b)?);
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
                    lex: StrLex::default(),
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
