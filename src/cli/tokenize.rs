use std::path::PathBuf;

#[derive(clap::Args)]
pub struct TokenizeArgs {
    /// GGUF model file.
    #[arg(short, long)]
    pub model: PathBuf,
}

pub fn run(_args: &TokenizeArgs) -> anyhow::Result<()> {
    anyhow::bail!("tokenize: not written yet")
}
