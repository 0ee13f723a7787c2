// Q2_K (84 bytes): scales: 16 bytes (low nibble scale, high nibble min, one
// per 16 elements), qs: 64 bytes of 2-bit values, d: f16, dmin: f16.
// A 256-element block is two halves of 128; in half n, item j (0..3) takes
// bits 2j..2j+1 of qs[32n .. 32n+32]; value d * sc * q - dmin * m.
// An item here is 32 elements, so a block has 8.
const BLOCK_WORDS: u32 = 21u;
const ITEMS_PER_BLOCK: u32 = 8u;

fn dequant_item(b: u32, item: u32) -> array<vec4<f32>, 8> {
    let dm = unpack2x16float(W[b + 20u]);
    let n = item / 4u;
    let shift = 2u * (item % 4u);
    let s = 8u * n + 2u * (item % 4u); // scale index of the first 16 elements
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i = i + 1u) {
        let sc = byte_at(W[b + (s + i / 4u) / 4u], (s + i / 4u) % 4u);
        let q = vec4<f32>((bytes4(W[b + 4u + 8u * n + i]) >> vec4<u32>(shift)) & vec4<u32>(3u));
        out[i] = (dm.x * f32(sc & 0xFu)) * q - dm.y * f32(sc >> 4u);
    }
    return out;
}
