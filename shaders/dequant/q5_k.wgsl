// Q5_K (176 bytes): d: f16, dmin: f16, scales: 12 bytes (as Q4_K), qh: 32
// bytes, qs: 128 bytes. Item s (0..7): the nibble as Q4_K plus bit s of qh[l]
// as bit 4; value d * sc[s] * q - dmin * m[s].
const BLOCK_WORDS: u32 = 44u;
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
        let lo = (bytes4(W[b + 12u + 8u * (item / 2u) + i]) >> vec4<u32>(shift)) & vec4<u32>(0xFu);
        let hi = (bytes4(W[b + 4u + i]) >> vec4<u32>(item)) & vec4<u32>(1u);
        out[i] = d1 * vec4<f32>(lo + 16u * hi) - m1;
    }
    return out;
}
