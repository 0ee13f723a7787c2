// Attention of one new token over the KV cache (read through `k_pair` /
// `v_pair` of shaders/kv/, whatever the cache type), split over the sequence
// (flash-decoding): `partial` handles CHUNK positions of one query head and
// writes its running max, sum of exponentials and unnormalised output;
// `combine` merges the chunks of each head. Long contexts thus give
// n_head x n_chunks workgroups instead of n_head.
// Grouped-query attention: query head h reads KV head h / (n_head / n_head_kv).
// Grid z (partial) or y (combine) is the step's decode token S.row0 + z; its
// row of R gives its slot's first cache row and its position p, and it
// attends to positions 0..=p of its own slot (chunks past p return at once),
// so tokens of different sequences at different positions share a dispatch.
// Prompt chunks go to attention_tile.wgsl, which reuses each K/V tile across
// 16 queries of one sequence.
// Assembled with a header (WG, GROUP = WG, CHUNK), common.wgsl and a reduction.

struct Params {
    n_head: u32,
    n_head_kv: u32,
    head_dim: u32,
    max_chunks: u32,  // chunk slots per head in the partial buffers
    scale: f32,       // 1 / sqrt(head_dim)
    q_stride: u32,    // floats between tokens' Q and O rows (batched)
    _pad1: u32,
    _pad2: u32,
}

struct Step {
    n_rows: u32,    // tokens in the step
    row0: u32,      // first decode token (rows before it are a prompt chunk)
    n_chunks: u32,  // most chunks of any decode token
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> Q: array<f32>;
@group(0) @binding(1) var<storage, read> KC: array<u32>;   // [slot][pos] rows of n_head_kv * head_dim / 2 pairs
@group(0) @binding(2) var<storage, read> VC: array<u32>;
@group(0) @binding(3) var<storage, read_write> OP: array<f32>;  // [decode token][head][chunk][head_dim]
@group(0) @binding(4) var<storage, read_write> ML: array<vec2<f32>>;  // [decode token][head][chunk] (max, sum)
@group(0) @binding(5) var<storage, read_write> O: array<f32>;   // [token][head][head_dim]
@group(0) @binding(6) var<uniform> P: Params;
@group(0) @binding(7) var<uniform> S: Step;
@group(0) @binding(8) var<storage, read> R: array<vec2<u32>>;   // per token: (slot's first cache row, position)

const MAX_HEAD_DIM: u32 = 256u;
var<workgroup> q_sh: array<f32, MAX_HEAD_DIM>;
var<workgroup> p_sh: array<f32, CHUNK>;

@compute @workgroup_size(WG)
fn partial(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let chunk = wg.x;
    let h = wg.y;
    let tok = S.row0 + wg.z;
    let n_pos = R[tok].y + 1u;
    let base = R[tok].x;
    if (chunk * CHUNK >= n_pos) {
        return; // past this token's causal window (the whole workgroup leaves)
    }
    let half_dim = P.head_dim / 2u;
    let row_pairs = P.n_head_kv * half_dim;
    let kv_base = (h / (P.n_head / P.n_head_kv)) * half_dim;
    for (var d = lid; d < P.head_dim; d = d + WG) {
        q_sh[d] = Q[tok * P.q_stride + h * P.head_dim + d];
    }
    workgroupBarrier();

    let p0 = chunk * CHUNK;
    let n = min(CHUNK, n_pos - p0);
    var m_local = NEG_BIG;
    for (var i = lid; i < n; i = i + WG) {
        let k = base + p0 + i;
        var s = 0.0;
        for (var w = 0u; w < half_dim; w = w + 1u) {
            let kk = k_pair(k, kv_base + w, row_pairs);
            s = s + q_sh[2u * w] * kk.x + q_sh[2u * w + 1u] * kk.y;
        }
        s = s * P.scale;
        p_sh[i] = s;
        m_local = max(m_local, s);
    }
    let m = group_max(m_local, lid);
    var l_local = 0.0;
    for (var i = lid; i < n; i = i + WG) {
        let e = exp(p_sh[i] - m);
        p_sh[i] = e;
        l_local = l_local + e;
    }
    let l = group_sum(l_local, lid); // its barrier also publishes p_sh

    // Partial results are indexed by decode token (wg.z), not by step row.
    let slot = (wg.z * P.n_head + h) * P.max_chunks + chunk;
    for (var w = lid; w < half_dim; w = w + WG) {
        var acc = vec2<f32>(0.0);
        for (var i = 0u; i < n; i = i + 1u) {
            acc = acc + p_sh[i] * v_pair(base + p0 + i, kv_base + w, row_pairs);
        }
        OP[slot * P.head_dim + 2u * w] = acc.x;
        OP[slot * P.head_dim + 2u * w + 1u] = acc.y;
    }
    if (lid == 0u) {
        ML[slot] = vec2<f32>(m, l);
    }
}

@compute @workgroup_size(WG)
fn combine(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let h = wg.x;
    let tok = S.row0 + wg.y;
    let n_chunks = (R[tok].y + 1u + CHUNK - 1u) / CHUNK;
    let first = (wg.y * P.n_head + h) * P.max_chunks;
    var m = NEG_BIG;
    for (var c = 0u; c < n_chunks; c = c + 1u) {
        m = max(m, ML[first + c].x);
    }
    var l = 0.0;
    for (var c = 0u; c < n_chunks; c = c + 1u) {
        let ml = ML[first + c];
        l = l + ml.y * exp(ml.x - m);
    }
    for (var d = lid; d < P.head_dim; d = d + WG) {
        var acc = 0.0;
        for (var c = 0u; c < n_chunks; c = c + 1u) {
            acc = acc + OP[(first + c) * P.head_dim + d] * exp(ML[first + c].x - m);
        }
        O[tok * P.q_stride + h * P.head_dim + d] = acc / l;
    }
}
