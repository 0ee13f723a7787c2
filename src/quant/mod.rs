//! ggml tensor types: the type table and CPU dequantization, bit-exact with llama.cpp.

mod types;

pub use types::{ggml_type_info, ggml_type_name, TensorType};
