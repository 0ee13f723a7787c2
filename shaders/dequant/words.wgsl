// Word-aligned blocks (every type but Q4_0/Q5_0/Q8_0 at their file offsets):
// row `row` of the buffer starts at word row * P.row_words, its blocks follow
// BLOCK_WORDS apart, and dequant_item decodes item `item` of the block at word b.
@group(0) @binding(0) var<storage, read> W: array<u32>;

// Item `it` (32 elements) of row `row` of this buffer.
fn dequant(row: u32, it: u32) -> array<vec4<f32>, 8> {
    return dequant_item(row * P.row_words + (it / ITEMS_PER_BLOCK) * BLOCK_WORDS, it % ITEMS_PER_BLOCK);
}
