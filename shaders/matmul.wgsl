// Y = X W^T for a batch of tokens (prefill): the matrix-matrix skeleton.
//
// Assembled like matvec.wgsl: header (REGS), common.wgsl, one
// dequant/<type>.wgsl (dequant_item), this file. A workgroup computes a tile
// of 64 rows x 64 tokens. Per 32-element step the invocations decode item
// `step` of the tile's rows into workgroup memory and stage the tokens'
// activations; every decoded weight is then used by 64 tokens and every
// activation by 64 rows.
//
// Each invocation accumulates a REGS-row x REGS-token register tile (rows
// rg + RS i, tokens tg + TS j), so one workgroup-memory load feeds REGS dot
// products: the ratio of arithmetic to loads is what bounds a matmul, on
// GPUs (shared-memory bandwidth) and even more on software Vulkan, where
// each load is a loop over the lanes. REGS = 8 (64 invocations, 64
// accumulators each) suits GPUs; REGS = 16 (16 invocations) halves the loads
// per multiply-add for CPU adapters, whose "registers" spill cheaply.
// Workgroup memory is k-major (w_sh[k * 64 + row], x_sh[k * 64 + token]), so
// neighbouring invocations read neighbouring vec4s (no bank conflicts) and
// invocations sharing a row or token group read the same address (broadcast).
// 2 x 8 KiB: exactly WebGPU's guaranteed 16 KiB of workgroup memory.

const TILE: u32 = 64u;
const TR: u32 = REGS;
const TT: u32 = REGS;
const RS: u32 = TILE / TR;          // invocations across the rows of the tile
const TS: u32 = TILE / TT;          // invocations across its tokens
const MM_WG: u32 = RS * TS;

struct Params {
    rows: u32,        // rows in this chunk of W
    row_words: u32,   // u32 words per row (word-aligned layouts)
    items: u32,       // 32-element items per row
    accumulate: u32,  // 1: Y += X W^T (fused residual)
    y_offset: u32,    // column of Y where this chunk's first row goes
    x_stride: u32,    // vec4s between tokens in X
    y_stride: u32,    // floats between tokens in Y
    n_tokens: u32,
    row_begin: u32,   // output i is row row_begin + row_step * i of this chunk
    row_step: u32,    // (a range of a fused QKV, or every other row of gate/up)
    n_out: u32,       // outputs of this dispatch
    _pad: u32,
}

// W (binding 0) is declared by the layout prelude (dequant/words.wgsl,
// lone_scale.wgsl or soa.wgsl) with `dequant(row, it)`.
@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;

var<workgroup> w_sh: array<vec4<f32>, 512>; // 8 vec4 (one item) x 64 rows, k-major
var<workgroup> x_sh: array<vec4<f32>, 512>; // 8 vec4 x 64 tokens, k-major

@compute @workgroup_size(MM_WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let row0 = wg.x * TILE;
    let tok0 = wg.y * TILE;
    // Invocations 0..RS-1 share token group 0, and so on: a SIMD group of 8
    // on a CPU driver, or a quarter warp, agrees on which tokens exist.
    let rg = lid % RS;
    let tg = lid / RS;
    // Tokens of this tile that exist, and how many of this invocation's do.
    let n_tile = min(P.n_tokens - min(tok0, P.n_tokens), TILE);
    let my_tokens = (n_tile + TS - 1u - min(tg, n_tile + TS - 1u)) / TS;
    var acc: array<array<vec4<f32>, TR / 4u>, TT>; // acc[j][h][c]: token tg + TS j, row rg + RS (4h + c)
    for (var it = 0u; it < P.items; it = it + 1u) {
        workgroupBarrier();
        for (var r = lid; r < TILE; r = r + MM_WG) {
            let w = dequant(P.row_begin + P.row_step * min(row0 + r, P.n_out - 1u), it);
            for (var k = 0u; k < 8u; k = k + 1u) {
                w_sh[k * TILE + r] = w[k];
            }
        }
        // Activations: element e = token e / 8, vec4 e % 8 (coalesced reads).
        for (var e = lid; e < 8u * TILE; e = e + MM_WG) {
            let t = e / 8u;
            var xv = vec4<f32>(0.0);
            if (t < n_tile) {
                xv = X[(tok0 + t) * P.x_stride + it * 8u + e % 8u];
            }
            x_sh[(e % 8u) * TILE + t] = xv;
        }
        workgroupBarrier();
        for (var k = 0u; k < 8u; k = k + 1u) {
            var wv: array<vec4<f32>, TR>;
            for (var i = 0u; i < TR; i = i + 1u) {
                wv[i] = w_sh[k * TILE + rg + RS * i];
            }
            for (var j = 0u; j < TT; j = j + 1u) {
                if (j >= my_tokens) {
                    break;
                }
                let x = x_sh[k * TILE + tg + TS * j];
                for (var h = 0u; h < TR / 4u; h = h + 1u) {
                    acc[j][h] += vec4<f32>(dot(wv[4u * h], x), dot(wv[4u * h + 1u], x),
                                           dot(wv[4u * h + 2u], x), dot(wv[4u * h + 3u], x));
                }
            }
        }
    }
    for (var j = 0u; j < my_tokens; j = j + 1u) {
        let tok = tok0 + tg + TS * j;
        for (var i = 0u; i < TR; i = i + 1u) {
            let row = row0 + rg + RS * i;
            if (row < P.n_out) {
                let y = tok * P.y_stride + P.y_offset + row;
                let v = acc[j][i / 4u][i % 4u];
                if (P.accumulate != 0u) {
                    Y[y] = Y[y] + v;
                } else {
                    Y[y] = v;
                }
            }
        }
    }
}
