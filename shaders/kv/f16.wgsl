// KV cache rows of f16 values packed in pairs: a row is `row_pairs` words.
// Instantiated per cache buffer: PFX is the function prefix (k, v, s) and
// BUF the storage buffer it reads.

const PFX_GROUP: u32 = 1u; // pairs one store call writes

// Values 2p and 2p + 1 of cache row `row`.
fn PFX_pair(row: u32, p: u32, row_pairs: u32) -> vec2<f32> {
    return unpack2x16float(BUF[row * row_pairs + p]);
}

// The same pair packed as two f16 (what the tiled attention stages).
fn PFX_word(row: u32, p: u32, row_pairs: u32) -> u32 {
    return BUF[row * row_pairs + p];
}
