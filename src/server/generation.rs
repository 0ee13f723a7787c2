//! What both APIs share between a parsed request and the scheduler:
//! sampling options checked and turned into an engine request, the
//! collected result, finish reasons and llama-server's timings.

use serde_json::{json, Value as Json};

use super::errors::ApiError;
use super::state::{AppState, Model};
use crate::engine::{
    Event, Finished, OutputFormat, Request, RequestHandle, SamplerParams, StopReason, TokenEvent,
};

/// Most alternatives a token's log-probabilities may list (the scheduler's bound).
pub const MAX_TOP_LOGPROBS: usize = 20;
/// Most stop strings per request.
pub const MAX_STOP: usize = 16;

/// Sampling and stopping options as any API spells them, not yet checked.
/// `names` in [`Sampling::into_request`] gives the API's names for messages.
#[derive(Default, Debug, Clone)]
pub struct Sampling {
    pub temperature: Option<f32>,
    pub top_k: Option<i64>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub repeat_last_n: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    /// Negative: a random seed (Ollama's -1).
    pub seed: Option<i64>,
    /// `None` or a negative value allowed by the caller: no limit.
    pub max_tokens: Option<i64>,
    pub stop: Vec<String>,
    pub logprobs: Option<usize>,
    pub ignore_eos: bool,
    /// Prompt positions a context shift keeps after BOS (llama-server's
    /// `n_keep`, Ollama's `num_keep`; -1: the whole prompt), instead of
    /// `serve --keep`. Only with `serve --context-shift`.
    pub keep: Option<i64>,
    /// llama-server's `cache_prompt` (default on): start from what a free
    /// slot holds of this prompt.
    pub cache_prompt: Option<bool>,
    /// JSON mode (`response_format` json_object, Ollama's `format: "json"`).
    pub format: OutputFormat,
}

/// The API's parameter names, for error messages.
pub struct Names {
    pub max_tokens: &'static str,
    /// Negative limits that mean "no limit" (Ollama's -1 and -2).
    pub unlimited: &'static [i64],
    pub logprobs: &'static str,
}

/// What a request may use of its slot.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Positions per slot.
    pub n_ctx: usize,
    /// `serve --context-shift --keep K`: `Some(K)`, prompt positions a shift
    /// keeps after BOS (-1: the whole prompt). Then max_tokens is unbounded.
    pub shift_keep: Option<i64>,
    pub bos: Option<u32>,
}

impl Limits {
    /// A slot of `n_ctx` positions without context shifts.
    pub fn fixed(n_ctx: usize) -> Limits {
        Limits {
            n_ctx,
            shift_keep: None,
            bos: None,
        }
    }

    /// The positions of `prompt` a context shift keeps, if shifts are on.
    /// `asked`: the request's own count instead of the server's.
    fn keep(&self, prompt: &[u32], asked: Option<i64>) -> Option<usize> {
        let server = self.shift_keep?;
        let k = asked.unwrap_or(server);
        Some(crate::engine::keep_positions(prompt, self.bos, k))
    }
}

fn range(name: &str, v: Option<f32>, lo: f32, hi: f32) -> Result<Option<f32>, ApiError> {
    match v {
        Some(x) if !(x >= lo && x <= hi) => Err(ApiError::bad_request(format!(
            "{name} must be between {lo} and {hi}, got {x}"
        ))),
        _ => Ok(v),
    }
}

impl Sampling {
    /// Checks every option and builds the scheduler request over `prompt`.
    /// `base` holds the API's defaults.
    pub fn into_request(
        self,
        base: SamplerParams,
        prompt: Vec<u32>,
        limits: Limits,
        names: &Names,
    ) -> Result<Request, ApiError> {
        let n_ctx = limits.n_ctx;
        let mut p = base;
        if let Some(t) = self.temperature {
            if !(t >= 0.0 && t.is_finite()) {
                return Err(ApiError::bad_request(format!(
                    "temperature must be a number >= 0, got {t}"
                )));
            }
            p.temperature = t;
        }
        if let Some(k) = self.top_k {
            // llama.cpp: top_k <= 0 keeps the whole vocabulary.
            p.top_k = k.max(0) as usize;
        }
        if let Some(x) = range("top_p", self.top_p, 0.0, 1.0)? {
            p.top_p = x;
        }
        if let Some(x) = range("min_p", self.min_p, 0.0, 1.0)? {
            p.min_p = x;
        }
        if let Some(x) = range("repeat_penalty", self.repeat_penalty, 0.0, 100.0)? {
            if x == 0.0 {
                return Err(ApiError::bad_request("repeat_penalty must be > 0"));
            }
            p.repeat_penalty = x;
        }
        if let Some(n) = self.repeat_last_n {
            // llama.cpp: -1 means the whole context.
            p.repeat_last_n = match n {
                -1 => n_ctx,
                n if n >= 0 => n as usize,
                n => {
                    return Err(ApiError::bad_request(format!(
                        "repeat_last_n must be -1 or >= 0, got {n}"
                    )))
                }
            };
        }
        if let Some(x) = range("presence_penalty", self.presence_penalty, -2.0, 2.0)? {
            p.presence_penalty = x;
        }
        if let Some(x) = range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)? {
            p.frequency_penalty = x;
        }
        p.seed = match self.seed {
            Some(s) if s >= 0 => s as u64,
            _ => rand::random(),
        };
        let n_predict = match self.max_tokens {
            None => None,
            Some(n) if names.unlimited.contains(&n) => None,
            Some(n) if n < 1 => {
                return Err(ApiError::bad_request(format!(
                    "{} must be at least 1, got {n}",
                    names.max_tokens
                )))
            }
            Some(n) if n as u64 > n_ctx as u64 && limits.shift_keep.is_none() => {
                return Err(ApiError::bad_request(format!(
                    "{} of {n} is more than the context of {n_ctx} tokens per slot",
                    names.max_tokens
                ))
                .with_code("context_length_exceeded"))
            }
            Some(n) => Some(n as usize),
        };
        if self.stop.len() > MAX_STOP {
            return Err(ApiError::bad_request(format!(
                "at most {MAX_STOP} stop strings, got {}",
                self.stop.len()
            )));
        }
        if let Some(k) = self.logprobs {
            if k > MAX_TOP_LOGPROBS {
                return Err(ApiError::bad_request(format!(
                    "{} must be between 0 and {MAX_TOP_LOGPROBS}, got {k}",
                    names.logprobs
                )));
            }
        }
        if prompt.len() > n_ctx {
            return Err(ApiError::bad_request(format!(
                "the prompt of {} tokens is longer than the context of {n_ctx} tokens per slot",
                prompt.len()
            ))
            .with_code("context_length_exceeded"));
        }
        Ok(Request {
            context_shift: limits.keep(&prompt, self.keep),
            prompt,
            sampler: p,
            n_predict,
            stop: self.stop.into_iter().filter(|s| !s.is_empty()).collect(),
            ignore_eos: self.ignore_eos,
            logprobs: self.logprobs,
            cache_prompt: self.cache_prompt.unwrap_or(true),
            format: self.format,
            embed: None,
            shown_tokens: Vec::new(),
        })
    }
}

/// A finished request's tokens and text.
pub struct Outcome {
    pub text: String,
    pub tokens: Vec<TokenEvent>,
    pub finished: Finished,
}

/// Waits for the whole result.
pub async fn collect(state: &AppState, mut handle: RequestHandle) -> Result<Outcome, ApiError> {
    let mut text = String::new();
    let mut tokens = Vec::new();
    while let Some(ev) = handle.events.recv().await {
        match ev {
            Event::Token(t) => {
                text.push_str(&t.text);
                tokens.push(t);
            }
            Event::Done(finished) => {
                state.metrics.finished(&finished);
                return Ok(Outcome {
                    text,
                    tokens,
                    finished,
                });
            }
            Event::Error(e) => return Err(generation_failed(&e)),
        }
    }
    Err(generation_failed(
        "the engine stopped without finishing the request",
    ))
}

pub fn generation_failed(msg: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        format!("generation failed: {msg}"),
    )
}

/// OpenAI's and Ollama's reason: "stop" at an end-of-turn token or stop
/// string, "length" at the token limit or a full context.
pub fn finish_reason(r: StopReason) -> &'static str {
    match r {
        StopReason::Length | StopReason::ContextFull => "length",
        StopReason::EndOfGeneration | StopReason::StopString | StopReason::Interrupted => "stop",
    }
}

/// llama-server's `timings` object.
pub fn timings(f: &Finished) -> Json {
    let per_s = |n: usize, ms: f64| if ms > 0.0 { n as f64 * 1e3 / ms } else { 0.0 };
    let per_tok = |n: usize, ms: f64| if n > 0 { ms / n as f64 } else { 0.0 };
    // As llama-server: prompt_n counts the tokens processed, cache_n the
    // ones a slot already held.
    let processed = f.prompt_tokens - f.cached_tokens;
    json!({
        "cache_n": f.cached_tokens,
        "prompt_n": processed,
        "prompt_ms": f.prompt_ms,
        "prompt_per_token_ms": per_tok(processed, f.prompt_ms),
        "prompt_per_second": per_s(processed, f.prompt_ms),
        "predicted_n": f.completion_tokens,
        "predicted_ms": f.generation_ms,
        "predicted_per_token_ms": per_tok(f.completion_tokens, f.generation_ms),
        "predicted_per_second": per_s(f.completion_tokens, f.generation_ms),
    })
}

pub fn usage(f: &Finished) -> Json {
    json!({
        "prompt_tokens": f.prompt_tokens,
        "completion_tokens": f.completion_tokens,
        "total_tokens": f.prompt_tokens + f.completion_tokens,
        "prompt_tokens_details": { "cached_tokens": f.cached_tokens },
    })
}

/// `chatcmpl-` + 24 random hex digits.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:024x}", rand::random::<u128>() >> 32)
}

/// llama-server's `grammar` field (GBNF), `None` when absent or empty.
pub fn grammar(g: &Option<String>) -> Result<Option<OutputFormat>, ApiError> {
    match g.as_deref() {
        None | Some("") => Ok(None),
        Some(text) => crate::engine::grammar::Grammar::parse(text)
            .map(|g| Some(OutputFormat::Grammar(std::sync::Arc::new(g))))
            .map_err(|e| ApiError::bad_request(e.to_string())),
    }
}

/// Submits, mapping the scheduler's refusals to HTTP.
pub fn submit(model: &Model, req: Request) -> Result<RequestHandle, ApiError> {
    Ok(model.submit(req)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAI: Names = Names {
        max_tokens: "max_tokens",
        unlimited: &[],
        logprobs: "top_logprobs",
    };
    const OLLAMA: Names = Names {
        max_tokens: "num_predict",
        unlimited: &[-1, -2],
        logprobs: "logprobs",
    };

    fn build(s: Sampling, names: &Names) -> Result<Request, ApiError> {
        s.into_request(
            SamplerParams::default(),
            vec![1, 2, 3],
            Limits::fixed(64),
            names,
        )
    }

    #[test]
    fn options_reach_the_sampler() {
        let r = build(
            Sampling {
                temperature: Some(0.0),
                top_k: Some(-1),
                top_p: Some(0.5),
                min_p: Some(0.1),
                presence_penalty: Some(1.5),
                frequency_penalty: Some(-0.5),
                repeat_last_n: Some(-1),
                seed: Some(42),
                max_tokens: Some(8),
                stop: vec!["\n".into(), String::new()],
                logprobs: Some(3),
                ..Default::default()
            },
            &OPENAI,
        )
        .unwrap();
        assert_eq!(r.sampler.temperature, 0.0);
        assert_eq!(r.sampler.top_k, 0);
        assert_eq!(r.sampler.top_p, 0.5);
        assert_eq!(r.sampler.min_p, 0.1);
        assert_eq!(r.sampler.presence_penalty, 1.5);
        assert_eq!(r.sampler.frequency_penalty, -0.5);
        assert_eq!(r.sampler.repeat_last_n, 64);
        assert_eq!(r.sampler.seed, 42);
        assert_eq!(r.n_predict, Some(8));
        assert_eq!(r.stop, vec!["\n".to_string()]);
        assert_eq!(r.logprobs, Some(3));
        // Defaults stay where nothing was said.
        let r = build(Sampling::default(), &OPENAI).unwrap();
        assert_eq!(r.sampler.temperature, SamplerParams::default().temperature);
        assert_eq!(r.n_predict, None);
    }

    #[test]
    fn bad_options_are_refused_by_name() {
        let bad = |s: Sampling, names: &Names, word: &str| {
            let e = build(s, names).expect_err("refused");
            assert_eq!(e.status, 400);
            assert!(e.message.contains(word), "{} lacks {word}", e.message);
        };
        bad(
            Sampling {
                temperature: Some(-1.0),
                ..Default::default()
            },
            &OPENAI,
            "temperature",
        );
        bad(
            Sampling {
                temperature: Some(f32::NAN),
                ..Default::default()
            },
            &OPENAI,
            "temperature",
        );
        bad(
            Sampling {
                top_p: Some(1.5),
                ..Default::default()
            },
            &OPENAI,
            "top_p",
        );
        bad(
            Sampling {
                presence_penalty: Some(3.0),
                ..Default::default()
            },
            &OPENAI,
            "presence_penalty",
        );
        bad(
            Sampling {
                max_tokens: Some(-1),
                ..Default::default()
            },
            &OPENAI,
            "max_tokens",
        );
        bad(
            Sampling {
                max_tokens: Some(0),
                ..Default::default()
            },
            &OPENAI,
            "max_tokens",
        );
        bad(
            Sampling {
                max_tokens: Some(65),
                ..Default::default()
            },
            &OPENAI,
            "context",
        );
        bad(
            Sampling {
                max_tokens: Some(-3),
                ..Default::default()
            },
            &OLLAMA,
            "num_predict",
        );
        bad(
            Sampling {
                logprobs: Some(21),
                ..Default::default()
            },
            &OPENAI,
            "top_logprobs",
        );
        bad(
            Sampling {
                stop: vec!["x".into(); 17],
                ..Default::default()
            },
            &OPENAI,
            "stop",
        );
        // Ollama's -1 and -2: no limit.
        for n in [-1, -2] {
            let r = build(
                Sampling {
                    max_tokens: Some(n),
                    ..Default::default()
                },
                &OLLAMA,
            )
            .unwrap();
            assert_eq!(r.n_predict, None);
        }
        let e = Sampling::default()
            .into_request(
                SamplerParams::default(),
                vec![1; 65],
                Limits::fixed(64),
                &OPENAI,
            )
            .expect_err("refused");
        assert_eq!(e.code, Some("context_length_exceeded"));
    }

    /// `serve --context-shift --keep K`: max_tokens past the context is
    /// allowed, and each request keeps BOS (if its prompt starts with it)
    /// plus K prompt positions, or its whole prompt for K = -1, at most the
    /// prompt. Without it, the same max_tokens is refused.
    #[test]
    fn context_shift_limits() {
        let limits = |k| Limits {
            n_ctx: 64,
            shift_keep: k,
            bos: Some(1),
        };
        let req = |prompt: Vec<u32>, k| {
            Sampling {
                max_tokens: Some(100),
                ..Default::default()
            }
            .into_request(SamplerParams::default(), prompt, limits(k), &OPENAI)
        };
        let r = req(vec![1, 5, 6, 7], Some(2)).unwrap();
        assert_eq!((r.n_predict, r.context_shift), (Some(100), Some(3)));
        let r = req(vec![5, 6, 7], Some(2)).unwrap();
        assert_eq!(r.context_shift, Some(2));
        let r = req(vec![1, 5, 6, 7], Some(-1)).unwrap();
        assert_eq!(r.context_shift, Some(4));
        let r = req(vec![1, 5], Some(10)).unwrap();
        assert_eq!(r.context_shift, Some(2));
        let e = req(vec![1, 5, 6, 7], None).expect_err("past the context");
        assert_eq!(e.code, Some("context_length_exceeded"));
        // The request's own n_keep / num_keep, only where shifts are on.
        let asked = |k| Sampling {
            keep: Some(k),
            ..Default::default()
        };
        let on = asked(0)
            .into_request(
                SamplerParams::default(),
                vec![1, 5, 6],
                limits(Some(2)),
                &OPENAI,
            )
            .unwrap();
        assert_eq!(on.context_shift, Some(1));
        let off = asked(0)
            .into_request(
                SamplerParams::default(),
                vec![1, 5, 6],
                limits(None),
                &OPENAI,
            )
            .unwrap();
        assert_eq!(off.context_shift, None);
    }
}
