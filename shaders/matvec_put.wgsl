// The matvec's output: row `row` of this chunk (a pair with OUT_GLU), token j.
fn put(row: u32, j: u32, v: f32) {
    let y = j * P.y_stride + P.y_offset + row;
    if (P.accumulate != 0u) {
        Y[y] = Y[y] + v;
    } else {
        Y[y] = v;
    }
}
