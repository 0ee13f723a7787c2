//! The forward pass as prepared dispatches: built once at load over the
//! weights, the KV cache and the step buffers, for every step width; a step
//! only picks them and sets their workgroup counts.
//!
//! Per layer, as the CPU reference: RMSNorm, Q/K/V, RoPE + KV store,
//! attention (tiled for a prompt chunk, split over the context for decode
//! tokens), output projection with the residual add fused, RMSNorm,
//! gate/up, SwiGLU, down (+ residual). The head: RMSNorm and the output
//! projection over the rows that need logits, then argmax / top-k per row.

use crate::gpu::kernels::{
    cache_store_pairs, CacheTypes, Dispatch, Kernel, ATTN_TILE_Q, MATMUL_TILE_T, WG,
};
use crate::gpu::params::{AttnParams, CountParams, NormParams, RopeParams};
use crate::gpu::weights::GpuMatrix;
use crate::gpu::Gpu;
use crate::model::LlamaConfig;

use super::buffers::{pad, StepBuffers, MULTI_MAX};
use super::kv_cache::KvCache;
use super::weights::GpuWeights;

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
    /// `y[t] (+)= m x[t]` for up to `cap` tokens (rows `x_pad` / `y_pad` floats apart).
    #[allow(clippy::too_many_arguments)]
    fn new(
        gpu: &Gpu,
        m: &GpuMatrix,
        x: &wgpu::Buffer,
        x_pad: usize,
        y: &wgpu::Buffer,
        y_pad: usize,
        acc: bool,
        cap: usize,
    ) -> Proj {
        Proj {
            one: m.matvec(gpu, x, y, 0, acc),
            multi: MULTI_WIDTHS
                .iter()
                .map(|&t| m.matvec_tokens(gpu, x, x_pad, y, y_pad, 0, acc, t))
                .collect(),
            matmul: m.matmul(gpu, x, x_pad, y, y_pad, acc, cap),
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
    attn_norm: Dispatch,
    q: Proj,
    k: Proj,
    v: Proj,
    rope_kv: Dispatch,
    attn_tile: Dispatch,
    attn_partial: Dispatch,
    attn_combine: Dispatch,
    wo: Proj,
    ffn_norm: Dispatch,
    gate: Proj,
    up: Proj,
    swiglu: Dispatch,
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
    ff_pad: u32,
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
        let proj =
            |m: &GpuMatrix,
             x: &wgpu::Buffer,
             x_pad: usize,
             y: &wgpu::Buffer,
             y_pad: usize,
             acc: bool| { Proj::new(gpu, m, x, x_pad, y, y_pad, acc, cap) };
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
                LayerOps {
                    attn_norm: norm(&b.x, &lw.attn_norm, &b.xb),
                    q: proj(&lw.wq, &b.xb, e_pad, &b.q, q_pad, false),
                    k: proj(&lw.wk, &b.xb, e_pad, &b.k, kv_pad, false),
                    v: proj(&lw.wv, &b.xb, e_pad, &b.v, kv_pad, false),
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
                    attn_partial: attn(Kernel::AttnPartial { cache: kv }, &split),
                    attn_combine: attn(Kernel::AttnCombine, &split),
                    wo: proj(&lw.wo, &b.att, q_pad, &b.x, e_pad, true),
                    ffn_norm: norm(&b.x, &lw.ffn_norm, &b.xb),
                    gate: proj(&lw.w_gate, &b.xb, e_pad, &b.gate, ff_pad, false),
                    up: proj(&lw.w_up, &b.xb, e_pad, &b.up, ff_pad, false),
                    swiglu: gpu.dispatch(
                        Kernel::Swiglu,
                        &[
                            b.gate.as_entire_binding(),
                            b.up.as_entire_binding(),
                            ff_params.as_entire_binding(),
                        ],
                        [1, 1, 1],
                    ),
                    down: proj(&lw.w_down, &b.gate, ff_pad, &b.x, e_pad, true),
                }
            })
            .collect();
        let embed = w.token_embd.embedding(gpu, &b.tokens, 0, &b.x, e_pad);
        let head_norm = norm(&b.head_x, &w.output_norm, &b.head_xb);
        let output = Proj::new(
            gpu,
            w.output(),
            &b.head_xb,
            e_pad,
            &b.logits,
            cfg.n_vocab,
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
            v.push((&l.attn_norm, [t as u32, 1, 1]));
            for p in [&l.q, &l.k, &l.v] {
                for d in p.for_tokens(t) {
                    v.push((d, self.proj_groups(d, t)));
                }
            }
            v.push((&l.rope_kv, [l.rope_kv.groups[0], t as u32, 1]));
            if s.chunk > 0 {
                v.push((
                    &l.attn_tile,
                    [(s.chunk as u32).div_ceil(ATTN_TILE_Q), self.n_head, 1],
                ));
            }
            if decode > 0 {
                v.push((&l.attn_partial, [s.n_chunks, self.n_head, decode]));
                v.push((&l.attn_combine, [self.n_head, decode, 1]));
            }
            for d in l.wo.for_tokens(t) {
                v.push((d, self.proj_groups(d, t)));
            }
            v.push((&l.ffn_norm, [t as u32, 1, 1]));
            for p in [&l.gate, &l.up] {
                for d in p.for_tokens(t) {
                    v.push((d, self.proj_groups(d, t)));
                }
            }
            v.push((&l.swiglu, [(t as u32 * self.ff_pad).div_ceil(WG), 1, 1]));
            for d in l.down.for_tokens(t) {
                v.push((d, self.proj_groups(d, t)));
            }
        }
        v
    }

    /// Norm and output projection over `r` gathered rows.
    pub fn head(&self, r: usize) -> Vec<(&Dispatch, [u32; 3])> {
        let mut v = vec![(&self.head_norm, [r as u32, 1, 1])];
        for d in self.output.for_tokens(r) {
            v.push((d, self.proj_groups(d, r)));
        }
        v
    }

    fn proj_groups(&self, d: &Dispatch, t: usize) -> [u32; 3] {
        match d.kernel {
            Kernel::Matmul { .. } => [d.groups[0], (t as u32).div_ceil(MATMUL_TILE_T), 1],
            _ => d.groups,
        }
    }
}
