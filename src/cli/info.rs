//! `llama-wgpu info`: what is in a GGUF file, for people (`key  type  value`
//! tables) or scripts (`--json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::Context;
use serde_json::{json, Map, Value as Json};

use super::common::ModelArgs;
use crate::gguf::{Gguf, TensorInfo, Value};

/// Metadata arrays longer than this are summarised in `--json` (see `--full`).
const JSON_ARRAY_LIMIT: usize = 64;
/// Elements of a summarised array that are still shown.
const JSON_ARRAY_HEAD: usize = 8;
/// Column width cap, so one absurd key or tensor name cannot push the table off screen.
const MAX_NAME_WIDTH: usize = 48;

#[derive(clap::Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub load: crate::hf::LoadArgs,
    /// One JSON object on stdout, for scripts. Metadata arrays longer than 64
    /// elements (token lists, merges) are summarised as
    /// {"element_type", "length", "head": first 8 elements} unless --full is given.
    #[arg(long)]
    pub json: bool,
    /// With --json, print every metadata array in full.
    #[arg(long, requires = "json")]
    pub full: bool,
}

pub fn run(args: &InfoArgs) -> anyhow::Result<()> {
    // The reader's errors already start with the file name.
    let model = args.model.resolve(args.json)?;
    let g = crate::engine::open_model_with(&model, &args.load.spec())?;
    let text = if args.json {
        let limit = if args.full {
            usize::MAX
        } else {
            JSON_ARRAY_LIMIT
        };
        let mut s = serde_json::to_string_pretty(&to_json(&g, &model, limit))?;
        s.push('\n');
        s
    } else {
        human(&g, &model)
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        // `info ... | head` closing the pipe early is not an error worth reporting.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}

struct Totals {
    parameters: u64,
    bytes: u64,
    /// Tensor count per type name, most common first.
    types: Vec<(String, usize)>,
}

fn totals(g: &Gguf) -> Totals {
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    for t in &g.tensors {
        *by_type.entry(t.type_name()).or_default() += 1;
    }
    let mut types: Vec<(String, usize)> = by_type.into_iter().collect();
    types.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Totals {
        // The reader caps each tensor below 2^48 elements, but a file may hold many.
        parameters: g
            .tensors
            .iter()
            .fold(0u64, |n, t| n.saturating_add(t.n_elements())),
        bytes: g.tensor_bytes_total(),
        types,
    }
}

fn type_label(v: &Value) -> String {
    match v.element_type_name() {
        Some(elem) => format!("array[{elem}]"),
        None => v.type_name().to_string(),
    }
}

/// Shape in ggml order (row length first), as `576 x 49152`.
fn shape(t: &TensorInfo) -> String {
    t.dims
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(" x ")
}

/// Names come from the file: escape control characters so they cannot drive the terminal.
fn printable(s: &str) -> String {
    if s.chars().any(char::is_control) {
        s.escape_debug().to_string()
    } else {
        s.to_string()
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn human_count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}K", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}B", n as f64 / 1e9),
    }
}

fn human(g: &Gguf, path: &std::path::Path) -> String {
    let mut s = String::new();
    let data_size = g.file_len().saturating_sub(g.data_offset);
    // `writeln!` into a String cannot fail.
    let _ = writeln!(
        s,
        "file          {} ({})",
        path.display(),
        human_bytes(g.file_len())
    );
    let _ = writeln!(s, "GGUF version  {}", g.version);
    let _ = writeln!(s, "alignment     {}", g.alignment);
    let _ = writeln!(
        s,
        "tensor data   offset {}, {} ({} bytes)",
        g.data_offset,
        human_bytes(data_size),
        data_size
    );

    let _ = writeln!(s, "\nmetadata ({} keys)", g.metadata.len());
    let keys: Vec<String> = g.metadata.iter().map(|(k, _)| printable(k)).collect();
    let types: Vec<String> = g.metadata.iter().map(|(_, v)| type_label(v)).collect();
    let kw = column_width("KEY", &keys);
    let tw = column_width("TYPE", &types);
    let _ = writeln!(s, "  {:kw$}  {:tw$}  VALUE", "KEY", "TYPE");
    for ((key, ty), (_, v)) in keys.iter().zip(&types).zip(&g.metadata) {
        let _ = writeln!(s, "  {key:kw$}  {ty:tw$}  {v}");
    }

    let _ = writeln!(s, "\ntensors ({})", g.tensors.len());
    let names: Vec<String> = g.tensors.iter().map(|t| printable(&t.name)).collect();
    let ttypes: Vec<String> = g.tensors.iter().map(TensorInfo::type_name).collect();
    let shapes: Vec<String> = g.tensors.iter().map(shape).collect();
    let nw = column_width("NAME", &names);
    let tw = column_width("TYPE", &ttypes);
    let sw = column_width("SHAPE", &shapes);
    let _ = writeln!(
        s,
        "  {:nw$}  {:tw$}  {:sw$}  {:>10}",
        "NAME", "TYPE", "SHAPE", "BYTES"
    );
    for (((name, ty), sh), t) in names.iter().zip(&ttypes).zip(&shapes).zip(&g.tensors) {
        let _ = writeln!(
            s,
            "  {name:nw$}  {ty:tw$}  {sh:sw$}  {:>10}",
            human_bytes(t.n_bytes)
        );
    }

    let t = totals(g);
    let _ = writeln!(s, "\nsummary");
    let _ = writeln!(
        s,
        "  {} tensors, {} parameters, {} ({} bytes)",
        g.tensors.len(),
        human_count(t.parameters),
        human_bytes(t.bytes),
        t.bytes
    );
    let per_type: Vec<String> = t
        .types
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    let _ = writeln!(
        s,
        "  types: {}",
        if per_type.is_empty() {
            "none".into()
        } else {
            per_type.join(", ")
        }
    );
    s
}

fn column_width(header: &str, cells: &[String]) -> usize {
    cells
        .iter()
        .map(|c| c.chars().count())
        .chain([header.len()])
        .max()
        .unwrap_or(0)
        .min(MAX_NAME_WIDTH)
}

fn to_json(g: &Gguf, path: &std::path::Path, array_limit: usize) -> Json {
    let mut metadata = Map::new();
    let mut metadata_types = Map::new();
    for (key, v) in &g.metadata {
        metadata.insert(key.clone(), value_json(v, array_limit));
        metadata_types.insert(key.clone(), Json::String(type_label(v)));
    }
    let tensors: Vec<Json> = g
        .tensors
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "type": t.type_name(),
                "shape": t.dims,
                "offset": t.offset,
                "bytes": t.n_bytes,
            })
        })
        .collect();
    let t = totals(g);
    let types: Map<String, Json> = t
        .types
        .into_iter()
        .map(|(name, n)| (name, json!(n)))
        .collect();
    json!({
        "file": path.display().to_string(),
        "file_size": g.file_len(),
        "version": g.version,
        "alignment": g.alignment,
        "data_offset": g.data_offset,
        "data_size": g.file_len().saturating_sub(g.data_offset),
        "metadata": metadata,
        "metadata_types": metadata_types,
        "tensors": tensors,
        "totals": {
            "tensors": g.tensors.len(),
            "parameters": t.parameters,
            "bytes": t.bytes,
            "types": types,
        },
    })
}

fn value_json(v: &Value, array_limit: usize) -> Json {
    match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        // Through the shortest decimal form, so 1e-5f32 prints as 1e-5 rather
        // than as the f64 widening 9.999999747378752e-6.
        Value::F32(x) => float_json(x.to_string().parse().unwrap_or(f64::NAN)),
        Value::F64(x) => float_json(*x),
        Value::Bool(x) => json!(x),
        Value::String(x) => json!(x),
        Value::Array(items) if items.len() > array_limit => json!({
            "element_type": v.element_type_name(),
            "length": items.len(),
            "head": items.iter().take(JSON_ARRAY_HEAD).map(|i| value_json(&i, array_limit)).collect::<Vec<_>>(),
        }),
        Value::Array(items) => {
            Json::Array(items.iter().map(|i| value_json(&i, array_limit)).collect())
        }
    }
}

/// JSON has no NaN or infinity; keep them visible as strings rather than `null`.
fn float_json(x: f64) -> Json {
    serde_json::Number::from_f64(x)
        .map(Json::Number)
        .unwrap_or_else(|| Json::String(x.to_string()))
}
