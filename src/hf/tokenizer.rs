//! Tokenizer files of a model folder as GGUF `tokenizer.ggml.*` metadata,
//! the way llama.cpp's converter writes them: a byte-level BPE
//! `tokenizer.json` becomes a `gpt2` vocabulary (tokens, types, merges, the
//! pre-tokenizer by name); a SentencePiece `tokenizer.model` a `llama` one
//! (tokens, scores, types). `tokenizer_config.json` (or `config.json`) gives
//! BOS/EOS/PAD and `add_bos_token`; the chat template comes from
//! `tokenizer_config.json` or `chat_template.jinja`.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value as Json;

use super::config::HfConfig;
use super::spm;
use super::HfError;
use crate::gguf::{string_array, tag, Value};
use crate::tokenizer::pretok::TEKKEN;

/// GGUF token types (`tokenizer.ggml.token_type`).
pub(crate) mod token_type {
    pub const NORMAL: i32 = 1;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
}

/// Llama 3's split regex as Hugging Face writes it.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn read_json(path: &Path) -> Result<Json, HfError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| HfError::file(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| HfError::file(path, format!("invalid JSON: {e}")))
}

/// A token given as a string or an AddedToken object `{"content": ...}`.
fn token_text(v: Option<&Json>) -> Option<String> {
    let v = v?;
    v.as_str()
        .or_else(|| v.get("content").and_then(Json::as_str))
        .map(str::to_owned)
}

/// The vocabulary of a folder, as metadata. `tokens` is padded with
/// `[PAD{id}]` entries up to the model's embedding rows, as llama.cpp does.
pub fn metadata(dir: &Path, cfg: &HfConfig) -> Result<Vec<(String, Value)>, HfError> {
    let json_path = dir.join("tokenizer.json");
    let model_path = dir.join("tokenizer.model");
    let config_path = dir.join("tokenizer_config.json");
    let tcfg = if config_path.exists() {
        Some(read_json(&config_path)?)
    } else {
        None
    };
    let tj = if json_path.exists() {
        Some(read_json(&json_path)?)
    } else {
        None
    };
    // A SentencePiece-style tokenizer.json (byte fallback) is a conversion of
    // tokenizer.model: llama.cpp reads the .model then, and so do we.
    let spm_style = tj
        .as_ref()
        .is_some_and(|j| j.pointer("/model/byte_fallback").and_then(Json::as_bool) == Some(true));
    let mut m: Vec<(String, Value)> = Vec::new();
    let (mut tokens, mut types, index): (Vec<String>, Vec<i32>, HashMap<String, u32>);
    let mut add_bos_default = false;
    if model_path.exists() && (tj.is_none() || spm_style) {
        let v = spm::read(&model_path)?;
        tokens = v.pieces.iter().map(|p| p.piece.clone()).collect();
        types = v.pieces.iter().map(|p| p.kind).collect();
        let mut scores: Vec<f32> = v.pieces.iter().map(|p| p.score).collect();
        index = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        pad(&mut tokens, &mut types, Some(&mut scores), cfg.vocab_size);
        m.push(("tokenizer.ggml.model".into(), Value::String("llama".into())));
        m.push(("tokenizer.ggml.pre".into(), Value::String("default".into())));
        m.push(("tokenizer.ggml.tokens".into(), string_array(&tokens)));
        m.push((
            "tokenizer.ggml.scores".into(),
            Value::array(tag::F32, scores.into_iter().map(Value::F32).collect()),
        ));
        m.push((
            "tokenizer.ggml.add_space_prefix".into(),
            Value::Bool(v.add_dummy_prefix),
        ));
        for (key, id) in [
            ("tokenizer.ggml.bos_token_id", v.bos_id),
            ("tokenizer.ggml.eos_token_id", v.eos_id),
            ("tokenizer.ggml.unknown_token_id", v.unk_id),
            ("tokenizer.ggml.padding_token_id", v.pad_id),
        ] {
            if let Some(id) = id {
                m.push((key.into(), Value::U32(id)));
            }
        }
        // SentencePiece llama vocabularies start every text with BOS.
        add_bos_default = true;
    } else if let Some(j) = &tj {
        let bpe = bpe_vocab(j).map_err(|e| HfError::file(&json_path, e))?;
        tokens = bpe.tokens;
        types = bpe.types;
        index = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        pad(&mut tokens, &mut types, None, cfg.vocab_size);
        m.push(("tokenizer.ggml.model".into(), Value::String("gpt2".into())));
        m.push(("tokenizer.ggml.pre".into(), Value::String(bpe.pre.into())));
        m.push(("tokenizer.ggml.tokens".into(), string_array(&tokens)));
        m.push(("tokenizer.ggml.merges".into(), string_array(&bpe.merges)));
        if let Some(add) = bpe.post_processor_adds_bos {
            add_bos_default = add;
        }
    } else {
        return Err(HfError::file(
            dir,
            "has neither tokenizer.json nor tokenizer.model",
        ));
    }
    if tokens.len() > cfg.vocab_size {
        return Err(HfError::file(
            dir,
            format!(
                "the tokenizer has {} tokens but config.json's vocab_size is {}",
                tokens.len(),
                cfg.vocab_size
            ),
        ));
    }
    m.push((
        "tokenizer.ggml.token_type".into(),
        Value::array(tag::I32, types.iter().map(|&t| Value::I32(t)).collect()),
    ));

    // Special tokens: tokenizer_config.json by text, else config.json by id.
    let by_text =
        |key: &str| -> Option<u32> { index.get(&token_text(tcfg.as_ref()?.get(key))?).copied() };
    let set = |m: &mut Vec<(String, Value)>, key: &str, id: Option<u32>| {
        if let Some(id) = id {
            m.retain(|(k, _)| k != key);
            m.push((key.into(), Value::U32(id)));
        }
    };
    set(
        &mut m,
        "tokenizer.ggml.bos_token_id",
        by_text("bos_token").or(cfg.bos_token_id),
    );
    set(
        &mut m,
        "tokenizer.ggml.eos_token_id",
        by_text("eos_token").or(cfg.eos_token_id),
    );
    set(
        &mut m,
        "tokenizer.ggml.padding_token_id",
        by_text("pad_token"),
    );
    set(
        &mut m,
        "tokenizer.ggml.unknown_token_id",
        by_text("unk_token"),
    );
    let flag = |k: &str| tcfg.as_ref().and_then(|c| c.get(k)).and_then(Json::as_bool);
    m.push((
        "tokenizer.ggml.add_bos_token".into(),
        Value::Bool(flag("add_bos_token").unwrap_or(add_bos_default)),
    ));
    m.push((
        "tokenizer.ggml.add_eos_token".into(),
        Value::Bool(flag("add_eos_token").unwrap_or(false)),
    ));
    if let Some(t) = chat_template(dir, tcfg.as_ref())? {
        m.push(("tokenizer.chat_template".into(), Value::String(t)));
    }
    Ok(m)
}

fn pad(tokens: &mut Vec<String>, types: &mut Vec<i32>, scores: Option<&mut Vec<f32>>, n: usize) {
    for i in tokens.len()..n {
        tokens.push(format!("[PAD{i}]"));
        types.push(token_type::UNUSED);
    }
    if let Some(s) = scores {
        s.resize(n, -1000.0);
    }
}

fn chat_template(dir: &Path, tcfg: Option<&Json>) -> Result<Option<String>, HfError> {
    // Transformers >= 4.43 may save the template in its own file.
    let jinja = dir.join("chat_template.jinja");
    if jinja.exists() {
        return std::fs::read_to_string(&jinja)
            .map(Some)
            .map_err(|e| HfError::file(&jinja, format!("cannot read: {e}")));
    }
    Ok(match tcfg.and_then(|c| c.get("chat_template")) {
        Some(Json::String(s)) => Some(s.clone()),
        // A list of named templates: the default one, as llama.cpp picks.
        Some(Json::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
            .and_then(|t| t.get("template"))
            .and_then(Json::as_str)
            .map(str::to_owned),
        _ => None,
    })
}

struct BpeVocab {
    tokens: Vec<String>,
    types: Vec<i32>,
    merges: Vec<String>,
    pre: &'static str,
    post_processor_adds_bos: Option<bool>,
}

fn bpe_vocab(j: &Json) -> Result<BpeVocab, String> {
    let model = j.get("model").ok_or("missing key 'model'")?;
    let ty = model.get("type").and_then(Json::as_str).unwrap_or("");
    if ty != "BPE" {
        return Err(format!(
            "tokenizer model type '{ty}' is not supported (BPE only)"
        ));
    }
    if model.get("byte_fallback").and_then(Json::as_bool) == Some(true) {
        return Err("a SentencePiece-style (byte fallback) tokenizer.json needs the tokenizer.model it was made from beside it".into());
    }
    let vocab = model
        .get("vocab")
        .and_then(Json::as_object)
        .ok_or("missing key 'model.vocab'")?;
    let mut by_id: HashMap<u32, (String, i32)> = HashMap::new();
    for (t, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| format!("model.vocab['{t}'] is not an id"))? as u32;
        by_id.insert(id, (t.clone(), token_type::NORMAL));
    }
    for a in j
        .get("added_tokens")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(id), Some(content)) = (
            a.get("id").and_then(Json::as_u64),
            a.get("content").and_then(Json::as_str),
        ) else {
            return Err(format!("added_tokens entry {a} has no id or content"));
        };
        let special = a.get("special").and_then(Json::as_bool).unwrap_or(false);
        let kind = if special {
            token_type::CONTROL
        } else {
            token_type::USER_DEFINED
        };
        by_id.insert(id as u32, (content.to_owned(), kind));
    }
    let n = by_id.keys().max().map_or(0, |&m| m as usize + 1);
    let mut tokens = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    for id in 0..n as u32 {
        match by_id.remove(&id) {
            Some((t, k)) => {
                tokens.push(t);
                types.push(k);
            }
            None => {
                tokens.push(format!("[PAD{id}]"));
                types.push(token_type::UNUSED);
            }
        }
    }
    // Older files write "a b", newer ones ["a", "b"].
    let mut merges = Vec::new();
    for (i, mg) in model
        .get("merges")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        match mg {
            Json::String(s) => merges.push(s.clone()),
            Json::Array(p) if p.len() == 2 => match (p[0].as_str(), p[1].as_str()) {
                (Some(a), Some(b)) => merges.push(format!("{a} {b}")),
                _ => return Err(format!("model.merges[{i}] is not two strings")),
            },
            _ => return Err(format!("model.merges[{i}] is not a merge")),
        }
    }
    let pre = pre_tokenizer_name(j.get("pre_tokenizer").unwrap_or(&Json::Null))?;
    let post_processor_adds_bos = j.get("post_processor").and_then(|p| {
        let single = p.get("single")?.as_array()?;
        Some(
            single
                .first()
                .is_some_and(|s| s.get("SpecialToken").is_some()),
        )
    });
    Ok(BpeVocab {
        tokens,
        types,
        merges,
        pre,
        post_processor_adds_bos,
    })
}

/// llama.cpp names a byte-level BPE's pre-tokenizer (`tokenizer.ggml.pre`);
/// the shapes recognised here are the ones Llama-architecture models ship
/// with. Anything else is refused: a wrong split gives wrong ids silently.
fn pre_tokenizer_name(p: &Json) -> Result<&'static str, String> {
    let ty = |v: &Json| {
        v.get("type")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let byte_level = |v: &Json, regex: bool| {
        ty(v) == "ByteLevel"
            && v.get("use_regex").and_then(Json::as_bool).unwrap_or(true) == regex
            && !v
                .get("add_prefix_space")
                .and_then(Json::as_bool)
                .unwrap_or(false)
    };
    if byte_level(p, true) {
        return Ok("gpt-2");
    }
    if ty(p) == "Sequence" {
        let parts = p
            .get("pretokenizers")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        if let [a, b] = parts.as_slice() {
            let split_regex = a.pointer("/pattern/Regex").and_then(Json::as_str);
            if ty(a) == "Split" && split_regex == Some(LLAMA3_REGEX) && byte_level(b, false) {
                return Ok("llama-bpe");
            }
            if ty(a) == "Split" && split_regex == Some(TEKKEN) && byte_level(b, false) {
                return Ok("tekken");
            }
            if ty(a) == "Digits"
                && a.get("individual_digits").and_then(Json::as_bool) == Some(true)
                && byte_level(b, true)
            {
                return Ok("smollm");
            }
        }
    }
    Err(format!(
        "pre-tokenizer {p} is not one this engine recognises (byte-level GPT-2, Llama 3, Mistral's Tekken, SmolLM)"
    ))
}
