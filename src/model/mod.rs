//! The Llama model: config from metadata, tensor lookup, the CPU reference
//! forward pass, and synthetic models.

mod config;
pub mod cpu;
pub mod synthetic;
mod tensors;

pub use config::LlamaConfig;
pub use tensors::{LayerWeights, ModelWeights, Weight};
