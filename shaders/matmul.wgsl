// Y = X W^T for a batch of tokens (prefill): the matrix-matrix skeleton.
//
// Assembled like matvec.wgsl: header, common.wgsl, one dequant/<type>.wgsl
// (dequant_item), this file. A workgroup computes a tile of TILE_R rows x
// TILE_T tokens. Per step along the row it dequantizes TILE_R x 64 weights
// into workgroup memory once (each of the 64 invocations decodes one 32-value
// item) and loads TILE_T x 64 activations; every weight is then reused for
// TILE_T tokens and every activation for TILE_R rows. Each invocation
// accumulates a 2-row x 4-token register tile in f32 with vec4 dot products.

const TILE_R: u32 = 32u;
const TILE_T: u32 = 16u;
const KV4: u32 = 16u; // vec4s per row per step (64 elements = 2 items)

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

var<workgroup> w_sh: array<vec4<f32>, 512>; // TILE_R x KV4
var<workgroup> x_sh: array<vec4<f32>, 256>; // TILE_T x KV4

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let row0 = wg.x * TILE_R;
    let tok0 = wg.y * TILE_T;
    let r = 2u * (lid % 16u); // this invocation's rows within the tile: r, r + 1
    let t = 4u * (lid / 16u); // and tokens: t .. t + 3
    var acc: array<vec4<f32>, 2>; // acc[i][j]: row r + i, token t + j
    let steps = (P.items + 1u) / 2u;
    for (var s = 0u; s < steps; s = s + 1u) {
        workgroupBarrier();
        // Weights: invocation lid decodes item (2s + lid % 2) of tile row lid / 2.
        let wr = lid / 2u;
        let item = 2u * s + lid % 2u;
        let dst = wr * KV4 + (lid % 2u) * 8u;
        if (row0 + wr < P.rows && item < P.items) {
            let v = dequant_item((row0 + wr) * P.row_words + (item / ITEMS_PER_BLOCK) * BLOCK_WORDS, item % ITEMS_PER_BLOCK);
            for (var i = 0u; i < 8u; i = i + 1u) {
                w_sh[dst + i] = v[i];
            }
        } else {
            for (var i = 0u; i < 8u; i = i + 1u) {
                w_sh[dst + i] = vec4<f32>(0.0);
            }
        }
        // Activations: TILE_T x KV4 vec4s, four per invocation.
        for (var i = 0u; i < 4u; i = i + 1u) {
            let e = lid * 4u + i;
            let xt = e / KV4;
            let xk = 2u * s * 8u + e % KV4;
            var xv = vec4<f32>(0.0);
            if (tok0 + xt < P.n_tokens && xk < P.items * 8u) {
                xv = X[(tok0 + xt) * P.x_stride + xk];
            }
            x_sh[e] = xv;
        }
        workgroupBarrier();
        for (var k = 0u; k < KV4; k = k + 1u) {
            let w0 = w_sh[r * KV4 + k];
            let w1 = w_sh[(r + 1u) * KV4 + k];
            let x0 = x_sh[t * KV4 + k];
            let x1 = x_sh[(t + 1u) * KV4 + k];
            let x2 = x_sh[(t + 2u) * KV4 + k];
            let x3 = x_sh[(t + 3u) * KV4 + k];
            acc[0] = acc[0] + vec4<f32>(dot(w0, x0), dot(w0, x1), dot(w0, x2), dot(w0, x3));
            acc[1] = acc[1] + vec4<f32>(dot(w1, x0), dot(w1, x1), dot(w1, x2), dot(w1, x3));
        }
    }
    for (var i = 0u; i < 2u; i = i + 1u) {
        let row = row0 + r + i;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let tok = tok0 + t + j;
            if (row < P.rows && tok < P.n_tokens) {
                let y = tok * P.y_stride + P.y_offset + row;
                if (P.accumulate != 0u) {
                    Y[y] = Y[y] + acc[i][j];
                } else {
                    Y[y] = acc[i][j];
                }
            }
        }
    }
}
