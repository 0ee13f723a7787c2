//! Text generation: a model on the GPU, its tokenizer, prompt processing,
//! sampling, stop conditions and timings.

pub mod embedding;
pub mod grammar;
pub mod json_output;
pub mod perplexity;
pub mod sampler;
pub mod scheduler;
mod sequence;
pub mod slots;
mod step;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use crate::gguf::Gguf;
use crate::gpu::{
    BatchOutput, ContextOptions, Gpu, GpuModel, GpuOptions, LoadOptions, Output, MAX_TOP_K,
};
use crate::model::LlamaConfig;
use crate::tokenizer::{StreamDecoder, Tokenizer};
pub use embedding::{normalize, Pooling};
use json_output::JsonConstraint;
pub use json_output::OutputFormat;
pub use sampler::{Sampler, SamplerParams};
pub use scheduler::{
    Event, Finished, Request, RequestHandle, Scheduler, SchedulerOptions, SchedulerStats,
    SubmitError, TokenEvent, TokenLogprob,
};

/// Default KV cache length when the user does not choose one: the model's
/// training context, capped so a small GPU is not filled by the cache alone.
pub const DEFAULT_CTX: usize = 4096;

pub struct EngineOptions {
    /// A GGUF file or a Hugging Face model folder.
    pub model: PathBuf,
    /// Adapters to merge and quantization to apply at load.
    pub load: crate::hf::LoadSpec,
    pub gpu: GpuOptions,
    /// KV cache length; `None`: the model's training context, at most
    /// [`DEFAULT_CTX`]; 0: the whole training context.
    pub n_ctx: Option<usize>,
    /// Prompt tokens per batched step (`None`: the default).
    pub n_batch: Option<usize>,
    /// Sequence slots in the KV cache (`--parallel`), each of `n_ctx` positions.
    pub n_parallel: usize,
    /// KV cache types, RoPE overrides, memory budget.
    pub context: ContextOptions,
    /// No progress bar.
    pub quiet: bool,
}

pub struct Engine {
    pub model: GpuModel,
    pub tokenizer: Arc<Tokenizer>,
    pub gguf: Gguf,
    pub path: PathBuf,
    pub load_seconds: f64,
    /// Which KV-cache slots a sequence holds, and what free ones still cache.
    slots: slots::SlotTable,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub load_ms: f64,
    pub prompt_tokens: usize,
    pub prompt_ms: f64,
    pub prompt_tokens_per_second: f64,
    /// Decode steps after the prompt (each yields one more token).
    pub generated_tokens: usize,
    pub generation_ms: f64,
    pub generation_tokens_per_second: f64,
}

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// `None`: until an end-of-generation token, a stop string or a full context.
    pub n_predict: Option<usize>,
    pub sampler: SamplerParams,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
    /// Also return the K best raw logits at every generated position.
    pub top_logits: usize,
    /// llama.cpp's `--context-shift`: when the context is full, keep this
    /// many first positions, drop half of the rest and go on (`None`: stop
    /// with [`StopReason::ContextFull`]).
    pub context_shift: Option<usize>,
    /// JSON mode: the reply is one JSON object (see [`json_output`]).
    pub format: OutputFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndOfGeneration,
    StopString,
    Length,
    ContextFull,
    Interrupted,
}

#[derive(Clone, Debug, Serialize)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    pub generated_ids: Vec<u32>,
    pub text: String,
    pub stop_reason: StopReason,
    pub timings: Timings,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_logits: Option<Vec<Vec<(u32, f32)>>>,
    /// Context shifts, in order: (positions kept, positions dropped after them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub context_shifts: Vec<(usize, usize)>,
}

/// The K largest logits, best first (ties: lower id first).
pub fn top_k_logits(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let all: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, l))
        .collect();
    top_k_logits_of(&all, k)
}

/// The K best `(id, logit)` pairs of `cand`, best first (ties: lower id first).
pub fn top_k_logits_of(cand: &[(u32, f32)], k: usize) -> Vec<(u32, f32)> {
    let mut v = cand.to_vec();
    let k = k.min(v.len());
    if k == 0 {
        return Vec::new();
    }
    v.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(k);
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// Holds back streamed text that might be the start of a stop string.
struct StopFilter {
    stops: Vec<String>,
    pending: String,
    /// The stop string that ended the text, once one has.
    matched: Option<String>,
}

impl StopFilter {
    pub(crate) fn new(stops: &[String]) -> StopFilter {
        StopFilter {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            pending: String::new(),
            matched: None,
        }
    }

    /// Adds text; returns what can be emitted now and whether a stop string was completed.
    fn push(&mut self, text: &str) -> (String, bool) {
        self.pending.push_str(text);
        // The earliest match wins; at one position, the first listed.
        if let Some((at, s)) = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|&(at, _)| at)
        {
            let out = self.pending[..at].to_string();
            self.matched = Some(s.clone());
            self.pending.clear();
            return (out, true);
        }
        // Keep the longest suffix that is a prefix of some stop string.
        let mut keep = 0;
        for s in &self.stops {
            for (i, _) in s.char_indices().skip(1) {
                if self.pending.ends_with(&s[..i]) {
                    keep = keep.max(i);
                }
            }
        }
        let cut = self.pending.len() - keep;
        let out = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        (out, false)
    }

    fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

fn progress_bar(quiet: bool, total: u64) -> Option<indicatif::ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new(total);
    pb.set_style(
        indicatif::ProgressStyle::with_template("loading {bar:40} {bytes}/{total_bytes} ({eta})")
            .expect("valid template"),
    );
    Some(pb)
}

impl Engine {
    pub fn load(opts: &EngineOptions) -> Result<Engine> {
        let start = Instant::now();
        let path = opts.model.as_path();
        let gguf = open_model_with(path, &opts.load)?;
        let cfg = LlamaConfig::from_gguf(&gguf).with_context(|| path.display().to_string())?;
        let tokenizer = Tokenizer::from_gguf(&gguf).with_context(|| path.display().to_string())?;
        // A token id past the embedding would read another tensor's bytes (or
        // out of bounds) on the GPU and index past the logits on the CPU.
        if tokenizer.vocab_size() > cfg.n_vocab {
            bail!(
                "{}: the vocabulary has {} tokens but the model has only {} (token_embd.weight / llama.vocab_size)",
                path.display(),
                tokenizer.vocab_size(),
                cfg.n_vocab
            );
        }
        let n_ctx = match opts.n_ctx {
            None => cfg.n_ctx_train.min(DEFAULT_CTX),
            Some(0) => cfg.n_ctx_train,
            Some(n) => n,
        };
        let gpu = Gpu::new(&opts.gpu)?;
        let pb = progress_bar(opts.quiet, 1);
        let on_progress = |done: u64, total: u64| {
            if let Some(pb) = &pb {
                pb.set_length(total);
                pb.set_position(done);
            }
        };
        let model = GpuModel::load(
            gpu,
            &gguf,
            &LoadOptions {
                n_slots: opts.n_parallel.max(1),
                n_ctx,
                n_batch: opts.n_batch.unwrap_or(crate::gpu::DEFAULT_BATCH),
                context: opts.context.clone(),
            },
            &on_progress,
        )
        .with_context(|| path.display().to_string())?;
        if let Some(pb) = pb {
            pb.finish_and_clear();
        }
        Ok(Engine {
            model,
            tokenizer: Arc::new(tokenizer),
            gguf,
            path: path.to_path_buf(),
            load_seconds: start.elapsed().as_secs_f64(),
            slots: slots::SlotTable::new(opts.n_parallel),
        })
    }

    /// Tokenizes a prompt as llama.cpp does (BOS if the vocabulary asks, special tokens parsed).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.tokenizer.encode(text, true, true)?)
    }

    /// Processes `new_tokens` after what the KV cache already holds and
    /// generates a continuation. `on_text` receives text as it is produced and
    /// returns false to stop early.
    pub fn generate(
        &mut self,
        new_tokens: &[u32],
        opts: &GenerateOptions,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generation> {
        if new_tokens.is_empty() {
            bail!("empty prompt: nothing to continue from");
        }
        let n_ctx = self.model.n_ctx;
        if self.model.n_past() + new_tokens.len() > n_ctx {
            bail!(
                "prompt of {} tokens does not fit in the context of {n_ctx} tokens ({} already used); raise --ctx-size",
                new_tokens.len(),
                self.model.n_past()
            );
        }
        // Plain greedy decoding never sends the token back to the GPU.
        let greedy_on_gpu = opts.sampler.is_greedy()
            && !opts.sampler.has_penalties()
            && opts.top_logits == 0
            && opts.format.is_text();
        let mut dec = Decoding::new(opts, new_tokens);

        let t0 = Instant::now();
        // The whole prompt in batches: weights are read once per batch, not per token.
        let mut next = if greedy_on_gpu {
            self.model.prefill_greedy(new_tokens)?
        } else {
            let out = self.model.prefill(new_tokens, dec.readback())?;
            dec.choose(out, &self.tokenizer)?
        };
        let prompt_s = t0.elapsed().as_secs_f64();

        let mut generated = Vec::new();
        let mut text = String::new();
        let mut stream = StreamDecoder::continuation(&self.tokenizer);
        let mut stop = StopFilter::new(&opts.stop);
        let t1 = Instant::now();
        let mut steps = 0usize;
        let mut shifts = Vec::new();
        let reason = loop {
            if greedy_on_gpu && self.model.greedy_in_flight() == 0 {
                // The step after `next` runs while the CPU looks at `next`
                // (pipelined: its id is read back only after the checks).
                // Past an end of generation it is discarded below.
                if make_room(&mut self.model, opts, &mut shifts)? {
                    self.model.greedy_submit(None)?;
                }
            }
            if !opts.ignore_eos && self.tokenizer.is_end_of_generation(next) {
                break StopReason::EndOfGeneration;
            }
            generated.push(next);
            dec.recent.push(next);
            // JSON mode ends with the reply's object, as if the model had ended it.
            let closed = dec.json.as_ref().is_some_and(|j| j.is_done());
            let last = closed || opts.n_predict.is_some_and(|n| generated.len() >= n);
            // Sampled decoding: the step for `next` runs on the GPU while
            // the CPU streams and checks its text below.
            let mut pending = None;
            if !greedy_on_gpu && !last && make_room(&mut self.model, opts, &mut shifts)? {
                pending = Some(self.model.decode_submit(next, dec.readback())?);
            }
            let (out, hit) = stop.push(&stream.push(next));
            text.push_str(&out);
            let keep_going = out.is_empty() || on_text(&out);
            let stopped = if hit {
                Some(StopReason::StopString)
            } else if !keep_going {
                Some(StopReason::Interrupted)
            } else if closed {
                Some(StopReason::EndOfGeneration)
            } else if last {
                Some(StopReason::Length)
            } else {
                None
            };
            if let Some(reason) = stopped {
                if let Some(p) = pending {
                    self.model.decode_discard(p)?;
                }
                break reason;
            }
            next = if greedy_on_gpu {
                if self.model.greedy_in_flight() == 0 {
                    break StopReason::ContextFull;
                }
                self.model.greedy_collect()?
            } else {
                let Some(p) = pending else {
                    break StopReason::ContextFull;
                };
                let out = self.model.decode_collect(p)?;
                dec.choose(out, &self.tokenizer)?
            };
            steps += 1;
        };
        // A step submitted for a token that ended generation is not part of it.
        self.model.greedy_discard()?;
        let gen_s = t1.elapsed().as_secs_f64();
        if reason != StopReason::StopString {
            let tail = stream.finish();
            let (out, _) = stop.push(&tail);
            let rest = out + &stop.finish();
            if !rest.is_empty() {
                on_text(&rest);
            }
            text.push_str(&rest);
        }
        // The last sampled position belongs to no generated token when generation stopped on it.
        let mut top_logits = dec.top_logits;
        top_logits.truncate(generated.len().max(1));
        let rate = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
        Ok(Generation {
            prompt_ids: new_tokens.to_vec(),
            generated_ids: generated,
            text,
            stop_reason: reason,
            timings: Timings {
                load_ms: self.load_seconds * 1e3,
                prompt_tokens: new_tokens.len(),
                prompt_ms: prompt_s * 1e3,
                prompt_tokens_per_second: rate(new_tokens.len(), prompt_s),
                generated_tokens: steps,
                generation_ms: gen_s * 1e3,
                generation_tokens_per_second: rate(steps, gen_s),
            },
            top_logits: (opts.top_logits > 0).then_some(top_logits),
            context_shifts: shifts,
        })
    }
}

/// Makes room for one more position in slot 0: true if there is (after a
/// context shift when the window is full and `opts` allows it).
fn make_room(
    model: &mut GpuModel,
    opts: &GenerateOptions,
    shifts: &mut Vec<(usize, usize)>,
) -> Result<bool> {
    let n_ctx = model.n_ctx;
    if model.n_past() < n_ctx {
        return Ok(true);
    }
    let Some(keep) = opts.context_shift else {
        return Ok(false);
    };
    let (keep, discard) = shift_split(keep, n_ctx);
    model.shift(keep, discard)?;
    tracing::info!(
        "context shift: kept the first {keep} positions, dropped the next {discard}, moved {} down (keys re-rotated on the GPU)",
        n_ctx - keep - discard
    );
    shifts.push((keep, discard));
    Ok(true)
}

/// Positions of a prompt `ids` that a context shift asked to keep `keep`
/// keeps (llama.cpp's `--keep`): BOS, if the prompt starts with it, then
/// `keep` more (-1: the whole prompt), at most the prompt.
pub fn keep_positions(ids: &[u32], bos: Option<u32>, keep: i64) -> usize {
    let bos = usize::from(bos.is_some() && ids.first() == bos.as_ref());
    if keep < 0 {
        ids.len()
    } else {
        (keep as usize).saturating_add(bos).min(ids.len())
    }
}

/// llama.cpp's context shift of a full window of `n_ctx` positions asked to
/// keep `keep`: (positions kept, positions dropped after them), half of the
/// rest dropped, and at least one position freed.
pub(crate) fn shift_split(keep: usize, n_ctx: usize) -> (usize, usize) {
    let keep = keep.min(n_ctx - 2);
    (keep, (n_ctx - keep) / 2)
}

/// The sampling side of one generation: the sampler, the ids its
/// penalties see, JSON mode's constraint and the `--top-logits` record.
struct Decoding<'o> {
    opts: &'o GenerateOptions,
    sampler: Sampler,
    /// Prompt and generated ids (the repetition penalty's window).
    recent: Vec<u32>,
    json: Option<JsonConstraint>,
    top_logits: Vec<Vec<(u32, f32)>>,
}

impl<'o> Decoding<'o> {
    fn new(opts: &'o GenerateOptions, prompt: &[u32]) -> Decoding<'o> {
        Decoding {
            opts,
            sampler: Sampler::new(opts.sampler.clone()),
            recent: prompt.to_vec(),
            json: opts.format.constraint(),
            top_logits: Vec::new(),
        }
    }

    /// What a sampling step reads back: the best n logits selected on the
    /// GPU when the sampler (and `--top-logits`) need no more, else all of
    /// them. JSON mode needs every logit, for when the drawn token does not
    /// fit.
    fn readback(&self) -> BatchOutput {
        if !self.opts.format.is_text() {
            return BatchOutput::LastLogits;
        }
        readback_for(&self.sampler, &self.recent, self.opts.top_logits)
    }

    /// Records the raw top logits if asked for, then samples.
    fn choose(&mut self, out: Output, tok: &Tokenizer) -> Result<u32> {
        let cand = match out {
            Output::TopK(best) => best,
            Output::Logits(l) => l.iter().enumerate().map(|(i, &v)| (i as u32, v)).collect(),
            other => bail!("unexpected GPU step output {other:?}"),
        };
        if self.opts.top_logits > 0 {
            self.top_logits
                .push(top_k_logits_of(&cand, self.opts.top_logits));
        }
        let (sampler, recent) = (&mut self.sampler, &self.recent);
        match &mut self.json {
            Some(j) => j.choose(tok, cand, |c| sampler.sample_from(c, recent)),
            None => Ok(sampler.sample_from(cand, recent)),
        }
    }
}

/// As [`Decoding::readback`], with `extra` best logits wanted besides the sampler's.
pub(crate) fn readback_for(sampler: &Sampler, recent: &[u32], extra: usize) -> BatchOutput {
    match sampler.candidates_needed(recent) {
        Some(n) if n.max(extra) <= MAX_TOP_K => BatchOutput::TopK(n.max(extra)),
        _ => BatchOutput::LastLogits,
    }
}

/// Opens a model (a GGUF file or a Hugging Face folder) with an error a person can act on.
pub fn open_model(path: &Path) -> Result<Gguf> {
    open_model_with(path, &crate::hf::LoadSpec::default())
}

/// [`open_model`], then LoRA adapters merged and quantization applied.
pub fn open_model_with(path: &Path, spec: &crate::hf::LoadSpec) -> Result<Gguf> {
    crate::hf::open(path, spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut f = StopFilter::new(&stops);
        let mut out = String::new();
        for p in pieces {
            let (o, hit) = f.push(p);
            out.push_str(&o);
            if hit {
                return (out, true);
            }
        }
        out.push_str(&f.finish());
        (out, false)
    }

    #[test]
    fn stop_strings_cut_the_text_even_across_pieces() {
        assert_eq!(
            run(&["\n\n"], &["Paris.", "\n", "\nThe"]),
            ("Paris.".into(), true)
        );
        assert_eq!(
            run(&["END"], &["abc E", "N", "D more"]),
            ("abc ".into(), true)
        );
        // A held-back prefix that never completes is released at the end.
        assert_eq!(run(&["END"], &["abc E", "N"]), ("abc EN".into(), false));
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn the_stop_string_that_matched_is_recorded() {
        let matched = |stops: &[&str], text: &str| {
            let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
            let mut f = StopFilter::new(&stops);
            let (out, hit) = f.push(text);
            assert!(hit);
            (out, f.matched.unwrap())
        };
        // The earliest in the text, whatever the list's order.
        assert_eq!(
            matched(&["D", "END"], "the END"),
            ("the ".into(), "END".into())
        );
        // At one position, the first listed.
        assert_eq!(matched(&["ab", "a"], "xab"), ("x".into(), "ab".into()));
        assert_eq!(matched(&["a", "ab"], "xab"), ("x".into(), "a".into()));
    }

    #[test]
    fn top_k_logits_are_sorted_best_first() {
        let l = [0.5, 3.0, -1.0, 3.0, 2.0];
        assert_eq!(top_k_logits(&l, 3), vec![(1, 3.0), (3, 3.0), (4, 2.0)]);
        assert_eq!(top_k_logits(&l, 10).len(), 5);
    }
}
