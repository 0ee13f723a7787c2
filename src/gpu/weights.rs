//! Weight matrices in GPU buffers, split by rows when a tensor exceeds the
//! adapter's largest storage binding (128 MiB on lavapipe and some drivers).

use anyhow::{bail, Result};

use super::kernels::{grid, Dispatch, Kernel, MatvecOut, MATMUL_TILE_R, MATMUL_TILE_T, WG};
use super::layout::{repack, GpuLayout, ScaleField};
use super::params::FillParams;
use super::Gpu;
use crate::quant::TensorType;

pub struct Chunk {
    pub buffer: wgpu::Buffer,
    pub first_row: usize,
    pub rows: usize,
}

pub struct GpuMatrix {
    pub name: String,
    pub ty: TensorType,
    pub rows: usize,
    pub cols: usize,
    pub layout: GpuLayout,
    pub chunks: Vec<Chunk>,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MatvecParams {
    rows: u32,
    row_words: u32,
    items: u32,
    accumulate: u32,
    y_offset: u32,
    x_offset: u32,
    x_stride: u32,
    y_stride: u32,
    row0: u32,
    token0: u32,
    split1: u32,
    split2: u32,
    s_stride: u32,
    norm_n: u32,
    eps: f32,
    _pad: u32,
}

/// A buffer of f32 rows, one per token, `stride` floats apart: the X (and Y)
/// of the matrix products.
#[derive(Clone, Copy)]
pub struct TokenRows<'a> {
    pub buf: &'a wgpu::Buffer,
    pub stride: usize,
}

impl<'a> TokenRows<'a> {
    pub fn new(buf: &'a wgpu::Buffer, stride: usize) -> TokenRows<'a> {
        TokenRows { buf, stride }
    }
}

/// RMSNorm folded into a matvec: the kernel computes each token's RMS of x
/// itself and applies `weight` to x as it reads it (no normalised copy of x,
/// no separate dispatch).
#[derive(Clone, Copy)]
pub struct FoldedNorm<'a> {
    /// `n` f32 norm weights.
    pub weight: &'a wgpu::Buffer,
    /// Elements of x.
    pub n: usize,
    pub eps: f32,
}

/// Where a matvec's sums go.
#[derive(Clone, Copy)]
pub enum Outputs<'a> {
    /// `y[t * y_stride + y_offset + row] (+)= ...`
    One {
        y: &'a wgpu::Buffer,
        y_stride: usize,
        y_offset: usize,
        accumulate: bool,
    },
    /// The matrix is three matrices' rows one after the other (Q, K, V):
    /// rows before `splits[0]` go to `ys[0]` (`y_stride` floats between
    /// tokens), then to `ys[1]`, from `splits[1]` on to `ys[2]` (those two
    /// `s_stride` apart), each from its own row 0.
    Split3 {
        ys: [&'a wgpu::Buffer; 3],
        y_stride: usize,
        s_stride: usize,
        splits: [usize; 2],
    },
    /// The matrix is gate and up rows interleaved ([`GpuMatrix::interleave`]):
    /// `y[t * y_stride + i] = silu(gate_i x) * (up_i x)`.
    Glu {
        y: &'a wgpu::Buffer,
        y_stride: usize,
    },
    /// As `Split3` (Q, K, V rows split at `splits`), with RoPE and the KV
    /// store in the epilogue (`shaders/matvec_put_rope.wgsl`): Q rotated into
    /// `q` (`y_stride` floats between tokens), K rotated and V written as f16
    /// pairs into the token's row of the caches `kc` / `vc`. `table` is the
    /// cos/sin table, `rows` the step's per-token (cache row, position),
    /// `rope` the RoPE parameters and `step` the step's shape.
    Rope {
        q: &'a wgpu::Buffer,
        y_stride: usize,
        splits: [usize; 2],
        table: &'a wgpu::Buffer,
        rows: &'a wgpu::Buffer,
        kc: &'a wgpu::Buffer,
        vc: &'a wgpu::Buffer,
        rope: &'a wgpu::Buffer,
        step: &'a wgpu::Buffer,
    },
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct EmbeddingParams {
    rows: u32,
    row_words: u32,
    items: u32,
    first_row: u32,
    token_index: u32,
    y_stride: u32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MatmulParams {
    rows: u32,
    row_words: u32,
    items: u32,
    accumulate: u32,
    y_offset: u32,
    x_stride: u32,
    y_stride: u32,
    n_tokens: u32,
    row_begin: u32,
    row_step: u32,
    n_out: u32,
    _pad: u32,
}

impl GpuMatrix {
    /// GPU bytes this matrix will take (and a matvec reads).
    pub fn gpu_bytes(ty: TensorType, rows: usize, cols: usize) -> u64 {
        GpuLayout::of(ty).buffer_bytes(rows, cols) as u64
    }

    /// Repacks and uploads `rows` x `cols` of GGUF data (`data` in file layout).
    pub fn upload(
        gpu: &Gpu,
        name: &str,
        ty: TensorType,
        rows: usize,
        cols: usize,
        data: &[u8],
    ) -> Result<GpuMatrix> {
        GpuMatrix::upload_packed(gpu, name, GpuLayout::of(ty), rows, cols, data)
    }

    /// [`GpuMatrix::upload`] in a given layout (`cargo bench` compares them).
    pub fn upload_packed(
        gpu: &Gpu,
        name: &str,
        layout: GpuLayout,
        rows: usize,
        cols: usize,
        data: &[u8],
    ) -> Result<GpuMatrix> {
        let ty = layout.ty;
        let src_row = ty.row_bytes(cols).expect("row length checked at load");
        GpuMatrix::chunked(gpu, name, layout, rows, cols, |first, n| {
            let words = repack(
                layout,
                &data[first * src_row..(first + n) * src_row],
                n,
                cols,
            );
            gpu.storage_init(name, bytemuck::cast_slice(&words))
        })
    }

    /// A `rows` x `cols` matrix of random weights of type `ty`, written by a
    /// GPU kernel straight into its buffers (synthetic benchmark models): the
    /// same buffers, layout and chunks as an uploaded matrix, no CPU data.
    pub fn random(
        gpu: &Gpu,
        name: &str,
        ty: TensorType,
        rows: usize,
        cols: usize,
        seed: u32,
    ) -> Result<GpuMatrix> {
        let layout = GpuLayout::of(ty);
        let row_words = layout.row_words(cols);
        let float_mode = match ty {
            TensorType::F32 => 1,
            TensorType::F16 => 2,
            TensorType::BF16 => 3,
            _ => 0,
        };
        GpuMatrix::chunked(gpu, name, layout, rows, cols, |first, n| {
            let words = layout.buffer_bytes(n, cols) / 4;
            let buffer = gpu.storage(name, (words * 4) as u64);
            // Where the f16 scales are (fill.wgsl's modes 0, 5 and 6).
            let (mode, block_words, scale_word, scale_halves) = match layout.scale_field(n, cols) {
                ScaleField::None => (float_mode, layout.block_bytes / 4, 0, 0),
                ScaleField::InBlock(w, halves) => (0, layout.block_bytes / 4, w, halves),
                ScaleField::EveryBytes(b) => (5, b, 0, 0),
                ScaleField::From(w) => (6, 1, w, 0),
            };
            fill(
                gpu,
                &buffer,
                &FillParams {
                    words: words as u32,
                    block_words: block_words as u32,
                    scale_word: scale_word as u32,
                    scale_halves,
                    mode,
                    seed: seed ^ first as u32,
                    row_words: row_words as u32,
                    cols: cols as u32,
                },
            );
            buffer
        })
    }

    /// Splits the rows into chunks that fit the adapter's largest storage
    /// binding; `make(first_row, rows)` creates each chunk's buffer.
    fn chunked(
        gpu: &Gpu,
        name: &str,
        layout: GpuLayout,
        rows: usize,
        cols: usize,
        mut make: impl FnMut(usize, usize) -> wgpu::Buffer,
    ) -> Result<GpuMatrix> {
        let ty = layout.ty;
        // Buffers are rounded up to 16 bytes (whole vec4s): keep that within the binding.
        let row_bytes = layout.row_bytes(cols) as u64;
        let mut max_rows = (gpu.max_binding / 16 * 16 / row_bytes) as usize;
        // Even chunks: an interleaved gate/up matrix keeps its pairs whole.
        if max_rows > 1 {
            max_rows &= !1;
        }
        if max_rows == 0 {
            bail!(
                "tensor '{name}': one row takes {row_bytes} bytes, more than the adapter's largest storage binding ({} bytes)",
                gpu.max_binding
            );
        }
        let mut chunks = Vec::new();
        let mut first = 0;
        while first < rows {
            let n = max_rows.min(rows - first);
            chunks.push(Chunk {
                buffer: make(first, n),
                first_row: first,
                rows: n,
            });
            first += n;
        }
        Ok(GpuMatrix {
            name: name.to_string(),
            ty,
            rows,
            cols,
            layout,
            chunks,
        })
    }

    /// Invocations per row group: enough to give each at least two items,
    /// at most `max_group`.
    fn group(&self, max_group: u32) -> u32 {
        let items = self.layout.items_per_row(self.cols) as u32;
        let mut g = 8;
        while g < max_group.min(WG) && g * 2 <= items {
            g *= 2;
        }
        g
    }

    /// Dispatches computing `y[y_offset..] (+)= W x`, one per chunk. `x` must
    /// hold `items * 32` floats (zero past `cols`).
    pub fn matvec(
        &self,
        gpu: &Gpu,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        y_offset: usize,
        accumulate: bool,
    ) -> Vec<Dispatch> {
        let (x, y) = (TokenRows::new(x, 0), TokenRows::new(y, 0));
        self.matvec_tokens(gpu, x, y, y_offset, accumulate, 1)
    }

    /// Dispatches computing `Y[t][y_offset..] (+)= W X[t]` for `tokens` (1,
    /// 2, 4, 8 or 16) tokens: each weight block is read once per dispatch for
    /// all the tokens it takes. A dispatch takes at most the adapter's
    /// `multi_tokens`: where loads cost more than bandwidth (CPU adapters),
    /// smaller register tiles over several dispatches beat one wide one.
    pub fn matvec_tokens(
        &self,
        gpu: &Gpu,
        x: TokenRows,
        y: TokenRows,
        y_offset: usize,
        accumulate: bool,
        tokens: u32,
    ) -> Vec<Dispatch> {
        let out = Outputs::One {
            y: y.buf,
            y_stride: y.stride,
            y_offset,
            accumulate,
        };
        self.matvec_fused(gpu, x, None, out, tokens)
    }

    /// [`GpuMatrix::matvec_tokens`] with the RMSNorm of x folded in
    /// (`norm`) and the sums sent to `out`.
    pub fn matvec_fused(
        &self,
        gpu: &Gpu,
        x: TokenRows,
        norm: Option<FoldedNorm>,
        out: Outputs,
        tokens: u32,
    ) -> Vec<Dispatch> {
        let (x_stride, x) = (x.stride, x.buf);
        assert_eq!(x_stride % 4, 0, "matvec input rows must be whole vec4s");
        let group = self.group(gpu.tuning.matvec_max_group);
        let (rows, per) = if tokens == 1 {
            (gpu.tuning.matvec_rows, 1)
        } else {
            (gpu.tuning.multi_rows, tokens.min(gpu.tuning.multi_tokens))
        };
        let kind = match out {
            Outputs::One { .. } => MatvecOut::One,
            Outputs::Split3 { .. } => MatvecOut::Split3,
            Outputs::Glu { .. } => MatvecOut::Glu,
            Outputs::Rope { .. } => MatvecOut::Rope,
        };
        let kernel = Kernel::Matvec {
            ty: self.ty,
            pack: self.layout.packing,
            group,
            rows,
            tokens: per,
            norm: norm.is_some(),
            out: kind,
        };
        // W rows per workgroup (with GLU, each output row is two of them).
        let paired = matches!(kind, MatvecOut::Glu | MatvecOut::Rope);
        let w_rows_per_wg = WG / group * rows * if paired { 2 } else { 1 };
        let mut dispatches = Vec::new();
        for first_token in (0..tokens).step_by(per as usize) {
            let t0 = first_token as usize;
            for c in &self.chunks {
                let mut p = MatvecParams {
                    rows: c.rows as u32,
                    row_words: self.layout.row_words(self.cols) as u32,
                    items: self.layout.items_per_row(self.cols) as u32,
                    accumulate: 0,
                    y_offset: 0,
                    x_offset: (t0 * x_stride / 4) as u32,
                    x_stride: (x_stride / 4) as u32,
                    y_stride: 0,
                    row0: c.first_row as u32,
                    token0: first_token,
                    split1: 0,
                    split2: 0,
                    s_stride: 0,
                    norm_n: norm.map_or(0, |n| n.n as u32),
                    eps: norm.map_or(0.0, |n| n.eps),
                    _pad: 0,
                };
                let mut bind = vec![c.buffer.as_entire_binding(), x.as_entire_binding()];
                let mut extra_out = Vec::new();
                match out {
                    Outputs::One {
                        y,
                        y_stride,
                        y_offset,
                        accumulate,
                    } => {
                        p.accumulate = accumulate as u32;
                        p.y_offset = (t0 * y_stride + y_offset + c.first_row) as u32;
                        p.y_stride = y_stride as u32;
                        bind.push(y.as_entire_binding());
                    }
                    Outputs::Split3 {
                        ys,
                        y_stride,
                        s_stride,
                        splits,
                    } => {
                        assert!(splits[0] <= splits[1] && splits[1] <= self.rows);
                        p.y_stride = y_stride as u32;
                        p.s_stride = s_stride as u32;
                        p.split1 = splits[0] as u32;
                        p.split2 = splits[1] as u32;
                        bind.push(ys[0].as_entire_binding());
                        extra_out = vec![ys[1].as_entire_binding(), ys[2].as_entire_binding()];
                    }
                    Outputs::Rope {
                        q,
                        y_stride,
                        splits,
                        table,
                        rows,
                        kc,
                        vc,
                        rope,
                        step,
                    } => {
                        assert!(splits[0] <= splits[1] && splits[1] <= self.rows);
                        assert!(
                            c.first_row % 2 == 0
                                && c.rows % 2 == 0
                                && splits.iter().all(|s| s % 2 == 0),
                            "RoPE pairs never straddle a chunk or a split"
                        );
                        p.y_stride = y_stride as u32;
                        p.split1 = splits[0] as u32;
                        p.split2 = splits[1] as u32;
                        bind.push(q.as_entire_binding());
                        extra_out = [table, rows, kc, vc, rope, step]
                            .into_iter()
                            .map(|b| b.as_entire_binding())
                            .collect();
                    }
                    Outputs::Glu { y, y_stride } => {
                        assert!(
                            c.first_row % 2 == 0 && c.rows % 2 == 0,
                            "interleaved gate/up chunks hold whole pairs"
                        );
                        p.y_offset = (t0 * y_stride + c.first_row / 2) as u32;
                        p.y_stride = y_stride as u32;
                        bind.push(y.as_entire_binding());
                    }
                }
                let params = gpu.uniform(&p);
                bind.push(params.as_entire_binding());
                if let Some(n) = norm {
                    bind.push(n.weight.as_entire_binding());
                }
                bind.extend(extra_out);
                dispatches.push(gpu.dispatch(
                    kernel,
                    &bind,
                    grid((c.rows as u32).div_ceil(w_rows_per_wg)),
                ));
            }
        }
        dispatches
    }

    /// Dispatches computing `Y[t] (+)= W X[t]` for `n_tokens` tokens. The
    /// model reuses them for shorter steps by changing the grid's second
    /// dimension (token tiles) at encode time; `n_tokens` is the most a step
    /// may have.
    pub fn matmul(
        &self,
        gpu: &Gpu,
        x: TokenRows,
        y: TokenRows,
        accumulate: bool,
        n_tokens: usize,
    ) -> Vec<Dispatch> {
        self.matmul_rows(gpu, x, y, accumulate, n_tokens, (0, 1, self.rows))
    }

    /// [`GpuMatrix::matmul`] over the rows `begin + step * i` for `i` in
    /// `0..count` (`rows = (begin, step, count)`), row `i` going to column
    /// `i` of Y: one of the matrices of a fused QKV (a row range) or of an
    /// interleaved gate/up pair (every other row).
    pub fn matmul_rows(
        &self,
        gpu: &Gpu,
        x: TokenRows,
        y: TokenRows,
        accumulate: bool,
        n_tokens: usize,
        rows: (usize, usize, usize),
    ) -> Vec<Dispatch> {
        let (x_stride, y_stride) = (x.stride, y.stride);
        let (x, y) = (x.buf, y.buf);
        assert_eq!(x_stride % 4, 0, "matmul input rows must be whole vec4s");
        let (begin, step, count) = rows;
        assert!(step >= 1 && (count == 0 || begin + step * (count - 1) < self.rows));
        // The first i whose row begin + step * i is at or past `row`.
        let index_at = |row: usize| row.saturating_sub(begin).div_ceil(step).min(count);
        self.chunks
            .iter()
            .filter_map(|c| {
                let (lo, hi) = (index_at(c.first_row), index_at(c.first_row + c.rows));
                if lo >= hi {
                    return None;
                }
                let params = gpu.uniform(&MatmulParams {
                    rows: c.rows as u32,
                    row_words: self.layout.row_words(self.cols) as u32,
                    items: self.layout.items_per_row(self.cols) as u32,
                    accumulate: accumulate as u32,
                    y_offset: lo as u32,
                    x_stride: (x_stride / 4) as u32,
                    y_stride: y_stride as u32,
                    n_tokens: n_tokens as u32,
                    row_begin: (begin + step * lo - c.first_row) as u32,
                    row_step: step as u32,
                    n_out: (hi - lo) as u32,
                    _pad: 0,
                });
                Some(gpu.dispatch(
                    Kernel::Matmul {
                        ty: self.ty,
                        pack: self.layout.packing,
                        regs: gpu.tuning.matmul_regs,
                    },
                    &[
                        c.buffer.as_entire_binding(),
                        x.as_entire_binding(),
                        y.as_entire_binding(),
                        params.as_entire_binding(),
                    ],
                    [
                        ((hi - lo) as u32).div_ceil(MATMUL_TILE_R),
                        (n_tokens as u32).div_ceil(MATMUL_TILE_T),
                        1,
                    ],
                ))
            })
            .collect()
    }

    /// Dispatches writing row `tokens[token_index + i]` (dequantized) into row
    /// `i` of `y` (rows `y_stride` floats apart) for each token of the step.
    pub fn embedding(
        &self,
        gpu: &Gpu,
        tokens: &wgpu::Buffer,
        token_index: usize,
        y: &wgpu::Buffer,
        y_stride: usize,
    ) -> Vec<Dispatch> {
        let items = self.layout.items_per_row(self.cols) as u32;
        self.chunks
            .iter()
            .map(|c| {
                let params = gpu.uniform(&EmbeddingParams {
                    rows: c.rows as u32,
                    row_words: self.layout.row_words(self.cols) as u32,
                    items,
                    first_row: c.first_row as u32,
                    token_index: token_index as u32,
                    y_stride: (y_stride / 4) as u32,
                    _pad: [0; 2],
                });
                gpu.dispatch(
                    Kernel::Embedding {
                        ty: self.ty,
                        pack: self.layout.packing,
                    },
                    &[
                        c.buffer.as_entire_binding(),
                        tokens.as_entire_binding(),
                        y.as_entire_binding(),
                        params.as_entire_binding(),
                    ],
                    [items.div_ceil(WG), 1, 1],
                )
            })
            .collect()
    }
}

/// Runs the fill kernel (`shaders/fill.wgsl`) over `params.words` words of `buffer`.
fn fill(gpu: &Gpu, buffer: &wgpu::Buffer, params: &FillParams) {
    let uniform = gpu.uniform(params);
    let d = gpu.dispatch(
        Kernel::Fill,
        &[buffer.as_entire_binding(), uniform.as_entire_binding()],
        grid(params.words.div_ceil(WG * FILL_PER_INVOCATION)),
    );
    gpu.run(&[&d]);
}

/// Words each fill invocation writes (`PER_INV` in `shaders/fill.wgsl`).
const FILL_PER_INVOCATION: u32 = 256;

/// A norm weight vector of `n` random values in [0.8, 1.2], written on the GPU.
pub fn random_norm(gpu: &Gpu, name: &str, n: usize, seed: u32) -> wgpu::Buffer {
    let buffer = gpu.storage(name, (n * 4) as u64);
    fill(
        gpu,
        &buffer,
        &FillParams {
            words: n as u32,
            block_words: 1,
            scale_word: 0,
            scale_halves: 0,
            mode: 4,
            seed,
            row_words: n as u32,
            cols: n as u32,
        },
    );
    buffer
}
