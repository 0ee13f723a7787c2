//! The GGUF reader against its own writer (round trips), against files
//! corrupted byte by byte (every error must name what is wrong, nothing may
//! panic), and against the real SmolLM2 model.

mod common;

use common::test_model_path as model_path;
use std::panic::catch_unwind;
use std::path::PathBuf;

use llama_wgpu::gguf::{string_array, tag, Gguf, GgufWriter, Value};
use llama_wgpu::quant::TensorType;

// ---------------------------------------------------------------- helpers

/// Deterministic filler so tensors differ from one another and from padding.
fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(seed)
                .wrapping_add(1)
        })
        .collect()
}

fn tensor_bytes(ty: TensorType, dims: &[u64], seed: u8) -> Vec<u8> {
    let n: u64 = dims.iter().product();
    bytes(ty.row_bytes(n as usize).expect("whole blocks"), seed)
}

/// The small file most corruption cases start from.
fn base() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.kv("general.architecture", Value::String("llama".into()))
        .kv("test.flag", Value::Bool(true))
        .kv(
            "test.list",
            Value::array(tag::U32, vec![Value::U32(1), Value::U32(2), Value::U32(3)]),
        )
        .kv("test.name", Value::String("abc".into()))
        .tensor(
            "tok.weight",
            &[8, 2],
            TensorType::F32,
            tensor_bytes(TensorType::F32, &[8, 2], 1),
        )
        .tensor(
            "blk.weight",
            &[32, 2],
            TensorType::Q8_0,
            tensor_bytes(TensorType::Q8_0, &[32, 2], 2),
        );
    w
}

/// Position of the first occurrence of `needle` (a key or tensor name in the file).
fn find(hay: &[u8], needle: &str) -> usize {
    let needle = needle.as_bytes();
    hay.windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{needle:?} not in file"))
}

/// Offset of the value type tag of metadata key `key`.
fn kv_type_at(b: &[u8], key: &str) -> usize {
    find(b, key) + key.len()
}

/// Offset of the value of metadata key `key`.
fn kv_value_at(b: &[u8], key: &str) -> usize {
    kv_type_at(b, key) + 4
}

/// Offset of the dimension count of tensor `name`.
fn tensor_at(b: &[u8], name: &str) -> usize {
    // Tensor names come after the metadata; search from the back so a key
    // containing the name cannot be picked.
    let needle = name.as_bytes();
    let pos = b
        .windows(needle.len())
        .rposition(|w| w == needle)
        .unwrap_or_else(|| panic!("tensor {name} not in file"));
    pos + name.len()
}

fn n_dims_of(b: &[u8], name: &str) -> usize {
    let at = tensor_at(b, name);
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

fn tensor_dim_at(b: &[u8], name: &str, d: usize) -> usize {
    tensor_at(b, name) + 4 + 8 * d
}

fn tensor_type_at(b: &[u8], name: &str) -> usize {
    tensor_at(b, name) + 4 + 8 * n_dims_of(b, name)
}

fn tensor_offset_at(b: &[u8], name: &str) -> usize {
    tensor_type_at(b, name) + 4
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Parses without letting a panic escape: `Ok(Err(msg))` for a parse error.
fn try_parse(b: Vec<u8>) -> std::thread::Result<Result<Gguf, String>> {
    catch_unwind(move || Gguf::from_bytes(b).map_err(|e| e.to_string()))
}

/// The parse must fail, without panicking, with a message containing every `needles`.
#[track_caller]
fn expect_err(b: Vec<u8>, needles: &[&str]) -> String {
    let msg = match try_parse(b) {
        Err(_) => panic!("the reader panicked instead of returning an error"),
        Ok(Ok(_)) => panic!("a malformed file was accepted (expected an error with {needles:?})"),
        Ok(Err(msg)) => msg,
    };
    for n in needles {
        assert!(msg.contains(n), "error {msg:?} does not mention {n:?}");
    }
    msg
}

#[track_caller]
fn parse(b: Vec<u8>) -> Gguf {
    Gguf::from_bytes(b).unwrap_or_else(|e| panic!("valid file rejected: {e}"))
}

// ------------------------------------------------------------- round trips

fn all_value_kinds() -> Vec<(String, Value)> {
    let scalars = vec![
        Value::U8(255),
        Value::I8(-128),
        Value::U16(65535),
        Value::I16(-32768),
        Value::U32(u32::MAX),
        Value::I32(i32::MIN),
        Value::U64(u64::MAX),
        Value::I64(i64::MIN),
        Value::F32(1e-5),
        Value::F32(f32::INFINITY),
        Value::F64(-2.5e300),
        Value::Bool(true),
        Value::Bool(false),
        Value::String(String::new()),
        Value::String("héllo ✓\n\"quoted\"\0".into()),
    ];
    let mut kvs: Vec<(String, Value)> = scalars
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("scalar.{i}.{}", v.type_name()), v.clone()))
        .collect();
    // One array and one empty array of every element type.
    for v in &scalars {
        let t = v.tag();
        kvs.push((
            format!("array.{}.{i}", v.type_name(), i = kvs.len()),
            Value::array(t, vec![v.clone(), v.clone()]),
        ));
        kvs.push((
            format!("empty.{}.{i}", v.type_name(), i = kvs.len()),
            Value::array(t, vec![]),
        ));
    }
    kvs.push(("empty.array".into(), Value::array(tag::ARRAY, vec![])));
    kvs.push(("tokens".into(), string_array(&["<s>", "</s>", "▁the", ""])));
    // Ragged nested arrays, an empty inner one, and inner arrays of another type.
    kvs.push((
        "nested".into(),
        Value::array(
            tag::ARRAY,
            vec![
                Value::array(tag::I32, vec![Value::I32(1), Value::I32(-2)]),
                Value::array(tag::I32, vec![]),
                Value::array(tag::STRING, vec![Value::String("x".into())]),
            ],
        ),
    ));
    kvs.push(("nested.max_depth".into(), nest(4)));
    kvs
}

/// `depth` arrays inside one another around a single u8.
fn nest(depth: usize) -> Value {
    let mut v = Value::array(tag::U8, vec![Value::U8(7)]);
    for _ in 1..depth {
        v = Value::array(tag::ARRAY, vec![v]);
    }
    v
}

fn all_tensor_kinds() -> Vec<(String, Vec<u64>, TensorType)> {
    let shapes: [&[u64]; 4] = [&[1], &[1, 3], &[1, 2, 2], &[1, 1, 2, 3]];
    TensorType::ALL
        .iter()
        .enumerate()
        .map(|(i, &ty)| {
            // Rows of one or two blocks, 1 to 4 dimensions.
            let mut dims = shapes[i % 4].to_vec();
            dims[0] = (ty.block_size() * (1 + i % 2)) as u64;
            (format!("t{i}.{}", ty.name().to_lowercase()), dims, ty)
        })
        .collect()
}

fn round_trip_file(alignment: Option<u32>) -> (GgufWriter, Vec<(String, Value)>, Vec<Vec<u8>>) {
    let mut w = GgufWriter::new();
    let mut kvs = Vec::new();
    if let Some(a) = alignment {
        kvs.push(("general.alignment".to_string(), Value::U32(a)));
    }
    kvs.extend(all_value_kinds());
    for (k, v) in &kvs {
        w.kv(k, v.clone());
    }
    let mut datas = Vec::new();
    for (i, (name, dims, ty)) in all_tensor_kinds().into_iter().enumerate() {
        let data = tensor_bytes(ty, &dims, i as u8);
        w.tensor(&name, &dims, ty, data.clone());
        datas.push(data);
    }
    (w, kvs, datas)
}

#[test]
fn round_trip_every_value_type_and_tensor_type() {
    for alignment in [None, Some(1), Some(8), Some(32), Some(64), Some(4096)] {
        let (w, kvs, datas) = round_trip_file(alignment);
        let g = parse(w.to_bytes());
        let a = alignment.unwrap_or(32) as u64;
        assert_eq!(g.version, 3);
        assert_eq!(g.alignment, a);
        assert_eq!(g.data_offset % a, 0, "data section not aligned to {a}");
        assert_eq!(
            g.metadata, kvs,
            "metadata differs with alignment {alignment:?}"
        );
        for (k, v) in &kvs {
            assert_eq!(g.get(k), Some(v), "lookup of {k}");
        }
        let kinds = all_tensor_kinds();
        assert_eq!(g.tensors.len(), kinds.len());
        for ((t, (name, dims, ty)), data) in g.tensors.iter().zip(&kinds).zip(&datas) {
            assert_eq!(&t.name, name);
            assert_eq!(&t.dims, dims);
            assert_eq!(t.type_id, ty.ggml_id());
            assert_eq!(t.tensor_type().unwrap(), *ty);
            assert_eq!(t.n_bytes as usize, data.len(), "{name}");
            assert_eq!(t.offset % a, 0, "{name} not aligned to {a}");
            assert_eq!(g.tensor_data(t), &data[..], "{name} data");
            assert_eq!(g.tensor(name).map(|t| &t.name), Some(name));
        }
        assert_eq!(
            g.tensor_bytes_total(),
            datas.iter().map(|d| d.len() as u64).sum::<u64>()
        );
    }
}

#[test]
fn round_trip_nan_keeps_its_bits() {
    let nan = f32::from_bits(0x7fc0_1234);
    let mut w = GgufWriter::new();
    w.kv("nan", Value::F32(nan))
        .kv("nan64", Value::F64(f64::NAN));
    let g = parse(w.to_bytes());
    assert!(matches!(g.get("nan"), Some(Value::F32(v)) if v.to_bits() == nan.to_bits()));
    assert!(matches!(g.get("nan64"), Some(Value::F64(v)) if v.is_nan()));
}

#[test]
fn empty_file_and_version_2_parse() {
    let g = parse(GgufWriter::new().to_bytes());
    assert!(g.metadata.is_empty() && g.tensors.is_empty());
    // Version 2 has the same layout as 3 (v3 only added big-endian files).
    let mut b = base().to_bytes();
    put_u32(&mut b, 4, 2);
    assert_eq!(parse(b).version, 2);
}

#[test]
fn value_display_summarises() {
    let long = string_array(&vec!["t"; 49152]);
    assert_eq!(long.to_string(), "[string; 49152]");
    assert_eq!(
        Value::array(tag::I32, vec![Value::I32(1), Value::I32(-2)]).to_string(),
        "[1, -2]"
    );
    assert_eq!(
        Value::array(tag::F32, vec![Value::F32(0.0); 9]).to_string(),
        "[f32; 9]"
    );
    assert_eq!(Value::array(tag::STRING, vec![]).to_string(), "[]");
    assert_eq!(
        Value::array(tag::STRING, vec![]).element_type_name(),
        Some("string")
    );
    assert_eq!(Value::String("a\nb".into()).to_string(), r#""a\nb""#);
    let s = Value::String("x".repeat(500)).to_string();
    assert!(s.ends_with("... (500 bytes)") && s.len() < 100, "{s}");
}

// ------------------------------------------------------ malformed: header

#[test]
fn truncated_header() {
    let b = base().to_bytes();
    expect_err(b[..12].to_vec(), &["truncated", "tensor count", "offset 8"]);
    expect_err(
        b[..20].to_vec(),
        &["truncated", "metadata count", "offset 16"],
    );
    expect_err(b[..2].to_vec(), &["truncated", "magic", "offset 0"]);
    expect_err(Vec::new(), &["truncated", "magic"]);
}

#[test]
fn truncation_at_every_byte_is_an_error_never_a_panic() {
    let b = base().to_bytes();
    let g = parse(b.clone());
    // Only the padding after the last tensor's data may be cut without harm.
    let needed = g.data_offset as usize
        + g.tensors
            .iter()
            .map(|t| (t.offset + t.n_bytes) as usize)
            .max()
            .unwrap();
    assert!(needed < b.len(), "the test wants trailing padding to exist");
    for n in 0..=b.len() {
        match try_parse(b[..n].to_vec()) {
            Err(_) => panic!("prefix of {n} bytes made the reader panic"),
            Ok(Ok(_)) if n < needed => panic!("prefix of {n} of {} bytes was accepted", b.len()),
            Ok(Err(e)) if n >= needed => panic!("prefix of {n} bytes rejected: {e}"),
            Ok(Err(e)) => assert!(
                e.contains("offset") || e.contains("tensor"),
                "prefix of {n} bytes: error {e:?} says neither where nor which tensor"
            ),
            Ok(Ok(_)) => {}
        }
    }
}

#[test]
fn bad_magic() {
    let mut b = base().to_bytes();
    b[..4].copy_from_slice(b"GGML");
    expect_err(b, &["not a GGUF file", "GGML"]);
}

#[test]
fn version_1_is_rejected() {
    let mut b = base().to_bytes();
    put_u32(&mut b, 4, 1);
    expect_err(b, &["version 1"]);
}

#[test]
fn version_4_is_rejected() {
    let mut b = base().to_bytes();
    put_u32(&mut b, 4, 4);
    expect_err(b, &["version 4"]);
}

#[test]
fn big_endian_is_rejected() {
    let mut b = base().to_bytes();
    b[4..8].copy_from_slice(&3u32.to_be_bytes());
    expect_err(b, &["big-endian"]);
}

#[test]
fn huge_tensor_count() {
    for n in [u64::MAX, 1 << 40, 1000] {
        let mut b = base().to_bytes();
        put_u64(&mut b, 8, n);
        expect_err(b, &[&format!("tensor count {n}"), "offset 8"]);
    }
}

#[test]
fn huge_kv_count() {
    for n in [u64::MAX, 1 << 40, 1000] {
        let mut b = base().to_bytes();
        put_u64(&mut b, 16, n);
        expect_err(b, &[&format!("metadata count {n}"), "offset 16"]);
    }
}

#[test]
fn counts_that_fit_alone_but_not_together() {
    let mut b = base().to_bytes();
    let left = (b.len() - 24) as u64;
    put_u64(&mut b, 8, left / 32);
    put_u64(&mut b, 16, left / 13);
    expect_err(b, &["tensor count", "metadata count"]);
}

// ---------------------------------------------------- malformed: metadata

#[test]
fn huge_key_length() {
    let mut b = base().to_bytes();
    put_u64(&mut b, 24, u64::MAX);
    expect_err(
        b,
        &[
            "key of metadata entry 0",
            "offset 24",
            &u64::MAX.to_string(),
        ],
    );
}

#[test]
fn huge_string_length() {
    let mut b = base().to_bytes();
    let at = kv_value_at(&b, "test.name");
    put_u64(&mut b, at, u64::MAX - 3);
    expect_err(
        b,
        &[
            "'test.name'",
            &format!("offset {at}"),
            &(u64::MAX - 3).to_string(),
        ],
    );
}

#[test]
fn huge_array_length() {
    for n in [u64::MAX, 1 << 61, 1 << 32] {
        let mut b = base().to_bytes();
        let at = kv_value_at(&b, "test.list");
        put_u64(&mut b, at + 4, n);
        expect_err(
            b,
            &[
                "'test.list'",
                &format!("{n} array elements"),
                &format!("offset {at}"),
            ],
        );
    }
}

#[test]
fn huge_string_array_length() {
    // Strings take at least 8 bytes each: a count that fits as bytes must still fail.
    let mut w = GgufWriter::new();
    w.kv("tokenizer.ggml.tokens", string_array(&["a", "b"]));
    let mut b = w.to_bytes();
    let at = kv_value_at(&b, "tokenizer.ggml.tokens");
    let count = (b.len() - at) as u64;
    put_u64(&mut b, at + 4, count);
    expect_err(b, &["'tokenizer.ggml.tokens'", "array elements"]);
}

#[test]
fn nested_arrays_too_deep() {
    let mut w = GgufWriter::new();
    w.kv("deep", nest(5));
    expect_err(w.to_bytes(), &["'deep'", "nests arrays deeper than 4"]);
    // And a file that nests thousands of levels cannot overflow the stack.
    let b = GgufWriter::new().kv("deep", nest(1)).to_bytes();
    let mut evil = b[..kv_type_at(&b, "deep")].to_vec();
    evil.extend_from_slice(&tag::ARRAY.to_le_bytes());
    for _ in 0..10_000 {
        // Each level: an array of one element whose type is again array.
        evil.extend_from_slice(&tag::ARRAY.to_le_bytes());
        evil.extend_from_slice(&1u64.to_le_bytes());
    }
    expect_err(evil, &["'deep'", "nests arrays"]);
}

#[test]
fn unknown_value_type() {
    let mut b = base().to_bytes();
    let at = kv_type_at(&b, "test.flag");
    put_u32(&mut b, at, 13);
    expect_err(
        b,
        &[
            "'test.flag'",
            "unknown value type 13",
            &format!("offset {at}"),
        ],
    );
}

#[test]
fn unknown_array_element_type() {
    let mut b = base().to_bytes();
    let at = kv_value_at(&b, "test.list");
    put_u32(&mut b, at, 99);
    expect_err(
        b,
        &[
            "'test.list'",
            "unknown array element type 99",
            &format!("offset {at}"),
        ],
    );
}

#[test]
fn invalid_bool_byte() {
    let mut b = base().to_bytes();
    let at = kv_value_at(&b, "test.flag");
    b[at] = 2;
    expect_err(
        b,
        &[
            "'test.flag'",
            "invalid bool byte 2",
            &format!("offset {at}"),
        ],
    );
}

#[test]
fn invalid_utf8_in_key() {
    let mut b = base().to_bytes();
    let at = find(&b, "test.flag");
    b[at + 2] = 0xff;
    // The message gives the offset of the key's length field.
    expect_err(
        b,
        &[
            "key of metadata entry 1",
            &format!("offset {}", at - 8),
            "UTF-8",
        ],
    );
}

#[test]
fn invalid_utf8_in_string_value() {
    let mut b = base().to_bytes();
    let at = kv_value_at(&b, "test.name");
    b[at + 8] = 0xc3; // a lead byte followed by 'b': not a valid sequence
    expect_err(b, &["'test.name'", &format!("offset {at}"), "UTF-8"]);
}

#[test]
fn duplicate_key() {
    let mut w = base();
    w.kv("test.flag", Value::Bool(false));
    expect_err(
        w.to_bytes(),
        &["duplicate metadata key 'test.flag'", "offset"],
    );
}

#[test]
fn bad_alignment_values() {
    let cases = [
        (Value::U32(0), "u32 0"),
        (Value::U32(3), "u32 3"),
        (Value::U32(48), "u32 48"),
        (Value::U64(32), "u64 32"),
        (Value::String("32".into()), "string"),
    ];
    for (v, shown) in cases {
        let mut w = base();
        w.kv("general.alignment", v);
        expect_err(w.to_bytes(), &["'general.alignment'", shown]);
    }
}

fn msg<T: std::fmt::Debug>(r: Result<T, llama_wgpu::gguf::GgufError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn typed_getters_name_the_key() {
    let mut w = base();
    w.kv("test.negative", Value::I32(-1))
        .kv("test.ratio", Value::F32(0.5));
    let g = parse(w.to_bytes());
    assert_eq!(
        msg(g.get_u64("llama.block_count")),
        "missing metadata key 'llama.block_count'"
    );
    assert!(msg(g.get_str("x.y")).contains("'x.y'"));
    let e = msg(g.get_u64("general.architecture"));
    assert!(
        e.contains("'general.architecture'") && e.contains("string"),
        "{e}"
    );
    let e = msg(g.get_u64("test.negative"));
    assert!(e.contains("'test.negative'") && e.contains("-1"), "{e}");
    assert!(msg(g.get_f32("test.flag")).contains("'test.flag'"));
    assert!(msg(g.get_bool("test.name")).contains("'test.name'"));
    assert!(msg(g.get_array("test.flag")).contains("'test.flag'"));
    assert!(msg(g.get_str("test.list")).contains("'test.list'"));
    assert!(msg(g.opt_u64("test.name")).contains("'test.name'"));
    assert!(msg(g.opt_str("test.flag")).contains("'test.flag'"));
    assert!(msg(g.opt_f32("test.name")).contains("'test.name'"));
    assert!(msg(g.opt_bool("test.ratio")).contains("'test.ratio'"));
    // The happy paths, so the checks above are not all-errors by accident.
    assert_eq!(g.get_u64("test.ratio").ok(), None);
    assert_eq!(g.get_f32("test.ratio").unwrap(), 0.5);
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    assert!(g.get_bool("test.flag").unwrap());
    assert_eq!(g.get_array("test.list").unwrap().len(), 3);
    assert_eq!(g.opt_u64("absent").unwrap(), None);
    assert_eq!(g.opt_bool("test.flag").unwrap(), Some(true));
}

// ----------------------------------------------------- malformed: tensors

#[test]
fn tensor_table_truncated_names_the_tensor() {
    let b = base().to_bytes();
    let at = tensor_type_at(&b, "blk.weight");
    expect_err(
        b[..at + 2].to_vec(),
        &["type of tensor 'blk.weight'", "truncated"],
    );
}

#[test]
fn invalid_utf8_in_tensor_name() {
    let mut b = base().to_bytes();
    let at = tensor_at(&b, "blk.weight") - "blk.weight".len();
    b[at] = 0x80;
    expect_err(
        b,
        &["name of tensor 1", &format!("offset {}", at - 8), "UTF-8"],
    );
}

#[test]
fn duplicate_tensor_name() {
    let mut w = base();
    w.tensor("tok.weight", &[4], TensorType::F32, bytes(16, 9));
    expect_err(w.to_bytes(), &["duplicate tensor name 'tok.weight'"]);
}

#[test]
fn zero_dimensions() {
    let mut b = base().to_bytes();
    let at = tensor_at(&b, "tok.weight");
    put_u32(&mut b, at, 0);
    expect_err(b, &["'tok.weight'", "0 dimensions"]);
}

#[test]
fn more_than_four_dimensions() {
    let mut w = base();
    w.tensor("five", &[2, 1, 1, 1, 1], TensorType::F32, bytes(8, 3));
    expect_err(w.to_bytes(), &["'five'", "5 dimensions"]);
    let mut b = base().to_bytes();
    let at = tensor_at(&b, "tok.weight");
    put_u32(&mut b, at, u32::MAX);
    expect_err(b, &["'tok.weight'", &format!("{} dimensions", u32::MAX)]);
}

#[test]
fn zero_size_dimension() {
    let mut w = base();
    w.tensor("empty", &[8, 0], TensorType::F32, Vec::new());
    expect_err(w.to_bytes(), &["'empty'", "zero dimension"]);
}

#[test]
fn dimension_overflow() {
    for (d0, d1) in [(8, 1u64 << 62), (1 << 32, 1 << 32), (u64::MAX, 1)] {
        let mut b = base().to_bytes();
        let at = tensor_dim_at(&b, "tok.weight", 0);
        put_u64(&mut b, at, d0);
        let at = tensor_dim_at(&b, "tok.weight", 1);
        put_u64(&mut b, at, d1);
        expect_err(b, &["'tok.weight'", "overflow"]);
    }
}

#[test]
fn unknown_ggml_type_id() {
    // 4 and 5 were Q4_2 and Q4_3, removed from ggml long ago.
    for id in [4, 5, 40, u32::MAX] {
        let mut b = base().to_bytes();
        let at = tensor_type_at(&b, "blk.weight");
        put_u32(&mut b, at, id);
        expect_err(b, &["'blk.weight'", &format!("unknown ggml type id {id}")]);
    }
}

#[test]
fn known_but_unsupported_type_parses_and_names_itself() {
    let mut b = base().to_bytes();
    // IQ2_XXS: 66 bytes per 256 elements, which fits in blk.weight's padded 96.
    let at = tensor_dim_at(&b, "blk.weight", 0);
    put_u64(&mut b, at, 256);
    let at = tensor_dim_at(&b, "blk.weight", 1);
    put_u64(&mut b, at, 1);
    let at = tensor_type_at(&b, "blk.weight");
    put_u32(&mut b, at, 16);
    let g = parse(b);
    let t = g.tensor("blk.weight").unwrap();
    assert_eq!(t.n_bytes, 66);
    let e = t.tensor_type().unwrap_err().to_string();
    assert!(e.contains("IQ2_XXS") && e.contains("'blk.weight'"), "{e}");
}

#[test]
fn row_not_a_whole_number_of_blocks() {
    let mut b = base().to_bytes();
    let at = tensor_dim_at(&b, "blk.weight", 0);
    put_u64(&mut b, at, 16);
    expect_err(b, &["'blk.weight'", "Q8_0", "16 elements", "block size 32"]);
}

#[test]
fn offset_not_aligned() {
    let mut b = base().to_bytes();
    let at = tensor_offset_at(&b, "blk.weight");
    put_u64(&mut b, at, 65);
    expect_err(b, &["'blk.weight'", "offset 65", "alignment 32"]);
}

#[test]
fn tensor_past_end_of_file() {
    let mut b = base().to_bytes();
    let at = tensor_offset_at(&b, "blk.weight");
    put_u64(&mut b, at, 1 << 20);
    expect_err(
        b,
        &[
            "'blk.weight'",
            "past the end",
            &format!("offset {}", 1 << 20),
        ],
    );
    // An offset so large that offset + size overflows.
    let mut b = base().to_bytes();
    let at = tensor_offset_at(&b, "blk.weight");
    put_u64(&mut b, at, u64::MAX - 31);
    expect_err(b, &["'blk.weight'", "past the end"]);
    // A file cut inside the data section.
    let b = base().to_bytes();
    expect_err(
        b[..b.len() - 40].to_vec(),
        &["'blk.weight'", "past the end"],
    );
}

#[test]
fn overlapping_tensors() {
    let mut b = base().to_bytes();
    let at = tensor_offset_at(&b, "blk.weight");
    put_u64(&mut b, at, 32);
    expect_err(b, &["'tok.weight'", "'blk.weight'", "overlap"]);
    let mut b = base().to_bytes();
    let at = tensor_offset_at(&b, "blk.weight");
    put_u64(&mut b, at, 0);
    expect_err(b, &["'tok.weight'", "'blk.weight'", "overlap"]);
}

// ------------------------------------------------- fuzzing regressions

/// crash-055fc4d9 (a bug in the fuzz target's invariant, kept as a case): a
/// file without tensors, cut inside the header padding, is valid, and its
/// aligned data offset lies past the end of the file.
#[test]
fn fuzz_unpadded_file_without_tensors() {
    let mut b = b"GGUF\x03\0\0\0".to_vec();
    b.resize(28, 0);
    let g = parse(b);
    assert_eq!(
        (g.data_offset, g.file_len(), g.tensor_bytes_total()),
        (32, 28, 0)
    );
}

// ------------------------------------------------------------ files on disk

fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("gguf_reader-{name}"));
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn open_errors_name_the_file() {
    let missing = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-such-model.gguf");
    let e = Gguf::open(&missing).err().unwrap().to_string();
    assert!(
        e.contains("no-such-model.gguf") && e.contains("cannot open"),
        "{e}"
    );

    let e = Gguf::open(env!("CARGO_TARGET_TMPDIR"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("directory"), "{e}");

    let path = temp_file("not-gguf.txt", b"hello world, no magic here");
    let e = Gguf::open(&path).err().unwrap().to_string();
    assert!(
        e.contains("not-gguf.txt") && e.contains("not a GGUF file"),
        "{e}"
    );

    let path = temp_file("empty.gguf", b"");
    let e = Gguf::open(&path).err().unwrap().to_string();
    assert!(e.contains("empty.gguf") && e.contains("truncated"), "{e}");

    let mut b = base().to_bytes();
    put_u32(&mut b, 4, 4);
    let path = temp_file("v4.gguf", &b);
    let e = Gguf::open(&path).err().unwrap().to_string();
    assert!(e.contains("v4.gguf") && e.contains("version 4"), "{e}");
}

#[test]
fn open_maps_a_written_file() {
    let b = base().to_bytes();
    let path = temp_file("base.gguf", &b);
    let g = Gguf::open(&path).unwrap();
    assert_eq!(g.path(), Some(path.as_path()));
    assert_eq!(g.file_len(), b.len() as u64);
    let t = g.tensor("blk.weight").unwrap();
    assert_eq!(
        g.tensor_data(t),
        &tensor_bytes(TensorType::Q8_0, &[32, 2], 2)[..]
    );
}

#[test]
fn smollm2_model() {
    let g = Gguf::open(model_path()).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(g.get_u64("llama.block_count").unwrap(), 30);
    assert_eq!(g.get_array("tokenizer.ggml.tokens").unwrap().len(), 49152);
    assert_eq!(g.tensors.len(), 272);
    let emb = g.tensor("token_embd.weight").unwrap();
    assert_eq!(emb.dims, [576, 49152]);
    assert_eq!(emb.tensor_type().unwrap(), TensorType::Q8_0);
    for t in &g.tensors {
        let ty = t.tensor_type().unwrap();
        assert!(
            matches!(ty, TensorType::Q4_1 | TensorType::F32 | TensorType::Q8_0),
            "{}: {ty}",
            t.name
        );
        assert_eq!(g.tensor_data(t).len() as u64, t.n_bytes);
    }
    assert!(g.data_offset + g.tensor_bytes_total() <= g.file_len());
}

// ------------------------------------------------------------- fuzz corpus

/// Writes seed files for `fuzz/` (see fuzz/README.md); not part of the suite.
#[test]
#[ignore = "writes the fuzz corpus; run explicitly"]
fn write_fuzz_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/gguf_parse");
    std::fs::create_dir_all(&dir).unwrap();
    let mut seeds: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), GgufWriter::new().to_bytes()),
        ("base".into(), base().to_bytes()),
        ("round_trip".into(), round_trip_file(None).0.to_bytes()),
        (
            "round_trip_align8".into(),
            round_trip_file(Some(8)).0.to_bytes(),
        ),
    ];
    let mut meta_only = GgufWriter::new();
    for (k, v) in all_value_kinds() {
        meta_only.kv(&k, v);
    }
    seeds.push(("metadata_only".into(), meta_only.to_bytes()));
    for (i, (name, dims, ty)) in all_tensor_kinds().into_iter().enumerate() {
        let mut w = GgufWriter::new();
        w.kv("general.alignment", Value::U32(1 << (i % 4)));
        w.tensor(&name, &dims, ty, tensor_bytes(ty, &dims, i as u8));
        seeds.push((format!("tensor_{name}"), w.to_bytes()));
    }
    for (name, b) in seeds {
        assert!(
            Gguf::from_bytes(b.clone()).is_ok(),
            "seed {name} does not parse"
        );
        std::fs::write(dir.join(format!("{name}.gguf")), b).unwrap();
    }
}

/// A synthetic model's header-only file has exactly the tensor table of the
/// full file (names, shapes, types, offsets), no data, and is rejected as
/// truncated by the normal parser.
#[test]
fn header_only_files_have_the_full_files_table() {
    use llama_wgpu::model::synthetic::{synthetic_gguf_mixed, synthetic_header, LlamaShape};
    let shape = LlamaShape::tiny();
    let full = Gguf::from_bytes(
        synthetic_gguf_mixed(&shape, TensorType::Q4_K, TensorType::Q6_K, 1).unwrap(),
    )
    .unwrap();
    let head_bytes = synthetic_header(&shape, TensorType::Q4_K, TensorType::Q6_K).unwrap();
    let head = Gguf::header_only(head_bytes.clone()).unwrap();
    assert!(full.has_data() && !head.has_data());
    assert_eq!(head.tensors, full.tensors);
    assert_eq!(head.metadata, full.metadata);
    assert_eq!(head.tensor_bytes_total(), full.tensor_bytes_total());
    let err = match Gguf::from_bytes(head_bytes) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a header-only file parsed as a full one"),
    };
    assert!(err.contains("runs past the end of the file"), "{err}");
}

/// The streamed synthetic file (examples/synthetic_gguf.rs) is the in-memory
/// one plus the extra metadata: the same tensors, bytes for bytes.
#[test]
fn streamed_synthetic_files_carry_extra_metadata() {
    use llama_wgpu::gguf::Value;
    use llama_wgpu::model::synthetic::{synthetic_gguf_mixed, write_synthetic_gguf, LlamaShape};
    let shape = LlamaShape::tiny();
    let (ty, out_ty) = (TensorType::Q4_0, TensorType::Q6_K);
    let plain = Gguf::from_bytes(synthetic_gguf_mixed(&shape, ty, out_ty, 3).unwrap()).unwrap();
    let extra = [(
        "tokenizer.ggml.model".to_string(),
        Value::String("llama".into()),
    )];
    let mut bytes = Vec::new();
    write_synthetic_gguf(&shape, ty, out_ty, 3, &extra, &mut bytes).unwrap();
    let streamed = Gguf::from_bytes(bytes).unwrap();
    assert_eq!(streamed.get_str("tokenizer.ggml.model").unwrap(), "llama");
    assert_eq!(streamed.metadata.len(), plain.metadata.len() + 1);
    assert_eq!(streamed.tensors, plain.tensors);
    for t in &plain.tensors {
        assert_eq!(plain.tensor_data(t), streamed.tensor_data(t), "{}", t.name);
    }
}
