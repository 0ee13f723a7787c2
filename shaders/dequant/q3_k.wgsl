// Q3_K (110 bytes, padded to 112): hmask: 32 bytes, qs: 64 bytes of 2-bit
// values, scales: 12 bytes packing sixteen 6-bit scales, d: f16.
// Half n, item j (0..3): low bits are bits 2j..2j+1 of qs[32n ..], the high bit
// is bit (4n + j) of hmask; value d * (sc - 32) * (q - (high ? 0 : 4)).
const BLOCK_WORDS: u32 = 28u;
const ITEMS_PER_BLOCK: u32 = 8u;

fn scale_byte(b: u32, i: u32) -> u32 {
    return byte_at(W[b + 24u + i / 4u], i % 4u);
}

// The 6-bit scale k (0..15), unpacked as ggml's dequantize_row_q3_K does.
fn q3k_scale(b: u32, k: u32) -> f32 {
    let lo = select(scale_byte(b, k - 8u) >> 4u, scale_byte(b, k) & 0xFu, k < 8u);
    let hi = (scale_byte(b, 8u + k % 4u) >> (2u * (k / 4u))) & 3u;
    return f32(i32(lo | (hi << 4u)) - 32);
}

fn dequant_item(b: u32, item: u32) -> array<vec4<f32>, 8> {
    let d = unpack2x16float(W[b + 27u]).x;
    let n = item / 4u;
    let j = item % 4u;
    let dl0 = d * q3k_scale(b, 8u * n + 2u * j);
    let dl1 = d * q3k_scale(b, 8u * n + 2u * j + 1u);
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i = i + 1u) {
        let q = (bytes4(W[b + 8u + 8u * n + i]) >> vec4<u32>(2u * j)) & vec4<u32>(3u);
        let h = (bytes4(W[b + i]) >> vec4<u32>(4u * n + j)) & vec4<u32>(1u);
        let v = vec4<f32>(vec4<i32>(q) - select(vec4<i32>(4), vec4<i32>(0), h == vec4<u32>(1u)));
        out[i] = select(dl1, dl0, i < 4u) * v;
    }
    return out;
}
