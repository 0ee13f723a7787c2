// x = row `token` of the embedding matrix, dequantized.
// Assembled like matvec.wgsl (header, common, dequant/<type>.wgsl, this file).
// A large embedding is split into row chunks, one dispatch each; the chunk
// that holds the token writes the row, the others return at once.
// Batched (prefill): grid row y embeds token T[token_index + y] into row y of
// the output, `y_stride` vec4s apart.

struct Params {
    rows: u32,        // rows in this chunk
    row_words: u32,
    items: u32,
    first_row: u32,   // token id of this chunk's first row
    token_index: u32, // which entry of T holds the (first) token
    y_stride: u32,    // vec4s between output rows (batched)
    _pad1: u32,
    _pad2: u32,
}

// W (binding 0) is declared by the layout prelude (dequant/words.wgsl,
// lone_scale.wgsl or soa.wgsl) with `dequant(row, it)`.
@group(0) @binding(1) var<storage, read> T: array<u32>;
@group(0) @binding(2) var<storage, read_write> Y: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> P: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let token = T[P.token_index + gid.y];
    let it = gid.x;
    if (token < P.first_row || token >= P.first_row + P.rows || it >= P.items) {
        return;
    }
    let w = dequant(token - P.first_row, it);
    for (var i = 0u; i < 8u; i = i + 1u) {
        Y[gid.y * P.y_stride + it * 8u + i] = w[i];
    }
}
