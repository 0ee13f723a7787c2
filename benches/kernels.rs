//! `cargo bench`: decode (matvec) against prefill (matmul) per tensor type,
//! side by side in one run on the default adapter.
//!
//! The figure that matters for prompt processing is the last column: how many
//! times faster per token a batched matmul is than the matvec decode uses.
//! Configure with environment variables (defaults suit lavapipe's speed):
//! `BENCH_SHAPE=rows x cols` (2048x2048), `BENCH_TOKENS` (64),
//! `BENCH_TYPES` (q4_0,q4_1,q8_0,q4_k,q6_k,f16), `BENCH_REPS` (5).
//! Q4_0, Q5_0 and Q8_0 are measured in every layout they can be read in
//! (`Packing::choices`: the engine's first), side by side: the layouts take
//! turns within each repetition, so machine drift affects them alike.

use std::time::{Duration, Instant};

use llama_wgpu::gpu::kernels::Dispatch;
use llama_wgpu::gpu::layout::{GpuLayout, Packing};
use llama_wgpu::gpu::weights::{GpuMatrix, TokenRows};
use llama_wgpu::gpu::{Gpu, GpuOptions};
use llama_wgpu::quant::{random_tensor, TensorType};
use rand::SeedableRng;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// Wall time of one submission of `dispatches` (waited for).
fn once(gpu: &Gpu, dispatches: &[&Dispatch]) -> Duration {
    let t = Instant::now();
    gpu.run(dispatches);
    gpu.wait().expect("GPU wait");
    t.elapsed()
}

/// Median wall times of `reps` submissions of each set of `dispatches`,
/// the sets taking turns (so machine drift affects them alike); each set
/// runs once first (pipeline first use, caches).
fn time_interleaved(gpu: &Gpu, sets: &[Vec<Dispatch>], reps: usize) -> Vec<Duration> {
    let sets: Vec<Vec<&Dispatch>> = sets.iter().map(|s| s.iter().collect()).collect();
    for s in &sets {
        once(gpu, s);
    }
    let mut times = vec![Vec::new(); sets.len()];
    for _ in 0..reps {
        for (s, t) in sets.iter().zip(&mut times) {
            t.push(once(gpu, s));
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort();
            t[reps / 2]
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let shape = env_or("BENCH_SHAPE", "2048x2048");
    let (rows, cols) = shape
        .split_once('x')
        .and_then(|(r, c)| Some((r.parse::<usize>().ok()?, c.parse::<usize>().ok()?)))
        .ok_or_else(|| anyhow::anyhow!("BENCH_SHAPE must look like 2048x2048, got {shape}"))?;
    let tokens: usize = env_or("BENCH_TOKENS", "64").parse()?;
    let reps: usize = env_or("BENCH_REPS", "5").parse::<usize>()?.max(1);
    let types = env_or("BENCH_TYPES", "q4_0,q4_1,q8_0,q4_k,q6_k,f16");

    let gpu = Gpu::new(&GpuOptions::default())?;
    println!(
        "adapter: {} ({:?}), {rows}x{cols}, {tokens} tokens, median of {reps}",
        gpu.info.name, gpu.info.backend
    );
    println!(
        "| type | layout | matvec ms | matvec GB/s | matmul ms ({tokens} tok) | matmul GFLOP/s | per-token speedup |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for name in types.split(',') {
        let ty = TensorType::from_name(name.trim())
            .ok_or_else(|| anyhow::anyhow!("BENCH_TYPES: unknown type {name}"))?;
        let data = random_tensor(ty, rows * cols, &mut rng, 0.02);
        let padded = cols.div_ceil(256) * 256;
        let x = gpu.storage("x", (padded * tokens * 4) as u64);
        let y = gpu.storage("y", (rows * tokens * 4) as u64);
        let packs = Packing::choices(ty);
        let mats = packs
            .iter()
            .map(|&pack| {
                let lay = GpuLayout::packed(ty, pack);
                GpuMatrix::upload_packed(&gpu, "w", lay, rows, cols, &data)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mv = time_interleaved(
            &gpu,
            &mats
                .iter()
                .map(|w| w.matvec(&gpu, &x, &y, 0, false))
                .collect::<Vec<_>>(),
            reps,
        );
        let mm = time_interleaved(
            &gpu,
            &mats
                .iter()
                .map(|w| {
                    w.matmul(
                        &gpu,
                        TokenRows::new(&x, padded),
                        TokenRows::new(&y, rows),
                        false,
                        tokens,
                    )
                })
                .collect::<Vec<_>>(),
            reps,
        );
        for (i, w) in mats.iter().enumerate() {
            let (mv, mm) = (mv[i], mm[i]);
            let bytes = w.layout.buffer_bytes(rows, cols) as f64;
            let flops = 2.0 * (rows * cols * tokens) as f64;
            println!(
                "| {} | {:?} ({} B/block) | {:.2} | {:.2} | {:.1} | {:.2} | {:.2} |",
                ty.name(),
                w.layout.packing,
                w.layout.block_bytes,
                mv.as_secs_f64() * 1e3,
                bytes / mv.as_secs_f64() / 1e9,
                mm.as_secs_f64() * 1e3,
                flops / mm.as_secs_f64() / 1e9,
                mv.as_secs_f64() * tokens as f64 / mm.as_secs_f64(),
            );
        }
    }
    Ok(())
}
