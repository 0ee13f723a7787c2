//! The scheduler on the real model: several requests at once give exactly
//! what each gives alone, with staggered starts, an early finish whose slot
//! is reused, cancellation and a bounded queue.

mod common;

use std::time::Duration;

use llama_wgpu::engine::{
    Engine, EngineOptions, Event, Finished, GenerateOptions, Request, SamplerParams, Scheduler,
    SchedulerOptions, StopReason, SubmitError,
};
use llama_wgpu::gpu::GpuOptions;

const N_PREDICT: usize = 8;

fn engine(n_parallel: usize) -> Engine {
    engine_with_ctx(n_parallel, 256)
}

fn engine_with_ctx(n_parallel: usize, n_ctx: usize) -> Engine {
    Engine::load(&EngineOptions {
        model: common::test_model_path(),
        load: Default::default(),
        gpu: GpuOptions::default(),
        n_ctx: Some(n_ctx),
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
        context_shift: None,
        cache_prompt: true,
        format: Default::default(),
        embed: None,
        shown_tokens: Vec::new(),
    }
}

/// Every event of a request, until it is done.
fn collect(h: &mut llama_wgpu::engine::RequestHandle) -> (Vec<u32>, String, StopReason) {
    let (ids, text, f) = collect_finished(h);
    (ids, text, f.reason)
}

fn collect_finished(h: &mut llama_wgpu::engine::RequestHandle) -> (Vec<u32>, String, Finished) {
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
                return (ids, text, f);
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

/// Context shifts in the scheduler: a request three times as long as its
/// slot goes on past it (its slot shifted on the GPU, keeping the first 3
/// positions, while another sequence decodes beside it in the other slot)
/// and gives exactly what `generate` gives alone with the same shifts; the
/// same request without a shift ends when the slot is full.
#[test]
fn context_shift_in_a_slot_matches_generate_alone() {
    const N_CTX: usize = 32;
    const N: usize = 3 * N_CTX;
    let mut alone = engine_with_ctx(1, N_CTX);
    let opts = |n, shift| GenerateOptions {
        n_predict: Some(n),
        sampler: greedy(),
        stop: Vec::new(),
        ignore_eos: true,
        top_logits: 0,
        context_shift: shift,
        format: Default::default(),
    };
    let ids = alone.tokenize(PROMPTS[2]).unwrap();
    let expected = alone.generate(&ids, &opts(N, Some(3)), |_| true).unwrap();
    assert_eq!(expected.generated_ids.len(), N);
    assert!(
        expected.context_shifts.len() >= 4,
        "{:?}",
        expected.context_shifts
    );
    alone.model.reset();
    let other_ids = alone.tokenize(PROMPTS[0]).unwrap();
    let other = alone
        .generate(&other_ids, &opts(16, None), |_| true)
        .unwrap();
    drop(alone);

    let eng = engine_with_ctx(2, N_CTX);
    let mut shifted = request(&eng, PROMPTS[2], N);
    shifted.context_shift = Some(3);
    let unshifted = request(&eng, PROMPTS[2], N);
    let beside = request(&eng, PROMPTS[0], 16);
    let sched = Scheduler::start(
        eng,
        SchedulerOptions {
            n_parallel: 2,
            queue_capacity: 4,
        },
    )
    .unwrap();
    let mut b = sched.submit(beside).unwrap();
    let mut a = sched.submit(shifted).unwrap();
    let (ids_b, _, reason_b) = collect(&mut b);
    let (ids_a, text_a, reason_a) = collect(&mut a);
    assert_eq!(ids_b, other.generated_ids);
    assert_eq!(reason_b, StopReason::Length);
    assert_eq!(ids_a, expected.generated_ids);
    assert_eq!(text_a, expected.text);
    assert_eq!(reason_a, StopReason::Length);
    // Without a shift: the tokens until the slot is full, then ContextFull.
    let mut c = sched.submit(unshifted).unwrap();
    let (ids_c, _, reason_c) = collect(&mut c);
    assert_eq!(reason_c, StopReason::ContextFull);
    assert_eq!(ids_c.len(), N_CTX - ids.len() + 1);
    assert_eq!(ids_c[..], expected.generated_ids[..ids_c.len()]);
    sched.shutdown();
}

/// The prompt cache: a request that continues an earlier one (its prompt,
/// the reply, more text: a conversation's next turn) starts where the slot's
/// cached tokens end, and gives what the same request gives with the cache
/// off; the same prompt again reprocesses only its last token.
#[test]
fn a_prompt_cache_hit_gives_what_a_fresh_prompt_gives() {
    let eng = engine(1);
    let first = request(&eng, PROMPTS[2], N_PREDICT);
    let more = eng.tokenize(" Then the old woman said").unwrap();
    let sched = Scheduler::start(
        eng,
        SchedulerOptions {
            n_parallel: 1,
            queue_capacity: 4,
        },
    )
    .unwrap();
    let (ids_a, _, fa) = collect_finished(&mut sched.submit(first.clone()).unwrap());
    assert_eq!(
        (fa.cached_tokens, fa.prompt_tokens),
        (0, first.prompt.len())
    );

    // The slot holds the prompt and every reply token but the last (never fed).
    let mut turn = first.prompt.clone();
    turn.extend_from_slice(&ids_a);
    turn.extend_from_slice(&more[1..]);
    let next = Request {
        prompt: turn.clone(),
        ..first.clone()
    };
    let (ids_b, text_b, fb) = collect_finished(&mut sched.submit(next.clone()).unwrap());
    assert_eq!(fb.cached_tokens, first.prompt.len() + N_PREDICT - 1);
    assert_eq!(fb.prompt_tokens, turn.len());

    let fresh = Request {
        cache_prompt: false,
        ..next
    };
    let (ids_c, text_c, fc) = collect_finished(&mut sched.submit(fresh).unwrap());
    assert_eq!(fc.cached_tokens, 0);
    assert_eq!(ids_b, ids_c);
    assert_eq!(text_b, text_c);

    let (ids_d, _, fd) = collect_finished(&mut sched.submit(first.clone()).unwrap());
    assert_eq!(fd.cached_tokens, first.prompt.len() - 1);
    assert_eq!(ids_d, ids_a);
    sched.shutdown();
    let stats = sched.stats();
    let cached = (fb.cached_tokens + fd.cached_tokens) as u64;
    assert_eq!(stats.prompt_tokens_cached_total, cached);
    let all = 2 * first.prompt.len() + 2 * turn.len();
    assert_eq!(stats.prompt_tokens_total + cached, all as u64);
}

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
        format: Default::default(),
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
