//! Q and K row order. Hugging Face Llama checkpoints rotate the two halves of
//! each head (`rotate_half`: dimension i pairs with i + head_dim/2); GGUF
//! llama files, and this engine's RoPE kernel, rotate adjacent pairs (2i,
//! 2i+1). llama.cpp's converter permutes the rows of Q and K so the same
//! model computes the same thing under the interleaved rotation; this is that
//! permutation (`LlamaModel.permute` in convert_hf_to_gguf.py).

/// Row `h * d + 2 * j + i` of the result is row `h * d + i * d/2 + j` of the
/// input, for each of `n_head` heads of `d = rows / n_head` rows. `row_bytes`
/// bytes per row, any element type (rows move whole).
pub fn permute_rows(data: &[u8], n_head: usize, row_bytes: usize) -> Vec<u8> {
    let rows = data.len() / row_bytes;
    let d = rows / n_head;
    let mut out = vec![0u8; data.len()];
    for h in 0..n_head {
        for i in 0..2 {
            for j in 0..d / 2 {
                let src = h * d + i * (d / 2) + j;
                let dst = h * d + 2 * j + i;
                out[dst * row_bytes..(dst + 1) * row_bytes]
                    .copy_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_the_halves_of_each_head() {
        // Two heads of four one-byte rows: [a0 a1 b0 b1] becomes [a0 b0 a1 b1].
        let rows = [0u8, 1, 2, 3, 10, 11, 12, 13];
        assert_eq!(permute_rows(&rows, 2, 1), vec![0, 2, 1, 3, 10, 12, 11, 13]);
        // One head of six: the halves [0 1 2] and [3 4 5] interleave.
        let six: Vec<u8> = (0..12).collect();
        assert_eq!(
            permute_rows(&six, 1, 2),
            vec![0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11]
        );
    }
}
