//! llama-wgpu: Llama-family language models on any GPU through wgpu compute shaders.
//!
//! The data path, file to token: [`gguf`] maps the file ([`hf`] makes the same model of a Hugging Face folder), [`quant`] knows every
//! tensor type, [`model`] turns metadata into a config and holds the CPU
//! reference forward pass, [`gpu`] uploads weights and runs the WGSL kernels in
//! `shaders/`, [`engine`] generates tokens (its scheduler runs several sequences), [`tokenizer`] turns text into ids
//! and back, [`server`] speaks HTTP (OpenAI and Ollama APIs), and [`cli`] is
//! the `llama-wgpu` command line.

pub mod cli;
pub mod engine;
pub mod gguf;
pub mod gpu;
pub mod hf;
pub mod hub;
pub mod model;
pub mod quant;
pub mod server;
pub mod tokenizer;
