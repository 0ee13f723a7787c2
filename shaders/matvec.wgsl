// y = W x for a quantized (or float) matrix W: the one matrix-vector skeleton.
//
// Assembled at pipeline creation from: a header (WG, GROUP), common.wgsl, a
// reduction (reduce_subgroup.wgsl or reduce_shared.wgsl), one dequant/<type>.wgsl
// (BLOCK_WORDS, ITEMS_PER_BLOCK, dequant_item) and this file.
//
// Each workgroup computes WG / GROUP rows; the GROUP invocations of a row stride
// over its 32-element items, so neighbouring invocations read neighbouring
// blocks (coalesced), accumulate in f32, and reduce at the end.

struct Params {
    rows: u32,        // rows in this chunk of W
    row_words: u32,   // u32 words per row in the GPU layout
    items: u32,       // 32-element items per row
    accumulate: u32,  // 1: y += W x (fuses the residual add), 0: y = W x
    y_offset: u32,    // where this chunk's first row goes in y
    x_offset: u32,    // in vec4 units
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;

const ROWS_PER_WG: u32 = WG / GROUP;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let lane = lid % GROUP;
    // Large matrices are dispatched as a 2D grid (at most 65535 per dimension).
    let row = (wg.y * nwg.x + wg.x) * ROWS_PER_WG + lid / GROUP;
    var acc = 0.0;
    if (row < P.rows) {
        let base = row * P.row_words;
        for (var it = lane; it < P.items; it = it + GROUP) {
            let w = dequant_item(base + (it / ITEMS_PER_BLOCK) * BLOCK_WORDS, it % ITEMS_PER_BLOCK);
            let xo = P.x_offset + it * 8u;
            for (var i = 0u; i < 8u; i = i + 1u) {
                acc = acc + dot(w[i], X[xo + i]);
            }
        }
    }
    let total = group_sum(acc, lid);
    if (lane == 0u && row < P.rows) {
        let y = P.y_offset + row;
        if (P.accumulate != 0u) {
            Y[y] = Y[y] + total;
        } else {
            Y[y] = total;
        }
    }
}
