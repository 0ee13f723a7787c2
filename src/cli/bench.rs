//! `llama-wgpu bench`: llama-bench's tests (pp = prompt processing, tg = text
//! generation) and output formats, plus a roofline column: the bytes the GPU
//! must read per generated token and the bandwidth that implies.

use std::io::Write;
use std::time::Instant;

use anyhow::{bail, Result};
use serde::Serialize;

use super::common::{GpuArgs, ModelListArgs};
use crate::gguf::Gguf;
use crate::gpu::{
    BatchOutput, DecodeInput, Gpu, GpuModel, LoadOptions, Profile, StepInput, TokenSource,
};
use crate::model::synthetic::{llama_cpp_output_type, synthetic_header, LlamaShape};
use crate::model::{LlamaConfig, ModelWeights};

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelListArgs,
    /// A random model with the exact shapes of a published one, e.g.
    /// llama2-7b:q4_0, smollm2-135m:q4_1 (shapes: llama2-7b, llama2-13b,
    /// llama2-70b, tinyllama-1.1b, smollm2-135m, mistral-nemo-12b (heads
    /// 128 wide over 5120 / 32), and `tiny` for tests). The
    /// output projection gets llama.cpp's type for that quantization (Q6_K,
    /// or Q8_0 when rows are not multiples of 256), as in real files. The
    /// weights are generated on the GPU at load: no file, no host memory.
    #[arg(long, value_delimiter = ',')]
    pub synthetic: Vec<String>,
    /// Prompt lengths to test (comma-separated; 0 to skip).
    #[arg(short = 'p', long, value_delimiter = ',', default_value = "512")]
    pub n_prompt: Vec<usize>,
    /// Generated-token counts to test (comma-separated; 0 to skip).
    #[arg(short = 'n', long, value_delimiter = ',', default_value = "128")]
    pub n_gen: Vec<usize>,
    /// Prompt tokens per batched step (-b, as llama.cpp).
    #[arg(short = 'b', long, default_value_t = crate::gpu::DEFAULT_BATCH)]
    pub batch_size: usize,
    /// Context depths (comma-separated, as llama-bench's -d): each test runs
    /// after the KV cache already holds this many tokens (filled by an
    /// untimed prefill, once per depth).
    #[arg(
        short = 'd',
        long = "n-depth",
        value_delimiter = ',',
        default_value = "0"
    )]
    pub n_depth: Vec<usize>,
    /// Sequences processed together (comma-separated, like
    /// llama-batched-bench): tg N generates for N sequences in the same
    /// steps, pp N prefills N prompts; rows report aggregate tokens/s.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub parallel: Vec<usize>,
    /// Repetitions of each test.
    #[arg(short = 'r', long, default_value_t = 5)]
    pub repetitions: usize,
    /// Output format: md, csv, json or jsonl.
    #[arg(short = 'o', long, default_value = "md")]
    pub output: String,
    /// Also time each kernel family per generated token (GPU timestamp
    /// queries where the adapter has them; see the method in the output).
    #[arg(long)]
    pub profile: bool,
    /// Peak memory bandwidth of the GPU in GB/s, for the percentage column
    /// (default: looked up from the adapter name when known).
    #[arg(long)]
    pub peak_gbps: Option<f64>,
    #[command(flatten)]
    pub context: super::common::ContextArgs,
    #[command(flatten)]
    pub gpu: GpuArgs,
}

#[derive(Serialize)]
pub struct BenchRow {
    pub model: String,
    pub size_bytes: u64,
    pub params: u64,
    pub types: String,
    pub backend: String,
    pub adapter: String,
    pub driver: String,
    /// The kernel tuning in use (adapter default plus any overrides).
    pub tuning: crate::gpu::Tuning,
    pub test: String,
    pub n_prompt: usize,
    pub n_gen: usize,
    /// Sequences run together; tokens_per_second is their aggregate.
    pub n_parallel: usize,
    /// Tokens in each sequence's KV cache before the test.
    pub n_depth: usize,
    pub repetitions: usize,
    pub tokens_per_second: f64,
    pub tokens_per_second_stddev: f64,
    pub samples_tokens_per_second: Vec<f64>,
    /// Bytes the GPU reads per generated token (weights + KV cache), averaged over the test's positions.
    pub bytes_per_token: u64,
    pub effective_gbps: f64,
    pub peak_gbps: Option<f64>,
    pub percent_of_peak: Option<f64>,
    /// Milliseconds per token of this test (prompt token for pp, generated
    /// token for tg) by kernel family (`--profile`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_ms_per_token: Option<std::collections::BTreeMap<String, f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_method: Option<String>,
    /// Dispatches one layer records in this test's steps (`--profile`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatches_per_layer: Option<usize>,
    /// Dispatches and queue submissions per token of this test, as the
    /// normal (untimed) path records them (`--profile`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatches_per_token: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submissions_per_token: Option<f64>,
}

/// Memory bandwidth of common GPUs (GB/s), matched by a substring of the adapter name.
const PEAK_GBPS: &[(&str, f64)] = &[
    ("H200", 4800.0),
    ("H100 PCIe", 2000.0),
    ("H100", 3350.0),
    ("A100", 2039.0),
    ("L40S", 864.0),
    ("RTX 4090", 1008.0),
    ("RTX 4080", 717.0),
    ("RTX 4070", 504.0),
    ("RTX 3090", 936.0),
    ("RTX 3080", 760.0),
    ("RTX 3060", 360.0),
    ("RX 7900 XTX", 960.0),
    ("RX 6800 XT", 512.0),
    ("Apple M1 Max", 400.0),
    ("Apple M1 Pro", 200.0),
    ("Apple M1", 68.0),
    ("Apple M2 Max", 400.0),
    ("Apple M2 Pro", 200.0),
    ("Apple M2 Ultra", 800.0),
    ("Apple M2", 100.0),
    ("Apple M3 Max", 400.0),
    ("Apple M3 Pro", 150.0),
    ("Apple M3", 100.0),
    ("Apple M4 Max", 546.0),
    ("Apple M4 Pro", 273.0),
    ("Apple M4", 120.0),
];

pub fn peak_for(adapter: &str) -> Option<f64> {
    PEAK_GBPS
        .iter()
        .find(|(n, _)| adapter.contains(n))
        .map(|&(_, g)| g)
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Bytes read per decoded token at `pos` when `n` sequences decode
/// together: every weight matrix once per step (one embedding row per
/// sequence), shared by the n tokens, plus each sequence's KV cache up to
/// `pos` in the cache's types.
fn bytes_per_token(cfg: &LlamaConfig, m: &GpuModel, pos: usize, n: usize) -> u64 {
    let embd_row = m.token_embd_row_bytes();
    let kv = (pos as u64 + 1) * m.kv_bytes_per_position();
    let matrices = m.weight_bytes - m.token_embd_bytes()
        + if cfg.tied_embeddings {
            m.token_embd_bytes()
        } else {
            0
        };
    matrices / n as u64 + embd_row + kv
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if !["md", "csv", "json", "jsonl"].contains(&args.output.as_str()) {
        bail!("-o {}: expected md, csv, json or jsonl", args.output);
    }
    if args.repetitions == 0 {
        bail!("-r must be at least 1");
    }
    if args.parallel.contains(&0) {
        bail!("--parallel: every value must be at least 1");
    }
    let n_slots = args.parallel.iter().copied().max().unwrap_or(1);
    let gpu = Gpu::new(&args.gpu.options())?;
    let peak = args.peak_gbps.or_else(|| peak_for(&gpu.info.name));
    let max_pp = args.n_prompt.iter().copied().max().unwrap_or(0);
    let max_tg = args.n_gen.iter().copied().max().unwrap_or(0);
    let max_depth = args.n_depth.iter().copied().max().unwrap_or(0);
    let n_ctx = (max_depth + max_pp.max(max_tg) + 1).max(16);
    let context = args.context.options()?;
    let mut sources: Vec<(Gguf, String)> = Vec::new();
    for p in &args.model.resolve(false)? {
        let name = p
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        sources.push((crate::engine::open_model(p)?, name));
    }
    for spec in &args.synthetic {
        let (shape, ty) =
            LlamaShape::parse_spec(spec).map_err(|e| anyhow::anyhow!("--synthetic {spec}: {e}"))?;
        // The output projection gets the type llama.cpp's quantizer would give it,
        // so the bytes read per token match a real file of this quantization.
        // Only shapes and types: the weights are generated on the GPU at load.
        let out_ty = llama_cpp_output_type(ty, shape.n_embd);
        let bytes = synthetic_header(&shape, ty, out_ty)
            .map_err(|e| anyhow::anyhow!("--synthetic {spec}: {e}"))?;
        sources.push((
            Gguf::header_only(bytes)?,
            format!("{} {} (synthetic)", shape.name, ty.name().to_lowercase()),
        ));
    }
    if sources.is_empty() {
        bail!("give a model with -m PATH|ORG/NAME, -hf ORG/NAME or --synthetic SHAPE:TYPE");
    }
    let mut models = Vec::new();
    for (g, name) in sources {
        eprintln!(
            "loading {name} onto {} ({:?})...",
            gpu.info.name, gpu.info.backend
        );
        models.push(Bench::load(
            &gpu,
            &g,
            name,
            &LoadOptions {
                n_ctx,
                n_batch: args.batch_size,
                n_slots,
                context: context.clone(),
            },
        )?);
    }

    let mut tests: Vec<Test> = Vec::new();
    for &depth in &args.n_depth {
        for &par in &args.parallel {
            tests.extend(args.n_prompt.iter().filter(|&&n| n > 0).map(|&n| Test {
                name: format!("pp{n}"),
                pp: n,
                tg: 0,
                par,
                depth,
            }));
        }
        for &par in &args.parallel {
            tests.extend(args.n_gen.iter().filter(|&&n| n > 0).map(|&n| Test {
                name: format!("tg{n}"),
                pp: 0,
                tg: n,
                par,
                depth,
            }));
        }
    }
    let mut rows = Vec::new();
    for t in tests {
        let (pp, tg, par, depth) = (t.pp, t.tg, t.par, t.depth);
        let test = t.name;
        let mut samples = vec![Vec::new(); models.len()];
        // One warm-up run (pipeline compilation, caches), then the measured
        // ones, each repetition going through every model in turn.
        for rep in 0..=args.repetitions {
            for (b, samples) in models.iter_mut().zip(&mut samples) {
                let s = b.run(pp, tg, par, depth)?;
                if rep > 0 {
                    samples.push((pp.max(tg) * par) as f64 / s);
                }
            }
            eprint!("\r{test} x{par} d{depth}: run {rep}/{}", args.repetitions);
        }
        eprintln!();
        for (b, samples) in models.iter().zip(samples) {
            let (mean, std) = mean_std(&samples);
            let positions = pp.max(tg);
            let bytes = (depth..depth + positions)
                .map(|p| bytes_per_token(&b.model.cfg, &b.model, p, par))
                .sum::<u64>()
                / positions as u64;
            let gbps = bytes as f64 * mean / 1e9;
            rows.push(BenchRow {
                model: b.name.clone(),
                size_bytes: b.size_bytes,
                params: b.params,
                types: b.types.clone(),
                backend: format!("{:?}", gpu.info.backend).to_lowercase(),
                adapter: gpu.info.name.clone(),
                driver: format!("{} {}", gpu.info.driver, gpu.info.driver_info)
                    .trim()
                    .to_string(),
                tuning: gpu.tuning,
                test: test.clone(),
                n_prompt: pp,
                n_gen: tg,
                n_parallel: par,
                n_depth: depth,
                repetitions: args.repetitions,
                tokens_per_second: mean,
                tokens_per_second_stddev: std,
                samples_tokens_per_second: samples,
                bytes_per_token: bytes,
                effective_gbps: gbps,
                peak_gbps: peak,
                percent_of_peak: peak.map(|p| 100.0 * gbps / p),
                profile_ms_per_token: None,
                profile_method: None,
                dispatches_per_layer: None,
                dispatches_per_token: None,
                submissions_per_token: None,
            });
        }
    }
    // Rows grouped by model, tests in the order given.
    rows.sort_by_key(|r| models.iter().position(|b| b.name == r.model));
    if args.profile {
        for r in rows.iter_mut() {
            let b = models
                .iter_mut()
                .find(|b| b.name == r.model)
                .expect("every row has its model");
            let p = b.profile(r.n_prompt, r.n_gen, r.n_parallel, r.n_depth)?;
            let per = (r.n_prompt.max(r.n_gen.min(PROFILE_MAX_STEPS)) * r.n_parallel) as f64;
            r.profile_ms_per_token = Some(p.ms.into_iter().map(|(f, ms)| (f, ms / per)).collect());
            r.profile_method = Some(p.method.to_string());
            r.dispatches_per_token = Some(p.dispatches as f64 / per);
            r.submissions_per_token = Some(p.steps as f64 / per);
            // A pp step is one prompt chunk, a tg step one token per sequence.
            r.dispatches_per_layer = Some(if r.n_prompt > 0 {
                let chunk = r.n_prompt.min(b.model.n_batch);
                b.model.dispatches_per_layer(chunk, chunk)
            } else {
                b.model.dispatches_per_layer(r.n_parallel, 0)
            });
        }
    }
    print_rows(&rows, &args.output)
}

/// One test of the table: pp or tg, for `par` sequences, after `depth` tokens.
struct Test {
    name: String,
    pp: usize,
    tg: usize,
    par: usize,
    depth: usize,
}

/// One model loaded for benchmarking, with what its rows report.
struct Bench {
    name: String,
    size_bytes: u64,
    params: u64,
    types: String,
    model: GpuModel,
    /// The depth and slot count the KV cache was last filled for: tests at
    /// one depth only overwrite positions past it, so it is filled once.
    filled: (usize, usize),
}

impl Bench {
    fn load(
        gpu: &std::sync::Arc<Gpu>,
        g: &Gguf,
        name: String,
        opts: &LoadOptions,
    ) -> Result<Bench> {
        let cfg = LlamaConfig::from_gguf(g)?;
        let weights = ModelWeights::resolve(g, &cfg)?;
        let mut types: Vec<String> = weights
            .layers
            .iter()
            .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down])
            .chain([&weights.token_embd, &weights.output])
            .map(|w| w.ty.name().to_string())
            .collect();
        types.sort();
        types.dedup();
        let model = GpuModel::load(gpu.clone(), g, opts, &|_, _| {})?;
        Ok(Bench {
            name,
            size_bytes: g.tensor_bytes_total(),
            params: g.tensors.iter().map(|t| t.n_elements()).sum(),
            types: types.join(","),
            model,
            filled: (0, 0),
        })
    }

    /// Fills the first `n` slots with `depth` tokens (untimed), unless they
    /// already hold them.
    fn fill(&mut self, depth: usize, n: usize) -> Result<()> {
        if depth == 0 || (self.filled.0 == depth && self.filled.1 >= n) {
            return Ok(());
        }
        let tokens = self.tokens(depth);
        for slot in 0..n {
            self.model
                .prefill_at(slot, 0, &tokens, BatchOutput::None, None)?;
        }
        self.filled = (depth, n);
        Ok(())
    }

    /// A pp run (every prompt, chunked as prefill does) or the first
    /// `PROFILE_MAX_STEPS` steps of a tg run, with every dispatch timed.
    fn profile(&mut self, pp: usize, tg: usize, n: usize, depth: usize) -> Result<Profile> {
        let mut total = Profile::default();
        self.fill(depth, n)?;
        if pp > 0 {
            let tokens = self.tokens(pp);
            for slot in 0..n {
                self.model.prefill_at(
                    slot,
                    depth,
                    &tokens,
                    BatchOutput::Greedy,
                    Some(&mut total),
                )?;
            }
            return Ok(total);
        }
        for step in 0..tg.min(PROFILE_MAX_STEPS) {
            self.decode_step(depth + step, step == 0, n, Some(&mut total))?;
        }
        Ok(total)
    }

    /// The benchmark's input: fixed, spread over the vocabulary.
    fn tokens(&self, n: usize) -> Vec<u32> {
        let vocab = self.model.cfg.n_vocab as u32;
        (0..n as u32).map(|i| (i * 7919 + 1) % vocab).collect()
    }

    /// One greedy decode step of `n` sequences at position `pos`, each
    /// feeding back the GPU's own choice (no token leaves the GPU before
    /// the readback of the step's ids) after the `first` step.
    fn decode_step(
        &mut self,
        pos: usize,
        first_step: bool,
        n: usize,
        profile: Option<&mut Profile>,
    ) -> Result<()> {
        let first = self.tokens(n);
        let rows: Vec<DecodeInput> = (0..n)
            .map(|s| DecodeInput {
                slot: s,
                pos,
                token: if first_step {
                    TokenSource::Id(first[s])
                } else {
                    TokenSource::PreviousArgmax(s)
                },
                out: BatchOutput::Greedy,
            })
            .collect();
        let input = StepInput {
            chunk: None,
            decode: &rows,
        };
        match profile {
            Some(p) => p.add(self.model.profile_step(&input)?),
            None => {
                self.model.step(&input)?;
            }
        }
        Ok(())
    }

    /// Seconds for one pp (prefill of `pp` tokens in each of `n` slots) or
    /// tg (`tg` greedy decode steps of `n` sequences, as llama-bench's tg)
    /// run, after `depth` tokens in each sequence's cache.
    fn run(&mut self, pp: usize, tg: usize, n: usize, depth: usize) -> Result<f64> {
        let tokens = self.tokens(pp);
        self.fill(depth, n)?;
        let t = Instant::now();
        if pp > 0 {
            for slot in 0..n {
                self.model
                    .prefill_at(slot, depth, &tokens, BatchOutput::Greedy, None)?;
            }
        } else {
            for step in 0..tg {
                self.decode_step(depth + step, step == 0, n, None)?;
            }
        }
        Ok(t.elapsed().as_secs_f64())
    }
}

impl BenchRow {
    /// The test as the tables show it: `tg32`, or `tg32 x4` for 4 sequences.
    /// `tg32 @ d4096` after 4096 tokens of context, as llama-bench.
    fn label(&self) -> String {
        let mut l = self.test.clone();
        if self.n_parallel != 1 {
            l.push_str(&format!(" x{}", self.n_parallel));
        }
        if self.n_depth > 0 {
            l.push_str(&format!(" @ d{}", self.n_depth));
        }
        l
    }
}

fn print_rows(rows: &[BenchRow], format: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        "json" => writeln!(out, "{}", serde_json::to_string_pretty(rows)?)?,
        "jsonl" => {
            for r in rows {
                writeln!(out, "{}", serde_json::to_string(r)?)?;
            }
        }
        "csv" => {
            writeln!(out, "model,size_bytes,params,types,backend,adapter,driver,test,n_parallel,n_depth,tokens_per_second,stddev,bytes_per_token,effective_gbps,percent_of_peak")?;
            for r in rows {
                writeln!(
                    out,
                    "\"{}\",{},{},\"{}\",{},\"{}\",\"{}\",{},{},{},{:.3},{:.3},{},{:.3},{}",
                    r.model,
                    r.size_bytes,
                    r.params,
                    r.types,
                    r.backend,
                    r.adapter,
                    r.driver,
                    r.test,
                    r.n_parallel,
                    r.n_depth,
                    r.tokens_per_second,
                    r.tokens_per_second_stddev,
                    r.bytes_per_token,
                    r.effective_gbps,
                    r.percent_of_peak
                        .map(|p| format!("{p:.1}"))
                        .unwrap_or_default()
                )?;
            }
        }
        _ => {
            writeln!(out, "| model | size | params | types | backend | adapter | test | t/s | GB/token | GB/s | % peak |")?;
            writeln!(
                out,
                "| --- | ---: | ---: | --- | --- | --- | --- | ---: | ---: | ---: | ---: |"
            )?;
            for r in rows {
                writeln!(
                    out,
                    "| {} | {:.2} GiB | {:.2} B | {} | {} | {} | {} | {:.2} ± {:.2} | {:.3} | {:.2} | {} |",
                    r.model,
                    r.size_bytes as f64 / 1073741824.0,
                    r.params as f64 / 1e9,
                    r.types,
                    r.backend,
                    r.adapter,
                    r.label(),
                    r.tokens_per_second,
                    r.tokens_per_second_stddev,
                    r.bytes_per_token as f64 / 1e9,
                    r.effective_gbps,
                    r.percent_of_peak.map(|p| format!("{p:.1}")).unwrap_or_else(|| "-".into())
                )?;
            }
            print_profiles(&mut out, rows)?;
        }
    }
    Ok(())
}

/// Decode steps a tg profile times (from an empty context, as tg runs).
const PROFILE_MAX_STEPS: usize = 16;

/// One table per model: milliseconds per token of each test by kernel
/// family, heaviest first (by the model's first test).
fn print_profiles(out: &mut impl Write, rows: &[BenchRow]) -> Result<()> {
    let mut models: Vec<&str> = Vec::new();
    for r in rows {
        if !models.contains(&r.model.as_str()) {
            models.push(&r.model);
        }
    }
    for model in models {
        let tests: Vec<&BenchRow> = rows
            .iter()
            .filter(|r| r.model == model && r.profile_ms_per_token.is_some())
            .collect();
        let Some(first) = tests.first() else {
            continue;
        };
        let method = first.profile_method.as_deref().unwrap_or("");
        writeln!(
            out,
            "\nprofile of {model}, ms per token of each test ({method}; tg: first {PROFILE_MAX_STEPS} steps at most):\n"
        )?;
        let mut families: Vec<&String> = Vec::new();
        for r in &tests {
            for f in r
                .profile_ms_per_token
                .as_ref()
                .into_iter()
                .flat_map(|p| p.keys())
            {
                if !families.contains(&f) {
                    families.push(f);
                }
            }
        }
        let ms = |r: &BenchRow, f: &str| {
            r.profile_ms_per_token
                .as_ref()
                .and_then(|p| p.get(f).copied())
                .unwrap_or(0.0)
        };
        families.sort_by(|a, b| ms(first, b).total_cmp(&ms(first, a)));
        let header: String = tests
            .iter()
            .map(|r| format!(" {} | share |", r.label()))
            .collect();
        writeln!(out, "| kernel |{header}")?;
        writeln!(out, "| --- |{}", " ---: | ---: |".repeat(tests.len()))?;
        let totals: Vec<f64> = tests
            .iter()
            .map(|r| {
                r.profile_ms_per_token
                    .as_ref()
                    .map_or(0.0, |p| p.values().sum())
            })
            .collect();
        for f in families {
            let cells: String = tests
                .iter()
                .zip(&totals)
                .map(|(r, t)| format!(" {:.3} | {:.1}% |", ms(r, f), 100.0 * ms(r, f) / t))
                .collect();
            writeln!(out, "| {f} |{cells}")?;
        }
        let cells: String = totals.iter().map(|t| format!(" {t:.3} | |")).collect();
        writeln!(out, "| total |{cells}")?;
        let counts = |f: fn(&BenchRow) -> Option<String>| -> String {
            tests
                .iter()
                .map(|r| format!(" {} | |", f(r).unwrap_or_default()))
                .collect()
        };
        writeln!(
            out,
            "| dispatches per layer |{}",
            counts(|r| r.dispatches_per_layer.map(|d| d.to_string()))
        )?;
        writeln!(
            out,
            "| dispatches per token |{}",
            counts(|r| r.dispatches_per_token.map(|d| format!("{d:.1}")))
        )?;
        writeln!(
            out,
            "| submissions per token |{}",
            counts(|r| r.submissions_per_token.map(|d| format!("{d:.3}")))
        )?;
    }
    Ok(())
}
