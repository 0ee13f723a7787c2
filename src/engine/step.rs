//! One engine step over the running sequences: what each feeds in, what it
//! gets back.

use anyhow::Result;

use super::sequence::{SeqInput, SeqOutput, Sequence};
use super::Engine;
use crate::gpu::{BatchOutput, Output};

impl Engine {
    /// Sequence slots in the KV cache.
    pub fn slots(&self) -> usize {
        self.slot_used.len()
    }

    /// Claims a free KV-cache slot (emptied), if there is one.
    pub fn alloc_slot(&mut self) -> Option<usize> {
        let s = self.slot_used.iter().position(|u| !u)?;
        self.slot_used[s] = true;
        self.model.reset();
        Some(s)
    }

    pub fn free_slot(&mut self, slot: usize) {
        if let Some(u) = self.slot_used.get_mut(slot) {
            *u = false;
        }
    }

    pub fn free_all_slots(&mut self) {
        self.slot_used.iter_mut().for_each(|u| *u = false);
    }

    /// Runs one step for every running sequence: cancelled ones end, the
    /// others take their next prompt chunk or decode token.
    pub(crate) fn step_sequences(&mut self, seqs: &mut [Sequence]) -> Result<Vec<SeqOutput>> {
        let n_ctx = self.model.n_ctx;
        let n_batch = self.model.n_batch;
        let mut outs = Vec::with_capacity(seqs.len());
        for s in seqs.iter_mut() {
            if s.is_done() {
                continue;
            }
            if s.cancelled() {
                outs.push(s.cancel());
                continue;
            }
            let head = s.head();
            let out = match s.input(n_batch) {
                SeqInput::Prompt { tokens, last, .. } => {
                    let n = tokens.len();
                    let out = self
                        .model
                        .prefill(tokens, if last { head } else { BatchOutput::None })?;
                    s.advance_prompt(n);
                    if !last {
                        outs.push(SeqOutput::Running);
                        continue;
                    }
                    out
                }
                SeqInput::Decode { token, .. } => {
                    let out = match head {
                        BatchOutput::Greedy => Output::Token(self.model.forward_greedy(Some(token))?),
                        BatchOutput::TopK(k) => Output::TopK(self.model.forward_top_k(token, k)?),
                        _ => Output::Logits(self.model.forward(token)?),
                    };
                    s.advance_decode();
                    out
                }
            };
            outs.push(s.accept(out, n_ctx)?);
        }
        Ok(outs)
    }
}
