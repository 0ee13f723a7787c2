// Stores pairs 32g .. 32g + 31 of cache row `row` in a quantized type: two
// blocks (fewer at the end of a row with an odd block count), whose scales
// share one word, so no two invocations write the same word. Each type's
// `PFX_store_block` quantizes one block of 16 pairs from `v[first..]` as
// llama.cpp's reference quantizer and returns its scale.
fn PFX_store(row: u32, g: u32, row_pairs: u32, v: array<vec2<f32>, PFX_GROUP>) {
    let base = row * PFX_row_words(row_pairs);
    let n_blocks = row_pairs / 16u;
    var d = vec2<f32>(0.0);
    for (var h = 0u; h < 2u; h = h + 1u) {
        let b = 2u * g + h;
        if (b >= n_blocks) {
            break;
        }
        d[h] = PFX_store_block(base, b, v, 16u * h);
    }
    BUF[base + PFX_quant_words(row_pairs) + g] = pack2x16float(d);
}
