//! The scheduler on the real model: several requests at once give exactly
//! what each gives alone, with staggered starts, an early finish whose slot
//! is reused, cancellation and a bounded queue.

mod common;

use std::time::Duration;

use llama_wgpu::engine::{
    Engine, EngineOptions, Event, GenerateOptions, Request, SamplerParams, Scheduler,
    SchedulerOptions, StopReason, SubmitError,
};
use llama_wgpu::gpu::GpuOptions;

const N_PREDICT: usize = 8;

fn engine(n_parallel: usize) -> Engine {
    Engine::load(&EngineOptions {
        model: common::test_model_path(),
        load: Default::default(),
        gpu: GpuOptions::default(),
        n_ctx: Some(256),
        n_batch: None,
        n_parallel,
        context: Default::default(),
        quiet: true,
    })
    .expect("load SmolLM2")
}

fn greedy() -> SamplerParams {
    SamplerParams {
        temperature: 0.0,
        ..Default::default()
    }
}

fn request(engine: &Engine, prompt: &str, n: usize) -> Request {
    Request {
        prompt: engine.tokenize(prompt).unwrap(),
        sampler: greedy(),
        n_predict: Some(n),
        stop: Vec::new(),
        ignore_eos: true,
        logprobs: None,
    }
}

/// Every event of a request, until it is done.
fn collect(h: &mut llama_wgpu::engine::RequestHandle) -> (Vec<u32>, String, StopReason) {
    let (mut ids, mut text) = (Vec::new(), String::new());
    loop {
        match h
            .events
            .blocking_recv()
            .expect("the request ends with Done")
        {
            Event::Token(t) => {
                ids.push(t.id);
                text.push_str(&t.text);
            }
            Event::Done(f) => {
                assert_eq!(f.completion_tokens, ids.len());
                return (ids, text, f.reason);
            }
            Event::Error(e) => panic!("request failed: {e}"),
        }
    }
}

const PROMPTS: [&str; 4] = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "List three colours:",
];

#[test]
fn concurrent_greedy_requests_match_each_run_alone() {
    // Reference: each prompt alone through the plain single-sequence path.
    let mut alone = engine(1);
    let opts = GenerateOptions {
        n_predict: Some(N_PREDICT),
        sampler: greedy(),
        stop: Vec::new(),
        ignore_eos: true,
        top_logits: 0,
        context_shift: None,
    };
    let mut expected = Vec::new();
    for p in PROMPTS {
        alone.model.reset();
        let ids = alone.tokenize(p).unwrap();
        expected.push(alone.generate(&ids, &opts, |_| true).unwrap());
    }
    drop(alone);

    let eng = engine(4);
    let reqs: Vec<Request> = PROMPTS
        .iter()
        .enumerate()
        // The second request finishes early, and its slot is reused by the fifth.
        .map(|(i, p)| request(&eng, p, if i == 1 { 3 } else { N_PREDICT }))
        .collect();
    let fifth = request(&eng, PROMPTS[1], N_PREDICT);
    let sched = Scheduler::start(
        eng,
        SchedulerOptions {
            n_parallel: 4,
            queue_capacity: 4,
        },
    )
    .unwrap();
    let mut handles = Vec::new();
    for (i, r) in reqs.into_iter().enumerate() {
        handles.push(sched.submit(r).unwrap());
        if i == 2 {
            // The fourth joins while the others are generating.
            std::thread::sleep(Duration::from_millis(1500));
        }
    }
    handles.push(sched.submit(fifth).unwrap());
    let results: Vec<_> = handles.iter_mut().map(collect).collect();
    for (i, (ids, text, reason)) in results.iter().enumerate() {
        let exp = &expected[if i == 4 { 1 } else { i }];
        let n = if i == 1 { 3 } else { N_PREDICT };
        assert_eq!(ids[..], exp.generated_ids[..n], "request {i}: ids");
        if i != 1 {
            assert_eq!(*text, exp.text, "request {i}: text");
        }
        assert_eq!(*reason, StopReason::Length, "request {i}");
    }
    // Counters are updated after the step that sent the last event: read them once the engine stopped.
    sched.shutdown();
    let stats = sched.stats();
    assert_eq!(stats.requests_total, 5);
    assert_eq!(stats.generated_tokens_total, (4 * N_PREDICT + 3) as u64);
}

#[test]
fn refusals_cancellation_and_a_full_queue() {
    let eng = engine(1);
    let long = request(&eng, PROMPTS[0], 200);
    let short = request(&eng, PROMPTS[3], 2);
    let n_ctx = eng.model.n_ctx;
    let sched = Scheduler::start(
        eng,
        SchedulerOptions {
            n_parallel: 1,
            queue_capacity: 1,
        },
    )
    .unwrap();
    let mut empty = short.clone();
    empty.prompt.clear();
    assert_eq!(sched.submit(empty).err(), Some(SubmitError::EmptyPrompt));
    let mut huge = short.clone();
    huge.prompt = vec![1; n_ctx];
    assert!(matches!(
        sched.submit(huge).err(),
        Some(SubmitError::PromptTooLong { .. })
    ));
    let mut lp = short.clone();
    lp.logprobs = Some(21);
    assert_eq!(
        sched.submit(lp).err(),
        Some(SubmitError::TooManyLogprobs(21))
    );

    // One running, one waiting: a third is refused.
    let mut running = sched.submit(long).unwrap();
    let waiting = sched.submit(short.clone()).unwrap();
    assert_eq!(
        sched.submit(short.clone()).err(),
        Some(SubmitError::QueueFull)
    );
    // The running request streams; cancelling it frees its slot for the waiting one.
    assert!(matches!(
        running.events.blocking_recv(),
        Some(Event::Token(_))
    ));
    running.cancel();
    let mut waiting = waiting;
    let (ids, _, reason) = collect(&mut waiting);
    assert_eq!((ids.len(), reason), (2, StopReason::Length));
    // The cancelled one ends as interrupted, well before its 200 tokens.
    let mut n = 1;
    let reason = loop {
        match running.events.blocking_recv() {
            Some(Event::Token(_)) => n += 1,
            Some(Event::Done(f)) => break f.reason,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(reason, StopReason::Interrupted);
    assert!(n < 200);

    // Logprobs: the chosen token's log-probability is the best of the top list.
    let mut lp = short;
    lp.logprobs = Some(3);
    let mut h = sched.submit(lp).unwrap();
    match h.events.blocking_recv() {
        Some(Event::Token(t)) => {
            let l = t.logprob.expect("logprobs asked for");
            assert_eq!(l.top.len(), 3);
            assert_eq!(l.top[0].0, t.id, "greedy picks the most likely token");
            assert!((l.top[0].1 - l.logprob).abs() < 1e-6 && l.logprob <= 0.0);
            assert!(l.top[1].1 <= l.top[0].1);
        }
        other => panic!("unexpected {other:?}"),
    }
    drop(h);
    sched.shutdown();
}
