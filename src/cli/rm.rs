//! `llama-wgpu rm ORG/NAME[:QUANT|:FILE]`: remove a model from the Hugging Face cache.

use std::io::Write as _;

use anyhow::Result;
use indicatif::HumanBytes;

use crate::hub::{Hub, ModelName};

#[derive(clap::Args)]
pub struct RmArgs {
    /// ORG/NAME removes the whole repository; ORG/NAME:QUANT or :FILE only
    /// that model (blobs other cached files still use are kept).
    #[arg(value_name = "ORG/NAME[:QUANT|:FILE]")]
    pub name: String,
}

pub fn run(args: &RmArgs) -> Result<()> {
    let name = ModelName::parse_or_explain(&args.name)?;
    let (removed, freed) = Hub::from_env().remove(&name)?;
    let mut out = std::io::stdout().lock();
    for p in &removed {
        writeln!(out, "removed {}", p.display())?;
    }
    eprintln!("{name}: {} freed", HumanBytes(freed));
    Ok(())
}
