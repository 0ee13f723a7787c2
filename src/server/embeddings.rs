//! Embedding endpoints: OpenAI's `/v1/embeddings`, Ollama's `/api/embed`
//! and its older `/api/embeddings`. Each text is one scheduler request
//! ([`Request::embedding`]): its prompt steps share the GPU with the
//! generations in flight, and its pooled vector comes back in `Done`.

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json_;

use super::body::read_json;
use super::errors::{ApiError, OllamaError, OpenAiError};
use super::generation::{collect, submit};
use super::state::{AppState, Model};
use crate::engine::{normalize, Pooling, Request};

/// Most texts in one request (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

/// The texts' vectors as the model pools them, not normalized, and the
/// prompt tokens they took. At most `--parallel` texts are in the queue at
/// once, so one large request does not fill it for everyone else.
pub(super) async fn embed_all(
    state: &AppState,
    model: &Model,
    texts: Vec<Vec<u32>>,
) -> Result<(Vec<Vec<f32>>, usize), ApiError> {
    if model.pooling == Pooling::None {
        return Err(ApiError::bad_request(
            "the model's pooling is 'none' (one vector per token), which this endpoint cannot return; restart serve with --pooling mean, cls or last",
        ));
    }
    let window = model.scheduler.stats().n_parallel.max(1);
    let mut out = Vec::with_capacity(texts.len());
    let mut tokens = 0;
    for group in texts.chunks(window) {
        let mut handles = Vec::with_capacity(group.len());
        for ids in group {
            tokens += ids.len();
            handles.push(submit(
                model,
                Request::embedding(ids.clone(), model.pooling),
            )?);
        }
        for h in handles {
            let mut done = collect(state, h).await?.finished;
            match done.embedding.pop() {
                Some(v) if done.embedding.is_empty() => out.push(v),
                _ => {
                    return Err(super::generation::generation_failed(
                        "the engine returned no pooled vector",
                    ))
                }
            }
        }
    }
    Ok((out, tokens))
}

/// L2-normalized (cosine similarity becomes a dot product), then cut to
/// `dimensions` and normalized again, as OpenAI's and Ollama's APIs do.
fn finish_vector(v: &[f32], dimensions: Option<usize>) -> Vec<f32> {
    let v = normalize(v, 2);
    match dimensions {
        Some(d) if d < v.len() => normalize(&v[..d], 2),
        _ => v,
    }
}

/// Refuses a request of no texts or too many, and texts that are empty,
/// longer than a slot or hold ids outside the vocabulary.
fn check_inputs(model: &Model, texts: &[Vec<u32>]) -> Result<(), ApiError> {
    if texts.is_empty() {
        return Err(ApiError::bad_request("input must not be empty"));
    }
    if texts.len() > MAX_INPUTS {
        return Err(ApiError::bad_request(format!(
            "input has {} texts; at most {MAX_INPUTS} per request",
            texts.len()
        )));
    }
    for t in texts {
        model.check_ids(t, "input")?;
    }
    check_lengths(texts, model.n_ctx())
}

/// Refuses texts that are empty or longer than a slot.
fn check_lengths(texts: &[Vec<u32>], n_ctx: usize) -> Result<(), ApiError> {
    for (i, t) in texts.iter().enumerate() {
        if t.is_empty() {
            return Err(ApiError::bad_request(format!(
                "input[{i}] is empty (no tokens to embed)"
            )));
        }
        if t.len() > n_ctx {
            return Err(ApiError::bad_request(format!(
                "input[{i}] has {} tokens; the context holds {n_ctx}",
                t.len()
            ))
            .with_code("context_length_exceeded"));
        }
    }
    Ok(())
}

// The responses are structs, not `json!` values: serde_json then writes
// each f32 as its shortest decimal (a `Value` would widen it to f64 first
// and print 17 digits of its binary expansion).

#[derive(Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct OpenAiItem {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

#[derive(Serialize)]
struct OpenAiList {
    object: &'static str,
    data: Vec<OpenAiItem>,
    model: String,
    usage: Usage,
}

#[derive(Serialize)]
struct OllamaEmbed {
    model: String,
    embeddings: Vec<Vec<f32>>,
    total_duration: u64,
    load_duration: u64,
    prompt_eval_count: usize,
}

#[derive(Serialize)]
struct OllamaEmbedding {
    embedding: Vec<f32>,
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    Texts(Vec<String>),
    Ids(Vec<u32>),
    IdLists(Vec<Vec<u32>>),
}

impl Input {
    /// The texts as ids, each checked ([`check_inputs`]).
    pub(super) fn token_lists(self, model: &Model) -> Result<Vec<Vec<u32>>, ApiError> {
        let texts = match self {
            Input::Text(s) => vec![model.encode(&s, true)?],
            Input::Texts(v) => v
                .iter()
                .map(|s| model.encode(s, true))
                .collect::<Result<_, _>>()?,
            Input::Ids(ids) => vec![ids],
            Input::IdLists(v) => v,
        };
        check_inputs(model, &texts)?;
        Ok(texts)
    }
}

#[derive(Deserialize, Debug)]
pub struct OpenAiRequest {
    #[allow(dead_code)]
    pub model: Option<String>,
    pub input: Input,
    /// "float" (default) or "base64" (little-endian f32 bytes; the Python
    /// client asks for it when the caller does not choose).
    pub encoding_format: Option<String>,
    pub dimensions: Option<usize>,
}

pub async fn openai(
    State(state): State<AppState>,
    body: Body,
) -> std::result::Result<Response, OpenAiError> {
    let model = state.model()?;
    let req: OpenAiRequest = read_json(body).await?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "encoding_format must be 'float' or 'base64', got '{other}'"
            ))
            .into())
        }
    };
    let n_embd = model.info.n_embd;
    if let Some(d) = req.dimensions.filter(|&d| d == 0 || d > n_embd) {
        return Err(ApiError::bad_request(format!(
            "dimensions must be between 1 and {n_embd} (the model's), got {d}"
        ))
        .into());
    }
    let texts = req.input.token_lists(&model)?;
    let (vectors, tokens) = embed_all(&state, &model, texts).await?;
    let data = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let v = finish_vector(v, req.dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Vector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Vector::Floats(v)
            };
            OpenAiItem {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    Ok(Json(OpenAiList {
        object: "list",
        data,
        model: state.alias.clone(),
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    })
    .into_response())
}

#[derive(Deserialize, Debug)]
pub struct OllamaEmbedRequest {
    #[allow(dead_code)]
    pub model: Option<String>,
    /// A string or a list of strings; an empty string or list embeds nothing.
    pub input: Option<Json_>,
    /// Cut each text to the context (default); `false`: refuse a longer one.
    pub truncate: Option<bool>,
    pub dimensions: Option<usize>,
}

/// Ollama's `truncate`: a text longer than the context keeps its first
/// `n_ctx` tokens unless the request said `false`.
fn fit(mut ids: Vec<u32>, n_ctx: usize, truncate: Option<bool>) -> Result<Vec<u32>, ApiError> {
    if ids.len() > n_ctx {
        if truncate == Some(false) {
            return Err(ApiError::bad_request(
                "the input length exceeds the context length",
            ));
        }
        ids.truncate(n_ctx);
    }
    Ok(ids)
}

/// Nanoseconds, Ollama's durations.
fn ns(since: Instant) -> u64 {
    since.elapsed().as_nanos() as u64
}

pub async fn ollama_embed(
    State(state): State<AppState>,
    body: Body,
) -> std::result::Result<Response, OllamaError> {
    let started = Instant::now();
    let model = state.model()?;
    let req: OllamaEmbedRequest = read_json(body).await?;
    let strings: Vec<String> = match req.input {
        None | Some(Json_::Null) => Vec::new(),
        Some(Json_::String(s)) if s.is_empty() => Vec::new(),
        Some(Json_::String(s)) => vec![s],
        Some(Json_::Array(a)) => a
            .into_iter()
            .map(|v| match v {
                Json_::String(s) => Ok(s),
                _ => Err(ApiError::bad_request("invalid input type")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::bad_request("invalid input type").into()),
    };
    if strings.len() > MAX_INPUTS {
        return Err(ApiError::bad_request(format!(
            "input has {} texts; at most {MAX_INPUTS} per request",
            strings.len()
        ))
        .into());
    }
    let n_ctx = model.n_ctx();
    let mut texts = Vec::with_capacity(strings.len());
    for s in &strings {
        texts.push(fit(model.encode(s, true)?, n_ctx, req.truncate)?);
    }
    check_lengths(&texts, n_ctx)?;
    let (vectors, tokens) = if texts.is_empty() {
        (Vec::new(), 0)
    } else {
        embed_all(&state, &model, texts).await?
    };
    let dims = req.dimensions.filter(|&d| d > 0);
    Ok(Json(OllamaEmbed {
        model: state.alias.clone(),
        embeddings: vectors.iter().map(|v| finish_vector(v, dims)).collect(),
        total_duration: ns(started),
        load_duration: 0,
        prompt_eval_count: tokens,
    })
    .into_response())
}

#[derive(Deserialize, Debug)]
pub struct OllamaEmbeddingsRequest {
    #[allow(dead_code)]
    pub model: Option<String>,
    #[serde(default)]
    pub prompt: String,
}

/// The older endpoint: one text, the vector as the model pools it (not
/// normalized), no truncation.
pub async fn ollama_embeddings(
    State(state): State<AppState>,
    body: Body,
) -> std::result::Result<Response, OllamaError> {
    let model = state.model()?;
    let req: OllamaEmbeddingsRequest = read_json(body).await?;
    if req.prompt.is_empty() {
        return Ok(Json(OllamaEmbedding {
            embedding: Vec::new(),
        })
        .into_response());
    }
    let texts = vec![model.encode(&req.prompt, true)?];
    check_lengths(&texts, model.n_ctx())?;
    let (mut vectors, _) = embed_all(&state, &model, texts).await?;
    Ok(Json(OllamaEmbedding {
        embedding: vectors.pop().unwrap_or_default(),
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_unit_length_after_cutting() {
        let v = [3.0f32, 4.0, 12.0];
        let full = finish_vector(&v, None);
        assert!((full.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-6);
        let cut = finish_vector(&v, Some(2));
        assert_eq!(cut.len(), 2);
        assert!((cut[0] - 0.6).abs() < 1e-6 && (cut[1] - 0.8).abs() < 1e-6);
        assert_eq!(finish_vector(&v, Some(9)), full);
    }

    #[test]
    fn ollama_truncates_unless_told_not_to() {
        assert_eq!(fit(vec![1, 2, 3], 2, None).unwrap(), vec![1, 2]);
        assert_eq!(fit(vec![1, 2, 3], 2, Some(true)).unwrap(), vec![1, 2]);
        assert_eq!(fit(vec![1, 2], 2, Some(false)).unwrap(), vec![1, 2]);
        let e = fit(vec![1, 2, 3], 2, Some(false)).unwrap_err();
        assert!(e.message.contains("exceeds the context length"));
    }

    #[test]
    fn lengths_are_checked_per_input() {
        assert!(check_lengths(&[vec![1, 2]], 2).is_ok());
        let e = check_lengths(&[vec![1], vec![]], 4).unwrap_err();
        assert!(e.message.contains("input[1] is empty"), "{}", e.message);
        let e = check_lengths(&[vec![1, 2, 3]], 2).unwrap_err();
        assert_eq!(e.code, Some("context_length_exceeded"));
    }

    #[test]
    fn inputs_of_every_openai_shape_parse() {
        let parse = |s: &str| serde_json::from_str::<OpenAiRequest>(s).unwrap().input;
        assert!(matches!(parse(r#"{"input": "a"}"#), Input::Text(_)));
        assert!(matches!(parse(r#"{"input": ["a", "b"]}"#), Input::Texts(v) if v.len() == 2));
        assert!(matches!(parse(r#"{"input": [1, 2]}"#), Input::Ids(v) if v == [1, 2]));
        assert!(matches!(parse(r#"{"input": [[1], [2, 3]]}"#), Input::IdLists(v) if v.len() == 2));
        assert!(serde_json::from_str::<OpenAiRequest>(r#"{"input": 5}"#).is_err());
    }
}
