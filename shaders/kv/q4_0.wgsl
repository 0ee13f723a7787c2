// KV cache rows in llama.cpp's Q4_0 format: blocks of 32 values, each an f16
// scale d and 16 bytes whose low nibbles are values 0..15 and high nibbles
// values 16..31, value = d * (nibble - 8). A row keeps its quants first
// (row_pairs / 4 words) and then its scales (two f16 a word): 18 bytes per
// 32 values, as in llama.cpp, plus 2 bytes when its block count is odd.
// Instantiated per buffer: PFX, BUF.

const PFX_GROUP: u32 = 32u; // pairs one store call writes: two blocks, one scale word

// Words of a row's quants; its scale words follow them.
fn PFX_quant_words(row_pairs: u32) -> u32 {
    return row_pairs / 4u;
}

fn PFX_row_words(row_pairs: u32) -> u32 {
    return PFX_quant_words(row_pairs) + (row_pairs + 31u) / 32u;
}

fn PFX_pair(row: u32, p: u32, row_pairs: u32) -> vec2<f32> {
    let base = row * PFX_row_words(row_pairs);
    let b = p / 16u;
    let l = (2u * p) % 32u;      // first value's index in its block (even)
    let j = l % 16u;             // its byte
    let w = BUF[base + 4u * b + j / 4u] >> (8u * (j % 4u) + select(0u, 4u, l >= 16u));
    let q = vec2<f32>(f32(w & 0xFu), f32((w >> 8u) & 0xFu)) - 8.0;
    let d = unpack2x16float(BUF[base + PFX_quant_words(row_pairs) + b / 2u])[b % 2u];
    return q * d;
}

fn PFX_word(row: u32, p: u32, row_pairs: u32) -> u32 {
    return pack2x16float(PFX_pair(row, p, row_pairs));
}
