//! Safetensors weights: one `model.safetensors` or shards listed in
//! `model.safetensors.index.json`, each memory-mapped once and shared by the
//! tensors that live in it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::HfError;
use crate::gguf::TensorBytes;
use crate::quant::TensorType;

/// One tensor of a checkpoint, still in its file.
#[derive(Clone)]
pub struct StTensor {
    /// PyTorch order: `shape[0]` rows of `shape[1]` elements.
    pub shape: Vec<usize>,
    pub ty: TensorType,
    pub bytes: TensorBytes,
    pub file: PathBuf,
}

/// Every tensor of a checkpoint by its Hugging Face name, in name order.
pub type StTensors = BTreeMap<String, StTensor>;

/// Maps one safetensors file and lists its tensors.
pub fn open_file(path: &Path) -> Result<StTensors, HfError> {
    let file =
        std::fs::File::open(path).map_err(|e| HfError::file(path, format!("cannot open: {e}")))?;
    // SAFETY: read-only mapping; as with GGUF files, a file changed while
    // mapped changes tensor bytes, the contract every mmap loader accepts.
    let map = unsafe { memmap2::Mmap::map(&file) }
        .map_err(|e| HfError::file(path, format!("cannot map: {e}")))?;
    let map = Arc::new(map);
    let st = safetensors::SafeTensors::deserialize(&map)
        .map_err(|e| HfError::file(path, format!("not a valid safetensors file: {e}")))?;
    let base = map.as_ptr() as usize;
    let mut out = StTensors::new();
    for (name, view) in st.tensors() {
        let ty = match view.dtype() {
            safetensors::Dtype::F32 => TensorType::F32,
            safetensors::Dtype::F16 => TensorType::F16,
            safetensors::Dtype::BF16 => TensorType::BF16,
            other => {
                return Err(HfError::file(
                    path,
                    format!("tensor '{name}' has dtype {other:?} (supported: F32, F16, BF16)"),
                ))
            }
        };
        let data = view.data();
        let bytes = TensorBytes::mapped(map.clone(), data.as_ptr() as usize - base, data.len())
            .expect("safetensors checked the offsets against the file");
        out.insert(
            name,
            StTensor {
                shape: view.shape().to_vec(),
                ty,
                bytes,
                file: path.to_path_buf(),
            },
        );
    }
    Ok(out)
}

/// The weights of a model folder: the shards the index lists, or the single
/// `model.safetensors`; a folder holding only PyTorch `.bin` files is refused
/// with the way out.
pub fn open_folder(dir: &Path) -> Result<StTensors, HfError> {
    let index = dir.join("model.safetensors.index.json");
    let single = dir.join("model.safetensors");
    if index.exists() {
        let text = std::fs::read_to_string(&index)
            .map_err(|e| HfError::file(&index, format!("cannot read: {e}")))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| HfError::file(&index, format!("invalid JSON: {e}")))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| HfError::file(&index, "missing key 'weight_map'"))?;
        let mut by_file: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, f) in map {
            let f = f.as_str().ok_or_else(|| {
                HfError::file(&index, format!("weight_map['{name}'] is not a file name"))
            })?;
            if f.contains('/') || f.contains('\\') || f.starts_with('.') {
                return Err(HfError::file(
                    &index,
                    format!("weight_map['{name}'] = '{f}' is not a file in the folder"),
                ));
            }
            by_file.entry(f).or_default().push(name);
        }
        let mut all = StTensors::new();
        for (f, names) in by_file {
            let path = dir.join(f);
            if !path.exists() {
                return Err(HfError::file(
                    &index,
                    format!("lists shard '{f}', which is missing from the folder"),
                ));
            }
            let mut shard: HashMap<String, StTensor> = open_file(&path)?.into_iter().collect();
            for n in names {
                let t = shard.remove(n).ok_or_else(|| {
                    HfError::file(
                        &path,
                        format!(
                            "has no tensor '{n}', which {} places there",
                            index.display()
                        ),
                    )
                })?;
                all.insert(n.to_string(), t);
            }
        }
        return Ok(all);
    }
    if single.exists() {
        return open_file(&single);
    }
    let has_bin = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".bin"))
        })
        .unwrap_or(false);
    if has_bin {
        return Err(HfError::file(
            dir,
            "has PyTorch .bin weights only; save the model as safetensors (model.save_pretrained(dir, safe_serialization=True)) and try again",
        ));
    }
    Err(HfError::file(
        dir,
        "has no model.safetensors or model.safetensors.index.json",
    ))
}
