// Q4_0, GPU layout (20 bytes): d: f16, 2 bytes padding, qs: 16 bytes.
// Element j is the low nibble of qs[j], element j + 16 the high nibble; value (q - 8) * d.
const BLOCK_WORDS: u32 = 5u;
const ITEMS_PER_BLOCK: u32 = 1u;

fn dequant_item(b: u32, item: u32) -> array<vec4<f32>, 8> {
    let d = unpack2x16float(W[b]).x;
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i = i + 1u) {
        let q = W[b + 1u + i];
        out[i] = (nibbles_lo(q) - 8.0) * d;
        out[i + 4u] = (nibbles_hi(q) - 8.0) * d;
    }
    return out;
}
