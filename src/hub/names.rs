//! Model names: `ORG/NAME[:QUANT|:FILE]`, quantization tags in file names, split GGUF parts.

use std::fmt;

use anyhow::{bail, Result};

pub use crate::gguf::split::{split_name, split_part, SplitPart};

/// A model named by its Hugging Face repository, with an optional quantization
/// tag (`Q4_K_M`) or file name (`model-q4.gguf`, `sub/dir/x.gguf`) after a colon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelName {
    /// `ORG/NAME`, as the Hub spells it.
    pub repo: String,
    pub tag: Option<Tag>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tag {
    /// A quantization such as `Q4_K_M`, compared case-insensitively.
    Quant(String),
    /// A file in the repository (its path there).
    File(String),
}

impl ModelName {
    /// Parses `ORG/NAME[:TAG]`. `None` when the text cannot be a repository name
    /// (so that it is treated as a file path).
    pub fn parse(spec: &str) -> Option<ModelName> {
        let (repo, tag) = match spec.split_once(':') {
            Some((r, t)) => (r, Some(t)),
            None => (spec, None),
        };
        let (org, name) = repo.split_once('/')?;
        if !valid_part(org) || !valid_part(name) {
            return None;
        }
        // `models/x.gguf` is a path that does not exist, not a repository.
        if name.to_ascii_lowercase().ends_with(".gguf") {
            return None;
        }
        let tag = match tag {
            None => None,
            Some("") => return None,
            Some(t) if t.contains('/') || t.to_ascii_lowercase().ends_with(".gguf") => {
                Some(Tag::File(t.to_string()))
            }
            Some(t) if valid_part(t) => Some(Tag::Quant(t.to_string())),
            Some(_) => return None,
        };
        Some(ModelName {
            repo: repo.to_string(),
            tag,
        })
    }

    /// As [`ModelName::parse`], with an error naming the expected form.
    pub fn parse_or_explain(spec: &str) -> Result<ModelName> {
        match ModelName::parse(spec) {
            Some(n) => Ok(n),
            None => bail!(
                "{spec:?} is not a Hugging Face model name (expected ORG/NAME, ORG/NAME:QUANT or ORG/NAME:FILE)"
            ),
        }
    }

    /// `ORG/NAME` as a cache folder name: `models--ORG--NAME` (huggingface_hub's `repo_folder_name`).
    pub fn folder(&self) -> String {
        repo_folder(&self.repo)
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tag {
            None => f.write_str(&self.repo),
            Some(Tag::Quant(q)) => write!(f, "{}:{q}", self.repo),
            Some(Tag::File(p)) => write!(f, "{}:{p}", self.repo),
        }
    }
}

pub fn repo_folder(repo: &str) -> String {
    format!("models--{}", repo.replace('/', "--"))
}

/// The inverse of [`repo_folder`] for model repositories.
pub fn repo_of_folder(folder: &str) -> Option<String> {
    let rest = folder.strip_prefix("models--")?;
    let (org, name) = rest.split_once("--")?;
    Some(format!("{org}/{name}"))
}

/// The Hub's rule for repository name parts: letters, digits, `-`, `_`, `.`;
/// no leading or trailing `-`/`.`, no `--` or `..` (which would also break the cache folder name).
fn valid_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 96
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.'])
        && !s.contains("--")
        && !s.contains("..")
}

/// The quantization a GGUF file name states, upper-cased: the last
/// `-`/`.`/`/`-separated word shaped like one (`Q4_K_M`, `IQ4_XS`, `Q8_0`,
/// `F16`, `BF16`, `F32`, `TQ1_0`...).
pub fn quant_of(file: &str) -> Option<String> {
    let name = match split_part(file) {
        Some(p) => p.stem,
        None => file
            .get(..file.len().saturating_sub(5))
            .filter(|_| file.to_ascii_lowercase().ends_with(".gguf"))
            .unwrap_or(file)
            .to_string(),
    };
    name.split(['-', '.', '/'])
        .rev()
        .map(|w| w.to_ascii_uppercase())
        .find(|w| is_quant_word(w))
}

fn is_quant_word(w: &str) -> bool {
    if matches!(w, "F16" | "BF16" | "F32" | "FP16" | "FP32") {
        return true;
    }
    // I?T?Q<digit>(_<alnum>+)*, e.g. Q4_K_M, IQ2_XXS, TQ1_0, Q4_0_4_4.
    let rest = w
        .strip_prefix("IQ")
        .or_else(|| w.strip_prefix("TQ"))
        .or_else(|| w.strip_prefix('Q'));
    let Some(rest) = rest else { return false };
    let mut parts = rest.split('_');
    let first = parts.next().unwrap_or("");
    !first.is_empty()
        && first.bytes().all(|b| b.is_ascii_digit())
        && parts.all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_into_repo_and_tag() {
        let n = ModelName::parse("TheBloke/Llama-2-7B-GGUF:q4_k_m").unwrap();
        assert_eq!(n.repo, "TheBloke/Llama-2-7B-GGUF");
        assert_eq!(n.tag, Some(Tag::Quant("q4_k_m".into())));
        assert_eq!(n.folder(), "models--TheBloke--Llama-2-7B-GGUF");
        let f = ModelName::parse("org/name:sub/x-Q8_0.gguf").unwrap();
        assert_eq!(f.tag, Some(Tag::File("sub/x-Q8_0.gguf".into())));
        assert_eq!(ModelName::parse("org/name").unwrap().tag, None);
        for path in [
            "models/x.gguf",
            "./x",
            "/abs/path",
            "a/b/c",
            "x.gguf",
            "org/",
            "org/name:",
            "org/na--me",
            "C:\\x",
        ] {
            assert_eq!(ModelName::parse(path), None, "{path}");
        }
        assert_eq!(
            repo_of_folder("models--org--name.x").as_deref(),
            Some("org/name.x")
        );
    }

    #[test]
    fn quant_tags_come_from_file_names() {
        for (file, q) in [
            ("llama-2-7b-chat.Q4_K_M.gguf", Some("Q4_K_M")),
            ("Qwen2.5-0.5B-Instruct-q8_0.gguf", Some("Q8_0")),
            ("model-IQ4_XS.gguf", Some("IQ4_XS")),
            ("model-f16.gguf", Some("F16")),
            ("Q4_K_M/model-Q4_K_M-00001-of-00002.gguf", Some("Q4_K_M")),
            ("UD-Q4_K_XL/m-UD-Q4_K_XL.gguf", Some("Q4_K_XL")),
            ("model.gguf", None),
            ("Qwen2-7B.gguf", None),
        ] {
            assert_eq!(quant_of(file).as_deref(), q, "{file}");
        }
    }
}
