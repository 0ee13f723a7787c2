//! The GPU weight layout: how a matrix's GGUF blocks lie in its buffers.
//!
//! WGSL storage has no 8- or 16-bit types, so kernels read `array<u32>` (or
//! `array<vec4<u32>>`). Most ggml blocks are whole words and are copied as
//! they are ([`Packing::Words`]). Q4_0, Q5_0 and Q8_0 begin with a lone f16
//! scale (18, 22, 34 bytes), which used to be padded to a word (Q4_0 18 ->
//! 20 bytes: +11% read per token). They are now stored as a
//! structure of arrays ([`Packing::Soa`]: per buffer, the quants of every
//! block as 16-byte vectors, Q5_0's high bits, then the f16 scales), so a
//! token reads exactly the file's bytes, in aligned vector loads. Two
//! layouts were measured against it and stay selectable for `cargo bench`
//! (figures in `docs/benchmarks.md`): blocks at their natural byte offsets
//! ([`Packing::Bytes`]: the file's bytes too, two word loads and a shift
//! where a field straddles a word, as llama.cpp's WebGPU backend reads
//! them) and the old padding ([`Packing::Padded`]). Q3_K and Q6_K are padded
//! at the end (110 -> 112, 210 -> 212: 1-2%). Float rows are zero-padded to
//! a multiple of 32 elements so that every type is read in 32-element items
//! by one matvec skeleton.

use crate::quant::TensorType;

/// Elements per matvec work item: every decoder yields 32 values at a time.
pub const ITEM: usize = 32;

/// How the blocks of a matrix lie in a GPU buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Packing {
    /// Whole-word blocks copied as they are (padded at the end to a word).
    Words,
    /// Q4_0/Q5_0/Q8_0: 2 zero bytes after the f16 scale, so every field is
    /// word-aligned (the layout before natural offsets).
    Padded,
    /// Q4_0/Q5_0/Q8_0: the file's bytes, blocks back to back at their
    /// natural (2-byte aligned) offsets.
    Bytes,
    /// Q4_0/Q5_0/Q8_0, per buffer: the quants of every block (16 or 32
    /// bytes each, 16-byte aligned), then Q5_0's high bits (4 bytes each),
    /// then the f16 scales (2 bytes each).
    Soa,
}

impl Packing {
    /// The packing the engine uses for `ty`.
    pub fn of(ty: TensorType) -> Packing {
        if has_lone_scale(ty) {
            Packing::Soa
        } else {
            Packing::Words
        }
    }

    /// The packings `ty` can be read in (the engine's and, for the formats
    /// with a lone f16 scale, the measured alternatives).
    pub fn choices(ty: TensorType) -> &'static [Packing] {
        if has_lone_scale(ty) {
            &[Packing::Soa, Packing::Bytes, Packing::Padded]
        } else {
            &[Packing::Words]
        }
    }
}

/// Q4_0, Q5_0 and Q8_0: a block of an f16 scale and whole words after it.
fn has_lone_scale(ty: TensorType) -> bool {
    matches!(ty, TensorType::Q4_0 | TensorType::Q5_0 | TensorType::Q8_0)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuLayout {
    pub ty: TensorType,
    pub packing: Packing,
    /// Elements per GPU block (32 for float types, the ggml block otherwise).
    pub block_elems: usize,
    /// GPU bytes per block (the file's for `Bytes` and `Soa`).
    pub block_bytes: usize,
}

impl GpuLayout {
    /// The engine's layout for `ty`.
    pub fn of(ty: TensorType) -> GpuLayout {
        GpuLayout::packed(ty, Packing::of(ty))
    }

    /// `ty` in `packing` (one of `Packing::choices(ty)`).
    pub fn packed(ty: TensorType, packing: Packing) -> GpuLayout {
        assert!(
            Packing::choices(ty).contains(&packing),
            "{ty}: no {packing:?} layout"
        );
        let (block_elems, block_bytes) = match ty {
            TensorType::F32 => (32, 128),
            TensorType::F16 | TensorType::BF16 => (32, 64),
            _ if packing == Packing::Padded => (ty.block_size(), ty.type_size() + 2),
            _ if packing == Packing::Words => (ty.block_size(), ty.type_size().div_ceil(4) * 4),
            _ => (ty.block_size(), ty.type_size()),
        };
        GpuLayout {
            ty,
            packing,
            block_elems,
            block_bytes,
        }
    }

    pub fn blocks_per_row(&self, cols: usize) -> usize {
        cols.div_ceil(self.block_elems)
    }

    /// GPU bytes per row (not a whole number of words for `Bytes`/`Soa`).
    pub fn row_bytes(&self, cols: usize) -> usize {
        self.blocks_per_row(cols) * self.block_bytes
    }

    /// Words per row, for the word-addressed packings (`Words`, `Padded`);
    /// the other kernels address blocks from the item count instead.
    pub fn row_words(&self, cols: usize) -> usize {
        self.row_bytes(cols) / 4
    }

    /// Bytes of a buffer holding `rows` rows (whole words).
    pub fn buffer_bytes(&self, rows: usize, cols: usize) -> usize {
        (rows * self.row_bytes(cols)).div_ceil(4) * 4
    }

    /// 32-element items per row (the last may be zero padding for float types).
    pub fn items_per_row(&self, cols: usize) -> usize {
        self.blocks_per_row(cols) * self.block_elems / ITEM
    }

    /// Bytes of a block before the scales region of an `Soa` buffer: 16
    /// (Q4_0), 20 (Q5_0: 16 in the quants region, 4 in the high-bits
    /// region), 32 (Q8_0).
    fn soa_body_bytes(&self) -> usize {
        self.block_bytes - 2
    }

    /// Where the random fill of synthetic models puts f16 scales: see
    /// [`ScaleField`]. Only that fill needs this (real weights are copied,
    /// scales and all).
    pub fn scale_field(&self, rows: usize, cols: usize) -> ScaleField {
        let ty = self.ty;
        match (ty, self.packing) {
            (TensorType::F32 | TensorType::F16 | TensorType::BF16, _) => ScaleField::None,
            (_, Packing::Bytes) => ScaleField::EveryBytes(self.block_bytes),
            (_, Packing::Soa) => {
                ScaleField::From(rows * self.blocks_per_row(cols) * self.soa_body_bytes() / 4)
            }
            // d, then the inserted padding.
            (_, Packing::Padded) => ScaleField::InBlock(0, 1),
            // d and m (dmin) first.
            (TensorType::Q4_1 | TensorType::Q5_1 | TensorType::Q4_K | TensorType::Q5_K, _) => {
                ScaleField::InBlock(0, 3)
            }
            // scales[16], qs[64], then d and dmin at byte 80.
            (TensorType::Q2_K, _) => ScaleField::InBlock(20, 3),
            // hmask[32], qs[64], scales[12], then d at byte 108.
            (TensorType::Q3_K, _) => ScaleField::InBlock(27, 1),
            // ql[128], qh[64], scales[16], then d at byte 208.
            (TensorType::Q6_K, _) => ScaleField::InBlock(52, 1),
            (TensorType::Q4_0 | TensorType::Q5_0 | TensorType::Q8_0, Packing::Words) => {
                unreachable!("no Words packing for {ty}")
            }
        }
    }
}

/// Where a quantized GPU buffer keeps its f16 scales.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleField {
    /// Float types: none.
    None,
    /// Word-aligned blocks: `(word in the block, halves)`, bit 0 of `halves`
    /// for the low half-word, bit 1 for the high one.
    InBlock(usize, u32),
    /// Blocks back to back: a scale at every multiple of this many bytes.
    EveryBytes(usize),
    /// Structure of arrays: every half-word from this word on.
    From(usize),
}

/// Repacks `rows` GGUF rows of `cols` elements into `lay` (one buffer's worth).
pub fn repack(lay: GpuLayout, data: &[u8], rows: usize, cols: usize) -> Vec<u32> {
    let ty = lay.ty;
    let src_row = ty.row_bytes(cols).expect("row length checked at load");
    assert_eq!(data.len(), src_row * rows, "tensor data length");
    let mut words = vec![0u32; lay.buffer_bytes(rows, cols) / 4];
    let out: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
    match lay.packing {
        Packing::Bytes => out[..data.len()].copy_from_slice(data),
        Packing::Soa => {
            let tsize = ty.type_size();
            let n_blocks = data.len() / tsize;
            let body = lay.soa_body_bytes();
            // Q5_0: qs in the first region, qh (4 bytes) in the second.
            let qbytes = if ty == TensorType::Q5_0 { 16 } else { body };
            let (bodies, scales) = out.split_at_mut(n_blocks * body);
            let (quants, high) = bodies.split_at_mut(n_blocks * qbytes);
            for (i, b) in data.chunks_exact(tsize).enumerate() {
                scales[2 * i..2 * i + 2].copy_from_slice(&b[..2]);
                quants[i * qbytes..(i + 1) * qbytes].copy_from_slice(&b[tsize - qbytes..]);
                if ty == TensorType::Q5_0 {
                    high[4 * i..4 * i + 4].copy_from_slice(&b[2..6]);
                }
            }
        }
        Packing::Words | Packing::Padded => {
            let dst_row = lay.row_bytes(cols);
            for (src, dst) in data
                .chunks_exact(src_row)
                .zip(out.chunks_exact_mut(dst_row))
            {
                if !ty.is_quantized() {
                    dst[..src.len()].copy_from_slice(src);
                    continue;
                }
                let tsize = ty.type_size();
                for (sb, db) in src
                    .chunks_exact(tsize)
                    .zip(dst.chunks_exact_mut(lay.block_bytes))
                {
                    if lay.packing == Packing::Padded {
                        db[..2].copy_from_slice(&sb[..2]);
                        db[4..4 + tsize - 2].copy_from_slice(&sb[2..]);
                    } else {
                        db[..tsize].copy_from_slice(sb);
                    }
                }
            }
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_soa_layouts_hold_exactly_the_file_bytes() {
        for ty in [TensorType::Q4_0, TensorType::Q5_0, TensorType::Q8_0] {
            let (rows, cols) = (3, 160);
            let data: Vec<u8> = (0..rows * ty.row_bytes(cols).unwrap())
                .map(|i| (i * 7 + 1) as u8)
                .collect();
            for packing in [Packing::Bytes, Packing::Soa] {
                let lay = GpuLayout::packed(ty, packing);
                let words = repack(lay, &data, rows, cols);
                assert_eq!(lay.row_bytes(cols), ty.row_bytes(cols).unwrap());
                assert_eq!(
                    words.len() * 4,
                    data.len().div_ceil(4) * 4,
                    "{ty} {packing:?}"
                );
                let bytes: &[u8] = bytemuck::cast_slice(&words);
                let mut sorted_in = data.clone();
                let mut sorted_out = bytes[..data.len()].to_vec();
                sorted_in.sort();
                sorted_out.sort();
                assert_eq!(sorted_in, sorted_out, "{ty} {packing:?}: a permutation");
            }
            let padded = GpuLayout::packed(ty, Packing::Padded);
            assert_eq!(padded.block_bytes, ty.type_size() + 2);
        }
    }

    #[test]
    fn soa_scales_follow_the_bodies() {
        let ty = TensorType::Q8_0;
        let data: Vec<u8> = (0..2 * 34).map(|i| i as u8).collect();
        let lay = GpuLayout::packed(ty, Packing::Soa);
        let words = repack(lay, &data, 2, 32);
        let bytes: &[u8] = bytemuck::cast_slice(&words);
        assert_eq!(&bytes[..32], &data[2..34]);
        assert_eq!(&bytes[32..64], &data[36..68]);
        assert_eq!(&bytes[64..68], &[0, 1, 34, 35]);
        assert_eq!(lay.scale_field(2, 32), ScaleField::From(16));
    }
}
