//! The unquantized types. Each "block" is one element, stored little-endian.
//!
//! | type | bytes | meaning |
//! |------|-------|---------|
//! | F32  | 4     | IEEE binary32 |
//! | F16  | 2     | IEEE binary16 |
//! | BF16 | 2     | the high half of a binary32 (8-bit exponent, 7-bit mantissa) |
//!
//! All three widen to f32 exactly, so there is no arithmetic order to match.

use half::f16;

pub(super) fn dequantize_f32(data: &[u8], out: &mut [f32]) {
    for (bytes, y) in data.chunks_exact(4).zip(out) {
        *y = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
}

pub(super) fn dequantize_f16(data: &[u8], out: &mut [f32]) {
    for (bytes, y) in data.chunks_exact(2).zip(out) {
        *y = f16::from_bits(u16::from_le_bytes([bytes[0], bytes[1]])).to_f32();
    }
}

pub(super) fn dequantize_bf16(data: &[u8], out: &mut [f32]) {
    for (bytes, y) in data.chunks_exact(2).zip(out) {
        // Shifting the bits (rather than half::bf16::to_f32) keeps NaN payloads
        // exactly as ggml_bf16_to_fp32 does.
        *y = f32::from_bits(u32::from(u16::from_le_bytes([bytes[0], bytes[1]])) << 16);
    }
}

/// Reads the little-endian f16 at `bytes[at..at + 2]` as f32 (GGML_FP16_TO_FP32; exact).
pub(super) fn read_f16(bytes: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([bytes[at], bytes[at + 1]])).to_f32()
}
