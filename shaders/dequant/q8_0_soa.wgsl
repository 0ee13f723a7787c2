// Q8_0 as structure of arrays (soa.wgsl): qs as two vec4 per block, scales
// after all of them; value q * d.
fn dequant(row: u32, it: u32) -> array<vec4<f32>, 8> {
    let g = soa_block(row, it);
    let d = soa_scale(soa_blocks() * 8u, g);
    var out: array<vec4<f32>, 8>;
    for (var h = 0u; h < 2u; h = h + 1u) {
        let q = W[2u * g + h];
        for (var i = 0u; i < 4u; i = i + 1u) {
            out[4u * h + i] = i8x4(q[i]) * d;
        }
    }
    return out;
}
