// Q5_0 at its file offsets (22 bytes: d: f16, qh: 4 bytes, qs: 16 bytes; see
// lone_scale.wgsl). Element e takes its low four bits from a nibble of qs (as
// Q4_0) and bit 4 from bit e of qh; value (q - 16) * d.
const BLOCK_BYTES: u32 = 22u;
const FIELD_WORDS: u32 = 5u;

fn high_bits(qh: u32, first: u32) -> vec4<f32> {
    return vec4<f32>(((vec4<u32>(qh) >> (vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u))) & vec4<u32>(1u)) * 16u);
}

fn dequant(row: u32, it: u32) -> array<vec4<f32>, 8> {
    let lb = lone_block(row, it);
    let qh = lb.w[0];
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i = i + 1u) {
        let q = lb.w[1u + i];
        out[i] = (nibbles_lo(q) + high_bits(qh, 4u * i) - 16.0) * lb.d;
        out[i + 4u] = (nibbles_hi(q) + high_bits(qh, 16u + 4u * i) - 16.0) * lb.d;
    }
    return out;
}
