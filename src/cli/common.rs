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

/// llama.cpp spells some options with one dash and several letters (`-hf`,
/// `-ctk`, `-ctv`), which clap would read as bundled short flags: rewrite
/// them to their long forms before parsing.
pub fn rewrite_llama_cpp_flags(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    args.into_iter()
        .map(|a| match a.to_str() {
            Some("-hf") => "--hf".into(),
            Some("-ctk") => "--cache-type-k".into(),
            Some("-ctv") => "--cache-type-v".into(),
            _ => a,
        })
        .collect()
}

/// How the context is kept (generate, chat, perplexity, serve, bench):
/// llama.cpp's cache-type and RoPE flags, and a memory budget.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ContextArgs {
    /// KV cache type for K: f16, q8_0 or q4_0 (llama.cpp's -ctk).
    #[arg(long = "cache-type-k", value_name = "TYPE", default_value = "f16")]
    pub cache_type_k: String,
    /// KV cache type for V: f16, q8_0 or q4_0 (llama.cpp's -ctv).
    #[arg(long = "cache-type-v", value_name = "TYPE", default_value = "f16")]
    pub cache_type_v: String,
    /// RoPE base frequency (default: the model's).
    #[arg(long)]
    pub rope_freq_base: Option<f32>,
    /// RoPE frequency scale: 1/N stretches the context N times (default: the model's).
    #[arg(long)]
    pub rope_freq_scale: Option<f32>,
    /// RoPE scaling: none, linear or yarn (default: the model's).
    #[arg(long)]
    pub rope_scaling: Option<String>,
    /// YaRN: the original context the model was trained with (default: the model's).
    #[arg(long)]
    pub yarn_orig_ctx: Option<usize>,
    /// GPU memory the model may use, e.g. 8G, 7.5GiB, 512M (a bare number is
    /// GiB). Checked before anything is uploaded; a configuration that does
    /// not fit is refused with a -c or cache type that would.
    #[arg(long, value_name = "SIZE")]
    pub gpu_memory: Option<String>,
}

impl ContextArgs {
    pub fn options(&self) -> anyhow::Result<crate::gpu::ContextOptions> {
        let ty = |flag: &str, v: &str| {
            crate::gpu::parse_cache_type(v).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
        };
        Ok(crate::gpu::ContextOptions {
            cache: crate::gpu::CacheTypes {
                k: ty("--cache-type-k", &self.cache_type_k)?,
                v: ty("--cache-type-v", &self.cache_type_v)?,
            },
            rope: crate::model::RopeOverrides {
                freq_base: self.rope_freq_base,
                freq_scale: self.rope_freq_scale,
                scaling: self.rope_scaling.clone(),
                yarn_orig_ctx: self.yarn_orig_ctx,
            },
            gpu_memory: self
                .gpu_memory
                .as_deref()
                .map(parse_size)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--gpu-memory: {e}"))?,
        })
    }
}

/// A memory size: a number with an optional K, M, G or T suffix (binary
/// units; `B` / `iB` accepted); a bare number is GiB.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let body = lower.trim_end_matches("ib").trim_end_matches('b');
    let (num, mult) = match body.chars().last() {
        Some('k') => (&body[..body.len() - 1], 1u64 << 10),
        Some('m') => (&body[..body.len() - 1], 1 << 20),
        Some('g') => (&body[..body.len() - 1], 1 << 30),
        Some('t') => (&body[..body.len() - 1], 1 << 40),
        _ if body.len() == lower.len() => (body, 1 << 30),
        _ => (body, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a size (e.g. 8G, 512M)"))?;
    if !(v > 0.0 && v.is_finite()) || v * mult as f64 > u64::MAX as f64 / 2.0 {
        return Err(format!("'{s}' is not a positive size"));
    }
    Ok((v * mult as f64) as u64)
}
