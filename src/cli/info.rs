use std::path::PathBuf;

#[derive(clap::Args)]
pub struct InfoArgs {
    /// GGUF model file.
    #[arg(short, long)]
    pub model: PathBuf,
    /// One JSON object on stdout, for scripts.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: &InfoArgs) -> anyhow::Result<()> {
    anyhow::bail!("info: not written yet")
}
