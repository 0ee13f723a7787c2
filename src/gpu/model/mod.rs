//! The Llama forward pass on the GPU, for one or many sequences: buffers and
//! dispatches built once at load, one command buffer and one submission per
//! step.
//!
//! - [`weights`]: the weights, uploaded once, shared by every sequence;
//! - [`kv_cache`]: K and V for `n_slots` sequences of `n_ctx` positions;
//! - [`buffers`]: activations and outputs of the largest step;
//! - [`ops`]: the prepared dispatches, in the CPU reference's order;
//! - [`step`]: one step over tokens of several sequences, and its readback;
//! - [`profile`]: the same step with every dispatch timed.
//!
//! The single-sequence calls below (`forward`, `prefill`, ...) run slot 0
//! and keep its position; the engine's scheduler drives [`GpuModel::step`]
//! directly for many.

mod buffers;
mod kv_cache;
mod memory;
mod ops;
mod pipeline;
mod profile;
mod step;
mod weights;

use std::sync::Arc;

use anyhow::{bail, Result};

use super::kernels::CacheTypes;
use super::weights::GpuMatrix;
use super::Gpu;
use crate::gguf::Gguf;
use crate::model::{LlamaConfig, ModelWeights, RopeOverrides, Weight};
use buffers::{step_bytes, StepBuffers, MULTI_MAX};
use kv_cache::KvCache;
use ops::Ops;
pub use pipeline::PendingDecode;
pub use profile::Profile;
use step::SubmittedStep;
pub use step::{ChunkInput, DecodeInput, StepInput, StepOutput, TokenSource};
use weights::GpuWeights;

/// Options for loading a model onto the GPU.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// KV cache length of each slot (positions).
    pub n_ctx: usize,
    /// Most prompt tokens processed in one step (`--batch-size`); lowered if
    /// the device's binding limit requires it.
    pub n_batch: usize,
    /// Sequences the KV cache holds at once (`--parallel`).
    pub n_slots: usize,
    /// Cache types, RoPE overrides, memory budget.
    pub context: ContextOptions,
}

/// How the context is kept: the KV cache's types, RoPE, and the memory the
/// whole model may take.
#[derive(Clone, Debug, Default)]
pub struct ContextOptions {
    /// Element types of the KV cache (`-ctk`, `-ctv`).
    pub cache: CacheTypes,
    /// llama.cpp's `--rope-*` / `--yarn-*` overrides of the file's RoPE.
    pub rope: RopeOverrides,
    /// The GPU memory the model may use (`--gpu-memory`); `None`: no budget
    /// beyond the adapter's buffer and binding limits (wgpu does not expose
    /// an adapter's memory size or free memory).
    pub gpu_memory: Option<u64>,
}

/// Default prompt-processing batch: weights are read once per this many tokens.
pub const DEFAULT_BATCH: usize = 64;

/// Largest k the GPU top-k serves; samplers needing more read all logits.
pub const MAX_TOP_K: usize = 1024;

impl LoadOptions {
    pub fn new(n_ctx: usize) -> LoadOptions {
        LoadOptions {
            n_ctx,
            n_batch: DEFAULT_BATCH,
            n_slots: 1,
            context: ContextOptions::default(),
        }
    }
}

pub struct GpuModel {
    pub gpu: Arc<Gpu>,
    pub cfg: LlamaConfig,
    /// Positions per slot.
    pub n_ctx: usize,
    /// Prompt tokens per step.
    pub n_batch: usize,
    pub n_slots: usize,
    /// Position of slot 0 for the single-sequence calls.
    n_past: usize,
    /// Pipelined greedy steps of slot 0 not yet read back, oldest first.
    in_flight: std::collections::VecDeque<pipeline::Pending>,
    /// The greedy staging buffer the next pipelined step uses.
    next_staging: usize,
    /// A step from `decode_submit` is on the GPU, not yet collected.
    step_pending: bool,
    /// Bytes of weights on the GPU.
    pub weight_bytes: u64,
    pub kv_bytes: u64,
    embd_bytes: u64,
    embd_row_bytes: u64,
    // Field order is drop order: dispatches before the buffers they bind.
    ops: Ops,
    bufs: StepBuffers,
    cache: KvCache,
    _weights: GpuWeights,
}

/// Memory a model will take on the GPU, computed before uploading anything:
/// (weights, KV cache, scratch).
pub fn estimate_bytes(
    cfg: &LlamaConfig,
    w: &ModelWeights,
    n_ctx: usize,
    n_batch: usize,
    n_slots: usize,
    cache: CacheTypes,
) -> (u64, u64, u64) {
    let mat = |w: &Weight| GpuMatrix::gpu_bytes(w.ty, w.rows(), w.cols());
    let mut weights = mat(&w.token_embd) + (cfg.n_embd * 4) as u64;
    if !cfg.tied_embeddings {
        weights += mat(&w.output);
    }
    for l in &w.layers {
        weights += [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]
            .iter()
            .map(|w| mat(w))
            .sum::<u64>()
            + (2 * cfg.n_embd * 4) as u64;
    }
    let row = |t| super::kernels::cache_row_bytes(t, cfg.kv_dim() as u64);
    let position = row(cache.k) + row(cache.v);
    let kv = cfg.n_layer as u64 * n_slots as u64 * n_ctx as u64 * position;
    let (cap, head_cap) = capacities(n_batch, n_slots);
    // Step buffers, the RoPE table, the context-shift scratch.
    let scratch = step_bytes(cfg, cap, head_cap, n_slots, n_ctx)
        + (n_ctx * cfg.rope_dim * 4) as u64
        + n_ctx as u64 * row(cache.k).max(row(cache.v));
    (weights, kv, scratch)
}

/// Tokens a step may hold, and rows it may compute logits for: a prompt
/// chunk plus one decode token per slot, and at least what the few-token
/// kernel reads.
fn capacities(n_batch: usize, n_slots: usize) -> (usize, usize) {
    let cap = n_batch.max(n_slots).max(MULTI_MAX);
    (cap, cap)
}

impl GpuModel {
    pub fn load(
        gpu: Arc<Gpu>,
        g: &Gguf,
        opts: &LoadOptions,
        progress: &dyn Fn(u64, u64),
    ) -> Result<GpuModel> {
        let mut cfg = LlamaConfig::from_gguf(g)?;
        cfg.apply(&opts.context.rope).map_err(anyhow::Error::msg)?;
        let w = ModelWeights::resolve(g, &cfg)?;
        let (n_ctx, n_slots) = (opts.n_ctx, opts.n_slots);
        if n_ctx == 0 {
            bail!("context size must be at least 1");
        }
        if n_slots == 0 {
            bail!("--parallel must be at least 1");
        }
        if cfg.head_dim > 256 || cfg.head_dim % 8 != 0 {
            bail!(
                "head dimension {}: the attention kernels support multiples of 8 up to 256",
                cfg.head_dim
            );
        }
        let kv_plan = KvCache::plan(&cfg, n_ctx, n_slots, opts.context.cache, gpu.max_binding)?;
        let chunks = n_ctx.div_ceil(super::kernels::ATTN_CHUNK as usize) as u64;
        let partials = (n_slots as u64)
            .checked_mul(cfg.n_head as u64 * chunks * cfg.head_dim as u64 * 4)
            .filter(|&b| b <= gpu.max_binding);
        if partials.is_none() {
            bail!(
                "{n_slots} slots (--parallel) with a context of {n_ctx} (-c) need more attention scratch than the adapter's largest storage binding ({} bytes): use a smaller --parallel or -c",
                gpu.max_binding
            );
        }
        // Every step buffer (the widest: logits or the feed-forward
        // activations) must fit one binding.
        let per_token = (cfg.n_vocab.max(buffers::pad(cfg.n_ff)) * 4) as u64;
        let n_batch = opts
            .n_batch
            .clamp(1, ((gpu.max_binding / per_token.max(1)) as usize).max(1));
        let (cap, head_cap) = capacities(n_batch, n_slots);
        if (head_cap as u64) * per_token > gpu.max_binding {
            bail!(
                "{n_slots} slots (--parallel) need {} bytes of logits per step, more than the adapter's largest storage binding ({} bytes): use a smaller --parallel",
                head_cap as u64 * per_token,
                gpu.max_binding
            );
        }
        let (weight_bytes, kv_bytes, scratch) =
            estimate_bytes(&cfg, &w, n_ctx, n_batch, n_slots, opts.context.cache);
        debug_assert_eq!(kv_bytes, kv_plan.total_bytes);
        let total = weight_bytes + kv_bytes + scratch;
        tracing::info!(
            "GPU memory needed: {:.1} MiB (weights {:.1}, KV cache {:.1} for {n_slots} x {n_ctx} positions as K {} / V {}, scratch {:.1})",
            total as f64 / 1048576.0,
            weight_bytes as f64 / 1048576.0,
            kv_bytes as f64 / 1048576.0,
            opts.context.cache.k,
            opts.context.cache.v,
            scratch as f64 / 1048576.0
        );
        if let Some(budget) = opts.context.gpu_memory {
            if total > budget {
                let need = |n: usize, cache: CacheTypes| {
                    let (a, b, c) = estimate_bytes(&cfg, &w, n, n_batch, n_slots, cache);
                    a + b + c
                };
                bail!(
                    "{}",
                    memory::refusal(
                        &need,
                        n_ctx,
                        n_slots,
                        opts.context.cache,
                        cfg.head_dim % 32 == 0,
                        budget,
                        total
                    )
                );
            }
        }
        // Out-of-memory errors during upload are captured and reported with the estimate.
        let oom = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let built = (|| -> Result<GpuModel> {
            let weights =
                GpuWeights::load(&gpu, g, &w, cfg.tied_embeddings, weight_bytes, progress)?;
            let cache = KvCache::new(&gpu, &cfg, &kv_plan);
            let bufs = StepBuffers::new(&gpu, &cfg, cap, head_cap, n_slots, n_ctx);
            let ops = Ops::build(&gpu, &cfg, &weights, &cache, &bufs);
            let embd_bytes =
                GpuMatrix::gpu_bytes(w.token_embd.ty, w.token_embd.rows(), w.token_embd.cols());
            Ok(GpuModel {
                gpu: gpu.clone(),
                cfg: cfg.clone(),
                n_ctx,
                n_batch,
                n_slots,
                n_past: 0,
                in_flight: Default::default(),
                next_staging: 0,
                step_pending: false,
                weight_bytes,
                kv_bytes,
                embd_bytes,
                embd_row_bytes: embd_bytes / w.token_embd.rows() as u64,
                ops,
                bufs,
                cache,
                _weights: weights,
            })
        })();
        if let Some(e) = pollster::block_on(oom.pop()) {
            bail!(
                "the GPU '{}' ran out of memory loading the model: it needs about {:.2} GiB (weights {:.2} GiB, KV cache {:.2} GiB for {n_slots} x {n_ctx} positions); try a smaller --ctx-size, --parallel or quantization ({e})",
                gpu.info.name,
                total as f64 / 1073741824.0,
                weight_bytes as f64 / 1073741824.0,
                kv_bytes as f64 / 1073741824.0
            );
        }
        built
    }

    /// GPU bytes of the embedding matrix (a decode step reads one row of it,
    /// and all of it again as the output projection when embeddings are tied).
    pub fn token_embd_bytes(&self) -> u64 {
        self.embd_bytes
    }

    pub fn token_embd_row_bytes(&self) -> u64 {
        self.embd_row_bytes
    }

    /// KV cache bytes one position of one sequence takes (all layers, K and
    /// V): what attention reads per cached token.
    pub fn kv_bytes_per_position(&self) -> u64 {
        self.cfg.n_layer as u64 * (self.cache.k_row_bytes + self.cache.v_row_bytes)
    }

    /// Element types of the KV cache.
    pub fn cache_types(&self) -> crate::gpu::CacheTypes {
        self.cache.types
    }

    /// Positions slot 0 holds (single-sequence calls).
    pub fn n_past(&self) -> usize {
        self.n_past
    }

    /// Forgets slot 0's context (its KV entries are overwritten from position 0).
    pub fn reset(&mut self) {
        // Nothing may still write into the cache or a mapped buffer.
        let _ = self.greedy_discard();
        self.n_past = 0;
    }

    /// Context shift of `slot` holding `n_past` positions (llama.cpp's
    /// `--context-shift`): keeps the first `keep`, drops the `discard` after
    /// them and moves the rest down, re-rotating their keys on the GPU, so
    /// the slot then holds `n_past - discard` positions without
    /// re-processing any token.
    pub fn shift_slot(
        &mut self,
        slot: usize,
        n_past: usize,
        keep: usize,
        discard: usize,
    ) -> Result<()> {
        if slot >= self.n_slots {
            bail!("context shift: slot {slot} of {}", self.n_slots);
        }
        if self.greedy_in_flight() > 0 || self.step_pending {
            bail!("context shift while a pipelined step is in flight");
        }
        self.cache
            .shift(&self.gpu, &self.cfg, slot, n_past, keep, discard)
    }

    /// [`Self::shift_slot`] on slot 0 (single-sequence calls).
    pub fn shift(&mut self, keep: usize, discard: usize) -> Result<()> {
        self.shift_slot(0, self.n_past, keep, discard)?;
        self.n_past -= discard;
        Ok(())
    }

    /// Rewinds slot 0 to `n` positions (keeps its first `n` KV entries).
    pub fn truncate(&mut self, n: usize) {
        self.n_past = self.n_past.min(n);
    }

    /// Submits one decode token of slot 0 at its next position; the caller
    /// takes the position (`n_past`) once the step is accepted.
    fn submit1(
        &mut self,
        token: TokenSource,
        out: BatchOutput,
        profile: Option<&mut Profile>,
    ) -> Result<SubmittedStep> {
        let d = [DecodeInput {
            slot: 0,
            pos: self.n_past,
            token,
            out,
        }];
        self.submit_step(
            &StepInput {
                chunk: None,
                decode: &d,
            },
            profile,
        )
    }

    /// One decode token on slot 0.
    fn decode1(
        &mut self,
        token: TokenSource,
        out: BatchOutput,
        profile: Option<&mut Profile>,
    ) -> Result<Output> {
        let sub = self.submit1(token, out, profile)?;
        let o = self.collect_step(sub)?;
        self.n_past += 1;
        Ok(o.into_single_decode())
    }

    /// Runs one token and returns the logits (reads back the vocabulary's worth of floats).
    pub fn forward(&mut self, token: u32) -> Result<Vec<f32>> {
        self.decode1(TokenSource::Id(token), BatchOutput::LastLogits, None)?
            .into_logits()
    }

    /// Runs one token without producing output.
    pub fn feed(&mut self, token: u32) -> Result<()> {
        self.decode1(TokenSource::Id(token), BatchOutput::None, None)
            .map(|_| ())
    }

    /// Runs one token and returns the greedy next token; reads back 4 bytes.
    /// `None` continues from the token the previous greedy step chose, without
    /// the CPU ever sending it back.
    pub fn forward_greedy(&mut self, token: Option<u32>) -> Result<u32> {
        let src = token.map_or(TokenSource::PreviousArgmax(0), TokenSource::Id);
        self.decode1(src, BatchOutput::Greedy, None)?.token()
    }

    /// Runs one token and returns the `k` largest logits with their ids, best
    /// first (ties: lower id first); reads back `8 k` bytes. `k` is at most
    /// [`MAX_TOP_K`] (and the vocabulary).
    pub fn forward_top_k(&mut self, token: u32, k: usize) -> Result<Vec<(u32, f32)>> {
        self.decode1(TokenSource::Id(token), BatchOutput::TopK(k), None)?
            .into_top_k()
    }

    /// One greedy decode step with every dispatch timed. `token`: the input
    /// id, or `None` for the previous step's argmax.
    pub fn profile_decode(&mut self, token: Option<u32>) -> Result<Profile> {
        let mut p = Profile::default();
        let src = token.map_or(TokenSource::PreviousArgmax(0), TokenSource::Id);
        self.decode1(src, BatchOutput::Greedy, Some(&mut p))?;
        Ok(p)
    }

    /// Runs one step with every dispatch timed.
    pub fn profile_step(&mut self, s: &StepInput) -> Result<Profile> {
        let mut p = Profile::default();
        self.run_step(s, Some(&mut p))?;
        Ok(p)
    }

    /// Processes a prompt exactly as [`Self::prefill`] with a greedy head
    /// does (same chunks), with every dispatch timed; returns the sum.
    pub fn profile_prefill(&mut self, tokens: &[u32]) -> Result<Profile> {
        let mut p = Profile::default();
        self.prefill_with(tokens, BatchOutput::Greedy, Some(&mut p))?;
        Ok(p)
    }

    /// Processes prompt tokens on slot 0 in chunks of `n_batch` (weights
    /// read once per chunk, causal attention within it). `out` says what to
    /// return: nothing, the logits of the last position or of every position
    /// (`tokens.len() x n_vocab`, perplexity), or, for the last position, the
    /// greedy token or the top k chosen on the GPU.
    pub fn prefill(&mut self, tokens: &[u32], out: BatchOutput) -> Result<Output> {
        self.prefill_with(tokens, out, None)
    }

    fn prefill_with(
        &mut self,
        tokens: &[u32],
        out: BatchOutput,
        profile: Option<&mut Profile>,
    ) -> Result<Output> {
        if self.n_past + tokens.len() > self.n_ctx {
            bail!(
                "{} tokens do not fit in the context of {} ({} used)",
                tokens.len(),
                self.n_ctx,
                self.n_past
            );
        }
        let o = self.prefill_at(0, self.n_past, tokens, out, profile)?;
        self.n_past += tokens.len();
        Ok(o)
    }

    /// Processes prompt tokens at positions `pos..` of `slot`, in chunks of
    /// `n_batch`; `out` as for [`Self::prefill`].
    pub fn prefill_at(
        &mut self,
        slot: usize,
        pos: usize,
        tokens: &[u32],
        out: BatchOutput,
        mut profile: Option<&mut Profile>,
    ) -> Result<Output> {
        if tokens.is_empty() {
            bail!("nothing to process");
        }
        let all_rows = out.is_all();
        let mut all = Vec::new();
        let mut last_out = Output::Nothing;
        let n_chunks = tokens.len().div_ceil(self.n_batch);
        for (ci, chunk) in tokens.chunks(self.n_batch).enumerate() {
            let last = ci + 1 == n_chunks;
            let o = self.run_step(
                &StepInput {
                    chunk: Some(ChunkInput {
                        slot,
                        pos: pos + ci * self.n_batch,
                        tokens: chunk,
                        out: if all_rows || last {
                            out
                        } else {
                            BatchOutput::None
                        },
                    }),
                    decode: &[],
                },
                profile.as_deref_mut(),
            )?;
            if all_rows {
                match o.chunk {
                    Output::Logits(v) | Output::Hidden(v) => all.extend(v),
                    other => bail!("expected every row of the chunk, got {other:?}"),
                }
            } else if last {
                last_out = o.chunk;
            }
        }
        Ok(match out {
            BatchOutput::AllLogits => Output::Logits(all),
            BatchOutput::AllHidden => Output::Hidden(all),
            _ => last_out,
        })
    }

    /// Processes a prompt and returns the greedy next token (4-byte readback).
    pub fn prefill_greedy(&mut self, tokens: &[u32]) -> Result<u32> {
        self.prefill(tokens, BatchOutput::Greedy)?.token()
    }
}

/// What a step returned to the CPU for one sequence.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Nothing,
    Logits(Vec<f32>),
    Token(u32),
    /// `(id, logit)`, best first (ties: lower id first).
    TopK(Vec<(u32, f32)>),
    /// Final-normed hidden states, `n_embd` per row (embeddings).
    Hidden(Vec<f32>),
}

impl Output {
    pub fn into_logits(self) -> Result<Vec<f32>> {
        match self {
            Output::Logits(l) => Ok(l),
            other => bail!("expected logits from the GPU step, got {other:?}"),
        }
    }

    pub fn token(self) -> Result<u32> {
        match self {
            Output::Token(t) => Ok(t),
            other => bail!("expected a token from the GPU step, got {other:?}"),
        }
    }

    pub fn into_hidden(self) -> Result<Vec<f32>> {
        match self {
            Output::Hidden(h) => Ok(h),
            other => bail!("expected hidden states from the GPU step, got {other:?}"),
        }
    }

    pub fn into_top_k(self) -> Result<Vec<(u32, f32)>> {
        match self {
            Output::TopK(t) => Ok(t),
            other => bail!("expected top-k from the GPU step, got {other:?}"),
        }
    }
}

/// What a step produces for a sequence's last position (or all of a chunk's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchOutput {
    /// Nothing (the KV cache is filled).
    None,
    /// The logits of the last position.
    LastLogits,
    /// The greedy token after the last position, chosen on the GPU.
    Greedy,
    /// The k largest logits of the last position, selected on the GPU.
    TopK(usize),
    /// The logits of every position of a chunk (perplexity).
    AllLogits,
    /// The last position's hidden state after the final norm, before the
    /// output projection (llama.cpp's embedding of a token).
    LastHidden,
    /// The hidden state of every position of a chunk (mean pooling).
    AllHidden,
}

impl BatchOutput {
    /// One output row per position of a chunk, not only the last one.
    pub fn is_all(self) -> bool {
        matches!(self, BatchOutput::AllLogits | BatchOutput::AllHidden)
    }
}
