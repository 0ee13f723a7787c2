// Quantizes pairs 32g .. 32g + 31 of cache row `row` (two Q8_0 blocks, fewer
// at the end of a row with an odd block count) as llama.cpp's
// quantize_row_q8_0: d = max |x| / 127, q = round(x / d) half away from zero.
fn PFX_store(row: u32, g: u32, row_pairs: u32, v: array<vec2<f32>, PFX_GROUP>) {
    let base = row * PFX_row_words(row_pairs);
    let n_blocks = row_pairs / 16u;
    var d = vec2<f32>(0.0);
    for (var h = 0u; h < 2u; h = h + 1u) {
        let b = 2u * g + h;
        if (b >= n_blocks) {
            break;
        }
        var amax = 0.0;
        for (var i = 0u; i < 16u; i = i + 1u) {
            let x = abs(v[16u * h + i]);
            amax = max(amax, max(x.x, x.y));
        }
        let dh = amax / 127.0;
        d[h] = dh;
        let id = select(0.0, 1.0 / dh, dh != 0.0);
        for (var i = 0u; i < 8u; i = i + 1u) {
            let a = v[16u * h + 2u * i] * id;
            let c = v[16u * h + 2u * i + 1u] * id;
            let q = vec4<i32>(round_away(vec4<f32>(a, c)));
            let u = bitcast<vec4<u32>>(q) & vec4<u32>(0xFFu);
            BUF[base + 8u * b + i] = u.x | (u.y << 8u) | (u.z << 16u) | (u.w << 24u);
        }
    }
    BUF[base + row_pairs / 2u + g] = pack2x16float(d);
}
