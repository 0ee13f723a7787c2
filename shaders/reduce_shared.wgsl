// Reductions over groups of GROUP consecutive invocations through workgroup
// memory: the portable path, for adapters without subgroup operations.
// Every invocation of the workgroup must call these (they contain barriers);
// every invocation gets its group's result.

var<workgroup> red4: array<vec4<f32>, WG>;

// The scalar sum is the first lane of the four-lane one: one code path.
fn group_sum(v: f32, lid: u32) -> f32 {
    return group_sum4(vec4<f32>(v, 0.0, 0.0, 0.0), lid).x;
}

// Four independent sums at once (the matvec's rows): one set of barriers.
fn group_sum4(v: vec4<f32>, lid: u32) -> vec4<f32> {
    workgroupBarrier();
    red4[lid] = v;
    let lane = lid % GROUP;
    for (var s = GROUP / 2u; s > 0u; s = s / 2u) {
        workgroupBarrier();
        if (lane < s) {
            red4[lid] = red4[lid] + red4[lid + s];
        }
    }
    workgroupBarrier();
    return red4[lid - lane];
}

// Four independent maxima at once (decode attention's query heads).
fn group_max4(v: vec4<f32>, lid: u32) -> vec4<f32> {
    workgroupBarrier();
    red4[lid] = v;
    let lane = lid % GROUP;
    for (var s = GROUP / 2u; s > 0u; s = s / 2u) {
        workgroupBarrier();
        if (lane < s) {
            red4[lid] = max(red4[lid], red4[lid + s]);
        }
    }
    workgroupBarrier();
    return red4[lid - lane];
}
