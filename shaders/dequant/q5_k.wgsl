// Q5_K (176 bytes): d: f16, dmin: f16, scales: 12 bytes (as Q4_K), qh: 32
// bytes, qs: 128 bytes. Item s (0..7): the nibble as Q4_K plus bit s of qh[l]
// as bit 4; value d * sc[s] * q - dmin * m[s].
const BLOCK_WORDS: u32 = 44u;
const ITEMS_PER_BLOCK: u32 = 8u;

fn kscale_byte(b: u32, i: u32) -> u32 {
    return byte_at(W[b + 1u + i / 4u], i % 4u);
}

// ggml's get_scale_min_k4: (scale, min) of sub-block s.
fn scale_min_k4(b: u32, s: u32) -> vec2<f32> {
    if (s < 4u) {
        return vec2<f32>(f32(kscale_byte(b, s) & 63u), f32(kscale_byte(b, s + 4u) & 63u));
    }
    let sc = (kscale_byte(b, s + 4u) & 0xFu) | ((kscale_byte(b, s - 4u) >> 6u) << 4u);
    let m = (kscale_byte(b, s + 4u) >> 4u) | ((kscale_byte(b, s) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

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
