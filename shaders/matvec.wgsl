// y = W x for a quantized (or float) matrix W: the one matrix-vector skeleton.
//
// Assembled at pipeline creation from: a header (WG, GROUP, ROWS), common.wgsl,
// a reduction (reduce_subgroup.wgsl or reduce_shared.wgsl), one
// dequant/<type>.wgsl (BLOCK_WORDS, ITEMS_PER_BLOCK, dequant_item) and this file.
//
// GROUP invocations share ROWS (1..4) consecutive rows: they stride over the
// rows' 32-element items, so neighbouring invocations read neighbouring blocks
// (coalesced). Each item of x is loaded once and used for all ROWS rows, the
// partial sums of the rows travel as one vec4 through a single reduction, and a
// workgroup covers WG / GROUP * ROWS rows: fewer, fuller workgroups where
// per-workgroup cost dominates (CPU adapters), more where a GPU needs them to
// fill its cores (ROWS = 1).

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

const GROUPS_PER_WG: u32 = WG / GROUP;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let lane = lid % GROUP;
    // Large matrices are dispatched as a 2D grid (at most 65535 per dimension).
    let first = ((wg.y * nwg.x + wg.x) * GROUPS_PER_WG + lid / GROUP) * ROWS;
    // Rows past the end are clamped onto the last row: their sums are computed
    // and never written, which keeps every invocation in the same control flow.
    var acc = vec4<f32>(0.0);
    if (first < P.rows) {
        for (var it = lane; it < P.items; it = it + GROUP) {
            let xo = P.x_offset + it * 8u;
            var x: array<vec4<f32>, 8>;
            for (var i = 0u; i < 8u; i = i + 1u) {
                x[i] = X[xo + i];
            }
            let block = (it / ITEMS_PER_BLOCK) * BLOCK_WORDS;
            let item = it % ITEMS_PER_BLOCK;
            for (var r = 0u; r < ROWS; r = r + 1u) {
                let w = dequant_item(min(first + r, P.rows - 1u) * P.row_words + block, item);
                for (var i = 0u; i < 8u; i = i + 1u) {
                    acc[r] = acc[r] + dot(w[i], x[i]);
                }
            }
        }
    }
    let total = group_sum4(acc, lid);
    if (lane == 0u) {
        for (var r = 0u; r < ROWS; r = r + 1u) {
            let row = first + r;
            if (row < P.rows) {
                let y = P.y_offset + row;
                if (P.accumulate != 0u) {
                    Y[y] = Y[y] + total[r];
                } else {
                    Y[y] = total[r];
                }
            }
        }
    }
}
