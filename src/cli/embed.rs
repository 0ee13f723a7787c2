//! `llama-wgpu embed`: the embedding of each input text, as llama.cpp's
//! `llama-embedding` computes it (same pooling and normalization flags).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use super::common::{GpuArgs, ModelArgs};
use crate::engine::{normalize, Engine, EngineOptions, Pooling};

#[derive(clap::Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub load: crate::hf::LoadArgs,
    /// Text to embed; split into several inputs at each --embd-separator.
    #[arg(short, long, conflicts_with = "file")]
    pub prompt: Option<String>,
    /// Read the inputs from a file (one per line by default).
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// What separates inputs in the text (llama.cpp's default: a newline).
    #[arg(long, default_value = "\n")]
    pub embd_separator: String,
    /// none (one vector per token), mean, cls or last (default: the file's
    /// llama.pooling_type, else last).
    #[arg(long)]
    pub pooling: Option<String>,
    /// -1 none, 0 max-absolute to int16 range, 1 taxicab, 2 Euclidean, p>2 p-norm.
    #[arg(long, default_value_t = 2, allow_negative_numbers = true)]
    pub embd_normalize: i32,
    /// Context size in tokens: the longest input it holds (default: the
    /// model's, at most 4096; 0: the model's whole training context).
    #[arg(short = 'c', long)]
    pub ctx_size: Option<usize>,
    /// Prompt tokens processed per batched step.
    #[arg(short = 'b', long)]
    pub batch_size: Option<usize>,
    /// Print one JSON object, OpenAI's embeddings list (llama-embedding's
    /// `--embd-output-format json`), and nothing else on stdout.
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

// Structs, so that serde_json writes each f32 as its shortest decimal.
#[derive(Serialize)]
struct JsonList<'a> {
    object: &'static str,
    model: String,
    pooling: Pooling,
    data: Vec<JsonItem<'a>>,
    usage: JsonUsage,
}

#[derive(Serialize)]
struct JsonItem<'a> {
    object: &'static str,
    index: usize,
    embedding: Vectors<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vectors<'a> {
    One(&'a [f32]),
    PerToken(&'a [Vec<f32>]),
}

#[derive(Serialize)]
struct JsonUsage {
    prompt_tokens: usize,
    total_tokens: usize,
}

/// The inputs of a text: split at `sep`; a trailing separator (a file's
/// last newline) does not make an empty last input.
fn inputs(text: &str, sep: &str) -> Result<Vec<String>> {
    if sep.is_empty() {
        bail!("--embd-separator must not be empty");
    }
    let text = text.strip_suffix(sep).unwrap_or(text);
    let parts: Vec<String> = text.split(sep).map(str::to_string).collect();
    if let Some(i) = parts.iter().position(|p| p.is_empty()) {
        bail!("input {} is empty (nothing to embed)", i + 1);
    }
    Ok(parts)
}

pub fn run(args: &EmbedArgs) -> Result<()> {
    let text = match (&args.prompt, &args.file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?
        }
        (None, None) => bail!("give the text with -p TEXT or -f FILE"),
    };
    let texts = inputs(&text, &args.embd_separator)?;
    let asked = args.pooling.as_deref().map(Pooling::parse).transpose()?;
    let quiet = args.quiet || args.json;
    let model = args.model.resolve(quiet)?;
    let mut engine = Engine::load(&EngineOptions {
        n_batch: args.batch_size,
        n_parallel: 1,
        model,
        load: args.load.spec(),
        gpu: args.gpu.options(),
        context: args.context.options()?,
        n_ctx: args.ctx_size,
        quiet,
    })?;
    let pooling = match asked {
        Some(p) => p,
        None => Pooling::of_model(&engine.gguf)?,
    };
    let mut data = Vec::with_capacity(texts.len());
    let mut n_tokens = 0;
    let start = std::time::Instant::now();
    for (i, t) in texts.iter().enumerate() {
        let ids = engine.tokenize(t)?;
        let vectors = engine
            .embed(&ids, pooling)
            .with_context(|| format!("input {}", i + 1))?;
        n_tokens += ids.len();
        data.push(
            vectors
                .iter()
                .map(|v| normalize(v, args.embd_normalize))
                .collect::<Vec<_>>(),
        );
    }
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let mut out = std::io::stdout().lock();
    if args.json {
        let list = JsonList {
            object: "list",
            model: engine.path.display().to_string(),
            pooling,
            data: data
                .iter()
                .enumerate()
                .map(|(index, v)| JsonItem {
                    object: "embedding",
                    index,
                    embedding: match pooling {
                        Pooling::None => Vectors::PerToken(v),
                        _ => Vectors::One(&v[0]),
                    },
                })
                .collect(),
            usage: JsonUsage {
                prompt_tokens: n_tokens,
                total_tokens: n_tokens,
            },
        };
        writeln!(out, "{}", serde_json::to_string(&list)?)?;
    } else {
        for (i, vectors) in data.iter().enumerate() {
            for (j, v) in vectors.iter().enumerate() {
                let values: Vec<String> = v.iter().map(|x| format!("{x:.6}")).collect();
                match pooling {
                    Pooling::None => write!(out, "embedding {i} token {j}: ")?,
                    _ => write!(out, "embedding {i}: ")?,
                }
                writeln!(out, "{}", values.join(" "))?;
            }
        }
    }
    if !args.quiet {
        eprintln!(
            "{} inputs, {n_tokens} tokens, {} dimensions, pooling {}: {ms:.0} ms ({:.1} tok/s)",
            texts.len(),
            engine.model.cfg.n_embd,
            serde_json::to_value(pooling)?.as_str().unwrap_or("?"),
            n_tokens as f64 * 1e3 / ms.max(1e-9)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_split_at_the_separator() {
        assert_eq!(inputs("a\nb\n", "\n").unwrap(), vec!["a", "b"]);
        assert_eq!(inputs("a|b", "|").unwrap(), vec!["a", "b"]);
        assert_eq!(inputs("one text", "\n").unwrap(), vec!["one text"]);
        assert!(inputs("a\n\nb", "\n")
            .unwrap_err()
            .to_string()
            .contains("input 2 is empty"));
        assert!(inputs("", "\n").is_err());
        assert!(inputs("a", "").is_err());
    }
}
