//! The K-quant formats: 256-element super-blocks split into 16- or 32-element
//! sub-blocks, each with its own small integer scale (and min) that multiplies
//! one f16 super-block scale (`block_q2_K` .. `block_q6_K` in ggml-common.h).
//!
//! Each function dequantizes one super-block into `out[..256]` following
//! llama.cpp's `dequantize_row_*` in ggml-quants.c loop for loop, so every
//! f32 product and difference happens in the same order: first the
//! sub-block scale `dl = d * sc` (and min `ml = dmin * m`), then `dl * q - ml`.
//! Rust never contracts that into an FMA, which is what makes the results
//! bit-identical with the (unfused) reference.

use super::float::read_f16;

const QK_K: usize = 256;

/// Q2_K: `x = d * sc * q - dmin * m`, 2-bit `q`, 16 sub-blocks of 16. 84 bytes.
///
/// | bytes  | field    | meaning |
/// |--------|----------|---------|
/// | 0..16  | `scales` | per sub-block: low nibble 4-bit scale `sc`, high nibble 4-bit min `m` |
/// | 16..80 | `qs`     | 2-bit quants; see below |
/// | 80..82 | `d`      | f16 super-block scale for the scales |
/// | 82..84 | `dmin`   | f16 super-block scale for the mins |
///
/// Element `128 * h + 32 * s + l` (half `h` < 2, shift `s` < 4, `l` < 32) is
/// bits `2s..2s+2` of `qs[32 * h + l]`; its sub-block is `8 * h + 2 * s + l / 16`.
pub(super) fn dequantize_q2_k(block: &[u8], out: &mut [f32]) {
    let scales = &block[0..16];
    let d = read_f16(block, 80);
    let min = read_f16(block, 82);
    let mut y = out.iter_mut();
    let mut is = 0;
    for half in 0..2 {
        let q = &block[16 + 32 * half..16 + 32 * half + 32];
        for shift in [0, 2, 4, 6] {
            for sixteen in [&q[..16], &q[16..]] {
                let sc = scales[is];
                is += 1;
                let dl = d * f32::from(sc & 0xF);
                let ml = min * f32::from(sc >> 4);
                for &ql in sixteen {
                    *y.next().unwrap() = dl * f32::from((ql >> shift) & 3) - ml;
                }
            }
        }
    }
}

/// Q3_K: `x = d * (sc - 32) * (q - 4 * !hbit)`, 3-bit `q`, 16 sub-blocks of 16. 110 bytes.
///
/// | bytes    | field    | meaning |
/// |----------|----------|---------|
/// | 0..32    | `hmask`  | third bits: element `32 * k + l` uses bit `k` of `hmask[l]`; a **clear** bit subtracts 4 |
/// | 32..96   | `qs`     | low 2 bits, laid out as Q2_K's `qs` |
/// | 96..108  | `scales` | sixteen 6-bit scales (offset by 32), see [`q3_k_scales`] |
/// | 108..110 | `d`      | f16 super-block scale |
pub(super) fn dequantize_q3_k(block: &[u8], out: &mut [f32]) {
    let hmask = &block[0..32];
    let scales = q3_k_scales(block[96..108].try_into().unwrap());
    let d_all = read_f16(block, 108);
    let mut y = out.iter_mut();
    let mut is = 0;
    let mut m: u8 = 1;
    for half in 0..2 {
        let q = &block[32 + 32 * half..32 + 32 * half + 32];
        for shift in [0, 2, 4, 6] {
            for offset in [0, 16] {
                let dl = d_all * (i32::from(scales[is]) - 32) as f32;
                is += 1;
                for l in offset..offset + 16 {
                    let low = i32::from((q[l] >> shift) & 3);
                    let high = if hmask[l] & m != 0 { 0 } else { 4 };
                    *y.next().unwrap() = dl * (low - high) as f32;
                }
            }
            m <<= 1;
        }
    }
}

/// Unpacks Q3_K's sixteen 6-bit scales (still offset by 32) from 12 bytes.
///
/// Scale `i` has its low four bits in `bytes[i % 8]` (low nibble for `i < 8`,
/// high nibble otherwise) and its top two bits in `bytes[8 + i % 4]` at bit
/// `2 * (i / 4)`. llama.cpp does this with u32 masks over `aux[4]`; per scale
/// it is the same bit shuffle.
fn q3_k_scales(bytes: &[u8; 12]) -> [u8; 16] {
    std::array::from_fn(|i| {
        let low = if i < 8 {
            bytes[i] & 0xF
        } else {
            bytes[i - 8] >> 4
        };
        let high = (bytes[8 + i % 4] >> (2 * (i / 4))) & 3;
        low | (high << 4)
    })
}

/// The 6-bit scale and min of sub-block `j` (< 8) of a Q4_K/Q5_K block
/// (`get_scale_min_k4` in ggml-quants.c).
///
/// `scales[0..4]` hold the low six bits of scales 0..4, `scales[4..8]` those of
/// mins 0..4; `scales[8..12]` hold the low nibbles of scales 4..8 (low half)
/// and mins 4..8 (high half), whose top two bits sit in the spare top bits of
/// bytes 0..4 (scales) and 4..8 (mins).
pub(super) fn scale_min_k4(j: usize, scales: &[u8]) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        let sc = (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4);
        let m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
        (sc, m)
    }
}

/// Q4_K: `x = d * sc * q - dmin * m`, 4-bit `q`, 8 sub-blocks of 32. 144 bytes.
///
/// | bytes   | field    | meaning |
/// |---------|----------|---------|
/// | 0..2    | `d`      | f16 super-block scale for the scales |
/// | 2..4    | `dmin`   | f16 super-block scale for the mins |
/// | 4..16   | `scales` | eight 6-bit scales and eight 6-bit mins, see [`scale_min_k4`] |
/// | 16..144 | `qs`     | element `64 * c + l` is the low nibble of `qs[32 * c + l]`, element `64 * c + 32 + l` its high nibble |
pub(super) fn dequantize_q4_k(block: &[u8], out: &mut [f32]) {
    let d = read_f16(block, 0);
    let min = read_f16(block, 2);
    let scales = &block[4..16];
    for (chunk, y) in out[..QK_K].chunks_exact_mut(64).enumerate() {
        let q = &block[16 + 32 * chunk..16 + 32 * chunk + 32];
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
        for l in 0..32 {
            y[l] = d1 * f32::from(q[l] & 0xF) - m1;
            y[l + 32] = d2 * f32::from(q[l] >> 4) - m2;
        }
    }
}

/// Q5_K: `x = d * sc * q - dmin * m`, 5-bit `q`, 8 sub-blocks of 32. 176 bytes.
///
/// | bytes    | field    | meaning |
/// |----------|----------|---------|
/// | 0..2     | `d`      | f16 super-block scale for the scales |
/// | 2..4     | `dmin`   | f16 super-block scale for the mins |
/// | 4..16    | `scales` | as Q4_K, see [`scale_min_k4`] |
/// | 16..48   | `qh`     | fifth bits: element `32 * k + l` uses bit `k` of `qh[l]` |
/// | 48..176  | `qs`     | low four bits, laid out as Q4_K's `qs` |
pub(super) fn dequantize_q5_k(block: &[u8], out: &mut [f32]) {
    let d = read_f16(block, 0);
    let min = read_f16(block, 2);
    let scales = &block[4..16];
    let qh = &block[16..48];
    for (chunk, y) in out[..QK_K].chunks_exact_mut(64).enumerate() {
        let ql = &block[48 + 32 * chunk..48 + 32 * chunk + 32];
        let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[l] = d1 * f32::from((ql[l] & 0xF) + h1) - m1;
            y[l + 32] = d2 * f32::from((ql[l] >> 4) + h2) - m2;
        }
    }
}

/// Q6_K: `x = d * sc * (q - 32)`, 6-bit `q`, 16 sub-blocks of 16. 210 bytes.
///
/// | bytes    | field    | meaning |
/// |----------|----------|---------|
/// | 0..128   | `ql`     | low four bits, see below |
/// | 128..192 | `qh`     | high two bits, see below |
/// | 192..208 | `scales` | `i8` scale of each 16-element sub-block |
/// | 208..210 | `d`      | f16 super-block scale |
///
/// In half `h` (128 elements), for `l` < 32, elements `l`, `l + 32`, `l + 64`,
/// `l + 96` take their low bits from the low nibble of `ql[64h + l]`, the low
/// nibble of `ql[64h + l + 32]`, and the high nibbles of the same two bytes,
/// and their high bits from bits 0-1, 2-3, 4-5, 6-7 of `qh[32h + l]`.
pub(super) fn dequantize_q6_k(block: &[u8], out: &mut [f32]) {
    let d = read_f16(block, 208);
    for (half, y) in out[..QK_K].chunks_exact_mut(128).enumerate() {
        let ql = &block[64 * half..64 * half + 64];
        let qh = &block[128 + 32 * half..128 + 32 * half + 32];
        let sc = &block[192 + 8 * half..192 + 8 * half + 8];
        let sc = |i: usize| f32::from(sc[i] as i8);
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            y[l] = d * sc(is) * f32::from(q1);
            y[l + 32] = d * sc(is + 2) * f32::from(q2);
            y[l + 64] = d * sc(is + 4) * f32::from(q3);
            y[l + 96] = d * sc(is + 6) * f32::from(q4);
        }
    }
}
