//! Options shared by the commands that use a GPU.

use crate::gpu::GpuOptions;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct GpuArgs {
    /// GPU backend: vulkan, metal, dx12 or gl (default: the best available).
    #[arg(long)]
    pub backend: Option<String>,
    /// Adapter index from `llama-wgpu devices` (default: the best GPU).
    #[arg(long)]
    pub device: Option<usize>,
    /// Do not use subgroup operations even if the adapter has them.
    #[arg(long)]
    pub no_subgroups: bool,
    /// Do not use shader f16 even if the adapter has it.
    #[arg(long)]
    pub no_f16: bool,
    /// Tuning: matrix rows per matvec invocation group, 1, 2 or 4 (default:
    /// 4 on CPU adapters, 1 on GPUs). Compare settings with `bench`.
    #[arg(long)]
    pub matvec_rows: Option<u32>,
    /// Tuning: most invocations sharing a matvec row group, 8, 16, 32 or 64
    /// (default: 8 on CPU adapters, 64 on GPUs).
    #[arg(long)]
    pub matvec_group: Option<u32>,
    /// Tuning: matmul (prompt) register tile per invocation, 8 or 16
    /// (default: 16 on CPU adapters, 8 on GPUs).
    #[arg(long)]
    pub matmul_regs: Option<u32>,
    /// Tuning: matrix rows per invocation group for steps of 2 to 16 tokens
    /// (several sequences, short prompts), 1, 2, 4 or 8 (default: 8 on CPU
    /// adapters, 1 on GPUs).
    #[arg(long)]
    pub multi_rows: Option<u32>,
    /// Tuning: most tokens per few-token dispatch, 2, 4, 8 or 16 (default:
    /// 4 on CPU adapters, 16 on GPUs).
    #[arg(long)]
    pub multi_tokens: Option<u32>,
}

impl GpuArgs {
    pub fn options(&self) -> GpuOptions {
        GpuOptions {
            backend: self.backend.clone(),
            device: self.device,
            no_f16: self.no_f16,
            no_subgroups: self.no_subgroups,
            matvec_rows: self.matvec_rows,
            matvec_group: self.matvec_group,
            matmul_regs: self.matmul_regs,
            multi_rows: self.multi_rows,
            multi_tokens: self.multi_tokens,
            ..Default::default()
        }
    }
}
