//! Many requests, one GPU: a queue of requests and the engine thread that
//! runs them. Free of HTTP: the server, `bench --parallel` and tests use it
//! the same way.
//!
//! A request goes in with [`Scheduler::submit`]; its tokens come back as
//! [`Event`]s on a channel. Dropping the [`RequestHandle`] cancels it, and
//! its slot is free for the next request at the next step.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::embedding::Pooling;
use super::json_output::OutputFormat;
use super::sequence::{SeqOutput, Sequence};
use super::{Engine, SamplerParams, StopReason};
use crate::tokenizer::Tokenizer;

/// Largest `logprobs` a request may ask for (OpenAI's limit).
pub const MAX_LOGPROBS: usize = 20;

#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// Sequence slots decoded together (`--parallel`); each slot has `n_ctx` positions.
    pub n_parallel: usize,
    /// Requests that may wait for a slot; one more is refused with [`SubmitError::QueueFull`].
    pub queue_capacity: usize,
}

#[derive(Clone, Debug)]
pub struct Request {
    /// Token ids, already tokenized (BOS and chat template applied by the caller).
    pub prompt: Vec<u32>,
    pub sampler: SamplerParams,
    /// `None`: until an end-of-generation token, a stop string or a full context.
    pub n_predict: Option<usize>,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
    /// `Some(k)` (k <= [`MAX_LOGPROBS`]): every token event carries the
    /// token's log-probability (log-softmax of the raw logits) and the k best
    /// alternatives.
    pub logprobs: Option<usize>,
    /// llama-server's `--context-shift` for this request: when its slot is
    /// full, keep the first `k` positions and drop half of the rest (as
    /// [`super::GenerateOptions::context_shift`]); `None`: the request ends
    /// with [`StopReason::ContextFull`].
    pub context_shift: Option<usize>,
    /// llama-server's `cache_prompt`: start from the prompt tokens a free
    /// slot still holds from an earlier request (see [`super::slots`]).
    /// Off, every prompt token is processed: the reply does not depend on
    /// what ran before (reused positions were computed by other kernels, in
    /// other chunks, so logits can differ in the last bits).
    pub cache_prompt: bool,
    /// JSON mode: the reply is one JSON object (see [`super::json_output`]).
    pub format: OutputFormat,
    /// Control tokens whose text the reply keeps (llama-server's preserved
    /// tokens: Mistral's `[TOOL_CALLS]`, which the server reads calls after);
    /// others print nothing, as in llama.cpp's generated text.
    pub shown_tokens: Vec<u32>,
    /// An embedding request: the prompt is processed and its final hidden
    /// states pooled into [`Finished::embedding`]; nothing is generated,
    /// and the sampling fields are unused.
    pub embed: Option<Pooling>,
}

impl Request {
    /// A request for the embedding of `prompt` (see [`Request::embed`]).
    pub fn embedding(prompt: Vec<u32>, pooling: Pooling) -> Request {
        Request {
            prompt,
            sampler: SamplerParams::default(),
            n_predict: Some(0),
            stop: Vec::new(),
            ignore_eos: false,
            logprobs: None,
            context_shift: None,
            // Every position is computed afresh: the vector does not depend
            // on what the slot held before.
            cache_prompt: false,
            format: OutputFormat::Text,
            embed: Some(pooling),
            shown_tokens: Vec::new(),
        }
    }
}

#[derive(Clone, Debug)]
pub enum Event {
    /// One generated token. `text` is what this token completes; it may be
    /// empty (an unfinished UTF-8 character, or text held back because it
    /// may start a stop string). Held-back text is flushed in the last token
    /// event before `Done`; a matched stop string is never sent.
    Token(TokenEvent),
    Done(Finished),
    /// The request failed; no more events follow.
    Error(String),
}

#[derive(Clone, Debug)]
pub struct TokenEvent {
    pub id: u32,
    pub text: String,
    pub logprob: Option<TokenLogprob>,
}

#[derive(Clone, Debug)]
pub struct TokenLogprob {
    pub logprob: f32,
    /// `(id, logprob)`, best first.
    pub top: Vec<(u32, f32)>,
}

#[derive(Clone, Debug)]
pub struct Finished {
    pub reason: StopReason,
    /// The whole prompt, cached tokens included.
    pub prompt_tokens: usize,
    /// Prompt tokens a slot already held (not processed again).
    pub cached_tokens: usize,
    pub completion_tokens: usize,
    /// From the request's first prompt step to its first token.
    pub prompt_ms: f64,
    /// From the first token to the end.
    pub generation_ms: f64,
    /// The stop string that ended the reply ([`StopReason::StopString`]).
    pub stop_word: Option<String>,
    /// An embedding request's vectors (one, or one per token for
    /// [`Pooling::None`]), not normalized; empty for a generation.
    pub embedding: Vec<Vec<f32>>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the request queue is full; retry later")]
    QueueFull,
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the prompt has {prompt} tokens; a slot holds {n_ctx} (prompt and reply together)")]
    PromptTooLong { prompt: usize, n_ctx: usize },
    #[error("a request asked for {0} logprobs; at most {MAX_LOGPROBS}")]
    TooManyLogprobs(usize),
    #[error("the server is shutting down")]
    ShuttingDown,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SchedulerStats {
    pub n_parallel: usize,
    /// Slots generating or processing their prompt.
    pub active: usize,
    pub queued: usize,
    /// Finished requests, whatever the reason.
    pub requests_total: u64,
    /// Prompt tokens processed (cached ones not counted).
    pub prompt_tokens_total: u64,
    /// Prompt tokens taken from a slot's cache.
    pub prompt_tokens_cached_total: u64,
    pub generated_tokens_total: u64,
    pub steps_total: u64,
    /// Every KV slot, as of the last step.
    pub slots: Vec<SlotStats>,
}

/// One KV slot (llama-server's `/slots`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct SlotStats {
    pub id: usize,
    /// The request it serves (`RequestHandle::id`); `None`: free.
    pub task: Option<u64>,
    /// Positions it holds: a request's so far, or what a free slot kept
    /// for the prompt cache.
    pub n_past: usize,
    /// The request's prompt tokens and tokens generated so far.
    pub n_prompt: usize,
    pub n_decoded: usize,
}

/// A submitted request. Dropping it (or [`RequestHandle::cancel`]) cancels the request.
pub struct RequestHandle {
    pub id: u64,
    pub events: UnboundedReceiver<Event>,
    cancel: Arc<AtomicBool>,
}

impl RequestHandle {
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

impl Drop for RequestHandle {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// A request on its way: what the engine thread needs to run and answer it.
pub(crate) struct Job {
    pub id: u64,
    pub req: Request,
    pub tx: UnboundedSender<Event>,
    pub cancel: Arc<AtomicBool>,
    pub submitted: Instant,
}

impl Job {
    /// Cancelled by the client, or nobody is listening any more.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed) || self.tx.is_closed()
    }
}

struct Shared {
    queue: Mutex<VecDeque<Job>>,
    wake: Condvar,
    stats: Mutex<SchedulerStats>,
    shutting_down: AtomicBool,
    next_id: AtomicU64,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Cheap to clone; every clone talks to the same engine thread.
#[derive(Clone)]
pub struct Scheduler {
    shared: Arc<Shared>,
    tokenizer: Arc<Tokenizer>,
    n_ctx: usize,
    opts: SchedulerOptions,
}

impl Scheduler {
    /// Moves the engine into its own thread, which runs the steps.
    pub fn start(engine: Engine, opts: SchedulerOptions) -> Result<Scheduler> {
        if opts.n_parallel == 0 {
            anyhow::bail!("--parallel must be at least 1");
        }
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
            stats: Mutex::new(SchedulerStats {
                n_parallel: opts.n_parallel,
                ..Default::default()
            }),
            shutting_down: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            thread: Mutex::new(None),
        });
        let tokenizer = engine.tokenizer.clone();
        let n_ctx = engine.model.n_ctx;
        let s = shared.clone();
        let n_parallel = opts.n_parallel;
        let thread = std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || engine_loop(engine, &s, n_parallel))?;
        *shared.thread.lock().expect("not poisoned") = Some(thread);
        Ok(Scheduler {
            shared,
            tokenizer,
            n_ctx,
            opts,
        })
    }

    pub fn submit(&self, req: Request) -> Result<RequestHandle, SubmitError> {
        if self.shared.shutting_down.load(Ordering::Relaxed) {
            return Err(SubmitError::ShuttingDown);
        }
        if req.prompt.is_empty() {
            return Err(SubmitError::EmptyPrompt);
        }
        // A reply needs at least one position after the prompt; an
        // embedding only the prompt's.
        let room = self.n_ctx - usize::from(req.embed.is_none());
        if req.prompt.len() > room {
            return Err(SubmitError::PromptTooLong {
                prompt: req.prompt.len(),
                n_ctx: self.n_ctx,
            });
        }
        if let Some(k) = req.logprobs.filter(|&k| k > MAX_LOGPROBS) {
            return Err(SubmitError::TooManyLogprobs(k));
        }
        let (tx, events) = unbounded_channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut q = self.shared.queue.lock().expect("not poisoned");
            let waiting = q.len();
            let active = self.shared.stats.lock().expect("not poisoned").active;
            // Free slots take requests at once; beyond them the queue is bounded.
            if waiting + active >= self.opts.n_parallel + self.opts.queue_capacity {
                return Err(SubmitError::QueueFull);
            }
            q.push_back(Job {
                id,
                req,
                tx,
                cancel: cancel.clone(),
                submitted: Instant::now(),
            });
        }
        self.shared.wake.notify_one();
        Ok(RequestHandle { id, events, cancel })
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    /// Context positions per slot.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    pub fn stats(&self) -> SchedulerStats {
        let mut s = self.shared.stats.lock().expect("not poisoned").clone();
        s.queued = self.shared.queue.lock().expect("not poisoned").len();
        s
    }

    /// Refuses new requests, lets the ones in flight (and queued) finish,
    /// and joins the engine thread.
    pub fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
        let thread = self.shared.thread.lock().expect("not poisoned").take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// Every slot: the sequence in it, or what it keeps for the prompt cache.
fn slot_stats(engine: &Engine, running: &[Sequence]) -> Vec<SlotStats> {
    (0..engine.slots())
        .map(|id| match running.iter().find(|s| s.slot == id) {
            Some(s) => SlotStats {
                id,
                task: Some(s.task()),
                n_past: s.n_past(),
                n_prompt: s.prompt_len(),
                n_decoded: s.generated(),
            },
            None => SlotStats {
                id,
                n_past: engine.cached_len(id),
                ..SlotStats::default()
            },
        })
        .collect()
}

/// The engine thread: takes queued jobs into free slots and runs steps until
/// shut down with nothing left to do.
fn engine_loop(mut engine: Engine, shared: &Shared, n_parallel: usize) {
    let tokenizer = engine.tokenizer.clone();
    let n_embd = engine.model.cfg.n_embd;
    let mut running: Vec<Sequence> = Vec::new();
    shared.stats.lock().expect("not poisoned").slots = slot_stats(&engine, &running);
    loop {
        {
            let mut q = shared.queue.lock().expect("not poisoned");
            while running.is_empty() && q.is_empty() {
                if shared.shutting_down.load(Ordering::Relaxed) {
                    return;
                }
                q = shared.wake.wait(q).expect("not poisoned");
            }
            while running.len() < n_parallel.min(engine.slots()) {
                let Some(job) = q.pop_front() else { break };
                if job.cancelled() {
                    continue;
                }
                let reuse = job.req.cache_prompt && job.req.embed.is_none();
                match engine.claim_slot(&job.req.prompt, reuse) {
                    Some(grant) => running.push(Sequence::new(job, grant, &tokenizer, n_embd)),
                    None => {
                        q.push_front(job);
                        break;
                    }
                }
            }
            let mut stats = shared.stats.lock().expect("not poisoned");
            stats.active = running.len();
            stats.slots = slot_stats(&engine, &running);
        }
        if running.is_empty() {
            continue;
        }
        let outputs = engine.step_sequences(&mut running);
        let mut stats = shared.stats.lock().expect("not poisoned");
        stats.steps_total += 1;
        match outputs {
            Ok(outs) => {
                for out in outs {
                    if let SeqOutput::Finished {
                        prompt_tokens,
                        cached_tokens,
                        completion_tokens,
                    } = out
                    {
                        stats.requests_total += 1;
                        stats.prompt_tokens_total += prompt_tokens as u64;
                        stats.prompt_tokens_cached_total += cached_tokens as u64;
                        stats.generated_tokens_total += completion_tokens as u64;
                    }
                }
            }
            Err(e) => {
                // A failed step leaves every running sequence's cache in an
                // unknown state: all of them fail, the next ones start clean.
                let msg = format!("{e:#}");
                tracing::error!("engine step failed: {msg}");
                for s in running.drain(..) {
                    s.fail(&msg);
                    stats.requests_total += 1;
                }
                engine.reset_slots();
            }
        }
        let mut finished = Vec::new();
        let mut i = 0;
        while i < running.len() {
            if running[i].is_done() {
                let s = running.remove(i);
                engine.release_slot(s.slot, s.cached_ids());
                finished.push(s);
            } else {
                i += 1;
            }
        }
        stats.active = running.len();
        stats.slots = slot_stats(&engine, &running);
        drop(stats);
        // Only now that the slots are free and counted: a client that got
        // Done may submit again at once.
        for mut s in finished {
            s.send_done();
        }
    }
}
