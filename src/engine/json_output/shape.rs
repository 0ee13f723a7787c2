//! A string's shape: `format` (date, time, date-time, uuid, ipv4) and
//! `pattern` (a regular expression), each compiled to a GBNF grammar over
//! the string's characters, which the schema's string frame follows byte
//! by byte beside its own lexing.
//!
//! A shaped string is written without escapes (its raw bytes are its
//! characters), so `"`, `\` and control characters cannot occur in it even
//! where a pattern would allow them: a narrower set of strings, never a
//! wrong one.

use std::sync::Arc;

use crate::engine::grammar::Grammar;

/// RFC 3339 dates: the days each month has, 29 February in leap years only
/// (a year divisible by 4, centuries by 400), as `date.fromisoformat`
/// and JSON Schema validators check them; years 1000 to 9999 (validators
/// differ on year 0).
const DATE: &str = r#"
date ::= year "-" month-day | leap-year "-02-29"
year ::= [1-9] [0-9] [0-9] [0-9]
leap-year ::= [1-9] [0-9] ("0" [48] | [2468] [048] | [13579] [26]) | ([2468] [048] | [13579] [26]) "00"
month-day ::= ("0" [13578] | "1" [02]) "-" (day28 | "29" | "30" | "31") | ("0" [469] | "11") "-" (day28 | "29" | "30") | "02-" day28
day28 ::= "0" [1-9] | "1" [0-9] | "2" [0-8]
"#;

/// RFC 3339 full-time: a fraction of any length, an offset always.
const TIME: &str = r#"
time ::= hour ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]+)? ("Z" | [+-] hour ":" [0-5] [0-9])
hour ::= [01] [0-9] | "2" [0-3]
"#;

/// The formats followed, and the grammar of each (its rule `root`).
fn format_grammar(name: &str) -> Option<String> {
    let hex = |n: usize| vec!["[0-9a-fA-F]"; n].join(" ");
    Some(match name {
        "date" => format!("root ::= date\n{DATE}"),
        "time" => format!("root ::= time\n{TIME}"),
        "date-time" => format!("root ::= date \"T\" time\n{DATE}{TIME}"),
        "uuid" => format!(
            "root ::= {} \"-\" {} \"-\" {} \"-\" {} \"-\" {}",
            hex(8),
            hex(4),
            hex(4),
            hex(4),
            hex(12)
        ),
        "ipv4" => "root ::= octet \".\" octet \".\" octet \".\" octet\n\
                   octet ::= \"25\" [0-5] | \"2\" [0-4] [0-9] | \"1\" [0-9] [0-9] | [1-9] [0-9] | [0-9]"
            .to_string(),
        _ => return None,
    })
}

pub(super) const FORMATS: &str = "date, time, date-time, uuid, ipv4";

/// The grammar of a `format`; the error names it.
pub(super) fn of_format(name: &str, at: &str) -> Result<Arc<Grammar>, String> {
    let src = format_grammar(name).ok_or(format!(
        "{at}.format: '{name}' is not supported (these are: {FORMATS})"
    ))?;
    Ok(Arc::new(
        Grammar::parse(&src).expect("the built-in format grammars parse"),
    ))
}

/// The grammar of a `pattern` (ECMA-262, as JSON Schema has it: it may
/// match anywhere unless anchored with `^` and `$`); the error names what
/// of it is not followed.
pub(super) fn of_pattern(re: &str, at: &str) -> Result<Arc<Grammar>, String> {
    let err = |m: String| format!("{at}.pattern: {m}");
    let body = translate(re).map_err(err)?;
    let g = Grammar::parse(&format!("root ::= {body}\n")).map_err(|e| err(e.to_string()))?;
    Ok(Arc::new(g))
}

/// A character a shaped string cannot hold unescaped.
fn unwritable(c: u32) -> bool {
    c < 0x20 || c == '"' as u32 || c == '\\' as u32
}

fn gbnf_char(c: u32) -> String {
    format!("\\U{c:08x}")
}

/// The regular expression as a GBNF expression.
fn translate(re: &str) -> Result<String, String> {
    let mut cs: Vec<char> = re.chars().collect();
    let start = cs.first() == Some(&'^');
    if start {
        cs.remove(0);
    }
    // A final `$` not itself escaped (an even run of backslashes before it).
    let escapes = cs.iter().rev().skip(1).take_while(|&&c| c == '\\').count();
    let end = cs.last() == Some(&'$') && escapes % 2 == 0;
    if end {
        cs.pop();
    }
    let mut p = Re { cs, i: 0 };
    let (body, alternatives) = p.alternation()?;
    if p.i < p.cs.len() {
        return Err("a ')' closes no group".into());
    }
    if alternatives && (start || end) {
        // `^a|b$` anchors each side alone: not what `^(a|b)$` means.
        return Err("'|' outside a group of an anchored pattern: write ^(...|...)$".into());
    }
    let any = |anchored: bool| if anchored { "" } else { " .* " };
    Ok(format!("{}({body}){}", any(start), any(end)))
}

struct Re {
    cs: Vec<char>,
    i: usize,
}

impl Re {
    fn peek(&self) -> Option<char> {
        self.cs.get(self.i).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek();
        self.i += 1;
        c
    }

    /// Sequences joined by `|`, up to a `)` or the end; whether there was
    /// more than one.
    fn alternation(&mut self) -> Result<(String, bool), String> {
        let mut alts = vec![self.sequence()?];
        while self.peek() == Some('|') {
            self.i += 1;
            alts.push(self.sequence()?);
        }
        Ok((alts.join(" | "), alts.len() > 1))
    }

    fn sequence(&mut self) -> Result<String, String> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            items.push(format!("{atom}{}", self.quantifier()?));
        }
        if items.is_empty() {
            return Ok("\"\"".into());
        }
        Ok(items.join(" "))
    }

    fn atom(&mut self) -> Result<String, String> {
        let c = self.bump().expect("called before the end");
        Ok(match c {
            '(' => {
                if self.peek() == Some('?') {
                    self.i += 1;
                    if self.bump() != Some(':') {
                        return Err("lookarounds and named groups are not supported".into());
                    }
                }
                let (inner, _) = self.alternation()?;
                if self.bump() != Some(')') {
                    return Err("a group is not closed".into());
                }
                format!("({inner})")
            }
            '[' => self.class()?,
            '.' => ".".into(),
            '\\' => self.escape()?,
            '^' | '$' => return Err(format!("'{c}' inside the pattern is not supported")),
            '*' | '+' | '?' | '{' => return Err(format!("'{c}' repeats nothing")),
            c => literal(c as u32)?,
        })
    }

    fn quantifier(&mut self) -> Result<String, String> {
        let q = match self.peek() {
            Some(c @ ('*' | '+' | '?')) => {
                self.i += 1;
                c.to_string()
            }
            Some('{') => {
                let close = self.cs[self.i..]
                    .iter()
                    .position(|&c| c == '}')
                    .ok_or("a '{' is not closed")?;
                let inner: String = self.cs[self.i + 1..self.i + close].iter().collect();
                let ok = !inner.is_empty()
                    && inner.chars().all(|c| c.is_ascii_digit() || c == ',')
                    && inner.matches(',').count() <= 1
                    && !inner.starts_with(',');
                if !ok {
                    return Err(format!("'{{{inner}}}' is not a repetition"));
                }
                self.i += close + 1;
                format!("{{{inner}}}")
            }
            _ => return Ok(String::new()),
        };
        // Lazy forms match the same strings.
        if self.peek() == Some('?') {
            self.i += 1;
        }
        if matches!(self.peek(), Some('*' | '+' | '?' | '{')) {
            return Err("a repetition of a repetition is not supported".into());
        }
        Ok(q)
    }

    /// After a `\` outside a class.
    fn escape(&mut self) -> Result<String, String> {
        let c = self.bump().ok_or("the pattern ends in '\\'")?;
        if let Some(class) = class_escape(c) {
            return Ok(class.to_string());
        }
        match c {
            'b' | 'B' => Err("word boundaries (\\b) are not supported".into()),
            '1'..='9' | 'k' => Err("back-references are not supported".into()),
            _ => literal(self.escaped_char(c)?),
        }
    }

    /// The character an escape `\c` stands for (`c` read already).
    fn escaped_char(&mut self, c: char) -> Result<u32, String> {
        let hex = |s: &mut Re, n: usize| -> Result<u32, String> {
            let digits: String = (0..n).filter_map(|_| s.bump()).collect();
            u32::from_str_radix(&digits, 16)
                .ok()
                .filter(|_| digits.len() == n)
                .ok_or(format!("'{digits}' is not {n} hex digits"))
        };
        Ok(match c {
            'x' => hex(self, 2)?,
            'u' => {
                let v = hex(self, 4)?;
                char::from_u32(v).ok_or("a \\u escape of a surrogate is not supported")? as u32
            }
            'n' => '\n' as u32,
            'r' => '\r' as u32,
            't' => '\t' as u32,
            'f' => 0x0c,
            'v' => 0x0b,
            '0' => 0,
            c if c.is_ascii_alphanumeric() => return Err(format!("unknown escape '\\{c}'")),
            c => c as u32,
        })
    }

    /// After a `[`: the class, its escapes expanded.
    fn class(&mut self) -> Result<String, String> {
        let negated = self.peek() == Some('^');
        if negated {
            self.i += 1;
        }
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        loop {
            let c = self.bump().ok_or("a '[' is not closed")?;
            if c == ']' {
                break;
            }
            let lo = if c == '\\' {
                let e = self.bump().ok_or("a '[' is not closed")?;
                match e {
                    'd' => {
                        ranges.push(('0' as u32, '9' as u32));
                        continue;
                    }
                    'w' => {
                        ranges.extend([(0x30, 0x39), (0x41, 0x5a), (0x61, 0x7a), (0x5f, 0x5f)]);
                        continue;
                    }
                    's' => {
                        ranges.extend([(0x20, 0x20), (0x09, 0x0d)]);
                        continue;
                    }
                    'D' | 'W' | 'S' => {
                        return Err(format!("'\\{e}' inside a class is not supported"))
                    }
                    'b' => 0x08,
                    e => self.escaped_char(e)?,
                }
            } else {
                c as u32
            };
            // A range, unless the `-` is the class's last character.
            let hi = if self.peek() == Some('-') && self.cs.get(self.i + 1) != Some(&']') {
                self.i += 1;
                let h = self.bump().ok_or("a '[' is not closed")?;
                let h = if h == '\\' {
                    let e = self.bump().ok_or("a '[' is not closed")?;
                    self.escaped_char(e)?
                } else {
                    h as u32
                };
                if h < lo {
                    return Err("a class range runs backwards".into());
                }
                h
            } else {
                lo
            };
            ranges.push((lo, hi));
        }
        if ranges.is_empty() {
            return Err("an empty class matches nothing".into());
        }
        if !negated && ranges.iter().all(|&(lo, hi)| (lo..=hi).all(unwritable)) {
            return Err(
                "a class of only '\"', '\\' or control characters cannot be written unescaped"
                    .into(),
            );
        }
        let members: String = ranges
            .iter()
            .map(|&(lo, hi)| match lo == hi {
                true => gbnf_char(lo),
                false => format!("{}-{}", gbnf_char(lo), gbnf_char(hi)),
            })
            .collect();
        Ok(format!("[{}{members}]", if negated { "^" } else { "" }))
    }
}

/// `\d`, `\w`, `\s` and their negations as GBNF classes.
fn class_escape(c: char) -> Option<&'static str> {
    Some(match c {
        'd' => "[0-9]",
        'D' => "[^0-9]",
        'w' => "[a-zA-Z0-9_]",
        'W' => "[^a-zA-Z0-9_]",
        's' => "[ \\t\\n\\r\\x0b\\x0c]",
        'S' => "[^ \\t\\n\\r\\x0b\\x0c]",
        _ => return None,
    })
}

fn literal(c: u32) -> Result<String, String> {
    if unwritable(c) {
        return Err(format!(
            "the character U+{c:04X} ('\"', '\\' or a control character) cannot be written unescaped"
        ));
    }
    Ok(format!("\"{}\"", gbnf_char(c)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::grammar::GrammarState;

    fn matches(g: &Arc<Grammar>, s: &str) -> bool {
        GrammarState::new(g)
            .after(s.as_bytes())
            .is_some_and(|st| st.is_accepting())
    }

    #[test]
    fn dates_are_calendar_dates() {
        let g = of_format("date", "x").unwrap();
        // Every day of 1999..=2001 and of 1900 and 2000 (centuries), against
        // the calendar's own count.
        let leap = |y: u32| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        for y in [1900u32, 1999, 2000, 2001, 2024, 2100] {
            for m in 1..=12u32 {
                let days = match m {
                    2 if leap(y) => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                };
                for d in 0..=32u32 {
                    let s = format!("{y:04}-{m:02}-{d:02}");
                    assert_eq!(matches(&g, &s), (1..=days).contains(&d), "{s}");
                }
            }
        }
        for bad in [
            "2024-13-01",
            "2024-00-10",
            "24-01-01",
            "2024-1-01",
            "2024-01-01T",
        ] {
            assert!(!matches(&g, bad), "{bad}");
        }
    }

    #[test]
    fn times_uuids_and_addresses() {
        let t = of_format("date-time", "x").unwrap();
        for good in [
            "2024-02-29T23:59:59Z",
            "1999-12-31T00:00:00.123456+05:30",
            "2000-01-01T12:00:00-00:00",
        ] {
            assert!(matches(&t, good), "{good}");
        }
        for bad in [
            "2023-02-29T10:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T10:60:00Z",
            "2024-01-01T10:00:00",
            "2024-01-01 10:00:00Z",
            "2024-01-01T10:00:00.Z",
        ] {
            assert!(!matches(&t, bad), "{bad}");
        }
        let u = of_format("uuid", "x").unwrap();
        assert!(matches(&u, "123e4567-e89b-12d3-A456-426614174000"));
        assert!(!matches(&u, "123e4567e89b12d3a456426614174000"));
        let ip = of_format("ipv4", "x").unwrap();
        for o in 0..=300u32 {
            let s = format!("10.{o}.0.1");
            assert_eq!(matches(&ip, &s), o <= 255, "{s}");
        }
        assert!(!matches(&ip, "01.2.3.4") && !matches(&ip, "1.2.3"));
        let e = of_format("email", "a.b").unwrap_err();
        assert!(e.contains("a.b.format: 'email' is not supported"), "{e}");
    }

    #[test]
    fn patterns_match_as_regular_expressions_do() {
        // (pattern, matching, not matching): JSON Schema's search semantics.
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("^[A-Z]{3}$", &["ABC", "XYZ"], &["AB", "ABCD", "abc", "A1C"]),
            ("^\\d{3}-\\d{4}$", &["555-1234"], &["5551234", "55-12345"]),
            ("abc", &["abc", "xxabcyy", "ab abc"], &["ab", "acb"]),
            ("^ab", &["abc", "ab"], &["cab"]),
            ("c$", &["abc", "c"], &["ca"]),
            (
                "^(cat|dog)s?$",
                &["cat", "dogs"],
                &["cats!", "bird", "catdog"],
            ),
            ("^[^0-9]+$", &["abc", "a b"], &["a1", ""]),
            ("^a.c$", &["abc", "a-c", "aéc"], &["ac", "abbc"]),
            ("^\\w+@\\w+\\.com$", &["me@x.com"], &["me@x.org", "@x.com"]),
            ("^[a-z-]+$", &["a-b"], &["a_b"]),
            ("^x{2,}y?$", &["xx", "xxxy"], &["x", "xyy"]),
            ("^(?:ab)+?$", &["ab", "abab"], &["aba"]),
            ("^\\u00e9\\.\\x41$", &["é.A"], &["e.A"]),
            ("^[\\s\\d]*$", &[" 1 2", ""], &["a"]),
            ("^$", &[""], &["a"]),
        ];
        for (re, good, bad) in cases {
            let g = of_pattern(re, "p").unwrap_or_else(|e| panic!("{re}: {e}"));
            for t in *good {
                assert!(matches(&g, t), "{re} should match {t:?}");
            }
            for t in *bad {
                assert!(!matches(&g, t), "{re} should not match {t:?}");
            }
        }
        for (re, says) in [
            ("^a|b$", "'|' outside a group"),
            ("(?=a)", "lookarounds"),
            ("\\bword", "word boundaries"),
            ("(a)\\1", "back-references"),
            ("a\"b", "U+0022"),
            ("^a\\nb$", "U+000A"),
            ("[\\n]", "class of only"),
            ("(ab", "not closed"),
            ("ab)", "closes no group"),
            ("*a", "repeats nothing"),
            ("a**", "repetition of a repetition"),
            ("[z-a]", "runs backwards"),
            ("a\\q", "unknown escape"),
        ] {
            let e = of_pattern(re, "p").unwrap_err();
            assert!(
                e.starts_with("p.pattern: ") && e.contains(says),
                "{re}: {e}"
            );
        }
    }
}
