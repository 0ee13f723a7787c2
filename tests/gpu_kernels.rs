//! Each GPU kernel against the CPU reference on random data, for every tensor
//! type, on odd shapes, with and without the optional GPU features.

mod common;

use llama_wgpu::gpu::kernels::Kernel;
use llama_wgpu::gpu::params::{
    AttnParams, CountParams, NormParams, RopeParams, RowMeta, Step, TopKParams,
};
use llama_wgpu::gpu::weights::{GpuMatrix, TokenRows};
use llama_wgpu::gpu::{Gpu, GpuOptions};
use llama_wgpu::model::cpu;
use llama_wgpu::quant::{dequantize_to_vec, random_tensor, TensorType};
use rand::{Rng, SeedableRng};

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// Column counts that are not multiples of the workgroup, chosen per format:
/// block-quantized rows must be whole blocks, float rows can be any length.
fn shapes(ty: TensorType) -> Vec<(usize, usize)> {
    match ty.block_size() {
        1 => vec![(37, 77), (5, 2111), (3, 1)],
        32 => vec![(37, 160), (5, 2240), (1, 32)],
        _ => vec![(37, 768), (5, 2304), (1, 256)],
    }
}

/// Input vector padded with zeros to whole 32-element items, as the engine's buffers are.
fn x_buffer(gpu: &Gpu, x: &[f32]) -> wgpu::Buffer {
    let mut padded = x.to_vec();
    padded.resize(x.len().div_ceil(32) * 32, 0.0);
    gpu.storage_init("x", bytemuck::cast_slice(&padded))
}

/// Runs y (+)= W x on the GPU and returns y. y has spare entries past the
/// matrix's rows, which must come back untouched (row groups that overhang the
/// matrix compute but must not write).
fn gpu_matvec(gpu: &Gpu, m: &GpuMatrix, x: &[f32], y0: Option<&[f32]>) -> Vec<f32> {
    const SPARE: usize = 8;
    const SENTINEL: f32 = -12345.0;
    let xb = x_buffer(gpu, x);
    let mut y = y0.map_or(vec![0.0; m.rows], |y0| y0.to_vec());
    y.resize(m.rows + SPARE, SENTINEL);
    let yb = gpu.storage_init("y", bytemuck::cast_slice(&y));
    let d = m.matvec(gpu, &xb, &yb, 0, y0.is_some());
    gpu.run(&d.iter().collect::<Vec<_>>());
    let mut got = gpu.read_f32(&yb, m.rows + SPARE).unwrap();
    assert!(
        got[m.rows..].iter().all(|&v| v == SENTINEL),
        "{} {}x{}: matvec wrote past its rows",
        m.ty,
        m.rows,
        m.cols
    );
    got.truncate(m.rows);
    got
}

/// f32 accumulation in a different order than the CPU: each output may differ
/// by a few ulps per term in the worst case, ~sqrt(n) ulps typically. Bound the
/// error by 2e-5 of sum |w_i x_i| (about 170 ulps of that magnitude), which
/// also absorbs the fused multiply-adds a GPU compiler may use.
fn check_matvec(
    ty: TensorType,
    w: &[f32],
    rows: usize,
    cols: usize,
    x: &[f32],
    got: &[f32],
    y0: Option<&[f32]>,
) {
    for r in 0..rows {
        let row = &w[r * cols..(r + 1) * cols];
        let want = cpu::dot(row, x) + y0.map_or(0.0, |y| y[r]);
        let mag: f32 = row.iter().zip(x).map(|(a, b)| (a * b).abs()).sum::<f32>()
            + y0.map_or(0.0, |y| y[r].abs());
        let err = (got[r] - want).abs();
        assert!(
            err <= 2e-5 * mag + 1e-30,
            "{ty} {rows}x{cols} row {r}: gpu {} cpu {want} (err {err:e}, scale {mag:e})",
            got[r]
        );
    }
}

/// Every type and shape under every adapter's default matvec tuning
/// (`Tuning::for_adapter`: 1 x 64, 2 x 64, 2 x 16, 4 x 32, 4 x 8) and a
/// narrow single-row one: 37 rows leave a partial row group for each.
fn matvec_all_types(portable: bool) {
    for (rows_per_group, max_group) in [(1, 64), (2, 64), (2, 16), (4, 32), (4, 8), (1, 8)] {
        let gpu = common::gpu_with(GpuOptions {
            no_f16: portable,
            no_subgroups: portable,
            no_timestamps: portable,
            matvec_rows: Some(rows_per_group),
            matvec_group: Some(max_group),
            ..Default::default()
        });
        matvec_all_types_on(&gpu);
    }
}

fn matvec_all_types_on(gpu: &Gpu) {
    let mut r = rng(1);
    for ty in TensorType::ALL {
        for (rows, cols) in shapes(ty) {
            let data = random_tensor(ty, rows * cols, &mut r, 1.0);
            let w = dequantize_to_vec(ty, &data, rows * cols).unwrap();
            let x: Vec<f32> = (0..cols).map(|_| r.random_range(-1.0f32..1.0)).collect();
            let m = GpuMatrix::upload(gpu, "w", ty, rows, cols, &data).unwrap();
            let got = gpu_matvec(gpu, &m, &x, None);
            check_matvec(ty, &w, rows, cols, &x, &got, None);
            // The fused residual form: y += W x.
            let y0: Vec<f32> = (0..rows).map(|_| r.random_range(-4.0f32..4.0)).collect();
            let got = gpu_matvec(gpu, &m, &x, Some(&y0));
            check_matvec(ty, &w, rows, cols, &x, &got, Some(&y0));
        }
    }
}

#[test]
fn matvec_matches_cpu_for_every_type_with_optional_features() {
    matvec_all_types(false);
}

#[test]
fn matvec_matches_cpu_for_every_type_portable() {
    matvec_all_types(true);
}

/// Runs Y (+)= X W^T for `n` tokens on the GPU (rows of X padded to whole
/// items, rows of Y `y_stride` apart) and returns Y.
fn gpu_matmul(
    gpu: &Gpu,
    m: &GpuMatrix,
    x: &[f32],
    n: usize,
    y_stride: usize,
    y0: Option<&[f32]>,
) -> Vec<f32> {
    let stride = m.cols.div_ceil(32) * 32;
    let mut padded = vec![0.0f32; stride * n];
    for t in 0..n {
        padded[t * stride..t * stride + m.cols].copy_from_slice(&x[t * m.cols..(t + 1) * m.cols]);
    }
    let xb = gpu.storage_init("x", bytemuck::cast_slice(&padded));
    let yb = match y0 {
        Some(y0) => gpu.storage_init("y", bytemuck::cast_slice(y0)),
        None => gpu.storage("y", (y_stride * n * 4) as u64),
    };
    let d = m.matmul(
        gpu,
        TokenRows::new(&xb, stride),
        TokenRows::new(&yb, y_stride),
        y0.is_some(),
        n,
    );
    gpu.run(&d.iter().collect::<Vec<_>>());
    gpu.read_f32(&yb, y_stride * n).unwrap()
}

/// The batched product against the CPU, token by token, with the matvec
/// tolerance (same f32 accumulation, another order). Token counts cover one
/// token, a partial tile, a full 64-token tile and a partial second tile; rows
/// cover partial and several row tiles; Y has spare columns that must stay
/// untouched (or keep their residual values). Both register tiles (8 x 8
/// for GPUs, 16 x 16 for CPU adapters).
fn matmul_all_types(portable: bool) {
    for regs in [8, 16] {
        let gpu = common::gpu_with(GpuOptions {
            no_f16: portable,
            no_subgroups: portable,
            no_timestamps: portable,
            matmul_regs: Some(regs),
            ..Default::default()
        });
        matmul_all_types_on(&gpu);
    }
}

fn matmul_all_types_on(gpu: &Gpu) {
    let mut r = rng(11);
    for ty in TensorType::ALL {
        let cols = shapes(ty)[0].1;
        for (rows, n) in [(37, 1), (130, 7), (5, 64), (67, 65)] {
            let data = random_tensor(ty, rows * cols, &mut r, 1.0);
            let w = dequantize_to_vec(ty, &data, rows * cols).unwrap();
            let x: Vec<f32> = (0..cols * n)
                .map(|_| r.random_range(-1.0f32..1.0))
                .collect();
            let m = GpuMatrix::upload(gpu, "w", ty, rows, cols, &data).unwrap();
            let y_stride = rows + 3;
            let y0: Vec<f32> = (0..y_stride * n)
                .map(|_| r.random_range(-4.0f32..4.0))
                .collect();
            for residual in [None, Some(&y0[..])] {
                let got = gpu_matmul(gpu, &m, &x, n, y_stride, residual);
                for t in 0..n {
                    let yt = &got[t * y_stride..(t + 1) * y_stride];
                    let r0 = residual.map(|y| &y[t * y_stride..t * y_stride + rows]);
                    check_matvec(ty, &w, rows, cols, &x[t * cols..(t + 1) * cols], yt, r0);
                    let spare = &yt[rows..];
                    let want_spare = residual.map_or(vec![0.0; 3], |y| {
                        y[t * y_stride + rows..(t + 1) * y_stride].to_vec()
                    });
                    assert_eq!(
                        spare,
                        &want_spare[..],
                        "{ty} {rows}x{cols} n={n}: wrote past its rows"
                    );
                }
            }
        }
    }
}

#[test]
fn matmul_matches_cpu_for_every_type_with_optional_features() {
    matmul_all_types(false);
}

#[test]
fn matmul_matches_cpu_for_every_type_portable() {
    matmul_all_types(true);
}

/// The layouts `cargo bench` measures against the engine's for Q4_0, Q5_0
/// and Q8_0 (padded to words, structure of arrays) compute the same
/// products (matvec one and several tokens, matmul) and embeddings, on odd
/// shapes: rows of 5 blocks put every other row at a half-word offset, and
/// the chunked (split) upload gives each chunk its own scales region.
#[test]
fn every_measured_layout_matches_cpu() {
    use llama_wgpu::gpu::layout::{GpuLayout, Packing};
    let gpu = common::gpu(false);
    let split = common::gpu_with(GpuOptions {
        max_binding_override: Some(4096),
        ..Default::default()
    });
    let mut r = rng(31);
    for ty in [TensorType::Q4_0, TensorType::Q5_0, TensorType::Q8_0] {
        for &pack in Packing::choices(ty) {
            // The 67 x 320 matrix in 4096-byte bindings: 3 chunks of 22 + 1 rows.
            for (rows, cols, g) in [(37, 160, &gpu), (67, 320, &split), (1, 32, &gpu)] {
                let data = random_tensor(ty, rows * cols, &mut r, 1.0);
                let w = dequantize_to_vec(ty, &data, rows * cols).unwrap();
                let x: Vec<f32> = (0..cols * 3)
                    .map(|_| r.random_range(-1.0f32..1.0))
                    .collect();
                let lay = GpuLayout::packed(ty, pack);
                {
                    let m = GpuMatrix::upload_packed(g, "w", lay, rows, cols, &data).unwrap();
                    let what = format!("{ty} {pack:?} {rows}x{cols} in {} chunks", m.chunks.len());
                    let got = gpu_matvec(g, &m, &x[..cols], None);
                    check_matvec(ty, &w, rows, cols, &x[..cols], &got, None);
                    let got = gpu_matmul(g, &m, &x, 3, rows, None);
                    for t in 0..3 {
                        let xt = &x[t * cols..(t + 1) * cols];
                        check_matvec(ty, &w, rows, cols, xt, &got[t * rows..(t + 1) * rows], None);
                    }
                    let stride = cols.div_ceil(32) * 32;
                    let mut xp = vec![0.0f32; stride * 4];
                    for t in 0..3 {
                        xp[t * stride..t * stride + cols]
                            .copy_from_slice(&x[t * cols..(t + 1) * cols]);
                    }
                    let xb = g.storage_init("x", bytemuck::cast_slice(&xp));
                    let yb = g.storage("y", (rows * 4 * 4) as u64);
                    let d = m.matvec_tokens(
                        g,
                        TokenRows::new(&xb, stride),
                        TokenRows::new(&yb, rows),
                        0,
                        false,
                        4,
                    );
                    g.run(&d.iter().collect::<Vec<_>>());
                    let got = g.read_f32(&yb, rows * 3).unwrap();
                    for t in 0..3 {
                        let xt = &x[t * cols..(t + 1) * cols];
                        check_matvec(ty, &w, rows, cols, xt, &got[t * rows..(t + 1) * rows], None);
                    }
                    for token in [0u32, rows as u32 / 2, rows as u32 - 1] {
                        let tb = g.storage_init("tok", bytemuck::bytes_of(&[token, 0, 0, 0]));
                        let yb = g.storage("y", (stride * 4) as u64);
                        let d = m.embedding(g, &tb, 0, &yb, 0);
                        g.run(&d.iter().collect::<Vec<_>>());
                        let got = g.read_f32(&yb, cols).unwrap();
                        let want = &w[token as usize * cols..(token as usize + 1) * cols];
                        assert_eq!(got, want, "{what}: embedding row {token}");
                    }
                }
            }
        }
    }
}

/// Dequantizing one row on the GPU is exact: same f32 operations as the CPU,
/// except that a compiler may fuse q * d + m into one rounding (Q4_1, Q5_1,
/// K-quant mins), hence a tolerance of one part in 1e6 of the row's largest value.
#[test]
fn embedding_matches_cpu_for_every_type_and_split() {
    for portable in [false, true] {
        let gpu = common::gpu(portable);
        let mut r = rng(2);
        for ty in TensorType::ALL {
            let (rows, cols) = (50, shapes(ty)[0].1);
            let data = random_tensor(ty, rows * cols, &mut r, 1.0);
            let w = dequantize_to_vec(ty, &data, rows * cols).unwrap();
            let m = GpuMatrix::upload(&gpu, "embd", ty, rows, cols, &data).unwrap();
            for token in [0u32, 37, 49] {
                let tb = gpu.storage_init("tok", bytemuck::bytes_of(&[token, 0, 0, 0]));
                let yb = gpu.storage("y", (cols.div_ceil(32) * 32 * 4) as u64);
                let d = m.embedding(&gpu, &tb, 0, &yb, 0);
                gpu.run(&d.iter().collect::<Vec<_>>());
                let got = gpu.read_f32(&yb, cols).unwrap();
                let want = &w[token as usize * cols..(token as usize + 1) * cols];
                let scale = want.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                let err = common::max_abs_diff(&got, want);
                assert!(
                    err <= 1e-6 * scale,
                    "{ty} token {token}: max err {err:e} (scale {scale})"
                );
            }
        }
    }
}

/// A matrix larger than the (artificially lowered) binding limit is split into
/// row chunks; results are identical to the unsplit matrix.
#[test]
fn split_matrices_match_unsplit() {
    let whole = common::gpu(false);
    let opts = llama_wgpu::gpu::GpuOptions {
        max_binding_override: Some(4096),
        ..Default::default()
    };
    let split = Gpu::new(&opts).unwrap();
    let mut r = rng(3);
    for ty in [TensorType::Q4_0, TensorType::F16, TensorType::Q6_K] {
        let (rows, cols) = (67, if ty.block_size() == 256 { 512 } else { 320 });
        let data = random_tensor(ty, rows * cols, &mut r, 1.0);
        let x: Vec<f32> = (0..cols).map(|_| r.random_range(-1.0f32..1.0)).collect();
        let a = GpuMatrix::upload(&whole, "w", ty, rows, cols, &data).unwrap();
        let b = GpuMatrix::upload(&split, "w", ty, rows, cols, &data).unwrap();
        assert_eq!(a.chunks.len(), 1);
        assert!(
            b.chunks.len() > 3,
            "{ty}: expected several chunks, got {}",
            b.chunks.len()
        );
        assert_eq!(
            gpu_matvec(&whole, &a, &x, None),
            gpu_matvec(&split, &b, &x, None),
            "{ty}"
        );
        let xs: Vec<f32> = (0..cols * 9)
            .map(|_| r.random_range(-1.0f32..1.0))
            .collect();
        assert_eq!(
            gpu_matmul(&whole, &a, &xs, 9, rows, None),
            gpu_matmul(&split, &b, &xs, 9, rows, None),
            "{ty} matmul"
        );
    }
}

#[test]
fn rmsnorm_matches_cpu() {
    for portable in [false, true] {
        let gpu = common::gpu(portable);
        let mut r = rng(4);
        for n in [1usize, 63, 576, 4097] {
            let x: Vec<f32> = (0..n).map(|_| r.random_range(-3.0f32..3.0)).collect();
            let w: Vec<f32> = (0..n).map(|_| r.random_range(0.5f32..1.5)).collect();
            let (xb, wb) = (
                gpu.storage_init("x", bytemuck::cast_slice(&x)),
                gpu.storage_init("w", bytemuck::cast_slice(&w)),
            );
            let yb = gpu.storage("y", (n * 4) as u64);
            let p = gpu.uniform(&NormParams {
                n: n as u32,
                eps: 1e-5,
                stride: 0,
                _pad: 0,
            });
            let d = gpu.dispatch(
                Kernel::RmsNorm,
                &[
                    xb.as_entire_binding(),
                    wb.as_entire_binding(),
                    yb.as_entire_binding(),
                    p.as_entire_binding(),
                ],
                [1, 1, 1],
            );
            gpu.run(&[&d]);
            let got = gpu.read_f32(&yb, n).unwrap();
            let want = cpu::rmsnorm(&x, &w, 1e-5);
            // One f32 sum of squares in another order, then elementwise products: ~1e-6 relative.
            for (i, (g, c)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - c).abs() <= 2e-6 * c.abs().max(1.0),
                    "n {n} [{i}]: {g} vs {c}"
                );
            }
        }
    }
}

#[test]
fn argmax_picks_the_first_maximum() {
    let gpu = common::gpu(false);
    let mut r = rng(5);
    for n in [1usize, 100, 32000, 49152] {
        let mut l: Vec<f32> = (0..n).map(|_| r.random_range(-10.0f32..10.0)).collect();
        // Plant a tie: the earlier index must win, as on the CPU.
        let a = r.random_range(0..n);
        let b = r.random_range(a..n);
        l[a] = 20.0;
        l[b] = 20.0;
        let lb = gpu.storage_init("logits", bytemuck::cast_slice(&l));
        let tb = gpu.storage("tok", 16);
        let p = gpu.uniform(&CountParams {
            n: n as u32,
            _pad: [0; 3],
        });
        let d = gpu.dispatch(
            Kernel::Argmax,
            &[
                lb.as_entire_binding(),
                tb.as_entire_binding(),
                p.as_entire_binding(),
            ],
            [1, 1, 1],
        );
        gpu.run(&[&d]);
        let got = u32::from_le_bytes(gpu.read_bytes(&tb, 4).unwrap()[..4].try_into().unwrap());
        assert_eq!(got, cpu::argmax(&l), "n {n}");
        assert_eq!(got as usize, a);
    }
}

/// Top-k on the GPU returns exactly the CPU's k best (value, then lowest id
/// on ties): random logits with planted ties at and around the boundary,
/// negative values and signed zeros, every k from 1 to n on small inputs.
#[test]
fn topk_matches_the_cpu_selection_with_ties() {
    let gpu = common::gpu(false);
    let mut r = rng(6);
    let mut cases: Vec<(Vec<f32>, usize)> = Vec::new();
    for n in [1usize, 5, 300, 32000, 49152] {
        let mut l: Vec<f32> = (0..n).map(|_| r.random_range(-30.0f32..10.0)).collect();
        if n >= 300 {
            // Many copies of a few values: ties inside, at and below the boundary.
            for i in 0..n / 3 {
                let j = r.random_range(0..n);
                l[j] = [4.0, 5.0, -0.0, 0.0, -7.5][i % 5];
            }
        }
        let ks: Vec<usize> = if n <= 5 {
            (1..=n).collect()
        } else {
            vec![1, 40, 104, 257, n]
        };
        for k in ks {
            cases.push((l.clone(), k));
        }
    }
    // All equal: the lowest ids win.
    cases.push((vec![1.5; 1000], 10));
    for (l, k) in cases {
        let n = l.len();
        let lb = gpu.storage_init("logits", bytemuck::cast_slice(&l));
        let ob = gpu.storage("topk", (k * 8) as u64);
        let p = gpu.uniform(&TopKParams {
            n: n as u32,
            k: k as u32,
            out_stride: (2 * k) as u32,
            _pad: 0,
        });
        let d = gpu.dispatch(
            Kernel::TopK,
            &[
                lb.as_entire_binding(),
                ob.as_entire_binding(),
                p.as_entire_binding(),
            ],
            [1, 1, 1],
        );
        gpu.run(&[&d]);
        let words: Vec<u32> =
            bytemuck::cast_slice(&gpu.read_bytes(&ob, (k * 8) as u64).unwrap()).to_vec();
        let mut got: Vec<(u32, f32)> = words
            .chunks(2)
            .map(|c| (c[0], f32::from_bits(c[1])))
            .collect();
        got.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let want = llama_wgpu::engine::top_k_logits(&l, k);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(
                (g.0, g.1.to_bits()),
                (w.0, w.1.to_bits()),
                "n {n} k {k}: got {g:?}, want {w:?}"
            );
        }
    }
}

#[test]
fn swiglu_matches_cpu() {
    let gpu = common::gpu(false);
    let mut r = rng(6);
    let n = 1000;
    let g: Vec<f32> = (0..n).map(|_| r.random_range(-6.0f32..6.0)).collect();
    let u: Vec<f32> = (0..n).map(|_| r.random_range(-2.0f32..2.0)).collect();
    let (gb, ub) = (
        gpu.storage_init("g", bytemuck::cast_slice(&g)),
        gpu.storage_init("u", bytemuck::cast_slice(&u)),
    );
    let p = gpu.uniform(&CountParams {
        n: n as u32,
        _pad: [0; 3],
    });
    let d = gpu.dispatch(
        Kernel::Swiglu,
        &[
            gb.as_entire_binding(),
            ub.as_entire_binding(),
            p.as_entire_binding(),
        ],
        [(n as u32).div_ceil(64), 1, 1],
    );
    gpu.run(&[&d]);
    let got = gpu.read_f32(&gb, n).unwrap();
    for i in 0..n {
        let want = cpu::silu(g[i]) * u[i];
        // GPU exp() may be a few ulps off the CPU's: 1e-5 relative.
        assert!(
            (got[i] - want).abs() <= 1e-5 * want.abs().max(1e-3),
            "[{i}] {} vs {want}",
            got[i]
        );
    }
}

/// RoPE + KV store, then split-sequence attention with grouped-query heads,
/// position by position up past two 256-position chunks, against the CPU's
/// RoPE (YaRN, so the attention factor is applied too) and a plain softmax
/// attention, for every cache type: the cache the GPU wrote is read back,
/// checked against llama.cpp's quantizer on the CPU's rotated keys, and
/// decoded on the CPU for the reference attention.
#[test]
fn rope_kv_and_attention_match_cpu_across_chunks() {
    use llama_wgpu::gpu::kernels::{
        attn_heads, cache_row_bytes, cache_store_pairs, CacheTypes, ATTN_CHUNK,
    };
    use llama_wgpu::model::{LlamaConfig, Rope, RopeScaling};
    use TensorType::{F16, Q4_0, Q8_0};
    let c = LlamaConfig {
        n_layer: 1,
        n_embd: 512,
        n_ff: 1,
        n_head: 8,
        n_head_kv: 2,
        head_dim: 64,
        n_vocab: 1,
        n_ctx_train: 4096,
        rope_freq_base: 10000.0,
        rope_freq_scale: 0.5,
        rope_dim: 48, // partial rotary: the last 8 pairs of each head pass through
        rope_scaling: RopeScaling::Yarn {
            orig_ctx: 256,
            ext_factor: 1.0,
            attn_factor: 1.0,
            beta_fast: 32.0,
            beta_slow: 1.0,
        },
        rope_freq_factors: None,
        rms_eps: 1e-5,
        tied_embeddings: true,
    };
    let rope_ref = Rope::new(&c, 4096);
    let (hd, kv_dim, q_dim) = (c.head_dim, c.kv_dim(), c.n_head * c.head_dim);
    let n_ctx = 2 * ATTN_CHUNK as usize + 50;
    let max_chunks = n_ctx.div_ceil(ATTN_CHUNK as usize);
    for (portable, kt, vt) in [
        (false, F16, F16),
        (true, F16, F16),
        (false, Q8_0, Q8_0),
        (false, Q4_0, Q4_0),
        (true, Q8_0, Q4_0),
    ] {
        let cache = CacheTypes { k: kt, v: vt };
        let gpu = common::gpu(portable);
        let mut r = rng(7);
        let pairs = c.rope_dim / 2;
        let mut table = Vec::with_capacity(n_ctx * pairs * 2);
        for p in 0..n_ctx {
            for i in 0..pairs {
                let (sin, cos) = rope_ref.angle(p, i).sin_cos();
                table.extend([cos, sin]);
            }
        }
        let (k_row, v_row) = (
            cache_row_bytes(kt, kv_dim as u64),
            cache_row_bytes(vt, kv_dim as u64),
        );
        let cs = gpu.storage_init("cs", bytemuck::cast_slice(&table));
        let (q, k, v) = (
            gpu.storage("q", (q_dim * 4) as u64),
            gpu.storage("k", (kv_dim * 4) as u64),
            gpu.storage("v", (kv_dim * 4) as u64),
        );
        let (kc, vc) = (
            gpu.storage("kc", n_ctx as u64 * k_row),
            gpu.storage("vc", n_ctx as u64 * v_row),
        );
        let op = gpu.storage("op", (c.n_head * max_chunks * hd * 4) as u64);
        let ml = gpu.storage("ml", (c.n_head * max_chunks * 8) as u64);
        let out = gpu.storage("out", (q_dim * 4) as u64);
        let step = gpu.uniform(&Step {
            n_rows: 1,
            row0: 0,
            n_chunks: 1,
            _pad: 0,
        });
        let rows = gpu.storage("rows", 8);
        let rp = gpu.uniform(&RopeParams {
            n_head: c.n_head as u32,
            n_head_kv: c.n_head_kv as u32,
            half_dim: (hd / 2) as u32,
            rope_pairs: pairs as u32,
            q_stride: 0,
            kv_stride: 0,
            attn_factor: rope_ref.attn_factor,
            _pad: 0,
        });
        let ap = gpu.uniform(&AttnParams {
            n_head: c.n_head as u32,
            n_head_kv: c.n_head_kv as u32,
            head_dim: hd as u32,
            max_chunks: max_chunks as u32,
            scale: 1.0 / (hd as f32).sqrt(),
            q_stride: 0,
            _pad: [0; 2],
        });
        let nk = kv_dim / 2;
        let invocations =
            q_dim / 2 + nk.div_ceil(cache_store_pairs(kt)) + nk.div_ceil(cache_store_pairs(vt));
        let rope = gpu.dispatch(
            Kernel::RopeKv { cache },
            &[
                q.as_entire_binding(),
                k.as_entire_binding(),
                v.as_entire_binding(),
                cs.as_entire_binding(),
                kc.as_entire_binding(),
                vc.as_entire_binding(),
                rp.as_entire_binding(),
                rows.as_entire_binding(),
            ],
            [invocations.div_ceil(64) as u32, 1, 1],
        );
        let ab = [
            q.as_entire_binding(),
            kc.as_entire_binding(),
            vc.as_entire_binding(),
            op.as_entire_binding(),
            ml.as_entire_binding(),
            out.as_entire_binding(),
            ap.as_entire_binding(),
            step.as_entire_binding(),
            rows.as_entire_binding(),
        ];
        let heads = attn_heads(c.n_head as u32, c.n_head_kv as u32, hd as u32);
        assert_eq!(
            heads, 4,
            "one workgroup for each KV head's four query heads"
        );
        let groups = c.n_head as u32 / heads;
        let partial = gpu.dispatch(
            Kernel::AttnPartial {
                cache,
                head_dim: hd as u32,
                heads,
            },
            &ab,
            [1, groups, 1],
        );
        let combine = gpu.dispatch(Kernel::AttnCombine, &ab, [c.n_head as u32, 1, 1]);

        let (mut k_rot, mut v_all) = (Vec::new(), Vec::new());
        let mut worst = 0.0f32;
        let mut quant_off = 0usize;
        for pos in 0..n_ctx {
            // Spread 3 gives attention scores of several units: a peaked, not uniform, softmax.
            let mut qv: Vec<f32> = (0..q_dim).map(|_| r.random_range(-3.0f32..3.0)).collect();
            let mut kv: Vec<f32> = (0..kv_dim).map(|_| r.random_range(-3.0f32..3.0)).collect();
            let vv: Vec<f32> = (0..kv_dim).map(|_| r.random_range(-1.0f32..1.0)).collect();
            gpu.queue.write_buffer(&q, 0, bytemuck::cast_slice(&qv));
            gpu.queue.write_buffer(&k, 0, bytemuck::cast_slice(&kv));
            gpu.queue.write_buffer(&v, 0, bytemuck::cast_slice(&vv));
            let n_chunks = (pos as u32 + 1).div_ceil(ATTN_CHUNK);
            gpu.queue.write_buffer(
                &step,
                0,
                bytemuck::bytes_of(&Step {
                    n_rows: 1,
                    row0: 0,
                    n_chunks,
                    _pad: 0,
                }),
            );
            gpu.queue.write_buffer(
                &rows,
                0,
                bytemuck::bytes_of(&RowMeta {
                    cache_row: 0,
                    pos: pos as u32,
                }),
            );
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                rope.encode(&mut pass);
                partial.encode_with(&mut pass, [n_chunks, groups, 1]);
                combine.encode(&mut pass);
            }
            gpu.queue.submit([enc.finish()]);

            for h in 0..c.n_head {
                rope_ref.rotate(&mut qv[h * hd..(h + 1) * hd], pos);
            }
            for h in 0..c.n_head_kv {
                rope_ref.rotate(&mut kv[h * hd..(h + 1) * hd], pos);
            }
            k_rot.extend_from_slice(&kv);
            v_all.extend_from_slice(&vv);
            if ![0, 1, 255, 256, 257, 511, 512, n_ctx - 1].contains(&pos) {
                continue;
            }
            // RoPE is exact up to the f32 rotation: compare the rotated Q.
            let q_gpu = gpu.read_f32(&q, q_dim).unwrap();
            let e = common::max_abs_diff(&q_gpu, &qv);
            assert!(e <= 1e-5, "pos {pos}: rotated q differs by {e}");
            // The cache as the GPU wrote it, decoded on the CPU.
            let n_rows = pos + 1;
            let k_cache = decode_cache_rows(
                kt,
                &gpu.read_bytes(&kc, n_rows as u64 * k_row).unwrap(),
                kv_dim,
            );
            let v_cache = decode_cache_rows(
                vt,
                &gpu.read_bytes(&vc, n_rows as u64 * v_row).unwrap(),
                kv_dim,
            );
            // Against llama.cpp's quantizer on the CPU's rotated keys: a
            // value may round the other way when the rotations differ by
            // an ulp at a .5 boundary (at most one quantization step).
            for (name, ty, got, want) in [("k", kt, &k_cache, &k_rot), ("v", vt, &v_cache, &v_all)]
            {
                let want = cpu::round_through(ty, &want[..n_rows * kv_dim]);
                for (row, (g, w)) in got.chunks(kv_dim).zip(want.chunks(kv_dim)).enumerate() {
                    for (b, (gb, wb)) in g.chunks(32).zip(w.chunks(32)).enumerate() {
                        let amax = wb.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                        let step = amax / if ty == Q8_0 { 127.0 } else { 8.0 };
                        for (x, y) in gb.iter().zip(wb) {
                            if x != y {
                                quant_off += 1;
                                assert!(
                                    ty != F16 && (x - y).abs() <= step * 1.01,
                                    "{cache:?} {name} row {row} block {b}: gpu {x} cpu {y}"
                                );
                            }
                        }
                    }
                }
            }
            let got = gpu.read_f32(&out, q_dim).unwrap();
            for h in 0..c.n_head {
                let g = h / c.gqa_group();
                let mut s: Vec<f32> = (0..=pos)
                    .map(|p| {
                        cpu::dot(
                            &qv[h * hd..(h + 1) * hd],
                            &k_cache[p * kv_dim + g * hd..][..hd],
                        ) / (hd as f32).sqrt()
                    })
                    .collect();
                cpu::softmax(&mut s);
                for d in 0..hd {
                    let want: f32 = (0..=pos)
                        .map(|p| s[p] * v_cache[p * kv_dim + g * hd + d])
                        .sum();
                    let err = (got[h * hd + d] - want).abs();
                    worst = worst.max(err);
                    // Outputs are weighted means of values in [-1, 1]: f32 sums of a few
                    // hundred terms in another order, plus exp() differing by ulps: 2e-5.
                    assert!(
                        err <= 2e-5,
                        "{cache:?} portable {portable} pos {pos} head {h} dim {d}: gpu {} cpu {want}",
                        got[h * hd + d]
                    );
                }
            }
        }
        eprintln!(
            "attention {cache:?} (portable {portable}): max abs error {worst:.2e} over {n_ctx} positions; {quant_off} cached values one quantization step from llama.cpp's quantizer"
        );
        // Rounding ties are rare: a kernel that quantized differently would be far above this.
        assert!(
            quant_off <= 50,
            "{cache:?}: {quant_off} cached values differ from llama.cpp's quantizer"
        );
    }
}

/// Rows of a KV cache buffer in the GPU's layout (shaders/kv/: a row's
/// quants, then its f16 scales) as f32, through the CPU's dequantizer of
/// llama.cpp's block format.
fn decode_cache_rows(ty: TensorType, bytes: &[u8], n: usize) -> Vec<f32> {
    use llama_wgpu::gpu::kernels::cache_row_bytes;
    use llama_wgpu::quant::dequantize_to_vec;
    let row = cache_row_bytes(ty, n as u64) as usize;
    let quant_bytes = match ty {
        TensorType::F16 => {
            return bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect()
        }
        TensorType::Q8_0 => n,
        _ => n / 2,
    };
    let per_block = quant_bytes / (n / 32);
    let mut blocks = Vec::new();
    for r in bytes.chunks_exact(row) {
        for b in 0..n / 32 {
            blocks.extend_from_slice(&r[quant_bytes + 2 * b..quant_bytes + 2 * b + 2]);
            blocks.extend_from_slice(&r[b * per_block..(b + 1) * per_block]);
        }
    }
    dequantize_to_vec(ty, &blocks, bytes.len() / row * n).unwrap()
}

/// Batched causal attention (prefill's tiled kernel) against a plain softmax
/// over the same f16 cache: grouped-query heads, head sizes 64, 80 and 128,
/// batches that start at position 0 or deep in the context, partial query
/// tiles and KV tiles. Rows past the batch in the output stay untouched.
#[test]
fn tiled_batch_attention_matches_cpu() {
    use llama_wgpu::gpu::kernels::{CacheTypes, ATTN_TILE_Q};
    use TensorType::{F16, Q4_0, Q8_0};
    let gpu = common::gpu(false);
    let mut r = rng(17);
    const SENTINEL: f32 = -777.0;
    for (hd, n_head, n_head_kv, pos, t, kt, vt) in [
        (64, 6, 2, 0, 37, F16, F16),
        (80, 4, 4, 300, 20, F16, F16),
        (128, 8, 2, 33, 1, F16, F16),
        (64, 9, 3, 70, 64, F16, F16),
        (64, 6, 2, 0, 37, Q8_0, Q8_0),
        (128, 8, 2, 33, 20, Q4_0, Q4_0),
        (64, 9, 3, 70, 64, Q8_0, Q4_0),
    ] {
        let cache = CacheTypes { k: kt, v: vt };
        let (kv_dim, q_dim) = (n_head_kv * hd, n_head * hd);
        let n_pos = pos + t;
        // The sequence's slot starts at cache row 11: rows before it belong to
        // another sequence and must not be read.
        const FIRST_ROW: usize = 11;
        // Spread 3: scores of several units, a peaked softmax.
        let kf: Vec<f32> = (0..n_pos * kv_dim)
            .map(|_| r.random_range(-3.0f32..3.0))
            .collect();
        let vf: Vec<f32> = (0..n_pos * kv_dim)
            .map(|_| r.random_range(-1.0f32..1.0))
            .collect();
        // What the kernel computes with: the cache as the CPU decodes it,
        // then rounded to f16 (the kernel stages decoded tiles in workgroup
        // memory as f16 pairs; a decoded d x q is exact in f32, so both
        // sides round the same value).
        let staged = |ty, x: &[f32]| cpu::round_through(F16, &cpu::round_through(ty, x));
        let (kc, vc) = (staged(kt, &kf), staged(vt, &vf));
        let other = vec![1000.0f32; FIRST_ROW * kv_dim];
        let kc_slots = encode_cache_rows(kt, &[other.clone(), kf].concat(), kv_dim);
        let vc_slots = encode_cache_rows(vt, &[other, vf].concat(), kv_dim);
        let q: Vec<f32> = (0..t * q_dim)
            .map(|_| r.random_range(-3.0f32..3.0))
            .collect();
        let qb = gpu.storage_init("q", bytemuck::cast_slice(&q));
        let kb = gpu.storage_init("kc", &kc_slots);
        let vb = gpu.storage_init("vc", &vc_slots);
        let meta: Vec<RowMeta> = (0..t)
            .map(|i| RowMeta {
                cache_row: FIRST_ROW as u32,
                pos: (pos + i) as u32,
            })
            .collect();
        let rows = gpu.storage_init("rows", bytemuck::cast_slice(&meta));
        let spare = vec![SENTINEL; (t + 3) * q_dim];
        let ob = gpu.storage_init("o", bytemuck::cast_slice(&spare));
        let ap = gpu.uniform(&AttnParams {
            n_head: n_head as u32,
            n_head_kv: n_head_kv as u32,
            head_dim: hd as u32,
            max_chunks: 1,
            scale: 1.0 / (hd as f32).sqrt(),
            q_stride: q_dim as u32,
            _pad: [0; 2],
        });
        let step = gpu.uniform(&Step {
            n_rows: t as u32,
            row0: t as u32,
            n_chunks: 0,
            _pad: 0,
        });
        let d = gpu.dispatch(
            Kernel::AttnTile {
                head_dim: hd as u32,
                cache,
            },
            &[
                qb.as_entire_binding(),
                kb.as_entire_binding(),
                vb.as_entire_binding(),
                ob.as_entire_binding(),
                ap.as_entire_binding(),
                step.as_entire_binding(),
                rows.as_entire_binding(),
            ],
            [(t as u32).div_ceil(ATTN_TILE_Q), n_head as u32, 1],
        );
        gpu.run(&[&d]);
        let got = gpu.read_f32(&ob, (t + 3) * q_dim).unwrap();
        assert!(
            got[t * q_dim..].iter().all(|&v| v == SENTINEL),
            "head_dim {hd}: wrote past the batch"
        );
        let mut worst = 0.0f32;
        for i in 0..t {
            for h in 0..n_head {
                let g = h / (n_head / n_head_kv);
                let qh = &q[i * q_dim + h * hd..][..hd];
                let mut s: Vec<f32> = (0..=pos + i)
                    .map(|p| cpu::dot(qh, &kc[p * kv_dim + g * hd..][..hd]) / (hd as f32).sqrt())
                    .collect();
                cpu::softmax(&mut s);
                for dim in 0..hd {
                    let want: f32 = (0..=pos + i)
                        .map(|p| s[p] * vc[p * kv_dim + g * hd + dim])
                        .sum();
                    let err = (got[i * q_dim + h * hd + dim] - want).abs();
                    worst = worst.max(err);
                    // As the decode attention test: weighted means of values
                    // in [-1, 1], sums in another order, exp() within ulps.
                    assert!(
                        err <= 2e-5,
                        "{cache:?} head_dim {hd} pos {pos} token {i} head {h} dim {dim}: gpu {} cpu {want}",
                        got[i * q_dim + h * hd + dim]
                    );
                }
            }
        }
        eprintln!(
            "tiled attention {cache:?} head_dim {hd}, pos {pos}, {t} tokens: max abs error {worst:.2e}"
        );
    }
}

/// Values as KV cache rows of `n` in the GPU's layout (shaders/kv/):
/// llama.cpp's quantizer per block, then each row's quants followed by its
/// f16 scales (the inverse of `decode_cache_rows`).
fn encode_cache_rows(ty: TensorType, x: &[f32], n: usize) -> Vec<u8> {
    use llama_wgpu::gpu::kernels::cache_row_bytes;
    if ty == TensorType::F16 {
        return x
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
    }
    let row = cache_row_bytes(ty, n as u64) as usize;
    let block = ty.type_size();
    let mut out = Vec::new();
    for r in x.chunks(n) {
        let q = llama_wgpu::quant::quantize(ty, r).unwrap();
        let mut bytes = vec![0u8; row];
        let per = block - 2;
        for (b, blk) in q.chunks(block).enumerate() {
            bytes[b * per..(b + 1) * per].copy_from_slice(&blk[2..]);
            bytes[n / 32 * per + 2 * b..n / 32 * per + 2 * b + 2].copy_from_slice(&blk[..2]);
        }
        out.extend(bytes);
    }
    out
}

/// Random weights written on the GPU (synthetic benchmark models): for every
/// type, every dequantized value is finite and small (scales land in the
/// block's real scale field, or a random f16 there would give Inf/NaN or
/// huge values in some of the thousands of blocks), the values vary, and
/// float padding past the row length stays zero.
#[test]
fn random_gpu_weights_are_finite_and_small_for_every_type() {
    let gpu = common::gpu(false);
    for ty in TensorType::ALL {
        // Scales are at most 2^-12: the largest value is 2^-12 times the
        // format's largest |quant x sub-scale| (+ min); floats are within 0.02.
        let largest = match ty {
            TensorType::F32 | TensorType::F16 | TensorType::BF16 => 0.0201 * 4096.0,
            TensorType::Q4_0 => 8.0,
            TensorType::Q4_1 | TensorType::Q5_0 => 16.0,
            TensorType::Q5_1 => 32.0,
            TensorType::Q8_0 | TensorType::Q3_K => 128.0,
            TensorType::Q2_K => 15.0 * 3.0 + 15.0,
            TensorType::Q4_K => 63.0 * 15.0 + 63.0,
            TensorType::Q5_K => 63.0 * 31.0 + 63.0,
            TensorType::Q6_K => 128.0 * 32.0,
        };
        let bound = largest / 4096.0;
        let (rows, cols) = (300, if ty.block_size() == 256 { 512 } else { 96 });
        let cols = if ty.block_size() == 1 { 83 } else { cols };
        let m = GpuMatrix::random(&gpu, "w", ty, rows, cols, 5).unwrap();
        let padded = cols.div_ceil(32) * 32;
        let mut seen = std::collections::HashSet::new();
        for token in [0u32, 1, 150, 299] {
            let tb = gpu.storage_init("tok", bytemuck::bytes_of(&[token, 0, 0, 0]));
            let yb = gpu.storage("y", (padded * 4) as u64);
            let d = m.embedding(&gpu, &tb, 0, &yb, 0);
            gpu.run(&d.iter().collect::<Vec<_>>());
            let row = gpu.read_f32(&yb, padded).unwrap();
            for (i, v) in row.iter().enumerate() {
                assert!(
                    v.is_finite() && v.abs() <= bound,
                    "{ty} row {token} [{i}] = {v}"
                );
                if i >= cols {
                    assert_eq!(*v, 0.0, "{ty}: padding past the row must stay zero");
                }
            }
            seen.extend(row[..cols].iter().map(|v| v.to_bits()));
        }
        assert!(
            seen.len() > cols / 4,
            "{ty}: only {} distinct values",
            seen.len()
        );
    }
}

/// The few-token matvec (several sequences' decode tokens, short prompt
/// chunks): every type and shape at 1, 2, 3, 8 and 16 tokens, each token
/// checked with the matvec tolerance against the CPU, with and without the
/// fused residual, under the GPU (1 row per group of 64, 16 tokens a
/// dispatch) and CPU-adapter (8 rows per group of 8, 4 tokens a dispatch)
/// tunings with and without subgroups, and two more with subgroups. A step of t tokens runs the
/// narrowest variant of width >= t; the rows of Y past the variant's width
/// must stay untouched.
fn multi_all_types(portable: bool) {
    // (rows per group, group, tokens per dispatch): the GPU default, the
    // CPU-adapter default (16 tokens as four dispatches of four), and others.
    let tunings: &[(u32, u32, u32)] = if portable {
        &[(1, 64, 16), (8, 8, 4)]
    } else {
        &[(1, 64, 16), (2, 16, 8), (4, 8, 2), (8, 8, 4)]
    };
    for &(multi_rows, max_group, multi_tokens) in tunings {
        let gpu = common::gpu_with(GpuOptions {
            no_f16: portable,
            no_subgroups: portable,
            no_timestamps: portable,
            matvec_group: Some(max_group),
            multi_rows: Some(multi_rows),
            multi_tokens: Some(multi_tokens),
            ..Default::default()
        });
        let mut r = rng(23);
        const SENTINEL: f32 = -4321.0;
        for ty in TensorType::ALL {
            for (rows, cols) in shapes(ty) {
                let data = random_tensor(ty, rows * cols, &mut r, 1.0);
                let w = dequantize_to_vec(ty, &data, rows * cols).unwrap();
                let m = GpuMatrix::upload(&gpu, "w", ty, rows, cols, &data).unwrap();
                let stride = cols.div_ceil(32) * 32;
                let y_stride = rows + 2;
                for t in [1usize, 2, 3, 8, 16] {
                    let width = t.next_power_of_two() as u32;
                    let x: Vec<f32> = (0..cols * t)
                        .map(|_| r.random_range(-1.0f32..1.0))
                        .collect();
                    // X holds `width` rows (the spare ones stale, as in a real step).
                    let mut xp = vec![0.5f32; stride * width as usize];
                    for j in 0..t {
                        xp[j * stride..j * stride + cols]
                            .copy_from_slice(&x[j * cols..(j + 1) * cols]);
                        xp[j * stride + cols..(j + 1) * stride].fill(0.0);
                    }
                    let y0: Vec<f32> = (0..y_stride * width as usize)
                        .map(|_| r.random_range(-4.0f32..4.0))
                        .collect();
                    for residual in [false, true] {
                        let mut y = if residual {
                            y0.clone()
                        } else {
                            vec![0.0; y0.len()]
                        };
                        // Past the variant's width: must stay as they are.
                        y.extend(std::iter::repeat_n(SENTINEL, y_stride));
                        let xb = gpu.storage_init("x", bytemuck::cast_slice(&xp));
                        let yb = gpu.storage_init("y", bytemuck::cast_slice(&y));
                        let d = m.matvec_tokens(
                            &gpu,
                            TokenRows::new(&xb, stride),
                            TokenRows::new(&yb, y_stride),
                            0,
                            residual,
                            width,
                        );
                        gpu.run(&d.iter().collect::<Vec<_>>());
                        let got = gpu.read_f32(&yb, y.len()).unwrap();
                        for j in 0..t {
                            let yj = &got[j * y_stride..j * y_stride + rows];
                            let r0 = residual.then(|| &y0[j * y_stride..j * y_stride + rows]);
                            check_matvec(ty, &w, rows, cols, &x[j * cols..(j + 1) * cols], yj, r0);
                            // The two columns of Y between matrices' rows are not written.
                            assert_eq!(
                                &got[j * y_stride + rows..(j + 1) * y_stride],
                                &y[j * y_stride + rows..(j + 1) * y_stride],
                                "{ty} {rows}x{cols} t={t}: wrote past its rows"
                            );
                        }
                        assert!(
                            got[width as usize * y_stride..]
                                .iter()
                                .all(|&v| v == SENTINEL),
                            "{ty} {rows}x{cols} t={t}: wrote past its tokens"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn few_token_matvec_matches_cpu_for_every_type_with_optional_features() {
    multi_all_types(false);
}

#[test]
fn few_token_matvec_matches_cpu_for_every_type_portable() {
    multi_all_types(true);
}

/// The fused decode kernels against the CPU: RMSNorm folded into one
/// matvec over Q, K and V's rows that writes three buffers, and into one
/// over interleaved gate/up rows with SwiGLU in its epilogue; and the
/// matmul reading those fused matrices by row ranges (prefill). Every type
/// on odd shapes (37 query rows, 5 KV rows, 21 FFN rows: split points and
/// pairs across row groups), 1, 3 and 16 tokens, under the GPU and the
/// CPU-adapter tunings. Tolerances: the matvec's on the normalised input
/// (the norm's scale is applied to the sum instead of to x: a few ulps
/// more), and for SwiGLU that error carried through silu(g) * u (|silu'| <=
/// 1.1).
fn fused_all_types(portable: bool) {
    use llama_wgpu::gpu::weights::{FoldedNorm, Outputs};
    // (matvec rows, group, multi rows, multi tokens): the GPU defaults
    // portable (GPUs without subgroups), the CPU-adapter defaults with
    // subgroups (lavapipe's own path); each half the time of both.
    let tuning = if portable {
        (1, 64, 1, 16)
    } else {
        (4, 8, 8, 4)
    };
    {
        let (mr, group, multi_rows, multi_tokens) = tuning;
        let gpu = common::gpu_with(GpuOptions {
            no_f16: portable,
            no_subgroups: portable,
            no_timestamps: portable,
            matvec_rows: Some(mr),
            matvec_group: Some(group),
            multi_rows: Some(multi_rows),
            multi_tokens: Some(multi_tokens),
            ..Default::default()
        });
        let mut r = rng(41);
        const SENTINEL: f32 = -777.0;
        let (nq, nkv, nff) = (37usize, 5usize, 21usize);
        for ty in TensorType::ALL {
            let cols = shapes(ty)[0].1;
            let row_bytes = ty.row_bytes(cols).unwrap();
            let parts: Vec<Vec<u8>> = [nq, nkv, nkv, nff, nff]
                .iter()
                .map(|&n| random_tensor(ty, n * cols, &mut r, 1.0))
                .collect();
            let deq: Vec<Vec<f32>> = parts
                .iter()
                .map(|p| dequantize_to_vec(ty, p, p.len() / row_bytes * cols).unwrap())
                .collect();
            let qkv = GpuMatrix::upload(&gpu, "qkv", ty, nq + 2 * nkv, cols, &parts[..3].concat())
                .unwrap();
            let mut inter = Vec::new();
            for i in 0..nff {
                inter.extend_from_slice(&parts[3][i * row_bytes..(i + 1) * row_bytes]);
                inter.extend_from_slice(&parts[4][i * row_bytes..(i + 1) * row_bytes]);
            }
            let gate_up = GpuMatrix::upload(&gpu, "gate_up", ty, 2 * nff, cols, &inter).unwrap();
            let g: Vec<f32> = (0..cols).map(|_| r.random_range(0.5f32..1.5)).collect();
            let gb = gpu.storage_init("g", bytemuck::cast_slice(&g));
            let stride = cols.div_ceil(32) * 32;
            for t in [1usize, 3, 16] {
                let width = t.next_power_of_two();
                let x: Vec<f32> = (0..cols * t)
                    .map(|_| r.random_range(-2.0f32..2.0))
                    .collect();
                let xn: Vec<Vec<f32>> = (0..t)
                    .map(|j| cpu::rmsnorm(&x[j * cols..(j + 1) * cols], &g, 1e-5))
                    .collect();
                // Spare token rows past t hold stale values, as in a real step.
                let mut xp = vec![0.25f32; stride * width];
                for j in 0..t {
                    xp[j * stride..j * stride + cols].copy_from_slice(&x[j * cols..(j + 1) * cols]);
                    xp[j * stride + cols..(j + 1) * stride].fill(0.0);
                }
                let xb = gpu.storage_init("x", bytemuck::cast_slice(&xp));
                let norm = Some(FoldedNorm {
                    weight: &gb,
                    n: cols,
                    eps: 1e-5,
                });
                let ybuf = |n: usize| {
                    gpu.storage_init("y", bytemuck::cast_slice(&vec![SENTINEL; n * width]))
                };
                let (qb, kb, vb) = (ybuf(nq + 1), ybuf(nkv + 2), ybuf(nkv + 2));
                let out = Outputs::Split3 {
                    ys: [&qb, &kb, &vb],
                    y_stride: nq + 1,
                    s_stride: nkv + 2,
                    splits: [nq, nq + nkv],
                };
                let d =
                    qkv.matvec_fused(&gpu, TokenRows::new(&xb, stride), norm, out, width as u32);
                let hb = ybuf(nff + 1);
                let mut all = d;
                all.extend(gate_up.matvec_fused(
                    &gpu,
                    TokenRows::new(&xb, stride),
                    norm,
                    Outputs::Glu {
                        y: &hb,
                        y_stride: nff + 1,
                    },
                    width as u32,
                ));
                gpu.run(&all.iter().collect::<Vec<_>>());
                for (buf, w, rows, ys) in [
                    (&qb, &deq[0], nq, nq + 1),
                    (&kb, &deq[1], nkv, nkv + 2),
                    (&vb, &deq[2], nkv, nkv + 2),
                ] {
                    let got = gpu.read_f32(buf, ys * width).unwrap();
                    for j in 0..t {
                        check_matvec(ty, w, rows, cols, &xn[j], &got[j * ys..j * ys + rows], None);
                        assert!(
                            got[j * ys + rows..(j + 1) * ys]
                                .iter()
                                .all(|&v| v == SENTINEL),
                            "{ty} t={t}: wrote past its rows"
                        );
                    }
                }
                let got = gpu.read_f32(&hb, (nff + 1) * width).unwrap();
                for j in 0..t {
                    for i in 0..nff {
                        fn row(m: &[f32], i: usize, cols: usize) -> &[f32] {
                            &m[i * cols..(i + 1) * cols]
                        }
                        let (gs, us) = (
                            cpu::dot(row(&deq[3], i, cols), &xn[j]),
                            cpu::dot(row(&deq[4], i, cols), &xn[j]),
                        );
                        let mag = |m: &[f32]| {
                            row(m, i, cols)
                                .iter()
                                .zip(&xn[j])
                                .map(|(a, b)| (a * b).abs())
                                .sum::<f32>()
                        };
                        let (eg, eu) = (2e-5 * mag(&deq[3]), 2e-5 * mag(&deq[4]));
                        let want = cpu::silu(gs) * us;
                        let bound = 1.1 * eg * (us.abs() + eu) + cpu::silu(gs).abs() * eu + 1e-30;
                        let v = got[j * (nff + 1) + i];
                        assert!(
                            (v - want).abs() <= bound,
                            "{ty} t={t} ffn row {i}: gpu {v} cpu {want} (bound {bound:e})"
                        );
                    }
                    assert_eq!(
                        got[j * (nff + 1) + nff],
                        SENTINEL,
                        "{ty} t={t}: SwiGLU wrote past its rows"
                    );
                }
            }
            // Prefill reads the fused matrices by row ranges (7 tokens, normalised input).
            let n = 7;
            let xs: Vec<f32> = (0..cols * n)
                .map(|_| r.random_range(-1.0f32..1.0))
                .collect();
            let mut xp = vec![0.0f32; stride * n];
            for j in 0..n {
                xp[j * stride..j * stride + cols].copy_from_slice(&xs[j * cols..(j + 1) * cols]);
            }
            let xb = gpu.storage_init("x", bytemuck::cast_slice(&xp));
            for (m, rows, w, what) in [
                (&qkv, (nq, 1, nkv), &deq[1], "k range"),
                (&qkv, (nq + nkv, 1, nkv), &deq[2], "v range"),
                (&gate_up, (0, 2, nff), &deq[3], "gate rows"),
                (&gate_up, (1, 2, nff), &deq[4], "up rows"),
            ] {
                let yb = gpu.storage("y", (rows.2 * n * 4) as u64);
                let d = m.matmul_rows(
                    &gpu,
                    TokenRows::new(&xb, stride),
                    TokenRows::new(&yb, rows.2),
                    false,
                    n,
                    rows,
                );
                gpu.run(&d.iter().collect::<Vec<_>>());
                let got = gpu.read_f32(&yb, rows.2 * n).unwrap();
                for j in 0..n {
                    let _ = what;
                    check_matvec(
                        ty,
                        w,
                        rows.2,
                        cols,
                        &xs[j * cols..(j + 1) * cols],
                        &got[j * rows.2..(j + 1) * rows.2],
                        None,
                    );
                }
            }
        }
    }
}

#[test]
fn fused_decode_kernels_match_cpu_for_every_type_with_optional_features() {
    fused_all_types(false);
}

#[test]
fn fused_decode_kernels_match_cpu_for_every_type_portable() {
    fused_all_types(true);
}

/// Fused matrices split into row chunks (an artificially low binding
/// limit: chunks of 10 rows, so Q/K/V's split points 37 and 42 fall inside
/// chunks and gate/up pairs must stay whole) give exactly the unsplit
/// results, decode and few-token.
#[test]
fn fused_matrices_split_into_chunks_match_unsplit() {
    use llama_wgpu::gpu::weights::{FoldedNorm, Outputs};
    let whole = common::gpu(false);
    let split = common::gpu_with(GpuOptions {
        max_binding_override: Some(2048),
        ..Default::default()
    });
    let mut r = rng(43);
    let (nq, nkv, nff, cols) = (37usize, 5usize, 21usize, 320usize);
    let ty = TensorType::Q4_0;
    let qkv_data = random_tensor(ty, (nq + 2 * nkv) * cols, &mut r, 1.0);
    let ffn_data = random_tensor(ty, 2 * nff * cols, &mut r, 1.0);
    let g: Vec<f32> = (0..cols).map(|_| r.random_range(0.5f32..1.5)).collect();
    let x: Vec<f32> = (0..cols * 4)
        .map(|_| r.random_range(-2.0f32..2.0))
        .collect();
    let run = |gpu: &Gpu, tokens: u32| -> Vec<Vec<f32>> {
        let qkv = GpuMatrix::upload(gpu, "qkv", ty, nq + 2 * nkv, cols, &qkv_data).unwrap();
        let ffn = GpuMatrix::upload(gpu, "ffn", ty, 2 * nff, cols, &ffn_data).unwrap();
        let gb = gpu.storage_init("g", bytemuck::cast_slice(&g));
        let xb = gpu.storage_init("x", bytemuck::cast_slice(&x));
        let norm = Some(FoldedNorm {
            weight: &gb,
            n: cols,
            eps: 1e-5,
        });
        let ys: Vec<wgpu::Buffer> = [nq, nkv, nkv, nff]
            .iter()
            .map(|&n| gpu.storage("y", (n * 4 * 4) as u64))
            .collect();
        let out = Outputs::Split3 {
            ys: [&ys[0], &ys[1], &ys[2]],
            y_stride: nq,
            s_stride: nkv,
            splits: [nq, nq + nkv],
        };
        let mut d = qkv.matvec_fused(gpu, TokenRows::new(&xb, cols), norm, out, tokens);
        d.extend(ffn.matvec_fused(
            gpu,
            TokenRows::new(&xb, cols),
            norm,
            Outputs::Glu {
                y: &ys[3],
                y_stride: nff,
            },
            tokens,
        ));
        gpu.run(&d.iter().collect::<Vec<_>>());
        ys.iter()
            .zip([nq, nkv, nkv, nff])
            .map(|(b, n)| gpu.read_f32(b, n * tokens as usize).unwrap())
            .collect()
    };
    for tokens in [1, 4] {
        let chunks = GpuMatrix::upload(&split, "qkv", ty, nq + 2 * nkv, cols, &qkv_data)
            .unwrap()
            .chunks
            .len();
        assert!(chunks >= 4, "expected several chunks, got {chunks}");
        assert_eq!(run(&whole, tokens), run(&split, tokens), "{tokens} tokens");
    }
}

/// Decode attention for a step whose tokens belong to different sequences:
/// each reads only its own slot of the cache, up to its own position
/// (lengths 1 to past one 256-position chunk), with grouped-query heads
/// (3:1, 4:1, 8:1) and without (1:1), for head sizes 32 to 256. The step's first rows are a prompt chunk (handled by the
/// tiled kernel), so the decode tokens start at row 2 and the kernel must
/// index them from there.
#[test]
fn decode_attention_over_sequences_in_different_slots() {
    use llama_wgpu::gpu::kernels::{attn_heads, ATTN_CHUNK};
    let mut r = rng(29);
    for portable in [false, true] {
        let gpu = common::gpu(portable);
        // Heads per workgroup 3, 4, 8, 1 and 3; V sums over four position
        // groups (head_dim 32), one (64 pairs = WG), with idle invocations
        // (80) and in two passes (256).
        for (n_head, n_head_kv, hd) in
            [(9, 3, 64), (8, 2, 32), (8, 1, 128), (2, 2, 256), (6, 2, 80)]
        {
            let (kv_dim, q_dim) = (n_head_kv * hd, n_head * hd);
            let n_ctx = 2 * ATTN_CHUNK as usize + 20;
            let max_chunks = n_ctx.div_ceil(ATTN_CHUNK as usize);
            let n_slots = 5;
            // Decode tokens: (slot, position); slot 2 is unused, slots out of order.
            let toks = [(3usize, 0usize), (0, 300), (4, 255), (1, 256)];
            let chunk = 2; // rows of the step before the decode tokens
            let kc: Vec<half::f16> = (0..n_slots * n_ctx * kv_dim)
                .map(|_| half::f16::from_f32(r.random_range(-3.0f32..3.0)))
                .collect();
            let vc: Vec<half::f16> = (0..n_slots * n_ctx * kv_dim)
                .map(|_| half::f16::from_f32(r.random_range(-1.0f32..1.0)))
                .collect();
            let rows_total = chunk + toks.len();
            let q: Vec<f32> = (0..rows_total * q_dim)
                .map(|_| r.random_range(-3.0f32..3.0))
                .collect();
            let mut meta = vec![
                RowMeta {
                    cache_row: 0,
                    pos: 0
                };
                chunk
            ];
            meta.extend(toks.iter().map(|&(slot, pos)| RowMeta {
                cache_row: (slot * n_ctx) as u32,
                pos: pos as u32,
            }));
            let n_chunks = toks
                .iter()
                .map(|&(_, p)| (p as u32 + 1).div_ceil(ATTN_CHUNK))
                .max()
                .unwrap();
            const SENTINEL: f32 = 99.0;
            let qb = gpu.storage_init("q", bytemuck::cast_slice(&q));
            let kb = gpu.storage_init("kc", bytemuck::cast_slice(&kc));
            let vb = gpu.storage_init("vc", bytemuck::cast_slice(&vc));
            let ob = gpu.storage_init(
                "o",
                bytemuck::cast_slice(&vec![SENTINEL; rows_total * q_dim]),
            );
            let op = gpu.storage("op", (toks.len() * n_head * max_chunks * hd * 4) as u64);
            let ml = gpu.storage("ml", (toks.len() * n_head * max_chunks * 8) as u64);
            let rows = gpu.storage_init("rows", bytemuck::cast_slice(&meta));
            let step = gpu.uniform(&Step {
                n_rows: rows_total as u32,
                row0: chunk as u32,
                n_chunks,
                _pad: 0,
            });
            let ap = gpu.uniform(&AttnParams {
                n_head: n_head as u32,
                n_head_kv: n_head_kv as u32,
                head_dim: hd as u32,
                max_chunks: max_chunks as u32,
                scale: 1.0 / (hd as f32).sqrt(),
                q_stride: q_dim as u32,
                _pad: [0; 2],
            });
            let ab = [
                qb.as_entire_binding(),
                kb.as_entire_binding(),
                vb.as_entire_binding(),
                op.as_entire_binding(),
                ml.as_entire_binding(),
                ob.as_entire_binding(),
                ap.as_entire_binding(),
                step.as_entire_binding(),
                rows.as_entire_binding(),
            ];
            let d = toks.len() as u32;
            let heads = attn_heads(n_head as u32, n_head_kv as u32, hd as u32);
            let partial = gpu.dispatch(
                Kernel::AttnPartial {
                    cache: Default::default(),
                    head_dim: hd as u32,
                    heads,
                },
                &ab,
                [n_chunks, n_head as u32 / heads, d],
            );
            let combine = gpu.dispatch(Kernel::AttnCombine, &ab, [n_head as u32, d, 1]);
            gpu.run(&[&partial, &combine]);
            let got = gpu.read_f32(&ob, rows_total * q_dim).unwrap();
            assert!(
                got[..chunk * q_dim].iter().all(|&v| v == SENTINEL),
                "decode attention wrote into the prompt chunk's rows"
            );
            let mut worst = 0.0f32;
            for (i, &(slot, pos)) in toks.iter().enumerate() {
                let row = chunk + i;
                let base = slot * n_ctx;
                for h in 0..n_head {
                    let g = h / (n_head / n_head_kv);
                    let qh = &q[row * q_dim + h * hd..][..hd];
                    let mut s: Vec<f32> = (0..=pos)
                        .map(|p| {
                            let k: Vec<f32> = kc[(base + p) * kv_dim + g * hd..][..hd]
                                .iter()
                                .map(|x| x.to_f32())
                                .collect();
                            cpu::dot(qh, &k) / (hd as f32).sqrt()
                        })
                        .collect();
                    cpu::softmax(&mut s);
                    for dim in 0..hd {
                        let want: f32 = (0..=pos)
                            .map(|p| s[p] * vc[(base + p) * kv_dim + g * hd + dim].to_f32())
                            .sum();
                        let err = (got[row * q_dim + h * hd + dim] - want).abs();
                        worst = worst.max(err);
                        // As the single-sequence decode test: weighted means of values in [-1, 1].
                        assert!(
                            err <= 2e-5,
                            "GQA {n_head}:{n_head_kv} slot {slot} pos {pos} head {h}: gpu {} cpu {want}",
                            got[row * q_dim + h * hd + dim]
                        );
                    }
                }
            }
            eprintln!("multi-slot decode attention (portable {portable}, {n_head}:{n_head_kv}): max error {worst:.2e}");
        }
    }
}

/// The Q/K/V matvec with RoPE and the f16 KV store in its epilogue (decode's
/// fused path) against the same matvec's plain outputs followed by the
/// RoPE/KV kernel (the path prefill and quantized caches keep): rotated Q
/// within a few ulps, cache words equal to within one f16 ulp (both round
/// the same rotated value; the sums may differ in their last bits where
/// the groups pack rows differently). Partial rotary (pairs past 12 of 16
/// pass through) and an attention factor; tokens of three slots at
/// scattered positions; 3 tokens on a 4-token variant, whose spare column
/// must not touch the cache (sentinel rows); both tunings.
#[test]
fn qkv_matvec_with_rope_epilogue_matches_separate_kernels() {
    use llama_wgpu::gpu::kernels::CacheTypes;
    use llama_wgpu::gpu::weights::{FoldedNorm, Outputs};
    let (n_head, n_head_kv, hd) = (4usize, 2usize, 32usize);
    let (nq, nkv) = (n_head * hd, n_head_kv * hd);
    let (n_slots, n_ctx) = (3usize, 40usize);
    let rope_pairs = 12usize;
    let mut r = rng(53);
    for portable in [false, true] {
        let gpu = common::gpu(portable);
        for ty in [TensorType::F16, TensorType::Q4_0, TensorType::Q6_K] {
            let cols = 256;
            let w = random_tensor(ty, (nq + 2 * nkv) * cols, &mut r, 1.0);
            let m = GpuMatrix::upload(&gpu, "qkv", ty, nq + 2 * nkv, cols, &w).unwrap();
            let g: Vec<f32> = (0..cols).map(|_| r.random_range(0.5f32..1.5)).collect();
            let gb = gpu.storage_init("g", bytemuck::cast_slice(&g));
            let table: Vec<f32> = (0..n_ctx * rope_pairs)
                .flat_map(|i| {
                    let a = (i / rope_pairs) as f32 * 0.37f32.powi((i % rope_pairs) as i32);
                    [a.cos(), a.sin()]
                })
                .collect();
            let cs = gpu.storage_init("cs", bytemuck::cast_slice(&table));
            let rp = gpu.uniform(&RopeParams {
                n_head: n_head as u32,
                n_head_kv: n_head_kv as u32,
                half_dim: (hd / 2) as u32,
                rope_pairs: rope_pairs as u32,
                q_stride: (nq / 2) as u32,
                kv_stride: (nkv / 2) as u32,
                attn_factor: 1.1,
                _pad: 0,
            });
            for (t, width) in [(1usize, 1u32), (3, 4), (16, 16)] {
                let meta: Vec<RowMeta> = (0..width as usize)
                    .map(|j| RowMeta {
                        cache_row: ((j % n_slots) * n_ctx) as u32,
                        pos: ((7 * j + 3) % n_ctx) as u32,
                    })
                    .collect();
                let rows = gpu.storage_init("rows", bytemuck::cast_slice(&meta));
                let step = gpu.uniform(&Step {
                    n_rows: t as u32,
                    row0: 0,
                    n_chunks: 1,
                    _pad: 0,
                });
                let stride = cols;
                let x: Vec<f32> = (0..stride * width as usize)
                    .map(|_| r.random_range(-2.0f32..2.0))
                    .collect();
                let xb = gpu.storage_init("x", bytemuck::cast_slice(&x));
                let norm = Some(FoldedNorm {
                    weight: &gb,
                    n: cols,
                    eps: 1e-5,
                });
                const SENTINEL: u32 = 0xDEAD_BEEF;
                let cache_words = n_slots * n_ctx * nkv / 2;
                let cache = |name| {
                    gpu.storage_init(name, bytemuck::cast_slice(&vec![SENTINEL; cache_words]))
                };
                let q_len = nq * width as usize;
                // Separate: plain outputs, then the RoPE/KV kernel.
                let (qa, ka, va) = (
                    gpu.storage("q", (q_len * 4) as u64),
                    gpu.storage("k", (nkv * width as usize * 4) as u64),
                    gpu.storage("v", (nkv * width as usize * 4) as u64),
                );
                let (kca, vca) = (cache("kc"), cache("vc"));
                let mut plain = m.matvec_fused(
                    &gpu,
                    TokenRows::new(&xb, stride),
                    norm,
                    Outputs::Split3 {
                        ys: [&qa, &ka, &va],
                        y_stride: nq,
                        s_stride: nkv,
                        splits: [nq, nq + nkv],
                    },
                    width,
                );
                let invocations = (nq + 2 * nkv) / 2;
                plain.push(gpu.dispatch(
                    Kernel::RopeKv {
                        cache: CacheTypes::default(),
                    },
                    &[
                        qa.as_entire_binding(),
                        ka.as_entire_binding(),
                        va.as_entire_binding(),
                        cs.as_entire_binding(),
                        kca.as_entire_binding(),
                        vca.as_entire_binding(),
                        rp.as_entire_binding(),
                        rows.as_entire_binding(),
                    ],
                    [invocations.div_ceil(64) as u32, t as u32, 1],
                ));
                gpu.run(&plain.iter().collect::<Vec<_>>());
                // Fused.
                let qb = gpu.storage("q", (q_len * 4) as u64);
                let (kcb, vcb) = (cache("kc"), cache("vc"));
                let fused = m.matvec_fused(
                    &gpu,
                    TokenRows::new(&xb, stride),
                    norm,
                    Outputs::Rope {
                        q: &qb,
                        y_stride: nq,
                        splits: [nq, nq + nkv],
                        table: &cs,
                        rows: &rows,
                        kc: &kcb,
                        vc: &vcb,
                        rope: &rp,
                        step: &step,
                    },
                    width,
                );
                assert!(fused.iter().all(|d| matches!(
                    d.kernel,
                    Kernel::Matvec {
                        out: llama_wgpu::gpu::kernels::MatvecOut::Rope,
                        ..
                    }
                )));
                gpu.run(&fused.iter().collect::<Vec<_>>());
                let (qa, qb) = (
                    gpu.read_f32(&qa, nq * t).unwrap(),
                    gpu.read_f32(&qb, nq * t).unwrap(),
                );
                for (i, (a, b)) in qa.iter().zip(&qb).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
                        "{ty} t={t} portable={portable} q[{i}]: separate {a} fused {b}"
                    );
                }
                for (name, a, b) in [("k", &kca, &kcb), ("v", &vca, &vcb)] {
                    let read = |buf| -> Vec<u32> {
                        bytemuck::cast_slice(&gpu.read_f32(buf, cache_words).unwrap()).to_vec()
                    };
                    let (a, b) = (read(a), read(b));
                    let mut written = 0;
                    for (i, (&wa, &wb)) in a.iter().zip(&b).enumerate() {
                        if wa == SENTINEL || wb == SENTINEL {
                            assert_eq!(
                                wa, wb,
                                "{ty} t={t} {name} cache word {i}: written by one path only"
                            );
                            continue;
                        }
                        written += 1;
                        for s in [0, 16] {
                            let (ha, hb) = ((wa >> s) as u16, (wb >> s) as u16);
                            assert!(
                                (ha as i32 - hb as i32).abs() <= 1,
                                "{ty} t={t} {name} cache word {i}: separate {} fused {}",
                                half::f16::from_bits(ha),
                                half::f16::from_bits(hb)
                            );
                        }
                    }
                    // Distinct (slot, position) per token here, so t rows were written.
                    assert_eq!(written, t * nkv / 2, "{ty} t={t} {name}: rows written");
                }
            }
        }
    }
}
