//! Random tensors of any supported type, for synthetic models and GPU kernel tests.

use half::{bf16, f16};
use rand::Rng;

use super::{dequantize, TensorType};

/// The bytes of a random `n_elements`-element tensor of type `ty` whose
/// dequantized values have a standard deviation of roughly `std` and are
/// always finite.
///
/// Float types get normally distributed values. Quantized types get random
/// quant bits and random sub-block scales and mins (all 6-bit/4-bit/8-bit
/// fields), then per-block f16 scales chosen for the requested spread; each
/// block's scale is jittered and its sign is random, so that a kernel that
/// reads the wrong block's scale fails its test. The f16 scales bound the
/// range: below a `std` of about 0.01 some formats' scales (Q6_K's, whose 8-bit
/// sub-block scales are large) become coarse f16 subnormals, and far above
/// 1000 they saturate at 65504.
///
/// # Panics
/// If `n_elements` is not a whole number of blocks, or `std` is negative or not finite.
pub fn random_tensor(ty: TensorType, n_elements: usize, rng: &mut impl Rng, std: f32) -> Vec<u8> {
    let block_size = ty.block_size();
    assert!(
        n_elements % block_size == 0,
        "random_tensor: {n_elements} elements is not a whole number of {block_size}-element {ty} blocks"
    );
    assert!(
        std.is_finite() && std >= 0.0,
        "random_tensor: std must be finite and non-negative, got {std}"
    );
    match ty {
        TensorType::F32 => (0..n_elements)
            .flat_map(|_| (standard_normal(rng) * std).to_le_bytes())
            .collect(),
        TensorType::F16 => (0..n_elements)
            .flat_map(|_| saturating_f16(standard_normal(rng) * std).to_le_bytes())
            .collect(),
        TensorType::BF16 => (0..n_elements)
            .flat_map(|_| {
                let x = (standard_normal(rng) * std).clamp(bf16::MIN.to_f32(), bf16::MAX.to_f32());
                bf16::from_f32(x).to_le_bytes()
            })
            .collect(),
        _ => {
            let mut data = vec![0u8; n_elements / block_size * ty.type_size()];
            for block in data.chunks_exact_mut(ty.type_size()) {
                random_block(ty, block, rng, std);
            }
            data
        }
    }
}

/// Byte offsets of a quantized block's f16 super-block fields: the scale `d`,
/// and the min (`m` or `dmin`) for the formats that have one. The layouts are
/// documented on each format's dequantization function.
fn f16_fields(ty: TensorType) -> (usize, Option<usize>) {
    match ty {
        TensorType::Q4_0 | TensorType::Q5_0 | TensorType::Q8_0 => (0, None),
        TensorType::Q4_1 | TensorType::Q5_1 | TensorType::Q4_K | TensorType::Q5_K => (0, Some(2)),
        TensorType::Q2_K => (80, Some(82)),
        TensorType::Q3_K => (108, None),
        TensorType::Q6_K => (208, None),
        TensorType::F32 | TensorType::F16 | TensorType::BF16 => {
            unreachable!("{ty} has no blocks")
        }
    }
}

/// Fills one block: random bits everywhere, then the f16 super-block fields.
///
/// Every format dequantizes to `d * a + min * b` elementwise, where `a` and `b`
/// depend only on the other (now random) bits. So the block is dequantized
/// once with `(d, min) = (1, 0)` and once with `(0, 1)` to measure `a` and `b`,
/// and then `d` and `min` are solved for: `min = -k * d` centres the block on
/// zero (as real weights are), and `d` gives it the target RMS.
fn random_block(ty: TensorType, block: &mut [u8], rng: &mut impl Rng, std: f32) {
    rng.fill_bytes(block);
    let (d_at, min_at) = f16_fields(ty);
    let mut dequantize_with = |d: f32, min: f32| {
        write_f16(block, d_at, d);
        if let Some(at) = min_at {
            write_f16(block, at, min);
        }
        let mut out = vec![0.0; ty.block_size()];
        dequantize(ty, block, &mut out).expect("one whole block");
        out
    };
    let a = dequantize_with(1.0, 0.0);
    let b = dequantize_with(0.0, 1.0);

    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    let k = if mean(&b) != 0.0 {
        mean(&a) / mean(&b)
    } else {
        0.0
    };
    let centred_rms = (a
        .iter()
        .zip(&b)
        .map(|(a, b)| (a - k * b).powi(2))
        .sum::<f32>()
        / a.len() as f32)
        .sqrt();

    // E[jitter²] = 1, so the tensor's overall spread is still `std`.
    let jitter = rng.random_range(0.25f32..1.75).sqrt();
    let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
    let d = if centred_rms > 0.0 {
        sign * std * jitter / centred_rms
    } else {
        0.0
    };
    write_f16(block, d_at, d);
    if let Some(at) = min_at {
        write_f16(block, at, -k * d);
    }
}

fn write_f16(block: &mut [u8], at: usize, value: f32) {
    block[at..at + 2].copy_from_slice(&saturating_f16(value).to_le_bytes());
}

/// Rounds to f16, clamping to the largest finite magnitude instead of overflowing to infinity.
fn saturating_f16(x: f32) -> f16 {
    f16::from_f32(x.clamp(f16::MIN.to_f32(), f16::MAX.to_f32()))
}

/// One sample of N(0, 1) by the Box-Muller transform (rand 0.9 has no normal
/// distribution without the extra `rand_distr` crate).
fn standard_normal(rng: &mut impl Rng) -> f32 {
    // 1 - u lies in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    /// `random_block` relies on the dequantized block being zero whenever the
    /// f16 fields are: that holds only if `f16_fields` names all of them.
    #[test]
    fn f16_fields_are_the_only_super_block_scales() {
        let mut rng = StdRng::seed_from_u64(1);
        for ty in TensorType::ALL.into_iter().filter(|t| t.is_quantized()) {
            let (d_at, min_at) = f16_fields(ty);
            for _ in 0..8 {
                let mut block = vec![0u8; ty.type_size()];
                rng.fill(&mut block[..]);
                write_f16(&mut block, d_at, 0.0);
                if let Some(at) = min_at {
                    write_f16(&mut block, at, 0.0);
                }
                let mut out = vec![1.0; ty.block_size()];
                dequantize(ty, &block, &mut out).unwrap();
                assert!(out.iter().all(|&x| x == 0.0), "{ty}: {out:?}");
            }
        }
    }
}
