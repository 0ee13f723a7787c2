//! The Hugging Face environment variables, read as `huggingface_hub` reads them
//! (its `constants.py`), so both tools share one cache, endpoint and token.

use std::path::{Path, PathBuf};

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

#[derive(Clone, Debug)]
pub struct HubEnv {
    /// `HF_ENDPOINT`, without a trailing slash.
    pub endpoint: String,
    /// `HF_HUB_CACHE` (or the legacy `HUGGINGFACE_HUB_CACHE`), else `$HF_HOME/hub`.
    pub cache: PathBuf,
    /// `HF_TOKEN`, else the token file (`HF_TOKEN_PATH`, default `$HF_HOME/token`).
    pub token: Option<String>,
    /// `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`): never touch the network.
    pub offline: bool,
}

impl HubEnv {
    pub fn from_env() -> HubEnv {
        HubEnv::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// The same rules over any variable lookup (tests).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> HubEnv {
        let home_dir = || var("HOME").map(PathBuf::from).unwrap_or_else(|| ".".into());
        let expand = |p: String| -> PathBuf {
            match p.strip_prefix("~/") {
                Some(rest) => home_dir().join(rest),
                None if p == "~" => home_dir(),
                None => PathBuf::from(p),
            }
        };
        let hf_home = var("HF_HOME").map(expand).unwrap_or_else(|| {
            var("XDG_CACHE_HOME")
                .map(expand)
                .unwrap_or_else(|| home_dir().join(".cache"))
                .join("huggingface")
        });
        let cache = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(expand)
            .unwrap_or_else(|| hf_home.join("hub"));
        let token_path = var("HF_TOKEN_PATH")
            .map(expand)
            .unwrap_or_else(|| hf_home.join("token"));
        let token = var("HF_TOKEN")
            .or_else(|| read_token(&token_path))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let truthy = |k: &str| {
            var(k).is_some_and(|v| {
                matches!(v.to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE")
            })
        };
        HubEnv {
            endpoint: var("HF_ENDPOINT")
                .unwrap_or_else(|| DEFAULT_ENDPOINT.into())
                .trim_end_matches('/')
                .to_string(),
            cache,
            token,
            offline: truthy("HF_HUB_OFFLINE") || truthy("TRANSFORMERS_OFFLINE"),
        }
    }
}

fn read_token(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> HubEnv {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubEnv::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn variables_follow_huggingface_hub() {
        let e = env(&[("HOME", "/h")]);
        assert_eq!(e.cache, PathBuf::from("/h/.cache/huggingface/hub"));
        assert_eq!(e.endpoint, "https://huggingface.co");
        assert!(!e.offline && e.token.is_none());
        let e = env(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]);
        assert_eq!(e.cache, PathBuf::from("/x/huggingface/hub"));
        let e = env(&[("HOME", "/h"), ("HF_HOME", "~/hf")]);
        assert_eq!(e.cache, PathBuf::from("/h/hf/hub"));
        let e = env(&[
            ("HF_HOME", "/hf"),
            ("HF_HUB_CACHE", "/c"),
            ("HF_ENDPOINT", "http://127.0.0.1:9/"),
            ("HF_TOKEN", " hf_abc\n"),
            ("HF_HUB_OFFLINE", "yes"),
        ]);
        assert_eq!(e.cache, PathBuf::from("/c"));
        assert_eq!(e.endpoint, "http://127.0.0.1:9");
        assert_eq!(e.token.as_deref(), Some("hf_abc"));
        assert!(e.offline);
        assert!(!env(&[("HF_HUB_OFFLINE", "0")]).offline);
        assert!(env(&[("TRANSFORMERS_OFFLINE", "1")]).offline);
    }

    #[test]
    fn the_token_file_is_read_when_hf_token_is_unset() {
        let dir = std::env::temp_dir().join(format!("llama-wgpu-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "hf_file\n").unwrap();
        let home = dir.to_str().unwrap();
        assert_eq!(env(&[("HF_HOME", home)]).token.as_deref(), Some("hf_file"));
        assert_eq!(
            env(&[("HF_HOME", home), ("HF_TOKEN", "hf_env")])
                .token
                .as_deref(),
            Some("hf_env")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
