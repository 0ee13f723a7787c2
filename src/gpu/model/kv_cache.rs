//! The KV cache: per layer one K and one V buffer holding `n_slots`
//! sequences of `n_ctx` positions each, `[slot][position][kv_heads x
//! head_dim]` f16 values packed in pairs. A slot is a sequence's own
//! context: kernels find a token's row as `slot * n_ctx + position`, so
//! sequences at different positions share a step without touching each
//! other's entries. Also the RoPE cos/sin table for every position.

use anyhow::{bail, Result};

use crate::gpu::Gpu;
use crate::model::LlamaConfig;

pub(crate) struct KvCache {
    pub k: Vec<wgpu::Buffer>,
    pub v: Vec<wgpu::Buffer>,
    /// `[pos][rope_dim / 2]` (cos, sin), computed as the CPU reference does.
    pub rope: wgpu::Buffer,
    pub n_ctx: usize,
}

/// Sizes of the cache, checked before anything is allocated.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KvPlan {
    /// Bytes of one layer's K (or V) buffer: all slots.
    pub layer_bytes: u64,
    /// K and V of every layer.
    pub total_bytes: u64,
}

impl KvCache {
    /// Checked sizes for `n_slots` x `n_ctx` positions; a cache that cannot
    /// be bound (or whose size overflows) is refused with the flags to change.
    pub fn plan(
        cfg: &LlamaConfig,
        n_ctx: usize,
        n_slots: usize,
        max_binding: u64,
    ) -> Result<KvPlan> {
        let too_big = || {
            anyhow::anyhow!(
                "a KV cache of {n_slots} slots (--parallel) x {n_ctx} positions (-c) does not fit in memory arithmetic; use a smaller --parallel or -c"
            )
        };
        let row = (cfg.kv_dim() as u64).checked_mul(2).ok_or_else(too_big)?;
        let layer_bytes = (n_ctx as u64)
            .checked_mul(n_slots as u64)
            .and_then(|p| p.checked_mul(row))
            .ok_or_else(too_big)?;
        let total_bytes = layer_bytes
            .checked_mul(2 * cfg.n_layer as u64)
            .ok_or_else(too_big)?;
        let rope_bytes = (n_ctx as u64)
            .checked_mul(cfg.rope_dim as u64 / 2 * 8)
            .ok_or_else(too_big)?;
        if layer_bytes > max_binding {
            bail!(
                "the KV cache of one layer needs {layer_bytes} bytes for {n_slots} slots (--parallel) x {n_ctx} positions (-c), more than the adapter's largest storage binding ({max_binding} bytes): use a smaller --parallel or -c"
            );
        }
        if rope_bytes > max_binding {
            bail!(
                "the RoPE table for {n_ctx} positions needs {rope_bytes} bytes, more than the adapter's largest storage binding ({max_binding} bytes): use a smaller -c"
            );
        }
        Ok(KvPlan {
            layer_bytes,
            total_bytes,
        })
    }

    pub fn new(gpu: &Gpu, cfg: &LlamaConfig, n_ctx: usize, plan: &KvPlan) -> KvCache {
        let k = (0..cfg.n_layer)
            .map(|l| gpu.storage(&format!("k cache {l}"), plan.layer_bytes))
            .collect();
        let v = (0..cfg.n_layer)
            .map(|l| gpu.storage(&format!("v cache {l}"), plan.layer_bytes))
            .collect();
        let pairs = cfg.rope_dim / 2;
        let mut table = Vec::with_capacity(n_ctx * pairs * 2);
        for pos in 0..n_ctx {
            for i in 0..pairs {
                let (sin, cos) = crate::model::cpu::rope_angle(cfg, pos, i).sin_cos();
                table.extend([cos, sin]);
            }
        }
        let rope = gpu.storage_init("rope cos/sin", bytemuck::cast_slice(&table));
        KvCache { k, v, rope, n_ctx }
    }

    /// The cache row of a slot's position 0.
    pub fn first_row(&self, slot: usize) -> u32 {
        (slot * self.n_ctx) as u32
    }
}
