//! Weight matrices in GPU buffers, split by rows when a tensor exceeds the
//! adapter's largest storage binding (128 MiB on lavapipe and some drivers).

use anyhow::{bail, Result};

use super::kernels::{grid, Dispatch, Kernel, MATMUL_TILE_R, MATMUL_TILE_T, WG};
use super::layout::{repack, scale_field, GpuLayout};
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
}

impl GpuMatrix {
    /// GPU bytes this matrix will take.
    pub fn gpu_bytes(ty: TensorType, rows: usize, cols: usize) -> u64 {
        (GpuLayout::of(ty).row_words(cols) * 4 * rows) as u64
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
        let src_row = ty.row_bytes(cols).expect("row length checked at load");
        GpuMatrix::chunked(gpu, name, ty, rows, cols, |first, n| {
            let words = repack(ty, &data[first * src_row..(first + n) * src_row], n, cols);
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
        let (scale_word, scale_halves) = scale_field(ty).unwrap_or((0, 0));
        let mode = match ty {
            TensorType::F32 => 1,
            TensorType::F16 => 2,
            TensorType::BF16 => 3,
            _ => 0,
        };
        GpuMatrix::chunked(gpu, name, ty, rows, cols, |first, n| {
            let buffer = gpu.storage(name, (n * row_words * 4) as u64);
            fill(
                gpu,
                &buffer,
                &FillParams {
                    words: (n * row_words) as u32,
                    block_words: layout.block_words as u32,
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
        ty: TensorType,
        rows: usize,
        cols: usize,
        mut make: impl FnMut(usize, usize) -> wgpu::Buffer,
    ) -> Result<GpuMatrix> {
        let layout = GpuLayout::of(ty);
        let row_bytes = (layout.row_words(cols) * 4) as u64;
        let max_rows = (gpu.max_binding / row_bytes) as usize;
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
        self.matvec_tokens(gpu, x, 0, y, 0, y_offset, accumulate, 1)
    }

    /// Dispatches computing `Y[t][y_offset..] (+)= W X[t]` for `tokens` (1,
    /// 2, 4, 8 or 16) tokens, rows of X `x_stride` floats apart, of Y
    /// `y_stride`: each weight block is read once per dispatch for all the
    /// tokens it takes. A dispatch takes at most the adapter's
    /// `multi_tokens`: where loads cost more than bandwidth (CPU adapters),
    /// smaller register tiles over several dispatches beat one wide one.
    #[allow(clippy::too_many_arguments)]
    pub fn matvec_tokens(
        &self,
        gpu: &Gpu,
        x: &wgpu::Buffer,
        x_stride: usize,
        y: &wgpu::Buffer,
        y_stride: usize,
        y_offset: usize,
        accumulate: bool,
        tokens: u32,
    ) -> Vec<Dispatch> {
        assert_eq!(x_stride % 4, 0, "matvec input rows must be whole vec4s");
        let group = self.group(gpu.tuning.matvec_max_group);
        let (rows, per) = if tokens == 1 {
            (gpu.tuning.matvec_rows, 1)
        } else {
            (gpu.tuning.multi_rows, tokens.min(gpu.tuning.multi_tokens))
        };
        let kernel = Kernel::Matvec {
            ty: self.ty,
            group,
            rows,
            tokens: per,
        };
        let rows_per_wg = WG / group * rows;
        let mut out = Vec::new();
        for first_token in (0..tokens).step_by(per as usize) {
            for c in &self.chunks {
                let params = gpu.uniform(&MatvecParams {
                    rows: c.rows as u32,
                    row_words: self.layout.row_words(self.cols) as u32,
                    items: self.layout.items_per_row(self.cols) as u32,
                    accumulate: accumulate as u32,
                    y_offset: (first_token as usize * y_stride + y_offset + c.first_row) as u32,
                    x_offset: (first_token as usize * x_stride / 4) as u32,
                    x_stride: (x_stride / 4) as u32,
                    y_stride: y_stride as u32,
                });
                out.push(gpu.dispatch(
                    kernel,
                    &[
                        c.buffer.as_entire_binding(),
                        x.as_entire_binding(),
                        y.as_entire_binding(),
                        params.as_entire_binding(),
                    ],
                    grid((c.rows as u32).div_ceil(rows_per_wg)),
                ));
            }
        }
        out
    }

    /// Dispatches computing `Y[t] (+)= W X[t]` for `n_tokens` tokens (rows of
    /// X `x_stride` floats apart, of Y `y_stride`). The model reuses them for
    /// shorter steps by changing the grid's second dimension (token tiles) at
    /// encode time; `n_tokens` is the most a step may have.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        &self,
        gpu: &Gpu,
        x: &wgpu::Buffer,
        x_stride: usize,
        y: &wgpu::Buffer,
        y_stride: usize,
        accumulate: bool,
        n_tokens: usize,
    ) -> Vec<Dispatch> {
        assert_eq!(x_stride % 4, 0, "matmul input rows must be whole vec4s");
        self.chunks
            .iter()
            .map(|c| {
                let params = gpu.uniform(&MatmulParams {
                    rows: c.rows as u32,
                    row_words: self.layout.row_words(self.cols) as u32,
                    items: self.layout.items_per_row(self.cols) as u32,
                    accumulate: accumulate as u32,
                    y_offset: c.first_row as u32,
                    x_stride: (x_stride / 4) as u32,
                    y_stride: y_stride as u32,
                    n_tokens: n_tokens as u32,
                });
                gpu.dispatch(
                    Kernel::Matmul {
                        ty: self.ty,
                        regs: gpu.tuning.matmul_regs,
                    },
                    &[
                        c.buffer.as_entire_binding(),
                        x.as_entire_binding(),
                        y.as_entire_binding(),
                        params.as_entire_binding(),
                    ],
                    [
                        (c.rows as u32).div_ceil(MATMUL_TILE_R),
                        (n_tokens as u32).div_ceil(MATMUL_TILE_T),
                        1,
                    ],
                )
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
                    Kernel::Embedding { ty: self.ty },
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
