// One Q4_0 block as llama.cpp's quantize_row_q4_0: the value of largest
// magnitude, max, gives d = max / -8, q = min(15, trunc(x / d + 8.5));
// byte j holds values j (low nibble) and j + 16 (high nibble). Driven by
// quant_store.wgsl.
fn PFX_store_block(base: u32, b: u32, v: array<vec2<f32>, PFX_GROUP>, first: u32) -> f32 {
    var amax = 0.0;
    var mx = 0.0;
    for (var i = 0u; i < 16u; i = i + 1u) {
        let x = v[first + i];
        if (abs(x.x) > amax) {
            amax = abs(x.x);
            mx = x.x;
        }
        if (abs(x.y) > amax) {
            amax = abs(x.y);
            mx = x.y;
        }
    }
    let d = mx / -8.0;
    let id = select(0.0, 1.0 / d, d != 0.0);
    for (var i = 0u; i < 4u; i = i + 1u) {
        var word = 0u;
        for (var k = 0u; k < 4u; k = k + 1u) {
            let j = 4u * i + k;
            let lo = v[first + j / 2u][j % 2u];
            let hi = v[first + 8u + j / 2u][j % 2u];
            let qlo = min(15u, u32(lo * id + 8.5));
            let qhi = min(15u, u32(hi * id + 8.5));
            word = word | ((qlo | (qhi << 4u)) << (8u * k));
        }
        BUF[base + 4u * b + i] = word;
    }
    return d;
}
