//! Helpers shared by integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The real test model. Never skipped: a missing model is a failure that says how to get it.
pub fn test_model_path() -> PathBuf {
    let path = std::env::var_os("LLAMA_WGPU_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.is_file(),
        "test model {} is missing: run scripts/fetch-model.sh (or set LLAMA_WGPU_TEST_MODEL)",
        path.display()
    );
    path
}

/// A file of llama.cpp's tokenizer test data (`../shared/testdata/tokenizer`
/// beside the checkout, as CI lays it out).
pub fn testdata(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/testdata/tokenizer")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: the llama.cpp vocabularies live in ../shared/testdata/tokenizer",
        p.display()
    );
    p
}

use std::sync::Arc;

use llama_wgpu::gpu::{Gpu, GpuOptions};

/// The test GPU: with every optional feature the adapter has, or with none
/// (the portable paths). Both run on lavapipe in CI.
pub fn gpu(portable: bool) -> Arc<Gpu> {
    gpu_with(GpuOptions {
        no_f16: portable,
        no_subgroups: portable,
        no_timestamps: portable,
        ..Default::default()
    })
}

/// The test GPU with these options; wgpu errors panic.
pub fn gpu_with(opts: GpuOptions) -> Arc<Gpu> {
    let gpu = Gpu::new(&opts).expect("a GPU adapter (install mesa-vulkan-drivers for lavapipe)");
    // A validation error must fail the test, never be a silently skipped dispatch.
    gpu.device
        .on_uncaptured_error(Arc::new(|e| panic!("wgpu error: {e}")));
    gpu
}

/// Largest |a - b|.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Asserts that a command failed with one line on stderr, `error: ...`, and
/// no panic; returns that stderr.
pub fn one_line_error(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}
