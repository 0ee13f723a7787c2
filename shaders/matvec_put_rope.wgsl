// The Q/K/V matvec's outputs with RoPE and the KV store in its epilogue, for
// f16 caches: W is Q, K and V rows one after the other, and each group's sums
// arrive as pairs of rows (2i, 2i + 1), the pairs RoPE rotates (as gate/up
// pairs do for SwiGLU). Q pairs are rotated into Y; K pairs rotated and V
// pairs kept are packed as two f16 into their token's cache row. A decode
// step then needs no RoPE/KV dispatch of its own (rope_kv.wgsl remains for
// prompt chunks, which go through the matmul, and for quantized caches,
// whose blocks span 32 rows). Declared by the generated header: RP (binding
// after VC) and S; rope.wgsl is included before this file.

struct Step {
    n_rows: u32,
    row0: u32,
    n_chunks: u32,
    _pad: u32,
}

// Pair (v.x, v.y) of W rows row, row + 1 of this chunk, token j.
fn put_pair(row: u32, j: u32, v: vec2<f32>) {
    let t = P.token0 + j;
    if (t >= S.n_rows) {
        // A spare column of a wider variant: its stale position must not
        // reach the cache.
        return;
    }
    let g = P.row0 + row;
    let rm = R[t];
    let pos = rm.y;
    let at = rm.x + pos;
    let row_pairs = RP.n_head_kv * RP.half_dim;
    if (g < P.split1) {
        let r = rope_rotate(v, (g / 2u) % RP.half_dim, pos, RP.rope_pairs, RP.attn_factor);
        Y[t * P.y_stride + g] = r.x;
        Y[t * P.y_stride + g + 1u] = r.y;
    } else if (g < P.split2) {
        let p = (g - P.split1) / 2u;
        let r = rope_rotate(v, p % RP.half_dim, pos, RP.rope_pairs, RP.attn_factor);
        KC[at * row_pairs + p] = pack2x16float(r);
    } else {
        VC[at * row_pairs + (g - P.split2) / 2u] = pack2x16float(v);
    }
}
