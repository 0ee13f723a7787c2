//! The whole GPU forward pass against the CPU reference: synthetic models of
//! every tensor type, the real SmolLM2 model, split tensors, long contexts.

mod common;

use llama_wgpu::gguf::Gguf;
use llama_wgpu::gpu::{Gpu, GpuModel, GpuOptions, LoadOptions};
use llama_wgpu::model::cpu::{argmax, CpuModel};
use llama_wgpu::model::synthetic::{synthetic_gguf, LlamaShape};
use llama_wgpu::quant::TensorType;

fn load_gpu(gpu: std::sync::Arc<Gpu>, g: &Gguf, n_ctx: usize) -> GpuModel {
    GpuModel::load(gpu, g, &LoadOptions::new(n_ctx), &|_, _| {}).unwrap()
}

/// Two GPU models of the same tiny Q4_K file (context 64): one driven by
/// the blocking calls, one by the pipelined ones.
fn tiny_q4_k_twins(seed: u64) -> (GpuModel, GpuModel) {
    let g = Gguf::from_bytes(synthetic_gguf(&LlamaShape::tiny(), TensorType::Q4_K, seed).unwrap())
        .unwrap();
    let gpu = common::gpu(false);
    (load_gpu(gpu.clone(), &g, 64), load_gpu(gpu, &g, 64))
}

/// Gap between the best and second-best logit.
fn top2_gap(l: &[f32]) -> f32 {
    let best = argmax(l) as usize;
    let second = l
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != best)
        .map(|(_, &v)| v)
        .fold(f32::NEG_INFINITY, f32::max);
    l[best] - second
}

/// Feeds the CPU's greedy tokens to both models for `steps` positions and
/// returns the largest logit difference seen, asserting at every position
/// that the argmax agrees (unless the CPU's top two are closer than the
/// observed error, a genuine tie that no implementation order could settle).
fn compare(
    cpu: &mut CpuModel,
    gpu: &mut GpuModel,
    first: &[u32],
    steps: usize,
    tol: f32,
    what: &str,
) -> f32 {
    let mut worst = 0.0f32;
    let mut tok = first[0];
    for step in 0..first.len() - 1 + steps {
        let lc = cpu.forward(tok);
        let lg = gpu.forward(tok).unwrap();
        let err = common::max_abs_diff(&lc, &lg);
        let scale = lc.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        worst = worst.max(err);
        assert!(
            err <= tol * scale.max(1.0),
            "{what} position {step}: max |logit diff| {err} > {tol} x {scale}"
        );
        if argmax(&lc) != argmax(&lg) {
            assert!(
                top2_gap(&lc) <= 2.0 * err,
                "{what} position {step}: argmax differs (cpu {}, gpu {})",
                argmax(&lc),
                argmax(&lg)
            );
        }
        tok = if step + 1 < first.len() {
            first[step + 1]
        } else {
            argmax(&lc)
        };
    }
    worst
}

// The GPU keeps K and V in f16 (as llama.cpp's GPU backends do), so the CPU
// reference is run with `kv_f16` (cached K/V rounded through f16) and the rest
// of the computation is f32 in both, in different summation orders. Those
// orders differ by ~1e-6 relative per value; the rare value that sits on an
// f16 rounding boundary then rounds one f16 ulp (2^-11 ~ 4.9e-4) apart.
// Bound: 1e-3 x max |logit| (measured: at most ~1e-4 x, see test output).
// With an f32 reference cache the difference is 10-100x larger (up to 4e-3 x
// on random K-quant models): that is f16 storage, not kernel error.
const F16_KV_TOL: f32 = 1e-3;

#[test]
fn synthetic_model_of_every_type_matches_cpu_for_32_greedy_steps() {
    let shape = LlamaShape::tiny();
    for portable in [false, true] {
        let gpu = common::gpu(portable);
        for ty in TensorType::ALL {
            let bytes = synthetic_gguf(&shape, ty, 7).unwrap();
            let g = Gguf::from_bytes(bytes).unwrap();
            let mut cpu = CpuModel::load(&g).unwrap();
            cpu.kv_f16 = true;
            let mut gm = load_gpu(gpu.clone(), &g, 64);
            let err = compare(
                &mut cpu,
                &mut gm,
                &[1, 5, 9],
                32,
                F16_KV_TOL,
                &format!("{ty} portable={portable}"),
            );
            eprintln!("synthetic {ty} (portable {portable}): max |logit diff| over 34 positions = {err:.2e}");

            // The GPU-only greedy loop (argmax on the GPU, token never sent back) gives the same tokens.
            cpu.reset();
            gm.reset();
            let mut tok = 1u32;
            let mut gpu_tok = gm.forward_greedy(Some(tok)).unwrap();
            for step in 0..32 {
                let lc = cpu.forward(tok);
                let want = argmax(&lc);
                if gpu_tok != want {
                    assert!(
                        top2_gap(&lc) <= 2.0 * err,
                        "{ty} greedy step {step}: gpu {gpu_tok} cpu {want}"
                    );
                    break; // a genuine tie: the sequences may part here
                }
                tok = want;
                gpu_tok = gm.forward_greedy(None).unwrap();
            }
        }
    }
}

#[test]
fn split_tensors_under_a_lowered_binding_limit_match_cpu() {
    let shape = LlamaShape::tiny();
    let g = Gguf::from_bytes(synthetic_gguf(&shape, TensorType::Q4_K, 11).unwrap()).unwrap();
    let opts = GpuOptions {
        max_binding_override: Some(64 * 1024),
        ..Default::default()
    };
    let gpu = Gpu::new(&opts).unwrap();
    let mut cpu = CpuModel::load(&g).unwrap();
    cpu.kv_f16 = true;
    let mut gm = load_gpu(gpu, &g, 32);
    // token_embd is 1000 x 256 Q4_K = 144,000 bytes: at least three chunks.
    let err = compare(&mut cpu, &mut gm, &[3, 999, 500], 8, F16_KV_TOL, "split");
    eprintln!("split tensors: max |logit diff| = {err:.2e}");
}

#[test]
fn context_longer_than_2048_matches_cpu_at_the_last_position() {
    let shape = LlamaShape::tiny();
    let g = Gguf::from_bytes(synthetic_gguf(&shape, TensorType::Q8_0, 13).unwrap()).unwrap();
    let n = 2100;
    let mut cpu = CpuModel::load(&g).unwrap();
    cpu.kv_f16 = true;
    let mut gm = load_gpu(common::gpu(false), &g, n);
    let tokens: Vec<u32> = (0..n as u32)
        .map(|i| (i * 7919 + 13) % shape.n_vocab as u32)
        .collect();
    for &t in &tokens[..n - 1] {
        cpu.forward(t);
        gm.feed(t).unwrap();
    }
    let lc = cpu.forward(tokens[n - 1]);
    let lg = gm.forward(tokens[n - 1]).unwrap();
    let err = common::max_abs_diff(&lc, &lg);
    let scale = lc.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    eprintln!(
        "position {}: max |logit diff| = {err:.2e} (logit scale {scale:.2})",
        n - 1
    );
    assert!(err <= F16_KV_TOL * scale, "position {}: {err}", n - 1);
    assert_eq!(argmax(&lc), argmax(&lg));
}

/// Every head of the decode step reads the same logits: the top k selected on
/// the GPU (after a decode step and after a batched prefill) are exactly the
/// k best of the full logits, and the greedy token is their first.
#[test]
fn top_k_and_greedy_heads_agree_with_the_full_logits() {
    use llama_wgpu::engine::top_k_logits;
    use llama_wgpu::gpu::BatchOutput;
    let g = Gguf::from_bytes(synthetic_gguf(&LlamaShape::tiny(), TensorType::Q4_0, 9).unwrap())
        .unwrap();
    let mut m = load_gpu(common::gpu(false), &g, 64);
    let prompt = [1u32, 17, 42, 5, 99, 3];
    let full = m
        .prefill(&prompt, BatchOutput::LastLogits)
        .unwrap()
        .into_logits()
        .unwrap();
    for k in [1usize, 7, 40, 200] {
        m.reset();
        let top = m
            .prefill(&prompt, BatchOutput::TopK(k))
            .unwrap()
            .into_top_k()
            .unwrap();
        assert_eq!(top, top_k_logits(&full, k), "prefill top-{k}");
    }
    m.reset();
    assert_eq!(m.prefill_greedy(&prompt).unwrap(), argmax(&full));
    // A decode step at the next position, through each head.
    let full = m.forward(7).unwrap();
    for k in [1usize, 40] {
        m.truncate(prompt.len());
        let top = m.forward_top_k(7, k).unwrap();
        assert_eq!(top, top_k_logits(&full, k), "decode top-{k}");
    }
    m.truncate(prompt.len());
    assert_eq!(m.forward_greedy(Some(7)).unwrap(), argmax(&full));
}

/// The KV cache of every slot is planned before anything is uploaded: a
/// cache one binding cannot hold is a one-line error naming the flags to
/// change, not a device error (and size arithmetic cannot overflow).
#[test]
fn kv_cache_of_all_slots_is_planned_before_upload() {
    let g = Gguf::from_bytes(synthetic_gguf(&LlamaShape::tiny(), TensorType::Q8_0, 3).unwrap())
        .unwrap();
    let gpu = common::gpu(false);
    for (n_ctx, n_slots) in [(1 << 20, 1 << 10), (usize::MAX / 4, 3)] {
        let err = GpuModel::load(
            gpu.clone(),
            &g,
            &LoadOptions {
                n_ctx,
                n_batch: 8,
                n_slots,
                context: Default::default(),
            },
            &|_, _| {},
        )
        .err()
        .expect("refused");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("--parallel") && msg.contains("-c") && !msg.contains('\n'),
            "{msg}"
        );
    }
    // Slots that fit load, and each slot is its own context.
    let m = GpuModel::load(
        gpu,
        &g,
        &LoadOptions {
            n_ctx: 64,
            n_batch: 8,
            n_slots: 5,
            context: Default::default(),
        },
        &|_, _| {},
    )
    .unwrap();
    assert_eq!((m.n_slots, m.n_ctx), (5, 64));
}

/// Rows of one step that want top-k lists of different lengths each get
/// exactly their own best k (the kernel selects the step's largest k for
/// every row, in id order: a row wanting fewer must still sort them all).
#[test]
fn rows_of_one_step_get_their_own_top_k() {
    use llama_wgpu::engine::top_k_logits;
    use llama_wgpu::gpu::{BatchOutput, DecodeInput, StepInput, TokenSource};
    let g = Gguf::from_bytes(synthetic_gguf(&LlamaShape::tiny(), TensorType::Q4_0, 5).unwrap())
        .unwrap();
    let mut m = GpuModel::load(
        common::gpu(false),
        &g,
        &LoadOptions {
            n_ctx: 16,
            n_batch: 8,
            n_slots: 2,
            context: Default::default(),
        },
        &|_, _| {},
    )
    .unwrap();
    let rows = |a: BatchOutput, b: BatchOutput| {
        [
            DecodeInput {
                slot: 0,
                pos: 0,
                token: TokenSource::Id(5),
                out: a,
            },
            DecodeInput {
                slot: 1,
                pos: 0,
                token: TokenSource::Id(77),
                out: b,
            },
        ]
    };
    let step = |m: &mut GpuModel, r: &[DecodeInput]| {
        m.step(&StepInput {
            chunk: None,
            decode: r,
        })
        .unwrap()
        .decode
    };
    let full = step(
        &mut m,
        &rows(BatchOutput::LastLogits, BatchOutput::LastLogits),
    );
    let l0 = full[0].clone().into_logits().unwrap();
    let l1 = full[1].clone().into_logits().unwrap();
    for (k0, k1) in [(3, 40), (40, 3), (1, 7)] {
        let top = step(&mut m, &rows(BatchOutput::TopK(k0), BatchOutput::TopK(k1)));
        assert_eq!(
            top[0].clone().into_top_k().unwrap(),
            top_k_logits(&l0, k0),
            "row 0, k {k0} beside {k1}"
        );
        assert_eq!(
            top[1].clone().into_top_k().unwrap(),
            top_k_logits(&l1, k1),
            "row 1, k {k1} beside {k0}"
        );
    }
}

/// Layers whose V and up projections have another type than Q/K and gate
/// (as in llama.cpp's _M quantizations) keep separate products, with their
/// own RMSNorm and SwiGLU dispatches, instead of the fused ones; decode and
/// a prefill chunk still match the CPU.
#[test]
fn layers_of_mixed_types_keep_separate_products_and_match_cpu() {
    use llama_wgpu::gguf::{TensorBytes, TensorEntry};
    use llama_wgpu::quant::{dequantize_to_vec, quantize};
    let shape = LlamaShape::tiny();
    let base = Gguf::from_bytes(synthetic_gguf(&shape, TensorType::Q4_K, 13).unwrap()).unwrap();
    let tensors = base
        .tensors
        .iter()
        .map(|t| {
            let data = base.tensor_data(t);
            let ty = TensorType::from_ggml_id(t.type_id).unwrap();
            let (ty, bytes) =
                if t.name.ends_with("attn_v.weight") || t.name.ends_with("ffn_up.weight") {
                    let n = t.dims.iter().product::<u64>() as usize;
                    let x = dequantize_to_vec(ty, data, n).unwrap();
                    (TensorType::Q8_0, quantize(TensorType::Q8_0, &x).unwrap())
                } else {
                    (ty, data.to_vec())
                };
            TensorEntry {
                name: t.name.clone(),
                dims: t.dims.clone(),
                ty,
                bytes: TensorBytes::owned(bytes),
            }
        })
        .collect();
    let g = Gguf::assemble(
        std::path::Path::new("mixed"),
        base.metadata.clone(),
        tensors,
    )
    .unwrap();
    let mut cpu = CpuModel::load(&g).unwrap();
    cpu.kv_f16 = true;
    let mut gm = load_gpu(common::gpu(false), &g, 64);
    let err = compare(&mut cpu, &mut gm, &[1, 5, 9], 6, F16_KV_TOL, "mixed types");
    eprintln!("mixed types: max |logit diff| = {err:.2e}");
    // The separate path ran: a decode step has SwiGLU and per-layer norms.
    let p = gm.profile_decode(Some(1)).unwrap();
    for family in ["swiglu", "matvec_q8_0", "matvec_q4_k"] {
        assert!(
            p.ms.iter().any(|(f, _)| f == family),
            "{family}: {:?}",
            p.ms
        );
    }
    // A 12-token prompt in one step (the few-token matvec) and, with -b 40,
    // a 40-token one (the matmul): last logits as the CPU's.
    for n in [12usize, 40] {
        let prompt: Vec<u32> = (0..n as u32).map(|i| (i * 37 + 3) % 1000).collect();
        cpu.reset();
        gm.reset();
        let mut want = Vec::new();
        for &t in &prompt {
            want = cpu.forward(t);
        }
        let got = gm
            .prefill(&prompt, llama_wgpu::gpu::BatchOutput::LastLogits)
            .unwrap()
            .into_logits()
            .unwrap();
        let scale = want.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let e = common::max_abs_diff(&want, &got);
        assert!(
            e <= F16_KV_TOL * scale.max(1.0),
            "mixed prefill {n}: {e} (scale {scale})"
        );
    }
}

/// Pipelined greedy decoding (step t+1 submitted before step t's id is
/// read) gives exactly the ids of step-by-step greedy decoding, and a
/// discarded step gives its position back.
#[test]
fn pipelined_greedy_matches_step_by_step_greedy() {
    let (mut a, mut b) = tiny_q4_k_twins(31);
    let prompt = [5u32, 99, 400, 7];
    let mut want = vec![a.prefill_greedy(&prompt).unwrap()];
    for _ in 0..20 {
        want.push(a.forward_greedy(None).unwrap());
    }
    let mut got = vec![b.prefill_greedy(&prompt).unwrap()];
    b.greedy_submit(None).unwrap();
    for _ in 0..20 {
        // Two in flight: the next is submitted before the previous is read.
        b.greedy_submit(None).unwrap();
        assert_eq!(b.greedy_in_flight(), 2);
        assert!(b.greedy_submit(None).is_err(), "at most two in flight");
        got.push(b.greedy_collect().unwrap());
    }
    assert_eq!(got, want);
    assert_eq!(b.n_past(), prompt.len() + 21);
    b.greedy_discard().unwrap();
    assert_eq!(b.n_past(), prompt.len() + 20);
    assert_eq!(b.n_past(), a.n_past());
    // Other calls refuse to run over a step in flight, and work after it.
    b.greedy_submit(None).unwrap();
    assert!(b.forward(1).is_err());
    let next = b.greedy_collect().unwrap();
    assert_eq!(next, a.forward_greedy(None).unwrap());
    assert_eq!(b.forward(1).unwrap(), a.forward(1).unwrap());
}

/// Sampled decoding's overlap (the step for a token submitted before the
/// CPU streams it, read back afterwards) gives exactly the top-k and logits
/// of the blocking calls; a discarded step gives its position back; nothing
/// else runs over a submitted step.
#[test]
fn submitted_decode_steps_match_blocking_ones() {
    use llama_wgpu::gpu::{BatchOutput, Output};
    let (mut a, mut b) = tiny_q4_k_twins(37);
    let prompt = [5u32, 99, 400, 7];
    a.prefill(&prompt, BatchOutput::None).unwrap();
    b.prefill(&prompt, BatchOutput::None).unwrap();
    let mut token = 11u32;
    for i in 0..12 {
        let p = b.decode_submit(token, BatchOutput::TopK(8)).unwrap();
        assert!(
            b.decode_submit(token, BatchOutput::TopK(8)).is_err(),
            "one at a time"
        );
        assert!(b.forward(token).is_err(), "no step over a submitted one");
        assert!(b.greedy_submit(Some(token)).is_err());
        if i == 5 {
            // Generation ended on `token`: its step is dropped.
            b.decode_discard(p).unwrap();
            assert_eq!(b.n_past(), a.n_past());
            continue;
        }
        let want = a.forward_top_k(token, 8).unwrap();
        let got = match b.decode_collect(p).unwrap() {
            Output::TopK(t) => t,
            other => panic!("top-k step returned {other:?}"),
        };
        assert_eq!(got, want, "step {i}");
        assert_eq!(b.n_past(), a.n_past());
        // The next input: a candidate other than the best, as sampling picks.
        token = want[i % want.len()].0;
    }
    let p = b.decode_submit(token, BatchOutput::LastLogits).unwrap();
    let got = b.decode_collect(p).unwrap().into_logits().unwrap();
    assert_eq!(got, a.forward(token).unwrap());
}

/// A head width of its own (`llama.attention.key_length`, Mistral Nemo's
/// 128 with 5120 / 32 = 160): Q and the attention output are `n_head *
/// head_dim` wide, not `n_embd`. Wider than `n_embd` for every type (512
/// vs 256, whole K-quant super-blocks), and narrower, not a power of two,
/// for the 32-element block types (160 vs 256, 40-wide heads).
#[test]
fn a_head_width_of_its_own_matches_cpu() {
    let wide = LlamaShape {
        head_dim: Some(128),
        ..LlamaShape::tiny()
    };
    let narrow = LlamaShape {
        head_dim: Some(40),
        ..LlamaShape::tiny()
    };
    for portable in [false, true] {
        let gpu = common::gpu(portable);
        let cases = TensorType::ALL
            .into_iter()
            .map(|ty| (&wide, ty))
            .chain([TensorType::Q4_0, TensorType::Q8_0, TensorType::F16].map(|ty| (&narrow, ty)));
        for (shape, ty) in cases {
            let g = Gguf::from_bytes(synthetic_gguf(shape, ty, 17).unwrap()).unwrap();
            let mut cpu = CpuModel::load(&g).unwrap();
            assert_eq!(cpu.cfg.head_dim, shape.head_dim());
            cpu.kv_f16 = true;
            let mut gm = load_gpu(gpu.clone(), &g, 64);
            let what = format!("{ty} head_dim {} portable={portable}", shape.head_dim());
            let err = compare(&mut cpu, &mut gm, &[1, 5, 9], 12, F16_KV_TOL, &what);
            eprintln!("{what}: max |logit diff| over 14 positions = {err:.2e}");
        }
    }
}
