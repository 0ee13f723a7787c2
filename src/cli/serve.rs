//! `llama-wgpu serve`: the OpenAI- and Ollama-compatible HTTP server.

use std::path::PathBuf;

use anyhow::{bail, Result};

use super::common::{GpuArgs, ModelArgs};
use crate::engine::{EngineOptions, Pooling, SchedulerOptions};
use crate::server::{serve, ServeOptions};

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub load: crate::hf::LoadArgs,
    /// Address to listen on; anything but loopback should come with --api-key.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port, printed on stderr).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Sequences decoded together (slots).
    #[arg(long = "parallel", short = 'P', default_value_t = 4)]
    pub parallel: usize,
    /// Context size per slot in tokens (default: the model's, at most 4096;
    /// 0: the model's whole training context).
    #[arg(short = 'c', long)]
    pub ctx_size: Option<usize>,
    /// Requests that may wait for a free slot; one more gets 503 with Retry-After.
    #[arg(long, default_value_t = 64)]
    pub queue_size: usize,
    /// Require `Authorization: Bearer KEY` on every endpoint but /health
    /// (default: the environment variable LLAMA_API_KEY, if set).
    #[arg(long)]
    pub api_key: Option<String>,
    /// The model name clients see (default: the file name without .gguf).
    #[arg(long)]
    pub alias: Option<String>,
    /// Jinja chat template, or a tokenizer_config.json with one (default: the model's).
    #[arg(long)]
    pub chat_template: Option<PathBuf>,
    /// When a request's slot is full, keep the first --keep prompt tokens,
    /// drop half of the rest and go on (llama-server's --context-shift;
    /// without it such a request ends with finish_reason "length"), and
    /// max_tokens may exceed the context.
    #[arg(long)]
    pub context_shift: bool,
    /// Prompt tokens a context shift keeps (after BOS, which is always
    /// kept; -1: the whole prompt).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub keep: i64,
    /// How /v1/embeddings and /api/embed pool a text's hidden states: mean,
    /// cls or last (default: the file's llama.pooling_type, else last).
    #[arg(long)]
    pub pooling: Option<String>,
    /// Chat replies' `<think>` reasoning: deepseek (or auto) returns it
    /// apart, as `reasoning_content` (OpenAI) and `thinking` (Ollama); none
    /// leaves it in the reply's text.
    #[arg(long, default_value = "deepseek")]
    pub reasoning_format: String,
    #[command(flatten)]
    pub context: super::common::ContextArgs,
    #[command(flatten)]
    pub gpu: GpuArgs,
}

pub fn run(args: &ServeArgs) -> Result<()> {
    if args.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    let api_key = args
        .api_key
        .clone()
        .or_else(|| std::env::var("LLAMA_API_KEY").ok())
        .filter(|k| !k.is_empty());
    let pooling = args.pooling.as_deref().map(Pooling::parse).transpose()?;
    if pooling == Some(Pooling::None) {
        bail!("--pooling none gives one vector per token, which the embedding endpoints cannot return; use mean, cls or last");
    }
    let reasoning = crate::server::reply::ReasoningFormat::parse(&args.reasoning_format)?;
    let model = args.model.resolve(false)?;
    if !model.exists() {
        bail!("{}: no such model file or folder", model.display());
    }
    // A Hub name is the model's name; a path gives its file name.
    let named = args.model.hf_repo.clone().or_else(|| {
        args.model
            .model
            .clone()
            .filter(|m| !std::path::Path::new(m).exists())
    });
    let alias = args.alias.clone().or(named).unwrap_or_else(|| {
        model
            .file_name()
            .map(|n| n.to_string_lossy().trim_end_matches(".gguf").to_string())
            .unwrap_or_else(|| "model".into())
    });
    serve(ServeOptions {
        host: args.host.clone(),
        port: args.port,
        api_key,
        alias,
        engine: EngineOptions {
            model,
            load: args.load.spec(),
            gpu: args.gpu.options(),
            context: args.context.options()?,
            n_ctx: args.ctx_size,
            n_batch: None,
            n_parallel: args.parallel,
            quiet: true,
        },
        scheduler: SchedulerOptions {
            n_parallel: args.parallel,
            queue_capacity: args.queue_size,
        },
        chat_template: args.chat_template.clone(),
        context_shift: args.context_shift.then_some(args.keep),
        pooling,
        reasoning,
    })
}
