//! One step: a batch of tokens from several sequences, each at its own
//! position in its own KV-cache slot, recorded into one command buffer and
//! submitted once; only what the caller asked for is read back.
//!
//! Rows `0..chunk` are one sequence's prompt chunk (consecutive positions),
//! the rest one decode token per sequence. The rows whose logits are wanted
//! are gathered into the head's buffer, go through the final norm and the
//! output projection together, then argmax and top-k select per row. Rows
//! that want their hidden state (embeddings) are read back after the norm;
//! a step whose head rows all want that skips the output projection.

use anyhow::{bail, Result};

use crate::gpu::kernels::{map_read, Dispatch, ATTN_CHUNK};
use crate::gpu::params::{RowMeta, Step, TopKParams};

use super::buffers::pad;
use super::ops::Shape;
use super::profile::Profile;
use super::{BatchOutput, GpuModel, Output, MAX_TOP_K};

/// Where a decode row's input token comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    Id(u32),
    /// The argmax that the previous step computed for its head row `r`,
    /// still on the GPU (greedy decoding without a round trip).
    PreviousArgmax(usize),
}

/// A prompt chunk of one sequence: `tokens` at positions `pos..` of `slot`.
#[derive(Clone, Copy, Debug)]
pub struct ChunkInput<'a> {
    pub slot: usize,
    pub pos: usize,
    pub tokens: &'a [u32],
    /// For the last token (or every token with [`BatchOutput::AllLogits`]).
    pub out: BatchOutput,
}

/// One decode token of a sequence.
#[derive(Clone, Copy, Debug)]
pub struct DecodeInput {
    pub slot: usize,
    pub pos: usize,
    pub token: TokenSource,
    /// [`BatchOutput::AllLogits`] means the same as `LastLogits` here.
    pub out: BatchOutput,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct StepInput<'a> {
    pub chunk: Option<ChunkInput<'a>>,
    pub decode: &'a [DecodeInput],
}

#[derive(Clone, Debug, PartialEq)]
pub struct StepOutput {
    /// The chunk's output (`Nothing` without a chunk).
    pub chunk: Output,
    /// One per decode row, in order.
    pub decode: Vec<Output>,
}

impl StepOutput {
    /// The output of a step of one decode row and no chunk.
    pub(crate) fn into_single_decode(self) -> Output {
        self.decode.into_iter().next().expect("one decode row")
    }
}

/// What a step reads back for one head row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Logits,
    Greedy,
    TopK(usize),
    /// The best `.0` of the `.1` the kernel selected for this row.
    TopKOf(usize, usize),
    /// The final-normed hidden state (`n_embd` floats).
    Hidden,
}

fn want(out: BatchOutput) -> Option<Want> {
    match out {
        BatchOutput::None => None,
        BatchOutput::LastLogits | BatchOutput::AllLogits => Some(Want::Logits),
        BatchOutput::Greedy => Some(Want::Greedy),
        BatchOutput::TopK(k) => Some(Want::TopK(k)),
        BatchOutput::LastHidden | BatchOutput::AllHidden => Some(Want::Hidden),
    }
}

/// One command of a step, in order.
pub(crate) enum Op<'a> {
    Run(&'a Dispatch, [u32; 3]),
    /// `copy_buffer_to_buffer(src, src_off, dst, dst_off, bytes)`.
    Copy(&'a wgpu::Buffer, u64, &'a wgpu::Buffer, u64, u64),
}

/// A step on the GPU whose output has not been read back
/// ([`GpuModel::submit_step`]).
pub(crate) struct SubmittedStep {
    reads: Vec<(Want, u64)>,
    staging_bytes: u64,
    chunk_rows: usize,
    /// The chunk reads one head row (not all its rows).
    chunk_one: bool,
    /// Per decode row: whether it reads anything back.
    decode_wants: Vec<bool>,
}

/// A recorded step: its commands and how to read its outputs back.
struct Plan<'a> {
    ops: Vec<Op<'a>>,
    /// Per head row: what it wants, and where in the staging buffer its bytes land.
    reads: Vec<(Want, u64)>,
    staging_bytes: u64,
    /// Head rows of the chunk (all its rows with AllLogits or AllHidden, else 0 or 1).
    chunk_rows: usize,
}

impl GpuModel {
    /// Checks a step's input against the model, the cache and the buffers.
    fn check_step(&self, s: &StepInput) -> Result<()> {
        let b = &self.bufs;
        let n_chunk = s.chunk.map_or(0, |c| c.tokens.len());
        if s.chunk.is_some() && n_chunk == 0 {
            bail!("a prompt chunk with no tokens");
        }
        let rows = n_chunk + s.decode.len();
        if rows == 0 {
            bail!("nothing to process");
        }
        if rows > b.cap {
            bail!("a step of {rows} tokens; at most {} (--batch-size)", b.cap);
        }
        if s.decode.len() > b.decode_cap {
            bail!(
                "{} decode tokens in one step; at most {} (--parallel)",
                s.decode.len(),
                b.decode_cap
            );
        }
        let check_slot = |slot: usize, pos: usize, n: usize| -> Result<()> {
            if slot >= self.n_slots {
                bail!(
                    "slot {slot} does not exist ({} slots, --parallel)",
                    self.n_slots
                );
            }
            if pos + n > self.n_ctx {
                bail!(
                    "context full: {} positions per slot (--ctx-size)",
                    self.n_ctx
                );
            }
            Ok(())
        };
        let check_id = |t: u32| -> Result<()> {
            if t as usize >= self.cfg.n_vocab {
                bail!(
                    "token id {t} is outside the vocabulary (size {})",
                    self.cfg.n_vocab
                );
            }
            Ok(())
        };
        let mut heads = 0;
        if let Some(c) = s.chunk {
            check_slot(c.slot, c.pos, n_chunk)?;
            c.tokens.iter().try_for_each(|&t| check_id(t))?;
            heads += match c.out {
                BatchOutput::AllLogits | BatchOutput::AllHidden => n_chunk,
                BatchOutput::None => 0,
                _ => 1,
            };
        }
        for d in s.decode {
            check_slot(d.slot, d.pos, 1)?;
            match d.token {
                TokenSource::Id(t) => check_id(t)?,
                TokenSource::PreviousArgmax(r) if r >= b.head_cap => bail!("no head row {r}"),
                TokenSource::PreviousArgmax(_) => {}
            }
            heads += usize::from(d.out != BatchOutput::None);
            if s.decode.iter().filter(|o| o.slot == d.slot).count() > 1
                || s.chunk.is_some_and(|c| c.slot == d.slot)
            {
                bail!("slot {} appears twice in one step", d.slot);
            }
        }
        if heads > b.head_cap {
            bail!("{heads} rows of logits in one step; at most {}", b.head_cap);
        }
        for w in s
            .chunk
            .map(|c| c.out)
            .into_iter()
            .chain(s.decode.iter().map(|d| d.out))
        {
            if let BatchOutput::TopK(k) = w {
                if k == 0 || k > MAX_TOP_K {
                    bail!("top-k of {k} asked of the GPU (1..={MAX_TOP_K})");
                }
            }
        }
        Ok(())
    }

    /// Writes the step's inputs and lists its commands; outputs are copied
    /// into `staging` (mapped for reading afterwards).
    fn plan<'s>(&'s self, s: &StepInput, staging: &'s wgpu::Buffer) -> Result<Plan<'s>> {
        self.check_step(s)?;
        let b = &self.bufs;
        let q = &self.gpu.queue;
        let n_chunk = s.chunk.map_or(0, |c| c.tokens.len());
        let rows = n_chunk + s.decode.len();
        let mut ids = Vec::with_capacity(rows);
        let mut meta = Vec::with_capacity(rows);
        if let Some(c) = s.chunk {
            ids.extend_from_slice(c.tokens);
            let first = self.cache.first_row(c.slot);
            meta.extend((0..n_chunk).map(|i| RowMeta {
                cache_row: first,
                pos: (c.pos + i) as u32,
            }));
        }
        let mut ops = Vec::new();
        let mut n_chunks = 1;
        for (i, d) in s.decode.iter().enumerate() {
            match d.token {
                TokenSource::Id(t) => ids.push(t),
                TokenSource::PreviousArgmax(r) => {
                    ids.push(0);
                    ops.push(Op::Copy(
                        &b.ids,
                        r as u64 * 4,
                        &b.tokens,
                        ((n_chunk + i) * 4) as u64,
                        4,
                    ));
                }
            }
            meta.push(RowMeta {
                cache_row: self.cache.first_row(d.slot),
                pos: d.pos as u32,
            });
            n_chunks = n_chunks.max((d.pos as u32 + 1).div_ceil(ATTN_CHUNK));
        }
        q.write_buffer(&b.tokens, 0, bytemuck::cast_slice(&ids));
        q.write_buffer(&b.rows, 0, bytemuck::cast_slice(&meta));
        q.write_buffer(
            &b.step,
            0,
            bytemuck::bytes_of(&Step {
                n_rows: rows as u32,
                row0: n_chunk as u32,
                n_chunks,
                _pad: 0,
            }),
        );
        let shape = Shape {
            rows,
            chunk: n_chunk,
            n_chunks,
        };
        ops.extend(
            self.ops
                .layers(shape)
                .into_iter()
                .map(|(d, g)| Op::Run(d, g)),
        );

        // Gather the rows that want logits into the head, consecutive rows in one copy.
        let e_row = (pad(self.cfg.n_embd) * 4) as u64;
        let mut head_rows: Vec<(usize, Want)> = Vec::new();
        let mut chunk_rows = 0;
        if let Some(c) = s.chunk {
            if c.out.is_all() {
                let w = want(c.out).expect("a per-row output");
                head_rows.extend((0..n_chunk).map(|r| (r, w)));
                chunk_rows = n_chunk;
            } else if let Some(w) = want(c.out) {
                head_rows.push((n_chunk - 1, w));
                chunk_rows = 1;
            }
        }
        for (i, d) in s.decode.iter().enumerate() {
            if let Some(w) = want(d.out) {
                head_rows.push((n_chunk + i, w));
            }
        }
        let mut reads = Vec::new();
        let mut staging_bytes = 0u64;
        if !head_rows.is_empty() {
            let mut i = 0;
            while i < head_rows.len() {
                let mut j = i + 1;
                while j < head_rows.len() && head_rows[j].0 == head_rows[j - 1].0 + 1 {
                    j += 1;
                }
                ops.push(Op::Copy(
                    &b.x,
                    head_rows[i].0 as u64 * e_row,
                    &b.head_x,
                    i as u64 * e_row,
                    (j - i) as u64 * e_row,
                ));
                i = j;
            }
            let r = head_rows.len();
            let project = head_rows.iter().any(|h| h.1 != Want::Hidden);
            ops.extend(
                self.ops
                    .head(r, project)
                    .into_iter()
                    .map(|(d, g)| Op::Run(d, g)),
            );
            if head_rows.iter().any(|h| h.1 == Want::Greedy) {
                ops.push(Op::Run(&self.ops.argmax, [r as u32, 1, 1]));
            }
            let k_max = head_rows
                .iter()
                .filter_map(|h| match h.1 {
                    Want::TopK(k) => Some(k.min(self.cfg.n_vocab)),
                    _ => None,
                })
                .max();
            if let Some(k) = k_max {
                q.write_buffer(
                    &b.topk_params,
                    0,
                    bytemuck::bytes_of(&TopKParams {
                        n: self.cfg.n_vocab as u32,
                        k: k as u32,
                        out_stride: (MAX_TOP_K * 2) as u32,
                        _pad: 0,
                    }),
                );
                ops.push(Op::Run(&self.ops.topk, [r as u32, 1, 1]));
            }
            let vocab_bytes = (self.cfg.n_vocab * 4) as u64;
            for (hr, w) in head_rows.iter_mut().enumerate() {
                let hr = hr as u64;
                // The kernel selects the step's largest k for every row, in
                // id order, not by value: a row that wants fewer reads all
                // of them back and keeps its best k after sorting.
                if let (Want::TopK(k), Some(k_max)) = (w.1, k_max) {
                    w.1 = Want::TopKOf(k.min(k_max), k_max);
                }
                let (src, off, bytes) = match w.1 {
                    Want::Logits => (&b.logits, hr * vocab_bytes, vocab_bytes),
                    Want::Greedy => (&b.ids, hr * 4, 4),
                    // Whole padded rows, so that consecutive rows merge into one copy.
                    Want::Hidden => (&b.head_xb, hr * e_row, e_row),
                    Want::TopK(k) | Want::TopKOf(_, k) => (
                        &b.topk_out,
                        hr * (MAX_TOP_K * 8) as u64,
                        (k.min(self.cfg.n_vocab) * 8) as u64,
                    ),
                };
                let w = w.1;
                // Consecutive logits rows read back in one copy.
                match ops.last_mut() {
                    Some(Op::Copy(s0, o0, dst, d0, n0))
                        if std::ptr::eq(*s0, src)
                            && std::ptr::eq(*dst, staging)
                            && *o0 + *n0 == off
                            && *d0 + *n0 == staging_bytes =>
                    {
                        *n0 += bytes;
                    }
                    _ => ops.push(Op::Copy(src, off, staging, staging_bytes, bytes)),
                }
                reads.push((w, staging_bytes));
                staging_bytes += bytes;
            }
        }
        Ok(Plan {
            ops,
            reads,
            staging_bytes,
            chunk_rows,
        })
    }

    /// Records `ops` into one command buffer and submits it.
    pub(super) fn submit(&self, ops: &[Op]) -> wgpu::SubmissionIndex {
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        let mut i = 0;
        while i < ops.len() {
            match ops[i] {
                Op::Copy(src, so, dst, doff, n) => {
                    enc.copy_buffer_to_buffer(src, so, dst, doff, n);
                    i += 1;
                }
                Op::Run(..) => {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    while let Some(Op::Run(d, g)) = ops.get(i) {
                        d.encode_with(&mut pass, *g);
                        i += 1;
                    }
                }
            }
        }
        self.gpu.queue.submit([enc.finish()])
    }

    /// Plans a greedy decode step of slot 0 whose id lands in `staging`.
    pub(super) fn plan_greedy<'s>(
        &'s self,
        token: TokenSource,
        staging: &'s wgpu::Buffer,
    ) -> Result<Vec<Op<'s>>> {
        let d = [DecodeInput {
            slot: 0,
            pos: self.n_past,
            token,
            out: BatchOutput::Greedy,
        }];
        let plan = self.plan(
            &StepInput {
                chunk: None,
                decode: &d,
            },
            staging,
        )?;
        Ok(plan.ops)
    }

    /// Runs one step (one submission) and returns what each sequence asked for.
    pub fn step(&mut self, s: &StepInput) -> Result<StepOutput> {
        self.run_step(s, None)
    }

    /// As [`Self::step`]; with a profile, every dispatch is timed into it
    /// (see [`Profile`]) instead of the step running as one pass.
    pub(crate) fn run_step(
        &mut self,
        s: &StepInput,
        profile: Option<&mut Profile>,
    ) -> Result<StepOutput> {
        let sub = self.submit_step(s, profile)?;
        self.collect_step(sub)
    }

    /// Plans and submits a step without waiting for it: what
    /// [`Self::collect_step`] needs to read its output back. The CPU may
    /// work while the GPU runs; nothing else may use the step buffers until
    /// it is collected.
    pub(super) fn submit_step(
        &mut self,
        s: &StepInput,
        profile: Option<&mut Profile>,
    ) -> Result<SubmittedStep> {
        if self.greedy_in_flight() > 0 {
            bail!("a pipelined greedy step is still in flight (collect or discard it first)");
        }
        if self.step_pending {
            bail!("a submitted decode step is not collected yet");
        }
        let plan = self.plan(s, &self.bufs.staging)?;
        match profile {
            Some(p) => p.add(self.time_ops(&plan.ops)?),
            None => {
                self.submit(&plan.ops);
            }
        }
        Ok(SubmittedStep {
            reads: plan.reads,
            staging_bytes: plan.staging_bytes,
            chunk_rows: plan.chunk_rows,
            chunk_one: s.chunk.is_some_and(|c| !c.out.is_all()),
            decode_wants: s
                .decode
                .iter()
                .map(|d| d.out != BatchOutput::None)
                .collect(),
        })
    }

    /// Waits for a submitted step and parses what it read back.
    pub(super) fn collect_step(&self, sub: SubmittedStep) -> Result<StepOutput> {
        let raw = if sub.staging_bytes > 0 {
            map_read(&self.gpu, &self.bufs.staging, sub.staging_bytes)?
        } else {
            Vec::new()
        };
        let n_vocab = self.cfg.n_vocab;
        let n_embd = self.cfg.n_embd;
        let parse = |w: Want, at: u64| -> Result<Output> {
            let at = at as usize;
            match w {
                Want::Hidden => {
                    let h: &[f32] = bytemuck::cast_slice(&raw[at..at + n_embd * 4]);
                    if h.iter().any(|v| !v.is_finite()) {
                        bail!("the GPU produced a hidden state that is not finite");
                    }
                    Ok(Output::Hidden(h.to_vec()))
                }
                Want::Logits => Ok(Output::Logits(
                    bytemuck::cast_slice(&raw[at..at + n_vocab * 4]).to_vec(),
                )),
                Want::Greedy => {
                    let id = u32::from_le_bytes(raw[at..at + 4].try_into().expect("4 bytes"));
                    if id as usize >= n_vocab {
                        bail!("the GPU produced no valid token (NaN logits?)");
                    }
                    Ok(Output::Token(id))
                }
                Want::TopK(k) | Want::TopKOf(_, k) => {
                    let keep = match w {
                        Want::TopKOf(keep, _) => keep,
                        _ => k,
                    };
                    let k = k.min(n_vocab);
                    let words: &[u32] = bytemuck::cast_slice(&raw[at..at + k * 8]);
                    let mut top: Vec<(u32, f32)> = words
                        .chunks_exact(2)
                        .map(|c| (c[0], f32::from_bits(c[1])))
                        .collect();
                    if top
                        .iter()
                        .any(|&(id, l)| id as usize >= n_vocab || l.is_nan())
                    {
                        bail!("the GPU produced no valid top-k (NaN logits?)");
                    }
                    top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                    top.truncate(keep.min(n_vocab));
                    Ok(Output::TopK(top))
                }
            }
        };
        let mut reads = sub.reads.into_iter();
        let chunk = match sub.chunk_rows {
            0 => Output::Nothing,
            1 if sub.chunk_one => {
                let (w, at) = reads.next().expect("a read per head row");
                parse(w, at)?
            }
            n => {
                let mut all = Vec::new();
                let mut hidden = false;
                for (w, at) in reads.by_ref().take(n) {
                    hidden = w == Want::Hidden;
                    match parse(w, at)? {
                        Output::Logits(v) | Output::Hidden(v) => all.extend(v),
                        other => bail!("a chunk row produced {other:?}"),
                    }
                }
                if hidden {
                    Output::Hidden(all)
                } else {
                    Output::Logits(all)
                }
            }
        };
        let mut decode = Vec::with_capacity(sub.decode_wants.len());
        for wants in sub.decode_wants {
            decode.push(if !wants {
                Output::Nothing
            } else {
                let (w, at) = reads.next().expect("a read per head row");
                parse(w, at)?
            });
        }
        Ok(StepOutput { chunk, decode })
    }
}
