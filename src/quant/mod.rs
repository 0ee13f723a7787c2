//! ggml tensor types: the type table and CPU dequantization, bit-exact with llama.cpp.
//!
//! Every format's block layout is documented on its dequantization function:
//! `float.rs` (F32, F16, BF16), `legacy.rs` (Q4_0 .. Q8_0), `kquants.rs` (Q2_K .. Q6_K).
//! `tests/quant_dequant.rs` checks all of them bit for bit against llama.cpp's
//! Python library (`gguf.quants`).

mod float;
mod kquants;
mod legacy;
mod quantize;
mod random;
mod types;

pub use quantize::{quantize, QUANTIZE_TYPES};
pub use random::random_tensor;
pub use types::{ggml_type_info, ggml_type_name, TensorType};

/// Why a buffer could not be dequantized.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    #[error("{ty}: {n_elements} elements is not a whole number of {block_size}-element blocks")]
    PartialBlock {
        ty: TensorType,
        n_elements: usize,
        block_size: usize,
    },
    #[error("{ty}: {n_elements} elements take {expected} bytes, but the data has {actual}")]
    DataLength {
        ty: TensorType,
        n_elements: usize,
        expected: usize,
        actual: usize,
    },
}

/// Dequantizes `data`, which holds `out.len()` elements of type `ty`, into `out`.
pub fn dequantize(ty: TensorType, data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    let n_elements = out.len();
    let expected = ty.row_bytes(n_elements).ok_or(QuantError::PartialBlock {
        ty,
        n_elements,
        block_size: ty.block_size(),
    })?;
    if data.len() != expected {
        return Err(QuantError::DataLength {
            ty,
            n_elements,
            expected,
            actual: data.len(),
        });
    }
    match ty {
        TensorType::F32 => float::dequantize_f32(data, out),
        TensorType::F16 => float::dequantize_f16(data, out),
        TensorType::BF16 => float::dequantize_bf16(data, out),
        TensorType::Q4_0 => for_each_block(ty, data, out, legacy::dequantize_q4_0),
        TensorType::Q4_1 => for_each_block(ty, data, out, legacy::dequantize_q4_1),
        TensorType::Q5_0 => for_each_block(ty, data, out, legacy::dequantize_q5_0),
        TensorType::Q5_1 => for_each_block(ty, data, out, legacy::dequantize_q5_1),
        TensorType::Q8_0 => for_each_block(ty, data, out, legacy::dequantize_q8_0),
        TensorType::Q2_K => for_each_block(ty, data, out, kquants::dequantize_q2_k),
        TensorType::Q3_K => for_each_block(ty, data, out, kquants::dequantize_q3_k),
        TensorType::Q4_K => for_each_block(ty, data, out, kquants::dequantize_q4_k),
        TensorType::Q5_K => for_each_block(ty, data, out, kquants::dequantize_q5_k),
        TensorType::Q6_K => for_each_block(ty, data, out, kquants::dequantize_q6_k),
    }
    Ok(())
}

/// Dequantizes `n` elements of type `ty` from `data` into a new vector.
pub fn dequantize_to_vec(ty: TensorType, data: &[u8], n: usize) -> Result<Vec<f32>, QuantError> {
    let mut out = vec![0.0; n];
    dequantize(ty, data, &mut out)?;
    Ok(out)
}

/// Runs a one-block dequantizer over whole blocks; the caller has checked the lengths.
fn for_each_block(
    ty: TensorType,
    data: &[u8],
    out: &mut [f32],
    dequantize_block: impl Fn(&[u8], &mut [f32]),
) {
    for (block, y) in data
        .chunks_exact(ty.type_size())
        .zip(out.chunks_exact_mut(ty.block_size()))
    {
        dequantize_block(block, y);
    }
}
