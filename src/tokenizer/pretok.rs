//! The pre-tokenizers of byte-level BPE vocabularies, named by `tokenizer.ggml.pre`.
//!
//! The regexes are llama.cpp's (`llama-vocab.cpp`, `llm_tokenizer_bpe`), in the
//! order it applies them: each splits every piece left by the previous one,
//! keeping both the matches and the text between them. Where llama.cpp writes
//! the GPT-2 regex without its trailing `|\s+`, it runs a hand-written splitter
//! that behaves as the full regex does, so the full regex is used here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{
    OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, SplitDelimiterBehavior,
};

use super::TokenizerError;

/// GPT-2's regex, as in Hugging Face's `ByteLevel` pre-tokenizer.
pub(crate) const GPT2: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Llama 3's regex with the case-insensitive group spelled out, as llama.cpp
/// does: `(?i:...)` would also fold letters such as U+017F into the contractions.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Mistral's Tekken regex (Mistral Nemo, Mistral Small 3) as its
/// tokenizer.json writes it. llama.cpp transcribes the case classes for its
/// own regex engine as `((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+`,
/// which, as we read it, takes any letter outside ASCII for both cases (so
/// "aÄ" would be one piece there, two in the model's own tokenizer; not run
/// against llama.cpp). The classes run here as written (`tokenizers`'
/// Oniguruma has them), and tests/fixtures/tokenizer/pretok.json checks the
/// split against Hugging Face `tokenizers` with this regex.
pub(crate) const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How one family of BPE vocabularies splits text before merging.
#[derive(Clone, Debug)]
pub(crate) struct PreTokenizerSpec {
    pub regexes: &'static [&'static str],
    /// A piece that is already a token is emitted whole, without merging (Llama 3).
    pub ignore_merges: bool,
    /// Default of `add_bos_token` when the key is absent.
    pub add_bos: bool,
}

impl PreTokenizerSpec {
    /// One `Split` per regex, matches kept as pieces of their own.
    pub(crate) fn splits(&self) -> Result<Vec<PreTokenizerWrapper>, TokenizerError> {
        self.regexes
            .iter()
            .map(|re| {
                Split::new(
                    SplitPattern::Regex((*re).to_owned()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map(Into::into)
                .map_err(|e| TokenizerError::Backend(format!("pre-tokenizer regex {re:?}: {e}")))
            })
            .collect()
    }
}

/// The compiled splits of a family, built once per process and shared by
/// every tokenizer of that family: compiling these Unicode-class regexes
/// takes milliseconds, most of what loading a small vocabulary costs.
pub(crate) fn splitter(spec: &PreTokenizerSpec) -> Result<Arc<Sequence>, TokenizerError> {
    type Cache = Mutex<HashMap<&'static [&'static str], Arc<Sequence>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(seq) = cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(spec.regexes)
    {
        return Ok(seq.clone());
    }
    let seq = Arc::new(Sequence::new(spec.splits()?));
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(spec.regexes, seq.clone());
    Ok(seq)
}

/// The pieces `seq` cuts `text` into (what BPE merges can never cross).
pub(crate) fn split(seq: &Sequence, text: &str) -> Result<Vec<String>, TokenizerError> {
    let mut pts = PreTokenizedString::from(text);
    seq.pre_tokenize(&mut pts)
        .map_err(|e| TokenizerError::Backend(e.to_string()))?;
    Ok(pts
        .get_splits(OffsetReferential::Original, OffsetType::Byte)
        .into_iter()
        .map(|(piece, _, _)| piece.to_owned())
        .collect())
}

const DEFAULT: PreTokenizerSpec = PreTokenizerSpec {
    regexes: &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
    ignore_merges: false,
    add_bos: false,
};

/// Names llama.cpp maps to each family; anything else is refused rather than
/// tokenized with a regex the model was not trained with.
const FAMILIES: &[(&[&str], PreTokenizerSpec)] = &[
    (&["default"], DEFAULT),
    (
        &[
            "gpt-2",
            "phi-2",
            "jina-es",
            "jina-de",
            "gigachat",
            "jina-v1-en",
            "jina-v2-es",
            "jina-v2-de",
            "jina-v2-code",
            "roberta-bpe",
            "a.x-4.0",
            "mellum",
            "modern-bert",
            "exaone4",
            "mpt",
            "olmo",
            "jais",
            "trillion",
            "granite-docling",
        ],
        PreTokenizerSpec {
            regexes: &[GPT2],
            ignore_merges: false,
            add_bos: false,
        },
    ),
    (
        &[
            "llama3",
            "llama-v3",
            "llama-bpe",
            "falcon3",
            "falcon-h1",
            "pixtral",
            "midm-2.0",
            "lfm2",
        ],
        PreTokenizerSpec {
            regexes: &[LLAMA3],
            ignore_merges: true,
            add_bos: true,
        },
    ),
    (
        &["tekken"],
        PreTokenizerSpec {
            regexes: &[TEKKEN],
            ignore_merges: true,
            add_bos: true,
        },
    ),
    (
        &["dbrx", "smaug-bpe"],
        PreTokenizerSpec {
            regexes: &[LLAMA3],
            ignore_merges: false,
            add_bos: false,
        },
    ),
    (
        &[
            "starcoder",
            "refact",
            "command-r",
            "smollm",
            "codeshell",
            "exaone",
            "minerva-7b",
        ],
        PreTokenizerSpec {
            regexes: &[r"\p{N}", GPT2],
            ignore_merges: false,
            add_bos: false,
        },
    ),
    (
        &["qwen2", "deepseek-r1-qwen", "megrez", "stablelm2"],
        PreTokenizerSpec {
            regexes: &[QWEN2],
            ignore_merges: false,
            add_bos: false,
        },
    ),
    (
        &["falcon"],
        PreTokenizerSpec {
            regexes: &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"],
            ignore_merges: false,
            add_bos: false,
        },
    ),
];

/// The spec for a `tokenizer.ggml.pre` value; `None` (key absent) and the
/// empty string mean llama.cpp's default.
pub(crate) fn lookup(name: Option<&str>) -> Option<PreTokenizerSpec> {
    let name = match name {
        None | Some("") => return Some(DEFAULT),
        Some(n) => n,
    };
    FAMILIES
        .iter()
        .find(|(names, _)| names.contains(&name))
        .map(|(_, spec)| spec.clone())
}

/// All accepted names, for the error message.
pub(crate) fn known_names() -> Vec<&'static str> {
    FAMILIES
        .iter()
        .flat_map(|(names, _)| names.iter().copied())
        .collect()
}

/// The pieces the pre-tokenizer named `pre` (a `tokenizer.ggml.pre` value)
/// cuts `text` into before byte mapping and merges: what BPE merges can never
/// cross. For diagnostics and tests.
pub fn pre_tokenize(pre: &str, text: &str) -> Result<Vec<String>, TokenizerError> {
    let spec = lookup(Some(pre)).ok_or_else(|| TokenizerError::BadMetadata {
        key: "tokenizer.ggml.pre".into(),
        msg: format!("unknown pre-tokenizer '{pre}'"),
    })?;
    split(&*splitter(&spec)?, text)
}
