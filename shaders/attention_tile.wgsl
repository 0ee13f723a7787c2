// Causal attention for a batch of new tokens (prefill), flash-attention style:
// a workgroup takes QT consecutive query tokens of one query head and walks
// the KV cache in tiles of KT positions staged in workgroup memory as f16
// pairs (dequantized on the way in for Q8_0 / Q4_0 caches, shaders/kv/), so
// each K and V element is read from memory once per QT queries instead of
// once per query. Online softmax (running max and sum, rescaled per tile):
// no score matrix beyond one tile's.
// Grouped-query attention: query head h reads KV head h / (n_head / n_head_kv).
// The step's first S.row0 tokens are one sequence's prompt chunk: token i
// sits at position pos + i of that sequence's slot (row 0 of R gives the
// slot's first cache row and pos) and attends to positions 0..=pos + i (the
// chunk's own K and V are already in the cache).
//
// LANES invocations share a query: lane l owns head dimensions
// [2 SLICE l, 2 SLICE (l + 1)) of q and of the output, computes its part of
// every score, and the parts are summed through workgroup memory.
// Assembled with a header (WG, HEAD_DIM: a multiple of 8, at most 256) and
// common.wgsl.

struct Params {
    n_head: u32,
    n_head_kv: u32,
    head_dim: u32,
    max_chunks: u32,  // unused here (the decode kernel's partial buffers)
    scale: f32,       // 1 / sqrt(head_dim)
    q_stride: u32,    // floats between tokens' Q and O rows
    _pad1: u32,
    _pad2: u32,
}

struct Step {
    n_rows: u32,    // tokens in the step
    row0: u32,      // tokens of the prompt chunk (the rest decode)
    n_chunks: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> Q: array<f32>;
@group(0) @binding(1) var<storage, read> KC: array<u32>;   // [slot][pos] rows of n_head_kv * HEAD_DIM / 2 pairs
@group(0) @binding(2) var<storage, read> VC: array<u32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;  // [token][head][HEAD_DIM]
@group(0) @binding(4) var<uniform> P: Params;
@group(0) @binding(5) var<uniform> S: Step;
@group(0) @binding(6) var<storage, read> R: array<vec2<u32>>;   // per token: (slot's first cache row, position)

const LANES: u32 = 4u;
const QT: u32 = WG / LANES;
const ROW: u32 = HEAD_DIM / 2u;      // f16 pairs per position and head
const SLICE: u32 = ROW / LANES;      // pairs per lane
const KT: u32 = min(32u, 2048u / HEAD_DIM); // positions per tile: K and V take 8 KiB at most
var<workgroup> k_sh: array<u32, 1024>;   // [p][ROW]
var<workgroup> v_sh: array<u32, 1024>;
var<workgroup> s_sh: array<f32, 2048>;   // partial scores [query][lane][p]: 8 KiB at most

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let h = wg.y;
    let qi = lid / LANES;
    let lane = lid % LANES;
    let n_tok = S.row0;
    let pos = R[0].y;
    let base = R[0].x;
    let first = wg.x * QT;
    let tok = first + qi;
    let live = tok < n_tok;
    let my_end = pos + tok + 1u;  // positions this query attends to
    let row_pairs = P.n_head_kv * ROW;
    let kv_base = (h / (P.n_head / P.n_head_kv)) * ROW;

    let q_base = min(tok, n_tok - 1u) * P.q_stride + h * HEAD_DIM + 2u * lane * SLICE;
    var q: array<vec2<f32>, SLICE>;
    var o: array<vec2<f32>, SLICE>;
    for (var i = 0u; i < SLICE; i = i + 1u) {
        q[i] = vec2<f32>(Q[q_base + 2u * i], Q[q_base + 2u * i + 1u]) * P.scale;
        o[i] = vec2<f32>(0.0);
    }
    var m = NEG_BIG;
    var l = 0.0;

    // The tile's last query decides how far the workgroup reads (uniform).
    let end = pos + min(first + QT, n_tok);
    for (var p0 = 0u; p0 < end; p0 = p0 + KT) {
        let n = min(KT, end - p0);
        workgroupBarrier();
        for (var i = lid; i < n * ROW; i = i + WG) {
            let r = base + p0 + i / ROW;
            k_sh[i] = k_word(r, kv_base + i % ROW, row_pairs);
            v_sh[i] = v_word(r, kv_base + i % ROW, row_pairs);
        }
        workgroupBarrier();
        let part = (qi * LANES + lane) * KT;
        for (var p = 0u; p < n; p = p + 1u) {
            var s = 0.0;
            for (var i = 0u; i < SLICE; i = i + 1u) {
                s = s + dot(q[i], unpack2x16float(k_sh[p * ROW + lane * SLICE + i]));
            }
            s_sh[part + p] = s;
        }
        workgroupBarrier();
        // Positions of this tile the query may see (none if it is inactive).
        let mine = select(0u, min(n, my_end - min(p0, my_end)), live);
        let parts = qi * LANES * KT;
        var m_new = m;
        for (var p = 0u; p < mine; p = p + 1u) {
            let s = s_sh[parts + p] + s_sh[parts + KT + p] + s_sh[parts + 2u * KT + p]
                + s_sh[parts + 3u * KT + p];
            m_new = max(m_new, s);
        }
        let rescale = exp(m - m_new);
        l = l * rescale;
        for (var i = 0u; i < SLICE; i = i + 1u) {
            o[i] = o[i] * rescale;
        }
        for (var p = 0u; p < mine; p = p + 1u) {
            let s = s_sh[parts + p] + s_sh[parts + KT + p] + s_sh[parts + 2u * KT + p]
                + s_sh[parts + 3u * KT + p];
            let e = exp(s - m_new);
            l = l + e;
            for (var i = 0u; i < SLICE; i = i + 1u) {
                o[i] = o[i] + e * unpack2x16float(v_sh[p * ROW + lane * SLICE + i]);
            }
        }
        m = m_new;
    }
    if (live) {
        for (var i = 0u; i < SLICE; i = i + 1u) {
            O[q_base + 2u * i] = o[i].x / l;
            O[q_base + 2u * i + 1u] = o[i].y / l;
        }
    }
}
