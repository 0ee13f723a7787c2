// Q6_K (210 bytes, padded to 212): ql: 128 bytes (low 4 bits), qh: 64 bytes
// (high 2 bits), scales: 16 signed bytes (one per 16 elements), d: f16.
// Half n, item k (0..3): low bits from ql[64n + 32 (k % 2) ..] (low nibble for
// k < 2, high for k >= 2), high bits 2k..2k+1 of qh[32n ..];
// value d * sc * (q - 32).
const BLOCK_WORDS: u32 = 53u;
const ITEMS_PER_BLOCK: u32 = 8u;

fn q6k_scale(b: u32, i: u32) -> f32 {
    let w = W[b + 48u + i / 4u];
    return f32(bitcast<i32>(w << (24u - 8u * (i % 4u))) >> 24u);
}

fn dequant_item(b: u32, item: u32) -> array<vec4<f32>, 8> {
    let d = unpack2x16float(W[b + 52u]).x;
    let n = item / 4u;
    let k = item % 4u;
    let s = 8u * n + 2u * k;
    let dl0 = d * q6k_scale(b, s);
    let dl1 = d * q6k_scale(b, s + 1u);
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i = i + 1u) {
        let lo = (bytes4(W[b + 16u * n + 8u * (k % 2u) + i]) >> vec4<u32>(4u * (k / 2u))) & vec4<u32>(0xFu);
        let hi = (bytes4(W[b + 32u + 8u * n + i]) >> vec4<u32>(2u * k)) & vec4<u32>(3u);
        let q = vec4<f32>(vec4<i32>(lo | (hi << vec4<u32>(4u))) - vec4<i32>(32));
        out[i] = select(dl1, dl0, i < 4u) * q;
    }
    return out;
}
