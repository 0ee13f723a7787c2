// F16 rows, zero-padded to a multiple of 32 elements: two halves per word.
const BLOCK_WORDS: u32 = 16u;
const ITEMS_PER_BLOCK: u32 = 1u;

fn dequant_item(b: u32, item: u32) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i = i + 1u) {
        let o = b + 2u * i;
        out[i] = vec4<f32>(unpack2x16float(W[o]), unpack2x16float(W[o + 1u]));
    }
    return out;
}
