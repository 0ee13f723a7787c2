//! Tokenizers (SentencePiece and byte-level BPE from GGUF metadata, or tokenizer.json) and chat templates.
//!
//! Text in and text out follow llama.cpp (`llama-vocab.cpp`): the same special
//! token partitioning, the same SentencePiece leading-space rule, the same
//! pieces when printing. Encoding itself runs on Hugging Face's `tokenizers`
//! crate, built from the GGUF vocabulary, so a `.gguf` is all a user needs.

mod chat;
mod gguf_vocab;
mod json;
pub(crate) mod pretok;
mod stream;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokenizers::pre_tokenizers::sequence::Sequence;

pub use chat::{ChatMessage, ChatTemplate, LLAMA2_TEMPLATE};
pub use pretok::pre_tokenize;
pub use stream::StreamDecoder;

use crate::gguf::{Gguf, GgufError};
use gguf_vocab::VocabKind;

/// Why a vocabulary, tokenizer file or chat template could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A missing or mistyped metadata key; the message names it.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A metadata value that is present but unusable.
    #[error("{key}: {msg}")]
    BadMetadata { key: String, msg: String },
    #[error("{}: {msg}", path.display())]
    File { path: PathBuf, msg: String },
    /// The `tokenizers` crate refused the vocabulary or the text.
    #[error("tokenizer: {0}")]
    Backend(String),
    #[error("chat template{}: {msg}", name.as_deref().map(|n| format!(" {n}")).unwrap_or_default())]
    Template { name: Option<String>, msg: String },
}

/// Token attributes, llama.cpp's `llama_token_attr` bits.
pub(crate) mod attr {
    pub const UNDEFINED: u8 = 0;
    pub const UNKNOWN: u8 = 1 << 0;
    pub const UNUSED: u8 = 1 << 1;
    pub const NORMAL: u8 = 1 << 2;
    pub const CONTROL: u8 = 1 << 3;
    pub const USER_DEFINED: u8 = 1 << 4;
    pub const BYTE: u8 = 1 << 5;
    /// Not printed unless special tokens are rendered.
    pub const HIDDEN: u8 = UNKNOWN | CONTROL;
}

/// How ids become text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Print control tokens (`<|im_end|>`, `<s>`) as their text. llama.cpp
    /// prints generated text without them; `llama-tokenize` shows them.
    pub render_special: bool,
    /// The ids start the text: for vocabularies that prefix text with a space
    /// when encoding (SentencePiece), drop one leading space from the first
    /// token, as llama.cpp's detokenizer does. Off when continuing after a
    /// prompt, where that space is real.
    pub strip_leading_space: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            render_special: false,
            strip_leading_space: true,
        }
    }
}

enum Encoder {
    /// llama.cpp's pipeline: special tokens partitioned out first, each text
    /// fragment then encoded by the Hugging Face model.
    Gguf {
        kind: VocabKind,
        hf: Box<tokenizers::Tokenizer>,
        /// Candidates for partitioning, longest text first (llama.cpp's order).
        special: Vec<u32>,
        /// BPE: the pre-tokenizer's splits, run before `hf`.
        pre: Option<Arc<Sequence>>,
    },
    /// A tokenizer.json, used as Hugging Face uses it; `plain` has special
    /// tokens encoded as text.
    Json {
        parse: Box<tokenizers::Tokenizer>,
        plain: Box<tokenizers::Tokenizer>,
    },
}

/// Text to token ids and back.
pub struct Tokenizer {
    encoder: Encoder,
    tokens: Vec<String>,
    attrs: Vec<u8>,
    /// What each token prints as with special tokens rendered: raw bytes, as a
    /// byte-fallback or byte-level token may hold part of a character.
    pieces: Vec<Vec<u8>>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    eog: BTreeSet<u32>,
    /// [`Tokenizer::text_ids_by_bytes`], built when first asked for
    /// (constrained output walks the vocabulary as a trie).
    by_bytes: std::sync::OnceLock<Vec<u32>>,
}

enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

impl Tokenizer {
    /// Builds the tokenizer a GGUF file describes (`tokenizer.ggml.*`).
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer, TokenizerError> {
        let v = gguf_vocab::load(g)?;
        let pieces = v
            .tokens
            .iter()
            .zip(&v.attrs)
            .map(|(t, &a)| gguf_piece(v.kind, t, a))
            .collect();
        let mut special: Vec<u32> = (0..v.tokens.len() as u32)
            .filter(|&id| {
                v.attrs[id as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0
            })
            .collect();
        special.sort_by_key(|&id| std::cmp::Reverse(v.tokens[id as usize].len()));
        Ok(Tokenizer {
            encoder: Encoder::Gguf {
                kind: v.kind,
                hf: Box::new(v.hf),
                special,
                pre: v.pre,
            },
            tokens: v.tokens,
            attrs: v.attrs,
            pieces,
            bos: v.bos,
            eos: v.eos,
            add_bos: v.add_bos,
            add_eos: v.add_eos,
            add_space_prefix: v.add_space_prefix,
            eog: v.eog,
            by_bytes: Default::default(),
        })
    }

    /// Loads a Hugging Face `tokenizer.json`. BOS and EOS come from a
    /// `tokenizer_config.json` beside it, when there is one.
    pub fn from_tokenizer_json(path: &Path) -> Result<Tokenizer, TokenizerError> {
        json::load(path)
    }

    /// Text to ids. `add_bos`: add the special tokens the vocabulary asks for
    /// (BOS when `add_bos_token`, EOS when `add_eos_token`). `parse_special`:
    /// control tokens written in the text (`<|im_start|>`) become their ids;
    /// otherwise they are tokenized as plain text.
    pub fn encode(
        &self,
        text: &str,
        add_bos: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        match &self.encoder {
            Encoder::Json { parse, plain } => {
                let hf = if parse_special { parse } else { plain };
                let enc = hf
                    .encode_fast(text, add_bos)
                    .map_err(|e| TokenizerError::Backend(e.to_string()))?;
                Ok(enc.get_ids().to_vec())
            }
            Encoder::Gguf {
                kind,
                hf,
                special,
                pre,
            } => {
                let mut out = Vec::new();
                if add_bos && self.add_bos {
                    out.extend(self.bos);
                }
                // SentencePiece text gets a leading space at the start and
                // after every special token, as llama.cpp does.
                let mut after_special = true;
                for frag in self.partition(text, special, parse_special) {
                    match frag {
                        Fragment::Token(id) => {
                            out.push(id);
                            after_special = true;
                        }
                        Fragment::Text(t) => {
                            let ids = match kind {
                                VocabKind::Spm => {
                                    let mut s = String::with_capacity(t.len() + 3);
                                    if self.add_space_prefix && after_special {
                                        s.push(' ');
                                    }
                                    s.push_str(t);
                                    encode_hf(hf, &s.replace(' ', "\u{2581}"))?
                                }
                                VocabKind::Bpe => match pre {
                                    Some(pre) => encode_pieces(hf, &pretok::split(pre, t)?)?,
                                    None => encode_hf(hf, t)?,
                                },
                            };
                            out.extend(ids);
                            after_special = false;
                        }
                    }
                }
                if add_bos && self.add_eos {
                    out.extend(self.eos);
                }
                Ok(out)
            }
        }
    }

    /// llama.cpp's `tokenizer_st_partition`: each special token, longest
    /// first, is cut out of the text wherever it occurs. Control tokens only
    /// when asked; user-defined tokens always, as Hugging Face does.
    fn partition<'t>(
        &self,
        text: &'t str,
        special: &[u32],
        parse_special: bool,
    ) -> Vec<Fragment<'t>> {
        let mut frags = Vec::new();
        if !text.is_empty() {
            frags.push(Fragment::Text(text));
        }
        for &id in special {
            if !parse_special && self.attrs[id as usize] & attr::HIDDEN != 0 {
                continue;
            }
            let needle = self.tokens[id as usize].as_str();
            if !frags
                .iter()
                .any(|f| matches!(f, Fragment::Text(t) if t.contains(needle)))
            {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                match f {
                    Fragment::Token(_) => next.push(f),
                    Fragment::Text(mut t) => {
                        while let Some(pos) = t.find(needle) {
                            if pos > 0 {
                                next.push(Fragment::Text(&t[..pos]));
                            }
                            next.push(Fragment::Token(id));
                            t = &t[pos + needle.len()..];
                        }
                        if !t.is_empty() {
                            next.push(Fragment::Text(t));
                        }
                    }
                }
            }
            frags = next;
        }
        frags
    }

    /// Ids to text as llama.cpp prints generated text: control tokens are not
    /// shown, and a SentencePiece text loses the space its encoding added
    /// (llama.cpp's `llama_detokenize` rule: one space off the first token,
    /// even when that token is a hidden BOS). Ids outside the vocabulary print
    /// nothing. Unlike `llama_detokenize`, spaces before punctuation are never
    /// "cleaned up" for GPT-2-style vocabularies: that rewrite cannot be
    /// streamed and would break `decode(encode(text)) == text`.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.decode_with(ids, DecodeOptions::default())
    }

    pub fn decode_with(&self, ids: &[u32], opts: DecodeOptions) -> String {
        let mut bytes = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            bytes.extend_from_slice(self.piece_bytes(id, opts, i == 0));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// One token's contribution to decoded text; `first`: it starts the text.
    pub(crate) fn piece_bytes(&self, id: u32, opts: DecodeOptions, first: bool) -> &[u8] {
        let i = id as usize;
        let Some(piece) = self.pieces.get(i) else {
            return &[];
        };
        if !opts.render_special && self.attrs[i] & attr::HIDDEN != 0 {
            return &[];
        }
        if first && opts.strip_leading_space && self.add_space_prefix {
            return piece.strip_prefix(b" ").unwrap_or(piece);
        }
        piece
    }

    /// What a token prints as, special tokens shown (llama.cpp's
    /// `token_to_piece(special = true)`). A token holding part of a UTF-8
    /// character shows U+FFFD; [`Tokenizer::token_bytes`] has the bytes.
    pub fn token_piece(&self, id: u32) -> String {
        String::from_utf8_lossy(self.token_bytes(id)).into_owned()
    }

    /// The raw bytes a token prints as (empty for ids outside the vocabulary).
    /// The ids of the tokens that print text (not control or
    /// end-of-generation tokens, not empty), sorted by their bytes: tokens
    /// that share a prefix are neighbours.
    pub fn text_ids_by_bytes(&self) -> &[u32] {
        self.by_bytes.get_or_init(|| {
            let mut ids: Vec<u32> = (0..self.pieces.len() as u32)
                .filter(|&id| {
                    !self.token_bytes(id).is_empty()
                        && !self.is_control(id)
                        && !self.is_end_of_generation(id)
                })
                .collect();
            ids.sort_by(|&a, &b| self.token_bytes(a).cmp(self.token_bytes(b)));
            ids
        })
    }

    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.pieces
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The token's text as stored in the vocabulary (`▁Hello`, `ĠHello`).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of a token by its vocabulary text.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        match &self.encoder {
            Encoder::Gguf { hf, .. } => hf.token_to_id(text),
            Encoder::Json { parse, .. } => parse.token_to_id(text),
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// Whether `encode(.., add_bos = true, ..)` adds BOS (`add_bos_token`).
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether a prompt a chat template rendered gets BOS from the tokenizer:
    /// as the vocabulary asks, unless the template wrote BOS's text itself
    /// (a second BOS changes the model's answers).
    pub fn adds_bos_to_rendered(&self, text: &str) -> bool {
        let bos_text = self.bos_id().and_then(|b| self.token_text(b));
        self.add_bos && !bos_text.is_some_and(|b| !b.is_empty() && text.starts_with(b))
    }

    /// Control tokens: not printed by [`Tokenizer::decode`], only parsed from
    /// text when asked.
    pub fn is_control(&self, id: u32) -> bool {
        self.attrs
            .get(id as usize)
            .is_some_and(|a| a & attr::HIDDEN != 0)
    }

    /// Tokens that end generation: EOS, end-of-turn tokens (`<|im_end|>`,
    /// `<|eot_id|>`...) and the others llama.cpp puts in its EOG set.
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    pub fn end_of_generation_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.eog.iter().copied()
    }
}

fn encode_hf(hf: &tokenizers::Tokenizer, text: &str) -> Result<Vec<u32>, TokenizerError> {
    let enc = hf
        .encode_fast(text, false)
        .map_err(|e| TokenizerError::Backend(e.to_string()))?;
    Ok(enc.get_ids().to_vec())
}

/// Ids of text already cut into pieces, each byte-mapped and merged on its own.
fn encode_pieces(
    hf: &tokenizers::Tokenizer,
    pieces: &[String],
) -> Result<Vec<u32>, TokenizerError> {
    if pieces.is_empty() {
        return Ok(Vec::new());
    }
    let words: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let enc = hf
        .encode_fast(words, false)
        .map_err(|e| TokenizerError::Backend(e.to_string()))?;
    Ok(enc.get_ids().to_vec())
}

/// llama.cpp's `token_to_piece(special = true)` for a GGUF vocabulary.
fn gguf_piece(kind: VocabKind, text: &str, a: u8) -> Vec<u8> {
    if a & (attr::HIDDEN | attr::USER_DEFINED) != 0 {
        return text.as_bytes().to_vec();
    }
    if a & attr::NORMAL != 0 {
        return match kind {
            VocabKind::Spm => text.replace('\u{2581}', " ").into_bytes(),
            VocabKind::Bpe => byte_level_decode(text),
        };
    }
    if a & attr::BYTE != 0 {
        if let Some(b) = parse_byte_token(text) {
            return vec![b];
        }
        return text.as_bytes().to_vec();
    }
    // Unused and undefined tokens print nothing in llama.cpp.
    Vec::new()
}

/// `<0x0A>` to 0x0A.
pub(crate) fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// GPT-2 stores bytes as printable characters: printable Latin-1 stands for
/// itself, every other byte for U+0100 onwards in byte order.
fn byte_level_table() -> &'static std::collections::HashMap<char, u8> {
    static TABLE: std::sync::OnceLock<std::collections::HashMap<char, u8>> =
        std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut map = std::collections::HashMap::with_capacity(256);
        let mut next = 256u32;
        for b in 0..=255u32 {
            let printable = (0x21..=0x7E).contains(&b)
                || (0xA1..=0xAC).contains(&b)
                || (0xAE..=0xFF).contains(&b);
            let c = if printable {
                b
            } else {
                next += 1;
                next - 1
            };
            map.insert(char::from_u32(c).expect("below U+0200"), b as u8);
        }
        map
    })
}

/// A token text longer than this is left out of the marker for a character
/// that is not byte-level (see [`byte_level_decode`]).
pub(crate) const MAX_MARKER_TEXT_BYTES: usize = 64;

/// llama.cpp's `llama_decode_text`, including its marker for characters that
/// are not byte-level: `[UNK_BYTE_0x<hex of the character><token text>]`.
/// llama.cpp repeats the whole token text in every marker, which is quadratic
/// in the token's length (a 50,000-character token asks for gigabytes); here
/// the text is repeated only for tokens of at most [`MAX_MARKER_TEXT_BYTES`]
/// (every real vocabulary's), so the output stays within 100 bytes per
/// character.
pub(crate) fn byte_level_decode(text: &str) -> Vec<u8> {
    let table = byte_level_table();
    let quoted = if text.len() <= MAX_MARKER_TEXT_BYTES {
        text.as_bytes()
    } else {
        &[]
    };
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match table.get(&c) {
            Some(&b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(quoted);
                out.push(b']');
            }
        }
    }
    out
}
