//! Memory-mapped, bounds-checked GGUF parser (versions 2 and 3, little-endian).
//!
//! Every count in the file is distrusted: nothing is allocated from a count
//! before checking that the remaining bytes could hold that many elements, and
//! every error says where (key, tensor, byte offset) it went wrong.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::value::{tag, Array, Value};
use super::{GgufError, TensorInfo};
use crate::quant::ggml_type_info;

pub const MAGIC: &[u8; 4] = b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most four dimensions.
pub const MAX_DIMS: u32 = 4;
/// Arrays of arrays are legal; a hostile file could nest them until the stack overflows.
const MAX_NESTING: u32 = 4;
/// Smallest metadata entry: key length (8) + value type (4) + a one-byte value.
const MIN_KV_BYTES: u64 = 13;
/// Smallest tensor info: name length (8) + dim count (4) + one dim (8) + type (4) + offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 32;

enum Storage {
    Mmap(Arc<memmap2::Mmap>),
    Owned(Arc<[u8]>),
}

impl std::ops::Deref for Storage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Storage::Mmap(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// The bytes of one tensor of an assembled model ([`Gguf::assemble`]): a
/// range of a shared memory-mapped file, or bytes computed at load (permuted,
/// merged, quantized). Cloning shares, never copies.
#[derive(Clone)]
pub enum TensorBytes {
    Mapped {
        map: Arc<memmap2::Mmap>,
        start: usize,
        len: usize,
    },
    Owned(Arc<[u8]>),
}

impl TensorBytes {
    pub fn owned(bytes: Vec<u8>) -> TensorBytes {
        TensorBytes::Owned(bytes.into())
    }

    /// A range of a mapping; `None` when it runs past the end.
    pub fn mapped(map: Arc<memmap2::Mmap>, start: usize, len: usize) -> Option<TensorBytes> {
        (start.checked_add(len)? <= map.len()).then_some(TensorBytes::Mapped { map, start, len })
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            TensorBytes::Mapped { map, start, len } => &map[*start..*start + *len],
            TensorBytes::Owned(v) => v,
        }
    }
}

/// One tensor of an assembled model: name, ggml dims, type, bytes.
pub struct TensorEntry {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: crate::quant::TensorType,
    pub bytes: TensorBytes,
}

/// A parsed GGUF file. Tensor data stays in the mapping until asked for.
pub struct Gguf {
    data: Storage,
    /// Turns a SIGBUS in `data`'s mapping (file truncated while mapped) into
    /// a message naming the file.
    _sigbus: Option<super::sigbus::Guard>,
    has_data: bool,
    path: Option<PathBuf>,
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute file offset of the tensor data section.
    pub data_offset: u64,
    key_index: HashMap<String, usize>,
    tensor_index: HashMap<String, usize>,
    /// The other files of a split model (llama.cpp's `gguf-split`: parts 2..N),
    /// and for each of their tensors the part that holds its bytes.
    split_parts: Vec<Gguf>,
    part_of: HashMap<String, usize>,
    /// An assembled model's tensor bytes, one per entry of `tensors`; empty
    /// for a parsed file, whose bytes are in `data`.
    parts: Vec<TensorBytes>,
}

impl Gguf {
    /// Maps and parses a file. The first part of a split model
    /// (`NAME-00001-of-0000N.gguf`, with `split.count` N) opens every part:
    /// the tensor table is theirs together.
    pub fn open(path: impl AsRef<Path>) -> Result<Gguf, GgufError> {
        let path = path.as_ref();
        let mut g = Gguf::open_one(path)?;
        let count = g
            .opt_u64("split.count")
            .map_err(|e| e.in_file(path))?
            .unwrap_or(1);
        if count > 1 {
            g.open_parts(path, count)?;
        }
        Ok(g)
    }

    fn open_parts(&mut self, path: &Path, count: u64) -> Result<(), GgufError> {
        let no = self
            .opt_u64("split.no")
            .map_err(|e| e.in_file(path))?
            .unwrap_or(0);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let part = super::split::split_part(&name);
        if no != 0 {
            let first = part
                .map(|p| super::split::split_name(&p.stem, 1, p.count))
                .unwrap_or_else(|| "its first part".into());
            return Err(GgufError::new(format!(
                "is part {} of {count} of a split model: open {first}",
                no + 1
            ))
            .in_file(path));
        }
        let Some(part) = part.filter(|p| p.count as u64 == count) else {
            return Err(GgufError::new(format!(
                "split.count is {count} but the file name does not end in -00001-of-{count:05}.gguf, so the other parts cannot be found"
            ))
            .in_file(path));
        };
        for i in 2..=part.count {
            let p = path.with_file_name(super::split::split_name(&part.stem, i, part.count));
            let g = Gguf::open_one(&p)?;
            let (no, n) = (g.opt_u64("split.no"), g.opt_u64("split.count"));
            if no.ok().flatten() != Some(i as u64 - 1) || n.ok().flatten() != Some(count) {
                return Err(GgufError::new(format!(
                    "is not part {i} of {count} of {name} (its split.no / split.count differ)"
                ))
                .in_file(&p));
            }
            for t in &g.tensors {
                if self.tensor_index.contains_key(&t.name) {
                    return Err(GgufError::new(format!(
                        "duplicate tensor name '{}' across split parts",
                        t.name
                    ))
                    .in_file(&p));
                }
                self.tensor_index.insert(t.name.clone(), self.tensors.len());
                self.part_of.insert(t.name.clone(), self.split_parts.len());
                self.tensors.push(t.clone());
            }
            self.split_parts.push(g);
        }
        if let Some(n) = self
            .opt_u64("split.tensors.count")
            .map_err(|e| e.in_file(path))?
        {
            if n != self.tensors.len() as u64 {
                return Err(GgufError::new(format!(
                    "split.tensors.count is {n} but the {count} parts hold {} tensors",
                    self.tensors.len()
                ))
                .in_file(path));
            }
        }
        Ok(())
    }

    fn open_one(path: &Path) -> Result<Gguf, GgufError> {
        let file = std::fs::File::open(path)
            .map_err(|e| GgufError::new(format!("cannot open: {e}")).in_file(path))?;
        // Opening a directory succeeds on Unix; mapping it then fails with a
        // baffling "No such device".
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(GgufError::new("is a directory, not a GGUF file").in_file(path));
        }
        // SAFETY: the mapping is read-only; a file modified underneath us while
        // mapped could change tensor bytes, which is the same contract every
        // mmap-based model loader (llama.cpp included) accepts.
        // A file truncated while mapped raises SIGBUS on the next read of a
        // lost page: `sigbus` turns that into an error message naming it.
        let mmap = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| GgufError::new(format!("cannot map: {e}")).in_file(path))?;
        let guard = super::sigbus::watch(mmap.as_ptr(), mmap.len(), path);
        let mut g =
            Gguf::parse(Storage::Mmap(Arc::new(mmap)), false).map_err(|e| e.in_file(path))?;
        g._sigbus = Some(guard);
        g.path = Some(path.to_path_buf());
        Ok(g)
    }

    /// Parses an in-memory file (tests, fuzzing, generated models).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Gguf, GgufError> {
        Gguf::parse(Storage::Owned(bytes.into()), false)
    }

    /// Parses the header and tensor table of a file whose tensor data is
    /// absent (synthetic benchmark models, whose weights are generated on the
    /// GPU). The table is checked as usual except against the file length;
    /// [`Gguf::tensor_data`] must not be called on the result.
    pub fn header_only(bytes: Vec<u8>) -> Result<Gguf, GgufError> {
        Gguf::parse(Storage::Owned(bytes.into()), true)
    }

    /// False for [`Gguf::header_only`] files: tensors have shapes and types, no bytes.
    pub fn has_data(&self) -> bool {
        self.has_data
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The file's name for messages, or `<memory>`.
    pub fn display_name(&self) -> String {
        self.path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<memory>".into())
    }

    fn parse(data: Storage, header_only: bool) -> Result<Gguf, GgufError> {
        let mut c = Cursor { buf: &data, pos: 0 };
        let magic = c.bytes(4, || "magic".into())?;
        if magic != MAGIC {
            return Err(GgufError::new(format!(
                "not a GGUF file (magic {:?}, expected \"GGUF\")",
                String::from_utf8_lossy(magic)
            )));
        }
        let version = c.u32(|| "version".into())?;
        match version {
            2 | 3 => {}
            1 => return Err(GgufError::new(
                "GGUF version 1 is not supported (re-convert the model with a current llama.cpp)",
            )),
            v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
                return Err(GgufError::new("big-endian GGUF files are not supported"))
            }
            v => {
                return Err(GgufError::new(format!(
                    "unsupported GGUF version {v} (expected 2 or 3)"
                )))
            }
        }
        let n_tensors = c.u64(|| "tensor count".into())?;
        let n_kv = c.u64(|| "metadata count".into())?;
        // Checked up front so a corrupt count is reported as such, not as a
        // truncation somewhere in the middle of the table it implies.
        let left = c.remaining() as u64;
        if n_tensors > left / MIN_TENSOR_INFO_BYTES {
            return Err(GgufError::new(format!(
                "tensor count {n_tensors} (at offset 8) is impossible: only {left} bytes follow the header (file truncated or count corrupt)"
            )));
        }
        if n_kv > left / MIN_KV_BYTES {
            return Err(GgufError::new(format!(
                "metadata count {n_kv} (at offset 16) is impossible: only {left} bytes follow the header (file truncated or count corrupt)"
            )));
        }
        if n_tensors * MIN_TENSOR_INFO_BYTES + n_kv * MIN_KV_BYTES > left {
            return Err(GgufError::new(format!(
                "tensor count {n_tensors} and metadata count {n_kv} together are impossible: only {left} bytes follow the header (file truncated or counts corrupt)"
            )));
        }

        let mut metadata = Vec::with_capacity(c.capacity_for(n_kv, MIN_KV_BYTES as usize));
        let mut key_index = HashMap::new();
        for i in 0..n_kv {
            let at = c.pos;
            let key = c.string(|| format!("key of metadata entry {i}"))?;
            let ty = c.u32(|| format!("type of metadata key '{}'", short(&key)))?;
            let value = c.value(ty, &key, 0)?;
            if key_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(GgufError::new(format!(
                    "duplicate metadata key '{key}' at offset {at}"
                )));
            }
            metadata.push((key, value));
        }

        let alignment = match key_index.get("general.alignment").map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if *a > 0 && a.is_power_of_two() => *a as u64,
            Some(v) => {
                return Err(GgufError::new(format!(
                    "metadata key 'general.alignment' must be a non-zero power of two u32, found {} {v}",
                    v.type_name()
                )))
            }
        };

        let mut tensors =
            Vec::with_capacity(c.capacity_for(n_tensors, MIN_TENSOR_INFO_BYTES as usize));
        let mut tensor_index = HashMap::new();
        for i in 0..n_tensors {
            let name = c.string(|| format!("name of tensor {i}"))?;
            let n_dims = c.u32(|| format!("dimension count of tensor '{}'", short(&name)))?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(GgufError::new(format!(
                    "tensor '{name}' has {n_dims} dimensions (expected 1 to {MAX_DIMS})"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                dims.push(c.u64(|| format!("dimension {d} of tensor '{}'", short(&name)))?);
            }
            let type_id = c.u32(|| format!("type of tensor '{}'", short(&name)))?;
            let offset = c.u64(|| format!("offset of tensor '{}'", short(&name)))?;
            let info = TensorInfo::new(name, dims, type_id, offset)?;
            if info.offset % alignment != 0 {
                return Err(GgufError::new(format!(
                    "tensor '{}' data offset {} is not a multiple of the alignment {alignment}",
                    info.name, info.offset
                )));
            }
            if tensor_index
                .insert(info.name.clone(), tensors.len())
                .is_some()
            {
                return Err(GgufError::new(format!(
                    "duplicate tensor name '{}'",
                    info.name
                )));
            }
            tensors.push(info);
        }

        let data_offset = align_up(c.pos as u64, alignment);
        let file_len = data.len() as u64;
        let data_len = file_len.saturating_sub(data_offset);
        for t in &tensors {
            let end = t.offset.checked_add(t.n_bytes);
            if end.is_none_or(|end| end > data_len && !header_only) {
                return Err(GgufError::new(format!(
                    "tensor '{}' data ({} bytes at offset {}) runs past the end of the file ({} bytes of tensor data; the file is truncated or corrupt)",
                    t.name, t.n_bytes, t.offset, data_len
                )));
            }
        }
        // Overlapping tensors mean a corrupt table: two names would alias one buffer.
        let mut spans: Vec<&TensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
        spans.sort_by_key(|t| t.offset);
        for w in spans.windows(2) {
            if w[0].offset + w[0].n_bytes > w[1].offset {
                return Err(GgufError::new(format!(
                    "tensors '{}' and '{}' overlap in the data section",
                    w[0].name, w[1].name
                )));
            }
        }

        Ok(Gguf {
            data,
            _sigbus: None,
            has_data: !header_only,
            path: None,
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            key_index,
            tensor_index,
            parts: Vec::new(),
            split_parts: Vec::new(),
            part_of: HashMap::new(),
        })
    }

    /// A model built in memory rather than parsed (a Hugging Face folder, a
    /// quantized or LoRA-merged model): metadata as given, tensors in order,
    /// laid out at the offsets a GGUF file of them would have, so
    /// [`Gguf::write_to`] writes exactly this model. `origin` names it in messages.
    pub fn assemble(
        origin: &Path,
        metadata: Vec<(String, Value)>,
        tensors: Vec<TensorEntry>,
    ) -> Result<Gguf, GgufError> {
        let mut key_index = HashMap::new();
        for (i, (k, _)) in metadata.iter().enumerate() {
            if key_index.insert(k.clone(), i).is_some() {
                return Err(GgufError::new(format!("duplicate metadata key '{k}'")));
            }
        }
        let mut infos = Vec::with_capacity(tensors.len());
        let mut parts = Vec::with_capacity(tensors.len());
        let mut tensor_index = HashMap::new();
        let mut offset = 0u64;
        for t in tensors {
            let info = TensorInfo::new(t.name, t.dims, t.ty.ggml_id(), offset)?;
            if info.n_bytes != t.bytes.bytes().len() as u64 {
                return Err(GgufError::new(format!(
                    "tensor '{}' has {} bytes, its shape {:?} of {} needs {}",
                    info.name,
                    t.bytes.bytes().len(),
                    info.dims,
                    t.ty,
                    info.n_bytes
                )));
            }
            if tensor_index
                .insert(info.name.clone(), infos.len())
                .is_some()
            {
                return Err(GgufError::new(format!(
                    "duplicate tensor name '{}'",
                    info.name
                )));
            }
            offset = align_up(offset + info.n_bytes, DEFAULT_ALIGNMENT);
            infos.push(info);
            parts.push(t.bytes);
        }
        Ok(Gguf {
            data: Storage::Owned(Arc::from(Vec::new())),
            has_data: true,
            path: Some(origin.to_path_buf()),
            version: 3,
            metadata,
            tensors: infos,
            alignment: DEFAULT_ALIGNMENT,
            data_offset: 0,
            key_index,
            tensor_index,
            parts,
            split_parts: Vec::new(),
            part_of: HashMap::new(),
            _sigbus: None,
        })
    }

    /// True for [`Gguf::assemble`]d models.
    pub fn is_assembled(&self) -> bool {
        !self.parts.is_empty()
    }

    /// A tensor's bytes as a shareable handle, for building a new model from
    /// this one without copying the tensors it leaves alone.
    pub fn tensor_bytes(&self, t: &TensorInfo) -> TensorBytes {
        if let Some(&i) = self.tensor_index.get(&t.name) {
            if let Some(p) = self.parts.get(i) {
                return p.clone();
            }
        }
        let start = (self.data_offset + t.offset) as usize;
        match &self.data {
            Storage::Mmap(m) => TensorBytes::Mapped {
                map: m.clone(),
                start,
                len: t.n_bytes as usize,
            },
            Storage::Owned(_) => TensorBytes::owned(self.tensor_data(t).to_vec()),
        }
    }

    /// Writes the model as a GGUF file (version 3): metadata, tensor table,
    /// then each tensor's bytes streamed from where they are.
    pub fn write_to(&self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        let mut header = super::GgufWriter::new();
        for (k, v) in &self.metadata {
            if k != "general.alignment" {
                header.kv(k, v.clone());
            }
        }
        for t in &self.tensors {
            header.tensor_raw_header(&t.name, &t.dims, t.type_id, t.n_bytes);
        }
        w.write_all(&header.header_bytes())?;
        for t in &self.tensors {
            let data = self.tensor_data(t);
            w.write_all(data)?;
            let pad = align_up(data.len() as u64, DEFAULT_ALIGNMENT) as usize - data.len();
            w.write_all(&vec![0u8; pad])?;
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn require(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key)
            .ok_or_else(|| GgufError::new(format!("missing metadata key '{key}'")))
    }

    fn wrong_type(key: &str, want: &str, v: &Value) -> GgufError {
        GgufError::new(format!(
            "metadata key '{key}' should be {want}, found {} {v}",
            v.type_name()
        ))
    }

    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        let v = self.require(key)?;
        v.as_u64()
            .ok_or_else(|| Self::wrong_type(key, "a non-negative integer", v))
    }

    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        let v = self.require(key)?;
        v.as_f32()
            .ok_or_else(|| Self::wrong_type(key, "a float", v))
    }

    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self.require(key)?;
        v.as_str()
            .ok_or_else(|| Self::wrong_type(key, "a string", v))
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        let v = self.require(key)?;
        v.as_bool()
            .ok_or_else(|| Self::wrong_type(key, "a bool", v))
    }

    pub fn get_array(&self, key: &str) -> Result<&Array, GgufError> {
        let v = self.require(key)?;
        v.as_array()
            .ok_or_else(|| Self::wrong_type(key, "an array", v))
    }

    /// `Ok(None)` when absent, an error when present with the wrong type.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.get(key).map(|_| self.get_u64(key)).transpose()
    }
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        self.get(key).map(|_| self.get_f32(key)).transpose()
    }
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.get(key).map(|_| self.get_str(key)).transpose()
    }
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.get(key).map(|_| self.get_bool(key)).transpose()
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of a tensor (bounds were checked at parse time).
    ///
    /// Panics if `t` is not from this file's table (its bounds were never
    /// checked), or for a [`Gguf::header_only`] file.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        assert!(self.has_data, "tensor data asked of a header-only GGUF");
        if let Some(&i) = self.part_of.get(&t.name) {
            return self.split_parts[i].tensor_data(t);
        }
        if let Some(p) = self
            .tensor_index
            .get(&t.name)
            .and_then(|&i| self.parts.get(i))
        {
            return p.bytes();
        }
        let start = (self.data_offset + t.offset) as usize;
        &self.data[start..start + t.n_bytes as usize]
    }

    /// Size of the whole file in bytes (every part of a split model; an
    /// assembled model: its tensor bytes).
    pub fn file_len(&self) -> u64 {
        if self.is_assembled() {
            return self.tensor_bytes_total();
        }
        self.data.len() as u64 + self.split_parts.iter().map(Gguf::file_len).sum::<u64>()
    }

    /// Bytes of tensor data in the file.
    pub fn tensor_bytes_total(&self) -> u64 {
        self.tensors.iter().map(|t| t.n_bytes).sum()
    }
}

/// A key or tensor name cut for an error message: a hostile file's names
/// can be megabytes long, and a message stays one readable line.
fn short(name: &str) -> std::borrow::Cow<'_, str> {
    const MAX: usize = 80;
    if name.len() <= MAX {
        return name.into();
    }
    let mut end = MAX;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &name[..end], name.len()).into()
}

pub(crate) fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// A safe initial capacity for `count` items of at least `min_size` bytes each.
    fn capacity_for(&self, count: u64, min_size: usize) -> usize {
        (count.min((self.remaining() / min_size) as u64)) as usize
    }

    // `what` names the field for an error message; it is a closure so that
    // the message (which may quote a long key) is formatted only on failure:
    // formatting it per array element made parsing quadratic in the key size.
    fn bytes(&mut self, n: usize, what: impl FnOnce() -> String) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::new(format!(
                "file truncated reading {} at offset {} (need {n} bytes, {} left)",
                what(),
                self.pos,
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(
        &mut self,
        what: impl FnOnce() -> String,
    ) -> Result<[u8; N], GgufError> {
        Ok(self.bytes(N, what)?.try_into().expect("length checked"))
    }

    fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: impl Fn() -> String) -> Result<String, GgufError> {
        let at = self.pos;
        let len = self.u64(&what)?;
        if len > self.remaining() as u64 {
            return Err(GgufError::new(format!(
                "{} at offset {at} claims {len} bytes but only {} remain",
                what(),
                self.remaining()
            )));
        }
        let bytes = self.bytes(len as usize, &what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| GgufError::new(format!("{} at offset {at} is not valid UTF-8", what())))
    }

    fn value(&mut self, ty: u32, key: &str, depth: u32) -> Result<Value, GgufError> {
        let what = || format!("value of metadata key '{}'", short(key));
        Ok(match ty {
            tag::U8 => Value::U8(self.array::<1>(what)?[0]),
            tag::I8 => Value::I8(self.array::<1>(what)?[0] as i8),
            tag::U16 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            tag::I16 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            tag::U32 => Value::U32(u32::from_le_bytes(self.array(what)?)),
            tag::I32 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            tag::U64 => Value::U64(u64::from_le_bytes(self.array(what)?)),
            tag::I64 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            tag::F32 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            tag::F64 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            tag::BOOL => Value::Bool(self.bool(key)?),
            tag::STRING => Value::String(self.string(what)?),
            tag::ARRAY => Value::Array(self.array_value(key, depth)?),
            t => {
                return Err(GgufError::new(format!(
                    "metadata key '{}' has unknown value type {t} at offset {}",
                    short(key),
                    self.pos - 4
                )))
            }
        })
    }

    fn bool(&mut self, key: &str) -> Result<bool, GgufError> {
        match self.array::<1>(|| format!("value of metadata key '{}'", short(key)))?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(GgufError::new(format!(
                "metadata key '{}' has invalid bool byte {b} at offset {}",
                short(key),
                self.pos - 1
            ))),
        }
    }

    /// An array (type tag already read): numeric elements are decoded in one
    /// pass over their bytes into a typed vector.
    fn array_value(&mut self, key: &str, depth: u32) -> Result<Array, GgufError> {
        if depth >= MAX_NESTING {
            return Err(GgufError::new(format!(
                "metadata key '{}' nests arrays deeper than {MAX_NESTING} levels",
                short(key)
            )));
        }
        let at = self.pos;
        let elem = self.u32(|| format!("array element type of metadata key '{}'", short(key)))?;
        let count = self.u64(|| format!("array length of metadata key '{}'", short(key)))?;
        let min_size: u64 = match elem {
            tag::U8 | tag::I8 | tag::BOOL => 1,
            tag::U16 | tag::I16 => 2,
            tag::U32 | tag::I32 | tag::F32 => 4,
            tag::U64 | tag::I64 | tag::F64 | tag::STRING => 8,
            tag::ARRAY => 12,
            t => {
                return Err(GgufError::new(format!(
                    "metadata key '{}' has unknown array element type {t} at offset {at}",
                    short(key)
                )))
            }
        };
        if count.saturating_mul(min_size) > self.remaining() as u64 {
            return Err(GgufError::new(format!(
                "metadata key '{}' claims {count} array elements at offset {at} but only {} bytes remain",
                short(key),
                self.remaining()
            )));
        }
        let n = count as usize;
        let what = || format!("value of metadata key '{}'", short(key));
        macro_rules! numbers {
            ($variant:ident, $t:ty) => {{
                let raw = self.bytes(n * std::mem::size_of::<$t>(), what)?;
                Array::$variant(
                    raw.chunks_exact(std::mem::size_of::<$t>())
                        .map(|b| <$t>::from_le_bytes(b.try_into().expect("chunk size")))
                        .collect(),
                )
            }};
        }
        Ok(match elem {
            tag::U8 => numbers!(U8, u8),
            tag::I8 => numbers!(I8, i8),
            tag::U16 => numbers!(U16, u16),
            tag::I16 => numbers!(I16, i16),
            tag::U32 => numbers!(U32, u32),
            tag::I32 => numbers!(I32, i32),
            tag::U64 => numbers!(U64, u64),
            tag::I64 => numbers!(I64, i64),
            tag::F32 => numbers!(F32, f32),
            tag::F64 => numbers!(F64, f64),
            tag::BOOL => {
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.bool(key)?);
                }
                Array::Bool(items)
            }
            tag::STRING => {
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.string(what)?);
                }
                Array::String(items)
            }
            _ => {
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.array_value(key, depth + 1)?);
                }
                Array::Array(items)
            }
        })
    }
}

impl TensorInfo {
    fn new(
        name: String,
        dims: Vec<u64>,
        type_id: u32,
        offset: u64,
    ) -> Result<TensorInfo, GgufError> {
        let (type_name, block, type_size) = ggml_type_info(type_id).ok_or_else(|| {
            GgufError::new(format!(
                "tensor '{name}' has unknown ggml type id {type_id}"
            ))
        })?;
        let mut n_elements: u64 = 1;
        for &d in &dims {
            if d == 0 {
                return Err(GgufError::new(format!(
                    "tensor '{name}' has a zero dimension {dims:?}"
                )));
            }
            n_elements = n_elements
                .checked_mul(d)
                .filter(|&n| n < (1 << 48))
                .ok_or_else(|| {
                    GgufError::new(format!("tensor '{name}' dimensions {dims:?} overflow"))
                })?;
        }
        if dims[0] % block as u64 != 0 {
            return Err(GgufError::new(format!(
                "tensor '{name}' of type {type_name} has a row of {} elements, not a multiple of its block size {block}",
                dims[0]
            )));
        }
        let n_bytes = n_elements / block as u64 * type_size as u64;
        Ok(TensorInfo {
            name,
            dims,
            type_id,
            offset,
            n_bytes,
        })
    }
}
