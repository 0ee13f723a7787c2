//! OpenAI's API: `/v1/chat/completions`, `/v1/completions`, `/v1/models`.
//! Request fields follow OpenAI's reference (plus llama-server's top_k,
//! min_p, repeat_penalty, ignore_eos, n_keep, cache_prompt); unknown fields are ignored, as OpenAI's own
//! clients send newer ones freely.

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value as Json_};

use super::body::read_json;
use super::errors::{ApiError, OpenAiError};
use super::generation::{self, collect, finish_reason, new_id, timings, usage, Names, Sampling};
use super::reply::{self, Delta, ReplyReader};
use super::sse::{sse_data, sse_done, stream_response, EVENT_STREAM};
use super::state::{unix_now, AppState, Model};
use super::tools::{self, ToolUse};
use crate::engine::json_output::Schema;
use crate::engine::{Event, OutputFormat, SamplerParams, TokenEvent, TokenLogprob};
use crate::tokenizer::{ChatMessage, Tokenizer};

type Result<T> = std::result::Result<T, OpenAiError>;

#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    fn into_vec(s: Option<Stop>) -> Vec<String> {
        match s {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(v)) => v,
        }
    }
}

#[derive(Deserialize, Debug, Default)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize, Debug)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Deserialize, Debug)]
pub struct Message {
    pub role: String,
    pub content: Option<Content>,
    /// An assistant turn's calls (arguments as JSON strings).
    pub tool_calls: Option<Json_>,
    /// A tool result's call.
    pub tool_call_id: Option<String>,
    pub name: Option<String>,
}

/// Roles a chat template understands; `developer` is OpenAI's new name for `system`.
const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool"];

#[derive(Deserialize, Debug)]
pub struct ChatRequest {
    #[allow(dead_code)]
    pub model: Option<String>,
    pub messages: Vec<Message>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    pub stop: Option<Stop>,
    pub seed: Option<i64>,
    pub n: Option<u32>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub logprobs: bool,
    pub top_logprobs: Option<usize>,
    pub tools: Option<Json_>,
    pub tool_choice: Option<Json_>,
    pub parallel_tool_calls: Option<bool>,
    pub response_format: Option<Json_>,
    /// llama-server's extension: go on past end-of-generation tokens.
    #[serde(default)]
    pub ignore_eos: bool,
    /// llama-server's extension: prompt tokens a context shift keeps.
    pub n_keep: Option<i64>,
    /// llama-server's extension: reuse what a slot holds of the prompt (default true).
    pub cache_prompt: Option<bool>,
    /// llama-server's extension: a GBNF grammar the reply follows.
    pub grammar: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
    Texts(Vec<String>),
}

#[derive(Deserialize, Debug)]
pub struct CompletionRequest {
    #[allow(dead_code)]
    pub model: Option<String>,
    pub prompt: Prompt,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub max_tokens: Option<i64>,
    pub stop: Option<Stop>,
    pub seed: Option<i64>,
    pub n: Option<u32>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// The legacy API's logprobs: how many alternatives per token.
    pub logprobs: Option<usize>,
    #[serde(default)]
    pub echo: bool,
    pub suffix: Option<String>,
    /// llama-server's extension: go on past end-of-generation tokens.
    #[serde(default)]
    pub ignore_eos: bool,
    /// llama-server's extension: prompt tokens a context shift keeps.
    pub n_keep: Option<i64>,
    /// llama-server's extension: reuse what a slot holds of the prompt (default true).
    pub cache_prompt: Option<bool>,
    /// llama-server's extension: a GBNF grammar the reply follows.
    pub grammar: Option<String>,
}

const NAMES: Names = Names {
    max_tokens: "max_tokens",
    unlimited: &[],
    logprobs: "top_logprobs",
};

fn only_one(n: Option<u32>) -> std::result::Result<(), ApiError> {
    match n {
        None | Some(1) => Ok(()),
        Some(n) => Err(ApiError::bad_request(format!(
            "n = {n}: only one choice per request is supported"
        ))),
    }
}

impl ChatRequest {
    fn conversation(&self) -> std::result::Result<Vec<ChatMessage>, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::bad_request("messages must not be empty"));
        }
        let mut out = Vec::with_capacity(self.messages.len());
        for (i, m) in self.messages.iter().enumerate() {
            if !ROLES.contains(&m.role.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "messages[{i}].role: unknown role '{}' (expected one of {})",
                    m.role,
                    ROLES.join(", ")
                )));
            }
            let calls = tools::turn_calls(&m.role, m.tool_calls.as_ref(), i)?;
            let text = match &m.content {
                None if calls.is_some() => String::new(),
                None => {
                    return Err(ApiError::bad_request(format!(
                        "messages[{i}]: a message needs a content"
                    )))
                }
                Some(Content::Text(s)) => s.clone(),
                Some(Content::Parts(parts)) => {
                    let mut s = String::new();
                    for (j, p) in parts.iter().enumerate() {
                        match (p.kind.as_str(), &p.text) {
                            ("text", Some(t)) => s.push_str(t),
                            (kind, _) => {
                                return Err(ApiError::bad_request(format!(
                                    "messages[{i}].content[{j}]: only text parts are supported, got '{kind}'"
                                )))
                            }
                        }
                    }
                    s
                }
            };
            let role = if m.role == "developer" {
                "system"
            } else {
                &m.role
            };
            let mut msg = ChatMessage::new(role, text);
            msg.tool_calls = calls;
            msg.tool_call_id = m.tool_call_id.clone();
            msg.name = m.name.clone();
            out.push(msg);
        }
        Ok(out)
    }

    /// The request's tools for `model`'s template.
    fn tool_use(&self, model: &Model) -> std::result::Result<ToolUse, ApiError> {
        let tools = ToolUse::parse(
            self.tools.as_ref(),
            self.tool_choice.as_ref(),
            self.parallel_tool_calls,
            model.tool_syntax(),
        )?;
        if tools.active() && !self.format()?.is_text() {
            return Err(ApiError::bad_request(
                "tools cannot be combined with response_format or grammar",
            ));
        }
        Ok(tools)
    }

    fn check_supported(&self) -> std::result::Result<(), ApiError> {
        only_one(self.n)?;
        self.format()?;
        if self.top_logprobs.is_some() && !self.logprobs {
            return Err(ApiError::bad_request(
                "top_logprobs needs logprobs set to true",
            ));
        }
        Ok(())
    }

    /// `response_format`: text; JSON mode for `{"type": "json_object"}`; a
    /// schema for `{"type": "json_schema", "json_schema": {"schema": ...}}`
    /// (or llama-server's `{"type": "json_object", "schema": ...}`).
    fn format(&self) -> std::result::Result<OutputFormat, ApiError> {
        let grammar = super::generation::grammar(&self.grammar)?;
        let Some(f) = self.response_format.as_ref().filter(|f| !f.is_null()) else {
            return Ok(grammar.unwrap_or(OutputFormat::Text));
        };
        if grammar.is_some() && f.get("type").and_then(|t| t.as_str()) != Some("text") {
            return Err(ApiError::bad_request(
                "grammar and response_format cannot be used together",
            ));
        }
        if let Some(g) = grammar {
            return Ok(g);
        }
        let schema = |v: &Json_, at: &str| {
            Schema::compile(v)
                .map(|s| OutputFormat::JsonSchema(std::sync::Arc::new(s)))
                .map_err(|e| ApiError::bad_request(format!("{at}: {e}")))
        };
        match f.get("type").and_then(|t| t.as_str()) {
            Some("text") => Ok(OutputFormat::Text),
            Some("json_object") => match f.get("schema") {
                Some(s) => schema(s, "response_format.schema"),
                None => Ok(OutputFormat::JsonObject),
            },
            Some("json_schema") => match f.get("json_schema").and_then(|j| j.get("schema")) {
                Some(s) => schema(s, "response_format.json_schema.schema"),
                None => Err(ApiError::bad_request(
                    "response_format.json_schema.schema: missing",
                )),
            },
            _ => Err(ApiError::bad_request(format!(
                "response_format: expected a type of text, json_object or json_schema, got {f}"
            ))),
        }
    }

    fn sampling(&self) -> Sampling {
        Sampling {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: None,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed: self.seed,
            max_tokens: self.max_completion_tokens.or(self.max_tokens),
            stop: Vec::new(),
            logprobs: self.logprobs.then(|| self.top_logprobs.unwrap_or(0)),
            ignore_eos: self.ignore_eos,
            keep: self.n_keep,
            cache_prompt: self.cache_prompt,
            // Checked by check_supported.
            format: self.format().unwrap_or_default(),
        }
    }
}

/// One token's entry in a chat `logprobs.content` list.
fn chat_logprob(tok: &Tokenizer, id: u32, lp: &TokenLogprob) -> Json_ {
    let entry = |id: u32, logprob: f32| {
        json!({
            "token": tok.token_piece(id),
            "logprob": logprob,
            "bytes": tok.token_bytes(id),
        })
    };
    let mut e = entry(id, lp.logprob);
    e["top_logprobs"] = lp.top.iter().map(|&(i, l)| entry(i, l)).collect();
    e
}

fn chat_logprobs(tok: &Tokenizer, tokens: &[TokenEvent]) -> Json_ {
    let content: Vec<Json_> = tokens
        .iter()
        .filter_map(|t| t.logprob.as_ref().map(|lp| chat_logprob(tok, t.id, lp)))
        .collect();
    json!({ "content": content })
}

pub async fn chat_completions(State(state): State<AppState>, body: Body) -> Result<Response> {
    let model = state.model()?;
    let req: ChatRequest = read_json(body).await?;
    req.check_supported()?;
    let messages = req.conversation()?;
    let tools = req.tool_use(&model)?;
    let prompt = model.chat_prompt_with_tools(messages, &tools)?;
    let mut sampling = req.sampling();
    if let Some(f) = tools.format() {
        sampling.format = f;
    }
    sampling.format = reply::after_thinking(std::mem::take(&mut sampling.format), prompt.thinking);
    sampling.stop = Stop::into_vec(req.stop);
    let mut greq =
        sampling.into_request(SamplerParams::default(), prompt.ids, model.limits(), &NAMES)?;
    greq.shown_tokens = tools.shown_tokens(model.tokenizer());
    let want_logprobs = greq.logprobs.is_some();
    let handle = generation::submit(&model, greq)?;
    let id = new_id("chatcmpl");
    let created = unix_now();
    let name = state.alias.clone();
    let reader = ReplyReader::new(prompt.thinking, tools.active().then_some(tools));
    if req.stream {
        let include_usage = req.stream_options.unwrap_or_default().include_usage;
        return Ok(chat_stream(
            state,
            model,
            handle,
            id,
            created,
            name,
            include_usage,
            reader,
        ));
    }
    let out = collect(&state, handle).await?;
    let tok = model.tokenizer();
    let mut message = json!({"role": "assistant", "content": out.text});
    let mut finish = finish_reason(out.finished.reason);
    if let Some(r) = &reader {
        let read = r.read(&out.text);
        message["content"] = json!(read.reply.content);
        if let Some(thought) = read.reasoning {
            message["reasoning_content"] = json!(thought);
        }
        if !read.reply.calls.is_empty() {
            message["tool_calls"] = read.reply.calls.iter().map(|c| c.openai(None)).collect();
            finish = tool_finish(finish);
        }
    }
    Ok(Json(json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": name,
        "system_fingerprint": fingerprint(),
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": if want_logprobs { chat_logprobs(tok, &out.tokens) } else { Json_::Null },
            "finish_reason": finish,
        }],
        "usage": usage(&out.finished),
        "timings": timings(&out.finished),
    }))
    .into_response())
}

/// A reply with calls finishes with `tool_calls` unless it was cut short.
fn tool_finish(finish: &'static str) -> &'static str {
    if finish == "stop" {
        "tool_calls"
    } else {
        finish
    }
}

fn fingerprint() -> String {
    format!("llama-wgpu-{}", env!("CARGO_PKG_VERSION"))
}

#[allow(clippy::too_many_arguments)]
fn chat_stream(
    state: AppState,
    model: std::sync::Arc<Model>,
    mut handle: crate::engine::RequestHandle,
    id: String,
    created: u64,
    name: String,
    include_usage: bool,
    mut reader: Option<ReplyReader>,
) -> Response {
    let chunk = move |delta: Json_, logprobs: Json_, finish: Option<&str>| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": name,
            "system_fingerprint": fingerprint(),
            "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
        });
        if include_usage {
            c["usage"] = Json_::Null;
        }
        c
    };
    let s = async_stream::stream! {
        yield sse_data(&chunk(json!({"role": "assistant", "content": ""}), Json_::Null, None).to_string());
        // Reasoning and the answer go out apart; with tools only what is
        // surely text for the user, as it comes.
        loop {
            match handle.events.recv().await {
                Some(Event::Token(t)) => {
                    let lp = t.logprob.as_ref().map(|lp| json!({"content": [chat_logprob(model.tokenizer(), t.id, lp)]}));
                    let d = match reader.as_mut() {
                        Some(r) => r.push(&t.text),
                        None => Delta { reasoning: String::new(), content: t.text },
                    };
                    if !d.reasoning.is_empty() {
                        yield sse_data(&chunk(json!({"reasoning_content": d.reasoning}), Json_::Null, None).to_string());
                    }
                    if d.content.is_empty() && lp.is_none() {
                        continue;
                    }
                    yield sse_data(&chunk(json!({"content": d.content}), lp.unwrap_or(Json_::Null), None).to_string());
                }
                Some(Event::Done(f)) => {
                    state.metrics.finished(&f);
                    let mut finish = finish_reason(f.reason);
                    if let Some(r) = reader.as_mut() {
                        let (rest, read) = r.finish();
                        let reply = read.reply;
                        if !rest.reasoning.is_empty() {
                            yield sse_data(&chunk(json!({"reasoning_content": rest.reasoning}), Json_::Null, None).to_string());
                        }
                        if !rest.content.is_empty() {
                            yield sse_data(&chunk(json!({"content": rest.content}), Json_::Null, None).to_string());
                        }
                        if !reply.calls.is_empty() {
                            let calls: Vec<Json_> = reply.calls.iter().enumerate().map(|(i, c)| c.openai(Some(i))).collect();
                            yield sse_data(&chunk(json!({"tool_calls": calls}), Json_::Null, None).to_string());
                            finish = tool_finish(finish);
                        }
                    }
                    let mut last = chunk(json!({}), Json_::Null, Some(finish));
                    last["timings"] = timings(&f);
                    yield sse_data(&last.to_string());
                    if include_usage {
                        let mut u = chunk(json!({}), Json_::Null, None);
                        u["choices"] = json!([]);
                        u["usage"] = usage(&f);
                        yield sse_data(&u.to_string());
                    }
                    yield sse_done();
                    break;
                }
                Some(Event::Error(e)) => {
                    yield sse_data(&generation::generation_failed(&e).openai_body().to_string());
                    break;
                }
                None => {
                    yield sse_data(&generation::generation_failed("the engine stopped").openai_body().to_string());
                    break;
                }
            }
        }
    };
    stream_response(EVENT_STREAM, s)
}

impl Prompt {
    /// The one prompt of a completion request, as ids (text tokenized as
    /// llama.cpp does, ids checked against the vocabulary).
    pub fn ids(&self, model: &Model) -> std::result::Result<Vec<u32>, ApiError> {
        match self {
            Prompt::Text(s) => model.encode(s, true),
            Prompt::Texts(v) if v.len() == 1 => model.encode(&v[0], true),
            Prompt::Texts(v) => Err(ApiError::bad_request(format!(
                "prompt: one prompt per request is supported, got {}",
                v.len()
            ))),
            Prompt::Ids(ids) => {
                model.check_ids(ids, "prompt")?;
                Ok(ids.clone())
            }
        }
    }
}

/// The legacy completions `logprobs` object.
fn completion_logprobs(tok: &Tokenizer, tokens: &[TokenEvent]) -> Json_ {
    let mut toks = Vec::new();
    let mut lps = Vec::new();
    let mut tops = Vec::new();
    let mut offsets = Vec::new();
    let mut offset = 0usize;
    for t in tokens {
        let Some(lp) = &t.logprob else { continue };
        toks.push(json!(tok.token_piece(t.id)));
        lps.push(json!(lp.logprob));
        let top: serde_json::Map<String, Json_> = lp
            .top
            .iter()
            .map(|&(i, l)| (tok.token_piece(i), json!(l)))
            .collect();
        tops.push(Json_::Object(top));
        offsets.push(json!(offset));
        offset += t.text.len();
    }
    json!({"tokens": toks, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets})
}

pub async fn completions(State(state): State<AppState>, body: Body) -> Result<Response> {
    let model = state.model()?;
    let req: CompletionRequest = read_json(body).await?;
    only_one(req.n)?;
    if req.echo {
        return Err(ApiError::bad_request("echo is not supported").into());
    }
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::bad_request("suffix is not supported").into());
    }
    let prompt = req.prompt.ids(&model)?;
    let sampling = Sampling {
        temperature: req.temperature,
        top_k: req.top_k,
        top_p: req.top_p,
        min_p: req.min_p,
        repeat_penalty: req.repeat_penalty,
        repeat_last_n: None,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        seed: req.seed,
        // The legacy API's default is 16 tokens.
        max_tokens: Some(req.max_tokens.unwrap_or(16)),
        stop: Stop::into_vec(req.stop),
        logprobs: req.logprobs,
        ignore_eos: req.ignore_eos,
        keep: req.n_keep,
        cache_prompt: req.cache_prompt,
        format: super::generation::grammar(&req.grammar)?.unwrap_or(OutputFormat::Text),
    };
    let names = Names {
        logprobs: "logprobs",
        ..NAMES
    };
    let greq = sampling.into_request(SamplerParams::default(), prompt, model.limits(), &names)?;
    let handle = generation::submit(&model, greq)?;
    let id = new_id("cmpl");
    let created = unix_now();
    let name = state.alias.clone();
    let want_logprobs = req.logprobs.is_some();
    if req.stream {
        let include_usage = req.stream_options.unwrap_or_default().include_usage;
        let mut handle = handle;
        let chunk = move |text: &str, logprobs: Json_, finish: Option<&str>| {
            let mut c = json!({
                "id": id,
                "object": "text_completion",
                "created": created,
                "model": name,
                "system_fingerprint": fingerprint(),
                "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}],
            });
            if include_usage {
                c["usage"] = Json_::Null;
            }
            c
        };
        let s = async_stream::stream! {
            loop {
                match handle.events.recv().await {
                    Some(Event::Token(t)) => {
                        if t.text.is_empty() && t.logprob.is_none() {
                            continue;
                        }
                        let lp = if want_logprobs { completion_logprobs(model.tokenizer(), std::slice::from_ref(&t)) } else { Json_::Null };
                        yield sse_data(&chunk(&t.text, lp, None).to_string());
                    }
                    Some(Event::Done(f)) => {
                        state.metrics.finished(&f);
                        let mut last = chunk("", Json_::Null, Some(finish_reason(f.reason)));
                        last["timings"] = timings(&f);
                        yield sse_data(&last.to_string());
                        if include_usage {
                            let mut u = chunk("", Json_::Null, None);
                            u["choices"] = json!([]);
                            u["usage"] = usage(&f);
                            yield sse_data(&u.to_string());
                        }
                        yield sse_done();
                        break;
                    }
                    Some(Event::Error(e)) => {
                        yield sse_data(&generation::generation_failed(&e).openai_body().to_string());
                        break;
                    }
                    None => {
                        yield sse_data(&generation::generation_failed("the engine stopped").openai_body().to_string());
                        break;
                    }
                }
            }
        };
        return Ok(stream_response(EVENT_STREAM, s));
    }
    let out = collect(&state, handle).await?;
    Ok(Json(json!({
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": name,
        "system_fingerprint": fingerprint(),
        "choices": [{
            "index": 0,
            "text": out.text,
            "logprobs": if want_logprobs { completion_logprobs(model.tokenizer(), &out.tokens) } else { Json_::Null },
            "finish_reason": finish_reason(out.finished.reason),
        }],
        "usage": usage(&out.finished),
        "timings": timings(&out.finished),
    }))
    .into_response())
}

pub async fn models(State(state): State<AppState>) -> Result<Response> {
    let model = state.model()?;
    Ok(Json(json!({
        "object": "list",
        "data": [{
            "id": state.alias,
            "object": "model",
            "created": model.info.modified_unix,
            "owned_by": "llama-wgpu",
            "meta": {
                "n_ctx_per_slot": model.n_ctx(),
                "n_ctx_train": model.info.n_ctx_train,
                "n_params": model.info.parameters,
                "size": model.info.file_bytes,
            },
        }],
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> ChatRequest {
        super::super::body::parse_json(body.as_bytes()).unwrap()
    }

    #[test]
    fn conversation_checks_roles_and_content() {
        let r = chat(
            r#"{"messages": [{"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}"#,
        );
        let c = r.conversation().unwrap();
        assert_eq!(c[0], ChatMessage::new("system", "be brief"));
        assert_eq!(c[1], ChatMessage::new("user", "ab"));
        let e = chat(r#"{"messages": [{"role": "wizard", "content": "x"}]}"#)
            .conversation()
            .unwrap_err();
        assert!(e.message.contains("unknown role 'wizard'"), "{}", e.message);
        let e = chat(r#"{"messages": [{"role": "user"}]}"#)
            .conversation()
            .unwrap_err();
        assert!(e.message.contains("content"), "{}", e.message);
        let e = chat(r#"{"messages": []}"#).conversation().unwrap_err();
        assert!(e.message.contains("empty"), "{}", e.message);
        let e = chat(r#"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#)
            .conversation()
            .unwrap_err();
        assert!(e.message.contains("image_url"), "{}", e.message);
    }

    #[test]
    fn stop_and_token_limits() {
        let r =
            chat(r#"{"messages": [], "stop": "x", "max_tokens": 5, "max_completion_tokens": 7}"#);
        assert_eq!(r.sampling().max_tokens, Some(7));
        assert_eq!(Stop::into_vec(r.stop), vec!["x".to_string()]);
        let r =
            chat(r#"{"messages": [], "stop": ["a", "b"], "logprobs": true, "top_logprobs": 2}"#);
        assert_eq!(r.sampling().logprobs, Some(2));
        assert_eq!(Stop::into_vec(r.stop).len(), 2);
        assert!(chat(r#"{"messages": [], "n": 2}"#)
            .check_supported()
            .is_err());
        assert!(chat(r#"{"messages": [], "top_logprobs": 2}"#)
            .check_supported()
            .is_err());
    }

    #[test]
    fn response_format_text_json_object_schema_and_refusals() {
        let format =
            |f: &str| chat(&format!(r#"{{"messages": [], "response_format": {f}}}"#)).format();
        assert!(matches!(format("null").unwrap(), OutputFormat::Text));
        assert!(matches!(
            format(r#"{"type": "text"}"#).unwrap(),
            OutputFormat::Text
        ));
        assert!(matches!(
            format(r#"{"type": "json_object"}"#).unwrap(),
            OutputFormat::JsonObject
        ));
        let schema = r#"{"type": "object", "properties": {"a": {"type": "integer"}}}"#;
        let f = format!(
            r#"{{"type": "json_schema", "json_schema": {{"name": "x", "schema": {schema}}}}}"#
        );
        assert!(matches!(format(&f).unwrap(), OutputFormat::JsonSchema(_)));
        let f = format!(r#"{{"type": "json_object", "schema": {schema}}}"#);
        assert!(matches!(format(&f).unwrap(), OutputFormat::JsonSchema(_)));
        let e = format(r#"{"type": "json_schema", "json_schema": {}}"#).unwrap_err();
        assert!(
            e.message.contains("json_schema.schema: missing"),
            "{}",
            e.message
        );
        let bad = r#"{"type": "json_schema", "json_schema": {"schema": {"type": "object", "properties": {"a": {"type": "string", "format": "email"}}}}}"#;
        let e = format(bad).unwrap_err();
        assert!(
            e.message.contains("format: 'email' is not supported"),
            "{}",
            e.message
        );
        let e = format(r#""json""#).unwrap_err();
        assert!(e.message.contains("got \"json\""), "{}", e.message);
        assert!(matches!(
            chat(r#"{"messages": [], "response_format": {"type": "json_object"}}"#)
                .sampling()
                .format,
            OutputFormat::JsonObject
        ));
    }
}
