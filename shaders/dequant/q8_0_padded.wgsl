// Q8_0, GPU layout (36 bytes): d: f16, 2 bytes padding, qs: 32 signed bytes; value q * d.
const BLOCK_WORDS: u32 = 9u;
const ITEMS_PER_BLOCK: u32 = 1u;

fn dequant_item(b: u32, item: u32) -> array<vec4<f32>, 8> {
    let d = unpack2x16float(W[b]).x;
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i = i + 1u) {
        out[i] = i8x4(W[b + 1u + i]) * d;
    }
    return out;
}
