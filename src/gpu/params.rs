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
    /// YaRN's magnitude correction of rotated Q and K values (1 otherwise).
    pub attn_factor: f32,
    pub _pad: u32,
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

/// Per-step values, written once before each submission: the step has
/// `n_rows` tokens; the first `row0` are one sequence's prompt chunk (tiled
/// attention), the rest decode tokens (split attention, at most `n_chunks`
/// chunks each). Where each token goes is in the per-row buffer of
/// [`RowMeta`].
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Step {
    pub n_rows: u32,
    pub row0: u32,
    pub n_chunks: u32,
    pub _pad: u32,
}

/// One token of a step: its slot's first row in the KV cache, and its
/// position in that slot (`vec2<u32>` in WGSL).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RowMeta {
    pub cache_row: u32,
    pub pos: u32,
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
    /// Words between rows' results (workgroup x selects for row x).
    pub out_stride: u32,
    pub _pad: u32,
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

/// A context shift (`shaders/kv_shift.wgsl`): rows `src_row..+n_rows` of
/// positions `old_pos..` re-rotated to positions `new_pos..`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ShiftParams {
    pub src_row: u32,
    pub n_rows: u32,
    pub old_pos: u32,
    pub new_pos: u32,
    pub row_pairs: u32,
    pub half_dim: u32,
    pub rope_pairs: u32,
    pub _pad: u32,
}
