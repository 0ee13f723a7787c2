//! Batched prefill (matmul kernels, causal attention over the chunk) against
//! feeding the same tokens one by one through the decode path.

mod common;

use llama_wgpu::gguf::Gguf;
use llama_wgpu::gpu::{BatchOutput, GpuModel, LoadOptions};
use llama_wgpu::model::cpu::argmax;
use llama_wgpu::model::synthetic::{synthetic_gguf, LlamaShape};
use llama_wgpu::quant::TensorType;

fn tokens(n: usize, vocab: usize, seed: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i * 7919 + seed * 104729 + 1) % vocab as u32)
        .collect()
}

/// Logits of every position, one decode step at a time.
fn one_by_one(m: &mut GpuModel, toks: &[u32]) -> Vec<Vec<f32>> {
    m.reset();
    toks.iter().map(|&t| m.forward(t).unwrap()).collect()
}

/// The model with one slot of `n_ctx` positions and batches of 64.
fn load_batch_64(gpu: std::sync::Arc<llama_wgpu::gpu::Gpu>, g: &Gguf, n_ctx: usize) -> GpuModel {
    let opts = LoadOptions {
        n_ctx,
        n_batch: 64,
        n_slots: 1,
        context: Default::default(),
    };
    GpuModel::load(gpu, g, &opts, &|_, _| {}).unwrap()
}

/// Logits of `toks` prefilled from an empty cache: every position's, or
/// the last one's.
fn prefilled(m: &mut GpuModel, toks: &[u32], out: BatchOutput) -> Vec<f32> {
    m.reset();
    m.prefill(toks, out).unwrap().into_logits().unwrap()
}

/// Compares batched logits (all positions) with decode logits. Both paths
/// compute in f32 and store K/V in f16; only the summation order of the
/// matrix products differs (a 64-wide tile walk vs a strided row reduction),
/// ~1e-6 relative per product. A K or V value that lands on an f16 rounding
/// boundary can then round one f16 ulp (2^-11 ~ 4.9e-4 relative) apart in the
/// two caches, as between the GPU and the CPU reference with `kv_f16` (see
/// F16_KV_TOL in gpu_model.rs): bound 1e-3 of the logit scale; the measured
/// maximum is printed.
/// `abs_bound`: an absolute bound instead, for real models (see the SmolLM2 test).
fn check(
    batched: &[f32],
    decode: &[Vec<f32>],
    vocab: usize,
    abs_bound: Option<f32>,
    what: &str,
) -> f32 {
    assert_eq!(batched.len(), decode.len() * vocab, "{what}: logit count");
    let mut worst = 0.0f32;
    for (pos, d) in decode.iter().enumerate() {
        let b = &batched[pos * vocab..(pos + 1) * vocab];
        let err = common::max_abs_diff(b, d);
        let scale = d.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        assert!(
            err <= abs_bound.unwrap_or(1e-3 * scale.max(1.0)),
            "{what} position {pos}: max |diff| {err} (scale {scale})"
        );
        worst = worst.max(err);
    }
    worst
}

#[test]
fn synthetic_models_of_every_type_prefill_like_decode() {
    let shape = LlamaShape::tiny();
    for portable in [false, true] {
        let gpu = common::gpu(portable);
        for ty in TensorType::ALL {
            let g = Gguf::from_bytes(synthetic_gguf(&shape, ty, 21).unwrap()).unwrap();
            let mut m = load_batch_64(gpu.clone(), &g, 320);
            // 7 tokens go through the few-token matvec, 64 and more the matmul
            // (and a 300-token prompt's last chunk of 44 too).
            // The batch is 64: 300 spans five batches, the last one partial.
            let lens: &[usize] = if portable {
                &[7, 300]
            } else {
                &[1, 7, 64, 300]
            };
            let mut worst = 0.0f32;
            for &n in lens {
                let toks = tokens(n, shape.n_vocab, n as u32);
                let decode = one_by_one(&mut m, &toks);
                let batched = prefilled(&mut m, &toks, BatchOutput::AllLogits);
                worst = worst.max(check(
                    &batched,
                    &decode,
                    shape.n_vocab,
                    None,
                    &format!("{ty} n={n}"),
                ));
                // The last-position path (decode head after the batch) agrees too.
                let last = prefilled(&mut m, &toks, BatchOutput::LastLogits);
                check(
                    &last,
                    &decode[n - 1..],
                    shape.n_vocab,
                    None,
                    &format!("{ty} n={n} last"),
                );
            }
            eprintln!("{ty} (portable {portable}): max |batched - decode| = {worst:.2e}");
        }
    }
}

/// Batched prefill of a model whose heads are wider than `n_embd /
/// n_head` (see gpu_model.rs `a_head_width_of_its_own_matches_cpu`): the
/// matmuls write Q `n_head * head_dim` wide and the tiled attention reads it.
#[test]
fn a_head_width_of_its_own_prefills_like_decode() {
    let shape = LlamaShape {
        head_dim: Some(128),
        ..LlamaShape::tiny()
    };
    for portable in [false, true] {
        let gpu = common::gpu(portable);
        for ty in [TensorType::Q4_K, TensorType::Q8_0] {
            let g = Gguf::from_bytes(synthetic_gguf(&shape, ty, 29).unwrap()).unwrap();
            let mut m = load_batch_64(gpu.clone(), &g, 160);
            for n in [7, 100] {
                let toks = tokens(n, shape.n_vocab, n as u32);
                let decode = one_by_one(&mut m, &toks);
                let batched = prefilled(&mut m, &toks, BatchOutput::AllLogits);
                let what = format!("{ty} head_dim 128 portable={portable} n={n}");
                let worst = check(&batched, &decode, shape.n_vocab, None, &what);
                eprintln!("{what}: max |batched - decode| = {worst:.2e}");
            }
        }
    }
}

/// SmolLM2 at prompt lengths 1, 7, 64, 70 and 300 with the default batch of
/// 64 (70 and 300 span two and five batches). The prompts are prefixes of one
/// 300-token sequence, so a single token-by-token pass gives the decode
/// logits of every length (and the decode KV cache for the continuations).
#[test]
fn smollm2_prefill_matches_decode_and_continues_identically() {
    let g = Gguf::open(common::test_model_path()).unwrap();
    let gpu = common::gpu(false);
    let mut m = GpuModel::load(gpu, &g, &LoadOptions::new(320), &|_, _| {}).unwrap();
    assert_eq!(m.n_batch, 64);
    let vocab = m.cfg.n_vocab;
    let lengths = [1usize, 7, 64, 70, 300];
    let toks = tokens(300, 20000, 3);
    let decode = one_by_one(&mut m, &toks);
    // Greedy continuations from the decode path's cache, longest prefix first
    // (a continuation overwrites the positions after its prefix).
    let mut after_decode = Vec::new();
    for &n in lengths.iter().rev().filter(|&&n| n >= 64) {
        m.truncate(n);
        let mut cont = vec![argmax(&decode[n - 1])];
        let mut t = m.forward_greedy(Some(cont[0])).unwrap();
        for _ in 0..7 {
            cont.push(t);
            t = m.forward_greedy(None).unwrap();
        }
        cont.push(t);
        after_decode.push((n, cont));
    }
    for n in lengths {
        m.reset();
        let batched = m
            .prefill(&toks[..n], BatchOutput::AllLogits)
            .unwrap()
            .into_logits()
            .unwrap();
        // SmolLM2's activation outliers (hundreds) make one f16 ulp of a cached
        // value ~0.25, so a flipped rounding moves logits by a few 1e-2: hold it
        // to the project's bound against exact arithmetic, 0.05 (tests/smollm2.rs).
        let err = check(
            &batched,
            &decode[..n],
            vocab,
            Some(0.05),
            &format!("SmolLM2 n={n}"),
        );
        eprintln!("SmolLM2 n={n}: max |batched - decode| = {err:.2e}");
    }
    // Greedy continuation after the batched path: the same tokens.
    for (n, cont) in after_decode {
        m.reset();
        let mut after_batch = vec![m.prefill_greedy(&toks[..n]).unwrap()];
        for _ in 0..8 {
            after_batch.push(m.forward_greedy(None).unwrap());
        }
        assert_eq!(after_batch, cont, "continuation after {n} prompt tokens");
        eprintln!("SmolLM2 n={n}: continuation {cont:?}");
    }
}
