//! Which files of a repository make up the model a name asks for.

use anyhow::{bail, Result};

use super::names::{quant_of, split_name, split_part, ModelName, Tag};

/// When no quantization is named: llama.cpp's and Ollama's default first, then
/// the usual trade-offs of size for quality, then the float files.
pub const QUANT_PREFERENCE: &[&str] = &[
    "Q4_K_M", "Q4_K_S", "Q5_K_M", "Q5_K_S", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q6_K", "Q8_0",
    "Q3_K_M", "Q3_K_L", "Q3_K_S", "Q2_K", "F16", "BF16", "F32",
];

/// Files a safetensors model needs beside its weights (those the repo has are fetched).
const SAFETENSORS_SIDE_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "model.safetensors.index.json",
];

/// What to fetch (or find in the cache) for a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// One GGUF model: a single file, or every part of a split file (first part first).
    Gguf {
        files: Vec<String>,
        quant: Option<String>,
    },
    /// A Hugging Face checkpoint: config, tokenizer files and every shard; the
    /// model is the snapshot folder.
    Safetensors { files: Vec<String> },
}

impl Selection {
    pub fn files(&self) -> &[String] {
        match self {
            Selection::Gguf { files, .. } | Selection::Safetensors { files } => files,
        }
    }
}

/// One GGUF model of a repository: a file or a complete split set.
#[derive(Clone, Debug)]
pub struct GgufModel {
    pub files: Vec<String>,
    pub quant: Option<String>,
}

impl GgufModel {
    fn label(&self) -> String {
        let first = &self.files[0];
        match (&self.quant, self.files.len()) {
            (Some(q), 1) => format!("{q} ({first})"),
            (Some(q), n) => format!("{q} ({first}, {n} parts)"),
            (None, 1) => first.clone(),
            (None, n) => format!("{first} ({n} parts)"),
        }
    }
}

/// The GGUF models among `files`: split parts grouped (in part order), vision
/// projectors (`mmproj`) left out since they are not language models.
pub fn gguf_models(files: &[String]) -> Vec<GgufModel> {
    let mut out: Vec<GgufModel> = Vec::new();
    for f in files {
        let lower = f.to_ascii_lowercase();
        if !lower.ends_with(".gguf") || lower.contains("mmproj") {
            continue;
        }
        match split_part(f) {
            Some(p) if p.index == 1 => {
                let parts = (1..=p.count)
                    .map(|i| split_name(&p.stem, i, p.count))
                    .collect();
                out.push(GgufModel {
                    files: parts,
                    quant: quant_of(f),
                });
            }
            // Later parts are listed with their first part.
            Some(_) => {}
            None => out.push(GgufModel {
                files: vec![f.clone()],
                quant: quant_of(f),
            }),
        }
    }
    out
}

/// Chooses the files for `name` among a repository's `files` (paths in the repo).
/// Errors list what the repository has, so the user can pick.
pub fn select(name: &ModelName, files: &[String]) -> Result<Selection> {
    let models = gguf_models(files);
    let has = |f: &str| files.iter().any(|x| x == f);
    let check_parts = |m: &GgufModel| -> Result<Selection> {
        if let Some(missing) = m.files.iter().find(|f| !has(f)) {
            bail!(
                "{}: split model {} has {} parts but {missing} is missing from the repository",
                name.repo,
                m.files[0],
                m.files.len()
            );
        }
        Ok(Selection::Gguf {
            files: m.files.clone(),
            quant: m.quant.clone(),
        })
    };
    let listing = || {
        models
            .iter()
            .map(GgufModel::label)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match &name.tag {
        Some(Tag::File(path)) => {
            let found = files
                .iter()
                .find(|f| *f == path)
                .or_else(|| files.iter().find(|f| f.eq_ignore_ascii_case(path)));
            let Some(found) = found else {
                bail!(
                    "{} has no file {path}; its GGUF files: {}",
                    name.repo,
                    if models.is_empty() {
                        "none".into()
                    } else {
                        listing()
                    }
                );
            };
            // Naming any part of a split model means the whole model.
            match models.iter().find(|m| m.files.contains(found)) {
                Some(m) => check_parts(m),
                None => bail!("{}: {found} is not a GGUF model file", name.repo),
            }
        }
        Some(Tag::Quant(q)) => {
            if models.is_empty() {
                bail!("{}", no_gguf(name, files));
            }
            match models.iter().find(|m| {
                m.quant
                    .as_deref()
                    .is_some_and(|mq| mq.eq_ignore_ascii_case(q))
            }) {
                Some(m) => check_parts(m),
                None => bail!(
                    "{} has no GGUF file with quantization {}; it has: {}",
                    name.repo,
                    q.to_ascii_uppercase(),
                    listing()
                ),
            }
        }
        None if models.is_empty() => {
            let shards: Vec<&String> = files
                .iter()
                .filter(|f| !f.contains('/') && f.ends_with(".safetensors"))
                .collect();
            if shards.is_empty() || !has("config.json") {
                bail!("{}", no_gguf(name, files));
            }
            let mut want: Vec<String> = SAFETENSORS_SIDE_FILES
                .iter()
                .filter(|f| has(f))
                .map(|f| f.to_string())
                .collect();
            want.extend(shards.into_iter().cloned());
            Ok(Selection::Safetensors { files: want })
        }
        None => {
            let by_preference = QUANT_PREFERENCE.iter().find_map(|pref| {
                models.iter().find(|m| {
                    m.quant
                        .as_deref()
                        .is_some_and(|q| q.eq_ignore_ascii_case(pref))
                })
            });
            check_parts(by_preference.unwrap_or(&models[0]))
        }
    }
}

fn no_gguf(name: &ModelName, files: &[String]) -> String {
    let shown: Vec<&str> = files.iter().take(12).map(String::as_str).collect();
    let more = files.len().saturating_sub(shown.len());
    format!(
        "{} has no GGUF file (and no safetensors model with a config.json); it has: {}{}",
        name.repo,
        if shown.is_empty() {
            "no files".into()
        } else {
            shown.join(", ")
        },
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn pick(spec: &str, names: &[&str]) -> Result<Selection> {
        select(&ModelName::parse(spec).unwrap(), &files(names))
    }

    const REPO: &[&str] = &[
        "README.md",
        "m.Q2_K.gguf",
        "m.Q8_0.gguf",
        "m.Q4_K_M.gguf",
        "mmproj-m-f16.gguf",
        "big/m-F16-00002-of-00002.gguf",
        "big/m-F16-00001-of-00002.gguf",
    ];

    fn gguf(files: &[&str], quant: &str) -> Selection {
        Selection::Gguf {
            files: files.iter().map(|s| s.to_string()).collect(),
            quant: Some(quant.into()),
        }
    }

    #[test]
    fn quant_tags_pick_files_case_insensitively() {
        assert_eq!(
            pick("o/m:q8_0", REPO).unwrap(),
            gguf(&["m.Q8_0.gguf"], "Q8_0")
        );
        assert_eq!(
            pick("o/m", REPO).unwrap(),
            gguf(&["m.Q4_K_M.gguf"], "Q4_K_M")
        );
        // Without Q4_K_M, the preference order decides.
        assert_eq!(
            pick("o/m", &["a.Q2_K.gguf", "a.Q8_0.gguf"]).unwrap(),
            gguf(&["a.Q8_0.gguf"], "Q8_0")
        );
        // Nothing recognisable: the first file.
        assert_eq!(
            pick("o/m", &["x.gguf", "y.gguf"]).unwrap(),
            Selection::Gguf {
                files: files(&["x.gguf"]),
                quant: None
            }
        );
    }

    #[test]
    fn split_models_come_whole_from_a_tag_or_any_part() {
        let want = gguf(
            &[
                "big/m-F16-00001-of-00002.gguf",
                "big/m-F16-00002-of-00002.gguf",
            ],
            "F16",
        );
        assert_eq!(pick("o/m:F16", REPO).unwrap(), want);
        assert_eq!(
            pick("o/m:big/m-F16-00002-of-00002.gguf", REPO).unwrap(),
            want
        );
        let err = pick(
            "o/m:F16",
            &["m-F16-00001-of-00003.gguf", "m-F16-00003-of-00003.gguf"],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("m-F16-00002-of-00003.gguf is missing"),
            "{err}"
        );
    }

    #[test]
    fn unknown_tags_list_what_the_repo_has() {
        let err = pick("o/m:Q5_K_M", REPO).unwrap_err().to_string();
        assert_eq!(
            err,
            "o/m has no GGUF file with quantization Q5_K_M; it has: Q2_K (m.Q2_K.gguf), \
             Q8_0 (m.Q8_0.gguf), Q4_K_M (m.Q4_K_M.gguf), F16 (big/m-F16-00001-of-00002.gguf, 2 parts)"
        );
        let err = pick("o/m:nope.gguf", REPO).unwrap_err().to_string();
        assert!(
            err.starts_with("o/m has no file nope.gguf; its GGUF files: Q2_K"),
            "{err}"
        );
        let err = pick("o/m", &["README.md", "x.bin"])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "o/m has no GGUF file (and no safetensors model with a config.json); it has: README.md, x.bin"
        );
    }

    #[test]
    fn safetensors_repos_fetch_config_tokenizer_and_every_shard() {
        let repo = [
            "config.json",
            "tokenizer.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "onnx/model.safetensors",
            "README.md",
        ];
        assert_eq!(
            pick("o/m", &repo).unwrap(),
            Selection::Safetensors {
                files: files(&[
                    "config.json",
                    "tokenizer.json",
                    "model.safetensors.index.json",
                    "model-00001-of-00002.safetensors",
                    "model-00002-of-00002.safetensors",
                ])
            }
        );
        // A quantization tag means GGUF.
        assert!(pick("o/m:Q4_0", &repo).is_err());
    }
}
