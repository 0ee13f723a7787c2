// Q5_1 (24 bytes, already word-aligned): d: f16, m: f16, qh: u32, qs: 16 bytes.
// Bits as Q5_0; value q * d + m.
const BLOCK_WORDS: u32 = 6u;
const ITEMS_PER_BLOCK: u32 = 1u;

fn high_bits(qh: u32, first: u32) -> vec4<f32> {
    return vec4<f32>(((vec4<u32>(qh) >> (vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u))) & vec4<u32>(1u)) * 16u);
}

fn dequant_item(b: u32, item: u32) -> array<vec4<f32>, 8> {
    let dm = unpack2x16float(W[b]);
    let qh = W[b + 1u];
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i = i + 1u) {
        let q = W[b + 2u + i];
        out[i] = (nibbles_lo(q) + high_bits(qh, 4u * i)) * dm.x + dm.y;
        out[i + 4u] = (nibbles_hi(q) + high_bits(qh, 16u + 4u * i)) * dm.x + dm.y;
    }
    return out;
}
