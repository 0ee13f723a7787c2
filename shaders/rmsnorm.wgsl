// y = x / sqrt(mean(x^2) + eps) * weight, one workgroup per vector; workgroup
// x handles vector x of a batch, `stride` floats apart.
// Assembled with a header (WG, GROUP = WG), common.wgsl and a reduction.

struct Params {
    n: u32,
    eps: f32,
    stride: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> Wt: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let o = wg.x * P.stride;
    var ss = 0.0;
    for (var i = lid; i < P.n; i = i + WG) {
        ss = ss + X[o + i] * X[o + i];
    }
    let total = group_sum(ss, lid);
    let scale = 1.0 / sqrt(total / f32(P.n) + P.eps);
    for (var i = lid; i < P.n; i = i + WG) {
        Y[o + i] = X[o + i] * scale * Wt[i];
    }
}
