// Greedy sampling on the GPU: index of the largest logit (the first on ties,
// as llama.cpp), so greedy decoding reads back four bytes per token (and a
// single sequence's next step can read it without a round trip).
// Workgroup x handles row x of the logits (n apart): one dispatch for every
// sequence of a step.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> L: array<f32>;
@group(0) @binding(1) var<storage, read_write> T: array<u32>;
@group(0) @binding(2) var<uniform> P: Params;

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let lb = wg.x * P.n;
    var bv = NEG_BIG;
    var bi = 0xFFFFFFFFu;
    for (var i = lid; i < P.n; i = i + WG) {
        let v = L[lb + i];
        if (v > bv) {
            bv = v;
            bi = i;
        }
    }
    best_v[lid] = bv;
    best_i[lid] = bi;
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        workgroupBarrier();
        if (lid < s) {
            let ov = best_v[lid + s];
            let oi = best_i[lid + s];
            if (ov > best_v[lid] || (ov == best_v[lid] && oi < best_i[lid])) {
                best_v[lid] = ov;
                best_i[lid] = oi;
            }
        }
    }
    if (lid == 0u) {
        T[wg.x] = best_i[0];
    }
}
