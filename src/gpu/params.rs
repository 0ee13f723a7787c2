//! Uniform parameter blocks of the kernels, laid out as the WGSL `Params` and
//! `Step` structs (16-byte multiples). Shared by the forward pass and the kernel tests.

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct NormParams {
    pub n: u32,
    pub eps: f32,
    pub stride: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RopeParams {
    pub n_head: u32,
    pub n_head_kv: u32,
    pub half_dim: u32,
    pub rope_pairs: u32,
    pub q_stride: u32,
    pub kv_stride: u32,
    pub _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AttnParams {
    pub n_head: u32,
    pub n_head_kv: u32,
    pub head_dim: u32,
    pub max_chunks: u32,
    pub scale: f32,
    pub q_stride: u32,
    pub _pad: [u32; 2],
}

/// Per-token values, written once before each submission.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Step {
    pub pos: u32,
    pub n_pos: u32,
    pub n_chunks: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CountParams {
    pub n: u32,
    pub _pad: [u32; 3],
}

/// `shaders/topk.wgsl`: the k largest of n logits.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct TopKParams {
    pub n: u32,
    pub k: u32,
    pub _pad: [u32; 2],
}

/// `shaders/fill.wgsl`: random weights for synthetic models.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FillParams {
    pub words: u32,
    pub block_words: u32,
    pub scale_word: u32,
    pub scale_halves: u32,
    pub mode: u32,
    pub seed: u32,
    pub row_words: u32,
    pub cols: u32,
}
