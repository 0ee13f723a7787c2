//! The original 32-element block formats (`block_q4_0` .. `block_q8_0` in ggml-common.h).
//!
//! Each function dequantizes one block into `out[..32]` exactly as llama.cpp's
//! `dequantize_row_*` in ggml-quants.c: the quant is widened to an integer, then
//! to f32, then multiplied by the f16 scale widened to f32 (and, for the `_1`
//! formats, the min added in a separate f32 add). Rust never fuses `a * b + c`
//! into an FMA, which is what gives bit-identical results with the reference.

use super::float::read_f16;

/// Q4_0: `x = d * (q - 8)`, 4-bit `q`. 18 bytes per 32 elements.
///
/// | bytes  | field | meaning |
/// |--------|-------|---------|
/// | 0..2   | `d`   | f16 scale |
/// | 2..18  | `qs`  | byte `j` holds element `j` in its low nibble and element `j + 16` in its high nibble |
pub(super) fn dequantize_q4_0(block: &[u8], out: &mut [f32]) {
    let d = read_f16(block, 0);
    let qs = &block[2..18];
    for j in 0..16 {
        let x0 = i32::from(qs[j] & 0x0F) - 8;
        let x1 = i32::from(qs[j] >> 4) - 8;
        out[j] = x0 as f32 * d;
        out[j + 16] = x1 as f32 * d;
    }
}

/// Q4_1: `x = d * q + m`, 4-bit `q`. 20 bytes per 32 elements.
///
/// | bytes  | field | meaning |
/// |--------|-------|---------|
/// | 0..2   | `d`   | f16 scale |
/// | 2..4   | `m`   | f16 min (added, usually the block minimum) |
/// | 4..20  | `qs`  | byte `j` holds element `j` in its low nibble and element `j + 16` in its high nibble |
pub(super) fn dequantize_q4_1(block: &[u8], out: &mut [f32]) {
    let d = read_f16(block, 0);
    let m = read_f16(block, 2);
    let qs = &block[4..20];
    for j in 0..16 {
        let x0 = qs[j] & 0x0F;
        let x1 = qs[j] >> 4;
        out[j] = f32::from(x0) * d + m;
        out[j + 16] = f32::from(x1) * d + m;
    }
}

/// Q5_0: `x = d * (q - 16)`, 5-bit `q`. 22 bytes per 32 elements.
///
/// | bytes  | field | meaning |
/// |--------|-------|---------|
/// | 0..2   | `d`   | f16 scale |
/// | 2..6   | `qh`  | little-endian u32: bit `j` is the fifth (high) bit of element `j` |
/// | 6..22  | `qs`  | low four bits: byte `j` holds element `j` (low nibble) and `j + 16` (high nibble) |
pub(super) fn dequantize_q5_0(block: &[u8], out: &mut [f32]) {
    let d = read_f16(block, 0);
    let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
    let qs = &block[6..22];
    for j in 0..16 {
        let xh0 = ((qh >> j) & 1) << 4;
        let xh1 = ((qh >> (j + 16)) & 1) << 4;
        let x0 = (u32::from(qs[j] & 0x0F) | xh0) as i32 - 16;
        let x1 = (u32::from(qs[j] >> 4) | xh1) as i32 - 16;
        out[j] = x0 as f32 * d;
        out[j + 16] = x1 as f32 * d;
    }
}

/// Q5_1: `x = d * q + m`, 5-bit `q`. 24 bytes per 32 elements.
///
/// | bytes  | field | meaning |
/// |--------|-------|---------|
/// | 0..2   | `d`   | f16 scale |
/// | 2..4   | `m`   | f16 min (added) |
/// | 4..8   | `qh`  | little-endian u32: bit `j` is the fifth (high) bit of element `j` |
/// | 8..24  | `qs`  | low four bits: byte `j` holds element `j` (low nibble) and `j + 16` (high nibble) |
pub(super) fn dequantize_q5_1(block: &[u8], out: &mut [f32]) {
    let d = read_f16(block, 0);
    let m = read_f16(block, 2);
    let qh = u32::from_le_bytes([block[4], block[5], block[6], block[7]]);
    let qs = &block[8..24];
    for j in 0..16 {
        let xh0 = ((qh >> j) & 1) << 4;
        let xh1 = ((qh >> (j + 16)) & 1) << 4;
        let x0 = u32::from(qs[j] & 0x0F) | xh0;
        let x1 = u32::from(qs[j] >> 4) | xh1;
        out[j] = x0 as f32 * d + m;
        out[j + 16] = x1 as f32 * d + m;
    }
}

/// Q8_0: `x = d * q`, signed 8-bit `q`. 34 bytes per 32 elements.
///
/// | bytes  | field | meaning |
/// |--------|-------|---------|
/// | 0..2   | `d`   | f16 scale |
/// | 2..34  | `qs`  | `i8` quant of element `j` at byte `2 + j` |
pub(super) fn dequantize_q8_0(block: &[u8], out: &mut [f32]) {
    let d = read_f16(block, 0);
    for (y, &q) in out.iter_mut().zip(&block[2..34]) {
        *y = f32::from(q as i8) * d;
    }
}
