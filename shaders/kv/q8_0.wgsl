// KV cache rows in llama.cpp's Q8_0 format: blocks of 32 values, each an f16
// scale d and 32 signed bytes q, value = d * q. A row keeps its quants first
// (row_pairs / 2 words, four values a word) and then its scales (two f16 a
// word), so a row is 34 bytes per 32 values, as in llama.cpp, plus 2 bytes
// when its block count is odd. Instantiated per buffer: PFX, BUF.

const PFX_GROUP: u32 = 32u; // pairs one store call writes: two blocks, one scale word

// Words of a row's quants; its scale words follow them.
fn PFX_quant_words(row_pairs: u32) -> u32 {
    return row_pairs / 2u;
}

fn PFX_row_words(row_pairs: u32) -> u32 {
    return PFX_quant_words(row_pairs) + (row_pairs + 31u) / 32u;
}

fn PFX_pair(row: u32, p: u32, row_pairs: u32) -> vec2<f32> {
    let base = row * PFX_row_words(row_pairs);
    let q = i8x4(BUF[base + p / 2u]);
    let b = p / 16u;
    let d = unpack2x16float(BUF[base + PFX_quant_words(row_pairs) + b / 2u])[b % 2u];
    return select(q.xy, q.zw, (p % 2u) == 1u) * d;
}

fn PFX_word(row: u32, p: u32, row_pairs: u32) -> u32 {
    return pack2x16float(PFX_pair(row, p, row_pairs));
}
