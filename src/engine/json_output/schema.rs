//! Structured output: a reply that follows a JSON schema (OpenAI's
//! `response_format: {"type": "json_schema"}`, Ollama's `format: {schema}`,
//! `--json-schema`).
//!
//! [`Schema::compile`] turns the schema into a graph of [`Node`]s, refusing
//! by name every keyword it does not enforce (so a schema is never silently
//! half-applied). [`SchemaState`] follows the reply byte by byte: a stack of
//! frames per way the text can still be read (`anyOf` forks them; forks that
//! fail drop out), each frame one value being written.
//!
//! As llama.cpp's schema grammars do, object properties come in the order
//! the schema lists them (optional ones may be skipped, required ones not),
//! and a property not listed is allowed only where `additionalProperties`
//! says so (absent means no, as OpenAI's strict mode).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::engine::grammar::{Grammar, GrammarState};

use super::bounds::{self, Range};
use super::lex::{Num, StrLex, StrStep};
use super::shape;
use super::MAX_WHITESPACE;

/// Most nodes a schema may compile to, and most ways a reply may be read at
/// once: bounds on work per token against hostile schemas.
const MAX_NODES: usize = 4096;
const MAX_FORKS: usize = 64;
/// Deepest nesting of schemas in a schema, references followed: bounds the
/// compiler's recursion (and so its stack) on hostile input.
const MAX_SCHEMA_DEPTH: usize = 64;

/// Keywords that only describe: accepted, not enforced, nothing to enforce.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "definitions",
];

#[derive(Clone, Debug)]
enum Node {
    Integer(Option<Range>),
    Number(Option<Range>),
    String {
        min: usize,
        max: usize,
        /// `format` or `pattern`, as a grammar over the characters.
        shape: Option<Arc<Grammar>>,
    },
    /// `enum`, `const`, `null`, `boolean`: the values' compact JSON texts.
    Literals(Vec<Vec<u8>>),
    Array {
        items: usize,
        min: usize,
        max: usize,
    },
    Object {
        props: Vec<Prop>,
        extra: Option<usize>,
    },
    AnyOf(Vec<usize>),
    /// Values one after another, nothing between but whitespace: not a
    /// JSON schema's, built by [`Schema::prefixed_choice`] (a raw text
    /// literal, then a value).
    Seq(Vec<usize>),
}

#[derive(Clone, Debug)]
struct Prop {
    /// The key as JSON text, quotes included (`"name"`).
    key: Vec<u8>,
    value: usize,
    required: bool,
}

#[derive(Debug)]
pub struct Schema {
    nodes: Vec<Node>,
    root: usize,
}

struct Compiler<'a> {
    doc: &'a Value,
    nodes: Vec<Node>,
    refs: HashMap<String, usize>,
    any: Option<usize>,
    depth: usize,
}

impl Schema {
    /// Compiles `schema`; the error names the keyword or value at fault.
    pub fn compile(schema: &Value) -> Result<Schema, String> {
        let mut c = Compiler::new(schema);
        let root = c.node(schema, "schema")?;
        Schema::checked(c.nodes, root)
    }

    /// One of `alts`: each its text as written (no JSON around it), then a
    /// value of the schema at its JSON pointer into `doc` (Mistral's
    /// `name[ARGS]{arguments}`).
    pub fn prefixed_choice(doc: &Value, alts: &[(String, String)]) -> Result<Schema, String> {
        let mut c = Compiler::new(doc);
        let root = c.push(Node::AnyOf(Vec::new()))?;
        let mut seqs = Vec::new();
        for (text, pointer) in alts {
            let lit = c.push(Node::Literals(vec![text.as_bytes().to_vec()]))?;
            let value = c.reference(pointer, "schema")?;
            seqs.push(c.push(Node::Seq(vec![lit, value]))?);
        }
        c.nodes[root] = Node::AnyOf(seqs);
        Schema::checked(c.nodes, root)
    }

    fn checked(nodes: Vec<Node>, root: usize) -> Result<Schema, String> {
        let s = Schema { nodes, root };
        s.check_choices_consume()?;
        if !s.closes(root) {
            return Err(
                "the root must be an object or an array schema (\"type\": \"object\" or \"array\", or an anyOf of them)"
                    .into(),
            );
        }
        s.check_satisfiable()?;
        Ok(s)
    }

    /// Whether every value `n` allows is an object or an array, whose
    /// closing bracket ends the reply (a number could always go on). An
    /// `anyOf` of them counts: tool calls are `{"tool_call": ...}` or
    /// `{"response": ...}`, Mistral's a list. Only after
    /// `check_choices_consume`, so choices do not loop.
    fn closes(&self, n: usize) -> bool {
        match &self.nodes[n] {
            Node::Object { .. } | Node::Array { .. } => true,
            Node::AnyOf(alts) => !alts.is_empty() && alts.iter().all(|&a| self.closes(a)),
            Node::Seq(items) => items.last().is_some_and(|&a| self.closes(a)),
            _ => false,
        }
    }

    /// An `anyOf` that reaches itself through choices alone (`a = anyOf[a,
    /// ...]`) would send the parser round it forever: refused.
    fn check_choices_consume(&self) -> Result<(), String> {
        // 0: not seen, 1: on the path, 2: done.
        let mut mark = vec![0u8; self.nodes.len()];
        for start in 0..self.nodes.len() {
            if mark[start] != 0 {
                continue;
            }
            let mut stack = vec![(start, 0usize)];
            mark[start] = 1;
            while let Some((n, i)) = stack.pop() {
                let alts: &[usize] = match &self.nodes[n] {
                    Node::AnyOf(a) => a,
                    _ => &[],
                };
                if let Some(&a) = alts.get(i) {
                    stack.push((n, i + 1));
                    match mark[a] {
                        1 => return Err(
                            "an anyOf/oneOf chooses itself without writing anything (a $ref loop)"
                                .into(),
                        ),
                        0 => {
                            mark[a] = 1;
                            stack.push((a, 0));
                        }
                        _ => {}
                    }
                } else {
                    mark[n] = 2;
                }
            }
        }
        Ok(())
    }

    /// The reply must be able to end: a schema no finite value follows
    /// (`{"$ref": "#/$defs/a"}` with `a` referring only to itself, a
    /// required property that needs itself inside) would leave the model
    /// no token to write at some point.
    fn check_satisfiable(&self) -> Result<(), String> {
        let mut ok = vec![false; self.nodes.len()];
        loop {
            let mut changed = false;
            for n in 0..self.nodes.len() {
                if ok[n] {
                    continue;
                }
                let can = match &self.nodes[n] {
                    // `Range::of_schema` refuses empty ranges.
                    Node::Integer(_) | Node::Number(_) => true,
                    Node::String { min, max, .. } => min <= max,
                    Node::Literals(l) => !l.is_empty(),
                    &Node::Array { items, min, .. } => min == 0 || ok[items],
                    Node::Object { props, .. } => props.iter().all(|p| !p.required || ok[p.value]),
                    Node::AnyOf(alts) => alts.iter().any(|&a| ok[a]),
                    Node::Seq(items) => items.iter().all(|&a| ok[a]),
                };
                if can {
                    ok[n] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        if ok[self.root] {
            Ok(())
        } else {
            Err(
                "no finite JSON value follows this schema (a required part refers only to itself)"
                    .into(),
            )
        }
    }
}

impl<'a> Compiler<'a> {
    fn new(doc: &'a Value) -> Compiler<'a> {
        Compiler {
            doc,
            nodes: Vec::new(),
            refs: HashMap::new(),
            any: None,
            depth: 0,
        }
    }

    fn push(&mut self, n: Node) -> Result<usize, String> {
        if self.nodes.len() >= MAX_NODES {
            return Err(format!("more than {MAX_NODES} schema nodes"));
        }
        self.nodes.push(n);
        Ok(self.nodes.len() - 1)
    }

    /// Any JSON value (`{}` or `true`).
    fn any(&mut self) -> Result<usize, String> {
        if let Some(a) = self.any {
            return Ok(a);
        }
        let a = self.push(Node::AnyOf(Vec::new()))?;
        self.any = Some(a);
        let alts = vec![
            self.push(Node::Literals(vec![
                b"null".to_vec(),
                b"true".to_vec(),
                b"false".to_vec(),
            ]))?,
            self.push(Node::Number(None))?,
            self.push(Node::String {
                min: 0,
                max: usize::MAX,
                shape: None,
            })?,
            self.push(Node::Array {
                items: a,
                min: 0,
                max: usize::MAX,
            })?,
            self.push(Node::Object {
                props: Vec::new(),
                extra: Some(a),
            })?,
        ];
        self.nodes[a] = Node::AnyOf(alts);
        Ok(a)
    }

    fn node(&mut self, v: &Value, at: &str) -> Result<usize, String> {
        if self.depth >= MAX_SCHEMA_DEPTH {
            return Err(format!(
                "{at}: schemas nest deeper than {MAX_SCHEMA_DEPTH} levels"
            ));
        }
        self.depth += 1;
        let n = self.node_inner(v, at);
        self.depth -= 1;
        n
    }

    fn node_inner(&mut self, v: &Value, at: &str) -> Result<usize, String> {
        let m = match v {
            Value::Bool(true) => return self.any(),
            Value::Object(m) => m,
            _ => return Err(format!("{at}: a schema must be an object or true")),
        };
        for k in m.keys() {
            const ENFORCED: &[&str] = &[
                "type",
                "properties",
                "required",
                "additionalProperties",
                "items",
                "minItems",
                "maxItems",
                "enum",
                "const",
                "anyOf",
                "allOf",
                "oneOf",
                "$ref",
                "minLength",
                "maxLength",
                "format",
                "pattern",
            ];
            if !ENFORCED.contains(&k.as_str())
                && !bounds::KEYWORDS.contains(&k.as_str())
                && !ANNOTATIONS.contains(&k.as_str())
            {
                return Err(format!("{at}: keyword '{k}' is not supported"));
            }
        }
        if let Some(all) = m.get("allOf") {
            let merged = self.all_of(m, all, at)?;
            return self.node(&merged, at);
        }
        let beside = |skip: &str| {
            m.iter()
                .filter(|(k, _)| *k != skip && !ANNOTATIONS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<serde_json::Map<String, Value>>()
        };
        if let Some(r) = m.get("$ref") {
            let r = r.as_str().ok_or(format!("{at}.$ref: not a string"))?;
            let rest = beside("$ref");
            if rest.is_empty() {
                return self.reference(r, at);
            }
            // Keywords beside a reference hold too (JSON Schema 2019 on).
            return self.with_beside(&rest, &serde_json::json!({ "$ref": r }), at);
        }
        for key in ["const", "enum"] {
            let Some(v) = m.get(key) else { continue };
            let vals = match key {
                "const" => vec![v.clone()],
                _ => v
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .ok_or(format!("{at}.enum: not a non-empty array"))?
                    .clone(),
            };
            let rest = beside(key);
            if let Some(k) = rest.keys().find(|k| k.as_str() != "type") {
                return Err(format!("{at}: keyword '{k}' beside {key} is not supported"));
            }
            // Only the values of the type, if one is given.
            let vals: Vec<Value> = match type_names(m, at)? {
                None => vals,
                Some(types) => vals
                    .into_iter()
                    .filter(|v| types.iter().any(|t| is_of_type(v, t)))
                    .collect(),
            };
            if vals.is_empty() {
                return Err(format!("{at}: no {key} value is of the schema's type"));
            }
            return self.push(Node::Literals(vals.iter().map(json_text).collect()));
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(alts) = m.get(key) {
                let alts = alts
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .ok_or(format!("{at}.{key}: not a non-empty array"))?;
                // Keywords beside the choice hold for every alternative
                // (`"type": "object"` with an anyOf of property sets).
                let beside = beside(key);
                let slot = self.push(Node::AnyOf(Vec::new()))?;
                let mut ids = Vec::new();
                for (i, a) in alts.iter().enumerate() {
                    let here = format!("{at}.{key}[{i}]");
                    ids.push(self.with_beside(&beside, a, &here)?);
                }
                self.nodes[slot] = Node::AnyOf(ids);
                return Ok(slot);
            }
        }
        let types: Vec<&str> = match type_names(m, at)? {
            Some(types) => types,
            None => {
                if m.contains_key("properties") {
                    vec!["object"]
                } else if m.contains_key("items") {
                    vec!["array"]
                } else if let Some(k) = bounds::KEYWORDS
                    .iter()
                    .chain(&["format", "pattern"])
                    .find(|k| m.contains_key(**k))
                {
                    // Any value, numbers bounded: not followed.
                    return Err(format!(
                        "{at}: keyword '{k}' needs a \"type\" it applies to"
                    ));
                } else {
                    return self.any();
                }
            }
        };
        let mut ids = Vec::new();
        for t in &types {
            ids.push(self.typed(m, t, at)?);
        }
        if ids.len() == 1 {
            return Ok(ids[0]);
        }
        self.push(Node::AnyOf(ids))
    }

    fn typed(
        &mut self,
        m: &serde_json::Map<String, Value>,
        t: &str,
        at: &str,
    ) -> Result<usize, String> {
        let count = |k: &str, default: usize| -> Result<usize, String> {
            match m.get(k) {
                None => Ok(default),
                Some(v) => v
                    .as_u64()
                    .map(|n| n.min(usize::MAX as u64) as usize)
                    .ok_or(format!("{at}.{k}: not a count")),
            }
        };
        let bounds = |lo: &str, hi: &str| -> Result<(usize, usize), String> {
            let (a, b) = (count(lo, 0)?, count(hi, usize::MAX)?);
            if a > b {
                return Err(format!("{at}: {lo} {a} is more than {hi} {b}"));
            }
            Ok((a, b))
        };
        match t {
            "null" => self.push(Node::Literals(vec![b"null".to_vec()])),
            "boolean" => self.push(Node::Literals(vec![b"true".to_vec(), b"false".to_vec()])),
            "integer" => {
                let range = Range::of_schema(m, true, at)?;
                self.push(Node::Integer(range))
            }
            "number" => {
                let range = Range::of_schema(m, false, at)?;
                self.push(Node::Number(range))
            }
            "string" => {
                let (min, max) = bounds("minLength", "maxLength")?;
                let text = |k: &str| -> Result<Option<&str>, String> {
                    m.get(k)
                        .map(|v| v.as_str().ok_or(format!("{at}.{k}: not a string")))
                        .transpose()
                };
                let shape = match (text("format")?, text("pattern")?) {
                    (Some(_), Some(_)) => {
                        return Err(format!(
                            "{at}: format and pattern together are not supported"
                        ))
                    }
                    (Some(f), None) => Some(shape::of_format(f, at)?),
                    (None, Some(p)) => Some(shape::of_pattern(p, at)?),
                    (None, None) => None,
                };
                if shape.is_some() && (m.contains_key("minLength") || m.contains_key("maxLength")) {
                    // Together they could leave no string to write.
                    return Err(format!(
                        "{at}: minLength/maxLength with a format or pattern are not supported"
                    ));
                }
                self.push(Node::String { min, max, shape })
            }
            "array" => {
                let (min, max) = bounds("minItems", "maxItems")?;
                let slot = self.push(Node::AnyOf(Vec::new()))?;
                let items = match m.get("items") {
                    None => self.any()?,
                    Some(s) => self.node(s, &format!("{at}.items"))?,
                };
                self.nodes[slot] = Node::Array { items, min, max };
                Ok(slot)
            }
            "object" => {
                let slot = self.push(Node::AnyOf(Vec::new()))?;
                let required: Vec<&str> = match m.get("required") {
                    None => Vec::new(),
                    Some(Value::Array(r)) => r
                        .iter()
                        .map(|n| {
                            n.as_str()
                                .ok_or(format!("{at}.required: not a list of names"))
                        })
                        .collect::<Result<_, _>>()?,
                    Some(_) => return Err(format!("{at}.required: not a list of names")),
                };
                let mut props = Vec::new();
                if let Some(p) = m.get("properties") {
                    let p = p
                        .as_object()
                        .ok_or(format!("{at}.properties: not an object"))?;
                    for (name, s) in p {
                        let value = self.node(s, &format!("{at}.properties.{name}"))?;
                        props.push(Prop {
                            key: json_text(&Value::String(name.clone())),
                            value,
                            required: required.contains(&name.as_str()),
                        });
                    }
                }
                if let Some(r) = required
                    .iter()
                    .find(|r| !props.iter().any(|p| p.key == json_text(&Value::from(**r))))
                {
                    return Err(format!("{at}.required: '{r}' is not among the properties"));
                }
                let extra = match m.get("additionalProperties") {
                    None | Some(Value::Bool(false)) => None,
                    Some(s) => Some(self.node(s, &format!("{at}.additionalProperties"))?),
                };
                self.nodes[slot] = Node::Object { props, extra };
                Ok(slot)
            }
            other => Err(format!("{at}.type: unknown type '{other}'")),
        }
    }

    /// `schema` with the keywords `beside` it joined in (as `allOf`).
    fn with_beside(
        &mut self,
        beside: &serde_json::Map<String, Value>,
        schema: &Value,
        at: &str,
    ) -> Result<usize, String> {
        if beside.is_empty() {
            return self.node(schema, at);
        }
        let both = self.all_of(beside, &Value::from(vec![schema.clone()]), at)?;
        self.node(&both, at)
    }

    /// `allOf` as one schema: the members' keywords (a `$ref` member read
    /// through) and the siblings of `allOf` together, `properties` and
    /// `required` joined. A keyword two members give differently is
    /// refused, as is `additionalProperties` in a member: each member's
    /// would see only its own properties, which a join cannot keep.
    fn all_of(
        &self,
        m: &serde_json::Map<String, Value>,
        all: &Value,
        at: &str,
    ) -> Result<Value, String> {
        let members = all
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or(format!("{at}.allOf: not a non-empty array"))?;
        let mut merged = m.clone();
        merged.remove("allOf");
        let mut seen = 0;
        for (i, member) in members.iter().enumerate() {
            let here = format!("{at}.allOf[{i}]");
            let mut member = member;
            // Follow a chain of references to the schema itself.
            while let Some(r) = member.get("$ref").and_then(Value::as_str) {
                seen += 1;
                if seen > MAX_SCHEMA_DEPTH {
                    return Err(format!(
                        "{here}: references nest deeper than {MAX_SCHEMA_DEPTH}"
                    ));
                }
                member = self.resolve(r, &here)?;
            }
            let member = match member {
                Value::Bool(true) => continue,
                Value::Object(o) => o,
                _ => return Err(format!("{here}: a schema must be an object or true")),
            };
            if member.contains_key("additionalProperties") {
                return Err(format!(
                    "{here}: additionalProperties in an allOf member is not supported"
                ));
            }
            for (k, v) in member {
                match (k.as_str(), merged.get_mut(k)) {
                    (_, None) => {
                        merged.insert(k.clone(), v.clone());
                    }
                    ("properties", Some(Value::Object(p))) => {
                        let more = v
                            .as_object()
                            .ok_or(format!("{here}.properties: not an object"))?;
                        for (name, s) in more {
                            match p.get(name) {
                                Some(old) if old != s => {
                                    return Err(format!(
                                    "{here}: property '{name}' is given differently by two members"
                                ))
                                }
                                Some(_) => {}
                                None => {
                                    p.insert(name.clone(), s.clone());
                                }
                            }
                        }
                    }
                    ("required", Some(Value::Array(r))) => {
                        let more = v
                            .as_array()
                            .ok_or(format!("{here}.required: not a list of names"))?;
                        for name in more {
                            if !r.contains(name) {
                                r.push(name.clone());
                            }
                        }
                    }
                    (k, Some(_)) if ANNOTATIONS.contains(&k) => {}
                    (k, Some(old)) if old != v => {
                        return Err(format!("{here}: '{k}' differs from another member's"));
                    }
                    _ => {}
                }
            }
        }
        Ok(Value::Object(merged))
    }

    /// The schema a local reference points at.
    fn resolve(&self, r: &str, at: &str) -> Result<&'a Value, String> {
        let pointer = r.strip_prefix('#').ok_or(format!(
            "{at}.$ref: only local references (#/...) are supported, got '{r}'"
        ))?;
        self.doc
            .pointer(pointer)
            .ok_or(format!("{at}.$ref: '{r}' points at nothing"))
    }

    /// `#`, `#/$defs/NAME` or `#/definitions/NAME` (JSON pointers into the
    /// schema itself), compiled once, so recursive schemas work.
    fn reference(&mut self, r: &str, at: &str) -> Result<usize, String> {
        if let Some(&n) = self.refs.get(r) {
            return Ok(n);
        }
        let target = self.resolve(r, at)?;
        // Reserved first: a reference inside the target to itself finds it.
        let slot = self.push(Node::AnyOf(Vec::new()))?;
        self.refs.insert(r.to_string(), slot);
        let n = self.node(target, r)?;
        self.nodes[slot] = self.nodes[n].clone();
        Ok(slot)
    }
}

/// A whole number is within its node's bounds, if any.
fn number_holds(node: &Node, text: &[u8]) -> bool {
    match node {
        Node::Integer(Some(r)) | Node::Number(Some(r)) => r.holds(text),
        _ => true,
    }
}

/// The names `"type"` gives, `None` without it.
fn type_names<'m>(
    m: &'m serde_json::Map<String, Value>,
    at: &str,
) -> Result<Option<Vec<&'m str>>, String> {
    Ok(Some(match m.get("type") {
        None => return Ok(None),
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) if !ts.is_empty() => ts
            .iter()
            .map(|t| t.as_str().ok_or(format!("{at}.type: not a string")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(format!("{at}.type: not a type name")),
    }))
}

/// `v` is a value of the JSON Schema type `t`.
fn is_of_type(v: &Value, t: &str) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|x| x.fract() == 0.0),
        _ => false,
    }
}

fn json_text(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("a JSON value serializes")
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ArrPhase {
    Open,
    InValue,
    AfterValue,
    Comma,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Prop(usize),
    Extra,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ObjPhase {
    Open,
    Comma,
    /// Reading a key: its bytes so far, the opening quote included.
    Key {
        text: Vec<u8>,
        lex: StrLex,
    },
    Colon(Target),
    InValue,
    AfterValue,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Frame {
    /// A value of this node is due (whitespace may come first).
    Value(usize),
    Str {
        max: usize,
        min: usize,
        chars: usize,
        lex: StrLex,
        shape: Option<GrammarState>,
    },
    /// `text`: the number so far, kept only when it has bounds.
    Num {
        node: usize,
        num: Num,
        text: Vec<u8>,
    },
    Lit {
        node: usize,
        read: Vec<u8>,
    },
    Arr {
        node: usize,
        count: usize,
        phase: ArrPhase,
    },
    /// The items of a sequence still to come, the next last.
    Seq {
        rest: Vec<usize>,
    },
    /// `next`: the first listed property that may still come.
    Obj {
        node: usize,
        next: usize,
        phase: ObjPhase,
    },
}

/// One way of reading the reply so far.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Parse {
    frames: Vec<Frame>,
    whitespace: u8,
}

/// Where a reply is in a schema: every way it can still be read.
#[derive(Clone, Debug)]
pub struct SchemaState {
    parses: Vec<Parse>,
}

impl SchemaState {
    pub fn new(schema: &Schema) -> SchemaState {
        SchemaState {
            parses: vec![Parse {
                frames: vec![Frame::Value(schema.root)],
                whitespace: 0,
            }],
        }
    }

    /// Every reading is inside a literal text (`Frame::Lit`).
    pub fn in_literal(&self) -> bool {
        self.parses
            .iter()
            .all(|p| matches!(p.frames.last(), Some(Frame::Lit { .. })))
    }

    /// The root object has closed.
    pub fn is_done(&self) -> bool {
        self.parses.iter().any(|p| p.frames.is_empty())
    }

    /// The state after `bytes`, or `None` if they cannot continue the reply.
    pub fn after(&self, schema: &Schema, bytes: &[u8]) -> Option<SchemaState> {
        let mut parses = self.parses.clone();
        for &b in bytes {
            let mut next = Vec::new();
            for p in parses {
                step(schema, p, b, &mut next);
            }
            next.dedup();
            next.truncate(MAX_FORKS);
            if next.is_empty() {
                return None;
            }
            parses = next;
        }
        Some(SchemaState { parses })
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Feeds `b` to one parse; the parses it leads to go into `out`.
fn step(s: &Schema, mut p: Parse, b: u8, out: &mut Vec<Parse>) {
    let Some(top) = p.frames.pop() else {
        return; // nothing may follow the root
    };
    // Whitespace between tokens, bounded per run.
    let between = match &top {
        Frame::Value(_) => true,
        Frame::Arr { phase, .. } => *phase != ArrPhase::InValue,
        Frame::Obj { phase, .. } => !matches!(phase, ObjPhase::Key { .. } | ObjPhase::InValue),
        _ => false,
    };
    if between && is_ws(b) {
        if p.whitespace >= MAX_WHITESPACE {
            return;
        }
        p.whitespace += 1;
        p.frames.push(top);
        out.push(p);
        return;
    }
    if !is_ws(b) {
        p.whitespace = 0;
    }
    match top {
        Frame::Value(n) => match &s.nodes[n] {
            Node::AnyOf(alts) => {
                for &a in alts {
                    let mut q = p.clone();
                    q.frames.push(Frame::Value(a));
                    step(s, q, b, out);
                }
            }
            Node::Literals(_) => {
                p.frames.push(Frame::Lit {
                    node: n,
                    read: Vec::new(),
                });
                step(s, p, b, out);
            }
            Node::Integer(range) | Node::Number(range) => {
                if let Some(num) = Num::start(b) {
                    let text = match range {
                        Some(r) if !r.may_reach(&[b]) => return,
                        Some(_) => vec![b],
                        None => Vec::new(),
                    };
                    p.frames.push(Frame::Num { node: n, num, text });
                    out.push(p);
                }
            }
            Node::String { min, max, shape } => {
                if b == b'"' {
                    p.frames.push(Frame::Str {
                        min: *min,
                        max: *max,
                        chars: 0,
                        lex: StrLex::default(),
                        shape: shape.as_ref().map(GrammarState::new),
                    });
                    out.push(p);
                }
            }
            Node::Array { .. } => {
                if b == b'[' {
                    p.frames.push(Frame::Arr {
                        node: n,
                        count: 0,
                        phase: ArrPhase::Open,
                    });
                    out.push(p);
                }
            }
            Node::Seq(items) => {
                let mut rest = items[1..].to_vec();
                rest.reverse();
                p.frames.push(Frame::Seq { rest });
                p.frames.push(Frame::Value(items[0]));
                step(s, p, b, out);
            }
            Node::Object { .. } => {
                if b == b'{' {
                    p.frames.push(Frame::Obj {
                        node: n,
                        next: 0,
                        phase: ObjPhase::Open,
                    });
                    out.push(p);
                }
            }
        },
        Frame::Str {
            min,
            max,
            chars,
            mut lex,
            shape,
        } => {
            // A shaped string's bytes are its characters: no escapes, so
            // `"` always closes it, and only where the shape is whole.
            let shape = match shape {
                Some(g) if b == b'"' => match g.is_accepting() {
                    true => Some(g),
                    false => return,
                },
                Some(_) if b == b'\\' => return,
                Some(g) => match g.after(&[b]) {
                    Some(g) => Some(g),
                    None => return,
                },
                None => None,
            };
            let str_frame = |chars, lex, shape| Frame::Str {
                min,
                max,
                chars,
                lex,
                shape,
            };
            match lex.push(b) {
                Some(StrStep::Closed) if chars >= min => value_done(p, out),
                Some(StrStep::Partial) => {
                    p.frames.push(str_frame(chars, lex, shape));
                    out.push(p);
                }
                Some(StrStep::Char) if chars < max => {
                    p.frames.push(str_frame(chars + 1, lex, shape));
                    out.push(p);
                }
                _ => {}
            }
        }
        Frame::Num {
            node,
            num,
            mut text,
        } => match num.next(b) {
            Some(n) => {
                let (integer, range) = match &s.nodes[node] {
                    Node::Integer(r) => (true, r),
                    Node::Number(r) => (false, r),
                    _ => unreachable!("a number frame's node is a number"),
                };
                if integer && !n.integral() {
                    return;
                }
                if let Some(r) = range {
                    // Bounds are followed on plain decimals: any value in
                    // range has one.
                    text.push(b);
                    if n.exponent() || !r.may_reach(&text) {
                        return;
                    }
                }
                p.frames.push(Frame::Num { node, num: n, text });
                out.push(p);
            }
            None if num.complete() && number_holds(&s.nodes[node], &text) => {
                // The number ends; `b` belongs to what follows it.
                let mut done = Vec::new();
                value_done(p, &mut done);
                for q in done {
                    step(s, q, b, out);
                }
            }
            None => {}
        },
        Frame::Lit { node, mut read } => {
            let Node::Literals(texts) = &s.nodes[node] else {
                unreachable!("a literal frame's node holds literals");
            };
            let whole = texts.contains(&read);
            read.push(b);
            let longer = texts.iter().filter(|t| t.starts_with(&read)).count();
            if longer > 0 {
                if longer == 1 && texts.contains(&read) {
                    value_done(p, out);
                } else {
                    p.frames.push(Frame::Lit { node, read });
                    out.push(p);
                }
            } else if whole {
                let mut done = Vec::new();
                value_done(p, &mut done);
                for q in done {
                    step(s, q, b, out);
                }
            }
        }
        Frame::Arr { node, count, phase } => {
            let Node::Array { items, min, max } = s.nodes[node] else {
                unreachable!("an array frame's node is an array");
            };
            match phase {
                // Too few items: `]` falls through and no item starts with it.
                ArrPhase::Open | ArrPhase::AfterValue if b == b']' && count >= min => {
                    value_done(p, out)
                }
                ArrPhase::AfterValue if b == b',' && count < max => {
                    p.frames.push(Frame::Arr {
                        node,
                        count,
                        phase: ArrPhase::Comma,
                    });
                    out.push(p);
                }
                ArrPhase::Open | ArrPhase::Comma if count < max => {
                    p.frames.push(Frame::Arr {
                        node,
                        count,
                        phase: ArrPhase::InValue,
                    });
                    p.frames.push(Frame::Value(items));
                    step(s, p, b, out);
                }
                _ => {}
            }
        }
        Frame::Seq { .. } => unreachable!("an item's frame is always above its sequence's"),
        Frame::Obj { node, next, phase } => {
            let Node::Object { props, extra } = &s.nodes[node] else {
                unreachable!("an object frame's node is an object");
            };
            // Listed properties that may come next: up to the first
            // required one (required ones cannot be skipped).
            let last = props[next..]
                .iter()
                .position(|p| p.required)
                .map_or(props.len(), |i| next + i + 1);
            let may_close = props[next..].iter().all(|p| !p.required);
            // A `,` or a key's quote only where some key can still come.
            let more = next < props.len() || extra.is_some();
            let obj = |next, phase| Frame::Obj { node, next, phase };
            match phase {
                ObjPhase::Open | ObjPhase::AfterValue if b == b'}' && may_close => {
                    value_done(p, out)
                }
                ObjPhase::AfterValue if b == b',' && more => {
                    p.frames.push(obj(next, ObjPhase::Comma));
                    out.push(p);
                }
                ObjPhase::Open | ObjPhase::Comma if b == b'"' && more => {
                    p.frames.push(obj(
                        next,
                        ObjPhase::Key {
                            text: vec![b'"'],
                            lex: StrLex::default(),
                        },
                    ));
                    out.push(p);
                }
                ObjPhase::Key { mut text, mut lex } => {
                    let Some(st) = lex.push(b) else { return };
                    text.push(b);
                    let listed = |t: &[u8]| (next..last).find(|&i| props[i].key == t);
                    if st == StrStep::Closed {
                        let target = match listed(&text) {
                            Some(i) => Target::Prop(i),
                            None if extra.is_some() && !props.iter().any(|p| p.key == text) => {
                                Target::Extra
                            }
                            None => return,
                        };
                        p.frames.push(obj(next, ObjPhase::Colon(target)));
                        out.push(p);
                    } else if extra.is_some()
                        || (next..last).any(|i| props[i].key.starts_with(&text))
                    {
                        p.frames.push(obj(next, ObjPhase::Key { text, lex }));
                        out.push(p);
                    }
                }
                ObjPhase::Colon(target) if b == b':' => {
                    let (next, value) = match target {
                        Target::Prop(i) => (i + 1, props[i].value),
                        Target::Extra => (next, extra.expect("an extra key needs a schema")),
                    };
                    p.frames.push(obj(next, ObjPhase::InValue));
                    p.frames.push(Frame::Value(value));
                    out.push(p);
                }
                _ => {}
            }
        }
    }
}

/// The value on top of `p` (already popped) is complete: its container
/// moves past it.
fn value_done(mut p: Parse, out: &mut Vec<Parse>) {
    match p.frames.last_mut() {
        None => {}
        Some(Frame::Arr { count, phase, .. }) => {
            *count += 1;
            *phase = ArrPhase::AfterValue;
        }
        Some(Frame::Obj { phase, .. }) => *phase = ObjPhase::AfterValue,
        Some(Frame::Seq { rest }) => match rest.pop() {
            Some(n) => p.frames.push(Frame::Value(n)),
            None => {
                p.frames.pop();
                return value_done(p, out);
            }
        },
        Some(_) => unreachable!("only containers hold values"),
    }
    out.push(p);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> Schema {
        Schema::compile(&v).unwrap()
    }

    /// Every prefix of `text` is accepted, and the whole is done.
    fn accepts(s: &Schema, text: &str) -> bool {
        let mut st = SchemaState::new(s);
        for (i, &b) in text.as_bytes().iter().enumerate() {
            match st.after(s, &[b]) {
                Some(n) => st = n,
                None => return false,
            }
            if st.is_done() && i + 1 < text.len() {
                return false;
            }
        }
        st.is_done()
    }

    #[test]
    fn properties_in_order_required_and_optional() {
        let s = schema(json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 5},
                "age": {"type": "integer"},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
                "ok": {"type": "boolean"}
            },
            "required": ["name", "ok"]
        }));
        for good in [
            r#"{"name":"Ann","ok":true}"#,
            r#"{ "name": "Zoë", "age": -3, "tags": ["a", "b"], "ok": false }"#,
            r#"{"name":"A","tags":[],"ok":true}"#,
        ] {
            assert!(accepts(&s, good), "{good}");
        }
        for bad in [
            r#"{"ok":true}"#,                        // required name missing
            r#"{"ok":true,"name":"Ann"}"#,           // out of order
            r#"{"name":"Ann"}"#,                     // required ok missing
            r#"{"name":"","ok":true}"#,              // minLength
            r#"{"name":"Annabel","ok":true}"#,       // maxLength
            r#"{"name":"Ann","age":1.5,"ok":true}"#, // integer
            r#"{"name":"Ann","tags":["a","b","c"],"ok":true}"#,
            r#"{"name":"Ann","x":1,"ok":true}"#, // not listed
            r#"{"name":"Ann","ok":1}"#,
        ] {
            assert!(!accepts(&s, bad), "{bad}");
        }
        // Nothing can follow the last property: no comma after it.
        let st = SchemaState::new(&s);
        assert!(st.after(&s, br#"{"name":"Ann","ok":true"#).is_some());
        assert!(st.after(&s, br#"{"name":"Ann","ok":true,"#).is_none());
        let empty = schema(json!({"type": "object"}));
        assert!(SchemaState::new(&empty).after(&empty, b"{\"").is_none());
    }

    #[test]
    fn enums_consts_any_of_refs_and_extra_properties() {
        let s = schema(json!({
            "$defs": {"node": {"type": "object", "properties": {
                "v": {"enum": ["red", "green", 1, 12, null]},
                "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}
            }, "required": ["v"]}},
            "type": "object",
            "properties": {
                "root": {"$ref": "#/$defs/node"},
                "maybe": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "k": {"const": "fixed"},
                "free": {}
            },
            "additionalProperties": {"type": "number"}
        }));
        for good in [
            r#"{"root":{"v":"red"}}"#,
            r#"{"root":{"v":12,"kids":[{"v":1},{"v":null,"kids":[]}]},"maybe":null,"k":"fixed"}"#,
            r#"{"maybe":"x","free":{"any":[1,"two",{"three":false}]},"extra":2.5e3}"#,
            r#"{"zzz":1,"root":{"v":"green"}}"#,
            "{}",
        ] {
            assert!(accepts(&s, good), "{good}");
        }
        for bad in [
            r#"{"root":{"v":"blue"}}"#,
            r#"{"root":{"v":123}}"#,
            r#"{"root":{"kids":[]}}"#,
            r#"{"maybe":3}"#,
            r#"{"k":"other"}"#,
            r#"{"extra":"text"}"#,
        ] {
            assert!(!accepts(&s, bad), "{bad}");
        }
    }

    /// `n` objects, each the only property of the one around it.
    fn deep(n: usize) -> Value {
        (0..n).fold(
            json!({"type": "object"}),
            |inner, _| json!({"type": "object", "properties": {"a": inner}}),
        )
    }

    #[test]
    fn recursive_schemas_that_can_end_are_followed() {
        // A tree: `kids` is optional, so it ends.
        let s = schema(json!({"type": "object", "properties": {
            "v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#"}}
        }, "required": ["v"]}));
        assert!(accepts(
            &s,
            r#"{"v":1,"kids":[{"v":2},{"v":3,"kids":[{"v":4,"kids":[]}]}]}"#
        ));
        assert!(!accepts(&s, r#"{"v":1,"kids":[{}]}"#));
        let two = schema(json!({"type": "object", "properties": {
            "p": {"type": "array", "items": {"type": "integer"}, "minItems": 2}}}));
        assert!(accepts(&two, r#"{"p":[1,2]}"#) && accepts(&two, r#"{"p":[1,2,3]}"#));
        assert!(!accepts(&two, r#"{"p":[]}"#) && !accepts(&two, r#"{"p":[1]}"#));
        assert!(accepts(
            &schema(deep(60)),
            &format!("{}{{}}{}", r#"{"a":"#.repeat(59), "}".repeat(59))
        ));
    }

    /// `v` meets `bounds` (minimum and co.), by f64 comparison: the oracle.
    fn inside(bounds: &Value, v: f64) -> bool {
        let b = |k: &str| bounds.get(k).and_then(Value::as_f64);
        b("minimum").is_none_or(|m| v >= m)
            && b("exclusiveMinimum").is_none_or(|m| v > m)
            && b("maximum").is_none_or(|m| v <= m)
            && b("exclusiveMaximum").is_none_or(|m| v < m)
    }

    /// `{"n": <type with these bounds>}`, `n` required.
    fn bounded(ty: &str, bounds: &Value) -> Schema {
        let mut n = json!({ "type": ty });
        n.as_object_mut()
            .unwrap()
            .extend(bounds.as_object().unwrap().clone());
        schema(json!({"type": "object", "properties": {"n": n}, "required": ["n"]}))
    }

    fn may_go_on(s: &Schema, number: &str) -> bool {
        SchemaState::new(s)
            .after(s, format!("{{\"n\":{number}").as_bytes())
            .is_some()
    }

    #[test]
    fn all_of_joins_its_members() {
        // As Pydantic writes a model that extends another.
        let s = schema(json!({
            "$defs": {"Base": {"type": "object", "properties": {"id": {"type": "integer"}},
                               "required": ["id"], "title": "Base"}},
            "allOf": [{"$ref": "#/$defs/Base"},
                      {"properties": {"name": {"type": "string"}}, "required": ["name"]}],
            "title": "Named"
        }));
        assert!(accepts(&s, r#"{"id": 1, "name": "x"}"#));
        assert!(!accepts(&s, r#"{"id": 1}"#) && !accepts(&s, r#"{"name": "x"}"#));
        assert!(!accepts(&s, r#"{"id": 1, "name": "x", "more": 2}"#));
        // Keywords beside an anyOf hold in each alternative.
        let either = schema(
            json!({"type": "object", "properties": {"kind": {"type": "string"}},
            "required": ["kind"],
            "anyOf": [{"properties": {"n": {"type": "integer"}}, "required": ["n"]},
                      {"properties": {"s": {"type": "string"}}, "required": ["s"]}]}),
        );
        assert!(accepts(&either, r#"{"kind": "a", "n": 1}"#));
        assert!(accepts(&either, r#"{"kind": "b", "s": "x"}"#));
        assert!(!accepts(&either, r#"{"n": 1}"#) && !accepts(&either, r#"{"kind": "c"}"#));
        // Beside a reference, and beside an enum.
        let s = schema(
            json!({"$defs": {"P": {"type": "object", "properties": {"a": {"type": "integer"}}}},
            "type": "object", "properties": {
                "p": {"$ref": "#/$defs/P", "required": ["a"], "description": "d"},
                "e": {"type": "string", "enum": ["x", 1, "y"]}}}),
        );
        assert!(accepts(&s, r#"{"p": {"a": 1}, "e": "y"}"#));
        assert!(!accepts(&s, r#"{"p": {}}"#) && !accepts(&s, r#"{"e": 1}"#));
        let e = Schema::compile(&json!({"type": "object", "properties": {
            "e": {"type": "integer", "enum": ["x"]}}}))
        .unwrap_err();
        assert!(e.contains("no enum value is of the schema's type"), "{e}");
        let e = Schema::compile(&json!({"type": "object", "properties": {
            "e": {"const": "abc", "maxLength": 2}}}))
        .unwrap_err();
        assert!(e.contains("keyword 'maxLength' beside const"), "{e}");
        // A lone member with a sibling description.
        let one = schema(json!({"type": "object", "properties": {
            "when": {"allOf": [{"type": "string", "format": "date"}], "description": "a day"}}}));
        assert!(accepts(&one, r#"{"when": "2020-01-31"}"#) && !accepts(&one, r#"{"when": "x"}"#));
        for (bad, says) in [
            (
                json!({"allOf": [{"type": "object"}, {"type": "array"}]}),
                "allOf[1]: 'type' differs",
            ),
            (
                json!({"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}},
                                 {"properties": {"a": {"type": "integer"}}}]}),
                "property 'a' is given differently",
            ),
            (
                json!({"allOf": [{"type": "object", "additionalProperties": false}]}),
                "additionalProperties in an allOf member",
            ),
            (json!({"allOf": []}), "allOf: not a non-empty array"),
            (
                json!({"allOf": [{"$ref": "#/nowhere"}]}),
                "allOf[0].$ref: '#/nowhere' points at nothing",
            ),
            (
                json!({"$defs": {"a": {"$ref": "#/$defs/a"}}, "allOf": [{"$ref": "#/$defs/a"}]}),
                "references nest deeper",
            ),
        ] {
            let e = Schema::compile(&bad).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn formats_and_patterns_shape_strings() {
        let s = schema(json!({"type": "object", "properties": {
            "day": {"type": "string", "format": "date"},
            "code": {"type": ["string", "null"], "pattern": "^[A-Z]{2}\\d$"},
            "n": {"type": "integer", "format": "int32"}
        }}));
        for good in [
            r#"{"day":"2024-02-29"}"#,
            r#"{"day": "1999-12-31", "code": "AB1", "n": 5}"#,
            r#"{"code":null}"#,
        ] {
            assert!(accepts(&s, good), "{good}");
        }
        for bad in [
            r#"{"day":"2023-02-29"}"#,
            r#"{"day":"2024-2-29"}"#,
            r#"{"code":"AB12"}"#,
            r#"{"code":"ab1"}"#,
            // Escapes are not followed in a shaped string.
            r#"{"code":"\u0041B1"}"#,
        ] {
            assert!(!accepts(&s, bad), "{bad}");
        }
        // The string may not close before its shape is whole.
        let st = SchemaState::new(&s)
            .after(&s, br#"{"day":"2024-02"#)
            .unwrap();
        assert!(st.after(&s, b"\"").is_none() && st.after(&s, b"-").is_some());
    }

    #[test]
    fn integer_bounds_hold_from_the_first_digit() {
        let cases = [
            json!({"minimum": 10, "maximum": 120}),
            json!({"minimum": -35, "maximum": -7}),
            json!({"exclusiveMinimum": -3, "exclusiveMaximum": 4}),
            json!({"minimum": 0}),
            json!({"maximum": -20}),
            json!({"minimum": 1.5, "maximum": 99.5}),
            json!({"minimum": 5, "exclusiveMinimum": 7, "maximum": 9.9}),
        ];
        for bounds in cases {
            let s = bounded("integer", &bounds);
            let inside = |v: i64| inside(&bounds, v as f64);
            let (above, below) = (
                bounds.get("maximum").is_none() && bounds.get("exclusiveMaximum").is_none(),
                bounds.get("minimum").is_none() && bounds.get("exclusiveMinimum").is_none(),
            );
            // Every value a prefix could still become, as far as any bound
            // here reaches (unbounded sides aside): which prefixes may go on.
            let texts: Vec<String> = (-1000..=1000)
                .filter(|&v| inside(v))
                .map(|v| v.to_string())
                .chain(inside(0).then(|| "-0".to_string()))
                .collect();
            for v in -400i64..=400 {
                let t = v.to_string();
                assert_eq!(
                    accepts(&s, &format!("{{\"n\":{t}}}")),
                    inside(v),
                    "{bounds} {t}"
                );
                for cut in 1..=t.len() {
                    let prefix = &t[..cut];
                    let can = texts.iter().any(|x| x.starts_with(prefix))
                        || (above && !prefix.starts_with('-') && prefix != "0")
                        || (below && prefix.starts_with('-') && prefix != "-0");
                    assert_eq!(may_go_on(&s, prefix), can, "{bounds} prefix {prefix}");
                }
            }
            assert!(!accepts(&s, r#"{"n":8.0}"#), "{bounds}");
        }
        // Bounds far past any i64 hold exactly.
        let big = bounded("integer", &json!({"minimum": 1e40}));
        assert!(accepts(&big, &format!("{{\"n\":1{}}}", "0".repeat(40))));
        assert!(!accepts(&big, &format!("{{\"n\":{}}}", "9".repeat(40))));
        assert!(may_go_on(&big, &"9".repeat(40)));
        assert!(!may_go_on(&big, "-"));
        let huge = bounded("number", &json!({"minimum": 1e300, "maximum": 2e300}));
        assert!(accepts(
            &huge,
            &format!("{{\"n\":15{}.5}}", "0".repeat(299))
        ));
        assert!(!accepts(&huge, &format!("{{\"n\":{}}}", "9".repeat(300))));
        assert!(!may_go_on(&huge, &format!("3{}", "0".repeat(300))));
    }

    #[test]
    fn number_bounds_hold_from_the_first_byte() {
        let cases = [
            json!({"minimum": 10, "maximum": 120}),
            json!({"minimum": -35.5, "maximum": -7}),
            json!({"exclusiveMinimum": -3, "exclusiveMaximum": 4.5}),
            json!({"minimum": 0}),
            json!({"maximum": -20}),
            json!({"minimum": 0.5, "maximum": 0.7}),
            json!({"exclusiveMinimum": 0, "exclusiveMaximum": 1}),
            json!({"minimum": 5, "exclusiveMinimum": 5, "maximum": 9.9}),
        ];
        // Every string of up to 4 bytes a JSON number can begin with.
        const BYTES: &[u8] = b"-0123456789.";
        let whole = |t: &str| serde_json::from_str::<f64>(t).ok();
        let mut prefixes = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = prefixes
                .iter()
                .flat_map(|p| BYTES.iter().map(move |&b| format!("{p}{}", b as char)))
                .filter(|t| {
                    let starts = |t: &str| {
                        whole(t).is_some()
                            || BYTES
                                .iter()
                                .any(|&b| whole(&format!("{t}{}", b as char)).is_some())
                    };
                    starts(t)
                })
                .collect();
            prefixes.extend(longer);
            prefixes.dedup();
        }
        prefixes.sort();
        prefixes.dedup();
        prefixes.retain(|p| !p.is_empty());
        let all = prefixes.len();
        // Every third of the 4-byte ones: the oracle below is slow.
        let mut i = 0;
        prefixes.retain(|p| {
            i += 1;
            p.len() < 4 || i % 3 == 0
        });
        assert!(
            all > 1000 && prefixes.len() > 500,
            "{all} {}",
            prefixes.len()
        );
        // A finish of up to 3 more bytes reaches every value in
        // range that any finish does, for bounds this short.
        let mut finishes = vec![String::new()];
        for _ in 0..3 {
            let more: Vec<String> = finishes
                .iter()
                .filter(|f| f.len() < 3)
                .flat_map(|f| {
                    b"0123456789."
                        .iter()
                        .map(move |&b| format!("{f}{}", b as char))
                })
                .collect();
            finishes.extend(more);
        }
        finishes.sort();
        finishes.dedup();
        for bounds in cases {
            let s = bounded("number", &bounds);
            for p in &prefixes {
                if let Some(v) = whole(p) {
                    assert_eq!(
                        accepts(&s, &format!("{{\"n\":{p}}}")),
                        inside(&bounds, v),
                        "{bounds} {p}"
                    );
                }
                let can = finishes
                    .iter()
                    .any(|f| whole(&format!("{p}{f}")).is_some_and(|v| inside(&bounds, v)));
                assert_eq!(may_go_on(&s, p), can, "{bounds} prefix {p}");
            }
            // Exponents are not followed under bounds; plain decimals are.
            assert!(!may_go_on(&s, "1e") && !may_go_on(&s, "1E"), "{bounds}");
        }
        let free = bounded("number", &json!({}));
        assert!(accepts(&free, r#"{"n":-1.5e-7}"#));
        let tenth = bounded("number", &json!({"maximum": 0.1}));
        assert!(accepts(&tenth, r#"{"n":0.1}"#) && !accepts(&tenth, r#"{"n":0.1000001}"#));
    }

    #[test]
    fn unsupported_keywords_and_bad_schemas_are_refused_by_name() {
        for (bad, says) in [
            (
                json!({"type": "object", "properties": {"a": {"type": "integer", "multipleOf": 3}}}),
                "keyword 'multipleOf'",
            ),
            (
                json!({"type": "string"}),
                "root must be an object or an array",
            ),
            (
                json!({"type": "object", "required": ["b"], "properties": {"a": {}}}),
                "'b' is not among",
            ),
            (
                json!({"type": "object", "properties": {"a": {"$ref": "http://x/y"}}}),
                "only local references",
            ),
            (
                json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/none"}}}),
                "points at nothing",
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "array", "minItems": 3, "maxItems": 2}}}),
                "minItems 3 is more than maxItems 2",
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "date"}}}),
                "unknown type 'date'",
            ),
            (
                json!({"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "string"}]}},
                       "type": "object", "properties": {"x": {"$ref": "#/$defs/a"}}}),
                "chooses itself",
            ),
            (
                json!({"$defs": {"a": {"$ref": "#/$defs/a"}},
                       "type": "object", "properties": {"x": {"$ref": "#/$defs/a"}}, "required": ["x"]}),
                "no finite JSON value",
            ),
            (
                json!({"type": "object", "properties": {"me": {"$ref": "#"}}, "required": ["me"]}),
                "no finite JSON value",
            ),
            (deep(70), "nest deeper than 64"),
            (
                json!({"type": "object", "properties": {"a": {"exclusiveMaximum": 3}}}),
                "'exclusiveMaximum' needs a \"type\" it applies to",
            ),
            (
                json!({"type": "object", "properties": {"a": {"format": "date"}}}),
                "'format' needs a \"type\" it applies to",
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "string", "format": "email"}}}),
                "properties.a.format: 'email' is not supported",
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "string", "format": "date", "maxLength": 4}}}),
                "minLength/maxLength with a format",
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "(?!x)"}}}),
                "properties.a.pattern: lookarounds",
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "number", "minimum": 2, "exclusiveMaximum": 2}}}),
                "no number is between",
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "integer", "minimum": 3, "exclusiveMaximum": 3}}}),
                "no integer is between",
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "integer", "maximum": "9"}}}),
                "properties.a.maximum: not a number",
            ),
        ] {
            let e = Schema::compile(&bad).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }
}
