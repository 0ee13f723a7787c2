//! `llama-wgpu serve`: OpenAI- and Ollama-compatible HTTP on axum/tokio in
//! front of the engine's scheduler, which runs in its own thread and knows
//! nothing of HTTP. The server keeps no state between requests: each
//! carries its whole conversation.
//!
//! One job per file: `routes` (here), `openai`, `ollama`, `embeddings`
//! (both APIs' embedding endpoints), `native` (llama-server's own
//! `/completion`, `/props`, `/embedding`), `ops` (health, metrics, tokenize),
//! `generation` (what the APIs share), `body`
//! (request parsing), `errors`, `auth`, `sse` (stream framings), `state`,
//! `page` (the web chat page).

mod auth;
mod body;
mod embeddings;
mod errors;
mod generation;
mod native;
mod ollama;
mod openai;
mod ops;
mod page;
pub mod reply;
mod sse;
mod state;
mod tools;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use crate::engine::{Engine, EngineOptions, Pooling, Scheduler, SchedulerOptions};
use crate::tokenizer::ChatTemplate;
pub use auth::constant_time_eq;
pub use state::AppState;

pub struct ServeOptions {
    pub host: String,
    pub port: u16,
    pub api_key: Option<String>,
    pub alias: String,
    pub engine: EngineOptions,
    pub scheduler: SchedulerOptions,
    /// A template file instead of the model's own.
    pub chat_template: Option<PathBuf>,
    /// `--context-shift --keep K`: `Some(K)`.
    pub context_shift: Option<i64>,
    /// `--pooling` for the embedding endpoints (`None`: the file's, else last).
    pub pooling: Option<Pooling>,
    /// `--reasoning-format`.
    pub reasoning: reply::ReasoningFormat,
}

/// Every route, behind the API-key check and the response counter.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/index.html", get(page::index))
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .route("/tokenize", post(ops::tokenize))
        .route("/detokenize", post(ops::detokenize))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/models", get(openai::models))
        .route("/v1/embeddings", post(embeddings::openai))
        .route("/api/embed", post(embeddings::ollama_embed))
        .route("/api/embeddings", post(embeddings::ollama_embeddings))
        .route("/completion", post(native::completion))
        .route("/completions", post(native::completion))
        .route("/props", get(native::props))
        .route("/slots", get(native::slots))
        .route("/embedding", post(native::embedding))
        .route("/embeddings", post(native::embedding))
        .route("/api/chat", post(ollama::chat))
        .route("/api/generate", post(ollama::generate))
        .route("/api/tags", get(ollama::tags))
        .route("/api/show", post(ollama::show))
        .route("/api/version", get(ollama::version))
        .route("/api/ps", get(ollama::ps))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_responses,
        ))
        .with_state(state)
}

async fn count_responses(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let r = next.run(req).await;
    state.metrics.response(r.status());
    r
}

/// Loads the model: the engine, its chat template and the facts the API
/// reports, then the scheduler takes the engine.
fn load(
    engine: &EngineOptions,
    chat_template: Option<&PathBuf>,
    sched: SchedulerOptions,
    context_shift: Option<i64>,
    pooling: Option<Pooling>,
    reasoning: reply::ReasoningFormat,
) -> Result<state::Model> {
    let e = Engine::load(engine)?;
    let pooling = match pooling {
        Some(p) => p,
        None => Pooling::of_model(&e.gguf)?,
    };
    let template = match chat_template {
        Some(p) => Some(ChatTemplate::from_file(p)?),
        None => match ChatTemplate::from_gguf(&e.gguf) {
            Ok(t) => Some(t),
            Err(err) => {
                tracing::warn!(
                    "{}: no chat template ({err}); chat endpoints will refuse requests",
                    e.path.display()
                );
                None
            }
        },
    };
    let info = state::ModelInfo::from_engine(&e, template.as_ref());
    let scheduler = Scheduler::start(e, sched)?;
    Ok(state::Model {
        scheduler,
        template,
        info,
        context_shift,
        pooling,
        reasoning,
    })
}

/// Binds, answers `/health` with 503 while the model loads on a blocking
/// thread, serves until SIGINT/SIGTERM, then lets the streams in flight
/// finish and stops the scheduler.
pub fn serve(opts: ServeOptions) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("llama-wgpu-http")
        .build()
        .context("starting the HTTP runtime")?;
    rt.block_on(serve_async(opts))
}

async fn serve_async(opts: ServeOptions) -> Result<()> {
    let addr = format!("{}:{}", opts.host, opts.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local: SocketAddr = listener.local_addr()?;
    if let Some(w) = exposure_warning(local.ip(), opts.api_key.is_some()) {
        eprintln!("{w}");
    }
    // Scripts and tests read this line for the port (with --port 0).
    eprintln!("listening on http://{local}");
    let state = AppState::new(opts.alias.clone(), opts.api_key.clone());
    let app = router(state.clone());

    let (fail_tx, mut fail_rx) = tokio::sync::mpsc::unbounded_channel::<anyhow::Error>();
    let loader_state = state.clone();
    let engine_opts = opts.engine;
    let sched = opts.scheduler;
    let template = opts.chat_template;
    let (shift, pooling, reasoning) = (opts.context_shift, opts.pooling, opts.reasoning);
    let loader = tokio::task::spawn_blocking(move || {
        match load(
            &engine_opts,
            template.as_ref(),
            sched,
            shift,
            pooling,
            reasoning,
        ) {
            Ok(m) => {
                eprintln!(
                    "model loaded in {:.1} s: {} slots of {} tokens",
                    m.info.load_ms / 1e3,
                    m.scheduler.stats().n_parallel,
                    m.scheduler.n_ctx()
                );
                loader_state.set_model(m);
            }
            Err(e) => {
                let _ = fail_tx.send(e);
            }
        }
    });

    let load_error = std::sync::Arc::new(std::sync::Mutex::new(None));
    let load_error2 = load_error.clone();
    let shutdown = async move {
        tokio::select! {
            _ = shutdown_signal() => {
                eprintln!("shutting down: finishing the requests in flight (a second signal exits now)");
                tokio::spawn(async {
                    shutdown_signal().await;
                    eprintln!("second signal: exiting now");
                    std::process::exit(130);
                });
            }
            Some(e) = fail_rx.recv() => {
                *load_error2.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("HTTP server")?;
    if let Some(e) = load_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    if let Some(m) = state.loaded() {
        let sched = m.scheduler.clone();
        tokio::task::spawn_blocking(move || sched.shutdown()).await?;
    } else {
        // Stopped while loading: the loader thread cannot be interrupted; exit without it.
        drop(loader);
    }
    Ok(())
}

/// Beyond loopback without a key, anyone who reaches the address can use the model.
fn exposure_warning(ip: std::net::IpAddr, has_key: bool) -> Option<String> {
    (!ip.is_loopback() && !has_key).then(|| {
        format!("warning: listening on {ip} without --api-key: anyone who can reach this address can use the model")
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_beyond_loopback_without_a_key() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(exposure_warning(ip("0.0.0.0"), false).is_some());
        assert!(exposure_warning(ip("192.168.1.5"), false).is_some());
        assert!(exposure_warning(ip("::"), false).is_some());
        assert!(exposure_warning(ip("0.0.0.0"), true).is_none());
        assert!(exposure_warning(ip("127.0.0.1"), false).is_none());
        assert!(exposure_warning(ip("::1"), false).is_none());
    }
}
