//! Hugging Face `tokenizer.json` files.
//!
//! Encoding is the file's own pipeline. Decoding goes through the same
//! per-token pieces as GGUF vocabularies, so streaming and prompt
//! continuation behave alike; the pieces are read off the file's decoder,
//! which must be one of the two shapes Llama-family models use.

use std::collections::BTreeSet;
use std::path::Path;

use super::gguf_vocab::EOG_TEXTS;
use super::{attr, byte_level_decode, parse_byte_token, Encoder, Tokenizer, TokenizerError};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum DecoderShape {
    /// GPT-2 byte-level (Llama 3, Qwen, SmolLM).
    ByteLevel,
    /// SentencePiece: `▁` is a space, `<0xXX>` a byte (Llama 2, Mistral).
    Metaspace { strip_leading_space: bool },
}

fn file_error(path: &Path, msg: impl Into<String>) -> TokenizerError {
    TokenizerError::File {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

fn collect_types(v: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
    if let Some(list) = v.get("decoders").and_then(|d| d.as_array()) {
        for d in list {
            collect_types(d, out);
        }
    } else {
        out.push(v.clone());
    }
}

fn decoder_shape(hf: &tokenizers::Tokenizer) -> Result<DecoderShape, String> {
    let dec = hf.get_decoder().ok_or("it has no decoder")?;
    let v = serde_json::to_value(dec).map_err(|e| e.to_string())?;
    let mut parts = Vec::new();
    collect_types(&v, &mut parts);
    let ty = |p: &serde_json::Value| {
        p.get("type")
            .and_then(|t| t.as_str())
            .unwrap_or("")
            .to_owned()
    };
    if parts.iter().any(|p| ty(p) == "ByteLevel") {
        return Ok(DecoderShape::ByteLevel);
    }
    let metaspace = parts.iter().find(|p| ty(p) == "Metaspace");
    let replaces_marker = parts.iter().any(|p| {
        ty(p) == "Replace"
            && p.pointer("/pattern/String").and_then(|s| s.as_str()) == Some("\u{2581}")
    });
    if metaspace.is_some() || replaces_marker {
        let strip_decoder = parts
            .iter()
            .any(|p| ty(p) == "Strip" && p.get("start").and_then(|s| s.as_u64()).unwrap_or(0) >= 1);
        let metaspace_strips = metaspace.is_some_and(|m| {
            m.get("prepend_scheme")
                .and_then(|s| s.as_str())
                .map(|s| s != "never")
                .unwrap_or_else(|| {
                    m.get("add_prefix_space")
                        .and_then(|b| b.as_bool())
                        .unwrap_or(true)
                })
        });
        return Ok(DecoderShape::Metaspace {
            strip_leading_space: strip_decoder || metaspace_strips,
        });
    }
    let names: Vec<String> = parts.iter().map(ty).collect();
    Err(format!(
        "unsupported decoder [{}] (supported: ByteLevel, Metaspace/ByteFallback)",
        names.join(", ")
    ))
}

/// `bos_token` / `eos_token` in tokenizer_config.json are a string or an
/// AddedToken object.
fn config_token(cfg: &serde_json::Value, key: &str) -> Option<String> {
    let v = cfg.get(key)?;
    v.as_str()
        .or_else(|| v.get("content").and_then(|c| c.as_str()))
        .map(str::to_owned)
}

/// The tokenizers crate panics on some malformed files (found by fuzzing:
/// `expect`s in its decoder and Precompiled-normalizer deserializers), so the
/// JSON syntax is checked first and any remaining panic is contained and
/// reported as an error (the panic hook is silenced meanwhile, so the user
/// sees one line).
fn parse_tokenizer(text: &str) -> Result<tokenizers::Tokenizer, String> {
    serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| e.to_string())?;
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let parsed = std::panic::catch_unwind(|| text.parse::<tokenizers::Tokenizer>());
    std::panic::set_hook(hook);
    match parsed {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => {
            Err("a component has a malformed shape (the tokenizers library rejects it)".into())
        }
    }
}

pub(super) fn load(path: &Path) -> Result<Tokenizer, TokenizerError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    let parse = parse_tokenizer(&text)
        .map_err(|e| file_error(path, format!("cannot load tokenizer: {e}")))?;
    let shape = decoder_shape(&parse).map_err(|e| file_error(path, e))?;

    let config_path = path.with_file_name("tokenizer_config.json");
    let config: Option<serde_json::Value> = match std::fs::read_to_string(&config_path) {
        Ok(s) => {
            Some(serde_json::from_str(&s).map_err(|e| file_error(&config_path, e.to_string()))?)
        }
        Err(_) => None,
    };

    let n = parse.get_vocab_size(true);
    // Ids must lie below the size: the tokenizer would otherwise produce ids
    // that index past every per-token table (and past the model's embedding).
    if let Some((t, id)) = parse
        .get_vocab(true)
        .into_iter()
        .find(|&(_, id)| id as usize >= n)
    {
        let shown: String = t.chars().take(40).collect();
        return Err(file_error(
            path,
            format!("token '{shown}' has id {id}, not below the vocabulary's size {n}"),
        ));
    }
    let added = parse.get_added_tokens_decoder();
    let byte_fallback = matches!(shape, DecoderShape::Metaspace { .. });
    let mut tokens = Vec::with_capacity(n);
    let mut attrs = Vec::with_capacity(n);
    let mut pieces = Vec::with_capacity(n);
    for id in 0..n as u32 {
        let Some(text) = parse.id_to_token(id) else {
            // A hole in the id space: nothing to print.
            tokens.push(String::new());
            attrs.push(attr::UNDEFINED);
            pieces.push(Vec::new());
            continue;
        };
        let (a, piece) = match added.get(&id) {
            Some(t) if t.special => (attr::CONTROL, text.as_bytes().to_vec()),
            Some(_) => (attr::USER_DEFINED, text.as_bytes().to_vec()),
            None => match shape {
                DecoderShape::ByteLevel => (attr::NORMAL, byte_level_decode(&text)),
                DecoderShape::Metaspace { .. } => {
                    match parse_byte_token(&text).filter(|_| byte_fallback) {
                        Some(b) => (attr::BYTE, vec![b]),
                        None => (attr::NORMAL, text.replace('\u{2581}', " ").into_bytes()),
                    }
                }
            },
        };
        tokens.push(text);
        attrs.push(a);
        pieces.push(piece);
    }

    let id_of = |key: &str| -> Option<u32> {
        let text = config_token(config.as_ref()?, key)?;
        parse.token_to_id(&text)
    };
    let bos = id_of("bos_token");
    let eos = id_of("eos_token");
    let add_bos = config
        .as_ref()
        .and_then(|c| c.get("add_bos_token"))
        .and_then(|b| b.as_bool())
        .unwrap_or(false);
    let mut eog: BTreeSet<u32> = added
        .iter()
        .filter(|(_, t)| t.special && EOG_TEXTS.contains(&t.content.as_str()))
        .map(|(&id, _)| id)
        .collect();
    eog.extend(eos);

    let mut plain = parse.clone();
    plain.set_encode_special_tokens(true);
    Ok(Tokenizer {
        encoder: Encoder::Json {
            parse: Box::new(parse),
            plain: Box::new(plain),
        },
        tokens,
        attrs,
        pieces,
        bos,
        eos,
        add_bos,
        add_eos: false,
        add_space_prefix: matches!(
            shape,
            DecoderShape::Metaspace {
                strip_leading_space: true
            }
        ),
        eog,
        by_bytes: Default::default(),
    })
}
