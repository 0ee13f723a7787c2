//! SmolLM2-135M-Instruct (a real llama-architecture GGUF, GQA, Q4_1) through
//! the CPU reference and the GPU engine, against an exact float64 computation
//! made independently by `tests/scripts/reference_f64.py` (llama.cpp's `gguf`
//! package for weights, numpy for the math).

mod common;

use llama_wgpu::gguf::Gguf;
use llama_wgpu::gpu::{GpuModel, LoadOptions};
use llama_wgpu::model::cpu::{argmax, CpuModel};

struct Reference {
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    /// Per position: the 20 best (token, logit) of the float64 computation.
    top_logits: Vec<Vec<(u32, f64)>>,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/model/smollm2_f64.json"
    ))
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids = |k: &str| {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    Reference {
        prompt_ids: ids("prompt_ids"),
        greedy_ids: ids("greedy_ids"),
        top_logits: v["top_logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pos| {
                pos.as_array()
                    .unwrap()
                    .iter()
                    .map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_f64().unwrap()))
                    .collect()
            })
            .collect(),
    }
}

/// Runs the prompt then greedy decoding through `forward`, returning the
/// generated ids and the logits at every generated position.
fn greedy(
    mut forward: impl FnMut(u32) -> Vec<f32>,
    prompt: &[u32],
    n: usize,
) -> (Vec<u32>, Vec<Vec<f32>>) {
    let mut logits = Vec::new();
    let mut out = Vec::new();
    let mut l = Vec::new();
    for &t in prompt {
        l = forward(t);
    }
    for _ in 0..n {
        let t = argmax(&l);
        out.push(t);
        logits.push(l);
        l = forward(t);
    }
    (out, logits)
}

/// Largest |logit - exact| over the reference's top-20 tokens of each position.
fn error_vs_exact(r: &Reference, logits: &[Vec<f32>]) -> f64 {
    let mut worst = 0.0f64;
    for (pos, top) in r.top_logits.iter().enumerate() {
        for &(id, exact) in top {
            worst = worst.max((logits[pos][id as usize] as f64 - exact).abs());
        }
    }
    worst
}

#[test]
fn cpu_reference_continues_the_capital_of_france_as_the_exact_computation() {
    let r = reference();
    let g = Gguf::open(common::test_model_path()).unwrap();
    let mut cpu = CpuModel::load(&g).unwrap();
    let (ids, logits) = greedy(|t| cpu.forward(t), &r.prompt_ids, r.greedy_ids.len());
    // " Paris.\n\nThe answer is" and on: the same greedy tokens as float64.
    assert_eq!(ids, r.greedy_ids);
    let err = error_vs_exact(&r, &logits);
    eprintln!(
        "CPU reference: max |logit - exact| over top-20 of {} positions = {err:.2e}",
        r.top_logits.len()
    );
    // f32 against f64 arithmetic on identical weights: rounding alone, far below 1e-3.
    assert!(
        err < 1e-3,
        "CPU reference is {err} away from the float64 logits"
    );
}

#[test]
fn gpu_logits_stay_within_0_05_of_exact_float64() {
    let r = reference();
    let g = Gguf::open(common::test_model_path()).unwrap();
    for portable in [false, true] {
        let mut gm =
            GpuModel::load(common::gpu(portable), &g, &LoadOptions::new(64), &|_, _| {}).unwrap();
        let (ids, logits) = greedy(
            |t| gm.forward(t).unwrap(),
            &r.prompt_ids,
            r.greedy_ids.len(),
        );
        let err = error_vs_exact(&r, &logits);
        eprintln!(
            "GPU (portable {portable}): max |logit - exact| over top-20 of the first {} positions = {err:.4}",
            r.top_logits.len()
        );
        assert!(
            err < 0.05,
            "GPU logits are {err} away from the float64 logits"
        );
        assert_eq!(
            ids, r.greedy_ids,
            "GPU greedy text differs from the exact computation"
        );
    }
}

#[test]
fn gpu_matches_cpu_reference_at_every_position_of_a_64_token_greedy_run() {
    let r = reference();
    let g = Gguf::open(common::test_model_path()).unwrap();
    let mut cpu = CpuModel::load(&g).unwrap();
    let mut gm =
        GpuModel::load(common::gpu(false), &g, &LoadOptions::new(128), &|_, _| {}).unwrap();
    let mut tok = r.prompt_ids[0];
    let mut worst = 0.0f32;
    let mut generated = Vec::new();
    let n_prompt = r.prompt_ids.len();
    for pos in 0..n_prompt + 64 {
        let lc = cpu.forward(tok);
        let lg = gm.forward(tok).unwrap();
        let err = common::max_abs_diff(&lc, &lg);
        worst = worst.max(err);
        // The f32 reference is within 1e-4 of exact float64 (test above), so
        // this holds the GPU to the project's bound against exact math, 0.05,
        // at every position. The GPU's error is its f16 KV cache: SmolLM2 has
        // activation outliers of several hundred, where one f16 ulp is ~0.25.
        assert!(err <= 0.05, "position {pos}: max |logit diff| {err}");
        assert_eq!(
            argmax(&lc),
            argmax(&lg),
            "position {pos}: greedy token differs"
        );
        tok = if pos + 1 < n_prompt {
            r.prompt_ids[pos + 1]
        } else {
            argmax(&lc)
        };
        if pos + 1 >= n_prompt {
            generated.push(tok);
        }
    }
    eprintln!(
        "SmolLM2 GPU vs CPU over {} positions: max |logit diff| = {worst:.4}",
        n_prompt + 64
    );
    assert_eq!(&generated[..r.greedy_ids.len()], &r.greedy_ids[..]);
}
