// Q5_0 as structure of arrays (soa.wgsl): qs as one vec4 per block, then
// every block's qh word, then the scales. Bits and value as in q5_0.wgsl.
fn high_bits(qh: u32, first: u32) -> vec4<f32> {
    return vec4<f32>(((vec4<u32>(qh) >> (vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u))) & vec4<u32>(1u)) * 16u);
}

fn dequant(row: u32, it: u32) -> array<vec4<f32>, 8> {
    let g = soa_block(row, it);
    let n = soa_blocks();
    let d = soa_scale(n * 5u, g);
    let qh = soa_word(n * 4u + g);
    let q = W[g];
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i = i + 1u) {
        out[i] = (nibbles_lo(q[i]) + high_bits(qh, 4u * i) - 16.0) * d;
        out[i + 4u] = (nibbles_hi(q[i]) + high_bits(qh, 16u + 4u * i) - 16.0) * d;
    }
    return out;
}
