//! The Llama model: config from metadata, the CPU reference forward pass, synthetic models.
