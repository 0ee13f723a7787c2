// Helpers shared by every kernel. Weights live in storage as array<u32>: WGSL
// has no 8- or 16-bit storage types, so bytes and halves are unpacked here.

// The four bytes of a word, low byte first.
fn bytes4(w: u32) -> vec4<u32> {
    return vec4<u32>(w & 0xFFu, (w >> 8u) & 0xFFu, (w >> 16u) & 0xFFu, w >> 24u);
}

// Byte i (0..3) of a word.
fn byte_at(w: u32, i: u32) -> u32 {
    return (w >> (8u * i)) & 0xFFu;
}

// Low nibbles of the four bytes of a word, as floats.
fn nibbles_lo(w: u32) -> vec4<f32> {
    return vec4<f32>(bytes4(w) & vec4<u32>(0xFu));
}

// High nibbles of the four bytes of a word, as floats.
fn nibbles_hi(w: u32) -> vec4<f32> {
    return vec4<f32>(bytes4(w) >> vec4<u32>(4u));
}

// The four bytes of a word as signed 8-bit integers, as floats.
fn i8x4(w: u32) -> vec4<f32> {
    let v = vec4<i32>(bitcast<i32>(w << 24u), bitcast<i32>(w << 16u), bitcast<i32>(w << 8u), bitcast<i32>(w));
    return vec4<f32>(v >> vec4<u32>(24u));
}

// A very negative finite value: WGSL has no infinity literal, and exp() of
// (this - any real score) is exactly 0.
const NEG_BIG: f32 = -3.0e38;

// Rounds half away from zero, as C's roundf (WGSL's round() goes to even).
fn round_away(x: vec4<f32>) -> vec4<f32> {
    return sign(x) * floor(abs(x) + 0.5);
}
