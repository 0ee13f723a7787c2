// One Q8_0 block as llama.cpp's quantize_row_q8_0: d = max |x| / 127,
// q = round(x / d) half away from zero (driven by quant_store.wgsl).
fn PFX_store_block(base: u32, b: u32, v: array<vec2<f32>, PFX_GROUP>, first: u32) -> f32 {
    var amax = 0.0;
    for (var i = 0u; i < 16u; i = i + 1u) {
        let x = abs(v[first + i]);
        amax = max(amax, max(x.x, x.y));
    }
    let d = amax / 127.0;
    let id = select(0.0, 1.0 / d, d != 0.0);
    for (var i = 0u; i < 8u; i = i + 1u) {
        let a = v[first + 2u * i] * id;
        let c = v[first + 2u * i + 1u] * id;
        let q = vec4<i32>(round_away(vec4<f32>(a, c)));
        let u = bitcast<vec4<u32>>(q) & vec4<u32>(0xFFu);
        BUF[base + 8u * b + i] = u.x | (u.y << 8u) | (u.z << 16u) | (u.w << 24u);
    }
    return d;
}
