//! `llama-wgpu list`: the models in the Hugging Face cache.

use std::io::Write as _;

use anyhow::Result;
use indicatif::HumanBytes;

use crate::hub::{CachedModel, Hub, Selection};

#[derive(clap::Args)]
pub struct ListArgs {
    /// One JSON array on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The name that runs this model: `ORG/NAME:QUANT`, or `ORG/NAME:FILE` when
/// the file name states no quantization.
fn run_name(m: &CachedModel) -> String {
    match &m.selection {
        Selection::Gguf { quant: Some(q), .. } => format!("{}:{q}", m.repo),
        Selection::Gguf { files, .. } => format!("{}:{}", m.repo, files[0]),
        Selection::Safetensors { .. } => m.repo.clone(),
    }
}

pub fn run(args: &ListArgs) -> Result<()> {
    let hub = Hub::from_env();
    let models = hub.list()?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let rows: Vec<_> = models
            .iter()
            .map(|m| {
                let quant = match &m.selection {
                    Selection::Gguf { quant, .. } => quant.clone(),
                    Selection::Safetensors { .. } => None,
                };
                serde_json::json!({
                    "name": run_name(m),
                    "repo": m.repo,
                    "commit": m.commit,
                    "files": m.selection.files(),
                    "quant": quant,
                    "format": if matches!(m.selection, Selection::Gguf { .. }) { "gguf" } else { "safetensors" },
                    "size_bytes": m.size(),
                    "path": m.path.display().to_string(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string(&rows)?)?;
        return Ok(());
    }
    if models.is_empty() {
        eprintln!("no models in the cache {}", hub.cache.root.display());
        return Ok(());
    }
    let rows: Vec<[String; 5]> = models
        .iter()
        .map(|m| {
            let files = m.selection.files();
            let file = match files.len() {
                1 => files[0].clone(),
                n => format!("{} (+{} parts)", files[0], n - 1),
            };
            let quant = match &m.selection {
                Selection::Gguf { quant, .. } => quant.clone().unwrap_or_else(|| "-".into()),
                Selection::Safetensors { .. } => "safetensors".into(),
            };
            [
                run_name(m),
                file,
                quant,
                HumanBytes(m.size()).to_string(),
                m.path.display().to_string(),
            ]
        })
        .collect();
    let header = ["NAME", "FILE", "QUANT", "SIZE", "PATH"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}
