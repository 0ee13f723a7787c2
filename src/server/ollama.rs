//! Ollama's API: `/api/chat`, `/api/generate` (NDJSON streams unless
//! `"stream": false`), `/api/tags`, `/api/ps`, `/api/show`, `/api/version`. One model
//! is served: any model name is accepted and the answer carries the alias.

use std::time::{Instant, SystemTime};

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value as Json_};

use super::body::read_json;
use super::errors::{ApiError, OllamaError};
use super::generation::{self, collect, finish_reason, timings, Names, Sampling};
use super::reply::{self, Delta, ReplyReader};
use super::sse::{ndjson_line, stream_response, NDJSON};
use super::state::{rfc3339, AppState, Model};
use super::tools::{self, ToolCall, ToolUse};
use crate::engine::json_output::Schema;
use crate::engine::{Event, Finished, OutputFormat, RequestHandle, SamplerParams};
use crate::tokenizer::ChatMessage;

type Result<T> = std::result::Result<T, OllamaError>;

/// `options` Ollama's runner understands; others are ignored, as Ollama does.
#[derive(Deserialize, Debug, Default)]
pub struct Options {
    pub temperature: Option<f32>,
    pub top_k: Option<i64>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub num_predict: Option<i64>,
    pub seed: Option<i64>,
    pub stop: Option<Vec<String>>,
    pub repeat_penalty: Option<f32>,
    pub repeat_last_n: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    /// Prompt tokens a context shift keeps (with `serve --context-shift`).
    pub num_keep: Option<i64>,
}

#[derive(Deserialize, Debug)]
pub struct Message {
    pub role: String,
    pub content: Option<String>,
    pub images: Option<Vec<String>>,
    /// An assistant turn's calls (arguments as objects).
    pub tool_calls: Option<Json_>,
    /// A tool result's tool.
    pub tool_name: Option<String>,
}

const ROLES: &[&str] = &["system", "user", "assistant", "tool"];

#[derive(Deserialize, Debug)]
pub struct ChatRequest {
    #[allow(dead_code)]
    pub model: Option<String>,
    pub messages: Vec<Message>,
    pub stream: Option<bool>,
    pub options: Option<Options>,
    pub format: Option<Json_>,
    pub tools: Option<Json_>,
}

#[derive(Deserialize, Debug)]
pub struct GenerateRequest {
    #[allow(dead_code)]
    pub model: Option<String>,
    #[serde(default)]
    pub prompt: String,
    pub system: Option<String>,
    pub template: Option<String>,
    #[serde(default)]
    pub raw: bool,
    pub stream: Option<bool>,
    pub options: Option<Options>,
    pub format: Option<Json_>,
    pub suffix: Option<String>,
    pub images: Option<Vec<String>>,
    pub context: Option<Vec<u32>>,
}

/// Ollama's defaults (its `api.DefaultOptions`), which differ from llama.cpp's.
fn ollama_defaults() -> SamplerParams {
    SamplerParams {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.9,
        min_p: 0.0,
        repeat_penalty: 1.1,
        repeat_last_n: 64,
        ..SamplerParams::default()
    }
}

const NAMES: Names = Names {
    max_tokens: "num_predict",
    unlimited: &[-1, -2],
    logprobs: "logprobs",
};

impl Options {
    fn sampling(self) -> Sampling {
        Sampling {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed: self.seed,
            max_tokens: self.num_predict,
            stop: self.stop.unwrap_or_default(),
            logprobs: None,
            ignore_eos: false,
            keep: self.num_keep,
            // Ollama always reuses a loaded model's cache.
            cache_prompt: None,
            format: OutputFormat::Text,
        }
    }
}

/// `format`: none, JSON mode for `"json"`, or a JSON schema.
fn output_format(f: &Option<Json_>) -> std::result::Result<OutputFormat, ApiError> {
    match f {
        None | Some(Json_::Null) => Ok(OutputFormat::Text),
        Some(Json_::String(s)) if s.is_empty() => Ok(OutputFormat::Text),
        Some(Json_::String(s)) if s == "json" => Ok(OutputFormat::JsonObject),
        Some(schema @ Json_::Object(_)) => Schema::compile(schema)
            .map(|s| OutputFormat::JsonSchema(std::sync::Arc::new(s)))
            .map_err(|e| ApiError::bad_request(format!("format: {e}"))),
        Some(other) => Err(ApiError::bad_request(format!(
            "format: expected \"json\" or a JSON schema, got {other}"
        ))),
    }
}

fn conversation(messages: &[Message]) -> std::result::Result<Vec<ChatMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::bad_request("messages must not be empty"));
    }
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if !ROLES.contains(&m.role.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "messages[{i}].role: unknown role '{}' (expected one of {})",
                    m.role,
                    ROLES.join(", ")
                )));
            }
            if m.images.as_ref().is_some_and(|v| !v.is_empty()) {
                return Err(ApiError::bad_request(format!(
                    "messages[{i}].images: the model takes text only"
                )));
            }
            let calls = tools::turn_calls(&m.role, m.tool_calls.as_ref(), i)?;
            let content = match (&m.content, &calls) {
                (Some(c), _) => c.clone(),
                (None, Some(_)) => String::new(),
                (None, None) => {
                    return Err(ApiError::bad_request(format!(
                        "messages[{i}]: a message needs a content"
                    )))
                }
            };
            let mut msg = ChatMessage::new(m.role.clone(), content);
            msg.tool_calls = calls;
            msg.name = m.tool_name.clone();
            Ok(msg)
        })
        .collect()
}

/// The final object's counts and durations (nanoseconds).
fn done_fields(o: &mut Json_, f: &Finished, started: Instant) {
    let ns = |ms: f64| (ms * 1e6).round() as u64;
    o["done_reason"] = json!(finish_reason(f.reason));
    o["total_duration"] = json!(started.elapsed().as_nanos() as u64);
    // The model stays loaded: this request waited for no load.
    o["load_duration"] = json!(0);
    o["prompt_eval_count"] = json!(f.prompt_tokens);
    o["prompt_eval_duration"] = json!(ns(f.prompt_ms));
    o["eval_count"] = json!(f.completion_tokens);
    o["eval_duration"] = json!(ns(f.generation_ms));
    o["timings"] = timings(f);
}

/// Chat objects carry `message`, generate objects `response`.
#[derive(Clone, Copy)]
enum Shape {
    Chat,
    Generate,
}

fn object(shape: Shape, name: &str, text: &str, done: bool) -> Json_ {
    let mut o = json!({"model": name, "created_at": rfc3339(SystemTime::now())});
    match shape {
        Shape::Chat => o["message"] = json!({"role": "assistant", "content": text}),
        Shape::Generate => o["response"] = json!(text),
    }
    o["done"] = json!(done);
    o
}

/// A chat object's message: its answer, reasoning (`thinking`) and calls.
fn fill(o: &mut Json_, content: &str, thinking: &str, calls: &[ToolCall]) {
    o["message"]["content"] = json!(content);
    if !thinking.is_empty() {
        o["message"]["thinking"] = json!(thinking);
    }
    if !calls.is_empty() {
        o["message"]["tool_calls"] = calls.iter().enumerate().map(|(i, c)| c.ollama(i)).collect();
    }
}

async fn respond(
    state: AppState,
    handle: RequestHandle,
    shape: Shape,
    stream: bool,
    started: Instant,
    prompt: Vec<u32>,
    mut reader: Option<ReplyReader>,
) -> Result<Response> {
    let name = state.alias.clone();
    if !stream {
        let out = collect(&state, handle).await?;
        let mut o = object(shape, &name, &out.text, true);
        if let Some(r) = &reader {
            let read = r.read(&out.text);
            let content = read.reply.content.unwrap_or_default();
            fill(
                &mut o,
                &content,
                read.reasoning.as_deref().unwrap_or_default(),
                &read.reply.calls,
            );
        }
        done_fields(&mut o, &out.finished, started);
        if let Shape::Generate = shape {
            let mut context = prompt;
            context.extend(out.tokens.iter().map(|t| t.id));
            o["context"] = json!(context);
        }
        return Ok(Json(o).into_response());
    }
    let mut handle = handle;
    let s = async_stream::stream! {
        let mut generated = Vec::new();
        // Reasoning and the answer go out apart; with tools only what is
        // surely text for the user, as it comes.
        loop {
            match handle.events.recv().await {
                Some(Event::Token(t)) => {
                    generated.push(t.id);
                    let d = match reader.as_mut() {
                        Some(r) => r.push(&t.text),
                        None => Delta { reasoning: String::new(), content: t.text },
                    };
                    if !d.content.is_empty() || !d.reasoning.is_empty() {
                        let mut o = object(shape, &name, &d.content, false);
                        if reader.is_some() {
                            fill(&mut o, &d.content, &d.reasoning, &[]);
                        }
                        yield ndjson_line(&o);
                    }
                }
                Some(Event::Done(f)) => {
                    state.metrics.finished(&f);
                    if let Some(r) = reader.as_mut() {
                        let (rest, read) = r.finish();
                        let calls = read.reply.calls;
                        if !rest.content.is_empty() || !rest.reasoning.is_empty() || !calls.is_empty() {
                            let mut o = object(shape, &name, &rest.content, false);
                            fill(&mut o, &rest.content, &rest.reasoning, &calls);
                            yield ndjson_line(&o);
                        }
                    }
                    let mut o = object(shape, &name, "", true);
                    done_fields(&mut o, &f, started);
                    if let Shape::Generate = shape {
                        let mut context = prompt.clone();
                        context.extend(&generated);
                        o["context"] = json!(context);
                    }
                    yield ndjson_line(&o);
                    break;
                }
                Some(Event::Error(e)) => {
                    yield ndjson_line(&generation::generation_failed(&e).ollama_body());
                    break;
                }
                None => {
                    yield ndjson_line(&generation::generation_failed("the engine stopped").ollama_body());
                    break;
                }
            }
        }
    };
    Ok(stream_response(NDJSON, s))
}

pub async fn chat(State(state): State<AppState>, body: Body) -> Result<Response> {
    let started = Instant::now();
    let model = state.model()?;
    let req: ChatRequest = read_json(body).await?;
    let mut format = output_format(&req.format)?;
    // Ollama has no tool_choice or parallel_tool_calls: the model may call
    // or answer; one call at a time in the generic syntax (small models
    // asked for a list of calls tend to repeat the first), any number of
    // `<tool_call>` blocks in Hermes'.
    let tools = ToolUse::parse(req.tools.as_ref(), None, None, model.tool_syntax())?;
    if tools.active() && !format.is_text() {
        return Err(ApiError::bad_request("tools cannot be combined with format").into());
    }
    let messages = conversation(&req.messages)?;
    let prompt = model.chat_prompt_with_tools(messages, &tools)?;
    if let Some(f) = tools.format() {
        format = f;
    }
    let mut sampling = req.options.unwrap_or_default().sampling();
    sampling.format = reply::after_thinking(format, prompt.thinking);
    let mut greq = sampling.into_request(ollama_defaults(), prompt.ids, model.limits(), &NAMES)?;
    greq.shown_tokens = tools.shown_tokens(model.tokenizer());
    let handle = generation::submit(&model, greq)?;
    respond(
        state,
        handle,
        Shape::Chat,
        req.stream.unwrap_or(true),
        started,
        Vec::new(),
        ReplyReader::new(prompt.thinking, tools.active().then_some(tools)),
    )
    .await
}

fn generate_prompt(
    model: &Model,
    req: &GenerateRequest,
) -> std::result::Result<Vec<u32>, ApiError> {
    if req.template.as_deref().is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::bad_request(
            "template: Ollama (Go) templates are not supported; the model's chat template is used, or raw",
        ));
    }
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::bad_request("suffix is not supported"));
    }
    if req.images.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(ApiError::bad_request("images: the model takes text only"));
    }
    if req.context.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(ApiError::bad_request(
            "context is not supported: send the conversation to /api/chat",
        ));
    }
    if req.raw {
        return model.encode(&req.prompt, true);
    }
    let mut messages = Vec::new();
    if let Some(s) = &req.system {
        messages.push(ChatMessage::new("system", s.clone()));
    }
    messages.push(ChatMessage::new("user", req.prompt.clone()));
    model.chat_prompt(messages)
}

pub async fn generate(State(state): State<AppState>, body: Body) -> Result<Response> {
    let started = Instant::now();
    let model = state.model()?;
    let req: GenerateRequest = read_json(body).await?;
    let format = output_format(&req.format)?;
    // Ollama answers an empty prompt by loading the model, which is loaded.
    if req.prompt.is_empty() && req.system.is_none() {
        let mut o = object(Shape::Generate, &state.alias, "", true);
        o["done_reason"] = json!("load");
        return Ok(Json(o).into_response());
    }
    let prompt = generate_prompt(&model, &req)?;
    let mut sampling = req.options.unwrap_or_default().sampling();
    sampling.format = format;
    let greq = sampling.into_request(ollama_defaults(), prompt.clone(), model.limits(), &NAMES)?;
    let handle = generation::submit(&model, greq)?;
    respond(
        state,
        handle,
        Shape::Generate,
        req.stream.unwrap_or(true),
        started,
        prompt,
        None,
    )
    .await
}

pub async fn tags(State(state): State<AppState>) -> Result<Response> {
    let models = match state.loaded() {
        // A load balancer may ask before the model is ready: nothing to list yet.
        None => vec![],
        Some(m) => vec![json!({
            "name": state.alias,
            "model": state.alias,
            "modified_at": modified(m),
            "size": m.info.file_bytes,
            "details": m.info.details(),
        })],
    };
    Ok(Json(json!({ "models": models })).into_response())
}

/// The loaded model, as `ollama ps` lists it: in GPU memory (weights and
/// KV cache) until the server stops, so its expiry is far off (Ollama
/// reports `keep_alive: -1` the same way).
pub async fn ps(State(state): State<AppState>) -> Result<Response> {
    let models = match state.loaded() {
        None => vec![],
        Some(m) => {
            let forever = SystemTime::now() + std::time::Duration::from_secs(100 * 365 * 86_400);
            vec![json!({
                "name": state.alias,
                "model": state.alias,
                "size": m.info.gpu_bytes,
                "details": m.info.details(),
                "expires_at": rfc3339(forever),
                "size_vram": m.info.gpu_bytes,
                "context_length": m.n_ctx(),
            })]
        }
    };
    Ok(Json(json!({ "models": models })).into_response())
}

fn modified(m: &Model) -> String {
    rfc3339(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(m.info.modified_unix))
}

#[derive(Deserialize)]
pub struct ShowRequest {
    pub model: Option<String>,
    /// The older spelling of `model`.
    pub name: Option<String>,
}

pub async fn show(State(state): State<AppState>, body: Body) -> Result<Response> {
    let model = state.model()?;
    let req: ShowRequest = read_json(body).await?;
    if req.model.is_none() && req.name.is_none() {
        return Err(ApiError::bad_request("model is required").into());
    }
    let info = &model.info;
    let mut model_info = info.metadata.clone();
    model_info.insert("general.parameter_count".into(), json!(info.parameters));
    Ok(Json(json!({
        "license": info.metadata.get("general.license").cloned().unwrap_or(json!("")),
        "modelfile": format!("# served by llama-wgpu\nFROM {}\n", info.path.display()),
        "parameters": "",
        "template": info.template_source.clone().unwrap_or_default(),
        "details": info.details(),
        "model_info": model_info,
        // Any template can be asked for calls (the generic syntax).
        "capabilities": ["completion", "tools"],
        "modified_at": modified(&model),
    }))
    .into_response())
}

pub async fn version() -> Json<Json_> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::generation::Limits;

    #[test]
    fn conversation_rules() {
        let m = |role: &str, content: Option<&str>| Message {
            role: role.into(),
            content: content.map(str::to_string),
            images: None,
            tool_calls: None,
            tool_name: None,
        };
        assert!(conversation(&[m("user", Some("hi"))]).is_ok());
        assert!(conversation(&[]).is_err());
        assert!(conversation(&[m("robot", Some("x"))]).is_err());
        assert!(conversation(&[m("user", None)]).is_err());
    }

    #[test]
    fn options_use_ollamas_names_and_defaults() {
        let o: Options =
            serde_json::from_str(r#"{"num_predict": -1, "stop": ["a"], "num_ctx": 8}"#).unwrap();
        let r = o
            .sampling()
            .into_request(ollama_defaults(), vec![1], Limits::fixed(16), &NAMES)
            .unwrap();
        assert_eq!(r.n_predict, None);
        assert_eq!(r.stop, vec!["a".to_string()]);
        assert_eq!(r.sampler.repeat_penalty, 1.1);
        assert_eq!(r.sampler.top_p, 0.9);
        let e = Options {
            num_predict: Some(-5),
            ..Default::default()
        }
        .sampling()
        .into_request(ollama_defaults(), vec![1], Limits::fixed(16), &NAMES)
        .expect_err("refused");
        assert!(e.message.contains("num_predict"));
    }
}
