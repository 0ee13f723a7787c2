//! One request's life in a slot: what it feeds the next step, and what it
//! does with the step's output (sample, log-probabilities, stop conditions,
//! streamed text).

use std::time::Instant;

use super::embedding::Pooler;
use super::json_output::JsonConstraint;
use super::scheduler::{Event, Finished, Job, TokenEvent, TokenLogprob};
use super::slots::SlotGrant;
use super::{readback_for, Sampler, StopFilter, StopReason};
use crate::gpu::{BatchOutput, Output};
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// What a step reported about a sequence.
pub(crate) enum SeqOutput {
    Running,
    Finished {
        /// Prompt tokens processed (not the cached ones).
        prompt_tokens: usize,
        cached_tokens: usize,
        completion_tokens: usize,
    },
}

pub(crate) struct Sequence<'t> {
    job: Job,
    tok: &'t Tokenizer,
    /// The KV-cache slot this sequence owns.
    pub slot: usize,
    sampler: Sampler,
    /// Prompt and generated ids (the repetition penalty's window).
    recent: Vec<u32>,
    /// Prompt tokens already in the cache.
    prompt_done: usize,
    /// Prompt tokens the slot held when the sequence started.
    cached: usize,
    /// Positions dropped from the slot by context shifts.
    discarded: usize,
    /// Positions the first context shift kept: the only ones still equal to
    /// a fresh computation of their ids after it.
    shift_kept: Option<usize>,
    /// The last chosen token, to be fed at the next step.
    pending: Option<u32>,
    generated: usize,
    stream: StreamDecoder<'t>,
    stop: StopFilter,
    /// JSON mode's constraint on the reply.
    json: Option<JsonConstraint>,
    /// An embedding request's pooled hidden states so far.
    pooler: Option<Pooler>,
    started: Option<Instant>,
    first_token: Option<Instant>,
    done: bool,
    done_event: Option<Event>,
}

/// What a sequence puts into the next step.
pub(crate) enum SeqInput<'a> {
    /// Prompt tokens, from position `pos`; `last` if they end the prompt
    /// (then the step must produce `head` for the last of them).
    Prompt {
        tokens: &'a [u32],
        pos: usize,
        last: bool,
    },
    /// The previously chosen token, at position `pos`.
    Decode { token: u32, pos: usize },
}

impl<'t> Sequence<'t> {
    /// `n_embd`: the model's width (an embedding request's vector size).
    pub fn new(job: Job, grant: SlotGrant, tok: &'t Tokenizer, n_embd: usize) -> Sequence<'t> {
        let shown = job.req.shown_tokens.clone();
        let stop = StopFilter::new(&job.req.stop);
        let json = job.req.format.constraint();
        let pooler = job.req.embed.map(|p| Pooler::new(p, n_embd));
        Sequence {
            json,
            pooler,
            sampler: Sampler::new(job.req.sampler.clone()),
            recent: job.req.prompt.clone(),
            job,
            tok,
            slot: grant.slot,
            prompt_done: grant.reused,
            cached: grant.reused,
            discarded: 0,
            shift_kept: None,
            pending: None,
            generated: 0,
            stream: StreamDecoder::continuation(tok).showing(shown),
            stop,
            started: None,
            first_token: None,
            done: false,
            done_event: None,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn prompt_len(&self) -> usize {
        self.job.req.prompt.len()
    }

    /// Past its prompt: the next step feeds its last chosen token.
    pub fn in_decode(&self) -> bool {
        self.prompt_done == self.prompt_len()
    }

    /// Positions this sequence has in its slot.
    pub fn n_past(&self) -> usize {
        self.prompt_done
            + self
                .generated
                .saturating_sub(usize::from(self.pending.is_some()))
            - self.discarded
    }

    /// The context shift that makes room for the pending token in a full
    /// slot of `n_ctx` positions, if the request allows one: (keep, discard),
    /// llama.cpp's split (keep the first positions, drop half of the rest).
    pub fn shift_needed(&self, n_ctx: usize) -> Option<(usize, usize)> {
        let keep = self.job.req.context_shift?;
        if self.pending.is_none() || self.n_past() < n_ctx {
            return None;
        }
        Some(super::shift_split(keep, n_ctx))
    }

    /// Records a context shift of this sequence's slot.
    pub fn shifted(&mut self, keep: usize, discard: usize) {
        self.discarded += discard;
        self.shift_kept.get_or_insert(keep);
    }

    /// The ids whose keys and values the slot holds from position 0, as a
    /// fresh run of those ids would have put them there: every fed position,
    /// or after a context shift only the positions it kept (later ones were
    /// computed attending to positions since dropped).
    /// The request's id (`RequestHandle::id`).
    pub fn task(&self) -> u64 {
        self.job.id
    }

    /// Tokens generated so far.
    pub fn generated(&self) -> usize {
        self.generated
    }

    pub fn cached_ids(&self) -> Vec<u32> {
        let n = self.shift_kept.unwrap_or_else(|| self.n_past());
        self.recent[..n.min(self.recent.len())].to_vec()
    }

    /// The next step's input: at most `budget` prompt tokens, or one decode token.
    pub fn input(&mut self, budget: usize) -> SeqInput<'_> {
        self.started.get_or_insert_with(Instant::now);
        let n = self.prompt_len();
        if self.prompt_done < n {
            let take = budget.max(1).min(n - self.prompt_done);
            let pos = self.prompt_done;
            SeqInput::Prompt {
                tokens: &self.job.req.prompt[pos..pos + take],
                pos,
                last: pos + take == n,
            }
        } else {
            SeqInput::Decode {
                token: self
                    .pending
                    .expect("a running sequence past its prompt has a token"),
                pos: self.n_past(),
            }
        }
    }

    /// Marks `n` prompt tokens (from [`Self::input`]) as processed.
    pub fn advance_prompt(&mut self, n: usize) {
        self.prompt_done += n;
    }

    /// Marks the pending token as fed into the cache.
    pub fn advance_decode(&mut self) {
        self.pending = None;
    }

    /// What a step that ends a prompt chunk of this sequence reads back:
    /// the next token's head after the last chunk, hidden states for an
    /// embedding.
    pub fn chunk_output(&self, last: bool) -> BatchOutput {
        match (&self.job.req.embed, last) {
            (Some(p), _) => p.batch_output(),
            (None, true) => self.head(),
            (None, false) => BatchOutput::None,
        }
    }

    /// Whether this is an embedding request (it never decodes).
    pub fn is_embedding(&self) -> bool {
        self.job.req.embed.is_some()
    }

    /// Takes an embedding request's chunk output; after the last chunk
    /// sends the vectors and ends the sequence.
    pub fn accept_hidden(&mut self, out: Output, last: bool) -> anyhow::Result<SeqOutput> {
        let pooler = self
            .pooler
            .as_mut()
            .expect("accept_hidden is for embedding requests");
        pooler.add(&out.into_hidden()?)?;
        if !last {
            return Ok(SeqOutput::Running);
        }
        let vectors = self.pooler.take().expect("checked above").finish()?;
        self.first_token.get_or_insert_with(Instant::now);
        let out = self.finish(StopReason::Length);
        if let Some(Event::Done(f)) = &mut self.done_event {
            f.embedding = vectors;
        }
        Ok(out)
    }

    /// What the step must read back for this sequence's next token.
    pub fn head(&self) -> BatchOutput {
        let req = &self.job.req;
        if req.logprobs.is_some() || self.json.is_some() {
            // The log-softmax needs every logit; so does JSON mode, when the
            // drawn token does not fit and another must be drawn.
            return BatchOutput::LastLogits;
        }
        if req.sampler.is_greedy() && !req.sampler.has_penalties() {
            return BatchOutput::Greedy;
        }
        readback_for(&self.sampler, &self.recent, 0)
    }

    /// Whether the client went away: the slot should be freed now.
    pub fn cancelled(&self) -> bool {
        self.job.cancelled()
    }

    /// Ends the sequence because its client cancelled.
    pub fn cancel(&mut self) -> SeqOutput {
        self.finish(StopReason::Interrupted)
    }

    /// Takes the step's output for the last position: chooses the next
    /// token, streams its text, and decides whether the sequence goes on.
    /// `n_ctx`: the slot's positions.
    pub fn accept(&mut self, out: Output, n_ctx: usize) -> anyhow::Result<SeqOutput> {
        let (next, logprob) = match out {
            Output::Token(id) => (id, None),
            Output::TopK(cand) => (self.choose(cand)?, None),
            Output::Logits(logits) => {
                let cand: Vec<(u32, f32)> = logits
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| (i as u32, l))
                    .collect();
                let next = self.choose(cand)?;
                let lp = self.job.req.logprobs.map(|k| log_probs(&logits, next, k));
                (next, lp)
            }
            Output::Nothing | Output::Hidden(_) => {
                anyhow::bail!("the step produced no next-token output for a sequence")
            }
        };
        let req = &self.job.req;
        self.first_token.get_or_insert_with(Instant::now);
        if !req.ignore_eos && self.tok.is_end_of_generation(next) {
            // Text held back for a stop string that never completed is
            // released with the end-of-generation id (not counted as a token).
            let tail = self.stream.finish();
            let (mut text, hit) = self.stop.push(&tail);
            if !hit {
                text += &self.stop.finish();
            }
            if !text.is_empty() {
                self.send_token(next, text, logprob);
            }
            return Ok(self.finish(StopReason::EndOfGeneration));
        }
        self.generated += 1;
        self.recent.push(next);
        self.pending = Some(next);
        let (text, hit) = self.stop.push(&self.stream.push(next));
        if hit {
            self.send_token(next, text, logprob);
            return Ok(self.finish(StopReason::StopString));
        }
        let length = req.n_predict.is_some_and(|n| self.generated >= n);
        // The chosen token is emitted but cannot be fed: no position is left
        // (and no context shift will make one).
        let full = self.n_past() >= n_ctx && req.context_shift.is_none();
        // JSON mode ends with the root object, as if the model had ended it.
        let closed = self.json.as_ref().is_some_and(|j| j.is_done());
        if length || full || closed {
            let tail = self.stream.finish();
            let (more, hit) = self.stop.push(&tail);
            let text = text
                + &more
                + &if hit {
                    String::new()
                } else {
                    self.stop.finish()
                };
            self.send_token(next, text, logprob);
            let reason = if hit {
                StopReason::StopString
            } else if closed {
                StopReason::EndOfGeneration
            } else if length {
                StopReason::Length
            } else {
                StopReason::ContextFull
            };
            return Ok(self.finish(reason));
        }
        self.send_token(next, text, logprob);
        Ok(SeqOutput::Running)
    }

    /// Draws the next token from `cand` (the step's logits or its top-k):
    /// greedy or by the request's sampler, within JSON mode's constraint.
    fn choose(&mut self, cand: Vec<(u32, f32)>) -> anyhow::Result<u32> {
        let plain = self.job.req.sampler.is_greedy() && !self.job.req.sampler.has_penalties();
        let (sampler, recent) = (&mut self.sampler, &self.recent);
        let mut draw = |cand: Vec<(u32, f32)>| {
            if plain {
                first_best(&cand)
            } else {
                sampler.sample_from(cand, recent)
            }
        };
        match &mut self.json {
            Some(json) => json.choose(self.tok, cand, draw),
            None => Ok(draw(cand)),
        }
    }

    fn send_token(&self, id: u32, text: String, logprob: Option<TokenLogprob>) {
        let _ = self
            .job
            .tx
            .send(Event::Token(TokenEvent { id, text, logprob }));
    }

    fn finish(&mut self, reason: StopReason) -> SeqOutput {
        self.done = true;
        let now = Instant::now();
        let started = self.started.unwrap_or(self.job.submitted);
        let first = self.first_token.unwrap_or(now);
        // Sent by the scheduler once the slot is free (`send_done`): a client
        // that sees Done can count on the slot being available.
        self.done_event = Some(Event::Done(Finished {
            reason,
            prompt_tokens: self.prompt_len(),
            cached_tokens: self.cached,
            completion_tokens: self.generated,
            prompt_ms: (first - started).as_secs_f64() * 1e3,
            generation_ms: (now - first).as_secs_f64() * 1e3,
            stop_word: self.stop.matched.clone(),
            embedding: Vec::new(),
        }));
        SeqOutput::Finished {
            prompt_tokens: self.prompt_done - self.cached,
            cached_tokens: self.cached,
            completion_tokens: self.generated,
        }
    }

    /// Sends the final event of a finished sequence (after its slot was freed).
    pub fn send_done(&mut self) {
        if let Some(e) = self.done_event.take() {
            let _ = self.job.tx.send(e);
        }
    }

    /// Ends the sequence with an error.
    pub fn fail(&self, msg: &str) {
        let _ = self.job.tx.send(Event::Error(msg.to_string()));
    }
}

/// The id of the first of the largest logits (as `argmax` on the GPU and CPU).
fn first_best(cand: &[(u32, f32)]) -> u32 {
    let mut best = cand[0];
    for &c in &cand[1..] {
        if c.1 > best.1 {
            best = c;
        }
    }
    best.0
}

/// The chosen token's log-probability and the `k` most likely tokens', from raw logits.
pub(crate) fn log_probs(logits: &[f32], chosen: u32, k: usize) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max
        + logits
            .iter()
            .map(|&l| ((l - max) as f64).exp())
            .sum::<f64>()
            .ln() as f32;
    let top = super::top_k_logits(logits, k)
        .into_iter()
        .map(|(id, l)| (id, l - lse))
        .collect();
    TokenLogprob {
        logprob: logits[chosen as usize] - lse,
        top,
    }
}
