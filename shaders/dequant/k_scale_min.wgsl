// Scale and min unpacking shared by Q4_K and Q5_K: twelve bytes at word 1 of
// the block pack eight 6-bit scales and eight 6-bit mins.

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
