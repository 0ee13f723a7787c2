// Y = X W^T for a batch of tokens (prefill): the matrix-matrix skeleton.
//
// Assembled like matvec.wgsl: header, common.wgsl, one dequant/<type>.wgsl
// (dequant_item), this file. A workgroup computes a tile of 64 rows x 64
// tokens. Per 32-element step, invocation i decodes item `step` of tile row i
// into workgroup memory and stages 8 activation vec4s; every decoded weight
// is then used by 64 tokens and every activation by 64 rows.
//
// Each invocation accumulates an 8-row x 8-token register tile (rows rg + 8i,
// tokens tg + 8j), so one workgroup-memory load feeds 8 dot products: the
// ratio of arithmetic to loads is what bounds a matmul, on GPUs (shared-memory
// bandwidth) and even more on software Vulkan (each load is a per-lane loop).
// Workgroup memory is k-major (w_sh[k * 64 + row], x_sh[k * 64 + token]), so
// neighbouring invocations read neighbouring vec4s (no bank conflicts) and
// invocations sharing a row or token group read the same address (broadcast).
// 2 x 8 KiB: exactly WebGPU's guaranteed 16 KiB of workgroup memory.

const TILE: u32 = 64u;

struct Params {
    rows: u32,        // rows in this chunk of W
    row_words: u32,
    items: u32,       // 32-element items per row
    accumulate: u32,  // 1: Y += X W^T (fused residual)
    y_offset: u32,    // column of Y where this chunk's first row goes
    x_stride: u32,    // vec4s between tokens in X
    y_stride: u32,    // floats between tokens in Y
    n_tokens: u32,
}

@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;

var<workgroup> w_sh: array<vec4<f32>, 512>; // 8 vec4 (one item) x 64 rows, k-major
var<workgroup> x_sh: array<vec4<f32>, 512>; // 8 vec4 x 64 tokens, k-major

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let row0 = wg.x * TILE;
    let tok0 = wg.y * TILE;
    // Invocations 0..7 share token group 0, 8..15 group 1, ...: a SIMD group
    // of 8 on a CPU driver, or a quarter warp, agrees on which tokens exist.
    let rg = lid % 8u;
    let tg = lid / 8u;
    // Tokens of this tile that exist, and how many of this invocation's do.
    let n_tile = min(P.n_tokens - min(tok0, P.n_tokens), TILE);
    let my_tokens = (n_tile + 7u - min(tg, n_tile + 7u)) / 8u;
    let w_base = min(row0 + lid, P.rows - 1u) * P.row_words;
    var acc: array<array<vec4<f32>, 2>, 8>; // acc[j][h][c]: token tg + 8j, row rg + 8(4h + c)
    for (var it = 0u; it < P.items; it = it + 1u) {
        workgroupBarrier();
        let w = dequant_item(w_base + (it / ITEMS_PER_BLOCK) * BLOCK_WORDS, it % ITEMS_PER_BLOCK);
        for (var k = 0u; k < 8u; k = k + 1u) {
            w_sh[k * TILE + lid] = w[k];
        }
        // Activations: element e = token e / 8, vec4 e % 8 (coalesced reads).
        for (var i = 0u; i < 8u; i = i + 1u) {
            let e = i * 64u + lid;
            let t = e / 8u;
            var xv = vec4<f32>(0.0);
            if (t < n_tile) {
                xv = X[(tok0 + t) * P.x_stride + it * 8u + e % 8u];
            }
            x_sh[(e % 8u) * TILE + t] = xv;
        }
        workgroupBarrier();
        for (var k = 0u; k < 8u; k = k + 1u) {
            var wv: array<vec4<f32>, 8>;
            for (var i = 0u; i < 8u; i = i + 1u) {
                wv[i] = w_sh[k * TILE + rg + 8u * i];
            }
            for (var j = 0u; j < 8u; j = j + 1u) {
                if (j >= my_tokens) {
                    break;
                }
                let x = x_sh[k * TILE + tg + 8u * j];
                acc[j][0] += vec4<f32>(dot(wv[0], x), dot(wv[1], x), dot(wv[2], x), dot(wv[3], x));
                acc[j][1] += vec4<f32>(dot(wv[4], x), dot(wv[5], x), dot(wv[6], x), dot(wv[7], x));
            }
        }
    }
    for (var j = 0u; j < my_tokens; j = j + 1u) {
        let tok = tok0 + tg + 8u * j;
        for (var i = 0u; i < 8u; i = i + 1u) {
            let row = row0 + rg + 8u * i;
            if (row < P.rows) {
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
