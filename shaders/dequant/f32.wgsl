// F32 rows, zero-padded to a multiple of 32 elements: a "block" is 32 floats.
const BLOCK_WORDS: u32 = 32u;
const ITEMS_PER_BLOCK: u32 = 1u;

fn dequant_item(b: u32, item: u32) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i = i + 1u) {
        let o = b + 4u * i;
        out[i] = vec4<f32>(bitcast<f32>(W[o]), bitcast<f32>(W[o + 1u]), bitcast<f32>(W[o + 2u]), bitcast<f32>(W[o + 3u]));
    }
    return out;
}
