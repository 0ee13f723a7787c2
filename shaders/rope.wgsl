// RoPE's parameters and rotation, shared by rope_kv.wgsl and the Q/K/V
// matvec's epilogue (matvec_put_rope.wgsl). The including file declares the
// cos/sin table CS ([pos][rope_pairs] (cos, sin), built on the CPU at load:
// GPU sin/cos lose accuracy for large angles and differ between vendors).
//
// Pairs are adjacent, (x[2i], x[2i+1]): GGUF llama files have Q and K rows
// permuted for this ("normal" RoPE mode).

struct RopeParams {
    n_head: u32,
    n_head_kv: u32,
    half_dim: u32,    // head_dim / 2
    rope_pairs: u32,  // rope_dim / 2: pairs past this are not rotated
    q_stride: u32,    // vec2s between tokens' Q (batched)
    kv_stride: u32,   // vec2s between tokens' K and V (batched)
    attn_factor: f32, // YaRN's magnitude correction of rotated Q and K (1 otherwise)
    _pad1: u32,
}

// Pair i of a head at position `pos`.
fn rope_rotate(v: vec2<f32>, i: u32, pos: u32, rope_pairs: u32, attn_factor: f32) -> vec2<f32> {
    if (i >= rope_pairs) {
        return v;
    }
    let cs = CS[pos * rope_pairs + i];
    return vec2<f32>(v.x * cs.x - v.y * cs.y, v.x * cs.y + v.y * cs.x) * attn_factor;
}
