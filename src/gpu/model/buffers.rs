//! Activation and output buffers of a step, allocated once at load for the
//! largest step (every row padded to whole 32-element items, zero beyond its
//! length, as the matrix kernels read whole items).

use crate::gpu::kernels::ATTN_CHUNK;
use crate::gpu::params::{Step, TopKParams};
use crate::gpu::Gpu;
use crate::model::LlamaConfig;

use super::MAX_TOP_K;

/// Floats per padded row.
pub(crate) fn pad(n: usize) -> usize {
    n.div_ceil(32) * 32
}

/// The few-token matvec reads this many token rows at most: buffers hold at
/// least that many so any step width can use it.
pub(crate) const MULTI_MAX: usize = 16;

pub(crate) struct StepBuffers {
    /// Tokens a step may have.
    pub cap: usize,
    /// Rows a step may compute logits for.
    pub head_cap: usize,
    /// Decode tokens a step may have (one per slot).
    pub decode_cap: usize,
    pub x: wgpu::Buffer,
    pub xb: wgpu::Buffer,
    pub q: wgpu::Buffer,
    pub k: wgpu::Buffer,
    pub v: wgpu::Buffer,
    pub att: wgpu::Buffer,
    pub gate: wgpu::Buffer,
    pub up: wgpu::Buffer,
    /// Input token ids, one per row.
    pub tokens: wgpu::Buffer,
    /// `RowMeta` per row: where its K and V go and what it attends to.
    pub rows: wgpu::Buffer,
    pub step: wgpu::Buffer,
    /// Split attention's per-chunk results, `[decode token][head][chunk]`.
    pub att_partial: wgpu::Buffer,
    pub att_ml: wgpu::Buffer,
    /// The rows that need logits, gathered, then normed.
    pub head_x: wgpu::Buffer,
    pub head_xb: wgpu::Buffer,
    /// `[head row][n_vocab]`.
    pub logits: wgpu::Buffer,
    /// Argmax per head row.
    pub ids: wgpu::Buffer,
    /// `[head row][MAX_TOP_K]` (id, logit bits) pairs.
    pub topk_out: wgpu::Buffer,
    pub topk_params: wgpu::Buffer,
    pub staging: wgpu::Buffer,
    /// Where pipelined greedy steps land their ids, alternately (one may be
    /// mapped while the next step writes the other).
    pub greedy_staging: [wgpu::Buffer; 2],
}

/// Bytes of [`StepBuffers`] for these capacities (the memory estimate).
pub(crate) fn step_bytes(
    cfg: &LlamaConfig,
    cap: usize,
    head_cap: usize,
    decode_cap: usize,
    n_ctx: usize,
) -> u64 {
    let widths = 2 * pad(cfg.n_embd)
        + 2 * pad(cfg.n_head * cfg.head_dim)
        + 2 * pad(cfg.kv_dim())
        + 2 * pad(cfg.n_ff);
    let chunks = n_ctx.div_ceil(ATTN_CHUNK as usize);
    (cap * (widths + 3) * 4
        + decode_cap * cfg.n_head * chunks * (cfg.head_dim + 2) * 4
        + head_cap * (2 * pad(cfg.n_embd) + 2 * cfg.n_vocab + 1 + 2 * MAX_TOP_K) * 4) as u64
}

impl StepBuffers {
    pub fn new(
        gpu: &Gpu,
        cfg: &LlamaConfig,
        cap: usize,
        head_cap: usize,
        decode_cap: usize,
        n_ctx: usize,
    ) -> StepBuffers {
        let buf = |label: &str, rows: usize, width: usize| {
            gpu.storage(label, (rows * pad(width) * 4) as u64)
        };
        let q_dim = cfg.n_head * cfg.head_dim;
        let chunks = n_ctx.div_ceil(ATTN_CHUNK as usize);
        StepBuffers {
            cap,
            head_cap,
            decode_cap,
            x: buf("x", cap, cfg.n_embd),
            xb: buf("xb", cap, cfg.n_embd),
            q: buf("q", cap, q_dim),
            k: buf("k", cap, cfg.kv_dim()),
            v: buf("v", cap, cfg.kv_dim()),
            att: buf("att", cap, q_dim),
            gate: buf("gate", cap, cfg.n_ff),
            up: buf("up", cap, cfg.n_ff),
            tokens: gpu.storage("tokens", (cap * 4) as u64),
            rows: gpu.storage("rows", (cap * 8) as u64),
            step: gpu.uniform(&Step {
                n_rows: 1,
                row0: 0,
                n_chunks: 1,
                _pad: 0,
            }),
            att_partial: gpu.storage(
                "attn partial",
                (decode_cap * cfg.n_head * chunks * cfg.head_dim * 4) as u64,
            ),
            att_ml: gpu.storage(
                "attn max/sum",
                (decode_cap * cfg.n_head * chunks * 8) as u64,
            ),
            head_x: buf("head x", head_cap, cfg.n_embd),
            head_xb: buf("head xb", head_cap, cfg.n_embd),
            logits: gpu.storage("logits", (head_cap * cfg.n_vocab * 4) as u64),
            ids: gpu.storage("argmax ids", (head_cap * 4) as u64),
            topk_out: gpu.storage("topk", (head_cap * MAX_TOP_K * 8) as u64),
            topk_params: gpu.uniform(&TopKParams {
                n: cfg.n_vocab as u32,
                k: 1,
                out_stride: (MAX_TOP_K * 2) as u32,
                _pad: 0,
            }),
            staging: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: (head_cap
                    * (cfg.n_vocab * 4)
                        .max(MAX_TOP_K * 8)
                        .max(pad(cfg.n_embd) * 4)
                    + head_cap * 4) as u64,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            greedy_staging: [0, 1].map(|i| {
                gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&format!("greedy readback {i}")),
                    size: 16,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            }),
        }
    }
}
