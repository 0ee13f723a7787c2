// Blocks of an f16 scale followed by FIELD_WORDS words of fields (Q4_0,
// Q5_0, Q8_0), read at the file's byte offsets: blocks of BLOCK_BYTES (18,
// 22, 34) lie back to back, rows too, so block (row, it) starts at the even
// byte (row * P.items + it) * BLOCK_BYTES (one 32-element block per item).
// Either it starts on a word (scale in the low half of that word, every
// field word straddles two words: two loads' worth and a funnel shift) or
// two bytes past one (scale in the high half, fields word-aligned); the
// FIELD_WORDS + 1 words loaded are the same either way, and the bytes a row
// reads are exactly its bytes in the file.
@group(0) @binding(0) var<storage, read> W: array<u32>;

struct LoneBlock {
    d: f32,
    w: array<u32, FIELD_WORDS>,
}

fn lone_block(row: u32, it: u32) -> LoneBlock {
    let o = (row * P.items + it) * BLOCK_BYTES;
    let b = o >> 2u;
    let mid = (o & 2u) != 0u;
    var lb: LoneBlock;
    var prev = W[b];
    lb.d = unpack2x16float(select(prev, prev >> 16u, mid)).x;
    for (var k = 0u; k < FIELD_WORDS; k = k + 1u) {
        let next = W[b + 1u + k];
        lb.w[k] = select((prev >> 16u) | (next << 16u), next, mid);
        prev = next;
    }
    return lb;
}
