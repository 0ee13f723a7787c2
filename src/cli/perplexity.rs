use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};

use super::common::{GpuArgs, ModelArgs};
use crate::engine::perplexity::{check_token_ids, chunk_nll, chunks, PerplexityStats};
use crate::engine::{Engine, EngineOptions};
use crate::gpu::BatchOutput;

#[derive(clap::Args)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub load: crate::hf::LoadArgs,
    /// Text file to score.
    #[arg(short, long)]
    pub file: PathBuf,
    /// Chunk (and context) size in tokens; the second half of each chunk is scored.
    #[arg(short = 'c', long, default_value_t = 512)]
    pub ctx_size: usize,
    /// Score at most N chunks (default: all full chunks of the text).
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Print one JSON object (ppl, ppl_stderr, chunks, tokens_scored, ctx) and nothing else on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub context: super::common::ContextArgs,
    #[command(flatten)]
    pub gpu: GpuArgs,
}

pub fn run(args: &PerplexityArgs) -> Result<()> {
    let c = args.ctx_size;
    if c < 4 {
        bail!("--ctx-size must be at least 4, got {c}");
    }
    if args.chunks == Some(0) {
        bail!("--chunks must be at least 1");
    }
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let model = args.model.resolve(args.quiet || args.json)?;
    let mut engine = Engine::load(&EngineOptions {
        n_batch: None,
        n_parallel: 1,
        model,
        load: args.load.spec(),
        gpu: args.gpu.options(),
        context: args.context.options()?,
        n_ctx: Some(c),
        quiet: args.quiet || args.json,
    })?;
    let tok = &engine.tokenizer;
    // As llama.cpp: special-token text in the file is plain text, and BOS is
    // used only by vocabularies that ask for it.
    let bos = if tok.adds_bos() { tok.bos_id() } else { None };
    let tokens = tok.encode(&text, tok.adds_bos(), false)?;
    check_token_ids(&tokens, engine.model.cfg.n_vocab).map_err(anyhow::Error::msg)?;
    let chunks = chunks(&tokens, c, args.chunks, bos);
    if chunks.is_empty() {
        bail!(
            "{} has {} tokens, fewer than one chunk of --ctx-size {c}; use a longer text or a smaller -c",
            args.file.display(),
            tokens.len()
        );
    }
    eprintln!(
        "perplexity: {} tokens, {} chunks of {c}, scoring {} tokens per chunk",
        tokens.len(),
        chunks.len(),
        c - 1 - c / 2
    );
    let mut stats = PerplexityStats::default();
    let start = std::time::Instant::now();
    for (i, chunk) in chunks.iter().enumerate() {
        engine.model.reset();
        // Only the second half is scored: the first half needs no logits read back.
        engine.model.prefill(&chunk[..c / 2], BatchOutput::None)?;
        let vocab = engine.model.cfg.n_vocab;
        let logits: Vec<Vec<f32>> = engine
            .model
            .prefill(&chunk[c / 2..c - 1], BatchOutput::AllLogits)?
            .into_logits()?
            .chunks(vocab)
            .map(<[f32]>::to_vec)
            .collect();
        for nll in chunk_nll(&logits, chunk) {
            if !nll.is_finite() {
                bail!("chunk {}: non-finite log-likelihood (NaN logits?)", i + 1);
            }
            stats.add(nll);
        }
        eprint!("[{}]{:.4},", i + 1, stats.ppl());
        if i == 0 {
            let per_chunk = start.elapsed().as_secs_f64();
            tracing::info!(
                "{per_chunk:.1} s per chunk, about {:.0} s in all",
                per_chunk * chunks.len() as f64
            );
        }
    }
    eprintln!();
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let v = serde_json::json!({
            "ppl": stats.ppl(),
            "ppl_stderr": stats.ppl_stderr(),
            "chunks": chunks.len(),
            "tokens_scored": stats.count,
            "ctx": c,
        });
        writeln!(stdout, "{v}")?;
    } else {
        writeln!(
            stdout,
            "Final estimate: PPL = {:.4} +/- {:.5}",
            stats.ppl(),
            stats.ppl_stderr()
        )?;
    }
    Ok(())
}
