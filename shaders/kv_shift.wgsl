// Context shift: the K cache rows src_row .. src_row + n_rows - 1 (positions
// old_pos ..) are re-rotated to positions new_pos .. and written to rows
// 0 .. n_rows - 1 of the scratch KS, in the cache's own type (quantized
// caches are dequantized, rotated and quantized again, as llama.cpp does);
// the caller then copies KS over the cache at the new rows. The rotation is
// R(new) R(old)^T from the cos/sin table, so it holds for every RoPE
// scaling (all are angle = position x per-pair frequency). V needs no
// rotation and is moved by buffer copies.
// One invocation per `k_GROUP` pairs of a row; 1-D index over (row, group),
// split over grid x and y when long.

struct Params {
    src_row: u32,
    n_rows: u32,
    old_pos: u32,
    new_pos: u32,
    row_pairs: u32,   // n_head_kv * head_dim / 2
    half_dim: u32,
    rope_pairs: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> KC: array<u32>;
@group(0) @binding(1) var<storage, read_write> KS: array<u32>;
@group(0) @binding(2) var<storage, read> CS: array<vec2<f32>>;   // [pos][rope_pairs] (cos, sin)
@group(0) @binding(3) var<uniform> P: Params;

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wg.y * nwg.x + wg.x) * WG + lid;
    let groups = (P.row_pairs + k_GROUP - 1u) / k_GROUP;
    let r = idx / groups;
    let g = idx % groups;
    if (r >= P.n_rows) {
        return;
    }
    var a: array<vec2<f32>, k_GROUP>;
    for (var i = 0u; i < k_GROUP; i = i + 1u) {
        let j = min(g * k_GROUP + i, P.row_pairs - 1u);
        var x = k_pair(P.src_row + r, j, P.row_pairs);
        let pi = j % P.half_dim;
        if (pi < P.rope_pairs) {
            let o = CS[(P.old_pos + r) * P.rope_pairs + pi];
            let n = CS[(P.new_pos + r) * P.rope_pairs + pi];
            let c = n.x * o.x + n.y * o.y;
            let s = n.y * o.x - n.x * o.y;
            x = vec2<f32>(x.x * c - x.y * s, x.x * s + x.y * c);
        }
        a[i] = x;
    }
    s_store(r, g, P.row_pairs, a);
}
