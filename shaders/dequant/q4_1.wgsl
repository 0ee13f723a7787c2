// Q4_1 (20 bytes, already word-aligned): d: f16, m: f16, qs: 16 bytes.
// Element j is the low nibble of qs[j], element j + 16 the high nibble; value q * d + m.
const BLOCK_WORDS: u32 = 5u;
const ITEMS_PER_BLOCK: u32 = 1u;

fn dequant_item(b: u32, item: u32) -> array<vec4<f32>, 8> {
    let dm = unpack2x16float(W[b]);
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i = i + 1u) {
        let q = W[b + 1u + i];
        out[i] = nibbles_lo(q) * dm.x + dm.y;
        out[i + 4u] = nibbles_hi(q) * dm.x + dm.y;
    }
    return out;
}
