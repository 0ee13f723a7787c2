// Structure of arrays (Q4_0, Q5_0, Q8_0; measured against the file-offset
// layout, see docs/benchmarks.md): the buffer holds the P.rows * P.items
// blocks of its rows as the quants of every block (16 or 32 bytes each, so
// one or two aligned vec4 loads), then Q5_0's high bits, then the f16 scales,
// two to a word. Block (row, it) is block row * P.items + it.
@group(0) @binding(0) var<storage, read> W: array<vec4<u32>>;

fn soa_block(row: u32, it: u32) -> u32 {
    return row * P.items + it;
}

fn soa_blocks() -> u32 {
    return P.rows * P.items;
}

// Word `w` of the buffer.
fn soa_word(w: u32) -> u32 {
    return W[w / 4u][w % 4u];
}

// The f16 scale of block g in the scales region starting at word `first`.
fn soa_scale(first: u32, g: u32) -> f32 {
    let v = unpack2x16float(soa_word(first + g / 2u));
    return select(v.x, v.y, (g & 1u) != 0u);
}
