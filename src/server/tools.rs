//! Tool calling: OpenAI's `tools` / `tool_choice` / `parallel_tool_calls`
//! and Ollama's `tools`, for both APIs' chat endpoints.
//!
//! A model is asked for calls in one of two syntaxes, chosen by its chat
//! template, as llama-server chooses:
//!
//! - **Hermes** (the template writes `<tool_call>`: Qwen 2.5, Hermes 2/3,
//!   SmolLM3): the template describes the tools itself (they are passed to
//!   it as transformers passes them) and the model answers in prose or with
//!   `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks, read
//!   out of its reply; what follows each `<tool_call>` is constrained to a
//!   call of an offered tool (a [`Trigger`]). With `tool_choice` required or
//!   named the prompt ends in `<tool_call>\n`, so the reply is a call.
//! - **Llama 3** (the template writes `{"name": ..., "parameters": ...}`
//!   after `<|start_header_id|>`: Llama 3.1, 3.2, 3.3): the template
//!   describes the tools; a reply that begins with `{` is one call, held to
//!   the tools' schemas from its first byte (`required` or named: every
//!   reply is), any other reply is prose.
//! - **Mistral** (the template writes `[AVAILABLE_TOOLS]` and
//!   `[TOOL_CALLS]` followed by a JSON list: Mistral 7B v0.3, Nemo): the
//!   template describes the tools; calls come as `[TOOL_CALLS][{"name",
//!   "arguments", "id"}, ...]`, ids of 9 letters and digits (the template
//!   refuses others, so ids in the conversation are mapped to that shape).
//!   `[TOOL_CALLS]` is a control token of these vocabularies: it is kept in
//!   the reply's text ([`ToolUse::shown_tokens`]) so the reply can be read.
//! - **Mistral `[ARGS]`** (the template writes `[TOOL_CALLS]name[ARGS]`:
//!   Mistral Small 3.2, Devstral, Ministral 3): each call is
//!   `[TOOL_CALLS]name[ARGS]{arguments}`, the name one of the tools' and the
//!   arguments held to its schema (`Schema::prefixed_choice`); `[ARGS]` and
//!   `[CALL_ID]` are control tokens too, kept in the reply's text, and
//!   `[ARGS]` may be written by its token (a control token may spell a
//!   literal of the constraint).
//! - **Generic** (any other template): a system message lists the tools and
//!   the reply is constrained to one JSON object, `{"tool_call": {"name",
//!   "arguments"}}` (`{"tool_calls": [...]}` with `parallel_tool_calls`) or
//!   `{"response": "..."}` (llama-server's generic format), each tool's
//!   arguments to its parameters' schema. Earlier calls and tool results in
//!   the conversation are written back in that same JSON, so the model sees
//!   its own format.
//!
//! A streamed reply with tools shows only what is surely text for the user
//! ([`ReplyStream`]): the generic syntax's `"response"` string as it is
//! written, Hermes' text before a `<tool_call>`; calls come when it ends.

use serde_json::{json, Map, Value as Json};

use super::errors::ApiError;
use std::sync::Arc;

use crate::engine::json_output::{Schema, Trigger};
use crate::engine::OutputFormat;
use crate::tokenizer::ChatMessage;

/// Most tools a request may offer (OpenAI's limit).
pub const MAX_TOOLS: usize = 128;
/// Longest tool name (OpenAI's limit).
const MAX_NAME: usize = 64;

const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";
const MISTRAL_CALLS: &str = "[TOOL_CALLS]";
const MISTRAL_ARGS: &str = "[ARGS]";
const MISTRAL_CALL_ID: &str = "[CALL_ID]";
/// Mistral's call ids: this many ASCII letters and digits.
const MISTRAL_ID_LEN: usize = 9;

/// How the model is asked for calls (see the module's comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    Generic,
    Hermes,
    Llama3,
    Mistral,
    MistralArgs,
}

impl Syntax {
    /// The syntax the chat template (its source) was trained with: calls in
    /// `<tool_call>` holding a JSON `"arguments"` object. Templates whose
    /// `<tool_call>` holds XML (Qwen3-Coder, GLM 4) get the generic syntax.
    pub fn of_template(source: &str) -> Syntax {
        let json_args = source.contains(r#""arguments""#) || source.contains(r#"arguments\""#);
        if source.contains(HERMES_OPEN) && json_args {
            Syntax::Hermes
        } else if source.contains(MISTRAL_CALLS) && source.contains(MISTRAL_ARGS) {
            Syntax::MistralArgs
        } else if source.contains(MISTRAL_CALLS) && source.contains("[AVAILABLE_TOOLS]") {
            Syntax::Mistral
        } else if source.contains("<|start_header_id|>")
            && (source.contains(r#""parameters": "#) || source.contains(r#"\"parameters\": "#))
        {
            Syntax::Llama3
        } else {
            Syntax::Generic
        }
    }
}

/// `tool_choice`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    None,
    Auto,
    Required,
    Named(String),
}

#[derive(Clone, Debug)]
struct Tool {
    name: String,
    description: Option<String>,
    /// The arguments' JSON schema (an empty object schema when absent).
    parameters: Json,
}

impl Tool {
    /// `{"name", "description", "parameters"}`, as the request gave it.
    fn function(&self) -> Json {
        let mut f = json!({"name": self.name});
        if let Some(d) = &self.description {
            f["description"] = json!(d);
        }
        f["parameters"] = self.parameters.clone();
        f
    }
}

/// One call the model made.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments object.
    pub arguments: Json,
}

impl ToolCall {
    /// OpenAI's `tool_calls` entry (arguments as a JSON string); `index`
    /// only in stream deltas.
    pub fn openai(&self, index: Option<usize>) -> Json {
        let mut c = json!({
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments.to_string()},
        });
        if let Some(i) = index {
            c["index"] = json!(i);
        }
        c
    }

    /// Ollama's `tool_calls` entry (arguments as an object).
    pub fn ollama(&self, index: usize) -> Json {
        json!({
            "id": self.id,
            "function": {"index": index, "name": self.name, "arguments": self.arguments},
        })
    }
}

/// A reply read for calls: the text meant for the user, and the calls.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub content: Option<String>,
    pub calls: Vec<ToolCall>,
}

impl Reply {
    fn text(s: impl Into<String>) -> Reply {
        Reply {
            content: Some(s.into()),
            calls: Vec::new(),
        }
    }

    fn calls(calls: Vec<ToolCall>) -> Reply {
        Reply {
            content: None,
            calls,
        }
    }
}

/// A chat request's tools, as its model's template will see them.
#[derive(Clone, Debug)]
pub struct ToolUse {
    syntax: Syntax,
    tools: Vec<Tool>,
    choice: Choice,
    parallel: bool,
    /// The reply's constraint, compiled once by `parse`.
    format: Option<OutputFormat>,
}

impl Default for ToolUse {
    /// No tools.
    fn default() -> ToolUse {
        ToolUse {
            syntax: Syntax::Generic,
            tools: Vec::new(),
            choice: Choice::None,
            parallel: false,
            format: None,
        }
    }
}

/// `call_` + 24 random hex digits, as OpenAI's ids look.
pub fn new_call_id() -> String {
    format!("call_{:024x}", rand::random::<u128>() >> 32)
}

fn bad(msg: String) -> ApiError {
    ApiError::bad_request(msg)
}

impl ToolUse {
    /// Checks `tools` (OpenAI's and Ollama's shape: `[{"type": "function",
    /// "function": {"name", "description", "parameters"}}]`), `tool_choice`
    /// and `parallel_tool_calls` (llama-server's default: off).
    pub fn parse(
        tools: Option<&Json>,
        choice: Option<&Json>,
        parallel: Option<bool>,
        syntax: Syntax,
    ) -> Result<ToolUse, ApiError> {
        let list: &[Json] = match tools {
            None | Some(Json::Null) => &[],
            Some(Json::Array(a)) => a,
            Some(_) => return Err(bad("tools: expected a list of tools".into())),
        };
        if list.len() > MAX_TOOLS {
            return Err(bad(format!(
                "tools: {} tools, at most {MAX_TOOLS} are allowed",
                list.len()
            )));
        }
        let mut parsed: Vec<Tool> = Vec::with_capacity(list.len());
        for (i, t) in list.iter().enumerate() {
            let at = format!("tools[{i}]");
            match t.get("type").and_then(Json::as_str) {
                Some("function") | None => {}
                Some(other) => {
                    return Err(bad(format!(
                        "{at}.type: only \"function\" tools are supported, got \"{other}\""
                    )))
                }
            }
            let f = t
                .get("function")
                .and_then(Json::as_object)
                .ok_or_else(|| bad(format!("{at}.function: missing")))?;
            let name = f
                .get("name")
                .and_then(Json::as_str)
                .ok_or_else(|| bad(format!("{at}.function.name: missing")))?;
            let name_ok = !name.is_empty()
                && name.len() <= MAX_NAME
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
            if !name_ok {
                return Err(bad(format!(
                    "{at}.function.name: '{name}' must be 1 to {MAX_NAME} letters, digits, '_', '-' or '.'"
                )));
            }
            if parsed.iter().any(|p| p.name == name) {
                return Err(bad(format!(
                    "{at}.function.name: '{name}' is offered twice"
                )));
            }
            let parameters = match f.get("parameters") {
                None | Some(Json::Null) => json!({"type": "object", "properties": {}}),
                Some(p @ Json::Object(_)) => p.clone(),
                Some(_) => {
                    return Err(bad(format!(
                        "{at}.function.parameters: expected a JSON schema object"
                    )))
                }
            };
            parsed.push(Tool {
                name: name.to_string(),
                description: f
                    .get("description")
                    .and_then(Json::as_str)
                    .map(str::to_string),
                parameters,
            });
        }
        let choice = match choice {
            None | Some(Json::Null) => {
                if parsed.is_empty() {
                    Choice::None
                } else {
                    Choice::Auto
                }
            }
            Some(Json::String(s)) => match s.as_str() {
                "none" => Choice::None,
                "auto" => Choice::Auto,
                "required" => Choice::Required,
                other => {
                    return Err(bad(format!(
                        "tool_choice: expected none, auto, required or a function, got \"{other}\""
                    )))
                }
            },
            Some(c @ Json::Object(_)) => {
                let name = c
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Json::as_str)
                    .ok_or_else(|| bad("tool_choice.function.name: missing".into()))?;
                if !parsed.iter().any(|t| t.name == name) {
                    return Err(bad(format!(
                        "tool_choice: '{name}' is not one of the tools offered"
                    )));
                }
                Choice::Named(name.to_string())
            }
            Some(other) => return Err(bad(format!("tool_choice: unexpected value {other}"))),
        };
        if parsed.is_empty() && matches!(choice, Choice::Required | Choice::Named(_)) {
            return Err(bad("tool_choice: no tools are offered".into()));
        }
        let mut use_ = ToolUse {
            syntax,
            tools: parsed,
            choice,
            parallel: parallel.unwrap_or(false),
            format: None,
        };
        // A schema the constraint cannot enforce is refused now, not at the first token.
        use_.format = use_.compile_format()?;
        Ok(use_)
    }

    /// Tools are offered and may be called.
    pub fn active(&self) -> bool {
        !self.tools.is_empty() && self.choice != Choice::None
    }

    /// A call must be made (`required` or named).
    fn must_call(&self) -> bool {
        matches!(self.choice, Choice::Required | Choice::Named(_))
    }

    /// The reply is one bare call object: Hermes' after the prompt's
    /// `<tool_call>`, Llama 3's when a call is required.
    fn forced(&self) -> bool {
        self.syntax != Syntax::Generic && self.must_call()
    }

    /// The tools a call may name.
    fn callable(&self) -> impl Iterator<Item = (usize, &Tool)> {
        self.tools
            .iter()
            .enumerate()
            .filter(move |(_, t)| match &self.choice {
                Choice::Named(n) => &t.name == n,
                _ => true,
            })
    }

    /// The `tools` variable of a template that describes tools itself.
    pub fn template_tools(&self) -> Option<Json> {
        if !self.active() || self.syntax == Syntax::Generic {
            return None;
        }
        let list = self
            .tools
            .iter()
            .map(|t| json!({"type": "function", "function": t.function()}))
            .collect();
        Some(Json::Array(list))
    }

    /// Text the prompt ends with, after the template's assistant opening.
    pub fn prompt_suffix(&self) -> &'static str {
        match self.syntax {
            Syntax::Hermes if self.forced() => "<tool_call>\n",
            Syntax::Mistral | Syntax::MistralArgs if self.forced() => MISTRAL_CALLS,
            _ => "",
        }
    }

    /// Control tokens the reply's text must keep to be read: Mistral's
    /// `[TOOL_CALLS]` (llama-server's "preserved tokens"). Empty where the
    /// vocabulary has no such token (the marker is then plain text).
    pub fn shown_tokens(&self, tok: &crate::tokenizer::Tokenizer) -> Vec<u32> {
        if !self.active() || !self.mistral() {
            return Vec::new();
        }
        [MISTRAL_CALLS, MISTRAL_ARGS, MISTRAL_CALL_ID]
            .iter()
            .filter_map(|t| tok.token_id(t))
            .filter(|&id| tok.is_control(id))
            .collect()
    }

    /// The constraint on the reply, `None` without tools. In Hermes'
    /// `auto` the reply is free but for what follows each `<tool_call>`.
    pub fn format(&self) -> Option<OutputFormat> {
        self.format.clone()
    }

    /// Either of Mistral's syntaxes (calls after `[TOOL_CALLS]`, ids of 9
    /// characters).
    fn mistral(&self) -> bool {
        matches!(self.syntax, Syntax::Mistral | Syntax::MistralArgs)
    }

    fn compile_format(&self) -> Result<Option<OutputFormat>, ApiError> {
        if !self.active() {
            return Ok(None);
        }
        let schema = if self.syntax == Syntax::MistralArgs {
            // `name[ARGS]` then the arguments: not a JSON value.
            let alts: Vec<(String, String)> = self
                .callable()
                .map(|(i, t)| {
                    (
                        format!("{}{MISTRAL_ARGS}", t.name),
                        format!("#/$defs/tool_{i}"),
                    )
                })
                .collect();
            Schema::prefixed_choice(&json!({"$defs": self.defs()}), &alts)
        } else {
            Schema::compile(&self.reply_schema())
        }
        .map_err(|e| bad(self.schema_error(&e)))?;
        Ok(Some(match self.syntax {
            _ if self.forced() => OutputFormat::JsonSchema(Arc::new(schema)),
            Syntax::Hermes => OutputFormat::Triggered(Arc::new(Trigger::new(HERMES_OPEN, schema))),
            Syntax::Llama3 => OutputFormat::Triggered(Arc::new(Trigger::at_start("{", schema))),
            Syntax::Mistral | Syntax::MistralArgs => {
                OutputFormat::Triggered(Arc::new(Trigger::new(MISTRAL_CALLS, schema)))
            }
            Syntax::Generic => OutputFormat::JsonSchema(Arc::new(schema)),
        }))
    }

    /// Names the tool whose parameters a schema error comes from.
    fn schema_error(&self, e: &str) -> String {
        // From the last, so tool_1 does not claim tool_12's errors.
        for (i, t) in self.tools.iter().enumerate().rev() {
            if e.contains(&format!("#/$defs/tool_{i}")) {
                return format!("tools[{i}].function.parameters ('{}'): {e}", t.name);
            }
        }
        format!("tools: {e}")
    }

    /// One call's schema: `{"name": const, "arguments": parameters}`
    /// (Llama 3 names the arguments `parameters`; Mistral's may end with
    /// the call's `"id"`, as its template writes them).
    fn call_schema(&self, i: usize, t: &Tool) -> Json {
        let args = if self.syntax == Syntax::Llama3 {
            "parameters"
        } else {
            "arguments"
        };
        let mut c = json!({
            "type": "object",
            "properties": {
                "name": {"const": t.name},
                args: {"$ref": format!("#/$defs/tool_{i}")},
            },
            "required": ["name", args],
        });
        if self.syntax == Syntax::Mistral {
            c["properties"]["id"] = json!({"type": "string",
                "minLength": MISTRAL_ID_LEN, "maxLength": MISTRAL_ID_LEN});
        }
        c
    }

    /// The schema of the whole reply (of a call, in Hermes). Each tool's
    /// parameters sit under `$defs/tool_i`, their own local references
    /// moved with them.
    fn reply_schema(&self) -> Json {
        let calls: Vec<Json> = self
            .callable()
            .map(|(i, t)| self.call_schema(i, t))
            .collect();
        let call = if calls.len() == 1 {
            calls[0].clone()
        } else {
            json!({"anyOf": calls})
        };
        let defs = self.defs();
        let mut schema = if self.syntax == Syntax::Mistral {
            // One list of calls after `[TOOL_CALLS]`.
            let mut list = json!({"type": "array", "items": call, "minItems": 1});
            if !self.parallel {
                list["maxItems"] = json!(1);
            }
            list
        } else if self.syntax != Syntax::Generic {
            call
        } else {
            let calls = if self.parallel {
                json!({
                    "type": "object",
                    "properties": {"tool_calls": {"type": "array", "items": call, "minItems": 1}},
                    "required": ["tool_calls"],
                })
            } else {
                json!({
                    "type": "object",
                    "properties": {"tool_call": call},
                    "required": ["tool_call"],
                })
            };
            match self.choice {
                Choice::Auto => json!({"anyOf": [calls, {
                    "type": "object",
                    "properties": {"response": {"type": "string"}},
                    "required": ["response"],
                }]}),
                _ => calls,
            }
        };
        schema["$defs"] = Json::Object(defs);
        schema
    }

    /// Each tool's parameters as `$defs/tool_i`, their references rebased.
    fn defs(&self) -> Map<String, Json> {
        let mut defs = Map::new();
        for (i, t) in self.tools.iter().enumerate() {
            let mut p = t.parameters.clone();
            rebase_refs(&mut p, &format!("#/$defs/tool_{i}"));
            defs.insert(format!("tool_{i}"), p);
        }
        defs
    }

    /// The generic syntax's system message: the tools, and the reply's shape.
    fn instructions(&self) -> String {
        let list: Vec<Json> = self.tools.iter().map(Tool::function).collect();
        let one = r#"{"name": "<tool name>", "arguments": {<its arguments>}}"#;
        let call = if self.parallel {
            format!(r#"{{"tool_calls": [{one}, ...]}}"#)
        } else {
            format!(r#"{{"tool_call": {one}}}"#)
        };
        let mut s = format!(
            "You can call these tools; each one's \"parameters\" is the JSON schema of its arguments:\n{}\n\n",
            Json::Array(list)
        );
        match &self.choice {
            Choice::Named(n) => s.push_str(&format!(
                "Reply with one JSON object that calls the tool {n}: {call}"
            )),
            Choice::Required => s.push_str(&format!(
                "Reply with one JSON object that calls a tool: {call}"
            )),
            _ => s.push_str(&format!(
                "Reply with one JSON object: {call} to call a tool, or {{\"response\": \"<your answer>\"}} to answer the user."
            )),
        }
        s
    }

    /// The conversation as the template gets it: in the generic syntax
    /// earlier calls become the JSON the model wrote, tool results a user
    /// turn (unless the template knows the tool role), and the tools a
    /// system message; in Hermes the template writes calls itself.
    pub fn messages(&self, template: &str, mut msgs: Vec<ChatMessage>) -> Vec<ChatMessage> {
        if self.mistral() {
            for m in msgs.iter_mut() {
                for c in m
                    .tool_calls
                    .iter_mut()
                    .flat_map(|c| c.as_array_mut())
                    .flatten()
                {
                    if let Some(id) = c["id"].as_str() {
                        c["id"] = json!(mistral_id(id));
                    }
                }
                if let Some(id) = m.tool_call_id.as_mut() {
                    *id = mistral_id(id);
                }
            }
        }
        if self.syntax == Syntax::Generic {
            let tool_role = template.contains("'tool'") || template.contains("\"tool\"");
            let mut names: Vec<(String, String)> = Vec::new();
            for m in msgs.iter_mut() {
                if let Some(calls) = m.tool_calls.take() {
                    let list: Vec<Json> = calls
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| {
                            let f = &c["function"];
                            if let (Some(id), Some(n)) = (c["id"].as_str(), f["name"].as_str()) {
                                names.push((id.to_string(), n.to_string()));
                            }
                            json!({"name": f["name"], "arguments": f["arguments"]})
                        })
                        .collect();
                    let obj = if list.len() == 1 && !self.parallel {
                        json!({"tool_call": list[0]})
                    } else {
                        json!({"tool_calls": list})
                    };
                    m.content = obj.to_string();
                } else if m.role == "assistant" && self.active() {
                    // An earlier text answer, as the model would have written it.
                    m.content = json!({"response": m.content}).to_string();
                }
                if m.role == "tool" && !tool_role {
                    let name = m.name.clone().or_else(|| {
                        let id = m.tool_call_id.as_deref()?;
                        names.iter().find(|(i, _)| i == id).map(|(_, n)| n.clone())
                    });
                    m.role = "user".into();
                    m.content =
                        json!({"tool_response": {"name": name, "content": m.content}}).to_string();
                }
            }
            if self.active() {
                let text = self.instructions();
                match msgs.first_mut() {
                    Some(m) if m.role == "system" => {
                        m.content = format!("{}\n\n{text}", m.content);
                    }
                    _ => msgs.insert(0, ChatMessage::new("system", text)),
                }
            }
        }
        msgs
    }

    /// Reads the calls out of a finished reply.
    pub fn reply(&self, text: &str) -> Reply {
        if !self.active() {
            return Reply::text(text);
        }
        // A bare call object: Hermes' after a forced `<tool_call>`, Llama 3's.
        let bare = || {
            serde_json::from_str::<Json>(text.trim())
                .ok()
                .and_then(|v| call(&v))
                .map_or_else(|| Reply::text(text), |c| Reply::calls(vec![c]))
        };
        match self.syntax {
            Syntax::Mistral => mistral_reply(text, self.forced()),
            Syntax::MistralArgs => mistral_args_reply(text, self.forced()),
            _ if self.forced() => bare(),
            Syntax::Generic => generic_reply(text),
            Syntax::Hermes => hermes_reply(text),
            Syntax::Llama3 if text.trim_start().starts_with('{') => bare(),
            Syntax::Llama3 => Reply::text(text),
        }
    }

    /// What of a reply so far is surely text for the user.
    fn visible<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        if !self.active() || self.forced() {
            return if self.active() {
                "".into()
            } else {
                text.into()
            };
        }
        match self.syntax {
            Syntax::Generic => response_prefix(text).unwrap_or_default().into(),
            // Prose once its first byte is not a call's `{`.
            Syntax::Llama3 => match text.trim_start() {
                t if t.starts_with('{') => "".into(),
                t => t.into(),
            },
            Syntax::Hermes => before_marker(text.trim_start(), HERMES_OPEN).into(),
            Syntax::Mistral | Syntax::MistralArgs => {
                before_marker(text.trim_start(), MISTRAL_CALLS).into()
            }
        }
    }
}

/// A reply with tools read as it streams.
pub struct ReplyStream {
    tools: ToolUse,
    text: String,
    /// The text shown so far.
    shown: String,
}

impl ReplyStream {
    pub fn new(tools: ToolUse) -> ReplyStream {
        ReplyStream {
            tools,
            text: String::new(),
            shown: String::new(),
        }
    }

    /// Adds a piece of the reply; returns the text to show now (often empty).
    pub fn push(&mut self, piece: &str) -> String {
        self.text.push_str(piece);
        let visible = self.tools.visible(&self.text);
        match visible.strip_prefix(self.shown.as_str()) {
            Some(new) if !new.is_empty() => {
                let new = new.to_string();
                self.shown.push_str(&new);
                new
            }
            _ => String::new(),
        }
    }

    /// The whole reply read for calls, and the part of its text not yet shown.
    pub fn finish(&self) -> (String, Reply) {
        let reply = self.tools.reply(&self.text);
        let rest = reply
            .content
            .as_deref()
            .and_then(|c| c.strip_prefix(self.shown.as_str()))
            .unwrap_or_default()
            .to_string();
        (rest, reply)
    }
}

/// The text before `marker`, less a tail that may be its start (held back
/// while streaming).
fn before_marker<'t>(t: &'t str, marker: &str) -> &'t str {
    let end = match t.find(marker) {
        Some(i) => i,
        None => {
            let first = &marker[..1];
            t.rfind(first)
                .filter(|&i| marker.starts_with(&t[i..]))
                .unwrap_or(t.len())
        }
    };
    &t[..end]
}

/// A call id as Mistral's template takes it: 9 letters and digits. One
/// already so is kept; any other (OpenAI's `call_...`) is mapped, the same
/// way each time, so a call and its result still match.
fn mistral_id(id: &str) -> String {
    if id.len() == MISTRAL_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return id.to_string();
    }
    // FNV-1a, then base 62.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in id.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    alnum_id(h)
}

fn alnum_id(mut h: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    (0..MISTRAL_ID_LEN)
        .map(|_| {
            let c = DIGITS[(h % 62) as usize] as char;
            h /= 62;
            c
        })
        .collect()
}

/// Calls read out of a reply in either Mistral syntax, by `read` from what
/// follows the first `[TOOL_CALLS]` (all of the reply when the prompt ended
/// in it); text before it is the content. Calls that do not read leave the
/// reply text.
fn mistral_calls(
    text: &str,
    forced: bool,
    read: impl FnOnce(&str) -> Option<Vec<ToolCall>>,
) -> Reply {
    let (content, rest) = if forced {
        ("", text)
    } else {
        match text.find(MISTRAL_CALLS) {
            Some(i) => (&text[..i], &text[i + MISTRAL_CALLS.len()..]),
            None => return Reply::text(text.trim()),
        }
    };
    match read(rest).filter(|c| !c.is_empty()) {
        Some(calls) => {
            let content = content.trim();
            Reply {
                content: (!content.is_empty()).then(|| content.to_string()),
                calls,
            }
        }
        None => Reply::text(text),
    }
}

/// The model's own id if it wrote one (in the template's shape), else a
/// fresh one.
fn mistral_call_id(id: Option<&str>) -> String {
    id.map_or_else(|| alnum_id(rand::random()), mistral_id)
}

/// The first JSON value of `text`, whitespace before it aside.
fn first_json(text: &str) -> Option<Json> {
    serde_json::Deserializer::from_str(text.trim_start())
        .into_iter::<Json>()
        .next()?
        .ok()
}

/// `[TOOL_CALLS][{"name", "arguments", "id"}, ...]`.
fn mistral_reply(text: &str, forced: bool) -> Reply {
    mistral_calls(text, forced, |list| {
        let Json::Array(a) = first_json(list)? else {
            return None;
        };
        a.iter()
            .map(|c| {
                let mut call = call(c)?;
                call.id = mistral_call_id(c.get("id").and_then(Json::as_str));
                Some(call)
            })
            .collect()
    })
}

/// `[TOOL_CALLS]name[ARGS]{...}` once per call (with `[CALL_ID]id` before
/// `[ARGS]`, as Small 3.2's template writes earlier calls).
fn mistral_args_reply(text: &str, forced: bool) -> Reply {
    mistral_calls(text, forced, |calls| {
        calls
            .split(MISTRAL_CALLS)
            .map(|one| {
                let (head, args) = one.split_once(MISTRAL_ARGS)?;
                let (name, id) = match head.split_once(MISTRAL_CALL_ID) {
                    Some((name, id)) => (name, Some(id.trim())),
                    None => (head, None),
                };
                let mut c = call(&json!({"name": name.trim(), "arguments": first_json(args)?}))?;
                c.id = mistral_call_id(id);
                Some(c)
            })
            .collect()
    })
}

/// The generic syntax's answer as far as it is written: the decoded
/// `"response"` string of `{"response": "...`, `None` before its key is
/// known or when the key is another.
fn response_prefix(text: &str) -> Option<String> {
    let rest = text.trim_start().strip_prefix('{')?.trim_start();
    let rest = rest.strip_prefix(r#""response""#)?.trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let mut chars = rest.strip_prefix('"')?.chars();
    let mut out = String::new();
    // A `\u` escape (two for a surrogate pair) is decoded once complete.
    let hex4 = |c: &mut std::str::Chars| -> Option<u32> {
        let h: String = c.by_ref().take(4).collect();
        (h.len() == 4).then(|| u32::from_str_radix(&h, 16).ok())?
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => {
                let e = match chars.next() {
                    Some('n') => '\n',
                    Some('t') => '\t',
                    Some('r') => '\r',
                    Some('b') => '\u{8}',
                    Some('f') => '\u{c}',
                    Some('u') => {
                        let Some(hi) = hex4(&mut chars) else { break };
                        let code = if (0xD800..0xDC00).contains(&hi) {
                            if chars.next() != Some('\\') || chars.next() != Some('u') {
                                break;
                            }
                            let Some(lo) = hex4(&mut chars) else { break };
                            0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
                        } else {
                            hi
                        };
                        match char::from_u32(code) {
                            Some(ch) => ch,
                            None => break,
                        }
                    }
                    Some(other) => other,
                    None => break,
                };
                out.push(e);
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// `{"name": "...", "arguments": {...}}` as a call; arguments written as a
/// JSON string (or as llama 3's `parameters`) are accepted too.
fn call(v: &Json) -> Option<ToolCall> {
    let name = v.get("name")?.as_str()?;
    let args = v.get("arguments").or_else(|| v.get("parameters"));
    let arguments = match args {
        None | Some(Json::Null) => json!({}),
        Some(Json::String(s)) => serde_json::from_str(s).ok()?,
        Some(a @ Json::Object(_)) => a.clone(),
        Some(_) => return None,
    };
    Some(ToolCall {
        id: new_call_id(),
        name: name.to_string(),
        arguments,
    })
}

/// The generic syntax's object: its call(s), or its answer; a reply that
/// is no whole object (cut short by max_tokens) is the answer as far as it
/// got, else the text as it is.
fn generic_reply(text: &str) -> Reply {
    // The first value: after it, a reply bound only after `</think>` is free.
    let first = serde_json::Deserializer::from_str(text)
        .into_iter::<Json>()
        .next();
    let Some(Ok(v)) = first else {
        return Reply::text(response_prefix(text).unwrap_or_else(|| text.to_string()));
    };
    if let Some(c) = v.get("tool_call").and_then(call) {
        return Reply::calls(vec![c]);
    }
    let list = v.get("tool_calls").and_then(Json::as_array);
    if let Some(calls) = list
        .and_then(|l| l.iter().map(call).collect::<Option<Vec<_>>>())
        .filter(|c| !c.is_empty())
    {
        return Reply::calls(calls);
    }
    match v.get("response") {
        Some(Json::String(s)) => Reply::text(s.clone()),
        _ => Reply::text(text),
    }
}

/// `<tool_call>...</tool_call>` blocks out of free text; a block that is
/// not a call stays in the text.
fn hermes_reply(text: &str) -> Reply {
    let mut content = String::new();
    let mut calls = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(HERMES_OPEN) {
        let inner_from = start + HERMES_OPEN.len();
        let (inner, next) = match rest[inner_from..].find(HERMES_CLOSE) {
            Some(end) => (
                &rest[inner_from..inner_from + end],
                inner_from + end + HERMES_CLOSE.len(),
            ),
            None => (&rest[inner_from..], rest.len()),
        };
        match serde_json::from_str::<Json>(inner.trim())
            .ok()
            .and_then(|v| call(&v))
        {
            Some(c) => {
                content.push_str(&rest[..start]);
                calls.push(c);
            }
            None => content.push_str(&rest[..next]),
        }
        rest = &rest[next..];
    }
    content.push_str(rest);
    let content = content.trim();
    Reply {
        content: (!content.is_empty() || calls.is_empty()).then(|| content.to_string()),
        calls,
    }
}

/// Points a schema's local references (`#`, `#/...`) at where it now sits.
fn rebase_refs(v: &mut Json, base: &str) {
    match v {
        Json::Object(m) => {
            for (k, x) in m.iter_mut() {
                match x {
                    Json::String(r) if k == "$ref" && r.starts_with('#') => {
                        *r = format!("{base}{}", &r[1..]);
                    }
                    _ => rebase_refs(x, base),
                }
            }
        }
        Json::Array(a) => a.iter_mut().for_each(|x| rebase_refs(x, base)),
        _ => {}
    }
}

/// Message `i`'s calls, if it is an assistant turn that has them (see
/// [`history_calls`]).
pub fn turn_calls(role: &str, calls: Option<&Json>, i: usize) -> Result<Option<Json>, ApiError> {
    match calls {
        Some(c) if role == "assistant" && !c.is_null() => {
            history_calls(c, &format!("messages[{i}].tool_calls")).map(Some)
        }
        _ => Ok(None),
    }
}

/// An assistant message's `tool_calls` from either API, in transformers'
/// shape (arguments an object): OpenAI sends arguments as a JSON string,
/// Ollama as an object; a missing id gets one.
pub fn history_calls(v: &Json, at: &str) -> Result<Json, ApiError> {
    let list = v
        .as_array()
        .ok_or_else(|| bad(format!("{at}: expected a list of calls")))?;
    let mut out = Vec::with_capacity(list.len());
    for (j, c) in list.iter().enumerate() {
        let at = format!("{at}[{j}]");
        let f = c
            .get("function")
            .ok_or_else(|| bad(format!("{at}.function: missing")))?;
        let name = f
            .get("name")
            .and_then(Json::as_str)
            .ok_or_else(|| bad(format!("{at}.function.name: missing")))?;
        let arguments = match f.get("arguments") {
            None | Some(Json::Null) => json!({}),
            Some(Json::String(s)) => serde_json::from_str::<Json>(s)
                .ok()
                .filter(Json::is_object)
                .ok_or_else(|| {
                    bad(format!(
                        "{at}.function.arguments: not a JSON object: {s:.80}"
                    ))
                })?,
            Some(a @ Json::Object(_)) => a.clone(),
            Some(other) => {
                return Err(bad(format!(
                    "{at}.function.arguments: expected an object or a JSON string, got {other}"
                )))
            }
        };
        let id = c
            .get("id")
            .and_then(Json::as_str)
            .map_or_else(new_call_id, str::to_string);
        out.push(json!({
            "type": "function",
            "id": id,
            "function": {"name": name, "arguments": arguments},
        }));
    }
    Ok(Json::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Json {
        json!([{"type": "function", "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string"},
                "unit": {"enum": ["celsius", "fahrenheit"]}
            }, "required": ["city"]}
        }}, {"type": "function", "function": {"name": "now"}}])
    }

    fn parse(choice: Option<Json>, parallel: bool, syntax: Syntax) -> ToolUse {
        ToolUse::parse(Some(&weather()), choice.as_ref(), Some(parallel), syntax).unwrap()
    }

    fn fits(u: &ToolUse, text: &str) -> bool {
        let Some(OutputFormat::JsonSchema(s)) = u.format() else {
            panic!("no schema")
        };
        let st = crate::engine::json_output::SchemaState::new(&s);
        st.after(&s, text.as_bytes()).is_some_and(|st| st.is_done())
    }

    #[test]
    fn requests_are_checked_by_name() {
        let err = |tools: Json, choice: Option<Json>| {
            ToolUse::parse(Some(&tools), choice.as_ref(), None, Syntax::Generic)
                .expect_err("refused")
                .message
        };
        assert!(err(json!({}), None).contains("tools: expected a list"));
        assert!(err(json!([{"type": "code_interpreter"}]), None).contains("tools[0].type"));
        assert!(err(json!([{"function": {}}]), None).contains("tools[0].function.name"));
        assert!(err(json!([{"function": {"name": "a b"}}]), None).contains("'a b'"));
        let dup = json!([{"function": {"name": "a"}}, {"function": {"name": "a"}}]);
        assert!(err(dup, None).contains("offered twice"));
        assert!(err(weather(), Some(json!("sometimes"))).contains("tool_choice"));
        let named = json!({"type": "function", "function": {"name": "nope"}});
        assert!(err(weather(), Some(named)).contains("'nope' is not one of"));
        assert!(
            ToolUse::parse(None, Some(&json!("required")), None, Syntax::Generic)
                .expect_err("no tools")
                .message
                .contains("no tools")
        );
        let bad_schema = json!([{"function": {"name": "f", "parameters":
            {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}}}}]);
        let e = err(bad_schema, None);
        assert!(
            e.contains("tools[0].function.parameters ('f')") && e.contains("multipleOf"),
            "{e}"
        );
        let u = ToolUse::parse(Some(&json!([])), None, None, Syntax::Generic).unwrap();
        assert!(!u.active());
        assert!(!parse(Some(json!("none")), false, Syntax::Generic).active());
    }

    #[test]
    fn generic_replies_are_constrained_to_calls_or_a_response() {
        let auto = parse(None, false, Syntax::Generic);
        assert!(fits(
            &auto,
            r#"{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}"#
        ));
        assert!(fits(
            &auto,
            r#"{"tool_call": {"name": "now", "arguments": {}}}"#
        ));
        assert!(fits(&auto, r#"{"response": "Hello"}"#));
        assert!(!fits(
            &auto,
            r#"{"tool_call": {"name": "get_time", "arguments": {}}}"#
        ));
        assert!(!fits(
            &auto,
            r#"{"tool_call": {"name": "get_weather", "arguments": {"unit": "celsius"}}}"#
        ));
        let required = parse(Some(json!("required")), false, Syntax::Generic);
        assert!(!fits(&required, r#"{"response": "Hello"}"#));
        let named = parse(
            Some(json!({"type": "function", "function": {"name": "now"}})),
            true,
            Syntax::Generic,
        );
        assert!(fits(
            &named,
            r#"{"tool_calls": [{"name": "now", "arguments": {}}, {"name": "now", "arguments": {}}]}"#
        ));
        assert!(!fits(
            &named,
            r#"{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}"#
        ));
        assert!(!fits(&named, r#"{"tool_calls": []}"#));
    }

    #[test]
    fn parameters_keep_their_own_references() {
        let tools = json!([{"function": {"name": "tree", "parameters": {
            "type": "object",
            "$defs": {"node": {"type": "object", "properties": {
                "v": {"type": "integer"},
                "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}
            }, "required": ["v"]}},
            "properties": {"root": {"$ref": "#/$defs/node"}},
            "required": ["root"]
        }}}]);
        let u = ToolUse::parse(
            Some(&tools),
            Some(&json!("required")),
            None,
            Syntax::Generic,
        )
        .unwrap();
        assert!(fits(
            &u,
            r#"{"tool_call": {"name": "tree", "arguments": {"root": {"v": 1, "kids": [{"v": 2}]}}}}"#
        ));
        assert!(!fits(
            &u,
            r#"{"tool_call": {"name": "tree", "arguments": {"root": {"kids": []}}}}"#
        ));
    }

    #[test]
    fn generic_replies_are_read() {
        let u = parse(None, false, Syntax::Generic);
        let r =
            u.reply(r#" {"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}"#);
        assert_eq!(r.content, None);
        assert_eq!(r.calls.len(), 1);
        assert_eq!(r.calls[0].name, "get_weather");
        assert_eq!(r.calls[0].arguments, json!({"city": "Paris"}));
        assert!(r.calls[0].id.starts_with("call_"));
        let r = u.reply(r#"{"response": "It is sunny."}"#);
        assert_eq!(
            (r.content.as_deref(), r.calls.len()),
            (Some("It is sunny."), 0)
        );
        // Cut short by max_tokens: the text as it is.
        let r = u.reply(r#"{"tool_call": {"name": "get_we"#);
        assert_eq!(
            r.content.as_deref(),
            Some(r#"{"tool_call": {"name": "get_we"#)
        );
        let p = parse(None, true, Syntax::Generic);
        let r = p.reply(r#"{"tool_calls": [{"name": "now", "arguments": {}}, {"name": "get_weather", "arguments": {"city": "Rome"}}]}"#);
        assert_eq!(r.calls.len(), 2);
        assert_ne!(r.calls[0].id, r.calls[1].id);
        let c = r.calls[1].openai(Some(1));
        assert_eq!(c["function"]["arguments"], json!(r#"{"city":"Rome"}"#));
        assert_eq!(c["index"], json!(1));
        assert_eq!(
            r.calls[1].ollama(1)["function"]["arguments"]["city"],
            "Rome"
        );
    }

    /// Streams `pieces` and returns (everything shown, the final reply).
    fn stream(u: &ToolUse, pieces: &[&str]) -> (Vec<String>, Reply) {
        let mut r = ReplyStream::new(u.clone());
        let mut shown: Vec<String> = pieces.iter().map(|p| r.push(p)).collect();
        let (rest, reply) = r.finish();
        shown.push(rest);
        (shown, reply)
    }

    #[test]
    fn streamed_replies_show_only_text_for_the_user() {
        let g = parse(None, false, Syntax::Generic);
        let (shown, r) = stream(
            &g,
            &[
                "{",
                "\"res",
                "ponse\": \"Hi",
                " th\\",
                "\"ere\\u00e9\\ud83e",
                "\\udd99",
                "\"}",
            ],
        );
        assert_eq!(shown, ["", "", "Hi", " th", "\"ereé", "🦙", "", ""]);
        assert_eq!(r.content.as_deref(), Some("Hi th\"ereé🦙"));
        let (shown, r) = stream(
            &g,
            &[
                "{\"tool_call\": {\"name\": \"now\", ",
                "\"arguments\": {}}}",
            ],
        );
        assert!(shown.iter().all(String::is_empty), "{shown:?}");
        assert_eq!(r.calls.len(), 1);
        // Cut short inside the answer: the answer as far as it got.
        let (shown, r) = stream(&g, &["{\"response\": \"Hel", "lo wor"]);
        assert_eq!(shown.concat(), "Hello wor");
        assert_eq!(r.content.as_deref(), Some("Hello wor"));

        let h = parse(None, false, Syntax::Hermes);
        let (shown, r) = stream(
            &h,
            &[
                "\nLet me ",
                "check.<tool",
                "_call>\n{\"name\": \"now\", \"arguments\": {}}",
                "\n</tool_call>",
            ],
        );
        assert_eq!(shown.concat(), "Let me check.");
        assert_eq!(
            (shown[0].as_str(), shown[1].as_str()),
            ("Let me ", "check.")
        );
        assert_eq!(r.calls.len(), 1);
        let (shown, r) = stream(&h, &["a < b", " and <tool", " is a tag"]);
        assert_eq!(shown.concat(), "a < b and <tool is a tag");
        assert_eq!(r.content.as_deref(), Some("a < b and <tool is a tag"));
        let forced = parse(Some(json!("required")), false, Syntax::Hermes);
        let (shown, _) = stream(&forced, &["{\"name\": \"now\", \"arguments\": {}}"]);
        assert!(shown.iter().all(String::is_empty));
    }

    /// The reply's trigger (the syntaxes whose reply is free until it).
    fn trigger_of(u: &ToolUse) -> Arc<Trigger> {
        match u.format() {
            Some(OutputFormat::Triggered(t)) => t,
            f => panic!("a trigger, not {f:?}"),
        }
    }

    #[test]
    fn mistral_replies_are_a_list_after_tool_calls() {
        let u = parse(None, false, Syntax::Mistral);
        assert!(u.template_tools().is_some());
        assert_eq!(u.prompt_suffix(), "");
        let t = trigger_of(&u);
        use crate::engine::json_output::TriggerState;
        let st = TriggerState::new().after(&t, b"[TOOL_CALLS]").unwrap();
        assert!(!st.is_free());
        assert!(
            st.after(&t, br#"{"name": "now", "arguments": {}}"#)
                .is_none(),
            "a list"
        );
        let one = br#"[{"name": "get_weather", "arguments": {"city": "Oslo"}, "id": "abc123XYZ"}"#;
        let st = st.after(&t, one).unwrap();
        assert!(
            st.after(&t, b", ").is_none(),
            "one call without parallel_tool_calls"
        );
        assert!(st.after(&t, b"]").unwrap().is_free());
        assert!(TriggerState::new()
            .after(
                &t,
                br#"[TOOL_CALLS][{"name": "now", "arguments": {}, "id": "short"}]"#
            )
            .is_none());
        let r = u.reply(r#"Checking.[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Oslo"}, "id": "abc123XYZ"}]"#);
        assert_eq!(r.content.as_deref(), Some("Checking."));
        assert_eq!(
            (r.calls[0].id.as_str(), r.calls[0].arguments.clone()),
            ("abc123XYZ", json!({"city": "Oslo"}))
        );
        let r = u.reply(r#"[TOOL_CALLS][{"name": "now", "arguments": {}}]"#);
        assert_eq!(r.content, None);
        assert!(
            r.calls[0].id.len() == 9 && r.calls[0].id.bytes().all(|b| b.is_ascii_alphanumeric())
        );
        assert_eq!(
            u.reply("It is sunny [maybe].").content.as_deref(),
            Some("It is sunny [maybe].")
        );
        let broken = "[TOOL_CALLS][{\"name\": ";
        assert_eq!(u.reply(broken).content.as_deref(), Some(broken));
        let (shown, _) = stream(
            &u,
            &[
                "It is",
                " [",
                "TOOL_CALLS]",
                "[{\"name\": \"now\", \"arguments\": {}}]",
            ],
        );
        assert_eq!(shown.concat(), "It is ");
        let forced = parse(Some(json!("required")), true, Syntax::Mistral);
        assert_eq!(forced.prompt_suffix(), "[TOOL_CALLS]");
        let Some(OutputFormat::JsonSchema(s)) = forced.format() else {
            panic!("the whole reply is the list")
        };
        let two = br#"[{"name": "now", "arguments": {}}, {"name": "get_weather", "arguments": {"city": "Rome"}}]"#;
        let st = crate::engine::json_output::SchemaState::new(&s)
            .after(&s, two)
            .unwrap();
        assert!(st.is_done(), "parallel: two calls");
        let r = forced.reply(std::str::from_utf8(two).unwrap());
        assert_eq!(r.calls.len(), 2);
    }

    #[test]
    fn mistral_args_calls_are_a_name_then_its_arguments() {
        use crate::engine::json_output::TriggerState;
        let u = parse(None, false, Syntax::MistralArgs);
        assert!(u.template_tools().is_some());
        let t = trigger_of(&u);
        let st = TriggerState::new()
            .after(&t, b"Let me see.[TOOL_CALLS]")
            .unwrap();
        assert!(!st.is_free());
        assert!(st.after(&t, b"get_time[ARGS]").is_none(), "an offered name");
        assert!(
            st.after(&t, br#"get_weather[ARGS]{"town": "Oslo"}"#)
                .is_none(),
            "its schema"
        );
        let st = st
            .after(&t, br#"get_weather[ARGS]{"city": "Oslo"}"#)
            .unwrap();
        assert!(st.is_free(), "free again after the call");
        let st = st.after(&t, br#"[TOOL_CALLS]now[ARGS] {}"#).unwrap();
        assert!(st.is_free());
        let r = u.reply(
            r#"Let me see.[TOOL_CALLS]get_weather[ARGS]{"city": "Oslo"}[TOOL_CALLS]now[ARGS]{}"#,
        );
        assert_eq!(r.content.as_deref(), Some("Let me see."));
        let got: Vec<(&str, Json)> = r
            .calls
            .iter()
            .map(|c| (c.name.as_str(), c.arguments.clone()))
            .collect();
        assert_eq!(
            got,
            [("get_weather", json!({"city": "Oslo"})), ("now", json!({}))]
        );
        assert!(r.calls.iter().all(|c| c.id.len() == 9));
        // As Small 3.2's template writes earlier calls, with an id.
        let r = u.reply(r#"[TOOL_CALLS]now[CALL_ID]aB3dE5gH7[ARGS]{}"#);
        assert_eq!((r.calls[0].id.as_str(), r.content), ("aB3dE5gH7", None));
        let broken = r#"[TOOL_CALLS]now{}"#;
        assert_eq!(u.reply(broken).content.as_deref(), Some(broken));
        let (shown, _) = stream(&u, &["Sure", " [TOOL", "_CALLS]now[ARGS]{}"]);
        assert_eq!(shown.concat(), "Sure ");
        let forced = parse(Some(json!("required")), false, Syntax::MistralArgs);
        assert_eq!(forced.prompt_suffix(), "[TOOL_CALLS]");
        let Some(OutputFormat::JsonSchema(s)) = forced.format() else {
            panic!("the whole reply is the call")
        };
        let st = crate::engine::json_output::SchemaState::new(&s)
            .after(&s, br#"get_weather[ARGS]{"city": "Rome"}"#)
            .unwrap();
        assert!(st.is_done());
        let r = forced.reply(r#"get_weather[ARGS]{"city": "Rome"}"#);
        assert_eq!(r.calls[0].arguments, json!({"city": "Rome"}));
    }

    #[test]
    fn mistral_conversations_carry_nine_character_ids() {
        let u = parse(None, false, Syntax::Mistral);
        assert_eq!(mistral_id("aB3dE5gH7"), "aB3dE5gH7");
        let mapped = mistral_id("call_0123456789abcdef01234567");
        assert!(mapped.len() == 9 && mapped.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(mapped, mistral_id("call_0123456789abcdef01234567"));
        assert_ne!(mapped, mistral_id("call_0123456789abcdef01234568"));
        let calls = history_calls(
            &json!([{"id": "call_0123456789abcdef01234567",
                     "function": {"name": "now", "arguments": "{}"}}]),
            "messages[1].tool_calls",
        )
        .unwrap();
        let msgs = vec![
            ChatMessage::new("user", "Time?"),
            ChatMessage {
                tool_calls: Some(calls),
                ..ChatMessage::new("assistant", "")
            },
            ChatMessage {
                tool_call_id: Some("call_0123456789abcdef01234567".into()),
                ..ChatMessage::new("tool", "12:00")
            },
        ];
        let out = u.messages("", msgs);
        assert_eq!(
            out[1].tool_calls.as_ref().unwrap()[0]["id"],
            mapped.as_str()
        );
        assert_eq!(out[2].tool_call_id.as_deref(), Some(mapped.as_str()));
    }

    #[test]
    fn the_syntax_follows_the_template() {
        let qwen = r#"<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>"#;
        assert_eq!(Syntax::of_template(qwen), Syntax::Hermes);
        let xml = "<tool_call>\n<function={{ tool_call.name }}>\n{% for k, v in tool_call.arguments | items %}";
        assert_eq!(Syntax::of_template(xml), Syntax::Generic);
        let chatml =
            "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'}}";
        assert_eq!(Syntax::of_template(chatml), Syntax::Generic);
        // Mistral Small 3.2's calls are `[TOOL_CALLS]name[ARGS]{...}`.
        let small = "[AVAILABLE_TOOLS]{{ tools }}[/AVAILABLE_TOOLS] [TOOL_CALLS]{{ name }}[ARGS]";
        assert_eq!(Syntax::of_template(small), Syntax::MistralArgs);
        // Qwen 2.5's, Hermes 3's, Llama 3.1's and 3.2's, Mistral Nemo's,
        // Small 3.2's, Devstral's and Ministral 3's own templates.
        let f: Json =
            serde_json::from_str(include_str!("../../tests/fixtures/tokenizer/tools.json"))
                .unwrap();
        for (key, t) in f["templates"].as_object().unwrap() {
            let src = t["source"].as_str().unwrap();
            let want = if key.starts_with("llama") {
                Syntax::Llama3
            } else if ["mistral-small3.2", "devstral", "ministral3"].contains(&key.as_str()) {
                Syntax::MistralArgs
            } else if key.starts_with("mistral") {
                Syntax::Mistral
            } else {
                Syntax::Hermes
            };
            assert_eq!(Syntax::of_template(src), want, "{key}");
        }
    }

    #[test]
    fn hermes_replies_are_read_and_forced_when_required() {
        let u = parse(None, false, Syntax::Hermes);
        let t = trigger_of(&u);
        let st = crate::engine::json_output::TriggerState::new();
        let st = st.after(&t, b"Sure. <tool_call>\n").unwrap();
        assert!(st.after(&t, br#"{"name": "get_time", "#).is_none());
        let st = st
            .after(&t, br#"{"name": "now", "arguments": {}}"#)
            .unwrap();
        assert!(st.is_free());
        assert_eq!(u.prompt_suffix(), "");
        assert!(u.template_tools().is_some());
        let r = u.reply(
            "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"now\", \"arguments\": \"{}\"}\n</tool_call>",
        );
        assert_eq!(r.content.as_deref(), Some("Let me check."));
        assert_eq!(r.calls.len(), 2);
        assert_eq!(r.calls[1].arguments, json!({}));
        let r = u.reply("<tool_call>not json</tool_call> plain");
        assert_eq!(
            (r.content.as_deref(), r.calls.len()),
            (Some("<tool_call>not json</tool_call> plain"), 0)
        );
        let r = u.reply("Just text.");
        assert_eq!(r.content.as_deref(), Some("Just text."));
        let forced = parse(Some(json!("required")), false, Syntax::Hermes);
        assert_eq!(forced.prompt_suffix(), "<tool_call>\n");
        assert!(fits(
            &forced,
            r#"{"name": "get_weather", "arguments": {"city": "Oslo"}}"#
        ));
        assert!(!fits(
            &forced,
            r#"{"tool_call": {"name": "now", "arguments": {}}}"#
        ));
        let r = forced.reply(r#"{"name": "now", "arguments": {}}"#);
        assert_eq!((r.content, r.calls.len()), (None, 1));
        let none = parse(Some(json!("none")), false, Syntax::Hermes);
        assert!(none.template_tools().is_none());
    }

    #[test]
    fn llama3_replies_are_a_call_from_their_first_byte_or_prose() {
        let u = parse(None, false, Syntax::Llama3);
        assert!(u.template_tools().is_some());
        assert_eq!(u.prompt_suffix(), "");
        let t = trigger_of(&u);
        use crate::engine::json_output::TriggerState;
        let st = TriggerState::new().after(&t, b"\n{").unwrap();
        assert!(st
            .after(&t, br#""name": "get_weather", "arguments""#)
            .is_none());
        let st = st
            .after(
                &t,
                br#""name": "get_weather", "parameters": {"city": "Rome"}}"#,
            )
            .unwrap();
        assert!(st.is_free());
        assert!(TriggerState::new()
            .after(&t, b"Use {braces} freely")
            .unwrap()
            .is_free());
        let r = u.reply(r#" {"name": "get_weather", "parameters": {"city": "Rome"}}"#);
        assert_eq!(
            (r.content, r.calls[0].arguments.clone()),
            (None, json!({"city": "Rome"}))
        );
        let r = u.reply("It is sunny {probably}.");
        assert_eq!(r.content.as_deref(), Some("It is sunny {probably}."));
        let (shown, _) = stream(&u, &["{\"name\"", ": \"now\", \"parameters\": {}}"]);
        assert!(shown.iter().all(String::is_empty));
        let (shown, _) = stream(&u, &[" It is", " sunny."]);
        assert_eq!(shown.concat(), "It is sunny.");
        let forced = parse(Some(json!("required")), false, Syntax::Llama3);
        assert!(matches!(forced.format(), Some(OutputFormat::JsonSchema(_))));
        assert!(fits(&forced, r#"{"name": "now", "parameters": {}}"#));
        assert!(!fits(&forced, r#"{"name": "now", "arguments": {}}"#));
        assert_eq!(forced.prompt_suffix(), "");
    }

    #[test]
    fn a_prompt_inside_think_binds_calls_only_after_it() {
        use crate::engine::json_output::TriggerState;
        use crate::server::reply::Thinking;
        let u = parse(Some(json!("required")), false, Syntax::Generic);
        let open = Some(Thinking {
            open_in_prompt: true,
        });
        let OutputFormat::Triggered(t) =
            crate::server::reply::after_thinking(u.format().unwrap(), open)
        else {
            panic!("a trigger")
        };
        let st = TriggerState::new()
            .after(&t, b"I should call {now}. ")
            .unwrap();
        assert!(st.is_free());
        let st = st.after(&t, b"</think>\n\n").unwrap();
        assert!(!st.is_free());
        assert!(st.after(&t, br#"{"response": "x"}"#).is_none());
        let st = st
            .after(&t, br#"{"tool_call": {"name": "now", "arguments": {}}}"#)
            .unwrap();
        assert!(st.value_is_done(), "the call is the whole answer");
        let closed = Some(Thinking {
            open_in_prompt: false,
        });
        assert!(matches!(
            crate::server::reply::after_thinking(u.format().unwrap(), closed),
            OutputFormat::JsonSchema(_)
        ));
        let r = crate::server::reply::ReplyReader::new(open, Some(u.clone())).unwrap();
        let read =
            r.read("Hm.</think>\n{\"tool_call\": {\"name\": \"now\", \"arguments\": {}}}\nDone.");
        assert_eq!(read.reasoning.as_deref(), Some("Hm."));
        assert_eq!(read.reply.calls.len(), 1, "{read:?}");
    }

    #[test]
    fn generic_history_is_written_in_the_generic_json() {
        let u = parse(None, false, Syntax::Generic);
        let mut call = ChatMessage::new("assistant", "");
        call.tool_calls = Some(
            history_calls(
                &json!([{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]),
                "messages[1].tool_calls",
            )
            .unwrap(),
        );
        let mut result = ChatMessage::new("tool", "12 C");
        result.tool_call_id = Some("call_1".into());
        let msgs = vec![
            ChatMessage::new("user", "Weather in Oslo?"),
            call,
            result,
            ChatMessage::new("assistant", "It is 12 C."),
        ];
        let out = u.messages("{{ message.content }}", msgs);
        assert_eq!(out[0].role, "system");
        assert!(
            out[0].content.contains("\"get_weather\""),
            "{}",
            out[0].content
        );
        assert_eq!(
            serde_json::from_str::<Json>(&out[2].content).unwrap(),
            json!({"tool_call": {"name": "get_weather", "arguments": {"city": "Oslo"}}})
        );
        assert!(out[2].tool_calls.is_none());
        assert_eq!(out[3].role, "user");
        assert_eq!(
            serde_json::from_str::<Json>(&out[3].content).unwrap(),
            json!({"tool_response": {"name": "get_weather", "content": "12 C"}})
        );
        assert_eq!(out[4].content, r#"{"response":"It is 12 C."}"#);
        // A template that knows the tool role keeps it.
        let mut result = ChatMessage::new("tool", "12 C");
        result.tool_call_id = Some("call_1".into());
        let out = u.messages("{% if message.role == 'tool' %}", vec![result]);
        assert_eq!(
            (out[1].role.as_str(), out[1].content.as_str()),
            ("tool", "12 C")
        );
        let e = history_calls(
            &json!([{"function": {"name": "f", "arguments": "[1"}}]),
            "messages[1].tool_calls",
        )
        .expect_err("not JSON");
        assert!(e
            .message
            .contains("messages[1].tool_calls[0].function.arguments"));
    }
}
