//! The KV cache: per layer one K and one V buffer holding `n_slots`
//! sequences of `n_ctx` positions each, `[slot][position]` rows of
//! `kv_heads x head_dim` values in the cache type (f16 pairs, or Q8_0 /
//! Q4_0 blocks: `shaders/kv/`). A slot is a sequence's own context: kernels
//! find a token's row as `slot * n_ctx + position`, so sequences at
//! different positions share a step without touching each other's entries.
//! Also the RoPE cos/sin table for every position, and the scratch rows a
//! context shift moves through.

use anyhow::{bail, Result};

use bytemuck::Zeroable;

use crate::gpu::kernels::{cache_row_bytes, cache_store_pairs, CacheTypes, Dispatch, Kernel, WG};
use crate::gpu::params::ShiftParams;
use crate::gpu::Gpu;
use crate::model::LlamaConfig;
use crate::quant::TensorType;

pub(crate) struct KvCache {
    /// Per layer, the context-shift kernel over K (before the buffers it binds).
    pub shift: Vec<Dispatch>,
    /// Its parameters, written before each shift.
    pub shift_params: wgpu::Buffer,
    pub k: Vec<wgpu::Buffer>,
    pub v: Vec<wgpu::Buffer>,
    /// `[pos][rope_dim / 2]` (cos, sin), computed as the CPU reference does.
    pub rope: wgpu::Buffer,
    /// One slot's rows (the larger of a K and a V row): where a context
    /// shift stages the rows it moves, since a buffer cannot be copied onto
    /// an overlapping range of itself.
    pub scratch: wgpu::Buffer,
    pub n_ctx: usize,
    pub types: CacheTypes,
    /// YaRN's scale of rotated values (1 otherwise), applied with the table.
    pub attn_factor: f32,
    /// Bytes of one K row and one V row.
    pub k_row_bytes: u64,
    pub v_row_bytes: u64,
}

/// Sizes of the cache, checked before anything is allocated: what
/// [`KvCache::new`] allocates.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KvPlan {
    pub n_ctx: usize,
    pub types: CacheTypes,
    /// Bytes of one K row and one V row (one position of one layer).
    pub k_row_bytes: u64,
    pub v_row_bytes: u64,
    /// Bytes of one layer's K buffer and V buffer: all slots.
    pub k_layer_bytes: u64,
    pub v_layer_bytes: u64,
    /// K and V of every layer.
    pub total_bytes: u64,
    /// The context shift's staging buffer: one slot's rows of the wider cache.
    pub scratch_bytes: u64,
}

impl KvCache {
    /// Checked sizes for `n_slots` x `n_ctx` positions; a cache that cannot
    /// be bound (or whose size overflows) is refused with the flags to change.
    pub fn plan(
        cfg: &LlamaConfig,
        n_ctx: usize,
        n_slots: usize,
        types: CacheTypes,
        max_binding: u64,
    ) -> Result<KvPlan> {
        let too_big = || {
            anyhow::anyhow!(
                "a KV cache of {n_slots} slots (--parallel) x {n_ctx} positions (-c) does not fit in memory arithmetic; use a smaller --parallel or -c"
            )
        };
        for (which, ty) in [
            ("-ctk/--cache-type-k", types.k),
            ("-ctv/--cache-type-v", types.v),
        ] {
            if ty != TensorType::F16 && cfg.head_dim % 32 != 0 {
                bail!(
                    "{which} {}: quantized cache blocks hold 32 values, and this model's head dimension {} is not a multiple of 32; use f16",
                    ty.name().to_lowercase(),
                    cfg.head_dim
                );
            }
        }
        let positions = (n_ctx as u64)
            .checked_mul(n_slots as u64)
            .ok_or_else(too_big)?;
        let k_row = cache_row_bytes(types.k, cfg.kv_dim() as u64);
        let v_row = cache_row_bytes(types.v, cfg.kv_dim() as u64);
        let k_layer_bytes = positions.checked_mul(k_row).ok_or_else(too_big)?;
        let v_layer_bytes = positions.checked_mul(v_row).ok_or_else(too_big)?;
        let total_bytes = (k_layer_bytes + v_layer_bytes)
            .checked_mul(cfg.n_layer as u64)
            .ok_or_else(too_big)?;
        let rope_bytes = (n_ctx as u64)
            .checked_mul(cfg.rope_dim as u64 / 2 * 8)
            .ok_or_else(too_big)?;
        let scratch_bytes = (n_ctx as u64)
            .checked_mul(k_row.max(v_row))
            .ok_or_else(too_big)?;
        let layer_bytes = k_layer_bytes.max(v_layer_bytes);
        if layer_bytes > max_binding {
            bail!(
                "the KV cache of one layer needs {layer_bytes} bytes for {n_slots} slots (--parallel) x {n_ctx} positions (-c), more than the adapter's largest storage binding ({max_binding} bytes): use a smaller --parallel or -c, or a quantized --cache-type-k/-v"
            );
        }
        if rope_bytes > max_binding {
            bail!(
                "the RoPE table for {n_ctx} positions needs {rope_bytes} bytes, more than the adapter's largest storage binding ({max_binding} bytes): use a smaller -c"
            );
        }
        Ok(KvPlan {
            n_ctx,
            types,
            k_row_bytes: k_row,
            v_row_bytes: v_row,
            k_layer_bytes,
            v_layer_bytes,
            total_bytes,
            scratch_bytes,
        })
    }

    pub fn new(gpu: &Gpu, cfg: &LlamaConfig, plan: &KvPlan) -> KvCache {
        let (n_ctx, types) = (plan.n_ctx, plan.types);
        let k: Vec<wgpu::Buffer> = (0..cfg.n_layer)
            .map(|l| gpu.storage(&format!("k cache {l}"), plan.k_layer_bytes))
            .collect();
        let v: Vec<wgpu::Buffer> = (0..cfg.n_layer)
            .map(|l| gpu.storage(&format!("v cache {l}"), plan.v_layer_bytes))
            .collect();
        let rope = crate::model::rope::Rope::new(cfg, n_ctx);
        let pairs = cfg.rope_dim / 2;
        let mut table = Vec::with_capacity(n_ctx * pairs * 2);
        for pos in 0..n_ctx {
            for i in 0..pairs {
                let (sin, cos) = rope.angle(pos, i).sin_cos();
                table.extend([cos, sin]);
            }
        }
        let table = gpu.storage_init("rope cos/sin", bytemuck::cast_slice(&table));
        let scratch = gpu.storage("context shift scratch", plan.scratch_bytes);
        let shift_params = gpu.uniform(&ShiftParams::zeroed());
        let shift = k
            .iter()
            .map(|kc| {
                gpu.dispatch(
                    Kernel::KvShift { k: types.k },
                    &[
                        kc.as_entire_binding(),
                        scratch.as_entire_binding(),
                        table.as_entire_binding(),
                        shift_params.as_entire_binding(),
                    ],
                    [1, 1, 1],
                )
            })
            .collect();
        KvCache {
            shift,
            shift_params,
            k,
            v,
            rope: table,
            scratch,
            n_ctx,
            types,
            attn_factor: rope.attn_factor,
            k_row_bytes: plan.k_row_bytes,
            v_row_bytes: plan.v_row_bytes,
        }
    }

    /// Context shift of `slot`, which holds `n_past` positions: positions
    /// `keep..keep + discard` are dropped and the rest move down by
    /// `discard`, keys re-rotated to their new positions on the GPU (values
    /// only move). One submission; nothing is read back.
    pub fn shift(
        &self,
        gpu: &Gpu,
        cfg: &LlamaConfig,
        slot: usize,
        n_past: usize,
        keep: usize,
        discard: usize,
    ) -> Result<()> {
        if discard == 0 || keep + discard > n_past || n_past > self.n_ctx {
            bail!(
                "context shift: cannot drop {discard} positions after the first {keep} of {n_past} (context {})",
                self.n_ctx
            );
        }
        let n_move = n_past - keep - discard;
        if n_move == 0 {
            return Ok(());
        }
        let first = self.first_row(slot);
        let src_row = first + (keep + discard) as u32;
        let dst_row = first + keep as u32;
        let p = ShiftParams {
            src_row,
            n_rows: n_move as u32,
            old_pos: (keep + discard) as u32,
            new_pos: keep as u32,
            row_pairs: (cfg.kv_dim() / 2) as u32,
            half_dim: (cfg.head_dim / 2) as u32,
            rope_pairs: (cfg.rope_dim / 2) as u32,
            _pad: 0,
        };
        gpu.queue
            .write_buffer(&self.shift_params, 0, bytemuck::bytes_of(&p));
        let groups = (cfg.kv_dim() / 2).div_ceil(cache_store_pairs(self.types.k)) as u64;
        let invocations = n_move as u64 * groups;
        let wgs = u32::try_from(invocations.div_ceil(WG as u64))
            .map_err(|_| anyhow::anyhow!("context shift of {n_move} positions: grid too large"))?;
        let (kb, vb) = (self.k_row_bytes, self.v_row_bytes);
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for l in 0..cfg.n_layer {
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                self.shift[l].encode_with(&mut pass, [wgs, 1, 1]);
            }
            enc.copy_buffer_to_buffer(
                &self.scratch,
                0,
                &self.k[l],
                dst_row as u64 * kb,
                n_move as u64 * kb,
            );
            enc.copy_buffer_to_buffer(
                &self.v[l],
                src_row as u64 * vb,
                &self.scratch,
                0,
                n_move as u64 * vb,
            );
            enc.copy_buffer_to_buffer(
                &self.scratch,
                0,
                &self.v[l],
                dst_row as u64 * vb,
                n_move as u64 * vb,
            );
        }
        gpu.queue.submit([enc.finish()]);
        Ok(())
    }

    /// The cache row of a slot's position 0.
    pub fn first_row(&self, slot: usize) -> u32 {
        (slot * self.n_ctx) as u32
    }
}
