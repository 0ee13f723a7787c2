//! The `llama-wgpu` command line: one file per subcommand.

mod bench;
mod chat;
pub mod common;
mod convert;
mod devices;
mod embed;
mod generate;
mod info;
mod list;
mod perplexity;
mod pull;
mod rm;
mod serve;
mod tokenize;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "llama-wgpu",
    version,
    about = "Llama-family LLM inference on any GPU (wgpu/WGSL)"
)]
struct Cli {
    /// More diagnostics on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a GGUF file's metadata and tensor table.
    Info(info::InfoArgs),
    /// Tokenize text with a model's vocabulary.
    Tokenize(tokenize::TokenizeArgs),
    /// List the GPU adapters wgpu can see, with their limits and features.
    Devices(devices::DevicesArgs),
    /// Generate text from a prompt.
    Generate(generate::GenerateArgs),
    /// Chat with a model through its chat template (interactive on a terminal, one message per line otherwise).
    Chat(chat::ChatArgs),
    /// Perplexity of a text file (llama.cpp's method, comparable with llama-perplexity).
    Perplexity(perplexity::PerplexityArgs),
    /// Embeddings of texts: final hidden states, pooled and normalized (as llama-embedding).
    Embed(embed::EmbedArgs),
    /// Measure prompt processing and generation speed (llama-bench style).
    Bench(bench::BenchArgs),
    /// Download a model from the Hugging Face Hub into its shared cache (HF_HUB_CACHE).
    Pull(pull::PullArgs),
    /// List the models in the Hugging Face cache.
    #[command(alias = "ls")]
    List(list::ListArgs),
    /// Remove a model from the Hugging Face cache.
    Rm(rm::RmArgs),
    /// Write a Hugging Face model folder (with LoRA adapters merged, any type) as a GGUF file.
    Convert(convert::ConvertArgs),
    /// Serve the model over HTTP: OpenAI and Ollama APIs, metrics, a web chat page.
    Serve(serve::ServeArgs),
}

/// Runs the CLI: results on stdout, diagnostics on stderr, one-line errors.
pub fn main() -> ExitCode {
    let cli = Cli::parse_from(common::rewrite_llama_cpp_flags(std::env::args_os()));
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("LLAMA_WGPU_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("llama_wgpu={level},wgpu=error"))
        });
    // Colours only for a person at a terminal: logs redirected to a file or
    // a pipe (scripts, CI, `2>log`) stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    let result = match &cli.command {
        Command::Info(a) => info::run(a),
        Command::Tokenize(a) => tokenize::run(a),
        Command::Devices(a) => devices::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Chat(a) => chat::run(a),
        Command::Perplexity(a) => perplexity::run(a),
        Command::Embed(a) => embed::run(a),
        Command::Pull(a) => pull::run(a),
        Command::List(a) => list::run(a),
        Command::Rm(a) => rm::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Serve(a) => serve::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Already printed as it happened (e.g. a failed chat turn).
        Err(e) if e.is::<AlreadyReported>() => ExitCode::FAILURE,
        Err(e) => {
            // One line a person can act on; the chain of causes joined with ": ".
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// An error that was already reported on stderr: exit non-zero without repeating it.
#[derive(Debug)]
pub(crate) struct AlreadyReported;

impl std::fmt::Display for AlreadyReported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("errors were reported above")
    }
}

impl std::error::Error for AlreadyReported {}
