use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use super::common::ModelArgs;
use crate::tokenizer::Tokenizer;

/// Defaults follow llama.cpp's `llama-tokenize`: special tokens in the text
/// are parsed, BOS is added when the vocabulary asks for it.
#[derive(clap::Args)]
pub struct TokenizeArgs {
    /// Also a Hugging Face model folder or tokenizer.json file.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text to tokenize.
    #[arg(short, long, conflicts_with = "file", required_unless_present = "file")]
    pub prompt: Option<String>,
    /// Read the text from a file, byte for byte (a final newline is kept).
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// Do not add BOS even if the vocabulary asks for it.
    #[arg(long)]
    pub no_bos: bool,
    /// Tokenize special-token text such as `<|im_start|>` as plain text.
    #[arg(long)]
    pub no_parse_special: bool,
    /// Print only the ids, as a list: `[1, 2, 3]`.
    #[arg(long, conflicts_with = "json")]
    pub ids: bool,
    /// One JSON object on stdout: `{"ids": [...], "pieces": [...]}`.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &TokenizeArgs) -> anyhow::Result<()> {
    let text = match (&args.prompt, &args.file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => {
            let bytes = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
            String::from_utf8(bytes)
                .map_err(|_| anyhow::anyhow!("{} is not valid UTF-8", f.display()))?
        }
        (None, None) => anyhow::bail!("give the text with -p or -f"),
    };

    let model = args.model.resolve(args.json || args.ids)?;
    let is_json = model
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let tok = if is_json {
        Tokenizer::from_tokenizer_json(&model)?
    } else {
        let g = crate::engine::open_model(&model)?;
        Tokenizer::from_gguf(&g).with_context(|| model.display().to_string())?
    };
    let ids = tok.encode(&text, !args.no_bos, !args.no_parse_special)?;

    let mut out = std::io::stdout().lock();
    if args.json {
        let pieces: Vec<String> = ids.iter().map(|&id| tok.token_piece(id)).collect();
        let obj = serde_json::json!({ "ids": ids, "pieces": pieces });
        writeln!(out, "{obj}")?;
    } else if args.ids {
        let list: Vec<String> = ids.iter().map(u32::to_string).collect();
        writeln!(out, "[{}]", list.join(", "))?;
    } else {
        for &id in &ids {
            // llama-tokenize's layout; pieces are written as raw bytes, as it
            // does, so a byte-fallback token shows what it holds.
            write!(out, "{id:6} -> '")?;
            out.write_all(tok.token_bytes(id))?;
            writeln!(out, "'")?;
        }
    }
    out.flush()?;
    Ok(())
}
