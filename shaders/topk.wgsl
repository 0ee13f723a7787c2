// Top-k on the GPU: the k largest logits and their ids, so sampling reads
// back k pairs instead of the whole vocabulary (8k bytes, not 4 x n_vocab).
//
// One workgroup. Radix select over the logits mapped to order-preserving
// u32 keys, 8 bits per pass from the top: a 256-bin histogram of the keys
// that match the digits chosen so far gives the next digit of the k-th
// largest key. After four passes the k-th largest key T is known, with how
// many keys equal to T belong in the result. The gather then writes every
// key > T and the first of the keys == T in id order: each invocation owns
// a contiguous id range and prefix sums give each its output slots, so the
// result is deterministic (ties at the boundary keep the lowest ids, as a
// stable sort would). Output: out[2i] = id, out[2i + 1] = logit bits, in id
// order within "above T" then "equal to T"; the caller sorts k pairs.
// Workgroup x handles row x of the logits (n apart) and writes `out_stride`
// words apart: one dispatch selects for every sequence of a step.

const TK: u32 = 256u; // invocations

struct Params {
    n: u32, // logits
    k: u32, // 1 <= k <= n
    out_stride: u32, // words between rows' results
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> L: array<f32>;
@group(0) @binding(1) var<storage, read_write> OUT: array<u32>;
@group(0) @binding(2) var<uniform> P: Params;

var<workgroup> hist: array<atomic<u32>, TK>;
var<workgroup> scan: array<u32, TK>;
var<workgroup> scan2: array<u32, TK>;
var<workgroup> chosen: vec2<u32>; // (digit, count of keys above it)

// Larger float, larger key (negative floats have their order reversed).
fn key(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// Inclusive prefix sums of `a` (in lid order) and `b` over the workgroup.
fn scan_pair(lid: u32, a: u32, b: u32) -> vec2<u32> {
    scan[lid] = a;
    scan2[lid] = b;
    for (var s = 1u; s < TK; s = s * 2u) {
        workgroupBarrier();
        var x = scan[lid];
        var y = scan2[lid];
        if (lid >= s) {
            x = x + scan[lid - s];
            y = y + scan2[lid - s];
        }
        workgroupBarrier();
        scan[lid] = x;
        scan2[lid] = y;
    }
    workgroupBarrier();
    return vec2<u32>(scan[lid], scan2[lid]);
}

@compute @workgroup_size(TK)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let lb = wg.x * P.n;
    let ob = wg.x * P.out_stride;
    var prefix = 0u; // the digits of the k-th largest key chosen so far
    var mask = 0u;
    var rem = P.k;   // how many of the keys matching `prefix` are still wanted
    for (var round_i = 0u; round_i < 4u; round_i = round_i + 1u) {
        let shift = 24u - 8u * round_i;
        atomicStore(&hist[lid], 0u);
        workgroupBarrier();
        for (var i = lid; i < P.n; i = i + TK) {
            let kv = key(L[lb + i]);
            if ((kv & mask) == prefix) {
                atomicAdd(&hist[(kv >> shift) & 0xFFu], 1u);
            }
        }
        workgroupBarrier();
        // Digits from the top: invocation lid holds digit 255 - lid.
        let d = 255u - lid;
        let count = atomicLoad(&hist[d]);
        let above = scan_pair(lid, count, 0u).x - count;
        if (above < rem && rem <= above + count) {
            chosen = vec2<u32>(d, above);
        }
        workgroupBarrier();
        let c = chosen;
        prefix = prefix | (c.x << shift);
        mask = mask | (0xFFu << shift);
        rem = rem - c.y;
        workgroupBarrier();
    }
    // Gather: keys > prefix all belong, `rem` keys == prefix do.
    let per = (P.n + TK - 1u) / TK;
    let lo = min(lid * per, P.n);
    let hi = min(lo + per, P.n);
    var n_gt = 0u;
    var n_eq = 0u;
    for (var i = lo; i < hi; i = i + 1u) {
        let kv = key(L[lb + i]);
        n_gt = n_gt + select(0u, 1u, kv > prefix);
        n_eq = n_eq + select(0u, 1u, kv == prefix);
    }
    let incl = scan_pair(lid, n_gt, n_eq);
    var slot_gt = incl.x - n_gt;
    var rank_eq = incl.y - n_eq;
    let eq_base = P.k - rem; // all keys above T come first
    for (var i = lo; i < hi; i = i + 1u) {
        let v = L[lb + i];
        let kv = key(v);
        if (kv > prefix) {
            OUT[ob + 2u * slot_gt] = i;
            OUT[ob + 2u * slot_gt + 1u] = bitcast<u32>(v);
            slot_gt = slot_gt + 1u;
        } else if (kv == prefix) {
            if (rank_eq < rem) {
                OUT[ob + 2u * (eq_base + rank_eq)] = i;
                OUT[ob + 2u * (eq_base + rank_eq) + 1u] = bitcast<u32>(v);
            }
            rank_eq = rank_eq + 1u;
        }
    }
}
