//! The ggml tensor type table.
//!
//! The GGUF reader needs the block geometry of *every* ggml type (so it can
//! bounds-check tensors it will never compute with); the engine supports a
//! subset, [`TensorType`]. Keeping both here means one place defines a type.

/// Geometry of any ggml type id, supported or not: (name, elements per block, bytes per block).
pub fn ggml_type_info(id: u32) -> Option<(&'static str, usize, usize)> {
    const QK_K: usize = 256;
    Some(match id {
        0 => ("F32", 1, 4),
        1 => ("F16", 1, 2),
        2 => ("Q4_0", 32, 18),
        3 => ("Q4_1", 32, 20),
        6 => ("Q5_0", 32, 22),
        7 => ("Q5_1", 32, 24),
        8 => ("Q8_0", 32, 34),
        9 => ("Q8_1", 32, 40),
        10 => ("Q2_K", QK_K, 84),
        11 => ("Q3_K", QK_K, 110),
        12 => ("Q4_K", QK_K, 144),
        13 => ("Q5_K", QK_K, 176),
        14 => ("Q6_K", QK_K, 210),
        15 => ("Q8_K", QK_K, 292),
        16 => ("IQ2_XXS", QK_K, 66),
        17 => ("IQ2_XS", QK_K, 74),
        18 => ("IQ3_XXS", QK_K, 98),
        19 => ("IQ1_S", QK_K, 50),
        20 => ("IQ4_NL", 32, 18),
        21 => ("IQ3_S", QK_K, 110),
        22 => ("IQ2_S", QK_K, 82),
        23 => ("IQ4_XS", QK_K, 136),
        24 => ("I8", 1, 1),
        25 => ("I16", 1, 2),
        26 => ("I32", 1, 4),
        27 => ("I64", 1, 8),
        28 => ("F64", 1, 8),
        29 => ("IQ1_M", QK_K, 56),
        30 => ("BF16", 1, 2),
        34 => ("TQ1_0", QK_K, 54),
        35 => ("TQ2_0", QK_K, 66),
        39 => ("MXFP4", 32, 17),
        _ => return None,
    })
}

/// The tensor types this engine computes with (everything real Llama 2 GGUF files use).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TensorType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
}

impl TensorType {
    pub const ALL: [TensorType; 13] = [
        TensorType::F32,
        TensorType::F16,
        TensorType::BF16,
        TensorType::Q4_0,
        TensorType::Q4_1,
        TensorType::Q5_0,
        TensorType::Q5_1,
        TensorType::Q8_0,
        TensorType::Q2_K,
        TensorType::Q3_K,
        TensorType::Q4_K,
        TensorType::Q5_K,
        TensorType::Q6_K,
    ];

    pub fn ggml_id(self) -> u32 {
        match self {
            TensorType::F32 => 0,
            TensorType::F16 => 1,
            TensorType::Q4_0 => 2,
            TensorType::Q4_1 => 3,
            TensorType::Q5_0 => 6,
            TensorType::Q5_1 => 7,
            TensorType::Q8_0 => 8,
            TensorType::Q2_K => 10,
            TensorType::Q3_K => 11,
            TensorType::Q4_K => 12,
            TensorType::Q5_K => 13,
            TensorType::Q6_K => 14,
            TensorType::BF16 => 30,
        }
    }

    pub fn from_ggml_id(id: u32) -> Option<TensorType> {
        TensorType::ALL.into_iter().find(|t| t.ggml_id() == id)
    }

    /// Parses a user-facing name such as `q4_k` or `F16` (case-insensitive).
    pub fn from_name(name: &str) -> Option<TensorType> {
        TensorType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    pub fn name(self) -> &'static str {
        ggml_type_info(self.ggml_id())
            .expect("supported types are in the table")
            .0
    }

    /// Elements per block (1 for the float types).
    pub fn block_size(self) -> usize {
        ggml_type_info(self.ggml_id())
            .expect("supported types are in the table")
            .1
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        ggml_type_info(self.ggml_id())
            .expect("supported types are in the table")
            .2
    }

    /// Bytes of a row of `n` elements, or `None` when `n` is not a whole number of blocks.
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        (n % self.block_size() == 0).then(|| n / self.block_size() * self.type_size())
    }

    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }
}

impl std::fmt::Display for TensorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Name of any ggml type id, for error messages about types we do not support.
pub fn ggml_type_name(id: u32) -> String {
    match ggml_type_info(id) {
        Some((name, _, _)) => name.to_string(),
        None => format!("unknown type id {id}"),
    }
}
