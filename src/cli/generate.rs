use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};

use super::common::{GpuArgs, ModelArgs};
use crate::engine::grammar::Grammar;
use crate::engine::json_output::Schema;
use crate::engine::{
    keep_positions, Engine, EngineOptions, GenerateOptions, OutputFormat, SamplerParams,
};

/// Sampling options with llama.cpp's names and defaults.
#[derive(clap::Args, Clone, Debug)]
pub struct SamplingArgs {
    /// RNG seed; the same seed gives the same text (default: random).
    #[arg(short, long)]
    pub seed: Option<u64>,
    /// Temperature; 0 is greedy (deterministic, sampled on the GPU).
    #[arg(long, default_value_t = 0.8)]
    pub temp: f32,
    /// Keep the K most likely tokens (0: all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches P (1.0: all).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than P times the best one (0.0: none).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalise recently seen tokens (1.0: off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty considers.
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// `json`: the reply is one JSON object, constrained token by token,
    /// and ends when it closes (Ollama's `--format json`).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// The reply is one JSON object following this JSON schema (llama.cpp's
    /// `--json-schema`; properties come in the schema's order; keywords it
    /// cannot enforce, such as `pattern`, are refused by name).
    #[arg(short = 'j', long, conflicts_with = "format")]
    pub json_schema: Option<String>,
    /// As `--json-schema`, the schema read from this file (llama.cpp's
    /// `--json-schema-file`).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["format", "json_schema"])]
    pub json_schema_file: Option<PathBuf>,
    /// The reply is a string of this GBNF grammar (llama.cpp's `--grammar`;
    /// it may end where the grammar's `root` is complete).
    #[arg(long, conflicts_with_all = ["format", "json_schema", "json_schema_file"])]
    pub grammar: Option<String>,
    /// As `--grammar`, read from this file (llama.cpp's `--grammar-file`).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["format", "json_schema", "json_schema_file", "grammar"])]
    pub grammar_file: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum FormatArg {
    Json,
}

impl SamplingArgs {
    pub fn output_format(&self) -> Result<OutputFormat> {
        let grammar = match (&self.grammar, &self.grammar_file) {
            (Some(g), _) => Some(("--grammar", g.clone())),
            (None, Some(p)) => Some((
                "--grammar-file",
                std::fs::read_to_string(p)
                    .with_context(|| format!("--grammar-file: cannot read {}", p.display()))?,
            )),
            (None, None) => None,
        };
        if let Some((flag, text)) = grammar {
            let g = Grammar::parse(&text).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
            return Ok(OutputFormat::Grammar(std::sync::Arc::new(g)));
        }
        let (flag, text) = match (&self.json_schema, &self.json_schema_file) {
            (Some(t), _) => ("--json-schema", t.clone()),
            (None, Some(p)) => (
                "--json-schema-file",
                std::fs::read_to_string(p)
                    .with_context(|| format!("--json-schema-file: cannot read {}", p.display()))?,
            ),
            (None, None) => ("", String::new()),
        };
        if !flag.is_empty() {
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{flag}: not JSON: {e}"))?;
            let s = Schema::compile(&v).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
            return Ok(OutputFormat::JsonSchema(std::sync::Arc::new(s)));
        }
        Ok(match self.format {
            Some(FormatArg::Json) => OutputFormat::JsonObject,
            None => OutputFormat::Text,
        })
    }

    pub fn params(&self) -> Result<SamplerParams> {
        if !(self.temp >= 0.0 && self.temp.is_finite()) {
            bail!("--temp must be >= 0, got {}", self.temp);
        }
        if !(0.0..=1.0).contains(&self.top_p) || !(0.0..=1.0).contains(&self.min_p) {
            bail!("--top-p and --min-p must be between 0 and 1");
        }
        if self.repeat_penalty.is_nan() || self.repeat_penalty <= 0.0 {
            bail!("--repeat-penalty must be > 0, got {}", self.repeat_penalty);
        }
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
        Ok(SamplerParams {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed,
            ..SamplerParams::default()
        })
    }
}

#[derive(clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub load: crate::hf::LoadArgs,
    /// The prompt.
    #[arg(short, long, conflicts_with = "file")]
    pub prompt: Option<String>,
    /// Read the prompt from a file.
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// Tokens to generate (-1: until end of generation or a full context).
    #[arg(short = 'n', long, default_value_t = -1, allow_negative_numbers = true)]
    pub n_predict: i64,
    /// Context size in tokens (default: the model's, at most 4096; 0: the
    /// model's whole training context).
    #[arg(short = 'c', long)]
    pub ctx_size: Option<usize>,
    /// Prompt tokens processed per batched step.
    #[arg(short = 'b', long)]
    pub batch_size: Option<usize>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Stop when this string is generated (repeatable); it is not printed.
    #[arg(long = "stop", short = 'r', alias = "reverse-prompt")]
    pub stop: Vec<String>,
    /// Keep generating past end-of-generation tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// When the context is full, keep the first --keep tokens, drop half of
    /// the rest and go on, shifting the cached keys on the GPU instead of
    /// re-processing (llama.cpp's --context-shift; -v logs each shift).
    #[arg(long)]
    pub context_shift: bool,
    /// Prompt tokens a context shift keeps (after BOS, which is always
    /// kept; -1: the whole prompt).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub keep: i64,
    /// Do not echo the prompt before the generated text.
    #[arg(long)]
    pub no_display_prompt: bool,
    /// Print one JSON object at the end (prompt_ids, generated_ids, text, timings) and nothing else on stdout.
    #[arg(long)]
    pub json: bool,
    /// With --json: the K best raw logits at each generated position.
    #[arg(long, default_value_t = 0)]
    pub top_logits: usize,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub context: super::common::ContextArgs,
    #[command(flatten)]
    pub gpu: GpuArgs,
}

pub fn run(args: &GenerateArgs) -> Result<()> {
    // Checked before the model loads: a bad schema fails at once.
    let format = args.sampling.output_format()?;
    let prompt = match (&args.prompt, &args.file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read prompt file {}", f.display()))?,
        (None, None) => bail!("give a prompt with -p TEXT or -f FILE"),
    };
    let model = args.model.resolve(args.quiet || args.json)?;
    let mut engine = Engine::load(&EngineOptions {
        model: model.clone(),
        load: args.load.spec(),
        gpu: args.gpu.options(),
        context: args.context.options()?,
        n_ctx: args.ctx_size,
        n_batch: args.batch_size,
        n_parallel: 1,
        quiet: args.quiet || args.json,
    })?;
    let ids = engine.tokenize(&prompt)?;
    let opts = GenerateOptions {
        n_predict: (args.n_predict >= 0).then_some(args.n_predict as usize),
        sampler: args.sampling.params()?,
        stop: args.stop.clone(),
        ignore_eos: args.ignore_eos,
        top_logits: args.top_logits,
        context_shift: args
            .context_shift
            .then(|| keep_positions(&ids, engine.tokenizer.bos_id(), args.keep)),
        format,
    };
    let mut stdout = std::io::stdout().lock();
    if !args.json && !args.no_display_prompt {
        write!(stdout, "{prompt}")?;
        stdout.flush()?;
    }
    let result = engine.generate(&ids, &opts, |text| {
        if !args.json {
            // A closed pipe (e.g. `| head`) ends generation quietly.
            if write!(stdout, "{text}")
                .and_then(|_| stdout.flush())
                .is_err()
            {
                return false;
            }
        }
        true
    })?;
    let t = &result.timings;
    if args.json {
        let mut v = serde_json::to_value(&result)?;
        v["seed"] = opts.sampler.seed.into();
        v["model"] = model.display().to_string().into();
        writeln!(stdout, "{}", serde_json::to_string(&v)?)?;
    } else {
        writeln!(stdout)?;
    }
    if !result.context_shifts.is_empty() {
        eprintln!(
            "context shifts: {} (each kept {} positions and dropped {})",
            result.context_shifts.len(),
            result.context_shifts[0].0,
            result.context_shifts[0].1
        );
    }
    eprintln!(
        "load: {:.0} ms | prompt: {} tokens in {:.0} ms ({:.1} tok/s) | generation: {} tokens in {:.0} ms ({:.1} tok/s) | stop: {:?}",
        t.load_ms,
        t.prompt_tokens,
        t.prompt_ms,
        t.prompt_tokens_per_second,
        t.generated_tokens,
        t.generation_ms,
        t.generation_tokens_per_second,
        result.stop_reason
    );
    Ok(())
}
