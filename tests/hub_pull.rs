//! `pull`, `list`, `rm` and model names against a loopback fake of the
//! Hugging Face Hub (tests/fake_hub): quant selection, split files, resume,
//! checksums, gated and unknown repositories, a second pull transferring
//! nothing, concurrent pulls, and a pulled model running by name offline.

mod common;
mod fake_hub;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use assert_cmd::Command;
use fake_hub::models::{TinyRepos, SPLIT, TINY};
use fake_hub::{files_under, FakeFile, FakeHub, FakeRepo, Fault, TempDir};

fn models() -> &'static TinyRepos {
    static M: OnceLock<TinyRepos> = OnceLock::new();
    M.get_or_init(TinyRepos::new)
}

fn tiny_repo() -> FakeRepo {
    models().tiny()
}

fn split_repo() -> FakeRepo {
    models().split()
}

/// The hub with the standard repositories, and an empty cache and HF_HOME.
struct Setup {
    hub: FakeHub,
    dir: TempDir,
}

impl Setup {
    fn new(extra: Vec<FakeRepo>) -> Setup {
        let mut repos = vec![tiny_repo(), split_repo()];
        repos.extend(extra);
        Setup {
            hub: FakeHub::start(repos),
            dir: TempDir::new("hub"),
        }
    }

    fn cache(&self) -> PathBuf {
        self.dir.0.join("cache")
    }

    fn home(&self) -> PathBuf {
        self.dir.0.join("home")
    }

    /// The binary with the Hugging Face variables pointing at this setup only.
    fn bin(&self) -> Command {
        let mut c = Command::cargo_bin("llama-wgpu").unwrap();
        for k in [
            "HF_TOKEN",
            "HF_TOKEN_PATH",
            "HF_HUB_OFFLINE",
            "TRANSFORMERS_OFFLINE",
            "HUGGINGFACE_HUB_CACHE",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            c.env_remove(k);
        }
        c.env("HF_ENDPOINT", &self.hub.url)
            .env("HF_HUB_CACHE", self.cache())
            .env("HF_HOME", self.home());
        c
    }

    fn pull_json(&self, name: &str) -> serde_json::Value {
        let out = self.bin().args(["pull", name, "--json"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("one JSON object")
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.bin().args(args).output().unwrap();
        common::one_line_error(&out)
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.cache()
            .join(format!("models--{}", repo.replace('/', "--")))
    }
}

fn sha256(b: &[u8]) -> String {
    use sha2::Digest as _;
    fake_hub::hex(&sha2::Sha256::digest(b))
}

fn gets(log: &[fake_hub::Request]) -> Vec<(String, Option<String>)> {
    log.iter()
        .filter(|r| r.method == "GET" && r.path.contains("/resolve/"))
        .map(|r| {
            (
                r.path.rsplit('/').next().unwrap().to_string(),
                r.range.clone(),
            )
        })
        .collect()
}

#[test]
fn pull_picks_the_tagged_file_into_the_standard_cache_and_a_second_pull_transfers_nothing() {
    let s = Setup::new(vec![]);
    let repo = tiny_repo();
    let q8 = &models().q8;
    let out = s
        .bin()
        .args(["pull", "test/tiny-GGUF:q8_0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // stdout: the path; stderr: one summary line, no progress bar off a terminal.
    let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        !stderr.contains('\r') && !stderr.contains("ETA"),
        "{stderr}"
    );
    let dir = s.repo_dir(TINY);
    assert_eq!(
        path,
        dir.join("snapshots")
            .join(&repo.commit)
            .join("tiny.Q8_0.gguf")
    );
    assert_eq!(std::fs::read(&path).unwrap(), *q8);
    // huggingface_hub's layout: a relative link to blobs/SHA256, refs/main.
    let etag = sha256(q8);
    assert_eq!(
        std::fs::read_link(&path).unwrap(),
        Path::new("../../blobs").join(&etag)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("refs/main")).unwrap(),
        repo.commit
    );
    assert_eq!(
        files_under(&dir),
        [
            format!("blobs/{etag}"),
            "refs/main".into(),
            format!("snapshots/{}/tiny.Q8_0.gguf", repo.commit),
        ]
    );
    let (log, bytes) = s.hub.take_log();
    assert_eq!(gets(&log), [("tiny.Q8_0.gguf".into(), None)]);
    assert_eq!(bytes, q8.len() as u64);

    let again = s.pull_json("test/tiny-GGUF:Q8_0");
    assert_eq!(again["downloaded_bytes"], 0);
    assert_eq!(again["path"], path.display().to_string());
    let (log, bytes) = s.hub.take_log();
    assert_eq!((gets(&log).len(), bytes), (0, 0), "{log:?}");

    // No tag: Q4_K_M, llama.cpp's default.
    let default = s.pull_json(TINY);
    assert_eq!(default["quant"], "Q4_K_M");
    assert_eq!(default["files"], serde_json::json!(["tiny.Q4_K_M.gguf"]));
    assert_eq!(default["downloaded_bytes"], models().q4k.len());

    // list shows both; rm of one tag keeps the other; rm of the repo removes all.
    let out = s.bin().args(["list", "--json"]).output().unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["test/tiny-GGUF:Q4_K_M", "test/tiny-GGUF:Q8_0"]);
    assert_eq!(list[1]["size_bytes"], q8.len());
    assert_eq!(list[1]["path"], path.display().to_string());
    let table = s.bin().arg("list").output().unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.starts_with("NAME"), "{table}");
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("test/tiny-GGUF:Q8_0 "))
        .unwrap_or_else(|| panic!("{table}"))
        .split_whitespace()
        .collect();
    let p = path.display().to_string();
    assert_eq!(
        row,
        [
            "test/tiny-GGUF:Q8_0",
            "tiny.Q8_0.gguf",
            "Q8_0",
            "1.74",
            "MiB",
            &p
        ]
    );

    s.bin()
        .args(["rm", "test/tiny-GGUF:Q8_0"])
        .assert()
        .success();
    assert!(!path.exists() && !dir.join("blobs").join(&etag).exists());
    assert!(dir.join("blobs").join(sha256(&models().q4k)).exists());
    s.bin().args(["rm", TINY]).assert().success();
    assert!(!dir.exists());
    let err = s.fails(&["rm", TINY]);
    assert!(err.contains("test/tiny-GGUF is not in the cache"), "{err}");
}

#[test]
fn split_gguf_pulls_every_part_and_any_part_names_the_model() {
    let s = Setup::new(vec![]);
    let repo = split_repo();
    let m = s.pull_json("test/tiny-split-GGUF:q8_0");
    let files: Vec<String> = (1..=3)
        .map(|i| format!("Q8_0/tiny-Q8_0-{i:05}-of-00003.gguf"))
        .collect();
    assert_eq!(m["files"], serde_json::json!(files));
    let snap = s.repo_dir(SPLIT).join("snapshots").join(&repo.commit);
    assert_eq!(m["path"], snap.join(&files[0]).display().to_string());
    for (f, bytes) in files.iter().zip(&models().q8_parts) {
        assert_eq!(std::fs::read(snap.join(f)).unwrap(), *bytes, "{f}");
        // Links from a subfolder climb one more level.
        assert_eq!(
            std::fs::read_link(snap.join(f)).unwrap(),
            Path::new("../../../blobs").join(sha256(bytes))
        );
    }
    let total: usize = models().q8_parts.iter().map(Vec::len).sum();
    assert_eq!(m["downloaded_bytes"], total);
    // Naming the third part is naming the model: nothing more to fetch.
    let again = s.pull_json(&format!("{SPLIT}:{}", files[2]));
    assert_eq!(again["path"], m["path"]);
    assert_eq!(again["downloaded_bytes"], 0);
    // The engine opens all parts from the first one: every tensor is there.
    let out = s
        .bin()
        .args(["info", "-m", &format!("{SPLIT}:Q8_0"), "--json"])
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let whole = llama_wgpu::gguf::Gguf::from_bytes(models().q8.clone()).unwrap();
    assert_eq!(
        info["tensors"].as_array().unwrap().len(),
        whole.tensors.len()
    );
}

#[test]
fn an_interrupted_download_resumes_where_it_stopped() {
    let s = Setup::new(vec![]);
    let q8 = &models().q8;
    let len = q8.len();
    // Cut once halfway: the same run resumes with a Range request.
    s.hub.set_fault(Fault::Cut {
        after: len / 2,
        times: 1,
    });
    let m = s.pull_json("test/tiny-GGUF:Q8_0");
    let path = PathBuf::from(m["path"].as_str().unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), *q8);
    let (log, bytes) = s.hub.take_log();
    assert_eq!(
        gets(&log),
        [
            ("tiny.Q8_0.gguf".into(), None),
            ("tiny.Q8_0.gguf".into(), Some(format!("bytes={}-", len / 2)))
        ]
    );
    assert_eq!(bytes, len as u64, "each byte is sent once");

    // Cut on every attempt: the run fails, leaving only the partial blob; the
    // next run goes on from it.
    let q4 = &models().q4k;
    let quarter = q4.len() / 4;
    s.hub.set_fault(Fault::Cut {
        after: quarter,
        times: 100,
    });
    let err = s.fails(&["pull", TINY]);
    assert!(
        err.contains("interrupted at") && err.contains("run the command again to resume"),
        "{err}"
    );
    let dir = s.repo_dir(TINY);
    let partial = dir.join("blobs").join(format!("{}.incomplete", sha256(q4)));
    let have = std::fs::metadata(&partial).unwrap().len() as usize;
    assert_eq!(have, 3 * quarter, "three attempts, each resumed");
    let snap = files_under(&dir.join("snapshots"));
    assert!(!snap.iter().any(|f| f.contains("Q4_K_M")), "{snap:?}");
    s.hub.take_log();
    s.hub.set_fault(Fault::None);
    let m = s.pull_json(TINY);
    assert_eq!(std::fs::read(m["path"].as_str().unwrap()).unwrap(), *q4);
    let (log, bytes) = s.hub.take_log();
    assert_eq!(
        gets(&log),
        [("tiny.Q4_K_M.gguf".into(), Some(format!("bytes={have}-")))]
    );
    assert_eq!(bytes as usize, q4.len() - have);
    assert!(!partial.exists());
}

#[test]
fn a_checksum_mismatch_is_refused_and_leaves_nothing_behind() {
    let s = Setup::new(vec![]);
    s.hub.set_fault(Fault::Corrupt);
    let err = s.fails(&["pull", "test/tiny-GGUF:Q8_0"]);
    let want = sha256(&models().q8);
    assert!(
        err.contains("checksum mismatch") && err.contains(&want) && err.contains("discarded"),
        "{err}"
    );
    let dir = s.repo_dir(TINY);
    assert_eq!(files_under(&dir.join("snapshots")), Vec::<String>::new());
    assert_eq!(files_under(&dir.join("blobs")), Vec::<String>::new());
    // Nor can a name find it afterwards.
    let err = s.fails(&["info", "-m", "test/tiny-GGUF:Q8_0"]);
    assert!(err.contains("checksum mismatch"), "{err}");
}

#[test]
fn gated_repositories_need_a_token_and_unknown_names_say_so() {
    let mut gated = FakeRepo::new(
        "test/gated-GGUF",
        vec![FakeFile::lfs("g.Q4_0.gguf", b"GGUF not really".to_vec())],
    );
    gated.token = Some("hf_right".into());
    let s = Setup::new(vec![
        gated,
        FakeRepo::new("test/no-gguf", vec![FakeFile::git("README.md", b"hi")]),
    ]);
    let err = s.fails(&["pull", "test/gated-GGUF"]);
    assert!(
        err.contains("gated or private") && err.contains("set HF_TOKEN") && err.contains("401"),
        "{err}"
    );
    let out = s
        .bin()
        .args(["pull", "test/gated-GGUF"])
        .env("HF_TOKEN", "hf_wrong")
        .output()
        .unwrap();
    let err = common::one_line_error(&out);
    assert!(
        err.contains("your token has no access") && err.contains("403"),
        "{err}"
    );
    // The token file, as `huggingface-cli login` writes it.
    std::fs::create_dir_all(s.home()).unwrap();
    std::fs::write(s.home().join("token"), "hf_right\n").unwrap();
    s.hub.take_log();
    s.pull_json("test/gated-GGUF");
    let (log, _) = s.hub.take_log();
    assert!(log
        .iter()
        .filter(|r| r.path.contains("/resolve/"))
        .all(|r| r.auth.as_deref() == Some("Bearer hf_right")));
    std::fs::remove_file(s.home().join("token")).unwrap();

    // Behind a redirect to another host (the hub's CDN), the token is not sent there.
    let mut cdn = FakeRepo::new(
        "test/gated-cdn-GGUF",
        vec![FakeFile::lfs(
            "c.Q4_0.gguf",
            b"GGUF not really either".to_vec(),
        )],
    );
    cdn.token = Some("hf_right".into());
    cdn.cdn = true;
    s.hub.set_repo(cdn);
    let m = s
        .bin()
        .args(["pull", "test/gated-cdn-GGUF", "--json"])
        .env("HF_TOKEN", "hf_right")
        .output()
        .unwrap();
    assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
    let (log, bytes) = s.hub.take_log();
    assert_eq!(bytes, 22);
    let files: Vec<(&str, &str, Option<&str>)> = log
        .iter()
        .filter(|r| !r.path.starts_with("/api/"))
        .map(|r| (r.method.as_str(), r.path.as_str(), r.auth.as_deref()))
        .collect();
    assert_eq!(
        files,
        [
            (
                "HEAD",
                "/test/gated-cdn-GGUF/resolve/fa5f105380973e7976821d69c9c5ccf3aee24de6/c.Q4_0.gguf",
                Some("Bearer hf_right")
            ),
            ("GET", "/cdn/test/gated-cdn-GGUF/c.Q4_0.gguf", None),
        ]
    );

    let err = s.fails(&["pull", "nobody/nothing"]);
    assert_eq!(
        err.trim_end(),
        "error: no model nobody/nothing on the hub (if it is private, set HF_TOKEN)"
    );
    let err = s.fails(&["pull", "test/tiny-GGUF:Q5_K_M"]);
    assert_eq!(
        err.trim_end(),
        "error: test/tiny-GGUF has no GGUF file with quantization Q5_K_M; it has: Q4_K_M (tiny.Q4_K_M.gguf), Q8_0 (tiny.Q8_0.gguf)"
    );
    let err = s.fails(&["pull", "test/no-gguf"]);
    assert!(err.contains("test/no-gguf has no GGUF file"), "{err}");
    let err = s.fails(&["pull", "not a name"]);
    assert!(err.contains("is not a Hugging Face model name"), "{err}");
    // No network: a closed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let out = s
        .bin()
        .args(["pull", TINY])
        .env("HF_ENDPOINT", &url)
        .output()
        .unwrap();
    let err = common::one_line_error(&out);
    assert!(
        err.contains("cannot reach the Hugging Face hub") && err.contains("HF_HUB_OFFLINE"),
        "{err}"
    );
    // `-m` with a name that is neither a file nor on the hub says both.
    let err = s.fails(&["info", "-m", "nobody/nothing:Q4_0"]);
    assert!(err.contains("nobody/nothing:Q4_0 is not a file, and as a Hugging Face model: no model nobody/nothing"), "{err}");
}

#[test]
fn two_pulls_at_once_download_the_file_once() {
    let s = Setup::new(vec![]);
    // Slow enough (about 0.5 s for the file) that the two runs overlap.
    s.hub.set_fault(Fault::Slow { ms: 5 });
    let (mut a, mut b) = (s.bin(), s.bin());
    a.args(["pull", "test/tiny-GGUF:Q8_0", "--json"]);
    b.args(["pull", "test/tiny-GGUF:Q8_0", "--json"]);
    let (ra, rb) = std::thread::scope(|sc| {
        let ta = sc.spawn(|| a.output().unwrap());
        let tb = sc.spawn(|| b.output().unwrap());
        (ta.join().unwrap(), tb.join().unwrap())
    });
    let parse = |o: &std::process::Output| -> serde_json::Value {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let (ja, jb) = (parse(&ra), parse(&rb));
    let q8 = &models().q8;
    assert_eq!(std::fs::read(ja["path"].as_str().unwrap()).unwrap(), *q8);
    assert_eq!(ja["path"], jb["path"]);
    let (_, bytes) = s.hub.take_log();
    assert_eq!(
        bytes,
        q8.len() as u64,
        "the second pull waited for the first"
    );
    let total = ja["downloaded_bytes"].as_u64().unwrap() + jb["downloaded_bytes"].as_u64().unwrap();
    assert_eq!(total, q8.len() as u64);
}

#[test]
fn a_pulled_model_runs_by_name_offline() {
    let s = Setup::new(vec![]);
    s.pull_json("test/tiny-GGUF:Q8_0");
    s.pull_json("test/tiny-split-GGUF:Q8_0");
    s.hub.take_log();
    let generate = |model: &[&str]| -> serde_json::Value {
        let out = s
            .bin()
            .env("HF_HUB_OFFLINE", "1")
            .arg("generate")
            .args(model)
            .args(["-p", "a b", "-n", "4", "--temp", "0", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let by_m = generate(&["-m", "test/tiny-GGUF:Q8_0"]);
    assert!(
        by_m["model"].as_str().unwrap().ends_with("/tiny.Q8_0.gguf"),
        "{by_m}"
    );
    assert_eq!(by_m["generated_ids"].as_array().unwrap().len(), 4);
    // The same weights in three parts give the same tokens.
    let by_hf = generate(&["-hf", "test/tiny-split-GGUF:Q8_0"]);
    assert!(
        by_hf["model"]
            .as_str()
            .unwrap()
            .ends_with("/tiny-Q8_0-00001-of-00003.gguf"),
        "{by_hf}"
    );
    assert_eq!(by_hf["generated_ids"], by_m["generated_ids"]);
    assert_eq!(by_hf["prompt_ids"], by_m["prompt_ids"]);
    // Offline, a model not in the cache is an error naming the way out.
    let out = s
        .bin()
        .env("HF_HUB_OFFLINE", "1")
        .args(["generate", "-m", "test/tiny-GGUF:Q4_K_M", "-p", "a"])
        .output()
        .unwrap();
    let err = common::one_line_error(&out);
    assert!(
        err.contains("HF_HUB_OFFLINE is set")
            && err.contains("llama-wgpu pull test/tiny-GGUF:Q4_K_M"),
        "{err}"
    );
    let (log, _) = s.hub.take_log();
    assert!(log.is_empty(), "offline runs made requests: {log:?}");
}

#[test]
fn a_safetensors_repository_gives_config_tokenizer_and_every_shard() {
    let index = br#"{"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#;
    let repo = FakeRepo::new(
        "test/tiny-hf",
        vec![
            FakeFile::git("README.md", b"# hf\n"),
            FakeFile::git("config.json", br#"{"architectures":["LlamaForCausalLM"]}"#),
            FakeFile::git("tokenizer.json", br#"{"model":{}}"#),
            FakeFile::git("model.safetensors.index.json", index),
            FakeFile::lfs("model-00001-of-00002.safetensors", vec![1; 3000]),
            FakeFile::lfs("model-00002-of-00002.safetensors", vec![2; 2000]),
            FakeFile::lfs("onnx/model.onnx", vec![3; 100]),
        ],
    );
    let s = Setup::new(vec![repo.clone()]);
    // A git file (etag: its git blob id) with a wrong byte is refused too.
    s.hub.set_fault(Fault::Corrupt);
    let err = s.fails(&["pull", "test/tiny-hf"]);
    assert!(
        err.contains("config.json") && err.contains("git blob id"),
        "{err}"
    );
    s.hub.set_fault(Fault::None);
    let m = s.pull_json("test/tiny-hf");
    let snap = s
        .repo_dir("test/tiny-hf")
        .join("snapshots")
        .join(&repo.commit);
    assert_eq!(m["path"], snap.display().to_string());
    assert_eq!(
        files_under(&snap),
        [
            "config.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "tokenizer.json",
        ]
    );
    for f in files_under(&snap) {
        assert_eq!(
            std::fs::read(snap.join(&f)).unwrap(),
            *repo.file(&f).bytes,
            "{f}"
        );
    }
    // A name resolves to the folder; a missing shard makes it not cached.
    let out = s.bin().args(["list", "--json"]).output().unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["format"], "safetensors");
    assert_eq!(list[0]["path"], snap.display().to_string());
    std::fs::remove_file(snap.join("model-00002-of-00002.safetensors")).unwrap();
    let out = s.bin().args(["list", "--json"]).output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "[]");
}

#[test]
fn split_gguf_errors_name_the_part_at_fault() {
    use llama_wgpu::gguf::Gguf;
    let dir = TempDir::new("split");
    let names: Vec<PathBuf> = (1..=3)
        .map(|i| dir.0.join(format!("m-Q8_0-{i:05}-of-00003.gguf")))
        .collect();
    for (p, b) in names.iter().zip(&models().q8_parts) {
        std::fs::write(p, b).unwrap();
    }
    let whole = Gguf::from_bytes(models().q8.clone()).unwrap();
    let g = Gguf::open(&names[0]).unwrap();
    assert_eq!(g.tensors.len(), whole.tensors.len());
    for t in &whole.tensors {
        let s = g.tensor(&t.name).unwrap();
        assert_eq!(g.tensor_data(s), whole.tensor_data(t), "{}", t.name);
    }
    let err = Gguf::open(&names[1]).err().unwrap().to_string();
    assert!(
        err.ends_with("is part 2 of 3 of a split model: open m-Q8_0-00001-of-00003.gguf"),
        "{err}"
    );
    let renamed = dir.0.join("m.gguf");
    std::fs::copy(&names[0], &renamed).unwrap();
    let err = Gguf::open(&renamed).err().unwrap().to_string();
    assert!(
        err.contains("the file name does not end in -00001-of-00003.gguf"),
        "{err}"
    );
    std::fs::remove_file(&names[2]).unwrap();
    let err = Gguf::open(&names[0]).err().unwrap().to_string();
    assert!(
        err.contains("m-Q8_0-00003-of-00003.gguf: cannot open"),
        "{err}"
    );
}
