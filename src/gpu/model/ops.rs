//! The forward pass as prepared dispatches: built once at load over the
//! weights, the KV cache and the step buffers, for every step width; a step
//! only picks them and sets their workgroup counts.
//!
//! Per layer, as the CPU reference: RMSNorm, Q/K/V, RoPE + KV store,
//! attention (tiled for a prompt chunk, split over the context for decode
//! tokens), output projection with the residual add fused, RMSNorm,
//! gate/up, SwiGLU, down (+ residual). The head: RMSNorm and the output
//! projection over the rows that need logits, then argmax / top-k per row.
//!
//! Steps of 1..=16 tokens (the matvec) fuse further: RMSNorm + Q, K, V is
//! one dispatch (the norm folded into the matvec over Q, K and V's rows,
//! which writes the three outputs), RMSNorm + gate + up + SwiGLU another
//! (gate and up rows interleaved, SwiGLU in the epilogue): 7 dispatches a
//! layer in decode instead of 13. Prefill (the matmul) reads the same fused
//! matrices by row ranges and keeps its norm and SwiGLU dispatches. Layers
//! whose Q/K/V or gate/up differ in type keep separate products.

use crate::gpu::kernels::{
    attn_heads, cache_store_pairs, CacheTypes, Dispatch, Kernel, MatvecOut, ATTN_TILE_Q,
    MATMUL_TILE_T, WG,
};
use crate::gpu::params::{AttnParams, CountParams, NormParams, RopeParams};
use crate::gpu::weights::{FoldedNorm, GpuMatrix, Outputs, TokenRows};
use crate::gpu::Gpu;
use crate::model::LlamaConfig;

use super::buffers::{pad, StepBuffers, MULTI_MAX};
use super::kv_cache::KvCache;
use super::weights::{GateUp, GpuWeights, Qkv};

/// Widths of the few-token matvec variants: a step of t tokens uses the
/// narrowest that holds them.
const MULTI_WIDTHS: [u32; 4] = [2, 4, 8, 16];

/// One matrix product, prepared for each step width: one token (matvec),
/// 2..=16 (few-token matvec: weights read once, applied from registers),
/// more (tiled matmul).
pub(crate) struct Proj {
    one: Vec<Dispatch>,
    multi: Vec<Vec<Dispatch>>,
    matmul: Vec<Dispatch>,
}

impl Proj {
    /// `y[t] (+)= m x[t]` for up to `cap` tokens.
    fn new(gpu: &Gpu, m: &GpuMatrix, x: TokenRows, y: TokenRows, acc: bool, cap: usize) -> Proj {
        Proj {
            one: m.matvec(gpu, x.buf, y.buf, 0, acc),
            multi: MULTI_WIDTHS
                .iter()
                .map(|&t| m.matvec_tokens(gpu, x, y, 0, acc, t))
                .collect(),
            matmul: m.matmul(gpu, x, y, acc, cap),
        }
    }

    /// A stage of several dispatches per width: `make(Some(width))` for the
    /// matvec widths (1, then MULTI_WIDTHS), `make(None)` for the matmul.
    fn stage(mut make: impl FnMut(Option<u32>) -> Vec<Dispatch>) -> Proj {
        Proj {
            one: make(Some(1)),
            multi: MULTI_WIDTHS.iter().map(|&t| make(Some(t))).collect(),
            matmul: make(None),
        }
    }

    fn for_tokens(&self, t: usize) -> &[Dispatch] {
        if t == 1 {
            &self.one
        } else if t <= MULTI_MAX {
            let i = MULTI_WIDTHS
                .iter()
                .position(|&w| w as usize >= t)
                .expect("MULTI_MAX is the widest variant");
            &self.multi[i]
        } else {
            &self.matmul
        }
    }
}

struct LayerOps {
    /// RMSNorm, Q, K, V (fused for 1..=16 tokens where the types allow).
    attn_in: Proj,
    rope_kv: Dispatch,
    attn_tile: Dispatch,
    attn_partial: Dispatch,
    attn_combine: Dispatch,
    wo: Proj,
    /// RMSNorm, gate, up, SwiGLU (fused for 1..=16 tokens where the types allow).
    ffn_in: Proj,
    down: Proj,
}

pub(crate) struct Ops {
    embed: Vec<Dispatch>,
    layers: Vec<LayerOps>,
    head_norm: Dispatch,
    output: Proj,
    pub argmax: Dispatch,
    pub topk: Dispatch,
    n_head: u32,
    /// Decode attention's workgroups per token and chunk (query heads / heads per workgroup).
    attn_groups: u32,
    ff_pad: u32,
}

/// Whether the fused Q/K/V matvec takes RoPE and the KV store into its
/// epilogue: f16 caches (a quantized block spans 32 rows, more than a group
/// holds) and chunks of whole RoPE pairs.
fn rope_in_matvec(kv: CacheTypes, m: &GpuMatrix) -> bool {
    use crate::quant::TensorType::F16;
    kv.k == F16
        && kv.v == F16
        && m.chunks
            .iter()
            .all(|c| c.first_row % 2 == 0 && c.rows % 2 == 0)
}

/// Invocations of the RoPE/KV-store kernel: one per Q pair, one per
/// `GROUP` pairs of K and of V (a quantized cache stores two blocks at once).
fn rope_kv_invocations(cfg: &LlamaConfig, kv: CacheTypes) -> u32 {
    let nk = cfg.kv_dim() / 2;
    (cfg.n_head * cfg.head_dim / 2
        + nk.div_ceil(cache_store_pairs(kv.k))
        + nk.div_ceil(cache_store_pairs(kv.v))) as u32
}

/// What a step runs: `rows` tokens, the first `chunk` of them one
/// sequence's prompt chunk, the others decode tokens whose longest context
/// spans `n_chunks` attention chunks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub rows: usize,
    pub chunk: usize,
    pub n_chunks: u32,
}

impl Ops {
    pub fn build(
        gpu: &Gpu,
        cfg: &LlamaConfig,
        w: &GpuWeights,
        cache: &KvCache,
        b: &StepBuffers,
    ) -> Ops {
        let hd = cfg.head_dim;
        let (e_pad, q_pad, kv_pad, ff_pad) = (
            pad(cfg.n_embd),
            pad(cfg.n_head * hd),
            pad(cfg.kv_dim()),
            pad(cfg.n_ff),
        );
        let cap = b.cap;
        let norm = |input: &wgpu::Buffer, weight: &wgpu::Buffer, out: &wgpu::Buffer| {
            let p = gpu.uniform(&NormParams {
                n: cfg.n_embd as u32,
                eps: cfg.rms_eps,
                stride: e_pad as u32,
                _pad: 0,
            });
            gpu.dispatch(
                Kernel::RmsNorm,
                &[
                    input.as_entire_binding(),
                    weight.as_entire_binding(),
                    out.as_entire_binding(),
                    p.as_entire_binding(),
                ],
                [1, 1, 1],
            )
        };
        let rope_params = gpu.uniform(&RopeParams {
            n_head: cfg.n_head as u32,
            n_head_kv: cfg.n_head_kv as u32,
            half_dim: (hd / 2) as u32,
            rope_pairs: (cfg.rope_dim / 2) as u32,
            q_stride: (q_pad / 2) as u32,
            kv_stride: (kv_pad / 2) as u32,
            attn_factor: cache.attn_factor,
            _pad: 0,
        });
        let kv = cache.types;
        let attn_heads = attn_heads(cfg.n_head as u32, cfg.n_head_kv as u32, hd as u32);
        let attn_params = gpu.uniform(&AttnParams {
            n_head: cfg.n_head as u32,
            n_head_kv: cfg.n_head_kv as u32,
            head_dim: hd as u32,
            max_chunks: cache
                .n_ctx
                .div_ceil(crate::gpu::kernels::ATTN_CHUNK as usize) as u32,
            scale: 1.0 / (hd as f32).sqrt(),
            q_stride: q_pad as u32,
            _pad: [0; 2],
        });
        // SwiGLU runs over whole padded rows (zero past n_ff stays zero).
        let ff_params = gpu.uniform(&CountParams {
            n: (cap * ff_pad) as u32,
            _pad: [0; 3],
        });
        let proj = |m: &GpuMatrix,
                    x: &wgpu::Buffer,
                    x_pad: usize,
                    y: &wgpu::Buffer,
                    y_pad: usize,
                    acc: bool| {
            let (x, y) = (TokenRows::new(x, x_pad), TokenRows::new(y, y_pad));
            Proj::new(gpu, m, x, y, acc, cap)
        };
        // The normalised residual, input of the unfused projections.
        let xb = TokenRows::new(&b.xb, e_pad);
        // One unfused matrix at a step width: the matvec, or the matmul.
        let unfused = |m: &GpuMatrix, y: TokenRows, width: Option<u32>| match width {
            Some(t) => m.matvec_tokens(gpu, xb, y, 0, false, t),
            None => m.matmul(gpu, xb, y, false, cap),
        };
        let layers = w
            .layers
            .iter()
            .zip(cache.k.iter().zip(&cache.v))
            .map(|(lw, (kc, vc))| {
                let attn = |k: Kernel, extra: &[wgpu::BindingResource]| {
                    let mut bind = vec![
                        b.q.as_entire_binding(),
                        kc.as_entire_binding(),
                        vc.as_entire_binding(),
                    ];
                    bind.extend(extra.iter().cloned());
                    gpu.dispatch(k, &bind, [1, 1, 1])
                };
                let split = [
                    b.att_partial.as_entire_binding(),
                    b.att_ml.as_entire_binding(),
                    b.att.as_entire_binding(),
                    attn_params.as_entire_binding(),
                    b.step.as_entire_binding(),
                    b.rows.as_entire_binding(),
                ];
                let folded = |weight| FoldedNorm {
                    weight,
                    n: cfg.n_embd,
                    eps: cfg.rms_eps,
                };
                let swiglu = || {
                    gpu.dispatch(
                        Kernel::Swiglu,
                        &[
                            b.gate.as_entire_binding(),
                            b.up.as_entire_binding(),
                            ff_params.as_entire_binding(),
                        ],
                        [1, 1, 1],
                    )
                };
                let (nq, nkv) = (cfg.n_head * hd, cfg.kv_dim());
                let attn_in = Proj::stage(|width| match (&lw.qkv, width) {
                    (Qkv::Fused(m), Some(t)) if rope_in_matvec(kv, m) => m.matvec_fused(
                        gpu,
                        TokenRows::new(&b.x, e_pad),
                        Some(folded(&lw.attn_norm)),
                        Outputs::Rope {
                            q: &b.q,
                            y_stride: q_pad,
                            splits: [nq, nq + nkv],
                            table: &cache.rope,
                            rows: &b.rows,
                            kc,
                            vc,
                            rope: &rope_params,
                            step: &b.step,
                        },
                        t,
                    ),
                    (Qkv::Fused(m), Some(t)) => m.matvec_fused(
                        gpu,
                        TokenRows::new(&b.x, e_pad),
                        Some(folded(&lw.attn_norm)),
                        Outputs::Split3 {
                            ys: [&b.q, &b.k, &b.v],
                            y_stride: q_pad,
                            s_stride: kv_pad,
                            splits: [nq, nq + nkv],
                        },
                        t,
                    ),
                    (Qkv::Fused(m), None) => {
                        let mut v = vec![norm(&b.x, &lw.attn_norm, &b.xb)];
                        for (y, pad, rows) in [
                            (&b.q, q_pad, (0, 1, nq)),
                            (&b.k, kv_pad, (nq, 1, nkv)),
                            (&b.v, kv_pad, (nq + nkv, 1, nkv)),
                        ] {
                            v.extend(m.matmul_rows(
                                gpu,
                                xb,
                                TokenRows::new(y, pad),
                                false,
                                cap,
                                rows,
                            ));
                        }
                        v
                    }
                    (Qkv::Separate(ms), width) => {
                        let mut v = vec![norm(&b.x, &lw.attn_norm, &b.xb)];
                        for (m, y, pad) in [
                            (&ms[0], &b.q, q_pad),
                            (&ms[1], &b.k, kv_pad),
                            (&ms[2], &b.v, kv_pad),
                        ] {
                            v.extend(unfused(m, TokenRows::new(y, pad), width));
                        }
                        v
                    }
                });
                let ffn_in = Proj::stage(|width| match (&lw.gate_up, width) {
                    (GateUp::Interleaved(m), Some(t)) => m.matvec_fused(
                        gpu,
                        TokenRows::new(&b.x, e_pad),
                        Some(folded(&lw.ffn_norm)),
                        Outputs::Glu {
                            y: &b.gate,
                            y_stride: ff_pad,
                        },
                        t,
                    ),
                    (GateUp::Interleaved(m), None) => {
                        let mut v = vec![norm(&b.x, &lw.ffn_norm, &b.xb)];
                        for (y, first) in [(&b.gate, 0), (&b.up, 1)] {
                            let rows = (first, 2, cfg.n_ff);
                            v.extend(m.matmul_rows(
                                gpu,
                                xb,
                                TokenRows::new(y, ff_pad),
                                false,
                                cap,
                                rows,
                            ));
                        }
                        v.push(swiglu());
                        v
                    }
                    (GateUp::Separate(ms), width) => {
                        let mut v = vec![norm(&b.x, &lw.ffn_norm, &b.xb)];
                        for (m, y) in [(&ms[0], &b.gate), (&ms[1], &b.up)] {
                            v.extend(unfused(m, TokenRows::new(y, ff_pad), width));
                        }
                        v.push(swiglu());
                        v
                    }
                });
                LayerOps {
                    attn_in,
                    rope_kv: gpu.dispatch(
                        Kernel::RopeKv { cache: kv },
                        &[
                            b.q.as_entire_binding(),
                            b.k.as_entire_binding(),
                            b.v.as_entire_binding(),
                            cache.rope.as_entire_binding(),
                            kc.as_entire_binding(),
                            vc.as_entire_binding(),
                            rope_params.as_entire_binding(),
                            b.rows.as_entire_binding(),
                        ],
                        [rope_kv_invocations(cfg, kv).div_ceil(WG), 1, 1],
                    ),
                    attn_tile: attn(
                        Kernel::AttnTile {
                            head_dim: hd as u32,
                            cache: kv,
                        },
                        &[
                            b.att.as_entire_binding(),
                            attn_params.as_entire_binding(),
                            b.step.as_entire_binding(),
                            b.rows.as_entire_binding(),
                        ],
                    ),
                    attn_partial: attn(
                        Kernel::AttnPartial {
                            cache: kv,
                            head_dim: hd as u32,
                            heads: attn_heads,
                        },
                        &split,
                    ),
                    attn_combine: attn(Kernel::AttnCombine, &split),
                    wo: proj(&lw.wo, &b.att, q_pad, &b.x, e_pad, true),
                    ffn_in,
                    down: proj(&lw.w_down, &b.gate, ff_pad, &b.x, e_pad, true),
                }
            })
            .collect();
        let embed = w.token_embd.embedding(gpu, &b.tokens, 0, &b.x, e_pad);
        let head_norm = norm(&b.head_x, &w.output_norm, &b.head_xb);
        let output = Proj::new(
            gpu,
            w.output(),
            TokenRows::new(&b.head_xb, e_pad),
            TokenRows::new(&b.logits, cfg.n_vocab),
            false,
            b.head_cap,
        );
        let count = gpu.uniform(&CountParams {
            n: cfg.n_vocab as u32,
            _pad: [0; 3],
        });
        let argmax = gpu.dispatch(
            Kernel::Argmax,
            &[
                b.logits.as_entire_binding(),
                b.ids.as_entire_binding(),
                count.as_entire_binding(),
            ],
            [1, 1, 1],
        );
        let topk = gpu.dispatch(
            Kernel::TopK,
            &[
                b.logits.as_entire_binding(),
                b.topk_out.as_entire_binding(),
                b.topk_params.as_entire_binding(),
            ],
            [1, 1, 1],
        );
        Ops {
            embed,
            layers,
            head_norm,
            output,
            argmax,
            topk,
            n_head: cfg.n_head as u32,
            attn_groups: cfg.n_head as u32 / attn_heads,
            ff_pad: ff_pad as u32,
        }
    }

    /// The layers of a step, in order, with their workgroup counts: the one
    /// description of the forward pass that steps and the profiler encode.
    pub fn layers(&self, s: Shape) -> Vec<(&Dispatch, [u32; 3])> {
        let t = s.rows;
        let decode = (s.rows - s.chunk) as u32;
        let mut v: Vec<(&Dispatch, [u32; 3])> = Vec::new();
        for d in &self.embed {
            v.push((d, [d.groups[0], t as u32, 1]));
        }
        for l in &self.layers {
            for d in l.attn_in.for_tokens(t) {
                v.push((d, self.proj_groups(d, t)));
            }
            let rope_done = l.attn_in.for_tokens(t).iter().any(|d| {
                matches!(
                    d.kernel,
                    Kernel::Matvec {
                        out: MatvecOut::Rope,
                        ..
                    }
                )
            });
            if !rope_done {
                v.push((&l.rope_kv, [l.rope_kv.groups[0], t as u32, 1]));
            }
            if s.chunk > 0 {
                v.push((
                    &l.attn_tile,
                    [(s.chunk as u32).div_ceil(ATTN_TILE_Q), self.n_head, 1],
                ));
            }
            if decode > 0 {
                v.push((&l.attn_partial, [s.n_chunks, self.attn_groups, decode]));
                v.push((&l.attn_combine, [self.n_head, decode, 1]));
            }
            for d in l.wo.for_tokens(t) {
                v.push((d, self.proj_groups(d, t)));
            }
            for d in l.ffn_in.for_tokens(t) {
                v.push((d, self.proj_groups(d, t)));
            }
            for d in l.down.for_tokens(t) {
                v.push((d, self.proj_groups(d, t)));
            }
        }
        v
    }

    /// Dispatches of all layers (not the embedding) in a step of shape `s`.
    pub fn layer_dispatches(&self, s: Shape) -> usize {
        self.layers(s).len() - self.embed.len()
    }

    /// Norm and (with `project`) output projection over `r` gathered rows.
    pub fn head(&self, r: usize, project: bool) -> Vec<(&Dispatch, [u32; 3])> {
        let mut v = vec![(&self.head_norm, [r as u32, 1, 1])];
        if project {
            for d in self.output.for_tokens(r) {
                v.push((d, self.proj_groups(d, r)));
            }
        }
        v
    }

    /// The workgroup counts of a stage's dispatch for a step of `t` tokens.
    fn proj_groups(&self, d: &Dispatch, t: usize) -> [u32; 3] {
        match d.kernel {
            Kernel::Matmul { .. } => [d.groups[0], (t as u32).div_ceil(MATMUL_TILE_T), 1],
            Kernel::RmsNorm => [t as u32, 1, 1],
            Kernel::Swiglu => [(t as u32 * self.ff_pad).div_ceil(WG), 1, 1],
            _ => d.groups,
        }
    }
}
