//! GGUF: the file format llama.cpp models ship in.
//!
//! [`Gguf`] reads (memory-mapped, every read bounds-checked), [`GgufWriter`]
//! writes (tests and synthetic models).

mod reader;
mod sigbus;
pub mod split;
mod value;
mod writer;

use std::path::Path;

pub use reader::{Gguf, TensorBytes, TensorEntry, DEFAULT_ALIGNMENT, MAX_DIMS};
pub use value::{tag, Array, Value};
pub use writer::{string_array, GgufWriter};

use crate::quant::{ggml_type_name, TensorType};

/// A GGUF parse or lookup failure; the message names the key, tensor or offset.
#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct GgufError {
    msg: String,
}

impl GgufError {
    pub fn new(msg: impl Into<String>) -> GgufError {
        GgufError { msg: msg.into() }
    }

    pub(crate) fn in_file(self, path: &Path) -> GgufError {
        GgufError::new(format!("{}: {}", path.display(), self.msg))
    }
}

/// One entry of the tensor table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the row length (contiguous), `dims[1]` the number of rows.
    pub dims: Vec<u64>,
    /// Raw ggml type id: the file may hold types the engine cannot compute with.
    pub type_id: u32,
    /// Offset inside the tensor data section.
    pub offset: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    pub fn type_name(&self) -> String {
        ggml_type_name(self.type_id)
    }

    /// The engine's type, or "unsupported tensor type X in tensor Y".
    pub fn tensor_type(&self) -> Result<TensorType, GgufError> {
        TensorType::from_ggml_id(self.type_id).ok_or_else(|| {
            GgufError::new(format!(
                "unsupported tensor type {} in tensor '{}'",
                self.type_name(),
                self.name
            ))
        })
    }
}
