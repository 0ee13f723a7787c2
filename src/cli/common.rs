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
}

impl GpuArgs {
    pub fn options(&self) -> GpuOptions {
        GpuOptions {
            backend: self.backend.clone(),
            device: self.device,
            no_f16: self.no_f16,
            no_subgroups: self.no_subgroups,
            ..Default::default()
        }
    }
}
