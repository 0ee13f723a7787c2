//! GBNF grammars (llama.cpp's `--grammar`, `--grammar-file`, the server's
//! `grammar` field): the reply is constrained, token by token, to a prefix
//! of a string the grammar derives from `root`.
//!
//! [`Grammar::parse`] reads llama.cpp's syntax (rules `name ::= ...`,
//! literals, character classes with ranges and `^`, `.`, groups, `|`, `*`
//! `+` `?` `{m}` `{m,}` `{m,n}`, `#` comments) and compiles groups and
//! repetitions into rules of their own, so that every rule is a list of
//! alternatives of plain elements. [`GrammarState`] follows the reply as a
//! set of stacks (llama.cpp's method): each stack is the chain of rule
//! positions still to match, its top a character element; a code point
//! advances every stack whose top accepts it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use thiserror::Error;

/// Largest `{m,n}` bound: a repetition is expanded into that many copies.
pub const MAX_REPEAT: u32 = 1000;
/// Most rules after groups and repetitions are compiled into rules.
pub const MAX_RULES: usize = 10_000;
/// Most parses followed at once; an ambiguous grammar that needs more
/// refuses the token instead of slowing every step down.
pub const MAX_STACKS: usize = 1024;
/// Deepest chain of open rules in one parse.
pub const MAX_STACK_DEPTH: usize = 256;
/// Most elements that repetitions may expand into, over the whole grammar.
pub const MAX_EXPANDED: usize = 1 << 20;
/// Longest grammar text accepted.
pub const MAX_GRAMMAR_BYTES: usize = 1 << 20;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum GrammarError {
    #[error("grammar, line {line}: {msg}")]
    Syntax { line: usize, msg: String },
    #[error("grammar: {0}")]
    Invalid(String),
}

/// One element of an alternative.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Elem {
    /// A code point in (or, negated, outside) the inclusive ranges.
    Chars {
        ranges: Vec<(u32, u32)>,
        negated: bool,
    },
    /// Any code point (`.`).
    Any,
    /// Another rule, by index.
    Ref(u32),
}

impl Elem {
    /// Whether some code point in `lo..=hi` matches.
    fn overlaps(&self, lo: u32, hi: u32) -> bool {
        match self {
            Elem::Chars {
                ranges,
                negated: false,
            } => ranges.iter().any(|&(a, b)| a <= hi && lo <= b),
            Elem::Chars {
                ranges,
                negated: true,
            } => {
                // Matches unless the ranges cover all of `lo..=hi`.
                let mut rs: Vec<(u32, u32)> = ranges.clone();
                rs.sort_unstable();
                let mut next = lo;
                for (a, b) in rs {
                    if a > next {
                        break;
                    }
                    if b >= next {
                        if b >= hi {
                            return false;
                        }
                        next = b + 1;
                    }
                }
                true
            }
            Elem::Any => true,
            Elem::Ref(_) => false,
        }
    }

    fn matches(&self, c: u32) -> bool {
        match self {
            Elem::Chars { ranges, negated } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
            Elem::Any => true,
            Elem::Ref(_) => false,
        }
    }
}

#[derive(Clone, Debug)]
struct Rule {
    name: String,
    alts: Vec<Vec<Elem>>,
}

/// A compiled grammar.
pub struct Grammar {
    rules: Vec<Rule>,
    root: u32,
    /// What a stack becomes once its top has matched a character, which
    /// does not depend on the character: computed once per stack, since a
    /// refused token checks most of the vocabulary against the same few.
    successors: Mutex<HashMap<Stack, Option<Arc<[Stack]>>>>,
}

/// Its size, not its contents: a `{:?}` of a request (or of a failing
/// test's format) would otherwise print the memo's thousands of stacks.
impl std::fmt::Debug for Grammar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grammar")
            .field("rules", &self.rules.len())
            .field("root", &self.rules[self.root as usize].name)
            .finish()
    }
}

/// Entries [`Grammar::successors`] keeps before it starts again.
const MAX_MEMO: usize = 1 << 16;

/// The parser over the grammar's text.
struct Parser<'a> {
    src: &'a str,
    pos: usize,
    rules: Vec<Rule>,
    /// Rule names to indices; a name referred to before its definition gets
    /// an index with no alternatives until then.
    names: std::collections::HashMap<String, u32>,
    defined: Vec<bool>,
    /// Elements the repetitions have written so far.
    expanded: usize,
}

impl<'a> Parser<'a> {
    fn line(&self) -> usize {
        self.src[..self.pos].matches('\n').count() + 1
    }

    fn err<T>(&self, msg: impl Into<String>) -> Result<T, GrammarError> {
        Err(GrammarError::Syntax {
            line: self.line(),
            msg: msg.into(),
        })
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Skips spaces, tabs and comments, and newlines when `newlines`.
    fn space(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' => {
                    self.pos += 1;
                }
                '\r' | '\n' if newlines => {
                    self.pos += 1;
                }
                '#' => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                _ => break,
            }
        }
    }

    fn name(&mut self) -> Option<String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            self.pos += 1;
        }
        (self.pos > start).then(|| self.src[start..self.pos].to_string())
    }

    fn rule_index(&mut self, name: &str) -> Result<u32, GrammarError> {
        if let Some(&i) = self.names.get(name) {
            return Ok(i);
        }
        self.new_rule(name.to_string(), Vec::new())
    }

    fn new_rule(&mut self, name: String, alts: Vec<Vec<Elem>>) -> Result<u32, GrammarError> {
        if self.rules.len() >= MAX_RULES {
            return Err(GrammarError::Invalid(format!(
                "more than {MAX_RULES} rules (after expanding groups and repetitions)"
            )));
        }
        let i = self.rules.len() as u32;
        self.names.insert(name.clone(), i);
        self.rules.push(Rule { name, alts });
        self.defined.push(false);
        Ok(i)
    }

    /// A rule generated for a group or repetition (its name is for messages).
    fn generated(&mut self, alts: Vec<Vec<Elem>>) -> Result<Elem, GrammarError> {
        let name = format!("_{}", self.rules.len());
        let i = self.new_rule(name, alts)?;
        self.defined[i as usize] = true;
        Ok(Elem::Ref(i))
    }

    fn hex(&mut self, digits: usize) -> Result<u32, GrammarError> {
        let mut v = 0u32;
        for _ in 0..digits {
            match self.bump().and_then(|c| c.to_digit(16)) {
                Some(d) => v = v * 16 + d,
                None => return self.err(format!("expected {digits} hex digits in an escape")),
            }
        }
        Ok(v)
    }

    /// One character of a literal or class, escapes decoded.
    fn char(&mut self) -> Result<u32, GrammarError> {
        match self.bump() {
            None => self.err("unexpected end of the grammar"),
            Some('\\') => {
                let v = match self.bump() {
                    Some('x') => self.hex(2)?,
                    Some('u') => self.hex(4)?,
                    Some('U') => self.hex(8)?,
                    Some('t') => '\t' as u32,
                    Some('r') => '\r' as u32,
                    Some('n') => '\n' as u32,
                    Some(c @ ('\\' | '"' | '[' | ']' | '-' | '^')) => c as u32,
                    Some(c) => return self.err(format!("unknown escape '\\{c}'")),
                    None => return self.err("unexpected end of the grammar"),
                };
                if char::from_u32(v).is_none() {
                    return self.err(format!("escape \\x{v:x} is not a Unicode scalar value"));
                }
                Ok(v)
            }
            Some(c) => Ok(c as u32),
        }
    }

    /// Alternatives up to `)` (nested) or the end of the line (a rule).
    fn alternates(&mut self, nested: bool) -> Result<Vec<Vec<Elem>>, GrammarError> {
        let mut alts = vec![self.sequence(nested)?];
        while self.peek() == Some('|') {
            self.pos += 1;
            self.space(true);
            alts.push(self.sequence(nested)?);
        }
        Ok(alts)
    }

    fn sequence(&mut self, nested: bool) -> Result<Vec<Elem>, GrammarError> {
        let mut seq: Vec<Elem> = Vec::new();
        // Where the last item starts in `seq`, for a repetition after it.
        let mut last: Option<usize> = None;
        loop {
            match self.peek() {
                Some('"') => {
                    self.pos += 1;
                    last = Some(seq.len());
                    let start = seq.len();
                    while self.peek() != Some('"') {
                        if self.peek().is_none() {
                            return self.err("unterminated literal");
                        }
                        let c = self.char()?;
                        seq.push(Elem::Chars {
                            ranges: vec![(c, c)],
                            negated: false,
                        });
                    }
                    self.pos += 1;
                    // A repetition of a literal repeats all of it.
                    if seq.len() - start > 1 {
                        let lit = seq.split_off(start);
                        seq.push(self.generated(vec![lit])?);
                    } else if seq.len() == start {
                        last = None;
                    }
                }
                Some('[') => {
                    self.pos += 1;
                    let negated = self.peek() == Some('^');
                    if negated {
                        self.pos += 1;
                    }
                    let mut ranges = Vec::new();
                    while self.peek() != Some(']') {
                        if self.peek().is_none() {
                            return self.err("unterminated character class");
                        }
                        let lo = self.char()?;
                        let after_dash = self.src.get(self.pos + 1..).unwrap_or("");
                        let hi = if self.peek() == Some('-')
                            && !after_dash.is_empty()
                            && !after_dash.starts_with(']')
                        {
                            self.pos += 1;
                            self.char()?
                        } else {
                            lo
                        };
                        if hi < lo {
                            return self.err("a character range that ends before it starts");
                        }
                        ranges.push((lo, hi));
                    }
                    self.pos += 1;
                    last = Some(seq.len());
                    seq.push(Elem::Chars { ranges, negated });
                }
                Some('.') => {
                    self.pos += 1;
                    last = Some(seq.len());
                    seq.push(Elem::Any);
                }
                Some('(') => {
                    self.pos += 1;
                    self.space(true);
                    let alts = self.alternates(true)?;
                    if self.peek() != Some(')') {
                        return self.err("expected ')'");
                    }
                    self.pos += 1;
                    last = Some(seq.len());
                    seq.push(self.generated(alts)?);
                }
                Some('<') => return self.err("token references (<...>) are not supported"),
                Some(c) if c.is_ascii_alphanumeric() || c == '-' || c == '_' => {
                    let start = self.pos;
                    let name = self.name().expect("starts with a name character");
                    // `name ::=` starts the next rule: this sequence ended at a
                    // line break (newlines are skipped inside parentheses only).
                    let save = self.pos;
                    self.space(false);
                    if self.src[self.pos..].starts_with("::=") {
                        self.pos = start;
                        return self.err(format!(
                            "rule '{name}' starts inside another rule (missing a line break?)"
                        ));
                    }
                    self.pos = save;
                    last = Some(seq.len());
                    seq.push(Elem::Ref(self.rule_index(&name)?));
                }
                Some(op @ ('*' | '+' | '?' | '{')) => {
                    let Some(at) = last.take() else {
                        return self.err(format!("'{op}' with nothing before it to repeat"));
                    };
                    self.pos += 1;
                    let (min, max) = match op {
                        '*' => (0, None),
                        '+' => (1, None),
                        '?' => (0, Some(1)),
                        _ => self.bounds()?,
                    };
                    let item = seq.split_off(at);
                    seq.extend(self.repeat(item, min, max)?);
                }
                _ => break,
            }
            self.space(nested);
        }
        Ok(seq)
    }

    /// `{m}`, `{m,}` or `{m,n}` after the `{`.
    fn bounds(&mut self) -> Result<(u32, Option<u32>), GrammarError> {
        let number = |p: &mut Self| -> Result<Option<u32>, GrammarError> {
            p.space(false);
            let start = p.pos;
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                p.pos += 1;
            }
            if p.pos == start {
                return Ok(None);
            }
            match p.src[start..p.pos].parse::<u32>() {
                Ok(n) if n <= MAX_REPEAT => Ok(Some(n)),
                _ => p.err(format!("a repetition bound above {MAX_REPEAT}")),
            }
        };
        let Some(min) = number(self)? else {
            return self.err("expected a number after '{'");
        };
        self.space(false);
        let max = match self.bump() {
            Some('}') => return Ok((min, Some(min))),
            Some(',') => {
                let max = number(self)?;
                self.space(false);
                if self.bump() != Some('}') {
                    return self.err("expected '}'");
                }
                max
            }
            _ => return self.err("expected ',' or '}'"),
        };
        if max.is_some_and(|m| m < min) {
            return self.err(format!(
                "repetition {{{min},{}}}: the maximum is below the minimum",
                max.unwrap_or(0)
            ));
        }
        Ok((min, max))
    }

    /// `item` repeated `min` to `max` (unbounded: `None`) times, as elements.
    fn repeat(
        &mut self,
        item: Vec<Elem>,
        min: u32,
        max: Option<u32>,
    ) -> Result<Vec<Elem>, GrammarError> {
        let copies = max.unwrap_or(min).max(min) as usize + 1;
        self.expanded = self
            .expanded
            .saturating_add(item.len().saturating_mul(copies));
        if self.expanded > MAX_EXPANDED {
            return Err(GrammarError::Invalid(format!(
                "repetitions expand to more than {MAX_EXPANDED} elements"
            )));
        }
        let mut out = Vec::new();
        for _ in 0..min {
            out.extend(item.iter().cloned());
        }
        match max {
            None => {
                // R ::= item R | (empty)
                let r = self.new_rule(format!("_{}", self.rules.len()), Vec::new())?;
                let mut again = item.clone();
                again.push(Elem::Ref(r));
                self.rules[r as usize].alts = vec![again, Vec::new()];
                self.defined[r as usize] = true;
                out.push(Elem::Ref(r));
            }
            Some(max) => {
                // Nested optionals: R_k ::= item R_{k-1} | (empty).
                let mut tail: Option<Elem> = None;
                for _ in min..max {
                    let mut alt = item.clone();
                    alt.extend(tail.take());
                    tail = Some(self.generated(vec![alt, Vec::new()])?);
                }
                out.extend(tail);
            }
        }
        Ok(out)
    }

    fn grammar(mut self) -> Result<Grammar, GrammarError> {
        self.space(true);
        while self.peek().is_some() {
            let Some(name) = self.name() else {
                return self.err(format!(
                    "expected a rule name, found '{}'",
                    self.peek().unwrap_or(' ')
                ));
            };
            self.space(false);
            if !self.src[self.pos..].starts_with("::=") {
                return self.err(format!("expected '::=' after '{name}'"));
            }
            self.pos += 3;
            self.space(true);
            let i = self.rule_index(&name)?;
            if self.defined[i as usize] {
                return self.err(format!("rule '{name}' is defined twice"));
            }
            let alts = self.alternates(false)?;
            match self.peek() {
                None | Some('\n') | Some('\r') => {}
                Some(c) => return self.err(format!("unexpected '{c}'")),
            }
            self.rules[i as usize].alts = alts;
            self.defined[i as usize] = true;
            self.space(true);
        }
        if let Some(i) = self.defined.iter().position(|d| !d) {
            return Err(GrammarError::Invalid(format!(
                "rule '{}' is used but never defined",
                self.rules[i].name
            )));
        }
        let Some(&root) = self.names.get("root") else {
            return Err(GrammarError::Invalid("no 'root' rule".into()));
        };
        let g = Grammar {
            rules: self.rules,
            root,
            successors: Mutex::new(HashMap::new()),
        };
        g.check_left_recursion()?;
        if initial_stacks(&g).is_none() {
            return Err(GrammarError::Invalid(format!(
                "more than {MAX_STACKS} ways to start, or rules nested deeper than {MAX_STACK_DEPTH}"
            )));
        }
        Ok(g)
    }
}

impl Grammar {
    pub fn parse(src: &str) -> Result<Grammar, GrammarError> {
        if src.len() > MAX_GRAMMAR_BYTES {
            return Err(GrammarError::Invalid(format!(
                "{} bytes; at most {MAX_GRAMMAR_BYTES}",
                src.len()
            )));
        }
        Parser {
            src,
            pos: 0,
            rules: Vec::new(),
            names: Default::default(),
            defined: Vec::new(),
            expanded: 0,
        }
        .grammar()
    }

    /// Rules that derive the empty string.
    fn nullable(&self) -> Vec<bool> {
        let mut n = vec![false; self.rules.len()];
        loop {
            let mut changed = false;
            for (i, r) in self.rules.iter().enumerate() {
                if !n[i]
                    && r.alts.iter().any(|a| {
                        a.iter()
                            .all(|e| matches!(e, Elem::Ref(j) if n[*j as usize]))
                    })
                {
                    n[i] = true;
                    changed = true;
                }
            }
            if !changed {
                return n;
            }
        }
    }

    /// A rule that can reach itself without consuming a character would make
    /// the parse loop forever (as llama.cpp, refused up front).
    fn check_left_recursion(&self) -> Result<(), GrammarError> {
        let nullable = self.nullable();
        // Rules each rule can start with.
        let first: Vec<Vec<u32>> = self
            .rules
            .iter()
            .map(|r| {
                let mut v = Vec::new();
                for alt in &r.alts {
                    for e in alt {
                        match e {
                            Elem::Ref(j) => {
                                v.push(*j);
                                if !nullable[*j as usize] {
                                    break;
                                }
                            }
                            _ => break,
                        }
                    }
                }
                v
            })
            .collect();
        // Iterative DFS colouring: 0 new, 1 on the path, 2 done.
        let mut colour = vec![0u8; self.rules.len()];
        for start in 0..self.rules.len() {
            if colour[start] != 0 {
                continue;
            }
            let mut path: Vec<(usize, usize)> = vec![(start, 0)];
            colour[start] = 1;
            while let Some(&mut (r, ref mut next)) = path.last_mut() {
                if let Some(&j) = first[r].get(*next) {
                    *next += 1;
                    match colour[j as usize] {
                        0 => {
                            colour[j as usize] = 1;
                            path.push((j as usize, 0));
                        }
                        1 => {
                            // Name the first user-written rule of the cycle;
                            // a cycle of generated rules only is a repetition
                            // of something that can match nothing.
                            let from = path.iter().position(|&(p, _)| p == j as usize).unwrap_or(0);
                            let msg = match path[from..]
                                .iter()
                                .map(|&(p, _)| &self.rules[p].name)
                                .find(|n| !n.starts_with('_'))
                            {
                                Some(named) => format!(
                                    "rule '{named}' is left-recursive (it can reach itself before matching a character)"
                                ),
                                None => "a repeated item can match the empty string (as in (\"a\"?)*), which would repeat forever".to_string(),
                            };
                            return Err(GrammarError::Invalid(msg));
                        }
                        _ => {}
                    }
                } else {
                    colour[r] = 2;
                    path.pop();
                }
            }
        }
        Ok(())
    }
}

/// A position in a rule: the next element of alternative `alt` of `rule`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Pos {
    rule: u32,
    alt: u32,
    idx: u32,
}

/// Positions from the bottom up; shared, so that states copy cheaply.
type Stack = Arc<[Pos]>;

/// Where a reply stands in a grammar.
#[derive(Clone, Debug)]
pub struct GrammarState {
    grammar: Arc<Grammar>,
    /// Each top is a character element; an empty stack is a complete parse.
    stacks: Vec<Stack>,
    /// Bytes of an unfinished UTF-8 character, and how many it needs.
    partial: ([u8; 4], u8, u8),
}

/// The same grammar (the same `Arc`) at the same place: lets a schema's
/// parses that hold a grammar state be deduplicated.
impl PartialEq for GrammarState {
    fn eq(&self, o: &GrammarState) -> bool {
        Arc::ptr_eq(&self.grammar, &o.grammar)
            && self.stacks == o.stacks
            && self.partial == o.partial
    }
}

impl Eq for GrammarState {}

impl GrammarState {
    pub fn new(grammar: &Arc<Grammar>) -> GrammarState {
        GrammarState {
            grammar: grammar.clone(),
            stacks: initial_stacks(grammar).expect("checked by Grammar::parse"),
            partial: ([0; 4], 0, 0),
        }
    }

    /// The reply so far is a whole string of the grammar: it may end here.
    pub fn is_accepting(&self) -> bool {
        self.partial.1 == 0 && self.stacks.iter().any(|s| s.is_empty())
    }

    /// Nothing can follow: the reply ends here.
    pub fn is_done(&self) -> bool {
        self.partial.1 == 0 && self.stacks.iter().all(|s| s.is_empty())
    }

    /// The state after `bytes`, if they continue a string of the grammar.
    pub fn after(&self, bytes: &[u8]) -> Option<GrammarState> {
        let g = self.grammar.as_ref();
        // The stacks are copied only once a character changes them: a
        // refusal calls this for most of the vocabulary.
        let mut stacks: Option<Vec<Stack>> = None;
        let (mut buf, mut have, mut need) = self.partial;
        for &b in bytes {
            if need == 0 {
                match b {
                    0x00..=0x7f => {
                        let cur = stacks.as_deref().unwrap_or(&self.stacks);
                        stacks = Some(advance(g, cur, b as u32)?);
                        continue;
                    }
                    0xc2..=0xdf => need = 2,
                    0xe0..=0xef => need = 3,
                    0xf0..=0xf4 => need = 4,
                    _ => return None,
                }
                buf[0] = b;
                have = 1;
            } else {
                if b & 0xc0 != 0x80 {
                    return None;
                }
                buf[have as usize] = b;
                have += 1;
                if have == need {
                    let c = std::str::from_utf8(&buf[..have as usize])
                        .ok()?
                        .chars()
                        .next()? as u32;
                    (buf, have, need) = ([0; 4], 0, 0);
                    let cur = stacks.as_deref().unwrap_or(&self.stacks);
                    stacks = Some(advance(g, cur, c)?);
                    continue;
                }
            }
            // An unfinished character is a prefix only if some parse can
            // take a character it may become.
            let (lo, hi) = partial_range((buf, have, need));
            let cur = stacks.as_deref().unwrap_or(&self.stacks);
            if !cur.iter().any(|s| {
                s.last().is_some_and(|top| {
                    g.rules[top.rule as usize].alts[top.alt as usize][top.idx as usize]
                        .overlaps(lo, hi)
                })
            }) {
                return None;
            }
        }
        Some(GrammarState {
            grammar: self.grammar.clone(),
            stacks: stacks.unwrap_or_else(|| self.stacks.clone()),
            partial: (buf, have, need),
        })
    }
}

/// The code points an unfinished UTF-8 character (bytes, how many, how
/// many it needs) can still become.
fn partial_range((buf, have, need): ([u8; 4], u8, u8)) -> (u32, u32) {
    let lead_bits = match need {
        2 => 0x1f,
        3 => 0x0f,
        _ => 0x07,
    };
    let mut v = (buf[0] & lead_bits) as u32;
    for &b in &buf[1..have as usize] {
        v = (v << 6) | (b & 0x3f) as u32;
    }
    let rest = 6 * (need - have) as u32;
    (v << rest, (v << rest) | ((1 << rest) - 1))
}

/// The stacks before the first character: every alternative of `root`, expanded.
fn initial_stacks(g: &Grammar) -> Option<Vec<Stack>> {
    let mut out = Vec::new();
    for alt in 0..g.rules[g.root as usize].alts.len() {
        let s = vec![Pos {
            rule: g.root,
            alt: alt as u32,
            idx: 0,
        }];
        expand(g, s, &mut out)?;
    }
    Some(out.into_iter().map(Arc::from).collect())
}

impl Grammar {
    /// The stacks `s` becomes once its top has matched a character.
    fn successors(&self, s: &Stack) -> Option<Arc<[Stack]>> {
        let mut memo = self.successors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hit) = memo.get(s) {
            return hit.clone();
        }
        let mut next = s.to_vec();
        next.last_mut().expect("a character on top").idx += 1;
        let mut out = Vec::new();
        let found = expand(self, next, &mut out)
            .map(|()| out.into_iter().map(Arc::from).collect::<Arc<[Stack]>>());
        if memo.len() >= MAX_MEMO {
            memo.clear();
        }
        memo.insert(s.clone(), found.clone());
        found
    }
}

/// Every stack whose top accepts `c`, advanced past it and expanded.
fn advance(g: &Grammar, stacks: &[Stack], c: u32) -> Option<Vec<Stack>> {
    let mut out: Vec<Stack> = Vec::with_capacity(stacks.len());
    for s in stacks {
        let Some(top) = s.last() else { continue };
        if !g.rules[top.rule as usize].alts[top.alt as usize][top.idx as usize].matches(c) {
            continue;
        }
        for t in g.successors(s)?.iter() {
            // The sets are small (a handful of parses, at most MAX_STACKS):
            // a scan beats hashing.
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
        if out.len() > MAX_STACKS {
            return None;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Adds `s` unless it is there already.
fn push_new(out: &mut Vec<Vec<Pos>>, s: Vec<Pos>) {
    if !out.contains(&s) {
        out.push(s);
    }
}

/// Adds to `out` the stacks `s` stands for with a character element on top
/// (or empty: complete). `None` past [`MAX_STACKS`] or [`MAX_STACK_DEPTH`].
fn expand(g: &Grammar, mut s: Vec<Pos>, out: &mut Vec<Vec<Pos>>) -> Option<()> {
    // Finished alternatives return to their caller.
    while let Some(top) = s.last() {
        if (top.idx as usize) < g.rules[top.rule as usize].alts[top.alt as usize].len() {
            break;
        }
        s.pop();
    }
    let Some(&top) = s.last() else {
        push_new(out, s);
        return (out.len() <= MAX_STACKS).then_some(());
    };
    match &g.rules[top.rule as usize].alts[top.alt as usize][top.idx as usize] {
        Elem::Ref(r) => {
            let mut base = s;
            base.last_mut().expect("not empty").idx += 1;
            // A caller with nothing left after the call is not kept (the
            // call is its tail): repetitions do not grow the stack.
            let t = *base.last().expect("not empty");
            if t.idx as usize == g.rules[t.rule as usize].alts[t.alt as usize].len() {
                base.pop();
                while let Some(t) = base.last() {
                    if (t.idx as usize) < g.rules[t.rule as usize].alts[t.alt as usize].len() {
                        break;
                    }
                    base.pop();
                }
            }
            if base.len() >= MAX_STACK_DEPTH {
                return None;
            }
            for alt in 0..g.rules[*r as usize].alts.len() {
                let mut n = base.clone();
                n.push(Pos {
                    rule: *r,
                    alt: alt as u32,
                    idx: 0,
                });
                expand(g, n, out)?;
            }
            Some(())
        }
        _ => {
            push_new(out, s);
            (out.len() <= MAX_STACKS).then_some(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(src: &str) -> Arc<Grammar> {
        Arc::new(Grammar::parse(src).unwrap_or_else(|e| panic!("{src}: {e}")))
    }

    /// Whether `text` is a whole string of the grammar (and, if not, a prefix).
    fn check(gr: &Arc<Grammar>, text: &str) -> (bool, bool) {
        match GrammarState::new(gr).after(text.as_bytes()) {
            Some(st) => (st.is_accepting(), true),
            None => (false, false),
        }
    }

    fn accepts(gr: &Arc<Grammar>, text: &str) -> bool {
        check(gr, text).0
    }

    #[test]
    fn literals_alternatives_and_classes() {
        let yn = g(r#"root ::= "yes" | "no""#);
        assert!(accepts(&yn, "yes") && accepts(&yn, "no"));
        assert!(
            !accepts(&yn, "ye") && check(&yn, "ye").1,
            "a prefix, not whole"
        );
        assert!(!check(&yn, "yes!").1 && !check(&yn, "maybe").1);
        let words = g("root ::= [a-z]+ (\",\" [a-z]+)*  # comma-separated words\n");
        assert!(accepts(&words, "a") && accepts(&words, "ab,cd,e"));
        assert!(!check(&words, "ab,,c").1 && !check(&words, "A").1);
        let not = g(r#"root ::= "\"" [^"\\]* "\"""#);
        assert!(accepts(&not, r#""hello world""#));
        assert!(!check(&not, r#""a\"#).1);
        let any = g("root ::= \"<\" . \">\"");
        assert!(accepts(&any, "<x>") && accepts(&any, "<é>") && !check(&any, "<xy").1);
    }

    #[test]
    fn escapes_unicode_and_split_characters() {
        let gr = g(r#"root ::= "\x41\u00e9\n" [\u4e00-\u9fff]"#);
        assert!(accepts(&gr, "Aé\n中"));
        // A character split across two tokens' bytes waits for its end.
        let st = GrammarState::new(&gr);
        let bytes = "Aé\n中".as_bytes();
        let mid = st.after(&bytes[..2]).expect("a partial é is a prefix");
        assert!(!mid.is_accepting());
        assert!(mid.after(&bytes[2..]).unwrap().is_accepting());
        assert!(st.after(&[0x41, 0xff]).is_none(), "invalid UTF-8");
        // The first byte of a character the grammar cannot take is refused
        // at once (not only when the character completes).
        let y = g(r#"root ::= "y""#);
        assert!(GrammarState::new(&y).after("’".as_bytes()).is_none());
        assert!(GrammarState::new(&y).after(&"’".as_bytes()[..2]).is_none());
        let cjk = g(r#"root ::= [\u4e00-\u9fff]"#);
        let st = GrammarState::new(&cjk);
        assert!(st.after(&"中".as_bytes()[..1]).is_some());
        assert!(st.after(&"é".as_bytes()[..1]).is_none());
        // \xc3 starts U+00C0..U+00FF: a class excluding only part of it
        // may still match, one excluding all of it may not.
        let some = g(r#"root ::= [^\u00e0-\u00ff]"#);
        assert!(GrammarState::new(&some)
            .after(&"é".as_bytes()[..1])
            .is_some());
        let all = g(r#"root ::= [^\u00c0-\u00df\u00e0-\u00ff]"#);
        assert!(GrammarState::new(&all)
            .after(&"é".as_bytes()[..1])
            .is_none());
    }

    #[test]
    fn repetitions_and_groups() {
        let gr = g(r#"root ::= "a"{2,3} ("b" | "c"){1} "d"? ("xy"){2,}"#);
        assert!(accepts(&gr, "aabxyxy") && accepts(&gr, "aaacdxyxyxy"));
        assert!(!accepts(&gr, "abxyxy") && !check(&gr, "aaaab").1 && !accepts(&gr, "aabxy"));
        let exact = g("root ::= [0-9]{4}");
        assert!(accepts(&exact, "2026") && !check(&exact, "20261").1);
        let multi = g("root ::= (\n  \"a\" |\n  \"b\"\n) rest\nrest ::= \"!\"\n");
        assert!(accepts(&multi, "a!") && accepts(&multi, "b!"));
    }

    #[test]
    fn a_json_grammar_follows_json() {
        let json = g(include_str!("../../tests/fixtures/grammars/json.gbnf"));
        for ok in [
            r#"{}"#,
            r#"{"a": 1, "b": [true, null, "x\n\u00e9"], "c": {"d": -2.5e3}}"#,
            "{\"k\": [1, 2, 3]}\n",
        ] {
            assert!(accepts(&json, ok), "{ok}");
            serde_json::from_str::<serde_json::Value>(ok).unwrap();
        }
        for bad in [r#"{"a" 1}"#, r#"[1]"#, r#"{"a": tru}"#, r#"{"a": 01}"#] {
            assert!(!accepts(&json, bad), "{bad}");
        }
        // Once the object closed and its whitespace is spent, nothing may follow.
        let st = GrammarState::new(&json).after(b"{} ").unwrap();
        assert!(st.is_accepting() && st.is_done());
        let st = GrammarState::new(&json).after(b"{}").unwrap();
        assert!(
            st.is_accepting() && !st.is_done(),
            "whitespace may still follow"
        );
    }

    #[test]
    fn long_repetitions_do_not_grow_the_stacks() {
        let gr = g("root ::= [a-z]* \".\"");
        let mut st = GrammarState::new(&gr);
        for _ in 0..10_000 {
            st = st.after(b"q").unwrap();
        }
        assert!(st.stacks.iter().all(|s| s.len() <= 2), "{:?}", st.stacks);
        assert!(st.after(b".").unwrap().is_done());
    }

    #[test]
    fn bad_grammars_are_refused_with_what_is_wrong() {
        for (src, want) in [
            ("rot ::= \"a\"", "no 'root' rule"),
            ("root ::= item", "rule 'item' is used but never defined"),
            (
                "root ::= root \"a\" | \"b\"",
                "rule 'root' is left-recursive",
            ),
            (
                "root ::= x\nx ::= y? x \"a\"\ny ::= \"b\"",
                "left-recursive",
            ),
            ("root ::= \"\\q\"", "line 1: unknown escape '\\q'"),
            (
                "root ::= \"a\"\nroot ::= \"b\"",
                "line 2: rule 'root' is defined twice",
            ),
            ("root ::= \"a\"{5,2}", "the maximum is below the minimum"),
            ("root ::= \"a\"{2000}", "above 1000"),
            ("root ::= * \"a\"", "nothing before it to repeat"),
            ("root ::= (\"a\"", "expected ')'"),
            ("root ::= \"abc", "unterminated literal"),
            ("root ::= [a-", "unterminated character class"),
            ("root ::= [z-a]", "ends before it starts"),
            ("root ::= <think>", "token references"),
            ("root \"a\"", "expected '::=' after 'root'"),
            ("root ::= \"a\" x ::= \"b\"", "starts inside another rule"),
            ("root ::= (\"a\"?)*", "can match the empty string"),
        ] {
            let e = Grammar::parse(src).unwrap_err().to_string();
            assert!(e.contains(want), "{src:?}: {e}");
        }
        // Small text, huge expansion: bounded before anything is allocated.
        let big = format!("root ::= {}", "\"a\"{1000} ".repeat(1100));
        let e = Grammar::parse(&big).unwrap_err().to_string();
        assert!(e.contains("expand to more than"), "{e}");
    }

    #[test]
    fn mangled_grammars_are_errors_not_panics() {
        let base = r#"root ::= obj ws
obj ::= "{" ws (pair ("," ws pair)*)? "}"
pair ::= [a-z]+ ":" ws ([0-9]{1,3} | "\"" [^"\\]* "\"" | obj) ws
ws ::= [ \t\n]*  # comment
"#;
        assert!(Grammar::parse(base).is_ok());
        // Every cut and every one-byte edit of a valid grammar parses or is
        // refused; none panics (a hostile request's grammar is such text).
        let bytes = base.as_bytes();
        let mut rng = 0x2545_f491_u64;
        for cut in 0..=bytes.len() {
            if let Ok(s) = std::str::from_utf8(&bytes[..cut]) {
                let _ = Grammar::parse(s);
            }
        }
        for _ in 0..3000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let mut b = bytes.to_vec();
            let at = (rng % b.len() as u64) as usize;
            let set = b"\"[]()|*+?{},.:=^-#\n\\ax09";
            b[at] = set[(rng >> 20) as usize % set.len()];
            if let Ok(s) = std::str::from_utf8(&b) {
                if let Ok(g) = Grammar::parse(s) {
                    let g = Arc::new(g);
                    let _ = GrammarState::new(&g).after(b"{ab: 12, c: \"x\"}");
                }
            }
        }
    }

    #[test]
    fn an_ambiguous_grammar_is_bounded() {
        // Every prefix of a's parses in exponentially many ways without the
        // de-duplication; with it the stacks stay few, and the caps hold.
        let gr = g("root ::= x*\nx ::= \"a\" | \"a\" \"a\" | \"a\" \"a\" \"a\"");
        let mut st = GrammarState::new(&gr);
        for _ in 0..200 {
            st = st.after(b"a").unwrap();
            assert!(st.stacks.len() <= MAX_STACKS);
        }
        assert!(st.is_accepting());
    }
}
