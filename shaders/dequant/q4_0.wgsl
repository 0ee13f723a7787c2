// Q4_0 at its file offsets (18 bytes: d: f16, qs: 16 bytes; see lone_scale.wgsl).
// Element j is the low nibble of qs[j], element j + 16 the high nibble; value (q - 8) * d.
const BLOCK_BYTES: u32 = 18u;
const FIELD_WORDS: u32 = 4u;

fn dequant(row: u32, it: u32) -> array<vec4<f32>, 8> {
    let lb = lone_block(row, it);
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i = i + 1u) {
        out[i] = (nibbles_lo(lb.w[i]) - 8.0) * lb.d;
        out[i + 4u] = (nibbles_hi(lb.w[i]) - 8.0) * lb.d;
    }
    return out;
}
