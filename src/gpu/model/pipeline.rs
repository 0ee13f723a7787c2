//! Pipelined greedy decoding of slot 0: step t+1 is submitted before step
//! t's id is read back, so the GPU queue never drains while the CPU maps a
//! readback, detokenizes and checks stop conditions. Each step's input is
//! the previous step's argmax, already on the GPU; its id lands in one of
//! two small staging buffers, alternately. A step submitted past the end of
//! generation is discarded (`greedy_discard`), which also rewinds the
//! position it took.
//!
//! Sampled decoding cannot run ahead (the next input is chosen on the CPU
//! from this step's candidates), but it overlaps the other way: the step for
//! a sampled token is submitted before that token is detokenized, streamed
//! and checked against the stop strings (`decode_submit`, then
//! `decode_collect`, or `decode_discard` when the token ended generation).

use std::sync::mpsc::Receiver;

use anyhow::{anyhow, bail, Result};

use super::step::{SubmittedStep, TokenSource};
use super::{BatchOutput, GpuModel, Output};

/// A sampled-decoding step of slot 0 on the GPU, not yet read back
/// ([`GpuModel::decode_submit`]).
pub struct PendingDecode(SubmittedStep);

/// A submitted greedy step whose id is not read yet.
pub(crate) struct Pending {
    index: wgpu::SubmissionIndex,
    staging: usize,
    mapped: Receiver<Result<(), wgpu::BufferAsyncError>>,
}

/// Steps kept in flight: one being read while the next runs.
const DEPTH: usize = 2;

impl GpuModel {
    /// Greedy steps submitted and not yet collected.
    pub fn greedy_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Submits one greedy decode step of slot 0 at the next position
    /// without waiting for it. `token`: the input id, or `None` for the
    /// argmax of the step before (the previous `prefill_greedy`,
    /// `forward_greedy` or `greedy_submit`). At most two are in flight.
    pub fn greedy_submit(&mut self, token: Option<u32>) -> Result<()> {
        if self.step_pending {
            bail!("a decode step is submitted and not collected");
        }
        if self.in_flight.len() >= DEPTH {
            bail!("{DEPTH} pipelined greedy steps are already in flight");
        }
        let staging = self.next_staging;
        let src = token.map_or(TokenSource::PreviousArgmax(0), TokenSource::Id);
        let buf = &self.bufs.greedy_staging[staging];
        let ops = self.plan_greedy(src, buf)?;
        let index = self.submit(&ops);
        let (tx, rx) = std::sync::mpsc::channel();
        buf.map_async(wgpu::MapMode::Read, 0..4, move |r| {
            let _ = tx.send(r);
        });
        self.in_flight.push_back(Pending {
            index,
            staging,
            mapped: rx,
        });
        self.next_staging = 1 - staging;
        self.n_past += 1;
        Ok(())
    }

    /// The id of the oldest step in flight (waits for that step only, not
    /// for the ones submitted after it).
    pub fn greedy_collect(&mut self) -> Result<u32> {
        let p = self
            .in_flight
            .pop_front()
            .ok_or_else(|| anyhow!("no pipelined greedy step in flight"))?;
        let id = self.read_pending(&p)?;
        if id as usize >= self.cfg.n_vocab {
            bail!("the GPU produced no valid token (NaN logits?)");
        }
        Ok(id)
    }

    /// Drops every step in flight (their ids are read and ignored) and
    /// rewinds slot 0's position by as many: their cache entries lie past
    /// the position again and are overwritten by later steps.
    pub fn greedy_discard(&mut self) -> Result<()> {
        while let Some(p) = self.in_flight.pop_front() {
            self.read_pending(&p)?;
            self.n_past -= 1;
        }
        Ok(())
    }

    fn read_pending(&self, p: &Pending) -> Result<u32> {
        self.gpu.wait_for(p.index.clone())?;
        p.mapped
            .recv()
            .map_err(|_| anyhow!("GPU readback was dropped"))?
            .map_err(|e| anyhow!("GPU readback failed: {e}"))?;
        let buf = &self.bufs.greedy_staging[p.staging];
        let id = {
            let view = buf
                .get_mapped_range(0..4)
                .map_err(|e| anyhow!("GPU readback failed: {e:?}"))?;
            u32::from_le_bytes(view[..4].try_into().expect("4 bytes"))
        };
        buf.unmap();
        Ok(id)
    }

    /// Submits one decode step of slot 0 for `token` (its output: `TopK`
    /// or `LastLogits`) and returns without waiting. Until it is collected
    /// or discarded, no other step may run.
    pub fn decode_submit(&mut self, token: u32, out: BatchOutput) -> Result<PendingDecode> {
        if self.step_pending {
            bail!("a decode step is already submitted (collect or discard it first)");
        }
        let sub = self.submit1(TokenSource::Id(token), out, None)?;
        self.n_past += 1;
        self.step_pending = true;
        Ok(PendingDecode(sub))
    }

    /// Waits for a step from [`Self::decode_submit`] and returns its output.
    pub fn decode_collect(&mut self, p: PendingDecode) -> Result<Output> {
        self.step_pending = false;
        Ok(self.collect_step(p.0)?.into_single_decode())
    }

    /// Drops a submitted step (generation ended on its input token) and
    /// rewinds slot 0's position: its cache entry lies past the position
    /// again and is overwritten by a later step.
    pub fn decode_discard(&mut self, p: PendingDecode) -> Result<()> {
        self.step_pending = false;
        self.collect_step(p.0)?;
        self.n_past -= 1;
        Ok(())
    }
}
