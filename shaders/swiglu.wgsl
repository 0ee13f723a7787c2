// h = silu(gate) * up, elementwise (SwiGLU).

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> G: array<f32>;
@group(0) @binding(1) var<storage, read> U: array<f32>;
@group(0) @binding(2) var<uniform> P: Params;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    // A long 1-D grid arrives split over two dimensions (Gpu::dispatch).
    let i = (wg.y * nwg.x + wg.x) * WG + lid;
    if (i < P.n) {
        let g = G[i];
        G[i] = g / (1.0 + exp(-g)) * U[i];
    }
}
