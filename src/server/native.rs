//! llama-server's own endpoints, for the tools and scripts written against
//! it: `/completion` (also `/completions`), `/props` and `/embedding` (also
//! `/embeddings`), in its field names and shapes.

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json_};

use super::body::read_json;
use super::embeddings::{embed_all, Input};
use super::errors::{ApiError, OpenAiError};
use super::generation::{self, collect, timings, Names, Sampling};
use super::openai::Prompt;
use super::sse::{sse_data, stream_response, EVENT_STREAM};
use super::state::AppState;
use crate::engine::json_output::Schema;
use crate::engine::{
    normalize, Event, Finished, OutputFormat, Request, SamplerParams, StopReason, TokenEvent,
};
use crate::tokenizer::Tokenizer;

type Result<T> = std::result::Result<T, OpenAiError>;

#[derive(Deserialize, Debug)]
pub struct CompletionRequest {
    pub prompt: Prompt,
    /// Tokens to generate; -1 (the default): until end of generation or a full slot.
    pub n_predict: Option<i64>,
    /// The OpenAI spelling, taken when `n_predict` is absent.
    pub max_tokens: Option<i64>,
    pub temperature: Option<f32>,
    pub top_k: Option<i64>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub repeat_last_n: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<Vec<String>>,
    #[serde(default)]
    pub stream: bool,
    pub cache_prompt: Option<bool>,
    pub n_keep: Option<i64>,
    #[serde(default)]
    pub ignore_eos: bool,
    /// Alternatives per token in `completion_probabilities` (0: none).
    pub n_probs: Option<usize>,
    pub json_schema: Option<Json_>,
    /// Each result also lists the generated ids.
    #[serde(default)]
    pub return_tokens: bool,
    /// GBNF; `json_schema` takes precedence, as in llama-server.
    pub grammar: Option<String>,
    // Options llama-server has and this engine does not: refused when they
    // would change the output, never silently ignored.
    pub mirostat: Option<i64>,
    pub typical_p: Option<f32>,
    pub dry_multiplier: Option<f32>,
    pub xtc_probability: Option<f32>,
    pub dynatemp_range: Option<f32>,
    pub top_n_sigma: Option<f32>,
    pub logit_bias: Option<Json_>,
    pub n_cmpl: Option<u32>,
    pub n: Option<u32>,
    pub lora: Option<Json_>,
}

const NAMES: Names = Names {
    max_tokens: "n_predict",
    unlimited: &[-1],
    logprobs: "n_probs",
};

impl CompletionRequest {
    fn check_supported(&self) -> std::result::Result<(), ApiError> {
        let refuse = |what: &str| Err(ApiError::bad_request(what.to_string()));
        if self.mirostat.is_some_and(|m| m != 0) {
            return refuse("mirostat is not supported");
        }
        let off = |v: Option<f32>, default: f32| v.is_none_or(|x| x == default);
        for (name, v, default) in [
            ("typical_p", self.typical_p, 1.0),
            ("dry_multiplier", self.dry_multiplier, 0.0),
            ("xtc_probability", self.xtc_probability, 0.0),
            ("dynatemp_range", self.dynatemp_range, 0.0),
            ("top_n_sigma", self.top_n_sigma, -1.0),
        ] {
            if !off(v, default) {
                return Err(ApiError::bad_request(format!(
                    "{name} is not supported (only its default, {default})"
                )));
            }
        }
        let empty = |v: &Option<Json_>| match v {
            None | Some(Json_::Null) => true,
            Some(Json_::Array(a)) => a.is_empty(),
            Some(Json_::Object(o)) => o.is_empty(),
            Some(_) => false,
        };
        if !empty(&self.logit_bias) {
            return refuse("logit_bias is not supported");
        }
        if !empty(&self.lora) {
            return refuse("lora per request is not supported; load adapters with serve --lora");
        }
        match self.n_cmpl.or(self.n) {
            None | Some(1) => Ok(()),
            Some(n) => Err(ApiError::bad_request(format!(
                "n_cmpl = {n}: only one completion per request is supported"
            ))),
        }
    }

    /// `json_schema`, else `grammar` (llama-server's precedence).
    fn format(&self) -> std::result::Result<OutputFormat, ApiError> {
        match &self.json_schema {
            None | Some(Json_::Null) => {
                Ok(generation::grammar(&self.grammar)?.unwrap_or(OutputFormat::Text))
            }
            Some(s) => Schema::compile(s)
                .map(|s| OutputFormat::JsonSchema(std::sync::Arc::new(s)))
                .map_err(|e| ApiError::bad_request(format!("json_schema: {e}"))),
        }
    }
}

/// llama-server's `stop_type`.
fn stop_type(r: StopReason) -> &'static str {
    match r {
        StopReason::EndOfGeneration => "eos",
        StopReason::StopString => "word",
        StopReason::Length | StopReason::ContextFull => "limit",
        StopReason::Interrupted => "none",
    }
}

/// One entry of `completion_probabilities`.
fn probability(tok: &Tokenizer, t: &TokenEvent) -> Option<Json_> {
    let lp = t.logprob.as_ref()?;
    let entry = |id: u32, logprob: f32| json!({"id": id, "token": tok.token_piece(id), "bytes": tok.token_bytes(id), "logprob": logprob});
    let mut e = entry(t.id, lp.logprob);
    e["top_logprobs"] = lp.top.iter().map(|&(i, l)| entry(i, l)).collect();
    Some(e)
}

/// What the request ran with (llama-server's `generation_settings`).
fn settings(req: &Request, stream: bool) -> Json_ {
    let s = &req.sampler;
    json!({
        "n_predict": req.n_predict.map_or(-1, |n| n as i64),
        "seed": s.seed,
        "temperature": s.temperature,
        "top_k": s.top_k,
        "top_p": s.top_p,
        "min_p": s.min_p,
        "repeat_last_n": s.repeat_last_n,
        "repeat_penalty": s.repeat_penalty,
        "presence_penalty": s.presence_penalty,
        "frequency_penalty": s.frequency_penalty,
        "stop": req.stop,
        "ignore_eos": req.ignore_eos,
        "stream": stream,
        "n_probs": req.logprobs.unwrap_or(0),
        "cache_prompt": req.cache_prompt,
    })
}

/// The final result object; `content` and `tokens` are empty at the end of a stream.
fn final_result(
    state: &AppState,
    f: &Finished,
    content: &str,
    tokens: &[u32],
    prompt: &str,
    settings: &Json_,
) -> Json_ {
    json!({
        "index": 0,
        "content": content,
        "tokens": tokens,
        "stop": true,
        "model": state.alias,
        "tokens_predicted": f.completion_tokens,
        "tokens_evaluated": f.prompt_tokens,
        "generation_settings": settings,
        "prompt": prompt,
        "has_new_line": content.contains('\n'),
        "truncated": false,
        "stop_type": stop_type(f.reason),
        "stopping_word": f.stop_word.clone().unwrap_or_default(),
        "tokens_cached": f.cached_tokens,
        "timings": timings(f),
    })
}

pub async fn completion(State(state): State<AppState>, body: Body) -> Result<Response> {
    let model = state.model()?;
    let req: CompletionRequest = read_json(body).await?;
    req.check_supported()?;
    let format = req.format()?;
    let prompt = req.prompt.ids(&model)?;
    let prompt_text = model.tokenizer().decode(&prompt);
    let n_prompt = prompt.len();
    let sampling = Sampling {
        temperature: req.temperature,
        top_k: req.top_k,
        top_p: req.top_p,
        min_p: req.min_p,
        repeat_penalty: req.repeat_penalty,
        repeat_last_n: req.repeat_last_n,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        seed: req.seed,
        max_tokens: Some(req.n_predict.or(req.max_tokens).unwrap_or(-1)),
        stop: req.stop.clone().unwrap_or_default(),
        logprobs: req.n_probs.filter(|&n| n > 0),
        ignore_eos: req.ignore_eos,
        keep: req.n_keep,
        cache_prompt: req.cache_prompt,
        format,
    };
    let greq = sampling.into_request(SamplerParams::default(), prompt, model.limits(), &NAMES)?;
    let settings = settings(&greq, req.stream);
    let handle = generation::submit(&model, greq)?;
    let return_tokens = req.return_tokens;
    if req.stream {
        let mut handle = handle;
        let s = async_stream::stream! {
            let mut predicted = 0usize;
            loop {
                match handle.events.recv().await {
                    Some(Event::Token(t)) => {
                        predicted += 1;
                        let prob = probability(model.tokenizer(), &t);
                        if t.text.is_empty() && prob.is_none() {
                            continue;
                        }
                        let mut c = json!({
                            "index": 0,
                            "content": t.text,
                            "tokens": if return_tokens { vec![t.id] } else { vec![] },
                            "stop": false,
                            "tokens_predicted": predicted,
                            "tokens_evaluated": n_prompt,
                        });
                        if let Some(p) = prob {
                            c["completion_probabilities"] = json!([p]);
                        }
                        yield sse_data(&c.to_string());
                    }
                    Some(Event::Done(f)) => {
                        state.metrics.finished(&f);
                        yield sse_data(&final_result(&state, &f, "", &[], &prompt_text, &settings).to_string());
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
    let ids: Vec<u32> = if return_tokens {
        out.tokens.iter().map(|t| t.id).collect()
    } else {
        Vec::new()
    };
    let mut res = final_result(
        &state,
        &out.finished,
        &out.text,
        &ids,
        &prompt_text,
        &settings,
    );
    if req.n_probs.is_some_and(|n| n > 0) {
        let probs: Vec<Json_> = out
            .tokens
            .iter()
            .filter_map(|t| probability(model.tokenizer(), t))
            .collect();
        res["completion_probabilities"] = json!(probs);
    }
    Ok(Json(res).into_response())
}

/// llama-server's `/slots`: each KV slot, the request it serves and how far
/// it is (a subset of llama-server's fields, under its names, plus the
/// positions a slot holds).
pub async fn slots(State(state): State<AppState>) -> Result<Response> {
    let model = state.model()?;
    let n_ctx = model.n_ctx();
    let list: Vec<Json_> = model
        .scheduler
        .stats()
        .slots
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "id_task": s.task.map_or(-1, |t| t as i64),
                "n_ctx": n_ctx,
                "speculative": false,
                "is_processing": s.task.is_some(),
                "n_past": s.n_past,
                "n_prompt_tokens": s.n_prompt,
                "next_token": {"has_next_token": s.task.is_some(), "n_decoded": s.n_decoded},
            })
        })
        .collect();
    Ok(Json(list).into_response())
}

pub async fn props(State(state): State<AppState>) -> Result<Response> {
    let model = state.model()?;
    let tok = model.tokenizer();
    let piece = |id: Option<u32>| id.map(|i| tok.token_piece(i)).unwrap_or_default();
    let stats = model.scheduler.stats();
    let defaults = SamplerParams::default();
    Ok(Json(json!({
        "default_generation_settings": {
            "n_ctx": model.n_ctx(),
            "params": {
                "n_predict": -1,
                "temperature": defaults.temperature,
                "top_k": defaults.top_k,
                "top_p": defaults.top_p,
                "min_p": defaults.min_p,
                "repeat_last_n": defaults.repeat_last_n,
                "repeat_penalty": defaults.repeat_penalty,
                "presence_penalty": defaults.presence_penalty,
                "frequency_penalty": defaults.frequency_penalty,
            },
        },
        "total_slots": stats.n_parallel,
        "model_alias": state.alias,
        "model_path": model.info.path.display().to_string(),
        "chat_template": model.info.template_source.clone().unwrap_or_default(),
        "bos_token": piece(tok.bos_id()),
        "eos_token": piece(tok.eos_id()),
        "modalities": {"vision": false, "audio": false},
        "build_info": format!("llama-wgpu {}", env!("CARGO_PKG_VERSION")),
    }))
    .into_response())
}

#[derive(Deserialize, Debug)]
pub struct EmbeddingRequest {
    /// llama-server's name; `input` is taken too.
    pub content: Option<Input>,
    pub input: Option<Input>,
    /// llama.cpp's `--embd-normalize` per request (default 2, Euclidean).
    pub embd_normalize: Option<i32>,
}

#[derive(Serialize)]
struct EmbeddingItem {
    index: usize,
    /// One pooled vector, in a list (llama-server's shape, which lists one
    /// vector per token when the pooling is `none`).
    embedding: Vec<Vec<f32>>,
}

pub async fn embedding(State(state): State<AppState>, body: Body) -> Result<Response> {
    let started = Instant::now();
    let model = state.model()?;
    let req: EmbeddingRequest = read_json(body).await?;
    let texts = match req.content.or(req.input) {
        None => return Err(ApiError::bad_request("\"content\" or \"input\" must be given").into()),
        Some(input) => input.token_lists(&model)?,
    };
    let norm = req.embd_normalize.unwrap_or(2);
    let (vectors, _) = embed_all(&state, &model, texts).await?;
    tracing::debug!(
        "{} embeddings in {:.0} ms",
        vectors.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    let items: Vec<EmbeddingItem> = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| EmbeddingItem {
            index,
            embedding: vec![normalize(v, norm)],
        })
        .collect();
    Ok(Json(items).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> CompletionRequest {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn unsupported_options_are_refused_by_name() {
        assert!(parse(r#"{"prompt": "a"}"#).check_supported().is_ok());
        // Defaults are fine: clients send them.
        assert!(parse(
            r#"{"prompt": "a", "typical_p": 1.0, "mirostat": 0, "grammar": "", "logit_bias": [], "n": 1}"#
        )
        .check_supported()
        .is_ok());
        for (body, word) in [
            (r#"{"prompt": "a", "mirostat": 2}"#, "mirostat"),
            (r#"{"prompt": "a", "typical_p": 0.5}"#, "typical_p"),
            (
                r#"{"prompt": "a", "dry_multiplier": 0.8}"#,
                "dry_multiplier",
            ),
            (r#"{"prompt": "a", "logit_bias": [[1, -1]]}"#, "logit_bias"),
            (r#"{"prompt": "a", "n_cmpl": 2}"#, "n_cmpl"),
            (
                r#"{"prompt": "a", "lora": [{"id": 0, "scale": 1}]}"#,
                "lora",
            ),
        ] {
            let e = parse(body).check_supported().unwrap_err();
            assert!(e.message.contains(word), "{body}: {}", e.message);
        }
    }

    #[test]
    fn stop_types_are_llama_servers() {
        assert_eq!(stop_type(StopReason::EndOfGeneration), "eos");
        assert_eq!(stop_type(StopReason::StopString), "word");
        assert_eq!(stop_type(StopReason::Length), "limit");
        assert_eq!(stop_type(StopReason::ContextFull), "limit");
    }
}
