//! Embeddings: the GPU's final-normed hidden states against the CPU
//! reference (every tensor type, both kernel paths, prompts over several
//! chunks) and against transformers' `last_hidden_state`; pooling; the
//! scheduler's embedding requests beside a generation; `llama-wgpu embed`.

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use llama_wgpu::engine::{embedding::Pooler, Pooling};
use llama_wgpu::engine::{
    normalize, Engine, EngineOptions, Event, GenerateOptions, Request, SamplerParams, Scheduler,
    SchedulerOptions, SubmitError,
};
use llama_wgpu::gguf::Gguf;
use llama_wgpu::gpu::{BatchOutput, GpuModel, GpuOptions, LoadOptions};
use llama_wgpu::model::cpu::CpuModel;
use llama_wgpu::model::synthetic::{synthetic_gguf, LlamaShape};
use llama_wgpu::quant::TensorType;
use serde_json::Value;

/// The GPU keeps K and V in f16, the CPU reference rounds them the same
/// way (`kv_f16`); what is left is summation order (~1e-6 relative) and the
/// rare K/V value on an f16 rounding boundary that rounds one ulp (2^-11)
/// apart, as for the logits (gpu_model.rs's F16_KV_TOL, 1e-3 of their
/// scale). A hidden state's worst element, relative to its largest, comes
/// out about twice the logits' worst (which are sums over all its elements),
/// and the GPU's decode path shows the same difference: on the random Q2_K
/// model 9.0e-4 for the hidden state and 4.8e-4 for the logits of the same
/// positions, batched prefill and one-token steps within 1.4e-5 of each
/// other; every other type stays under 2.1e-4. Bound: 2e-3. The measured
/// worst is printed.
const TOL: f32 = 2e-3;
/// The CPU reference with an f32 cache against transformers (f32 throughout):
/// the same arithmetic in another order (hf_models.rs's CPU_TOL; measured
/// at most 4.1e-6).
const CPU_HF_TOL: f32 = 1e-5;
/// The GPU against transformers: the GPU's f16 cache is the whole
/// difference (the CPU reference with an f16 cache is off by the same
/// amount, 4.1e-3 at worst on these random two-layer models; with an f32
/// cache by 4.1e-6). The chain above (GPU vs CPU with an f16 cache, CPU
/// with an f32 cache vs transformers) is checked tightly; this bound only
/// catches a gross error on the direct path.
const GPU_HF_TOL: f32 = 1e-2;

/// Largest |a - b| over the largest |want|.
fn rel(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "lengths");
    let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    common::max_abs_diff(got, want) / scale
}

fn tokens(n: usize, vocab: usize, seed: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i * 7919 + seed * 104_729 + 3) % vocab as u32)
        .collect()
}

/// The CPU reference's hidden state at every position, one token at a time.
fn cpu_hidden(cpu: &mut CpuModel, toks: &[u32]) -> Vec<Vec<f32>> {
    cpu.reset();
    toks.iter().map(|&t| cpu.forward_hidden(t)).collect()
}

fn pooled(rows: &[Vec<f32>], pooling: Pooling) -> Vec<Vec<f32>> {
    let mut p = Pooler::new(pooling, rows[0].len());
    p.add(&rows.concat()).unwrap();
    p.finish().unwrap()
}

#[test]
fn gpu_hidden_states_match_the_cpu_reference_for_every_type() {
    let shape = LlamaShape::tiny();
    let mut worst = 0f32;
    for portable in [false, true] {
        let gpu = common::gpu(portable);
        for ty in TensorType::ALL {
            let g = Gguf::from_bytes(synthetic_gguf(&shape, ty, 5).unwrap()).unwrap();
            let mut cpu = CpuModel::load(&g).unwrap();
            cpu.kv_f16 = true;
            let mut m = GpuModel::load(
                gpu.clone(),
                &g,
                &LoadOptions {
                    n_ctx: 128,
                    n_batch: 64,
                    n_slots: 1,
                    context: Default::default(),
                },
                &|_, _| {},
            )
            .unwrap();
            // 70 tokens: a 64-token chunk (tiled matmul) and one of 6 (few-token matvec).
            let toks = tokens(70, shape.n_vocab, ty as u32);
            let want = cpu_hidden(&mut cpu, &toks);
            m.reset();
            let all = m
                .prefill(&toks, BatchOutput::AllHidden)
                .unwrap()
                .into_hidden()
                .unwrap();
            assert_eq!(all.len(), 70 * shape.n_embd, "{ty:?}: one row per position");
            for (pos, w) in want.iter().enumerate() {
                let d = rel(&all[pos * shape.n_embd..(pos + 1) * shape.n_embd], w);
                assert!(d <= TOL, "{ty:?} portable={portable} position {pos}: {d}");
                worst = worst.max(d);
            }
            m.reset();
            let last = m
                .prefill(&toks, BatchOutput::LastHidden)
                .unwrap()
                .into_hidden()
                .unwrap();
            assert_eq!(
                last,
                all[69 * shape.n_embd..],
                "{ty:?}: LastHidden is the last row"
            );
        }
    }
    eprintln!("GPU vs CPU hidden states: worst {worst:.2e} of the scale");
}

fn hf_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf")
}

fn load(model: PathBuf, n_ctx: usize, n_parallel: usize) -> Engine {
    Engine::load(&EngineOptions {
        model,
        load: Default::default(),
        gpu: GpuOptions::default(),
        n_ctx: Some(n_ctx),
        n_batch: None,
        n_parallel,
        context: Default::default(),
        quiet: true,
    })
    .expect("load the model")
}

/// tests/fixtures/hf/embeddings.json (tests/scripts/hf_embedding_fixture.py).
#[test]
fn embeddings_match_transformers_last_hidden_state() {
    let text = std::fs::read_to_string(hf_fixtures().join("embeddings.json")).unwrap();
    let cases: Value = serde_json::from_str(&text).unwrap();
    let (mut worst_cpu, mut worst_gpu, mut worst_chain) = (0f32, 0f32, 0f32);
    let mut engines = std::collections::BTreeMap::new();
    for c in cases["cases"].as_array().unwrap() {
        let name = c["model"].as_str().unwrap();
        let e = engines
            .entry(name.to_string())
            .or_insert_with(|| load(hf_fixtures().join(name), 64, 1));
        let ids = e.tokenize(c["prompt"].as_str().unwrap()).unwrap();
        let want_ids: Vec<u32> = serde_json::from_value(c["ids"].clone()).unwrap();
        assert_eq!(ids, want_ids, "{name}: transformers' ids");
        let want: Vec<Vec<f32>> = serde_json::from_value(c["hidden"].clone()).unwrap();
        let mut cpu = CpuModel::load(&e.gguf).unwrap();
        let cpu_f32 = cpu_hidden(&mut cpu, &ids);
        cpu.kv_f16 = true;
        let cpu_f16 = cpu_hidden(&mut cpu, &ids);
        let got = e.embed(&ids, Pooling::None).unwrap();
        assert_eq!(got.len(), ids.len(), "{name}: one vector per token");
        for pos in 0..ids.len() {
            let what = format!("{name} {:?} position {pos}", c["prompt"]);
            let d = rel(&cpu_f32[pos], &want[pos]);
            assert!(d <= CPU_HF_TOL, "{what}: CPU reference vs transformers {d}");
            worst_cpu = worst_cpu.max(d);
            let d = rel(&got[pos], &cpu_f16[pos]);
            assert!(d <= TOL, "{what}: GPU vs CPU reference (f16 cache) {d}");
            worst_chain = worst_chain.max(d);
            let d = rel(&got[pos], &want[pos]);
            assert!(d <= GPU_HF_TOL, "{what}: GPU vs transformers {d}");
            worst_gpu = worst_gpu.max(d);
        }
        for pooling in [Pooling::Mean, Pooling::Cls, Pooling::Last] {
            let got = e.embed(&ids, pooling).unwrap();
            let d = rel(&got[0], &pooled(&cpu_f16, pooling)[0]);
            assert!(d <= TOL, "{name} {pooling:?}: {d}");
        }
    }
    eprintln!(
        "vs transformers: CPU reference {worst_cpu:.2e}, GPU {worst_gpu:.2e}; GPU vs CPU (f16 cache) {worst_chain:.2e}"
    );
}

const TEXT: &str = "The lighthouse keeper climbed the spiral stairs every evening, \
    counting the steps as his father had, and lit the great lamp so that the \
    fishing boats could find their way home through the fog and the rain.";

#[test]
fn smollm2_embeddings_match_the_cpu_reference_and_the_scheduler() {
    let mut e = load(common::test_model_path(), 128, 2);
    let ids = e.tokenize(&format!("{TEXT} {TEXT}")).unwrap();
    assert!(ids.len() > 64, "two prompt chunks: {} tokens", ids.len());
    let mut cpu = CpuModel::load(&e.gguf).unwrap();
    cpu.kv_f16 = true;
    let want = cpu_hidden(&mut cpu, &ids);
    let mut worst = 0f32;
    let mut alone = Vec::new();
    for pooling in [Pooling::Mean, Pooling::Cls, Pooling::Last] {
        let got = e.embed(&ids, pooling).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].len(), 576, "SmolLM2-135M's width");
        let d = rel(&got[0], &pooled(&want, pooling)[0]);
        assert!(d <= TOL, "{pooling:?}: {d}");
        worst = worst.max(d);
        alone.push(got.into_iter().next().unwrap());
    }
    eprintln!("SmolLM2 GPU vs CPU pooled embeddings: worst {worst:.2e} of the scale");

    // The same texts through the scheduler, beside a greedy generation
    // whose tokens must be those it gives alone.
    let prompt = e.tokenize("Once upon a time").unwrap();
    let greedy = SamplerParams {
        temperature: 0.0,
        ..Default::default()
    };
    e.model.reset();
    let solo = e
        .generate(
            &prompt,
            &GenerateOptions {
                n_predict: Some(6),
                sampler: greedy.clone(),
                stop: Vec::new(),
                ignore_eos: true,
                top_logits: 0,
                context_shift: None,
                format: Default::default(),
            },
            |_| true,
        )
        .unwrap()
        .generated_ids;
    e.model.reset();
    let n_ctx = e.model.n_ctx;
    let sched = Scheduler::start(
        e,
        SchedulerOptions {
            n_parallel: 2,
            queue_capacity: 8,
        },
    )
    .unwrap();
    let mut g = sched
        .submit(Request {
            prompt: prompt.clone(),
            sampler: greedy,
            n_predict: Some(6),
            stop: Vec::new(),
            ignore_eos: true,
            logprobs: None,
            context_shift: None,
            cache_prompt: true,
            format: Default::default(),
            embed: None,
            shown_tokens: Vec::new(),
        })
        .unwrap();
    for (pooling, want) in [Pooling::Mean, Pooling::Cls, Pooling::Last]
        .into_iter()
        .zip(&alone)
    {
        let mut h = sched
            .submit(Request::embedding(ids.clone(), pooling))
            .unwrap();
        let f = finished(&mut h);
        assert_eq!(f.prompt_tokens, ids.len());
        assert_eq!(f.completion_tokens, 0);
        assert_eq!(f.embedding.len(), 1);
        // Other kernels may run (the step holds the generation's row too):
        // the same bound, against the engine's own result.
        let d = rel(&f.embedding[0], want);
        assert!(d <= TOL, "scheduler {pooling:?}: {d}");
    }
    let mut got = Vec::new();
    loop {
        match g.events.blocking_recv().expect("Done") {
            Event::Token(t) => got.push(t.id),
            Event::Done(_) => break,
            Event::Error(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        got, solo,
        "a generation beside embeddings gives what it gives alone"
    );

    // An embedding needs no position after the text: a whole slot is allowed.
    let full = tokens(n_ctx, 49152, 1);
    let mut h = sched
        .submit(Request::embedding(full.clone(), Pooling::Last))
        .unwrap();
    assert_eq!(finished(&mut h).embedding[0].len(), 576);

    let mut over = full;
    over.push(1);
    assert!(matches!(
        sched.submit(Request::embedding(over, Pooling::Last)).err(),
        Some(SubmitError::PromptTooLong { .. })
    ));
    sched.shutdown();
}

/// An embedding request's one event: `Done`, with the vector.
fn finished(h: &mut llama_wgpu::engine::RequestHandle) -> llama_wgpu::engine::Finished {
    match h.events.blocking_recv().expect("an event") {
        Event::Done(f) => f,
        Event::Error(e) => panic!("{e}"),
        Event::Token(_) => panic!("an embedding request generated a token"),
    }
}

fn bin() -> Command {
    Command::cargo_bin("llama-wgpu").unwrap()
}

#[test]
fn embed_command_prints_normalized_vectors_and_refuses_bad_flags() {
    let model = common::test_model_path();
    // stdout of a run that must succeed.
    let embed = |args: &[&str]| -> Vec<u8> {
        let out = bin()
            .args(["embed", "-m"])
            .arg(&model)
            .args(["-c", "64"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let out = embed(&["-p", "Hello world\nThe capital of France", "--json"]);
    let v: Value = serde_json::from_slice(&out).unwrap();
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(
        v["pooling"], "last",
        "SmolLM2's file names no pooling: last"
    );
    let mut e = load(model.clone(), 64, 1);
    for (i, text) in ["Hello world", "The capital of France"].iter().enumerate() {
        assert_eq!(data[i]["index"], i);
        let got: Vec<f32> = serde_json::from_value(data[i]["embedding"].clone()).unwrap();
        let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "unit length: {norm}");
        let ids = e.tokenize(text).unwrap();
        let want = normalize(&e.embed(&ids, Pooling::Last).unwrap()[0], 2);
        assert!(
            common::max_abs_diff(&got, &want) < 1e-6,
            "input {i}: the engine's vector"
        );
    }
    assert_eq!(
        v["usage"]["prompt_tokens"],
        e.tokenize("Hello world").unwrap().len()
            + e.tokenize("The capital of France").unwrap().len()
    );

    // pooling none: one line per token; normalization off gives the raw vector.
    let out = embed(&[
        "-p",
        "Hello world",
        "--pooling",
        "none",
        "--embd-normalize",
        "-1",
        "-q",
    ]);
    let text = String::from_utf8(out).unwrap();
    let ids = e.tokenize("Hello world").unwrap();
    assert_eq!(text.lines().count(), ids.len());
    let raw = e.embed(&ids, Pooling::None).unwrap();
    let first: Vec<f32> = text.lines().next().unwrap()["embedding 0 token 0: ".len()..]
        .split(' ')
        .map(|x| x.parse().unwrap())
        .collect();
    // Printed with six decimals, read back to the nearest f32.
    for (p, r) in first.iter().zip(&raw[0]) {
        assert!(
            (p - r).abs() <= 5e-7 + r.abs() * f32::EPSILON,
            "six decimals of the raw vector: {p} vs {r}"
        );
    }

    for (args, want) in [
        (
            vec!["--pooling", "avg"],
            "--pooling must be none, mean, cls or last",
        ),
        (vec!["--pooling", "rank"], "reranker"),
        (vec!["-p", "a\n\nb"], "input 2 is empty"),
        (vec![], "give the text with -p TEXT or -f FILE"),
    ] {
        let mut c = bin();
        c.args(["embed", "-m"]).arg(&model).args(["-c", "64"]);
        if !args.contains(&"-p") && !args.is_empty() {
            c.args(["-p", "x"]);
        }
        let out = c.args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
    }
}
