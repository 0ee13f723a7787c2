//! WGSL kernels: source assembly, pipelines (built once, cached), dispatches.
//!
//! A kernel's source is assembled from files in `shaders/`: a generated header
//! of constants, `common.wgsl`, a reduction (subgroup or workgroup memory), a
//! per-type `dequant/<type>.wgsl` for the weight-reading kernels, and the
//! kernel itself. One matvec skeleton thus serves all thirteen tensor types.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use super::layout::Packing;
use super::Gpu;
use crate::quant::TensorType;

/// Invocations per workgroup for every kernel: a multiple of every common
/// subgroup size (8 to 64) and small enough for all adapters.
pub const WG: u32 = 64;
/// KV positions per attention workgroup (decode).
pub const ATTN_CHUNK: u32 = 256;
/// Query tokens per batched-attention workgroup (`shaders/attention_tile.wgsl`).
pub const ATTN_TILE_Q: u32 = WG / 4; // WG / LANES in the shader
/// Rows and tokens per matmul workgroup tile (see `shaders/matmul.wgsl`).
pub const MATMUL_TILE_R: u32 = 64;
pub const MATMUL_TILE_T: u32 = 64;

const COMMON: &str = include_str!("../../shaders/common.wgsl");
const REDUCE_SHARED: &str = include_str!("../../shaders/reduce_shared.wgsl");
const REDUCE_SUBGROUP: &str = include_str!("../../shaders/reduce_subgroup.wgsl");
const MATVEC: &str = include_str!("../../shaders/matvec.wgsl");
const MATVEC_PUT: &str = include_str!("../../shaders/matvec_put.wgsl");
const MATVEC_PUT_SPLIT: &str = include_str!("../../shaders/matvec_put_split.wgsl");
const MATMUL: &str = include_str!("../../shaders/matmul.wgsl");
const EMBEDDING: &str = include_str!("../../shaders/embedding.wgsl");
const RMSNORM: &str = include_str!("../../shaders/rmsnorm.wgsl");
const ROPE: &str = include_str!("../../shaders/rope.wgsl");
const ROPE_KV: &str = include_str!("../../shaders/rope_kv.wgsl");
const MATVEC_PUT_ROPE: &str = include_str!("../../shaders/matvec_put_rope.wgsl");
const ATTENTION: &str = include_str!("../../shaders/attention.wgsl");
const ATTENTION_TILE: &str = include_str!("../../shaders/attention_tile.wgsl");
const SWIGLU: &str = include_str!("../../shaders/swiglu.wgsl");
const ARGMAX: &str = include_str!("../../shaders/argmax.wgsl");
const TOPK: &str = include_str!("../../shaders/topk.wgsl");
const FILL: &str = include_str!("../../shaders/fill.wgsl");
const KV_SHIFT: &str = include_str!("../../shaders/kv_shift.wgsl");

const K_SCALE_MIN: &str = include_str!("../../shaders/dequant/k_scale_min.wgsl");

const WORDS: &str = include_str!("../../shaders/dequant/words.wgsl");
const LONE_SCALE: &str = include_str!("../../shaders/dequant/lone_scale.wgsl");
const SOA: &str = include_str!("../../shaders/dequant/soa.wgsl");

/// The weight decoder for `ty` in `pack`: the binding `W` and
/// `dequant(row, it)` (item `it` of row `row` of a buffer), with the
/// helpers they need.
pub fn dequant_source(ty: TensorType, pack: Packing) -> String {
    let helpers = match ty {
        TensorType::Q4_K | TensorType::Q5_K => K_SCALE_MIN,
        _ => "",
    };
    let (prelude, file) = match pack {
        Packing::Words => (WORDS, dequant_file(ty)),
        Packing::Padded => (
            WORDS,
            match ty {
                TensorType::Q4_0 => include_str!("../../shaders/dequant/q4_0_padded.wgsl"),
                TensorType::Q5_0 => include_str!("../../shaders/dequant/q5_0_padded.wgsl"),
                TensorType::Q8_0 => include_str!("../../shaders/dequant/q8_0_padded.wgsl"),
                _ => unreachable!("no padded layout for {ty}"),
            },
        ),
        Packing::Bytes => (LONE_SCALE, dequant_file(ty)),
        Packing::Soa => (
            SOA,
            match ty {
                TensorType::Q4_0 => include_str!("../../shaders/dequant/q4_0_soa.wgsl"),
                TensorType::Q5_0 => include_str!("../../shaders/dequant/q5_0_soa.wgsl"),
                TensorType::Q8_0 => include_str!("../../shaders/dequant/q8_0_soa.wgsl"),
                _ => unreachable!("no structure-of-arrays layout for {ty}"),
            },
        ),
    };
    format!("{helpers}\n{prelude}\n{file}")
}

fn dequant_file(ty: TensorType) -> &'static str {
    match ty {
        TensorType::F32 => include_str!("../../shaders/dequant/f32.wgsl"),
        TensorType::F16 => include_str!("../../shaders/dequant/f16.wgsl"),
        TensorType::BF16 => include_str!("../../shaders/dequant/bf16.wgsl"),
        TensorType::Q4_0 => include_str!("../../shaders/dequant/q4_0.wgsl"),
        TensorType::Q4_1 => include_str!("../../shaders/dequant/q4_1.wgsl"),
        TensorType::Q5_0 => include_str!("../../shaders/dequant/q5_0.wgsl"),
        TensorType::Q5_1 => include_str!("../../shaders/dequant/q5_1.wgsl"),
        TensorType::Q8_0 => include_str!("../../shaders/dequant/q8_0.wgsl"),
        TensorType::Q2_K => include_str!("../../shaders/dequant/q2_k.wgsl"),
        TensorType::Q3_K => include_str!("../../shaders/dequant/q3_k.wgsl"),
        TensorType::Q4_K => include_str!("../../shaders/dequant/q4_k.wgsl"),
        TensorType::Q5_K => include_str!("../../shaders/dequant/q5_k.wgsl"),
        TensorType::Q6_K => include_str!("../../shaders/dequant/q6_k.wgsl"),
    }
}

/// Element types of the KV cache: K and V each f16 (the default), Q8_0 or
/// Q4_0 (llama.cpp's `--cache-type-k/-v`), chosen independently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheTypes {
    pub k: TensorType,
    pub v: TensorType,
}

impl Default for CacheTypes {
    fn default() -> CacheTypes {
        CacheTypes {
            k: TensorType::F16,
            v: TensorType::F16,
        }
    }
}

/// The cache types the kernels read and write.
pub const CACHE_TYPES: [TensorType; 3] = [TensorType::F16, TensorType::Q8_0, TensorType::Q4_0];

/// A cache type by llama.cpp's name (`f16`, `q8_0`, `q4_0`).
pub fn parse_cache_type(name: &str) -> Result<TensorType, String> {
    CACHE_TYPES
        .into_iter()
        .find(|t| t.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| format!("unsupported KV cache type '{name}' (supported: f16, q8_0, q4_0)"))
}

/// Bytes of one cache row of `n` values (see shaders/kv/): f16 2 per value;
/// Q8_0 and Q4_0 llama.cpp's 34 and 18 bytes per block of 32, their f16
/// scales packed two a word (2 bytes more when a row has an odd block count).
pub fn cache_row_bytes(ty: TensorType, n: u64) -> u64 {
    let scale_words = n.div_ceil(64);
    match ty {
        TensorType::Q8_0 => n + 4 * scale_words,
        TensorType::Q4_0 => n / 2 + 4 * scale_words,
        _ => 2 * n,
    }
}

/// Pairs of values one store call of the cache type writes (`PFX_GROUP` in
/// shaders/kv/): a quantized cache stores two blocks (one scale word) at once.
pub fn cache_store_pairs(ty: TensorType) -> usize {
    if ty == TensorType::F16 {
        1
    } else {
        32
    }
}

fn kv_file(ty: TensorType, store: bool) -> &'static str {
    match (ty, store) {
        (TensorType::Q8_0, false) => include_str!("../../shaders/kv/q8_0.wgsl"),
        (TensorType::Q8_0, true) => include_str!("../../shaders/kv/q8_0_store.wgsl"),
        (TensorType::Q4_0, false) => include_str!("../../shaders/kv/q4_0.wgsl"),
        (TensorType::Q4_0, true) => include_str!("../../shaders/kv/q4_0_store.wgsl"),
        (_, false) => include_str!("../../shaders/kv/f16.wgsl"),
        (_, true) => include_str!("../../shaders/kv/f16_store.wgsl"),
    }
}

/// The cache row reader (`{prefix}_pair`, `{prefix}_word`) of type `ty` over
/// the storage buffer `buf`, and with `store` its writer (`{prefix}_store`).
pub fn kv_source(ty: TensorType, prefix: &str, buf: &str, store: bool) -> String {
    let mut s = kv_file(ty, false).to_string();
    if store {
        s.push_str(kv_file(ty, true));
        if ty != TensorType::F16 {
            s.push_str(include_str!("../../shaders/kv/quant_store.wgsl"));
        }
    }
    s.replace("PFX_", &format!("{prefix}_")).replace("BUF", buf)
}

/// Every kernel variant the engine can build; the key of the pipeline cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Matrix-vector product for `tokens` (1, 2, 4, 8 or 16) tokens;
    /// `group` invocations (8..=64, a power of two) share `rows` (1, 2 or 4
    /// for one token; 1, 2, 4 or 8 for several) rows.
    Matvec {
        ty: TensorType,
        pack: Packing,
        group: u32,
        rows: u32,
        tokens: u32,
        /// RMSNorm of x folded in (the norm weights are one more binding).
        norm: bool,
        out: MatvecOut,
    },
    /// Matrix-matrix product for a batch of tokens (prefill); each
    /// invocation accumulates a `regs` x `regs` register tile (8 or 16).
    Matmul {
        ty: TensorType,
        pack: Packing,
        regs: u32,
    },
    Embedding {
        ty: TensorType,
        pack: Packing,
    },
    RmsNorm,
    /// RoPE on Q and K, K and V written into the cache in its types.
    RopeKv {
        cache: CacheTypes,
    },
    /// Decode attention (one token), split over the context: partial
    /// results per 256 positions, then their combination. One workgroup
    /// serves `heads` query heads of one KV group ([`attn_heads`]).
    AttnPartial {
        cache: CacheTypes,
        head_dim: u32,
        heads: u32,
    },
    AttnCombine,
    /// Causal attention for a batch of tokens (prefill), for one head size.
    AttnTile {
        head_dim: u32,
        cache: CacheTypes,
    },
    /// Context shift: cached keys re-rotated to new positions.
    KvShift {
        k: TensorType,
    },
    Swiglu,
    Argmax,
    /// The k largest logits with their ids (sampling without a full readback).
    TopK,
    /// Random weights for synthetic models, written on the GPU.
    Fill,
}

/// Where a matvec's sums go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatvecOut {
    /// Row r to `y[r]` (or `y[r] +=`).
    One,
    /// W is three matrices' rows (Q, K, V): each range to its own buffer
    /// (two more bindings).
    Split3,
    /// W is gate and up rows interleaved: `silu(gate) * up` per pair.
    Glu,
    /// W is Q, K and V rows: Q rotated into `y`, K rotated and V stored as
    /// f16 pairs in the KV cache (bindings: cos/sin table, step rows, K and
    /// V caches, RoPE parameters, step).
    Rope,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// `var<storage, read>`
    Read,
    /// `var<storage, read_write>`
    ReadWrite,
    Uniform,
}

use Binding::{Read, ReadWrite, Uniform};

impl Kernel {
    /// Short family name for profiles and labels.
    pub fn family(&self) -> String {
        match self {
            Kernel::Matvec { ty, tokens: 1, .. } => {
                format!("matvec_{}", ty.name().to_lowercase())
            }
            Kernel::Matvec { ty, .. } => format!("matvec_multi_{}", ty.name().to_lowercase()),
            Kernel::Matmul { ty, .. } => format!("matmul_{}", ty.name().to_lowercase()),
            Kernel::Embedding { .. } => "embedding".into(),
            Kernel::RmsNorm => "rmsnorm".into(),
            Kernel::RopeKv { .. } => "rope_kv".into(),
            Kernel::AttnPartial { .. } | Kernel::AttnCombine | Kernel::AttnTile { .. } => {
                "attention".into()
            }
            Kernel::KvShift { .. } => "kv_shift".into(),
            Kernel::Swiglu => "swiglu".into(),
            Kernel::Argmax => "argmax".into(),
            Kernel::TopK => "topk".into(),
            Kernel::Fill => "fill".into(),
        }
    }

    fn entry_point(&self) -> &'static str {
        match self {
            Kernel::AttnPartial { .. } => "partial",
            Kernel::AttnCombine => "combine",
            _ => "main",
        }
    }

    pub fn bindings(&self) -> Vec<Binding> {
        match self {
            Kernel::Matvec { norm, out, .. } => {
                let mut b = vec![Read, Read, ReadWrite, Uniform];
                if *norm {
                    b.push(Read);
                }
                match out {
                    MatvecOut::Split3 => b.extend([ReadWrite, ReadWrite]),
                    MatvecOut::Rope => {
                        b.extend([Read, Read, ReadWrite, ReadWrite, Uniform, Uniform])
                    }
                    MatvecOut::One | MatvecOut::Glu => {}
                }
                b
            }
            Kernel::Matmul { .. } => vec![Read, Read, ReadWrite, Uniform],
            Kernel::Embedding { .. } => vec![Read, Read, ReadWrite, Uniform],
            Kernel::RmsNorm => vec![Read, Read, ReadWrite, Uniform],
            Kernel::RopeKv { .. } => vec![
                ReadWrite, Read, Read, Read, ReadWrite, ReadWrite, Uniform, Read,
            ],
            Kernel::KvShift { .. } => vec![Read, ReadWrite, Read, Uniform],
            Kernel::AttnPartial { .. } | Kernel::AttnCombine => vec![
                Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, Uniform, Uniform, Read,
            ],
            Kernel::AttnTile { .. } => vec![Read, Read, Read, ReadWrite, Uniform, Uniform, Read],
            Kernel::Swiglu => vec![ReadWrite, Read, Uniform],
            Kernel::Argmax | Kernel::TopK => vec![Read, ReadWrite, Uniform],
            Kernel::Fill => vec![ReadWrite, Uniform],
        }
    }

    /// The matvec's generated declarations: the fusion constants, the norm
    /// weights (binding 4) and the extra outputs (next bindings), `put`.
    fn matvec_fusion(norm: bool, out: MatvecOut) -> String {
        let mut s = format!(
            "const NORM: bool = {norm};\nconst OUT_GLU: bool = {};\nconst OUT_ROPE: bool = {};\n",
            out == MatvecOut::Glu,
            out == MatvecOut::Rope
        );
        if norm {
            s.push_str(
                "@group(0) @binding(4) var<storage, read> NW: array<vec4<f32>>;\n\
                 fn norm_weight(i: u32) -> vec4<f32> { return NW[i]; }\n",
            );
        } else {
            s.push_str("fn norm_weight(i: u32) -> vec4<f32> { return vec4<f32>(1.0); }\n");
        }
        let b = 4 + norm as u32;
        // The skeleton calls both `put` and `put_pair` (behind constants), so
        // each variant defines the one it does not use as a no-op.
        match out {
            MatvecOut::Split3 => {
                s.push_str(&format!(
                    "@group(0) @binding({b}) var<storage, read_write> Y1: array<f32>;\n\
                     @group(0) @binding({}) var<storage, read_write> Y2: array<f32>;\n",
                    b + 1
                ));
                s.push_str(MATVEC_PUT_SPLIT);
            }
            MatvecOut::Rope => {
                s.push_str(&format!(
                    "@group(0) @binding({b}) var<storage, read> CS: array<vec2<f32>>;\n\
                     @group(0) @binding({}) var<storage, read> R: array<vec2<u32>>;\n\
                     @group(0) @binding({}) var<storage, read_write> KC: array<u32>;\n\
                     @group(0) @binding({}) var<storage, read_write> VC: array<u32>;\n\
                     @group(0) @binding({}) var<uniform> RP: RopeParams;\n\
                     @group(0) @binding({}) var<uniform> S: Step;\n",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5
                ));
                s.push_str(ROPE);
                s.push_str(MATVEC_PUT_ROPE);
                s.push_str("fn put(row: u32, j: u32, v: f32) {}\n");
                return s;
            }
            MatvecOut::One | MatvecOut::Glu => s.push_str(MATVEC_PUT),
        }
        s.push_str("fn put_pair(row: u32, j: u32, v: vec2<f32>) {}\n");
        s
    }

    /// Whether this kernel contains a group reduction (and so a subgroup variant).
    fn reduces(&self) -> bool {
        matches!(
            self,
            Kernel::Matvec { .. }
                | Kernel::RmsNorm
                | Kernel::AttnPartial { .. }
                | Kernel::AttnCombine
        )
    }

    /// The complete WGSL source of this kernel, with or without subgroup operations.
    pub fn source(&self, subgroups: bool) -> String {
        let (group, rows, tokens) = match self {
            Kernel::Matvec {
                group,
                rows,
                tokens,
                ..
            } => (*group, *rows, *tokens),
            _ => (WG, 1, 1),
        };
        let (head_dim, heads) = match self {
            Kernel::AttnTile { head_dim, .. } => (*head_dim, 1),
            Kernel::AttnPartial {
                head_dim, heads, ..
            } => (*head_dim, *heads),
            // The combine kernel shares the partial kernel's module; its
            // workgroup arrays need some size, though it never touches them.
            Kernel::AttnCombine => (2, 1),
            _ => (0, 1),
        };
        let regs = match self {
            Kernel::Matmul { regs, .. } => *regs,
            _ => 8,
        };
        let mut s = format!(
            "// Generated header: {self:?}, subgroups: {subgroups}\n\
             const WG: u32 = {WG}u;\nconst GROUP: u32 = {group}u;\nconst ROWS: u32 = {rows}u;\nconst TOKENS: u32 = {tokens}u;\n\
             const CHUNK: u32 = {ATTN_CHUNK}u;\nconst HEAD_DIM: u32 = {head_dim}u;\nconst HEADS: u32 = {heads}u;\n\
             const REGS: u32 = {regs}u;\n\n"
        );
        s.push_str(COMMON);
        if self.reduces() {
            s.push_str(if subgroups {
                REDUCE_SUBGROUP
            } else {
                REDUCE_SHARED
            });
        }
        match self {
            Kernel::Matvec {
                ty,
                pack,
                norm,
                out,
                ..
            } => {
                s.push_str(&dequant_source(*ty, *pack));
                s.push_str(&Kernel::matvec_fusion(*norm, *out));
                s.push_str(MATVEC);
            }
            Kernel::Matmul { ty, pack, .. } => {
                s.push_str(&dequant_source(*ty, *pack));
                s.push_str(MATMUL);
            }
            Kernel::Embedding { ty, pack } => {
                s.push_str(&dequant_source(*ty, *pack));
                s.push_str(EMBEDDING);
            }
            Kernel::RmsNorm => s.push_str(RMSNORM),
            Kernel::RopeKv { cache } => {
                s.push_str(ROPE);
                s.push_str(&kv_source(cache.k, "k", "KC", true));
                s.push_str(&kv_source(cache.v, "v", "VC", true));
                s.push_str(ROPE_KV);
            }
            Kernel::AttnPartial { cache, .. } | Kernel::AttnTile { cache, .. } => {
                s.push_str(&kv_source(cache.k, "k", "KC", false));
                s.push_str(&kv_source(cache.v, "v", "VC", false));
                s.push_str(if matches!(self, Kernel::AttnTile { .. }) {
                    ATTENTION_TILE
                } else {
                    ATTENTION
                });
            }
            Kernel::AttnCombine => {
                // Same module as the partial kernel; the cache is not read.
                let c = CacheTypes::default();
                s.push_str(&kv_source(c.k, "k", "KC", false));
                s.push_str(&kv_source(c.v, "v", "VC", false));
                s.push_str(ATTENTION);
            }
            Kernel::KvShift { k } => {
                s.push_str(&kv_source(*k, "k", "KC", false));
                s.push_str(&kv_source(*k, "s", "KS", true));
                s.push_str(KV_SHIFT);
            }
            Kernel::Swiglu => s.push_str(SWIGLU),
            Kernel::Argmax => s.push_str(ARGMAX),
            Kernel::TopK => s.push_str(TOPK),
            Kernel::Fill => s.push_str(FILL),
        }
        s
    }

    /// Every distinct shader (for portability tests): each kernel, each type,
    /// each reduction variant.
    pub fn all_variants() -> Vec<(Kernel, bool)> {
        let mut out = Vec::new();
        for ty in TensorType::ALL {
            for &pack in Packing::choices(ty) {
                for group in [8, 16, 32, 64] {
                    for rows in [1, 2, 4] {
                        out.push(Kernel::Matvec {
                            ty,
                            pack,
                            group,
                            rows,
                            tokens: 1,
                            norm: false,
                            out: MatvecOut::One,
                        });
                    }
                }
                for (rows, tokens) in [(1, 2), (1, 16), (2, 4), (4, 8), (8, 4)] {
                    out.push(Kernel::Matvec {
                        ty,
                        pack,
                        group: 8,
                        rows,
                        tokens,
                        norm: false,
                        out: MatvecOut::One,
                    });
                }
                // The fused variants, at every adapter's default tuning.
                for (group, rows, tokens) in [
                    (64, 1, 1),
                    (64, 2, 1),
                    (16, 2, 1),
                    (32, 4, 1),
                    (8, 4, 1),
                    (64, 1, 16),
                    (8, 8, 4),
                ] {
                    for (norm, o) in [
                        (true, MatvecOut::Split3),
                        (true, MatvecOut::Glu),
                        (true, MatvecOut::Rope),
                        (false, MatvecOut::Split3),
                        (false, MatvecOut::Glu),
                        (false, MatvecOut::Rope),
                        (true, MatvecOut::One),
                    ] {
                        out.push(Kernel::Matvec {
                            ty,
                            pack,
                            group,
                            rows,
                            tokens,
                            norm,
                            out: o,
                        });
                    }
                }
                out.push(Kernel::Embedding { ty, pack });
                out.push(Kernel::Matmul { ty, pack, regs: 8 });
                out.push(Kernel::Matmul { ty, pack, regs: 16 });
            }
        }
        for k in CACHE_TYPES {
            for v in CACHE_TYPES {
                let cache = CacheTypes { k, v };
                out.push(Kernel::RopeKv { cache });
                for head_dim in [32, 64, 80, 128, 256] {
                    out.push(Kernel::AttnTile { head_dim, cache });
                }
                // Head sizes and GQA groups of Llama 2, Llama 3, SmolLM2 and a large head.
                for (head_dim, heads) in [(128, 1), (128, 8), (64, 3), (256, 4)] {
                    out.push(Kernel::AttnPartial {
                        cache,
                        head_dim,
                        heads,
                    });
                }
            }
            out.push(Kernel::KvShift { k });
        }
        out.extend([
            Kernel::RmsNorm,
            Kernel::AttnCombine,
            Kernel::Swiglu,
            Kernel::Argmax,
            Kernel::TopK,
            Kernel::Fill,
        ]);
        out.into_iter()
            .flat_map(|k| {
                let both = if k.reduces() {
                    vec![false, true]
                } else {
                    vec![false]
                };
                both.into_iter().map(move |sg| (k, sg))
            })
            .collect()
    }
}

pub(crate) struct Compiled {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

#[derive(Default)]
pub(crate) struct KernelCache {
    map: Mutex<HashMap<Kernel, Arc<Compiled>>>,
}

impl Gpu {
    pub(crate) fn kernel(&self, k: Kernel) -> Arc<Compiled> {
        let mut map = self.kernels.map.lock().expect("kernel cache poisoned");
        if let Some(c) = map.get(&k) {
            return c.clone();
        }
        let label = format!("{k:?}");
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&label),
                source: wgpu::ShaderSource::Wgsl(k.source(self.features.subgroups).into()),
            });
        let entries: Vec<wgpu::BindGroupLayoutEntry> = k
            .bindings()
            .into_iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match b {
                    Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Read | ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage {
                            read_only: b == Read,
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(&label),
                entries: &entries,
            });
        let pipeline_layout = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(&label),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(k.entry_point()),
                compilation_options: Default::default(),
                cache: None,
            });
        let c = Arc::new(Compiled { pipeline, layout });
        map.insert(k, c.clone());
        c
    }

    /// A prepared dispatch: pipeline, bind group (built once), workgroup counts.
    pub fn dispatch(
        &self,
        k: Kernel,
        buffers: &[wgpu::BindingResource],
        groups: [u32; 3],
    ) -> Dispatch {
        assert_eq!(
            buffers.len(),
            k.bindings().len(),
            "{k:?}: wrong number of bindings"
        );
        let compiled = self.kernel(k);
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, r)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: r.clone(),
            })
            .collect();
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &compiled.layout,
            entries: &entries,
        });
        Dispatch {
            kernel: k,
            compiled,
            bind_group,
            groups,
            max_groups: self.limits.max_compute_workgroups_per_dimension,
            errors: self.errors.clone(),
        }
    }

    /// A small uniform buffer holding `params`.
    pub fn uniform<T: bytemuck::Pod>(&self, params: &T) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::bytes_of(params),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// A zero-filled storage buffer of `bytes` (rounded up to 16).
    pub fn storage(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(16).div_ceil(16) * 16,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    }

    /// A storage buffer initialised with `data` (padded to 16 bytes).
    pub fn storage_init(&self, label: &str, data: &[u8]) -> wgpu::Buffer {
        let buf = self.storage(label, data.len() as u64);
        self.queue.write_buffer(&buf, 0, data);
        buf
    }

    /// Copies `bytes` from the start of `buf` to the CPU (waits for the GPU).
    pub fn read_bytes(&self, buf: &wgpu::Buffer, bytes: u64) -> anyhow::Result<Vec<u8>> {
        let size = bytes.div_ceil(4) * 4;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buf, 0, &staging, 0, size);
        self.queue.submit([enc.finish()]);
        map_read(self, &staging, size)
    }

    pub fn read_f32(&self, buf: &wgpu::Buffer, n: usize) -> anyhow::Result<Vec<f32>> {
        let bytes = self.read_bytes(buf, n as u64 * 4)?;
        Ok(bytemuck::cast_slice(&bytes[..n * 4]).to_vec())
    }

    /// Records `dispatches` into one compute pass and submits once.
    pub fn run(&self, dispatches: &[&Dispatch]) {
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for d in dispatches {
                d.encode(&mut pass);
            }
        }
        self.queue.submit([enc.finish()]);
    }
}

/// Maps a MAP_READ buffer, waits, and copies out its first `size` bytes.
pub(crate) fn map_read(gpu: &Gpu, staging: &wgpu::Buffer, size: u64) -> anyhow::Result<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    staging.map_async(wgpu::MapMode::Read, 0..size, move |r| {
        let _ = tx.send(r);
    });
    gpu.wait()?;
    rx.recv()
        .map_err(|_| anyhow::anyhow!("GPU readback was dropped"))?
        .map_err(|e| anyhow::anyhow!("GPU readback failed: {e}"))?;
    let out = staging
        .get_mapped_range(0..size)
        .map_err(|e| anyhow::anyhow!("GPU readback failed: {e:?}"))?
        .to_vec();
    staging.unmap();
    Ok(out)
}

pub struct Dispatch {
    pub kernel: Kernel,
    compiled: Arc<Compiled>,
    bind_group: wgpu::BindGroup,
    pub groups: [u32; 3],
    /// The adapter's `max_compute_workgroups_per_dimension`.
    max_groups: u32,
    errors: super::context::ErrorSink,
}

impl Dispatch {
    pub fn encode(&self, pass: &mut wgpu::ComputePass) {
        self.encode_with(pass, self.groups);
    }

    /// Encodes with other workgroup counts (attention grows with the context).
    /// Every dispatch is encoded here, so this is where grids meet the
    /// adapter's limit: one that is too large is split (kernels that take a
    /// 2-D grid for a 1-D one) or refused, reported as an error that the
    /// next [`Gpu::wait`] returns; wgpu itself would fail validation.
    pub fn encode_with(&self, pass: &mut wgpu::ComputePass, groups: [u32; 3]) {
        let groups = match fit_grid(self.kernel, groups, self.max_groups) {
            Ok(g) => g,
            Err(msg) => {
                self.errors.report(msg);
                return;
            }
        };
        pass.set_pipeline(&self.compiled.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
    }
}

/// Kernels whose shader reads a 1-D workgroup index as `y * nx + x`, so a
/// long 1-D grid can be split over two dimensions.
fn takes_split_grid(k: Kernel) -> bool {
    matches!(
        k,
        Kernel::Matvec { .. } | Kernel::Fill | Kernel::Swiglu | Kernel::KvShift { .. }
    )
}

/// Query heads one decode-attention workgroup serves: the largest divisor of
/// the GQA group (`n_head / n_head_kv`, at most 8) whose queries and scores
/// fit in workgroup memory, which WebGPU guarantees only 16 KiB of (the
/// reductions take about 1.3 KiB). A group shares one KV head, so every
/// head served by the same workgroup saves a read of the cache.
pub fn attn_heads(n_head: u32, n_head_kv: u32, head_dim: u32) -> u32 {
    let group = n_head / n_head_kv.max(1);
    let fits = |h: u32| h * (head_dim + ATTN_CHUNK) * 4 <= 14 * 1024;
    (1..=group.min(8))
        .rev()
        .find(|&h| group % h == 0 && fits(h))
        .unwrap_or(1)
}

/// `groups` within `max` per dimension: unchanged, split (a 1-D grid of a
/// kernel that takes it), or a one-line error naming the kernel and the limit.
pub fn fit_grid(k: Kernel, groups: [u32; 3], max: u32) -> Result<[u32; 3], String> {
    if groups.iter().all(|&g| g <= max) {
        return Ok(groups);
    }
    if takes_split_grid(k) && groups[1] == 1 && groups[2] == 1 {
        let y = groups[0].div_ceil(max);
        if y <= max {
            return Ok([max, y, 1]);
        }
    }
    Err(format!(
        "kernel {} needs a grid of {groups:?} workgroups, more than this adapter's \
         {max} per dimension (a model dimension or batch too large for this GPU; try a smaller -b/--batch-size)",
        k.family()
    ))
}

/// Splits `n` workgroups into a 2D grid within the 65535-per-dimension limit.
pub fn grid(n: u32) -> [u32; 3] {
    const MAX: u32 = 65535;
    if n <= MAX {
        [n.max(1), 1, 1]
    } else {
        [MAX, n.div_ceil(MAX), 1]
    }
}
