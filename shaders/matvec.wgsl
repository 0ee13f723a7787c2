// Y = W X for a quantized (or float) matrix W and TOKENS (1..16) tokens: the
// one matrix-vector skeleton, for decode (TOKENS = 1) and for steps of a few
// tokens (several sequences decoding together, short prompt chunks).
//
// Assembled at pipeline creation from: a header (WG, GROUP, ROWS, TOKENS),
// common.wgsl, a reduction (reduce_subgroup.wgsl or reduce_shared.wgsl), one
// dequant/<type>.wgsl (BLOCK_WORDS, ITEMS_PER_BLOCK, dequant_item) and this file.
//
// GROUP invocations share ROWS (1..16) consecutive rows: they stride over the
// rows' 32-element items, so neighbouring invocations read neighbouring blocks
// (coalesced). Each decoded item of W is applied to all TOKENS tokens from
// registers (the weights are read once per step, however many tokens), and
// with ROWS > 1 each item of X is loaded once for all ROWS rows. The ROWS x
// TOKENS partial sums travel four at a time through the group reduction. A
// workgroup covers WG / GROUP * ROWS rows: fewer, fuller workgroups where
// per-workgroup cost and loads dominate (CPU adapters: many rows), more where
// a GPU needs them to fill its cores (ROWS = 1, X read from cache per row).
// A step with fewer tokens than TOKENS computes the spare columns from stale
// activations into spare rows of Y, which nothing reads.

struct Params {
    rows: u32,        // rows in this chunk of W
    row_words: u32,   // u32 words per row in the GPU layout
    items: u32,       // 32-element items per row
    accumulate: u32,  // 1: y += W x (fuses the residual add), 0: y = W x
    y_offset: u32,    // where this chunk's first row goes in y
    x_offset: u32,    // in vec4 units
    x_stride: u32,    // vec4s between tokens in X
    y_stride: u32,    // floats between tokens in Y
}

@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;

const GROUPS_PER_WG: u32 = WG / GROUP;
const NACC: u32 = (ROWS * TOKENS + 3u) / 4u;
// vec4 sums per invocation per reduction round (8 KiB of workgroup memory).
const RED: u32 = 8u;
var<workgroup> red_m: array<vec4<f32>, select(1u, WG * RED, TOKENS > 1u)>;
// X of every token for one item, kept in registers when several rows share it.
const XREG: u32 = select(1u, 8u * TOKENS, ROWS > 1u);

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let lane = lid % GROUP;
    // Large matrices are dispatched as a 2D grid (at most 65535 per dimension).
    let first = ((wg.y * nwg.x + wg.x) * GROUPS_PER_WG + lid / GROUP) * ROWS;
    // Rows past the end are clamped onto the last row: their sums are computed
    // and never written, which keeps every invocation in the same control flow.
    var acc: array<vec4<f32>, NACC>;
    if (first < P.rows) {
        for (var it = lane; it < P.items; it = it + GROUP) {
            let xo = P.x_offset + it * 8u;
            var x: array<vec4<f32>, XREG>;
            if (ROWS > 1u) {
                for (var i = 0u; i < 8u * TOKENS; i = i + 1u) {
                    x[i] = X[xo + (i / 8u) * P.x_stride + i % 8u];
                }
            }
            let block = (it / ITEMS_PER_BLOCK) * BLOCK_WORDS;
            let item = it % ITEMS_PER_BLOCK;
            for (var r = 0u; r < ROWS; r = r + 1u) {
                let w = dequant_item(min(first + r, P.rows - 1u) * P.row_words + block, item);
                for (var j = 0u; j < TOKENS; j = j + 1u) {
                    var s = 0.0;
                    for (var i = 0u; i < 8u; i = i + 1u) {
                        if (ROWS > 1u) {
                            s = s + dot(w[i], x[j * 8u + i]);
                        } else {
                            s = s + dot(w[i], X[xo + j * P.x_stride + i]);
                        }
                    }
                    let a = r * TOKENS + j;
                    acc[a / 4u][a % 4u] = acc[a / 4u][a % 4u] + s;
                }
            }
        }
    }
    if (TOKENS == 1u) {
        // Decode: one vec4 of sums, the subgroup reduction where there is one.
        let total = group_sum4(acc[0], lid);
        if (lane == 0u) {
            store(first, 0u, total);
        }
    } else {
        // Many sums per invocation: through workgroup memory in rounds of
        // RED vec4s, two barriers a round (one barrier per reduction would
        // cost CPU drivers a coroutine split each, and GPUs a sync each).
        let base = lid - lane;
        for (var c0 = 0u; c0 < NACC; c0 = c0 + RED) {
            workgroupBarrier();
            for (var i = 0u; i < RED; i = i + 1u) {
                if (c0 + i < NACC) {
                    red_m[lid * RED + i] = acc[c0 + i];
                }
            }
            workgroupBarrier();
            for (var e = lane; e < RED; e = e + GROUP) {
                if (c0 + e < NACC) {
                    var total = vec4<f32>(0.0);
                    for (var g = 0u; g < GROUP; g = g + 1u) {
                        total = total + red_m[(base + g) * RED + e];
                    }
                    store(first, c0 + e, total);
                }
            }
        }
    }
}

// Writes accumulator vec4 `c` (sums a = 4c..4c+3: row a / TOKENS, token
// a % TOKENS) of the group whose first row is `first`.
fn store(first: u32, c: u32, total: vec4<f32>) {
    for (var e = 0u; e < 4u; e = e + 1u) {
        let a = c * 4u + e;
        let row = first + a / TOKENS;
        if (a < ROWS * TOKENS && row < P.rows) {
            let y = (a % TOKENS) * P.y_stride + P.y_offset + row;
            if (P.accumulate != 0u) {
                Y[y] = Y[y] + total[e];
            } else {
                Y[y] = total[e];
            }
        }
    }
}
