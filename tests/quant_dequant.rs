//! CPU dequantization against llama.cpp's Python library, bit for bit.
//!
//! The fixtures in tests/fixtures/quant/ come from
//! tests/scripts/gen_quant_fixtures.py: `NAME.bin` is a tensor's raw bytes,
//! `NAME.f32` what `gguf.quants.dequantize` made of them.

use std::path::PathBuf;

use llama_wgpu::quant::{dequantize, dequantize_to_vec, random_tensor, QuantError, TensorType};
use rand::{rngs::StdRng, SeedableRng};

fn fixture(ty: TensorType) -> (Vec<u8>, Vec<f32>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quant");
    let read = |ext: &str| {
        let path = dir.join(format!("{}.{ext}", ty.name()));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let expected = read("f32")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (read("bin"), expected)
}

#[test]
fn every_type_matches_gguf_py_bit_for_bit() {
    for ty in TensorType::ALL {
        let (data, expected) = fixture(ty);
        assert!(!expected.is_empty(), "{ty}: empty fixture");
        let got =
            dequantize_to_vec(ty, &data, expected.len()).unwrap_or_else(|e| panic!("{ty}: {e}"));
        let mismatches: Vec<_> = got
            .iter()
            .zip(&expected)
            .enumerate()
            .filter(|(_, (g, e))| g.to_bits() != e.to_bits() || e.is_nan())
            .collect();
        if let Some(&(i, (g, e))) = mismatches.first() {
            panic!(
                "{ty}: {} of {} elements differ; first at element {i} (block {}): got {g:e} ({:#010x}), gguf-py {e:e} ({:#010x})",
                mismatches.len(),
                expected.len(),
                i / ty.block_size(),
                g.to_bits(),
                e.to_bits(),
            );
        }
    }
}

#[test]
fn partial_block_is_an_error() {
    for ty in TensorType::ALL.into_iter().filter(|t| t.is_quantized()) {
        let n = ty.block_size() + 1;
        let data = vec![0u8; 2 * ty.type_size()];
        let err = dequantize_to_vec(ty, &data, n).unwrap_err();
        assert!(
            matches!(err, QuantError::PartialBlock { .. }),
            "{ty}: {err}"
        );
        assert!(err.to_string().contains(ty.name()), "{err}");
    }
}

#[test]
fn data_length_mismatch_is_an_error() {
    for ty in TensorType::ALL {
        let n = 4 * ty.block_size().max(8);
        let bytes = ty.row_bytes(n).unwrap();
        for wrong in [0, bytes - 1, bytes + 1, 2 * bytes] {
            let mut out = vec![0.0; n];
            let err = dequantize(ty, &vec![0u8; wrong], &mut out).unwrap_err();
            match err {
                QuantError::DataLength {
                    expected, actual, ..
                } => assert_eq!((expected, actual), (bytes, wrong), "{ty}"),
                other => panic!("{ty}: {other}"),
            }
        }
        assert!(dequantize(ty, &vec![0u8; bytes], &mut vec![0.0; n]).is_ok());
    }
}

#[test]
fn empty_tensor_is_fine() {
    for ty in TensorType::ALL {
        assert_eq!(dequantize_to_vec(ty, &[], 0).unwrap(), Vec::<f32>::new());
    }
}

#[test]
fn random_tensor_is_finite_with_the_requested_spread() {
    let mut rng = StdRng::seed_from_u64(7);
    for ty in TensorType::ALL {
        for std in [0.02f32, 1.0, 30.0] {
            let n = 64 * 256;
            let data = random_tensor(ty, n, &mut rng, std);
            assert_eq!(Some(data.len()), ty.row_bytes(n), "{ty}");
            let x = dequantize_to_vec(ty, &data, n).unwrap();
            assert!(x.iter().all(|v| v.is_finite()), "{ty}: non-finite value");
            let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
            let var = x
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n as f64;
            let ratio = var.sqrt() / f64::from(std);
            assert!(
                (0.8..1.25).contains(&ratio),
                "{ty}: asked for std {std}, got {} (mean {mean})",
                var.sqrt()
            );
            assert!(
                mean.abs() < 0.1 * f64::from(std),
                "{ty}: mean {mean} for std {std}"
            );
        }
    }
}

#[test]
fn random_tensor_varies_scales_between_blocks() {
    let mut rng = StdRng::seed_from_u64(8);
    for ty in TensorType::ALL.into_iter().filter(|t| t.is_quantized()) {
        let n = 16 * ty.block_size();
        let x = dequantize_to_vec(ty, &random_tensor(ty, n, &mut rng, 1.0), n).unwrap();
        let rms: Vec<f32> = x
            .chunks_exact(ty.block_size())
            .map(|b| (b.iter().map(|v| v * v).sum::<f32>() / b.len() as f32).sqrt())
            .collect();
        let (lo, hi) = rms
            .iter()
            .fold((f32::MAX, 0f32), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        assert!(hi > 1.2 * lo, "{ty}: block RMS all within {lo}..{hi}");
    }
}

#[test]
#[should_panic(expected = "not a whole number of 256-element Q4_K blocks")]
fn random_tensor_rejects_partial_blocks() {
    random_tensor(TensorType::Q4_K, 300, &mut StdRng::seed_from_u64(0), 1.0);
}
