//! Quantizers: byte for byte against llama.cpp's `gguf` package where it has
//! them (`tests/scripts/gen_quantize_fixtures.py`), round-trip error bounds
//! for every type, and quantization while loading a model.

use std::path::PathBuf;

use llama_wgpu::gguf::Gguf;
use llama_wgpu::hf::{transform, LoadSpec};
use llama_wgpu::model::cpu::CpuModel;
use llama_wgpu::model::synthetic::{synthetic_gguf, LlamaShape};
use llama_wgpu::model::{LlamaConfig, ModelWeights};
use llama_wgpu::quant::{dequantize_to_vec, quantize, TensorType};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/quant")
            .join(name),
    )
    .unwrap()
}

fn input() -> Vec<f32> {
    bytemuck::pod_collect_to_vec(&fixture("quantize-input.f32"))
}

#[test]
fn q8_0_and_q4_0_match_the_gguf_package_byte_for_byte() {
    let x = input();
    for ty in [TensorType::Q8_0, TensorType::Q4_0] {
        let want = fixture(&format!("quantize-{ty}.bin"));
        let got = quantize(ty, &x).unwrap();
        assert_eq!(got.len(), want.len());
        let first = got.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!(first, None, "{ty}: first differing byte at {first:?}");
    }
}

/// RMS of (x - dequantize(quantize(x))) over RMS of x, on Gaussian data.
fn relative_rms_error(ty: TensorType, x: &[f32]) -> f32 {
    let q = quantize(ty, x).unwrap();
    let y = dequantize_to_vec(ty, &q, x.len()).unwrap();
    let err: f32 = x.iter().zip(&y).map(|(a, b)| (a - b) * (a - b)).sum();
    let norm: f32 = x.iter().map(|a| a * a).sum();
    (err / norm).sqrt()
}

/// Expected error of each type on Gaussian blocks. A uniform rounding error
/// of step s has RMS s / sqrt(12); with b-bit levels spread over a block's
/// range (about 2 x 2.5 sigma for 32 Gaussian values), s = 5 sigma / (2^b - 1)
/// for the asymmetric formats and about 2 x 2.3 sigma / (2^b) for the
/// symmetric ones. That gives ~0.8% for 8 bits, ~9% for Q4_0, ~7% for Q4_K,
/// ~2% for Q6_K; the bounds sit 25% above those estimates.
const BOUNDS: [(TensorType, f32); 6] = [
    (TensorType::F16, 1e-3),
    (TensorType::BF16, 5e-3),
    (TensorType::Q8_0, 0.01),
    (TensorType::Q6_K, 0.025),
    (TensorType::Q4_K, 0.09),
    (TensorType::Q4_0, 0.11),
];

#[test]
fn every_type_round_trips_within_its_expected_error() {
    let x = input();
    let gaussian = &x[..1024];
    for (ty, bound) in BOUNDS {
        let e = relative_rms_error(ty, gaussian);
        eprintln!("{ty}: relative RMS error {e:.4}");
        assert!(e < bound, "{ty}: {e} >= {bound}");
        // Awkward blocks (zeros, constants, an outlier, tiny values) stay finite and bounded.
        let all = dequantize_to_vec(ty, &quantize(ty, &x).unwrap(), x.len()).unwrap();
        assert!(all.iter().all(|v| v.is_finite()), "{ty}");
    }
    assert_eq!(
        quantize(TensorType::F32, &x).unwrap(),
        bytemuck::cast_slice::<f32, u8>(&x)
    );
    // A zero block stays exactly zero.
    for ty in [
        TensorType::Q8_0,
        TensorType::Q4_0,
        TensorType::Q4_K,
        TensorType::Q6_K,
    ] {
        let z = vec![0f32; 256];
        assert!(dequantize_to_vec(ty, &quantize(ty, &z).unwrap(), 256)
            .unwrap()
            .iter()
            .all(|&v| v == 0.0));
    }
    assert!(
        quantize(TensorType::Q5_1, &x).is_none(),
        "no quantizer for Q5_1"
    );
    assert!(
        quantize(TensorType::Q4_K, &x[..32]).is_none(),
        "partial super-block"
    );
}

fn logits(g: &Gguf, ids: &[u32]) -> Vec<Vec<f32>> {
    let mut cpu = CpuModel::load(g).unwrap();
    ids.iter().map(|&id| cpu.forward(id)).collect()
}

/// Quantizing an F32 model while loading: every matrix takes the type, norms
/// stay F32, the logits move by the quantization error expected for the type
/// (relative RMS over the logits), and the GPU memory estimate shrinks by
/// the type's bytes per weight.
#[test]
fn quantize_on_load_changes_logits_by_the_expected_error() {
    let shape = LlamaShape::tiny();
    let base = Gguf::from_bytes(synthetic_gguf(&shape, TensorType::F32, 11).unwrap()).unwrap();
    let ids = [1u32, 7, 300, 42, 999];
    let want = logits(&base, &ids);
    let cfg = LlamaConfig::from_gguf(&base).unwrap();
    let weights_bytes = |g: &Gguf| {
        let w = ModelWeights::resolve(g, &cfg).unwrap();
        llama_wgpu::gpu::estimate_bytes(&cfg, &w, 64, 8, 1, Default::default()).0
    };
    let f32_bytes = weights_bytes(&base);
    // The logits move in proportion to the weights' relative error: over
    // 2 layers of 7 matrices and the output projection of a random model the
    // measured factor is 2.7 for both types (q8_0: weights 0.4%, logits 1.1%;
    // q4_k: 6.5%, 17.7%). The bounds allow a factor 1 to 4, and the weight
    // error itself the per-type bound of the round-trip test on uniform data.
    for (ty, weight_bound, bytes_per_weight) in [
        // GPU bytes per weight: the file's (Q8_0 as a structure of arrays, 34 bytes a block).
        (TensorType::Q8_0, 0.006, 34.0 / 32.0),
        (TensorType::Q4_K, 0.08, 144.0 / 256.0),
    ] {
        let spec = LoadSpec {
            quantize: Some(ty),
            ..Default::default()
        };
        let g = transform(
            Gguf::from_bytes(synthetic_gguf(&shape, TensorType::F32, 11).unwrap()).unwrap(),
            &spec,
        )
        .unwrap();
        let (mut werr, mut wnorm) = (0f64, 0f64);
        for (t, b) in g.tensors.iter().zip(&base.tensors) {
            let want_ty = if t.dims.len() == 2 {
                ty
            } else {
                TensorType::F32
            };
            assert_eq!(t.tensor_type().unwrap(), want_ty, "{}", t.name);
            let n = t.n_elements() as usize;
            let q = dequantize_to_vec(want_ty, g.tensor_data(t), n).unwrap();
            let x = dequantize_to_vec(TensorType::F32, base.tensor_data(b), n).unwrap();
            for (a, b) in q.iter().zip(&x) {
                werr += ((a - b) * (a - b)) as f64;
                wnorm += (b * b) as f64;
            }
        }
        let wrel = (werr / wnorm).sqrt() as f32;
        let got = logits(&g, &ids);
        let (mut err, mut norm) = (0f32, 0f32);
        for (a, b) in got.iter().flatten().zip(want.iter().flatten()) {
            err += (a - b) * (a - b);
            norm += b * b;
        }
        let rel = (err / norm).sqrt();
        eprintln!("{ty} on load: weights {wrel:.4}, logits {rel:.4} relative RMS change");
        assert!(wrel < weight_bound, "{ty}: weights {wrel}");
        assert!(
            rel > wrel && rel < 4.0 * wrel,
            "{ty}: logits {rel} for weights {wrel}"
        );
        let ratio = weights_bytes(&g) as f64 / f32_bytes as f64;
        let expect = bytes_per_weight / 4.0;
        assert!(
            (ratio - expect).abs() < 0.01,
            "{ty}: estimate ratio {ratio}, expected about {expect}"
        );
    }
}
