//! Reading a vocabulary out of GGUF metadata, the way llama.cpp's
//! `llama_vocab::impl::load` reads it, and building the Hugging Face model
//! that encodes with it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;

use super::{attr, pretok, TokenizerError};
use crate::gguf::{tag, Array, Gguf};

pub(crate) const KEY_MODEL: &str = "tokenizer.ggml.model";
pub(crate) const KEY_PRE: &str = "tokenizer.ggml.pre";
pub(crate) const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
pub(crate) const KEY_SCORES: &str = "tokenizer.ggml.scores";
pub(crate) const KEY_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
pub(crate) const KEY_MERGES: &str = "tokenizer.ggml.merges";
pub(crate) const KEY_BOS: &str = "tokenizer.ggml.bos_token_id";
pub(crate) const KEY_EOS: &str = "tokenizer.ggml.eos_token_id";
const KEY_EOT: &str = "tokenizer.ggml.eot_token_id";
const KEY_EOM: &str = "tokenizer.ggml.eom_token_id";
const KEY_UNK: &str = "tokenizer.ggml.unknown_token_id";
const KEY_SEP: &str = "tokenizer.ggml.seperator_token_id";
const KEY_PAD: &str = "tokenizer.ggml.padding_token_id";
const KEY_FIM_PRE: &str = "tokenizer.ggml.fim_pre_token_id";
const KEY_FIM_SUF: &str = "tokenizer.ggml.fim_suf_token_id";
const KEY_FIM_MID: &str = "tokenizer.ggml.fim_mid_token_id";
const KEY_FIM_PAD: &str = "tokenizer.ggml.fim_pad_token_id";
const KEY_FIM_REP: &str = "tokenizer.ggml.fim_rep_token_id";
const KEY_FIM_SEP: &str = "tokenizer.ggml.fim_sep_token_id";
const KEY_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const KEY_ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
const KEY_ADD_PREFIX: &str = "tokenizer.ggml.add_space_prefix";

/// GGUF token types (`tokenizer.ggml.token_type`), as llama.cpp numbers them.
fn attr_from_type(t: i64) -> u8 {
    match t {
        1 => attr::NORMAL,
        2 => attr::UNKNOWN,
        3 => attr::CONTROL,
        4 => attr::USER_DEFINED,
        5 => attr::UNUSED,
        6 => attr::BYTE,
        // llama.cpp accepts unknown types and suppresses them on output.
        _ => attr::UNDEFINED,
    }
}

/// Texts llama.cpp treats as end of turn / end of generation whatever their id.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
pub(crate) const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VocabKind {
    /// `tokenizer.ggml.model = "llama"`: SentencePiece BPE over scores, byte fallback.
    Spm,
    /// `tokenizer.ggml.model = "gpt2"`: byte-level BPE over merges.
    Bpe,
}

/// Everything the tokenizer needs from the file, validated.
pub(crate) struct GgufVocab {
    pub kind: VocabKind,
    pub tokens: Vec<String>,
    pub attrs: Vec<u8>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    pub eog: BTreeSet<u32>,
    pub hf: tokenizers::Tokenizer,
    /// BPE: the family's regex splits, applied before `hf` (which then only
    /// maps bytes and merges), shared between tokenizers.
    pub pre: Option<Arc<Sequence>>,
}

fn bad(key: impl Into<String>, msg: impl Into<String>) -> TokenizerError {
    TokenizerError::BadMetadata {
        key: key.into(),
        msg: msg.into(),
    }
}

fn string_array(g: &Gguf, key: &str) -> Result<Vec<String>, TokenizerError> {
    let arr = g.get_array(key)?;
    arr.as_strings().map(<[String]>::to_vec).ok_or_else(|| {
        bad(
            key,
            format!(
                "should be an array of strings, found an array of {}",
                tag::name(arr.elem_tag())
            ),
        )
    })
}

/// An optional per-token array: `None` when absent, an error when its length
/// differs from the token list's (llama.cpp would read past a short one).
fn per_token_array<'g>(
    g: &'g Gguf,
    key: &str,
    n_tokens: usize,
) -> Result<Option<&'g Array>, TokenizerError> {
    if g.get(key).is_none() {
        return Ok(None);
    }
    let arr = g.get_array(key)?;
    if arr.len() != n_tokens {
        return Err(bad(
            key,
            format!("has {} entries but {KEY_TOKENS} has {n_tokens}", arr.len()),
        ));
    }
    Ok(Some(arr))
}

/// A token id key: absent gives `default` (dropped when outside the
/// vocabulary, as llama.cpp does); present but outside the vocabulary is an
/// error, since the file then names a token that does not exist.
fn token_id(
    g: &Gguf,
    key: &str,
    default: Option<u32>,
    n_tokens: usize,
) -> Result<Option<u32>, TokenizerError> {
    let Some(v) = g.get(key) else {
        return Ok(default.filter(|&id| (id as usize) < n_tokens));
    };
    // Some converters write -1 for "no such token".
    if v.as_i64().is_some_and(|x| x < 0) {
        return Ok(None);
    }
    let id = v.as_u64().ok_or_else(|| {
        bad(
            key,
            format!("should be a token id, found {} {v}", v.type_name()),
        )
    })?;
    if id >= n_tokens as u64 {
        return Err(bad(
            key,
            format!("token id {id} is out of range (the vocabulary has {n_tokens} tokens)"),
        ));
    }
    Ok(Some(id as u32))
}

fn find_text(tokens: &[String], texts: &[&str]) -> Option<u32> {
    tokens
        .iter()
        .position(|t| texts.contains(&t.as_str()))
        .map(|i| i as u32)
}

pub(crate) fn load(g: &Gguf) -> Result<GgufVocab, TokenizerError> {
    let model = g.get_str(KEY_MODEL)?;
    let kind = match model {
        "llama" => VocabKind::Spm,
        "gpt2" => VocabKind::Bpe,
        other => {
            return Err(bad(
                KEY_MODEL,
                format!("unknown tokenizer model '{other}' (supported: llama, gpt2)"),
            ))
        }
    };

    let mut tokens = string_array(g, KEY_TOKENS)?;
    let n = tokens.len();
    if n == 0 {
        return Err(bad(KEY_TOKENS, "is empty"));
    }
    for (i, t) in tokens.iter_mut().enumerate() {
        if t.is_empty() {
            // llama.cpp's name for it: an empty string cannot be looked up or partitioned.
            *t = format!("[EMPTY_{i}]");
        }
    }
    let mut index: HashMap<&str, u32> = HashMap::with_capacity(n);
    for (i, t) in tokens.iter().enumerate() {
        if let Some(prev) = index.insert(t, i as u32) {
            return Err(bad(
                KEY_TOKENS,
                format!("duplicate token '{t}' at ids {prev} and {i}"),
            ));
        }
    }

    let scores: Option<Vec<f32>> = per_token_array(g, KEY_SCORES, n)?
        .map(|arr| {
            arr.iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_f32()
                        .or_else(|| v.as_i64().map(|x| x as f32))
                        .ok_or_else(|| {
                            bad(
                                format!("{KEY_SCORES}[{i}]"),
                                format!("should be a number, found {}", v.type_name()),
                            )
                        })
                })
                .collect::<Result<_, _>>()
        })
        .transpose()?;
    let mut attrs: Vec<u8> = match per_token_array(g, KEY_TOKEN_TYPE, n)? {
        None => vec![attr::NORMAL; n],
        Some(arr) => arr
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_i64().map(attr_from_type).ok_or_else(|| {
                    bad(
                        format!("{KEY_TOKEN_TYPE}[{i}]"),
                        format!("should be an integer, found {}", v.type_name()),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };

    let pre_name = g.opt_str(KEY_PRE)?;
    let (pre_spec, mut add_bos, mut add_space_prefix, defaults) = match kind {
        VocabKind::Spm => (None, true, true, (Some(1), Some(2), Some(0))),
        VocabKind::Bpe => {
            let spec = pretok::lookup(pre_name).ok_or_else(|| {
                bad(
                    KEY_PRE,
                    format!(
                        "unknown pre-tokenizer '{}' (known: {})",
                        pre_name.unwrap_or_default(),
                        pretok::known_names().join(", ")
                    ),
                )
            })?;
            if pre_name.is_none_or(str::is_empty) {
                tracing::warn!("{KEY_PRE} is missing: using llama.cpp's default BPE pre-tokenizer; tokenization may not match the model's training");
            }
            let add_bos = spec.add_bos;
            (Some(spec), add_bos, false, (Some(11), Some(11), None))
        }
    };
    if let Some(v) = g.opt_bool(KEY_ADD_PREFIX)? {
        add_space_prefix = v;
    }

    let bos = token_id(g, KEY_BOS, defaults.0, n)?;
    let eos = token_id(g, KEY_EOS, defaults.1, n)?;
    let unk = token_id(g, KEY_UNK, defaults.2, n)?;
    let mut eot = token_id(g, KEY_EOT, None, n)?;
    let mut eom = token_id(g, KEY_EOM, None, n)?;
    // Read only to validate: a file naming tokens it does not have is broken.
    token_id(g, KEY_SEP, None, n)?;
    token_id(g, KEY_PAD, None, n)?;
    let mut fim_pre = token_id(g, KEY_FIM_PRE, None, n)?;
    let mut fim_suf = token_id(g, KEY_FIM_SUF, None, n)?;
    let mut fim_mid = token_id(g, KEY_FIM_MID, None, n)?;
    let mut fim_pad = token_id(g, KEY_FIM_PAD, None, n)?;
    let mut fim_rep = token_id(g, KEY_FIM_REP, None, n)?;
    let mut fim_sep = token_id(g, KEY_FIM_SEP, None, n)?;

    if let Some(v) = g.opt_bool(KEY_ADD_BOS)? {
        add_bos = v;
    }
    let add_eos = g.opt_bool(KEY_ADD_EOS)?.unwrap_or(false);
    if add_bos && bos.is_none() {
        return Err(bad(
            KEY_ADD_BOS,
            format!("is true, but {KEY_BOS} is not set"),
        ));
    }
    if add_eos && eos.is_none() {
        return Err(bad(
            KEY_ADD_EOS,
            format!("is true, but {KEY_EOS} is not set"),
        ));
    }

    // llama.cpp finds these by their text when the file does not name them, and
    // forces them to be control tokens so they are never printed by accident.
    for (slot, texts) in [
        (&mut eot, EOT_TEXTS),
        (&mut eom, EOM_TEXTS),
        (&mut fim_pre, FIM_PRE_TEXTS),
        (&mut fim_suf, FIM_SUF_TEXTS),
        (&mut fim_mid, FIM_MID_TEXTS),
        (&mut fim_pad, FIM_PAD_TEXTS),
        (&mut fim_rep, FIM_REP_TEXTS),
        (&mut fim_sep, FIM_SEP_TEXTS),
    ] {
        if slot.is_none() {
            *slot = find_text(&tokens, texts);
            if let Some(id) = *slot {
                attrs[id as usize] |= attr::CONTROL;
            }
        }
    }
    let mut eog: BTreeSet<u32> = [fim_pad, fim_rep, fim_sep].into_iter().flatten().collect();
    for (i, t) in tokens.iter().enumerate() {
        if EOG_TEXTS.contains(&t.as_str()) {
            eog.insert(i as u32);
            attrs[i] |= attr::CONTROL;
        }
    }
    eog.extend([eos, eot, eom].into_iter().flatten());

    let (hf, pre) = match kind {
        VocabKind::Spm => {
            let scores = scores.ok_or_else(|| {
                bad(
                    KEY_SCORES,
                    "is missing (a SentencePiece vocabulary needs scores to merge by)",
                )
            })?;
            (build_spm(&tokens, &scores, unk)?, None)
        }
        VocabKind::Bpe => {
            let spec = pre_spec.expect("set for BPE above");
            (
                build_bpe(g, &tokens, &index, &spec)?,
                Some(pretok::splitter(&spec)?),
            )
        }
    };

    Ok(GgufVocab {
        kind,
        tokens,
        attrs,
        bos,
        eos,
        add_bos,
        add_eos,
        add_space_prefix,
        eog,
        hf,
        pre,
    })
}

fn vocab_map(tokens: &[String]) -> tokenizers::models::bpe::Vocab {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect()
}

fn hf_error(what: &str, e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Backend(format!("{what}: {e}"))
}

/// Budget for the merges derived from a SentencePiece vocabulary: at most
/// this many per token, and at most this many bytes of merge text per byte of
/// token text. Llama 2's vocabulary derives 1.9 merges per token and 2.0
/// bytes per byte; a hostile one (`a`, `aa`, ... up to 4,000 `a`s, an 8 MB
/// file) would derive 8 million merges of 21 GB.
pub(crate) const SPM_MERGES_PER_TOKEN: usize = 8;
pub(crate) const SPM_MERGE_BYTES_PER_TOKEN_BYTE: usize = 16;

/// SentencePiece vocabularies carry scores, not merges. llama.cpp merges the
/// adjacent pair whose concatenation is the highest-scoring token; a BPE whose
/// merge ranks follow those scores does the same, so the merges are derived
/// the way `transformers` derives them for GGUF files: every split of every
/// token into two tokens, ranked by the whole token's score. The splits are
/// found by walking two tries (token prefixes and token suffixes) along each
/// token, so the work is linear in the vocabulary's bytes, and the merges are
/// held to the budget above.
fn build_spm(
    tokens: &[String],
    scores: &[f32],
    unk: Option<u32>,
) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let token_bytes: usize = tokens.iter().map(String::len).sum();
    let max_merges = SPM_MERGES_PER_TOKEN * tokens.len();
    let max_merge_bytes = SPM_MERGE_BYTES_PER_TOKEN_BYTE * token_bytes;
    let prefixes = Trie::new(tokens.iter().map(|t| t.bytes()));
    let suffixes = Trie::new(tokens.iter().map(|t| t.bytes().rev()));
    // (score of the token, scores of its two halves, the halves)
    let mut merges: Vec<(f32, [f32; 2], &str, &str)> = Vec::new();
    let mut merge_bytes = 0usize;
    // Per token: `left[k]` is the id of the token `t[..k]`, if any.
    let mut left: Vec<Option<u32>> = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        let b = token.as_bytes();
        let start = merges.len();
        left.clear();
        left.resize(b.len() + 1, None);
        prefixes.walk(b.iter().copied(), |k, id| left[k] = Some(id));
        let mut found: Vec<(usize, u32, u32)> = Vec::new();
        suffixes.walk(b.iter().rev().copied(), |j, r| {
            let k = b.len() - j;
            if let (true, Some(l)) = (k > 0, left[k]) {
                found.push((k, l, r));
            }
        });
        // In split order, as the character walk used to find them.
        found.sort_unstable_by_key(|f| f.0);
        for (k, l, r) in found {
            let halves = [scores[l as usize], scores[r as usize]];
            merges.push((scores[id], halves, &token[..k], &token[k..]));
            merge_bytes += b.len();
        }
        if merges.len() > max_merges || merge_bytes > max_merge_bytes {
            return Err(TokenizerError::BadMetadata {
                key: KEY_TOKENS.into(),
                msg: format!(
                    "the SentencePiece vocabulary splits into more merges than the budget \
                     ({SPM_MERGES_PER_TOKEN} per token, {SPM_MERGE_BYTES_PER_TOKEN_BYTE} bytes \
                     of merges per byte of token text): {} merges of {merge_bytes} bytes by token {id}",
                    merges.len()
                ),
            });
        }
        // Among the splits of one token, transformers puts first the one whose
        // halves score higher; stable sorts keep its order for equal keys.
        merges[start..].sort_by(|a, b| {
            let (ka, kb) = (a.1, b.1);
            kb[0].total_cmp(&ka[0]).then(kb[1].total_cmp(&ka[1]))
        });
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0));
    let merges: Vec<(String, String)> = merges
        .into_iter()
        .map(|(_, _, l, r)| (l.to_owned(), r.to_owned()))
        .collect();

    let mut builder = BPE::builder()
        .vocab_and_merges(vocab_map(tokens), merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(tokens[unk as usize].clone());
    }
    let bpe = builder
        .build()
        .map_err(|e| hf_error("building the SentencePiece model", e))?;
    Ok(tokenizers::Tokenizer::new(bpe))
}

/// A byte trie over token texts (or their reversals), for finding every
/// token that is a prefix of a given text in one walk along it.
struct Trie {
    edges: HashMap<(u32, u8), u32>,
    /// The token id that ends at each node, if one does.
    ends: Vec<Option<u32>>,
}

impl Trie {
    fn new<I: Iterator<Item = u8>>(texts: impl Iterator<Item = I>) -> Trie {
        let mut t = Trie {
            edges: HashMap::new(),
            ends: vec![None],
        };
        for (id, text) in texts.enumerate() {
            let mut node = 0u32;
            for b in text {
                let next = t.ends.len() as u32;
                node = *t.edges.entry((node, b)).or_insert(next);
                if node == next {
                    t.ends.push(None);
                }
            }
            t.ends[node as usize].get_or_insert(id as u32);
        }
        t
    }

    /// Calls `found(n, id)` for each token `id` equal to the first `n` bytes
    /// of `text`, for `n` from 1 up to its length minus one (a proper part).
    fn walk(&self, text: impl ExactSizeIterator<Item = u8>, mut found: impl FnMut(usize, u32)) {
        let len = text.len();
        let mut node = 0u32;
        for (i, b) in text.enumerate().take(len.saturating_sub(1)) {
            match self.edges.get(&(node, b)) {
                Some(&next) => node = next,
                None => return,
            }
            if let Some(id) = self.ends[node as usize] {
                found(i + 1, id);
            }
        }
    }
}

fn build_bpe(
    g: &Gguf,
    tokens: &[String],
    index: &HashMap<&str, u32>,
    spec: &pretok::PreTokenizerSpec,
) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let raw = string_array(g, KEY_MERGES)?;
    let mut merges = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        // llama.cpp splits at the first space after the first byte, so a merge
        // of the space token itself ("  x") still parses.
        let first = m.chars().next().map_or(0, char::len_utf8);
        let split = m[first..].find(' ').map(|p| p + first);
        let Some(split) = split else {
            return Err(bad(
                format!("{KEY_MERGES}[{i}]"),
                format!("'{m}' is not two tokens separated by a space"),
            ));
        };
        let (l, r) = (&m[..split], &m[split + 1..]);
        for part in [l, r, &format!("{l}{r}")] {
            if !index.contains_key(part) {
                return Err(bad(
                    format!("{KEY_MERGES}[{i}]"),
                    format!("'{m}': '{part}' is not in {KEY_TOKENS}"),
                ));
            }
        }
        merges.push((l.to_owned(), r.to_owned()));
    }

    let bpe = BPE::builder()
        .vocab_and_merges(vocab_map(tokens), merges)
        .ignore_merges(spec.ignore_merges)
        .build()
        .map_err(|e| hf_error("building the BPE model", e))?;

    // The family's regexes split before this tokenizer runs (pretok::splitter,
    // compiled once per process); ByteLevel only maps bytes to GPT-2's
    // printable characters.
    let mut tok = tokenizers::Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, false, false)));
    Ok(tok)
}

/// The texts of the BOS and EOS tokens, for chat templates, without building
/// the whole tokenizer.
pub(crate) fn bos_eos_texts(g: &Gguf) -> Result<(Option<String>, Option<String>), TokenizerError> {
    let defaults = match g.opt_str(KEY_MODEL)? {
        Some("llama") => (Some(1), Some(2)),
        Some("gpt2") => (Some(11), Some(11)),
        _ => (None, None),
    };
    let tokens = g.get_array(KEY_TOKENS)?;
    let text = |key: &str, default: Option<u32>| -> Result<Option<String>, TokenizerError> {
        Ok(token_id(g, key, default, tokens.len())?
            .and_then(|id| tokens.as_strings()?.get(id as usize).cloned()))
    };
    Ok((text(KEY_BOS, defaults.0)?, text(KEY_EOS, defaults.1)?))
}
