// The matvec's outputs when W is several matrices' rows one after the other
// (Q, K and V): rows before split1 go to Y, then to Y1, from split2 on to Y2,
// each at its own row (Y1 and Y2 s_stride floats between tokens). Y1 and Y2
// are declared by the generated header.
fn put(row: u32, j: u32, v: f32) {
    let g = P.row0 + row;
    let t = P.token0 + j;
    if (g < P.split1) {
        Y[t * P.y_stride + g] = v;
    } else if (g < P.split2) {
        Y1[t * P.s_stride + g - P.split1] = v;
    } else {
        Y2[t * P.s_stride + g - P.split2] = v;
    }
}
