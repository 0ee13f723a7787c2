//! `llama-wgpu convert`: a Hugging Face folder (or a GGUF file, with adapters
//! merged or a new type) written as a GGUF file with llama.cpp's tensor
//! names and metadata keys, tokenizer and chat template included.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};

use crate::hf::{parse_quant_type, LoadSpec};
use crate::quant::TensorType;

#[derive(clap::Args)]
pub struct ConvertArgs {
    /// Hugging Face model folder (or a GGUF file).
    pub input: PathBuf,
    /// The GGUF file to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Type of the weight matrices: f32, f16, bf16, q8_0, q4_0, q4_k, q6_k
    /// (default: as stored). Norms stay f32.
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_quant_type)]
    pub ty: Option<TensorType>,
    /// A PEFT LoRA adapter folder to merge in; repeat to stack several.
    #[arg(long, value_name = "DIR")]
    pub lora: Vec<PathBuf>,
    /// Multiplies each adapter's lora_alpha / r (default 1).
    #[arg(long, value_name = "S", requires = "lora")]
    pub lora_scale: Option<f32>,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: &ConvertArgs) -> Result<()> {
    if args.output.exists() && !args.force {
        bail!(
            "{} exists (use --force to replace it)",
            args.output.display()
        );
    }
    let spec = LoadSpec {
        lora: args.lora.clone(),
        lora_scale: args.lora_scale,
        quantize: args.ty,
    };
    let g = crate::engine::open_model_with(&args.input, &spec)?;
    if g.opt_str("llama.rope.scaling.type").ok().flatten() == Some("dynamic") {
        eprintln!(
            "note: the model's dynamic (NTK-aware) RoPE scaling is written as llama.rope.scaling.type = dynamic, which this engine reads and llama.cpp does not"
        );
    }
    // Written beside the target and renamed, so a failed run leaves no half file.
    let tmp = args.output.with_extension("gguf.partial");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    g.write_to(&mut w)
        .and_then(|()| w.flush())
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(w);
    std::fs::rename(&tmp, &args.output).with_context(|| {
        format!(
            "cannot rename {} to {}",
            tmp.display(),
            args.output.display()
        )
    })?;
    let size = std::fs::metadata(&args.output)
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "{}: {} tensors, {} metadata keys, {size} bytes",
        args.output.display(),
        g.tensors.len(),
        g.metadata.len(),
    );
    Ok(())
}
