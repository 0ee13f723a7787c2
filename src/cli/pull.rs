//! `llama-wgpu pull ORG/NAME[:QUANT|:FILE]`: download a model into the Hugging Face cache.

use std::io::Write as _;

use anyhow::Result;
use indicatif::HumanBytes;

use crate::hub::{Hub, ModelName, Progress, Selection};

#[derive(clap::Args)]
pub struct PullArgs {
    /// ORG/NAME[:QUANT|:FILE], e.g. bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M.
    /// Without a tag: Q4_K_M, else the first of Q4_K_S, Q5_K_M, Q5_K_S, Q4_0,
    /// ... the repository has. A repository without GGUF files gives its
    /// safetensors checkpoint (config, tokenizer files, every shard).
    #[arg(value_name = "ORG/NAME[:QUANT|:FILE]")]
    pub name: String,
    /// One JSON object on stdout (repo, commit, files, path, bytes downloaded).
    #[arg(long)]
    pub json: bool,
    /// No progress bar and no summary.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(args: &PullArgs) -> Result<()> {
    let name = ModelName::parse_or_explain(&args.name)?;
    let hub = Hub::from_env();
    let m = hub.pull(&name, Progress::new(args.quiet || args.json))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let quant = match &m.selection {
            Selection::Gguf { quant, .. } => quant.clone(),
            Selection::Safetensors { .. } => None,
        };
        let v = serde_json::json!({
            "repo": m.repo,
            "commit": m.commit,
            "quant": quant,
            "files": m.selection.files(),
            "path": m.path.display().to_string(),
            "size_bytes": m.size(),
            "downloaded_bytes": m.downloaded,
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    // The path on stdout, so that `M=$(llama-wgpu pull ...)` works.
    writeln!(out, "{}", m.path.display())?;
    if !args.quiet {
        let n = m.files.len();
        eprintln!(
            "{name}: {n} file{} ({}) at commit {}, {} downloaded",
            if n == 1 { "" } else { "s" },
            HumanBytes(m.size()),
            &m.commit[..m.commit.len().min(12)],
            HumanBytes(m.downloaded),
        );
    }
    Ok(())
}
