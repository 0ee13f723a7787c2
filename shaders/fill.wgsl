// Random weights written straight into a GPU buffer in the GPU layout, for
// synthetic benchmark models (`bench --synthetic`): no file, no upload.
//
// Every word is hashed from (seed, index). Quantized blocks keep their random
// quant bits but get sane scales: the block's f16 scale halves (located by
// the host from the layout) are set to random values in [2^-14, 2^-12], so
// a weight is at most 2^-12 times the format's largest quant x sub-scale
// (0.03 for Q8_0, 1 for Q6_K) and a deep random model stays finite. Float matrices get values in [-0.02, 0.02],
// norm vectors values in [0.8, 1.2]; float padding past a row's length stays 0.

struct Params {
    words: u32,        // words to write
    block_words: u32,  // mode 0: words per block; mode 5: bytes per block
    scale_word: u32,   // mode 0: the block word holding the f16 scale(s); mode 6: first scale word
    scale_halves: u32, // mode 0: bit 0: low half is a scale, bit 1: high half
    mode: u32,         // quantized: 0 word-aligned blocks, 5 blocks at byte offsets, 6 structure
                       // of arrays (scales from scale_word on); 1 f32, 2 f16, 3 bf16, 4 f32 norm
    seed: u32,
    row_words: u32,    // float modes: words per (padded) row
    cols: u32,         // float modes: real elements per row
}

@group(0) @binding(0) var<storage, read_write> W: array<u32>;
@group(0) @binding(1) var<uniform> P: Params;

fn hash(x: u32) -> u32 {
    // PCG output permutation of an LCG step: cheap and well mixed.
    let state = x * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// Uniform in [0, 1) from 24 random bits.
fn unit(h: u32) -> f32 {
    return f32(h >> 8u) / 16777216.0;
}

fn scale_half(h: u32) -> u32 {
    // 2^-14 .. 2^-12: exponent 1..2 in f16, random mantissa.
    let f = exp2(-14.0 + 2.0 * unit(h));
    return pack2x16float(vec2<f32>(f, 0.0)) & 0xFFFFu;
}

// Words per workgroup: each invocation writes PER_INV words, 64 apart, so
// every store instruction of the workgroup covers 64 consecutive words and
// the grid stays small (a workgroup launch is not free, least of all on a
// CPU driver).
const PER_INV: u32 = 256u;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let base = (wg.y * nwg.x + wg.x) * 64u * PER_INV + lid;
    for (var k = 0u; k < PER_INV; k = k + 1u) {
        let i = base + 64u * k;
        if (i >= P.words) {
            return;
        }
        W[i] = random_word(i);
    }
}

fn random_word(i: u32) -> u32 {
    let h1 = hash(i ^ hash(P.seed));
    let h2 = hash(h1 ^ 0x9E3779B9u);
    var w = h1;
    switch P.mode {
        case 0u: {
            if (i % P.block_words == P.scale_word) {
                if ((P.scale_halves & 1u) != 0u) {
                    w = (w & 0xFFFF0000u) | scale_half(h1);
                }
                if ((P.scale_halves & 2u) != 0u) {
                    w = (w & 0x0000FFFFu) | (scale_half(h2) << 16u);
                }
            }
        }
        case 5u: {
            // Blocks back to back at byte offsets: a scale starts at every
            // multiple of block_words bytes (all even).
            if ((4u * i) % P.block_words == 0u) {
                w = (w & 0xFFFF0000u) | scale_half(h1);
            }
            if ((4u * i + 2u) % P.block_words == 0u) {
                w = (w & 0x0000FFFFu) | (scale_half(h2) << 16u);
            }
        }
        case 6u: {
            if (i >= P.scale_word) {
                w = scale_half(h1) | (scale_half(h2) << 16u);
            }
        }
        case 1u, 4u: {
            let col = i % P.row_words;
            var v = 0.0;
            if (col < P.cols) {
                v = select(0.04 * unit(h1) - 0.02, 0.8 + 0.4 * unit(h1), P.mode == 4u);
            }
            w = bitcast<u32>(v);
        }
        default: {
            // Two 16-bit values per word: f16 (mode 2) or bf16 (mode 3).
            let col = 2u * (i % P.row_words);
            var a = 0.04 * unit(h1) - 0.02;
            var b = 0.04 * unit(h2) - 0.02;
            if (col >= P.cols) { a = 0.0; }
            if (col + 1u >= P.cols) { b = 0.0; }
            if (P.mode == 2u) {
                w = pack2x16float(vec2<f32>(a, b));
            } else {
                w = (bitcast<u32>(a) >> 16u) | (bitcast<u32>(b) & 0xFFFF0000u);
            }
        }
    }
    return w;
}
