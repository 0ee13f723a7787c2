//! One engine step over the running sequences: every sequence past its
//! prompt contributes its next decode token, and the first one still in its
//! prompt contributes a chunk of it within the step's token budget
//! (`--batch-size`), so a long prompt delays the others by one chunk per
//! step at most. The whole step is one GPU submission.

use anyhow::Result;

use super::sequence::{SeqInput, SeqOutput, Sequence};
use super::slots::SlotGrant;
use super::Engine;
use crate::gpu::{ChunkInput, DecodeInput, Output, StepInput, TokenSource};

impl Engine {
    /// Sequence slots in the KV cache.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Claims a free KV-cache slot for `prompt`, if there is one, and says
    /// how many of its first tokens the slot already holds (with `reuse`).
    pub fn claim_slot(&mut self, prompt: &[u32], reuse: bool) -> Option<SlotGrant> {
        self.slots.claim(prompt, reuse)
    }

    /// Frees `slot`; it keeps `cached` (the ids at its positions
    /// `0..cached.len()`) for a later request that starts with them.
    pub fn release_slot(&mut self, slot: usize, cached: Vec<u32>) {
        self.slots.release(slot, cached);
    }

    /// Tokens a free slot keeps for the prompt cache.
    pub fn cached_len(&self, slot: usize) -> usize {
        self.slots.cached(slot).len()
    }

    /// Frees every slot and forgets what they hold.
    pub fn reset_slots(&mut self) {
        self.slots.reset();
    }

    /// Runs one step for the running sequences: cancelled ones end at once,
    /// the others advance (see the module comment).
    pub(crate) fn step_sequences(&mut self, seqs: &mut [Sequence]) -> Result<Vec<SeqOutput>> {
        let n_ctx = self.model.n_ctx;
        let mut outs = Vec::with_capacity(seqs.len());
        for s in seqs.iter_mut().filter(|s| !s.is_done() && s.cancelled()) {
            outs.push(s.cancel());
        }
        let live: Vec<usize> = (0..seqs.len()).filter(|&i| !seqs[i].is_done()).collect();
        let decoding: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| seqs[i].in_decode())
            .collect();
        let prompting = live.iter().copied().find(|&i| !seqs[i].in_decode());
        if decoding.is_empty() && prompting.is_none() {
            return Ok(outs);
        }
        // A full slot is shifted before its pending token is fed (one more
        // submission, queued ahead of the step's; nothing is read back).
        for &i in &decoding {
            if let Some((keep, discard)) = seqs[i].shift_needed(n_ctx) {
                let (slot, n_past) = (seqs[i].slot, seqs[i].n_past());
                self.model.shift_slot(slot, n_past, keep, discard)?;
                seqs[i].shifted(keep, discard);
                tracing::info!(
                    "slot {slot}: context shift: kept the first {keep} positions, dropped the next {discard} (keys re-rotated on the GPU)"
                );
            }
        }
        let budget = self.model.n_batch.saturating_sub(decoding.len()).max(1);
        let mut decode = Vec::with_capacity(decoding.len());
        for &i in &decoding {
            let out = seqs[i].head();
            let slot = seqs[i].slot;
            if let SeqInput::Decode { token, pos } = seqs[i].input(1) {
                decode.push(DecodeInput {
                    slot,
                    pos,
                    token: TokenSource::Id(token),
                    out,
                });
            }
        }
        let mut chunk_len = 0;
        let mut chunk_last = false;
        let result = {
            let chunk = match prompting {
                Some(i) => {
                    let slot = seqs[i].slot;
                    let (out_last, out_mid) =
                        (seqs[i].chunk_output(true), seqs[i].chunk_output(false));
                    match seqs[i].input(budget) {
                        SeqInput::Prompt { tokens, pos, last } => {
                            chunk_len = tokens.len();
                            chunk_last = last;
                            Some((
                                slot,
                                pos,
                                tokens.to_vec(),
                                if last { out_last } else { out_mid },
                            ))
                        }
                        SeqInput::Decode { .. } => None,
                    }
                }
                None => None,
            };
            self.model.step(&StepInput {
                chunk: chunk.as_ref().map(|(slot, pos, tokens, out)| ChunkInput {
                    slot: *slot,
                    pos: *pos,
                    tokens,
                    out: *out,
                }),
                decode: &decode,
            })?
        };
        if let Some(i) = prompting {
            seqs[i].advance_prompt(chunk_len);
            if seqs[i].is_embedding() {
                outs.push(seqs[i].accept_hidden(result.chunk, chunk_last)?);
            } else if chunk_last {
                outs.push(seqs[i].accept(result.chunk, n_ctx)?);
            } else {
                outs.push(SeqOutput::Running);
            }
        }
        for (&i, out) in decoding.iter().zip(result.decode) {
            seqs[i].advance_decode();
            outs.push(if matches!(out, Output::Nothing) {
                SeqOutput::Running
            } else {
                seqs[i].accept(out, n_ctx)?
            });
        }
        Ok(outs)
    }
}
