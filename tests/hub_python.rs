//! The cache is shared with Python's `huggingface_hub` (pinned in
//! scripts/test.sh): what it downloads from the loopback fake hub this engine
//! uses without downloading again, and what this engine pulls it finds.

mod common;
mod fake_hub;

use std::path::Path;
use std::process::Command as Process;

use fake_hub::models::{split, tiny_model};
use fake_hub::{FakeFile, FakeHub, FakeRepo, TempDir};
use llama_wgpu::quant::TensorType;

struct Setup {
    hub: FakeHub,
    dir: TempDir,
    q4k: Vec<u8>,
    q8: Vec<u8>,
}

const PROXIES: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

impl Setup {
    fn new() -> Setup {
        let q4k = tiny_model(TensorType::Q4_K, 1);
        let q8 = tiny_model(TensorType::Q8_0, 2);
        let mut files = vec![
            FakeFile::git("README.md", b"# tiny\n"),
            FakeFile::lfs("tiny.Q4_K_M.gguf", q4k.clone()),
            FakeFile::lfs("tiny.Q8_0.gguf", q8.clone()),
        ];
        for (i, p) in split(&q8, 2).into_iter().enumerate() {
            files.push(FakeFile::lfs(
                &format!("big/tiny-F16-{:05}-of-00002.gguf", i + 1),
                p,
            ));
        }
        // LFS files redirect to another host, as the real hub's go to its CDN.
        let mut repo = FakeRepo::new("test/tiny-GGUF", files);
        repo.cdn = true;
        Setup {
            hub: FakeHub::start(vec![repo]),
            dir: TempDir::new("hub-python"),
            q4k,
            q8,
        }
    }

    fn env(&self, c: &mut std::process::Command) {
        for k in PROXIES
            .iter()
            .chain(&["HF_TOKEN", "HF_HUB_OFFLINE", "HUGGINGFACE_HUB_CACHE"])
        {
            c.env_remove(k);
        }
        c.env("HF_ENDPOINT", &self.hub.url)
            .env("HF_HUB_CACHE", self.dir.0.join("cache"))
            .env("HF_HOME", self.dir.0.join("home"))
            .env("HF_HUB_DISABLE_TELEMETRY", "1")
            .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            .env("NO_PROXY", "127.0.0.1");
    }

    fn bin(&self, args: &[&str]) -> serde_json::Value {
        let mut c = Process::new(assert_cmd::cargo::cargo_bin("llama-wgpu"));
        self.env(&mut c);
        let out = c.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("one JSON object")
    }

    /// Runs Python code with huggingface_hub; returns its stdout, trimmed.
    fn python(&self, code: &str) -> String {
        let mut c = Process::new("python3");
        self.env(&mut c);
        let out = c.args(["-c", code]).output().expect("python3 on PATH");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("No module named 'huggingface_hub'"),
            "huggingface_hub is missing: python3 -m pip install huggingface_hub==0.36.0 (scripts/test.sh does)"
        );
        assert!(out.status.success(), "python failed: {stderr}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

#[test]
fn a_cache_written_by_huggingface_hub_is_used_without_a_new_download() {
    let s = Setup::new();
    let py_path = s.python(
        "from huggingface_hub import hf_hub_download\n\
         print(hf_hub_download('test/tiny-GGUF', 'tiny.Q8_0.gguf'))",
    );
    let (log, bytes) = s.hub.take_log();
    assert_eq!(
        bytes,
        s.q8.len() as u64,
        "python downloaded the file: {log:?}"
    );
    assert_eq!(std::fs::read(&py_path).unwrap(), s.q8);

    // A name finds Python's file in the cache without asking the hub anything.
    let info = s.bin(&["info", "-m", "test/tiny-GGUF:Q8_0", "--json"]);
    assert_eq!(info["file"], py_path, "{info}");
    let (log, _) = s.hub.take_log();
    assert!(log.is_empty(), "{log:?}");
    // `pull` asks the hub, sees the blob is there, and transfers nothing.
    let pulled = s.bin(&["pull", "test/tiny-GGUF:Q8_0", "--json"]);
    assert_eq!(pulled["path"], py_path);
    assert_eq!(pulled["downloaded_bytes"], 0);
    let (_, bytes) = s.hub.take_log();
    assert_eq!(bytes, 0);
}

#[test]
fn the_cache_this_engine_writes_is_read_by_huggingface_hub() {
    let s = Setup::new();
    let q4 = s.bin(&["pull", "test/tiny-GGUF", "--json"]);
    let q4_path = q4["path"].as_str().unwrap().to_string();
    let split = s.bin(&["pull", "test/tiny-GGUF:F16", "--json"]);
    s.hub.take_log();
    let found = s.python(
        "from huggingface_hub import try_to_load_from_cache\n\
         print(try_to_load_from_cache('test/tiny-GGUF', 'tiny.Q4_K_M.gguf'))\n\
         print(try_to_load_from_cache('test/tiny-GGUF', 'big/tiny-F16-00002-of-00002.gguf'))",
    );
    let lines: Vec<&str> = found.lines().collect();
    assert_eq!(lines[0], q4_path);
    let part2 =
        Path::new(split["path"].as_str().unwrap()).with_file_name("tiny-F16-00002-of-00002.gguf");
    assert_eq!(lines[1], part2.display().to_string());
    // Python's own download finds our blob by its ETag: nothing transferred.
    let again = s.python(
        "from huggingface_hub import hf_hub_download\n\
         print(hf_hub_download('test/tiny-GGUF', 'tiny.Q4_K_M.gguf'))",
    );
    assert_eq!(again, q4_path);
    let (_, bytes) = s.hub.take_log();
    assert_eq!(bytes, 0);
    // huggingface_hub's cache scan finds nothing wrong and sees both models.
    let scan = s.python(
        "from huggingface_hub import scan_cache_dir\n\
         info = scan_cache_dir()\n\
         print(len(info.warnings))\n\
         r = next(iter(info.repos))\n\
         print(r.repo_id, r.nb_files, r.size_on_disk)",
    );
    let total = s.q4k.len()
        + std::fs::metadata(split["path"].as_str().unwrap())
            .unwrap()
            .len() as usize
        + std::fs::metadata(&part2).unwrap().len() as usize;
    assert_eq!(scan, format!("0\ntest/tiny-GGUF 3 {total}"));
    assert_ne!(s.q8.len(), 0);
}
