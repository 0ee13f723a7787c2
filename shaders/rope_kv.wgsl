// RoPE on the step's Q and K heads, then K and V stored into the KV cache in
// its type (f16 pairs, or Q8_0 / Q4_0 blocks quantized here: `k_store` and
// `v_store` come from shaders/kv/, one invocation per `k_GROUP` pairs). Grid
// row y is the step's token y (Q/K/V `q_stride` / `kv_stride` pairs apart);
// its row of R says where it goes: its slot's first cache row and its
// position (tokens of several sequences share a step).
//
// Declarations shared with the fused Q/K/V matvec (RopeParams, rope_rotate)
// are in rope.wgsl. Decode steps whose Q/K/V matvec has RoPE and the f16 KV
// store in its epilogue (matvec_put_rope.wgsl) skip this kernel.

@group(0) @binding(0) var<storage, read_write> Q: array<vec2<f32>>;
@group(0) @binding(1) var<storage, read> K: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> V: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> CS: array<vec2<f32>>;   // [pos][rope_pairs] (cos, sin)
@group(0) @binding(4) var<storage, read_write> KC: array<u32>;   // [slot][pos] rows of n_head_kv * half_dim pairs
@group(0) @binding(5) var<storage, read_write> VC: array<u32>;
@group(0) @binding(6) var<uniform> P: RopeParams;
@group(0) @binding(7) var<storage, read> R: array<vec2<u32>>;   // per token: (slot's first cache row, position)

fn rotate(v: vec2<f32>, i: u32, pos: u32) -> vec2<f32> {
    return rope_rotate(v, i, pos, P.rope_pairs, P.attn_factor);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    let row = R[gid.y];
    let pos = row.y;
    let at = row.x + pos;
    let qo = gid.y * P.q_stride;
    let ko = gid.y * P.kv_stride;
    let nq = P.n_head * P.half_dim;
    let nk = P.n_head_kv * P.half_dim;
    let k_groups = (nk + k_GROUP - 1u) / k_GROUP;
    let v_groups = (nk + v_GROUP - 1u) / v_GROUP;
    if (t < nq) {
        Q[qo + t] = rotate(Q[qo + t], t % P.half_dim, pos);
    } else if (t < nq + k_groups) {
        let g = t - nq;
        var a: array<vec2<f32>, k_GROUP>;
        for (var i = 0u; i < k_GROUP; i = i + 1u) {
            let j = min(g * k_GROUP + i, nk - 1u);
            a[i] = rotate(K[ko + j], j % P.half_dim, pos);
        }
        k_store(at, g, nk, a);
    } else if (t < nq + k_groups + v_groups) {
        let g = t - nq - k_groups;
        var a: array<vec2<f32>, v_GROUP>;
        for (var i = 0u; i < v_GROUP; i = i + 1u) {
            a[i] = V[ko + min(g * v_GROUP + i, nk - 1u)];
        }
        v_store(at, g, nk, a);
    }
}
