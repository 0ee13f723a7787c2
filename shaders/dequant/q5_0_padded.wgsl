// Q5_0, GPU layout (24 bytes): d: f16, 2 bytes padding, qh: u32, qs: 16 bytes.
// Element e takes its low four bits from a nibble of qs (as Q4_0) and bit 4
// from bit e of qh; value (q - 16) * d.
const BLOCK_WORDS: u32 = 6u;
const ITEMS_PER_BLOCK: u32 = 1u;

fn high_bits(qh: u32, first: u32) -> vec4<f32> {
    return vec4<f32>(((vec4<u32>(qh) >> (vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u))) & vec4<u32>(1u)) * 16u);
}

fn dequant_item(b: u32, item: u32) -> array<vec4<f32>, 8> {
    let d = unpack2x16float(W[b]).x;
    let qh = W[b + 1u];
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i = i + 1u) {
        let q = W[b + 2u + i];
        out[i] = (nibbles_lo(q) + high_bits(qh, 4u * i) - 16.0) * d;
        out[i + 4u] = (nibbles_hi(q) + high_bits(qh, 16u + 4u * i) - 16.0) * d;
    }
    return out;
}
