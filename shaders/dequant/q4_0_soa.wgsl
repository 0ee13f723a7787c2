// Q4_0 as structure of arrays (soa.wgsl): qs as one vec4 per block, scales
// after all of them. Nibbles and value as in q4_0.wgsl.
fn dequant(row: u32, it: u32) -> array<vec4<f32>, 8> {
    let g = soa_block(row, it);
    let d = soa_scale(soa_blocks() * 4u, g);
    let q = W[g];
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i = i + 1u) {
        out[i] = (nibbles_lo(q[i]) - 8.0) * d;
        out[i + 4u] = (nibbles_hi(q[i]) - 8.0) * d;
    }
    return out;
}
