//! What every handler shares: the model once loaded (scheduler, chat
//! template, facts for `/api/show`), the API key and the counters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use serde_json::{json, Value as Json};

use super::errors::ApiError;
use super::reply::{ReasoningFormat, Thinking};
use super::tools::{Syntax, ToolUse};
use crate::engine::{Engine, Finished, RequestHandle, Scheduler, SubmitError};
use crate::gguf::{Gguf, Value};
use crate::tokenizer::{ChatMessage, ChatTemplate, Tokenizer};

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub api_key: Option<String>,
    /// The name clients see (`--alias`, default the file's stem).
    pub alias: String,
    model: OnceLock<Arc<Model>>,
    pub metrics: Metrics,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(alias: String, api_key: Option<String>) -> AppState {
        AppState(Arc::new(Shared {
            api_key,
            alias,
            model: OnceLock::new(),
            metrics: Metrics::default(),
        }))
    }

    /// The loaded model, or 503 while it loads.
    pub fn model(&self) -> Result<Arc<Model>, ApiError> {
        self.0.model.get().cloned().ok_or_else(ApiError::loading)
    }

    pub fn loaded(&self) -> Option<&Arc<Model>> {
        self.0.model.get()
    }

    pub fn set_model(&self, m: Model) {
        // Set once, by the loader: a second set cannot happen.
        let _ = self.0.model.set(Arc::new(m));
    }
}

/// Counters the scheduler does not keep, for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<MetricsInner>,
}

#[derive(Default, Clone)]
pub struct MetricsInner {
    /// HTTP responses by status code.
    pub responses: BTreeMap<u16, u64>,
    pub prompt_ms_total: f64,
    pub generation_ms_total: f64,
    /// Generated tokens of the requests whose `generation_ms` is summed above.
    pub timed_tokens: u64,
    pub timed_prompt_tokens: u64,
}

impl Metrics {
    pub fn response(&self, status: StatusCode) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *m.responses.entry(status.as_u16()).or_default() += 1;
    }

    pub fn finished(&self, f: &Finished) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.prompt_ms_total += f.prompt_ms;
        m.generation_ms_total += f.generation_ms;
        m.timed_tokens += f.completion_tokens as u64;
        m.timed_prompt_tokens += (f.prompt_tokens - f.cached_tokens) as u64;
    }

    pub fn snapshot(&self) -> MetricsInner {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

pub struct Model {
    pub scheduler: Scheduler,
    /// `None` when the file has none: chat endpoints then answer 400.
    pub template: Option<ChatTemplate>,
    pub info: ModelInfo,
    /// `serve --context-shift --keep K`: `Some(K)`.
    pub context_shift: Option<i64>,
    /// How the embedding endpoints pool a text's hidden states.
    pub pooling: crate::engine::Pooling,
    /// Whether chat replies' reasoning is returned apart.
    pub reasoning: ReasoningFormat,
}

/// A conversation rendered for the model.
pub struct ChatPrompt {
    pub ids: Vec<u32>,
    /// How its reply may hold reasoning (`None`: returned as written).
    pub thinking: Option<Thinking>,
}

/// Facts about the file, taken before the engine moves into the scheduler.
pub struct ModelInfo {
    pub path: std::path::PathBuf,
    pub file_bytes: u64,
    pub modified_unix: u64,
    pub architecture: String,
    pub parameters: u64,
    /// The most common type of the 2-D weights (`Q4_1`).
    pub quantization: String,
    pub n_ctx_train: Option<u64>,
    /// The hidden width: an embedding's dimensions.
    pub n_embd: usize,
    /// Scalar metadata (arrays such as the vocabulary left out), for `/api/show`.
    pub metadata: serde_json::Map<String, Json>,
    pub template_source: Option<String>,
    pub load_ms: f64,
    /// GPU memory the weights and the KV cache take.
    pub gpu_bytes: u64,
}

impl ModelInfo {
    pub fn from_engine(e: &Engine, template: Option<&ChatTemplate>) -> ModelInfo {
        let g = &e.gguf;
        let modified_unix = std::fs::metadata(&e.path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let architecture = g
            .opt_str("general.architecture")
            .ok()
            .flatten()
            .unwrap_or("llama")
            .to_string();
        ModelInfo {
            path: e.path.clone(),
            file_bytes: g.file_len(),
            modified_unix,
            n_ctx_train: g
                .opt_u64(&format!("{architecture}.context_length"))
                .ok()
                .flatten(),
            architecture,
            n_embd: e.model.cfg.n_embd,
            parameters: g
                .tensors
                .iter()
                .fold(0u64, |n, t| n.saturating_add(t.n_elements())),
            quantization: quantization(g),
            metadata: scalar_metadata(g),
            template_source: template.map(|t| t.source().to_string()),
            load_ms: e.load_seconds * 1e3,
            gpu_bytes: e.model.weight_bytes + e.model.kv_bytes,
        }
    }

    /// `135M`, `7B`: Ollama's `parameter_size`.
    pub fn parameter_size(&self) -> String {
        let n = self.parameters as f64;
        match self.parameters {
            0..1_000_000 => format!("{:.0}K", n / 1e3),
            1_000_000..1_000_000_000 => format!("{:.0}M", n / 1e6),
            _ => format!("{:.1}B", n / 1e9),
        }
    }

    /// Ollama's `details` object.
    pub fn details(&self) -> Json {
        json!({
            "parent_model": "",
            "format": "gguf",
            "family": self.architecture,
            "families": [self.architecture],
            "parameter_size": self.parameter_size(),
            "quantization_level": self.quantization,
        })
    }
}

fn quantization(g: &Gguf) -> String {
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    for t in g.tensors.iter().filter(|t| t.dims.len() >= 2) {
        *by_type.entry(t.type_name()).or_default() += t.n_elements();
    }
    by_type
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(t, _)| t)
        .unwrap_or_default()
}

fn scalar_metadata(g: &Gguf) -> serde_json::Map<String, Json> {
    let mut m = serde_json::Map::new();
    for (k, v) in &g.metadata {
        let j = match v {
            Value::U8(x) => json!(x),
            Value::I8(x) => json!(x),
            Value::U16(x) => json!(x),
            Value::I16(x) => json!(x),
            Value::U32(x) => json!(x),
            Value::I32(x) => json!(x),
            Value::U64(x) => json!(x),
            Value::I64(x) => json!(x),
            Value::F32(x) => json!(x.to_string().parse::<f64>().ok()),
            Value::F64(x) => json!(x),
            Value::Bool(x) => json!(x),
            // The template is reported on its own; long strings are not metadata one browses.
            Value::String(s) if k == "tokenizer.chat_template" || s.len() > 4096 => continue,
            Value::String(s) => json!(s),
            // Ollama shows arrays (the vocabulary) as null too.
            Value::Array(..) => Json::Null,
        };
        m.insert(k.clone(), j);
    }
    m
}

impl Model {
    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        self.scheduler.tokenizer()
    }

    pub fn n_ctx(&self) -> usize {
        self.scheduler.n_ctx()
    }

    /// What a request may use of its slot.
    pub fn limits(&self) -> super::generation::Limits {
        super::generation::Limits {
            n_ctx: self.n_ctx(),
            shift_keep: self.context_shift,
            bos: self.tokenizer().bos_id(),
        }
    }

    /// The conversation through the chat template, as ids.
    pub fn chat_prompt(&self, messages: Vec<ChatMessage>) -> Result<Vec<u32>, ApiError> {
        Ok(self
            .chat_prompt_with_tools(messages, &ToolUse::default())?
            .ids)
    }

    /// As [`Model::chat_prompt`], with the request's tools offered in the
    /// syntax of [`Model::tool_syntax`].
    pub fn chat_prompt_with_tools(
        &self,
        messages: Vec<ChatMessage>,
        tools: &ToolUse,
    ) -> Result<ChatPrompt, ApiError> {
        let template = self.template.as_ref().ok_or_else(|| {
            ApiError::bad_request(
                "the model has no chat template: use /v1/completions, or restart with --chat-template FILE",
            )
        })?;
        let messages = tools.messages(template.source(), messages);
        let mut text = template
            .render_with_tools(&messages, tools.template_tools().as_ref(), true)
            .map_err(|e| ApiError::bad_request(format!("chat template: {e}")))?;
        text.push_str(tools.prompt_suffix());
        Ok(ChatPrompt {
            ids: self.encode(&text, self.tokenizer().adds_bos_to_rendered(&text))?,
            thinking: Thinking::for_prompt(self.reasoning, &text),
        })
    }

    /// How this model's template asks for tool calls.
    pub fn tool_syntax(&self) -> Syntax {
        self.template
            .as_ref()
            .map_or(Syntax::Generic, |t| Syntax::of_template(t.source()))
    }

    /// Plain text as llama.cpp tokenizes a prompt (BOS if the vocabulary
    /// asks, special tokens parsed).
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>, ApiError> {
        self.tokenizer()
            .encode(text, add_bos, true)
            .map_err(|e| ApiError::bad_request(format!("tokenizer: {e}")))
    }

    /// Ids a client sent must exist in the vocabulary.
    pub fn check_ids(&self, ids: &[u32], what: &str) -> Result<(), ApiError> {
        let n = self.tokenizer().vocab_size();
        match ids.iter().find(|&&id| id as usize >= n) {
            Some(id) => Err(ApiError::bad_request(format!(
                "{what}: token id {id} is outside the vocabulary of {n}"
            ))),
            None => Ok(()),
        }
    }

    pub fn submit(&self, req: crate::engine::Request) -> Result<RequestHandle, SubmitError> {
        self.scheduler.submit(req)
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// RFC 3339 in UTC with nanoseconds, as Ollama's `created_at`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        // 2024-02-29T12:34:56.5Z (a leap day) = 1709210096.5
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_500);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.500000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000000000Z");
    }
}
