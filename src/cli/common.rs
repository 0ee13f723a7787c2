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

/// The model of a command: a file (`-m PATH`) or a Hugging Face name
/// (`-m ORG/NAME[:QUANT|:FILE]`, or llama.cpp's `-hf ORG/NAME[:QUANT]`),
/// found in the Hugging Face cache or pulled into it.
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// Model: a GGUF file, or ORG/NAME[:QUANT|:FILE] on the Hugging Face Hub
    /// (from the cache, downloaded first if missing).
    #[arg(
        short,
        long,
        value_name = "PATH|ORG/NAME[:QUANT]",
        required_unless_present = "hf_repo"
    )]
    pub model: Option<String>,
    /// A Hugging Face repository, ORG/NAME[:QUANT] (as llama.cpp's -hf; default quantization Q4_K_M).
    #[arg(
        long = "hf-repo",
        alias = "hf",
        value_name = "ORG/NAME[:QUANT]",
        conflicts_with = "model"
    )]
    pub hf_repo: Option<String>,
}

impl ModelArgs {
    /// The local path of the model (downloading it first when needed; the
    /// progress bar is hidden under `quiet`).
    pub fn resolve(&self, quiet: bool) -> anyhow::Result<std::path::PathBuf> {
        match (&self.model, &self.hf_repo) {
            (_, Some(repo)) => crate::hub::resolve_repo(repo, quiet),
            (Some(m), None) => crate::hub::resolve_model(m, quiet),
            (None, None) => anyhow::bail!("give a model with -m PATH|ORG/NAME or -hf ORG/NAME"),
        }
    }
}

/// Several models (`bench`): files or Hugging Face names, comma-separated or repeated.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ModelListArgs {
    /// GGUF model files or ORG/NAME[:QUANT] names (comma-separated or
    /// repeated). Several models (and synthetic ones) are measured side by
    /// side: each repetition runs every model in turn, so drift in machine
    /// speed affects them alike.
    #[arg(
        short,
        long,
        value_delimiter = ',',
        value_name = "PATH|ORG/NAME[:QUANT]"
    )]
    pub model: Vec<String>,
    /// Hugging Face repositories, ORG/NAME[:QUANT] (comma-separated or repeated).
    #[arg(
        long = "hf-repo",
        alias = "hf",
        value_delimiter = ',',
        value_name = "ORG/NAME[:QUANT]"
    )]
    pub hf_repo: Vec<String>,
}

impl ModelListArgs {
    pub fn is_empty(&self) -> bool {
        self.model.is_empty() && self.hf_repo.is_empty()
    }

    /// Local paths, `-m` models first, in the order given.
    pub fn resolve(&self, quiet: bool) -> anyhow::Result<Vec<std::path::PathBuf>> {
        let m = self
            .model
            .iter()
            .map(|m| crate::hub::resolve_model(m, quiet));
        let hf = self
            .hf_repo
            .iter()
            .map(|r| crate::hub::resolve_repo(r, quiet));
        m.chain(hf).collect()
    }
}

/// llama.cpp spells the repository option `-hf`, which clap would read as
/// `-h -f`: rewrite it to `--hf` before parsing.
pub fn rewrite_llama_cpp_flags(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    args.into_iter()
        .map(|a| if a == "-hf" { "--hf".into() } else { a })
        .collect()
}
