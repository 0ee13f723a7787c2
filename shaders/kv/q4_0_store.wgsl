// Quantizes pairs 32g .. 32g + 31 of cache row `row` (two Q4_0 blocks, fewer
// at the end of a row with an odd block count) as llama.cpp's
// quantize_row_q4_0: the value of largest magnitude, max, gives d = max / -8,
// q = min(15, trunc(x / d + 8.5)).
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
        var mx = 0.0;
        for (var i = 0u; i < 16u; i = i + 1u) {
            let x = v[16u * h + i];
            if (abs(x.x) > amax) {
                amax = abs(x.x);
                mx = x.x;
            }
            if (abs(x.y) > amax) {
                amax = abs(x.y);
                mx = x.y;
            }
        }
        let dh = mx / -8.0;
        d[h] = dh;
        let id = select(0.0, 1.0 / dh, dh != 0.0);
        // Byte j holds values j (low nibble) and j + 16 (high nibble).
        for (var i = 0u; i < 4u; i = i + 1u) {
            var word = 0u;
            for (var k = 0u; k < 4u; k = k + 1u) {
                let j = 4u * i + k;
                let lo = v[16u * h + j / 2u][j % 2u];
                let hi = v[16u * h + 8u + j / 2u][j % 2u];
                let qlo = min(15u, u32(lo * id + 8.5));
                let qhi = min(15u, u32(hi * id + 8.5));
                word = word | ((qlo | (qhi << 4u)) << (8u * k));
            }
            BUF[base + 4u * b + i] = word;
        }
    }
    BUF[base + row_pairs / 4u + g] = pack2x16float(d);
}
