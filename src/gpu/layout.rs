//! The GPU weight layout: GGUF rows repacked into 4-byte words at load.
//!
//! WGSL storage has no 8- or 16-bit types, so kernels read `array<u32>` and
//! every field a kernel reads must start on a word boundary. Most ggml blocks
//! already satisfy this; Q4_0, Q5_0 and Q8_0 begin with a lone f16 scale, so
//! two zero bytes are inserted after it (Q4_0: 18 -> 20 bytes, +11%). Q3_K
//! and Q6_K are padded at the end (110 -> 112, 210 -> 212). Float rows are
//! zero-padded to a multiple of 32 elements so that every type is read in
//! 32-element items by one matvec skeleton.

use crate::quant::TensorType;

/// Elements per matvec work item: every `dequant_item` yields 32 values.
pub const ITEM: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuLayout {
    /// Elements per GPU block (32 for float types, the ggml block otherwise).
    pub block_elems: usize,
    /// u32 words per GPU block.
    pub block_words: usize,
    /// Bytes inserted after the leading f16 scale (2 for Q4_0/Q5_0/Q8_0).
    pub pad_after_scale: usize,
}

impl GpuLayout {
    pub fn of(ty: TensorType) -> GpuLayout {
        let (block_elems, block_bytes, pad_after_scale) = match ty {
            TensorType::F32 => (32, 128, 0),
            TensorType::F16 | TensorType::BF16 => (32, 64, 0),
            TensorType::Q4_0 | TensorType::Q5_0 | TensorType::Q8_0 => {
                (ty.block_size(), ty.type_size() + 2, 2)
            }
            _ => (ty.block_size(), ty.type_size().div_ceil(4) * 4, 0),
        };
        GpuLayout {
            block_elems,
            block_words: block_bytes / 4,
            pad_after_scale,
        }
    }

    pub fn blocks_per_row(&self, cols: usize) -> usize {
        cols.div_ceil(self.block_elems)
    }

    pub fn row_words(&self, cols: usize) -> usize {
        self.blocks_per_row(cols) * self.block_words
    }

    /// 32-element items per row (the last may be zero padding for float types).
    pub fn items_per_row(&self, cols: usize) -> usize {
        self.blocks_per_row(cols) * self.block_elems / ITEM
    }
}

/// Where a quantized GPU block keeps its f16 scale(s): `(word, halves)`, bit 0
/// of `halves` for the low half-word, bit 1 for the high one; `None` for
/// float types. Only the random fill of synthetic models needs this (real
/// weights are copied, scales and all).
pub fn scale_field(ty: TensorType) -> Option<(usize, u32)> {
    match ty {
        TensorType::F32 | TensorType::F16 | TensorType::BF16 => None,
        // d, then the inserted padding.
        TensorType::Q4_0 | TensorType::Q5_0 | TensorType::Q8_0 => Some((0, 1)),
        // d and m (dmin) first.
        TensorType::Q4_1 | TensorType::Q5_1 | TensorType::Q4_K | TensorType::Q5_K => Some((0, 3)),
        // scales[16], qs[64], then d and dmin at byte 80.
        TensorType::Q2_K => Some((20, 3)),
        // hmask[32], qs[64], scales[12], then d at byte 108.
        TensorType::Q3_K => Some((27, 1)),
        // ql[128], qh[64], scales[16], then d at byte 208.
        TensorType::Q6_K => Some((52, 1)),
    }
}

/// Repacks `rows` GGUF rows of `cols` elements into the GPU layout.
pub fn repack(ty: TensorType, data: &[u8], rows: usize, cols: usize) -> Vec<u32> {
    let lay = GpuLayout::of(ty);
    let src_row = ty.row_bytes(cols).expect("row length checked at load");
    assert_eq!(data.len(), src_row * rows, "tensor data length");
    let dst_row = lay.row_words(cols) * 4;
    let mut words = vec![0u32; dst_row / 4 * rows];
    let out: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
    for (src, dst) in data
        .chunks_exact(src_row)
        .zip(out.chunks_exact_mut(dst_row))
    {
        if !ty.is_quantized() {
            dst[..src.len()].copy_from_slice(src);
            continue;
        }
        let tsize = ty.type_size();
        let dsize = lay.block_words * 4;
        for (sb, db) in src.chunks_exact(tsize).zip(dst.chunks_exact_mut(dsize)) {
            if lay.pad_after_scale > 0 {
                db[..2].copy_from_slice(&sb[..2]);
                db[2 + lay.pad_after_scale..2 + lay.pad_after_scale + tsize - 2]
                    .copy_from_slice(&sb[2..]);
            } else {
                db[..tsize].copy_from_slice(sb);
            }
        }
    }
    words
}
