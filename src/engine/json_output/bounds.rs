//! `minimum` / `maximum` (and their exclusive forms) on integers and
//! numbers, held from a number's first byte: a byte is taken only while
//! some way of finishing the number lands in range, so the model is never
//! led into a number it cannot end.
//!
//! Arithmetic is on exact decimals (digit strings), so a bound of 1e40 or
//! 0.1 means what it says: a bound is the shortest decimal that reads back
//! as the schema's f64, and a number in range as decimals is in range as
//! the f64 a validator would parse (rounding is monotonic).

use std::cmp::Ordering;

use serde_json::{Map, Value};

/// The schema keywords this module enforces.
pub(super) const KEYWORDS: &[&str] =
    &["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];

/// An exact decimal: ASCII digits, the integer part without leading zeros
/// and the fraction without trailing zeros; zero is never negative.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Dec {
    neg: bool,
    int: Vec<u8>,
    frac: Vec<u8>,
}

impl Dec {
    fn new(neg: bool, int: &[u8], frac: &[u8]) -> Dec {
        let int = &int[int.iter().position(|&d| d != b'0').unwrap_or(int.len())..];
        let frac = &frac[..frac.iter().rposition(|&d| d != b'0').map_or(0, |i| i + 1)];
        Dec {
            neg: neg && !(int.is_empty() && frac.is_empty()),
            int: int.to_vec(),
            frac: frac.to_vec(),
        }
    }

    /// A JSON number without an exponent (`-12.50`).
    fn parse(text: &[u8]) -> Dec {
        let (neg, body) = match text.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, text),
        };
        match body.iter().position(|&b| b == b'.') {
            Some(i) => Dec::new(neg, &body[..i], &body[i + 1..]),
            None => Dec::new(neg, body, b""),
        }
    }

    fn of_f64(x: f64) -> Dec {
        // Display writes the shortest digits that read back as `x`, never
        // with an exponent.
        Dec::parse(format!("{x}").as_bytes())
    }

    fn negated(&self) -> Dec {
        Dec::new(!self.neg, &self.int, &self.frac)
    }

    fn is_integral(&self) -> bool {
        self.frac.is_empty()
    }

    /// The integer part, rounded toward zero.
    fn trunc(&self) -> Dec {
        Dec::new(self.neg, &self.int, b"")
    }

    /// An integral value's magnitude plus one, the sign kept.
    fn away_from_zero(&self) -> Dec {
        Dec::new(self.neg, &increment(&self.int), b"")
    }

    fn floor(&self) -> Dec {
        match (self.is_integral(), self.neg) {
            (true, _) | (false, false) => self.trunc(),
            (false, true) => self.trunc().away_from_zero(),
        }
    }

    fn ceil(&self) -> Dec {
        self.negated().floor().negated()
    }

    /// An integral value plus one.
    fn plus_one(&self) -> Dec {
        if self.neg {
            Dec::new(true, &decrement(&self.int), b"")
        } else {
            self.away_from_zero()
        }
    }

    fn minus_one(&self) -> Dec {
        self.negated().plus_one().negated()
    }

    fn magnitude_cmp(&self, o: &Dec) -> Ordering {
        self.int
            .len()
            .cmp(&o.int.len())
            .then_with(|| self.int.cmp(&o.int))
            .then_with(|| self.frac.cmp(&o.frac))
    }
}

impl Ord for Dec {
    fn cmp(&self, o: &Dec) -> Ordering {
        match (self.neg, o.neg) {
            (false, false) => self.magnitude_cmp(o),
            (true, true) => o.magnitude_cmp(self),
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
        }
    }
}

impl PartialOrd for Dec {
    fn partial_cmp(&self, o: &Dec) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// Digits plus one (`"199"` -> `"200"`, `""` -> `"1"`).
fn increment(digits: &[u8]) -> Vec<u8> {
    let mut d = digits.to_vec();
    for i in (0..d.len()).rev() {
        if d[i] == b'9' {
            d[i] = b'0';
        } else {
            d[i] += 1;
            return d;
        }
    }
    d.insert(0, b'1');
    d
}

/// Nonzero digits minus one (`"200"` -> `"199"`, leading zeros left for
/// `Dec::new` to drop).
fn decrement(digits: &[u8]) -> Vec<u8> {
    let mut d = digits.to_vec();
    for i in (0..d.len()).rev() {
        if d[i] == b'0' {
            d[i] = b'9';
        } else {
            d[i] -= 1;
            break;
        }
    }
    d
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Bound {
    at: Dec,
    strict: bool,
}

impl Bound {
    fn negated(&self) -> Bound {
        Bound {
            at: self.at.negated(),
            strict: self.strict,
        }
    }

    /// `v` is not below this lower bound.
    fn allows_above(&self, v: &Dec) -> bool {
        if self.strict {
            *v > self.at
        } else {
            *v >= self.at
        }
    }

    /// `v` is not above this upper bound.
    fn allows_below(&self, v: &Dec) -> bool {
        if self.strict {
            *v < self.at
        } else {
            *v <= self.at
        }
    }
}

/// The range a bounded integer or number must land in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Range {
    lo: Option<Bound>,
    hi: Option<Bound>,
    integer: bool,
}

impl Range {
    /// The schema's bounds, `None` when it has none. For an integer they
    /// are made inclusive integers (`minimum` 1.5 is 2, `exclusiveMaximum`
    /// 10 is 9); of a bound and its exclusive form the tighter holds, as
    /// JSON Schema applies both.
    pub fn of_schema(
        m: &Map<String, Value>,
        integer: bool,
        at: &str,
    ) -> Result<Option<Range>, String> {
        let get = |k: &str| -> Result<Option<Dec>, String> {
            match m.get(k) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .filter(|x| x.is_finite())
                    .map(|x| Some(Dec::of_f64(x)))
                    .ok_or(format!("{at}.{k}: not a number")),
            }
        };
        let bound = |at: Dec, strict: bool| Bound { at, strict };
        let (min, xmin) = (get("minimum")?, get("exclusiveMinimum")?);
        let (max, xmax) = (get("maximum")?, get("exclusiveMaximum")?);
        let (lo, hi) = if integer {
            let inclusive = |v: Dec| bound(v, false);
            let lo = [min.map(|v| v.ceil()), xmin.map(|v| v.floor().plus_one())];
            let hi = [max.map(|v| v.floor()), xmax.map(|v| v.ceil().minus_one())];
            (
                lo.into_iter().flatten().max().map(inclusive),
                hi.into_iter().flatten().min().map(inclusive),
            )
        } else {
            // The greater lower bound; at a tie the strict one.
            let lo = [min.map(|v| bound(v, false)), xmin.map(|v| bound(v, true))]
                .into_iter()
                .flatten()
                .max_by(|a, b| a.at.cmp(&b.at).then(a.strict.cmp(&b.strict)));
            let hi = [max.map(|v| bound(v, false)), xmax.map(|v| bound(v, true))]
                .into_iter()
                .flatten()
                .min_by(|a, b| a.at.cmp(&b.at).then(b.strict.cmp(&a.strict)));
            (lo, hi)
        };
        if let (Some(l), Some(h)) = (&lo, &hi) {
            if l.at > h.at || (l.at == h.at && (l.strict || h.strict)) {
                let what = if integer { "integer" } else { "number" };
                return Err(format!(
                    "{at}: no {what} is between the minimum and the maximum"
                ));
            }
        }
        if lo.is_none() && hi.is_none() {
            return Ok(None);
        }
        Ok(Some(Range { lo, hi, integer }))
    }

    /// A whole number text (no exponent) is in range.
    pub fn holds(&self, text: &[u8]) -> bool {
        let v = Dec::parse(text);
        self.lo.as_ref().is_none_or(|l| l.allows_above(&v))
            && self.hi.as_ref().is_none_or(|h| h.allows_below(&v))
    }

    /// Some number that `text` (a valid prefix of one, no exponent) can
    /// still become is in range.
    pub fn may_reach(&self, text: &[u8]) -> bool {
        // A negative number's reach is the mirror of its digits' reach.
        let (lo, hi, body) = match text.split_first() {
            Some((b'-', body)) => (
                self.hi.as_ref().map(Bound::negated),
                self.lo.as_ref().map(Bound::negated),
                body,
            ),
            _ => (self.lo.clone(), self.hi.clone(), text),
        };
        // Whether [a, b) meets the range. Every endpoint is an integer when
        // `integer` (and then the bounds are inclusive integers), so the
        // integers a..b-1 meet it exactly when these hold.
        let meets = |a: &Dec, b: &Dec| {
            hi.as_ref().is_none_or(|h| h.allows_below(a)) && lo.as_ref().is_none_or(|l| *b > l.at)
        };
        let dot = body.iter().position(|&b| b == b'.');
        match dot {
            // `-` alone: 0 (as -0) and every negative number.
            None if body.is_empty() => hi
                .as_ref()
                .is_none_or(|h| h.allows_below(&Dec::parse(b"0"))),
            // `0`: only 0 and, for numbers, 0.x.
            None if body == b"0" => meets(&Dec::parse(b"0"), &Dec::parse(b"1")),
            // Digits d: [d 10^k, (d + 1) 10^k) for k = 0, 1, ...
            None => {
                // Below a positive lower bound of n integer digits, every
                // k with fewer than n - 1 - len(d) zeros falls short: start
                // past them (a bound of 1e300 would cost 300 tries a byte).
                let skip = match &lo {
                    Some(l) if !l.at.neg => l.at.int.len().saturating_sub(body.len() + 1),
                    _ => 0,
                };
                let zeros = vec![b'0'; skip];
                let (mut a, mut b) = (
                    [body, &zeros].concat(),
                    [&increment(body)[..], &zeros].concat(),
                );
                let longest = [&lo, &hi]
                    .iter()
                    .flat_map(|x| x.as_ref().map(|x| x.at.int.len()))
                    .max()
                    .unwrap_or(0);
                for _ in skip..=longest.saturating_sub(body.len()) + 1 {
                    let (da, db) = (Dec::parse(&a), Dec::parse(&b));
                    if meets(&da, &db) {
                        return true;
                    }
                    if hi.as_ref().is_some_and(|h| da > h.at) {
                        return false;
                    }
                    a.push(b'0');
                    b.push(b'0');
                }
                false
            }
            // d.f: [d.f, d.f + 10^-len(f)) ("d." as "d.0" wide).
            Some(i) => {
                let (int, frac) = (&body[..i], &body[i + 1..]);
                let a = Dec::new(false, int, frac);
                let digits = increment(&[int, frac].concat());
                let split = digits.len() - frac.len();
                let b = Dec::new(false, &digits[..split], &digits[split..]);
                meets(&a, &b)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_round_and_compare_exactly() {
        let d = |s: &str| Dec::parse(s.as_bytes());
        assert!(d("0.1") < d("0.10000000000000001"));
        assert_eq!(d("-0"), d("0.000"));
        assert!(d("-2.5") < d("-2.49") && d("-2.49") < d("0") && d("9") < d("10"));
        assert_eq!(d("-2.5").floor(), d("-3"));
        assert_eq!(d("-2.5").ceil(), d("-2"));
        assert_eq!(d("2.5").ceil(), d("3"));
        assert_eq!(d("-1").plus_one(), d("0"));
        assert_eq!(d("0").minus_one(), d("-1"));
        assert_eq!(d("-100").plus_one(), d("-99"));
        assert_eq!(d("999").plus_one(), d("1000"));
        assert_eq!(Dec::of_f64(1e40).int.len(), 41);
        assert_eq!(Dec::of_f64(0.1), d("0.1"));
    }
}
