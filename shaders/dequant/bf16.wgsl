// BF16 rows, zero-padded to a multiple of 32 elements: a bf16 is the high half
// of an f32, so widening is a shift.
const BLOCK_WORDS: u32 = 16u;
const ITEMS_PER_BLOCK: u32 = 1u;

fn bf16_pair(w: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xFFFF0000u));
}

fn dequant_item(b: u32, item: u32) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i = i + 1u) {
        let o = b + 2u * i;
        out[i] = vec4<f32>(bf16_pair(W[o]), bf16_pair(W[o + 1u]));
    }
    return out;
}
