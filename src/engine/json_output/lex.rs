//! The lexical pieces both recognizers share: numbers and the inside of
//! strings, byte by byte.

/// Where a JSON number is: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Num {
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
    /// The number's state after its first byte, if `b` starts one.
    pub fn start(b: u8) -> Option<Num> {
        match b {
            b'-' => Some(Num::Minus),
            b'0' => Some(Num::Zero),
            b'1'..=b'9' => Some(Num::Int),
            _ => None,
        }
    }

    /// A number may end here.
    pub fn complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpInt)
    }

    /// No fraction or exponent yet: still an integer.
    pub fn integral(self) -> bool {
        matches!(self, Num::Minus | Num::Zero | Num::Int)
    }

    /// In the exponent (`e` seen).
    pub fn exponent(self) -> bool {
        matches!(self, Num::Exp | Num::ExpSign | Num::ExpInt)
    }

    pub fn next(self, b: u8) -> Option<Num> {
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

/// Inside a string, after its opening quote: escapes, and strict UTF-8 (no
/// overlong forms, surrogates or code points past U+10FFFF).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct StrLex {
    /// After a backslash.
    escape: bool,
    /// Hex digits still due after `\u`.
    hex: u8,
    /// Continuation bytes still due in a UTF-8 character.
    utf8: u8,
    /// The range the next continuation byte must fall in (see
    /// [`continuation_range`]).
    range: u8,
}

/// What a byte did inside a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StrStep {
    /// Part of a character not yet complete.
    Partial,
    /// A character (or escape sequence) is complete.
    Char,
    /// The closing quote.
    Closed,
}

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

impl StrLex {
    pub fn push(&mut self, b: u8) -> Option<StrStep> {
        let mut next = StrLex::default();
        let step = if self.utf8 > 0 {
            if !continuation_range(self.range).contains(&b) {
                return None;
            }
            next.utf8 = self.utf8 - 1;
            if next.utf8 == 0 {
                StrStep::Char
            } else {
                StrStep::Partial
            }
        } else if self.hex > 0 {
            if !b.is_ascii_hexdigit() {
                return None;
            }
            next.hex = self.hex - 1;
            if next.hex == 0 {
                StrStep::Char
            } else {
                StrStep::Partial
            }
        } else if self.escape {
            match b {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => StrStep::Char,
                b'u' => {
                    next.hex = 4;
                    StrStep::Partial
                }
                _ => return None,
            }
        } else {
            let (utf8, range) = match b {
                b'"' => return Some(StrStep::Closed),
                b'\\' => {
                    next.escape = true;
                    *self = next;
                    return Some(StrStep::Partial);
                }
                0x00..=0x1f => return None,
                0x20..=0x7f => (0, 0),
                0xc2..=0xdf => (1, 0),
                0xe0 => (2, 1),
                0xed => (2, 2),
                0xe1..=0xef => (2, 0),
                0xf0 => (3, 3),
                0xf4 => (3, 4),
                0xf1..=0xf3 => (3, 0),
                _ => return None,
            };
            next.utf8 = utf8;
            next.range = range;
            if utf8 == 0 {
                StrStep::Char
            } else {
                StrStep::Partial
            }
        };
        *self = next;
        Some(step)
    }
}
