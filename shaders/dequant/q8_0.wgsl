// Q8_0 at its file offsets (34 bytes: d: f16, qs: 32 signed bytes; see
// lone_scale.wgsl); value q * d.
const BLOCK_BYTES: u32 = 34u;
const FIELD_WORDS: u32 = 8u;

fn dequant(row: u32, it: u32) -> array<vec4<f32>, 8> {
    let lb = lone_block(row, it);
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i = i + 1u) {
        out[i] = i8x4(lb.w[i]) * lb.d;
    }
    return out;
}
