//! Writes a synthetic model (random weights in a published model's shapes,
//! `bench --synthetic`'s SHAPE:TYPE) as a GGUF file that llama.cpp loads too,
//! with the vocabulary of a vocab-only GGUF, so both engines can be
//! benchmarked on the same file where no real model can be fetched (the lent
//! GPU machine: scripts/gpu-check.sh):
//!
//! ```sh
//! cargo run --release --example synthetic_gguf -- llama2-7b:q4_0 \
//!     ../shared/testdata/tokenizer/ggml-vocab-llama-spm.gguf /tmp/llama2-7b-q4_0.gguf
//! ```
//!
//! The output projection gets llama.cpp's quantizer's type for that file
//! type (Q6_K for Q4_0 at 4096 columns), as `bench --synthetic` does, so the
//! file reads the same bytes per token.

use std::io::BufWriter;
use std::process::ExitCode;

use llama_wgpu::gguf::{Gguf, Value};
use llama_wgpu::model::synthetic::{llama_cpp_output_type, write_synthetic_gguf, LlamaShape};

fn run(spec: &str, vocab: &str, out: &str) -> Result<(), String> {
    let (shape, ty) = LlamaShape::parse_spec(spec).map_err(|e| format!("{spec}: {e}"))?;
    let v = Gguf::open(vocab).map_err(|e| format!("{vocab}: {e}"))?;
    let tokenizer: Vec<(String, Value)> = v
        .metadata
        .iter()
        .filter(|(k, _)| k.starts_with("tokenizer."))
        .cloned()
        .collect();
    let n_tokens = v
        .get_array("tokenizer.ggml.tokens")
        .map_err(|e| format!("{vocab}: {e}"))?
        .len();
    if n_tokens != shape.n_vocab {
        return Err(format!(
            "{vocab} has {n_tokens} tokens, the {} shape {}",
            shape.name, shape.n_vocab
        ));
    }
    let file = std::fs::File::create(out).map_err(|e| format!("{out}: {e}"))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let output_ty = llama_cpp_output_type(ty, shape.n_embd);
    write_synthetic_gguf(&shape, ty, output_ty, 1, &tokenizer, &mut w)
        .map_err(|e| format!("{out}: {e}"))?;
    std::io::Write::flush(&mut w).map_err(|e| format!("{out}: {e}"))?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [spec, vocab, out] = args.as_slice() else {
        eprintln!("usage: synthetic_gguf SHAPE:TYPE VOCAB.gguf OUT.gguf");
        return ExitCode::from(2);
    };
    match run(spec, vocab, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
