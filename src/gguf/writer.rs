//! A small GGUF writer (version 3), for tests and synthetic models.

use std::io::Write;

use super::reader::{align_up, DEFAULT_ALIGNMENT, MAGIC};
use super::value::{Array, Value};
use crate::quant::TensorType;

#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

/// name, dims, type id, byte length, data (`None`: header-only).
type PendingTensor = (String, Vec<u64>, u32, u64, Option<Vec<u8>>);

impl GgufWriter {
    pub fn new() -> GgufWriter {
        GgufWriter::default()
    }

    pub fn kv(&mut self, key: &str, value: Value) -> &mut Self {
        self.metadata.push((key.to_string(), value));
        self
    }

    /// Adds a tensor; `dims` in ggml order (row length first).
    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: TensorType, data: Vec<u8>) -> &mut Self {
        let n: u64 = dims.iter().product();
        assert_eq!(
            Some(data.len()),
            ty.row_bytes(n as usize),
            "tensor {name}: data length does not match {dims:?} of {ty}"
        );
        self.tensors.push((
            name.to_string(),
            dims.to_vec(),
            ty.ggml_id(),
            data.len() as u64,
            Some(data),
        ));
        self
    }

    /// Adds a tensor's table entry without data, for [`GgufWriter::header_bytes`].
    pub fn tensor_header(&mut self, name: &str, dims: &[u64], ty: TensorType) -> &mut Self {
        let n: u64 = dims.iter().product();
        let bytes = ty
            .row_bytes(n as usize)
            .unwrap_or_else(|| panic!("tensor {name}: {dims:?} is not whole {ty} blocks"));
        self.tensors.push((
            name.to_string(),
            dims.to_vec(),
            ty.ggml_id(),
            bytes as u64,
            None,
        ));
        self
    }

    /// A table entry of any ggml type id with its byte length (writing a model
    /// whose tensors are streamed separately, `Gguf::write_to`).
    pub(crate) fn tensor_raw_header(
        &mut self,
        name: &str,
        dims: &[u64],
        type_id: u32,
        n_bytes: u64,
    ) {
        self.tensors
            .push((name.to_string(), dims.to_vec(), type_id, n_bytes, None));
    }

    /// The header and tensor table only (see `Gguf::header_only`).
    pub fn header_bytes(&self) -> Vec<u8> {
        self.header()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out)
            .expect("writing to a Vec cannot fail");
        out
    }

    /// The layout alignment: `general.alignment` when it is one a reader accepts.
    /// An invalid value is still written (tests need such files) but laid out
    /// with the default, as a reader that ignored it would expect.
    fn alignment(&self) -> u64 {
        match self.metadata.iter().find(|(k, _)| k == "general.alignment") {
            Some((_, Value::U32(a))) if a.is_power_of_two() => *a as u64,
            _ => DEFAULT_ALIGNMENT,
        }
    }

    /// Writes the file. Panics if a tensor was added without data.
    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        let align = self.alignment();
        w.write_all(&self.header())?;
        for (name, _, _, _, data) in &self.tensors {
            let data = data
                .as_ref()
                .unwrap_or_else(|| panic!("tensor {name} has no data"));
            w.write_all(data)?;
            let pad = align_up(data.len() as u64, align) as usize - data.len();
            w.write_all(&vec![0u8; pad])?;
        }
        Ok(())
    }

    /// Header, metadata and tensor table, padded to the data alignment.
    fn header(&self) -> Vec<u8> {
        let align = self.alignment();
        let mut head = Vec::new();
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&3u32.to_le_bytes());
        head.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        head.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_str(&mut head, key);
            head.extend_from_slice(&value.tag().to_le_bytes());
            put_value(&mut head, value);
        }
        let mut offset = 0u64;
        for (name, dims, type_id, n_bytes, _) in &self.tensors {
            put_str(&mut head, name);
            head.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                head.extend_from_slice(&d.to_le_bytes());
            }
            head.extend_from_slice(&type_id.to_le_bytes());
            head.extend_from_slice(&offset.to_le_bytes());
            offset = align_up(offset + n_bytes, align);
        }
        let pad = align_up(head.len() as u64, align) as usize - head.len();
        head.resize(head.len() + pad, 0);
        head
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_str(out, s),
        Value::Array(items) => put_array(out, items),
    }
}

fn put_array(out: &mut Vec<u8>, a: &Array) {
    out.extend_from_slice(&a.elem_tag().to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    match a {
        Array::String(items) => items.iter().for_each(|s| put_str(out, s)),
        Array::Array(items) => items.iter().for_each(|inner| put_array(out, inner)),
        _ => a.iter().for_each(|v| put_value(out, &v)),
    }
}

/// Shorthand for string arrays (token lists, merges).
pub fn string_array<S: AsRef<str>>(items: &[S]) -> Value {
    Value::Array(Array::String(
        items.iter().map(|s| s.as_ref().to_string()).collect(),
    ))
}
