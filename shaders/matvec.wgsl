// Y = W X for a quantized (or float) matrix W and TOKENS (1..16) tokens: the
// one matrix-vector skeleton, for decode (TOKENS = 1) and for steps of a few
// tokens (several sequences decoding together, short prompt chunks).
//
// Assembled at pipeline creation from: a header (WG, GROUP, ROWS, TOKENS),
// common.wgsl, a reduction (reduce_subgroup.wgsl or reduce_shared.wgsl), the
// weight decoder for the type and layout (`dequant(row, it)`, see
// kernels::dequant_source) and this file.
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
    row_words: u32,   // u32 words per row (word-aligned layouts)
    items: u32,       // 32-element items per row
    accumulate: u32,  // 1: y += W x (fuses the residual add), 0: y = W x
    y_offset: u32,    // where this chunk's first row (GLU: pair) goes in y
    x_offset: u32,    // in vec4 units
    x_stride: u32,    // vec4s between tokens in X
    y_stride: u32,    // floats between tokens in Y
    row0: u32,        // split outputs: this chunk's first row in W
    token0: u32,      // split outputs: this dispatch's first token
    split1: u32,      // split outputs: first row of W that goes to Y1
    split2: u32,      // split outputs: first row of W that goes to Y2
    s_stride: u32,    // split outputs: floats between tokens in Y1 and Y2
    norm_n: u32,      // NORM: elements of x (the mean's divisor)
    eps: f32,         // NORM: RMSNorm epsilon
    _pad: u32,
}

@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;
// W (binding 0) is declared by the layout prelude (dequant/words.wgsl,
// lone_scale.wgsl or soa.wgsl) with `dequant(row, it)`; the norm weights
// (`norm_weight`) and the outputs (`put`) by the generated header and
// matvec_put*.wgsl.

// W rows per output: with OUT_GLU, gate and up rows alternate in W
// (interleaved at upload), and a group computes both rows of each pair; with
// OUT_ROPE, the pairs are RoPE's (rows 2i and 2i + 1).
const RW: u32 = select(1u, 2u, OUT_GLU || OUT_ROPE);
// W rows per group.
const EROWS: u32 = ROWS * RW;
const GROUPS_PER_WG: u32 = WG / GROUP;
const NACC: u32 = (EROWS * TOKENS + 3u) / 4u;
// Sums of squares of X per token (NORM), four to a vec4.
const NSS: u32 = (TOKENS + 3u) / 4u;
// vec4 sums per invocation per reduction round (8 KiB of workgroup memory).
const RED: u32 = 8u;
var<workgroup> red_m: array<vec4<f32>, select(1u, WG * RED, TOKENS > 1u)>;
// X of every token for one item, kept in registers when several rows share it.
const XREG: u32 = select(1u, 8u * TOKENS, ROWS > 1u);
// Per token: 1 / RMS(x) with NORM, else 1.
var<private> scale: array<f32, TOKENS>;

// Where sum (W row r of the group, token j) is kept: pairs (gate, up) of
// the same output and token side by side, so one vec4 holds both.
fn acc_index(r: u32, j: u32) -> u32 {
    return ((r / RW) * TOKENS + j) * RW + r % RW;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let lane = lid % GROUP;
    // Large matrices are dispatched as a 2D grid (at most 65535 per dimension).
    let first = ((wg.y * nwg.x + wg.x) * GROUPS_PER_WG + lid / GROUP) * EROWS;
    // Rows past the end are clamped onto the last row: their sums are computed
    // and never written, which keeps every invocation in the same control flow.
    var acc: array<vec4<f32>, NACC>;
    var ss: array<vec4<f32>, NSS>;
    if (first < P.rows) {
        for (var it = lane; it < P.items; it = it + GROUP) {
            let xo = P.x_offset + it * 8u;
            var x: array<vec4<f32>, XREG>;
            if (ROWS > 1u) {
                for (var i = 0u; i < 8u * TOKENS; i = i + 1u) {
                    let v = X[xo + (i / 8u) * P.x_stride + i % 8u];
                    if (NORM) {
                        let j = i / 8u;
                        ss[j / 4u][j % 4u] = ss[j / 4u][j % 4u] + dot(v, v);
                    }
                    x[i] = v * norm_weight(it * 8u + i % 8u);
                }
            }
            for (var r = 0u; r < EROWS; r = r + 1u) {
                let w = dequant(min(first + r, P.rows - 1u), it);
                for (var j = 0u; j < TOKENS; j = j + 1u) {
                    var s = 0.0;
                    for (var i = 0u; i < 8u; i = i + 1u) {
                        if (ROWS > 1u) {
                            s = s + dot(w[i], x[j * 8u + i]);
                        } else {
                            let v = X[xo + j * P.x_stride + i];
                            if (NORM && r == 0u) {
                                ss[j / 4u][j % 4u] = ss[j / 4u][j % 4u] + dot(v, v);
                            }
                            s = s + dot(w[i], v * norm_weight(it * 8u + i));
                        }
                    }
                    let a = acc_index(r, j);
                    acc[a / 4u][a % 4u] = acc[a / 4u][a % 4u] + s;
                }
            }
        }
    }
    // RMSNorm folded in: W (g * x / rms) = (W (g * x)) / rms, and the group's
    // lanes together visited every item of x, so its sums of squares are one
    // more reduction.
    for (var j = 0u; j < TOKENS; j = j + 1u) {
        scale[j] = 1.0;
    }
    if (NORM) {
        for (var c = 0u; c < NSS; c = c + 1u) {
            let t = group_sum4(ss[c], lid);
            for (var e = 0u; e < 4u; e = e + 1u) {
                if (4u * c + e < TOKENS) {
                    scale[4u * c + e] = 1.0 / sqrt(t[e] / f32(P.norm_n) + P.eps);
                }
            }
        }
    }
    if (TOKENS == 1u) {
        // Decode: a vec4 of sums at a time, the subgroup reduction where there is one.
        for (var c = 0u; c < NACC; c = c + 1u) {
            let total = group_sum4(acc[c], lid);
            if (lane == 0u) {
                store(first, c, total);
            }
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

// Writes accumulator vec4 `c` (sums a = 4c..4c+3, see acc_index) of the
// group whose first row is `first`; with OUT_GLU, silu(gate) * up of each
// pair; with OUT_ROPE, each pair rotated and stored (matvec_put_rope.wgsl).
fn store(first: u32, c: u32, total: vec4<f32>) {
    for (var e = 0u; e < 4u; e = e + 1u) {
        let a = c * 4u + e;
        let q = a / RW;
        let j = q % TOKENS;
        let row = first + (q / TOKENS) * RW + a % RW;
        if (a >= EROWS * TOKENS || row >= P.rows || a % RW != 0u) {
            continue;
        }
        var v = total[e] * scale[j];
        // With pairs, e is even here: the pair's second sum is the next one.
        let u = total[min(e + 1u, 3u)] * scale[j];
        if (OUT_ROPE) {
            put_pair(row, j, vec2<f32>(v, u));
            continue;
        }
        if (OUT_GLU) {
            v = v / (1.0 + exp(-v)) * u;
        }
        put(row / RW, j, v);
    }
}
