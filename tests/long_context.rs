//! Long contexts: a 4,096-token context with each KV cache type against the
//! CPU reference, context shift against a fresh evaluation of the kept
//! tokens, and memory planning that refuses what does not fit.

mod common;

use llama_wgpu::gguf::Gguf;
use llama_wgpu::gpu::{BatchOutput, CacheTypes, ContextOptions, GpuModel, LoadOptions};
use llama_wgpu::model::cpu::{argmax, CpuModel};
use llama_wgpu::model::synthetic::{synthetic_gguf, LlamaShape};
use llama_wgpu::quant::TensorType::{self, F16, Q4_0, Q8_0};

fn load(g: &Gguf, n_ctx: usize, k: TensorType, v: TensorType) -> GpuModel {
    let opts = LoadOptions {
        context: ContextOptions {
            cache: CacheTypes { k, v },
            ..Default::default()
        },
        ..LoadOptions::new(n_ctx)
    };
    GpuModel::load(common::gpu(false), g, &opts, &|_, _| {}).unwrap()
}

fn scale(l: &[f32]) -> f32 {
    l.iter().fold(0.0f32, |a, v| a.max(v.abs()))
}

fn tokens(n: usize, vocab: usize) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i * 7919 + 13) % vocab as u32)
        .collect()
}

/// 4,096 positions (prefill in batches, then one decode step) with each
/// cache type. Two references: the CPU with its cache rounded through the
/// same type by llama.cpp's quantizers, which isolates the kernels, and the
/// plain f32 CPU: what the cache type costs.
///
/// Against the same-cache CPU the bound is 1e-3 of the logit scale for f16
/// (as tests/gpu_model.rs). For quantized caches the GPU's K and V differ
/// from the CPU's by ~1e-6 relative before quantization (f32 sums in
/// another order), and of the 2 M cached values about a dozen lie that
/// close to a rounding boundary and land one quantization step away
/// (max|x|/127 for Q8_0, max|x|/8 for Q4_0; the kernel test shows the
/// quantizer itself agrees exactly): measured 5.9e-4 (Q8_0) and 1.5e-3
/// (Q4_0) of the logit scale, bounds 2e-3 and 4e-3.
#[test]
fn a_4096_token_context_with_each_cache_type_matches_cpu() {
    let shape = LlamaShape::tiny();
    let g = Gguf::from_bytes(synthetic_gguf(&shape, TensorType::Q8_0, 21).unwrap()).unwrap();
    let n = 4096;
    let toks = tokens(n, shape.n_vocab);
    let mut exact = CpuModel::load(&g).unwrap();
    let mut l_exact = Vec::new();
    for &t in &toks {
        l_exact = exact.forward(t);
    }
    // Cost of the cache type against the f32 reference: f16 rounds K and V
    // by 2^-11 relative, Q8_0 to steps of max|x| / 127 per 32 values, Q4_0
    // to max|x| / 8. Measured 1.2e-4, 3.4e-3 and 4.7e-2 of the logit
    // scale; bounds about twice that.
    for (k, v, kernel_tol, cost_tol) in [
        (F16, F16, 1e-3, 3e-4),
        (Q8_0, Q8_0, 2e-3, 7e-3),
        (Q4_0, Q4_0, 4e-3, 1e-1),
    ] {
        let mut cpu = CpuModel::load(&g).unwrap();
        cpu.kv_quant = Some((k, v));
        let mut lc = Vec::new();
        for &t in &toks {
            lc = cpu.forward(t);
        }
        let mut gm = load(&g, n, k, v);
        gm.prefill(&toks[..n - 1], BatchOutput::None).unwrap();
        let lg = gm.forward(toks[n - 1]).unwrap();
        let s = scale(&lc);
        let kernel = common::max_abs_diff(&lc, &lg);
        let cost = common::max_abs_diff(&l_exact, &lg);
        eprintln!(
            "cache K {k} V {v}: at position {}: |gpu - cpu with the same cache| {kernel:.2e}, |gpu - f32 cpu| {cost:.2e} (logit scale {s:.2})",
            n - 1
        );
        assert!(
            kernel <= kernel_tol * s,
            "K {k} V {v}: kernel error {kernel}"
        );
        assert!(cost <= cost_tol * s, "K {k} V {v}: cache cost {cost}");
        assert_eq!(argmax(&lc), argmax(&lg), "K {k} V {v}");
    }
}

/// Context shift (keep 5, drop 40 of 100 positions, then one more token).
///
/// With one layer a token's K and V depend only on the token and its
/// position, so after the shift the logits must equal a fresh evaluation of
/// the kept tokens at their new positions. The shifted keys were rotated at
/// their old positions, stored, re-rotated and stored again where the fresh
/// ones are rotated once: for f16 one more f16 rounding (bound 1e-3 of the
/// logit scale, as the f16 cache against f32); quantized keys are quantized
/// a second time, which costs about what the first quantization did: the
/// bound is twice the fresh evaluation's own distance from the f32 CPU
/// reference, plus the f16 bound.
///
/// With more layers a kept token's deeper K and V were computed while it
/// still saw the dropped tokens, so they differ from a fresh evaluation (as
/// in llama.cpp): there the reference is the CPU model shifted the same way.
#[test]
fn context_shift_equals_a_fresh_evaluation_of_the_kept_tokens() {
    let n_ctx = 100;
    let (keep, discard) = (5, 40);
    let next = 77u32;
    let one_layer = LlamaShape {
        n_layer: 1,
        ..LlamaShape::tiny()
    };
    let g = Gguf::from_bytes(synthetic_gguf(&one_layer, TensorType::Q8_0, 23).unwrap()).unwrap();
    let toks = tokens(n_ctx, one_layer.n_vocab);
    let kept: Vec<u32> = toks[..keep]
        .iter()
        .chain(&toks[keep + discard..])
        .copied()
        .collect();
    let mut exact = CpuModel::load(&g).unwrap();
    for &t in &kept {
        exact.forward(t);
    }
    let l_exact = exact.forward(next);
    for (k, v) in [(F16, F16), (Q8_0, Q8_0), (Q4_0, Q8_0)] {
        let mut shifted = load(&g, n_ctx, k, v);
        shifted.prefill(&toks, BatchOutput::None).unwrap();
        assert_eq!(shifted.n_past(), n_ctx);
        shifted.shift(keep, discard).unwrap();
        assert_eq!(shifted.n_past(), n_ctx - discard);
        let a = shifted.forward(next).unwrap();

        let mut fresh = load(&g, n_ctx, k, v);
        fresh.prefill(&kept, BatchOutput::None).unwrap();
        let b = fresh.forward(next).unwrap();
        let s = scale(&b);
        let err = common::max_abs_diff(&a, &b);
        let cost = if k == F16 {
            0.0
        } else {
            common::max_abs_diff(&l_exact, &b)
        };
        eprintln!("context shift, 1 layer, cache K {k} V {v}: |shifted - fresh| {err:.2e}, |fresh - f32 cpu| {cost:.2e} (logit scale {s:.2})");
        assert!(err <= 2.0 * cost + 1e-3 * s, "K {k} V {v}: {err}");
        assert_eq!(argmax(&a), argmax(&b), "K {k} V {v}");
    }
}

/// Context shift on a two-layer model against the CPU reference shifted
/// the same way (keys re-rotated in f32 and stored again through the cache
/// type), then 8 more positions, with a second shift on the way.
#[test]
fn context_shift_of_a_deeper_model_matches_the_cpu_shift() {
    let shape = LlamaShape::tiny();
    let g = Gguf::from_bytes(synthetic_gguf(&shape, TensorType::Q8_0, 29).unwrap()).unwrap();
    let n_ctx = 96;
    let toks = tokens(n_ctx + 8, shape.n_vocab);
    for (k, v, tol) in [(F16, F16, 1e-3), (Q8_0, Q4_0, 4e-3)] {
        let mut cpu = CpuModel::load(&g).unwrap();
        if k == F16 {
            cpu.kv_f16 = true;
        } else {
            cpu.kv_quant = Some((k, v));
        }
        let mut gm = load(&g, n_ctx, k, v);
        gm.prefill(&toks[..n_ctx], BatchOutput::None).unwrap();
        for &t in &toks[..n_ctx] {
            cpu.forward(t);
        }
        let mut worst = 0.0f32;
        for (i, &t) in toks[n_ctx..].iter().enumerate() {
            if gm.n_past() == n_ctx {
                let (keep, discard) = (3 + i, 50 - 2 * i);
                gm.shift(keep, discard).unwrap();
                cpu.shift(keep, discard);
            }
            let (lg, lc) = (gm.forward(t).unwrap(), cpu.forward(t));
            let err = common::max_abs_diff(&lc, &lg);
            worst = worst.max(err);
            assert!(err <= tol * scale(&lc), "K {k} V {v} step {i}: {err}");
            assert_eq!(argmax(&lc), argmax(&lg), "K {k} V {v} step {i}");
            if i == 3 {
                // Fill the window again so that a second shift happens.
                let fill: Vec<u32> = (0..n_ctx - gm.n_past())
                    .map(|j| (j * 31 % 1000) as u32)
                    .collect();
                gm.prefill(&fill, BatchOutput::None).unwrap();
                for &f in &fill {
                    cpu.forward(f);
                }
            }
        }
        eprintln!("context shift, 2 layers, cache K {k} V {v}: max |gpu - cpu| {worst:.2e} over 8 steps and 2 shifts");
    }
}

/// A budget smaller than the model needs is refused before anything is
/// uploaded, with a context size and cache types that would fit.
#[test]
fn memory_planning_refuses_what_does_not_fit_and_says_what_would() {
    let shape = LlamaShape::tiny();
    let g = Gguf::from_bytes(synthetic_gguf(&shape, TensorType::Q8_0, 3).unwrap()).unwrap();
    let with = |n_ctx: usize, budget: u64, k: TensorType| {
        let opts = LoadOptions {
            context: ContextOptions {
                cache: CacheTypes { k, v: k },
                gpu_memory: Some(budget),
                ..Default::default()
            },
            ..LoadOptions::new(n_ctx)
        };
        GpuModel::load(common::gpu(false), &g, &opts, &|_, _| {})
            .map(|m| m.weight_bytes + m.kv_bytes)
    };
    // The tiny model's weights are ~1.3 MB; its f16 cache is 1 KiB per position.
    let err = with(8192, 6 << 20, F16).unwrap_err().to_string();
    eprintln!("{err}");
    assert!(err.contains("--gpu-memory") && err.contains("-c "), "{err}");
    assert!(err.contains("-ctk q8_0 -ctv q8_0"), "{err}");
    // Whatever it proposes fits.
    let c: usize = err
        .split("use -c ")
        .nth(1)
        .and_then(|s| s.split(|ch: char| !ch.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .expect("a -c proposal");
    assert!((1..8192).contains(&c), "{err}");
    with(c, 6 << 20, F16).expect("the proposed -c fits");
    assert!(
        with(c + 64, 6 << 20, F16).is_err(),
        "the proposal is the largest that fits"
    );
    // A quantized cache takes about half (Q8_0) of the f16 one.
    let q8 = with(8192, 64 << 20, Q8_0).unwrap();
    let f16 = with(8192, 64 << 20, F16).unwrap();
    assert!(q8 < f16, "q8_0 {q8} vs f16 {f16}");
    // Weights alone over the budget: no -c helps.
    let err = with(16, 100_000, F16).unwrap_err().to_string();
    assert!(err.contains("the weights alone do not fit"), "{err}");
}
