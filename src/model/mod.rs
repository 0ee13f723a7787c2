//! The Llama model: config from metadata, tensor lookup, the CPU reference
//! forward pass, and synthetic models.

mod config;
pub mod cpu;
pub mod rope;
pub mod synthetic;
mod tensors;

pub use config::{LlamaConfig, RopeOverrides};
pub use rope::{Rope, RopeScaling};
pub use tensors::{LayerWeights, ModelWeights, Weight};
