// Q4_K (144 bytes): d: f16, dmin: f16, scales: 12 bytes packing eight 6-bit
// scales and eight 6-bit mins, qs: 128 bytes.
// Item s (0..7, 32 elements each) reads qs[32 * (s / 2) ..] low nibbles for
// even s, high nibbles for odd s; value d * sc[s] * q - dmin * m[s].
const BLOCK_WORDS: u32 = 36u;
const ITEMS_PER_BLOCK: u32 = 8u;
// kscale_byte and scale_min_k4 come from k_scale_min.wgsl.

fn dequant_item(b: u32, item: u32) -> array<vec4<f32>, 8> {
    let dm = unpack2x16float(W[b]);
    let sm = scale_min_k4(b, item);
    let d1 = dm.x * sm.x;
    let m1 = dm.y * sm.y;
    let shift = 4u * (item % 2u);
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i = i + 1u) {
        let q = vec4<f32>((bytes4(W[b + 4u + 8u * (item / 2u) + i]) >> vec4<u32>(shift)) & vec4<u32>(0xFu));
        out[i] = d1 * q - m1;
    }
    return out;
}
