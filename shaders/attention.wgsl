// Attention of one new token over the KV cache (read through `k_pair` /
// `v_pair` of shaders/kv/, whatever the cache type), split over the sequence
// (flash-decoding): `partial` handles CHUNK positions of HEADS query heads
// and writes each head's running max, sum of exponentials and unnormalised
// output; `combine` merges the chunks of each head. Long contexts thus give
// n_head / HEADS x n_chunks workgroups instead of n_head / HEADS.
// Grouped-query attention: query head h reads KV head h / (n_head / n_head_kv).
// Grid z (partial) or y (combine) is the step's decode token S.row0 + z; its
// row of R gives its slot's first cache row and its position p, and it
// attends to positions 0..=p of its own slot (chunks past p return at once),
// so tokens of different sequences at different positions share a dispatch.
// Prompt chunks go to attention_tile.wgsl, which reuses each K/V tile across
// 16 queries of one sequence.
// Assembled with a header (WG, GROUP = WG, CHUNK, HEAD_DIM, HEADS), common.wgsl
// and a reduction.

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

// HEADS query heads of one KV group share a workgroup, so each K and V word
// is read once for all of them (grouped-query attention reads its cache once
// per KV head, not per query head). HEADS and HEAD_DIM come from the header
// (`attn_heads`: a divisor of the group size that fits workgroup memory).
var<workgroup> q_sh: array<vec2<f32>, HEADS * HEAD_DIM / 2u>;
var<workgroup> p_sh: array<f32, HEADS * CHUNK>;  // [head][position]; reused for the V partial sums

// Elements j0..j0+3 of a per-head array for the four-lane reductions, `fill`
// past the last head (the reduction's identity: NEG_BIG for max, 0 for sums).
fn heads4(a: ptr<function, array<f32, HEADS>>, j0: u32, fill: f32) -> vec4<f32> {
    var v = vec4<f32>(fill);
    for (var t = 0u; t < 4u; t = t + 1u) {
        v[t] = select(fill, (*a)[min(j0 + t, HEADS - 1u)], j0 + t < HEADS);
    }
    return v;
}

@compute @workgroup_size(WG)
fn partial(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let chunk = wg.x;
    let h0 = wg.y * HEADS; // first query head of this workgroup
    let tok = S.row0 + wg.z;
    let n_pos = R[tok].y + 1u;
    let base = R[tok].x;
    if (chunk * CHUNK >= n_pos) {
        return; // past this token's causal window (the whole workgroup leaves)
    }
    let half_dim = P.head_dim / 2u;
    let row_pairs = P.n_head_kv * half_dim;
    let kv_base = (h0 / (P.n_head / P.n_head_kv)) * half_dim;
    let q0 = (tok * P.q_stride + h0 * P.head_dim) / 2u;
    for (var d = lid; d < HEADS * half_dim; d = d + WG) {
        // Heads are consecutive in Q, so HEADS rows are one contiguous range.
        q_sh[d] = vec2<f32>(Q[2u * (q0 + d)], Q[2u * (q0 + d) + 1u]);
    }
    workgroupBarrier();

    // Scores: one key per invocation, HEADS dot products from one read of it.
    let p0 = chunk * CHUNK;
    let n = min(CHUNK, n_pos - p0);
    var m_loc: array<f32, HEADS>;
    for (var j = 0u; j < HEADS; j = j + 1u) {
        m_loc[j] = NEG_BIG;
    }
    for (var i = lid; i < n; i = i + WG) {
        let k = base + p0 + i;
        var s: array<f32, HEADS>;
        for (var w = 0u; w < half_dim; w = w + 1u) {
            let kk = k_pair(k, kv_base + w, row_pairs);
            for (var j = 0u; j < HEADS; j = j + 1u) {
                s[j] = s[j] + dot(q_sh[j * half_dim + w], kk);
            }
        }
        for (var j = 0u; j < HEADS; j = j + 1u) {
            let sj = s[j] * P.scale;
            p_sh[j * CHUNK + i] = sj;
            m_loc[j] = max(m_loc[j], sj);
        }
    }
    var m: array<f32, HEADS>;
    var l: array<f32, HEADS>;
    for (var j0 = 0u; j0 < HEADS; j0 = j0 + 4u) {
        let m4 = group_max4(heads4(&m_loc, j0, NEG_BIG), lid);
        for (var t = 0u; t < 4u && j0 + t < HEADS; t = t + 1u) {
            m[j0 + t] = m4[t];
        }
    }
    var l_loc: array<f32, HEADS>;
    for (var i = lid; i < n; i = i + WG) {
        for (var j = 0u; j < HEADS; j = j + 1u) {
            let e = exp(p_sh[j * CHUNK + i] - m[j]);
            p_sh[j * CHUNK + i] = e;
            l_loc[j] = l_loc[j] + e;
        }
    }
    for (var j0 = 0u; j0 < HEADS; j0 = j0 + 4u) {
        let l4 = group_sum4(heads4(&l_loc, j0, 0.0), lid); // its barriers also publish p_sh
        for (var t = 0u; t < 4u && j0 + t < HEADS; t = t + 1u) {
            l[j0 + t] = l4[t];
        }
    }

    // Weighted sum of values. Invocation (g, w) sums pair w over positions
    // g, g + ps, ...: consecutive invocations read consecutive words of a V
    // row, and with head_dim / 2 < WG all WG invocations work (ps groups),
    // their partial sums then added through p_sh. Partial results are
    // indexed by decode token (wg.z), not by step row.
    let ps = max(WG / half_dim, 1u);
    let slot0 = (wg.z * P.n_head + h0) * P.max_chunks + chunk;
    if (ps == 1u) {
        for (var w = lid; w < half_dim; w = w + WG) {
            var acc: array<vec2<f32>, HEADS>;
            for (var i = 0u; i < n; i = i + 1u) {
                let vv = v_pair(base + p0 + i, kv_base + w, row_pairs);
                for (var j = 0u; j < HEADS; j = j + 1u) {
                    acc[j] = acc[j] + p_sh[j * CHUNK + i] * vv;
                }
            }
            for (var j = 0u; j < HEADS; j = j + 1u) {
                let o = (slot0 + j * P.max_chunks) * P.head_dim + 2u * w;
                OP[o] = acc[j].x;
                OP[o + 1u] = acc[j].y;
            }
        }
    } else {
        let g = lid / half_dim;
        let w = lid % half_dim;
        var acc: array<vec2<f32>, HEADS>;
        if (g < ps) {
            for (var i = g; i < n; i = i + ps) {
                let vv = v_pair(base + p0 + i, kv_base + w, row_pairs);
                for (var j = 0u; j < HEADS; j = j + 1u) {
                    acc[j] = acc[j] + p_sh[j * CHUNK + i] * vv;
                }
            }
        }
        workgroupBarrier(); // every weight read: p_sh now holds the partial sums
        if (g > 0u && g < ps) {
            for (var j = 0u; j < HEADS; j = j + 1u) {
                let o = (((g - 1u) * HEADS + j) * half_dim + w) * 2u;
                p_sh[o] = acc[j].x;
                p_sh[o + 1u] = acc[j].y;
            }
        }
        workgroupBarrier();
        if (g == 0u) {
            for (var j = 0u; j < HEADS; j = j + 1u) {
                var a = acc[j];
                for (var gg = 1u; gg < ps; gg = gg + 1u) {
                    let o = (((gg - 1u) * HEADS + j) * half_dim + w) * 2u;
                    a = a + vec2<f32>(p_sh[o], p_sh[o + 1u]);
                }
                let o = (slot0 + j * P.max_chunks) * P.head_dim + 2u * w;
                OP[o] = a.x;
                OP[o + 1u] = a.y;
            }
        }
    }
    if (lid < HEADS) {
        ML[slot0 + lid * P.max_chunks] = vec2<f32>(m[lid], l[lid]);
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
