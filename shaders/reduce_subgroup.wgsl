// Reductions over groups of GROUP consecutive invocations with subgroup
// shuffles, finishing through workgroup memory when a group spans several
// subgroups. The subgroup size is only known at run time (8 on lavapipe, 32 on
// NVIDIA and Apple, 32 or 64 on AMD), so the butterfly runs every step for
// GROUP and masks out steps wider than the subgroup: the loop bound stays a
// constant and control flow stays uniform.
// Every invocation of the workgroup must call these (they contain barriers);
// every invocation gets its group's result.

var<workgroup> red4: array<vec4<f32>, WG>;

// The scalar sum is the first lane of the four-lane one: one code path.
fn group_sum(v: f32, lid: u32) -> f32 {
    return group_sum4(vec4<f32>(v, 0.0, 0.0, 0.0), lid).x;
}

// Four independent sums at once (the matvec's rows): one set of shuffles and barriers.
fn group_sum4(v: vec4<f32>, lid: u32) -> vec4<f32> {
    let sg = subgroupAdd(1u);
    var s = v;
    for (var off = GROUP / 2u; off > 0u; off = off / 2u) {
        let o = subgroupShuffleXor(s, off & (sg - 1u));
        s = s + select(vec4<f32>(0.0), o, off < sg);
    }
    let width = min(GROUP, sg);
    workgroupBarrier();
    red4[lid] = s;
    workgroupBarrier();
    let first = lid - lid % GROUP;
    var t = vec4<f32>(0.0);
    for (var i = 0u; i < GROUP; i = i + width) {
        t = t + red4[first + i];
    }
    return t;
}

// Four independent maxima at once (decode attention's query heads).
fn group_max4(v: vec4<f32>, lid: u32) -> vec4<f32> {
    let sg = subgroupAdd(1u);
    var s = v;
    for (var off = GROUP / 2u; off > 0u; off = off / 2u) {
        let o = subgroupShuffleXor(s, off & (sg - 1u));
        s = max(s, select(s, o, off < sg));
    }
    let width = min(GROUP, sg);
    workgroupBarrier();
    red4[lid] = s;
    workgroupBarrier();
    let first = lid - lid % GROUP;
    var t = vec4<f32>(NEG_BIG);
    for (var i = 0u; i < GROUP; i = i + width) {
        t = max(t, red4[first + i]);
    }
    return t;
}
