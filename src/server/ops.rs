//! Operations endpoints: `/health`, `/metrics` (Prometheus text),
//! `/tokenize` and `/detokenize` (llama-server's shapes).

use std::fmt::Write as _;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::body::read_json;
use super::errors::{ApiError, OpenAiError};
use super::state::AppState;

type Result<T> = std::result::Result<T, OpenAiError>;

/// 503 while the model loads (a load balancer keeps traffic away), then 200.
pub async fn health(State(state): State<AppState>) -> Response {
    match state.loaded() {
        Some(_) => Json(json!({"status": "ok"})).into_response(),
        None => OpenAiError(ApiError::loading()).into_response(),
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let text = render_metrics(&state);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn render_metrics(state: &AppState) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP llama_wgpu_{name} {help}");
        let _ = writeln!(out, "# TYPE llama_wgpu_{name} {kind}");
        let _ = writeln!(out, "llama_wgpu_{name} {value}");
    };
    metric(
        "model_loaded",
        "gauge",
        "1 once the model is loaded.",
        u8::from(state.loaded().is_some()).to_string(),
    );
    let m = state.metrics.snapshot();
    if let Some(model) = state.loaded() {
        let s = model.scheduler.stats();
        metric(
            "slots",
            "gauge",
            "Sequence slots (--parallel).",
            s.n_parallel.to_string(),
        );
        metric(
            "requests_processing",
            "gauge",
            "Slots generating or prefilling.",
            s.active.to_string(),
        );
        metric(
            "requests_deferred",
            "gauge",
            "Requests waiting for a slot.",
            s.queued.to_string(),
        );
        metric(
            "requests_total",
            "counter",
            "Generation requests finished, any reason.",
            s.requests_total.to_string(),
        );
        metric(
            "prompt_tokens_total",
            "counter",
            "Prompt tokens processed (cached ones not counted).",
            s.prompt_tokens_total.to_string(),
        );
        metric(
            "prompt_tokens_cached_total",
            "counter",
            "Prompt tokens a slot already held from an earlier request (not processed).",
            s.prompt_tokens_cached_total.to_string(),
        );
        metric(
            "tokens_predicted_total",
            "counter",
            "Tokens generated.",
            s.generated_tokens_total.to_string(),
        );
        metric(
            "steps_total",
            "counter",
            "Engine steps run.",
            s.steps_total.to_string(),
        );
    }
    let rate = |n: u64, ms: f64| if ms > 0.0 { n as f64 * 1e3 / ms } else { 0.0 };
    metric(
        "prompt_seconds_total",
        "counter",
        "Seconds requests spent on their prompts (overlapping requests add up).",
        format!("{}", m.prompt_ms_total / 1e3),
    );
    metric(
        "generation_seconds_total",
        "counter",
        "Seconds requests spent generating (overlapping requests add up).",
        format!("{}", m.generation_ms_total / 1e3),
    );
    metric(
        "prompt_tokens_seconds",
        "gauge",
        "Average prompt throughput of one request, tokens/s.",
        format!("{}", rate(m.timed_prompt_tokens, m.prompt_ms_total)),
    );
    metric(
        "predicted_tokens_seconds",
        "gauge",
        "Average generation throughput of one request, tokens/s.",
        format!("{}", rate(m.timed_tokens, m.generation_ms_total)),
    );
    let _ = writeln!(
        out,
        "# HELP llama_wgpu_http_responses_total HTTP responses by status code."
    );
    let _ = writeln!(out, "# TYPE llama_wgpu_http_responses_total counter");
    for (code, n) in &m.responses {
        let _ = writeln!(
            out,
            "llama_wgpu_http_responses_total{{code=\"{code}\"}} {n}"
        );
    }
    out
}

#[derive(Deserialize)]
pub struct TokenizeRequest {
    pub content: String,
    /// Add BOS as a prompt gets it (llama-server's default: false).
    #[serde(default)]
    pub add_special: bool,
    #[serde(default)]
    pub with_pieces: bool,
}

pub async fn tokenize(State(state): State<AppState>, body: Body) -> Result<Response> {
    let model = state.model()?;
    let req: TokenizeRequest = read_json(body).await?;
    let ids = model.encode(&req.content, req.add_special)?;
    let tokens: Vec<serde_json::Value> = if req.with_pieces {
        let tok = model.tokenizer();
        ids.iter()
            .map(|&id| json!({"id": id, "piece": tok.token_piece(id)}))
            .collect()
    } else {
        ids.iter().map(|&id| json!(id)).collect()
    };
    Ok(Json(json!({ "tokens": tokens })).into_response())
}

#[derive(Deserialize)]
pub struct DetokenizeRequest {
    pub tokens: Vec<u32>,
}

pub async fn detokenize(State(state): State<AppState>, body: Body) -> Result<Response> {
    let model = state.model()?;
    let req: DetokenizeRequest = read_json(body).await?;
    model.check_ids(&req.tokens, "tokens")?;
    let content = model.tokenizer().decode(&req.tokens);
    Ok(Json(json!({ "content": content })).into_response())
}

pub async fn not_found() -> OpenAiError {
    OpenAiError(ApiError::new(StatusCode::NOT_FOUND, "no such endpoint"))
}

pub async fn method_not_allowed() -> OpenAiError {
    OpenAiError(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
    ))
}
