// Stores PFX_GROUP (= 1) pair `g` of cache row `row` (see f16.wgsl).
fn PFX_store(row: u32, g: u32, row_pairs: u32, v: array<vec2<f32>, PFX_GROUP>) {
    BUF[row * row_pairs + g] = pack2x16float(v[0]);
}
