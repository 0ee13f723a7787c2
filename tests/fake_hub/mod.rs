//! A loopback HTTP server that plays the Hugging Face Hub for fake repositories,
//! with the headers huggingface_hub reads (its `get_hf_file_metadata` and
//! `http_get`): the model API with its file list, `resolve` with `Range`,
//! `ETag` / `X-Linked-Etag` / `X-Linked-Size`, `X-Repo-Commit`,
//! `Content-Range`, and the `X-Error-Code` errors. It binds 127.0.0.1 only and
//! lives as long as the test holding it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sha2::Digest as _;

pub mod models;

#[derive(Clone)]
pub struct FakeFile {
    pub name: String,
    pub bytes: Arc<Vec<u8>>,
    /// LFS files have the sha256 as ETag; git files their git blob id.
    pub lfs: bool,
}

impl FakeFile {
    pub fn lfs(name: &str, bytes: Vec<u8>) -> FakeFile {
        FakeFile {
            name: name.into(),
            bytes: Arc::new(bytes),
            lfs: true,
        }
    }

    pub fn git(name: &str, bytes: &[u8]) -> FakeFile {
        FakeFile {
            name: name.into(),
            bytes: Arc::new(bytes.to_vec()),
            lfs: false,
        }
    }

    pub fn etag(&self) -> String {
        if self.lfs {
            hex(&sha2::Sha256::digest(&*self.bytes))
        } else {
            let mut h = sha1::Sha1::new();
            h.update(format!("blob {}\0", self.bytes.len()).as_bytes());
            h.update(&*self.bytes);
            hex(&h.finalize())
        }
    }
}

#[derive(Clone)]
pub struct FakeRepo {
    pub id: String,
    pub commit: String,
    pub files: Vec<FakeFile>,
    /// A gated repository: files only with `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// LFS files answer `resolve` with a redirect to another host (`localhost`
    /// instead of `127.0.0.1`), as the real hub redirects to its CDN.
    pub cdn: bool,
}

impl FakeRepo {
    pub fn new(id: &str, files: Vec<FakeFile>) -> FakeRepo {
        // A commit id derived from the name, 40 hex digits like a real one.
        let commit = hex(&sha1::Sha1::digest(id.as_bytes()));
        FakeRepo {
            id: id.into(),
            commit,
            files,
            token: None,
            cdn: false,
        }
    }

    pub fn file(&self, name: &str) -> &FakeFile {
        self.files
            .iter()
            .find(|f| f.name == name)
            .expect("a file of the repo")
    }
}

/// What goes wrong with file bodies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    None,
    /// The next `times` GETs send `after` bytes of the body, then close the connection.
    Cut {
        after: usize,
        times: usize,
    },
    /// Bodies have one byte changed (same length, same headers).
    Corrupt,
    /// Bodies are sent 16 KiB at a time with this many milliseconds between
    /// chunks, so that two clients overlap.
    Slow {
        ms: u64,
    },
}

#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub auth: Option<String>,
}

struct State {
    port: u16,
    repos: Vec<FakeRepo>,
    fault: Fault,
    log: Vec<Request>,
    body_bytes: u64,
}

pub struct FakeHub {
    pub url: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl FakeHub {
    pub fn start(repos: Vec<FakeRepo>) -> FakeHub {
        FakeHub::start_on(0, repos)
    }

    /// On a given loopback port (0: any free one).
    pub fn start_on(port: u16, repos: Vec<FakeRepo>) -> FakeHub {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            port,
            repos,
            fault: Fault::None,
            log: Vec::new(),
            body_bytes: 0,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(conn, &st));
            }
        });
        FakeHub {
            url: format!("http://127.0.0.1:{port}"),
            state,
            stop,
            port,
        }
    }

    pub fn set_fault(&self, f: Fault) {
        self.state.lock().unwrap().fault = f;
    }

    /// Replaces a repository (a new commit, say).
    pub fn set_repo(&self, repo: FakeRepo) {
        let mut s = self.state.lock().unwrap();
        s.repos.retain(|r| r.id != repo.id);
        s.repos.push(repo);
    }

    /// Requests so far, and body bytes sent, since the last call.
    pub fn take_log(&self) -> (Vec<Request>, u64) {
        let mut s = self.state.lock().unwrap();
        let log = std::mem::take(&mut s.log);
        let bytes = std::mem::replace(&mut s.body_bytes, 0);
        (log, bytes)
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let path = target.split('?').next().unwrap_or("").to_string();
    let req = Request {
        method: method.clone(),
        path: path.clone(),
        range: headers.get("range").cloned(),
        auth: headers.get("authorization").cloned(),
    };
    let (repos, port) = {
        let mut s = state.lock().unwrap();
        s.log.push(req.clone());
        (s.repos.clone(), s.port)
    };
    let resp = route(&req, &repos, port);
    let mut conn = conn;
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nConnection: close\r\n",
        resp.status,
        reason(resp.status)
    );
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", resp.body.len()));
    if conn.write_all(head.as_bytes()).is_err() || method == "HEAD" {
        return;
    }
    let mut body = resp.body;
    let mut limit = body.len();
    if resp.is_file {
        let mut s = state.lock().unwrap();
        match &mut s.fault {
            Fault::Cut { after, times } if *times > 0 => {
                *times -= 1;
                limit = (*after).min(limit);
            }
            Fault::Corrupt if !body.is_empty() => {
                let mid = body.len() / 2;
                body[mid] ^= 0x5a;
            }
            _ => {}
        }
        s.body_bytes += limit as u64;
    }
    let slow = match state.lock().unwrap().fault {
        Fault::Slow { ms } if resp.is_file => Some(ms),
        _ => None,
    };
    match slow {
        Some(ms) => {
            for chunk in body[..limit].chunks(16 << 10) {
                if conn.write_all(chunk).is_err() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
        }
        None => {
            let _ = conn.write_all(&body[..limit]);
        }
    }
    let _ = conn.flush();
    let _ = conn.shutdown(Shutdown::Both);
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    is_file: bool,
}

fn error(status: u16, code: &str, msg: &str) -> Response {
    Response {
        status,
        headers: vec![
            ("X-Error-Code".into(), code.into()),
            ("X-Error-Message".into(), msg.into()),
            ("Content-Type".into(), "application/json".into()),
        ],
        body: format!("{{\"error\":\"{msg}\"}}").into_bytes(),
        is_file: false,
    }
}

fn route(req: &Request, repos: &[FakeRepo], port: u16) -> Response {
    if let Some(rest) = req.path.strip_prefix("/api/models/") {
        let repo = repos
            .iter()
            .find(|r| rest == r.id || rest.starts_with(&format!("{}/revision/", r.id)));
        let Some(repo) = repo else {
            return error(404, "RepoNotFound", "Repository not found");
        };
        let siblings: Vec<_> = repo
            .files
            .iter()
            .map(|f| serde_json::json!({"rfilename": f.name}))
            .collect();
        let body = serde_json::json!({
            "_id": "0",
            "id": repo.id,
            "modelId": repo.id,
            "sha": repo.commit,
            "private": false,
            "gated": if repo.token.is_some() { serde_json::json!("manual") } else { serde_json::json!(false) },
            "siblings": siblings,
        });
        return Response {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
            is_file: false,
        };
    }
    // The "CDN": /cdn/ORG/NAME/FILE..., no token needed (the URL would be signed).
    let cdn = req.path.strip_prefix("/cdn/");
    let path = match cdn {
        Some(rest) => {
            let mut p = rest.splitn(3, '/');
            let (o, n, f) = (
                p.next().unwrap_or(""),
                p.next().unwrap_or(""),
                p.next().unwrap_or(""),
            );
            format!("/{o}/{n}/resolve/main/{f}")
        }
        None => req.path.clone(),
    };
    // /ORG/NAME/resolve/REV/FILE...
    let segs: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if segs.len() < 5 || segs[2] != "resolve" {
        return error(404, "NotFound", "Not found");
    }
    let id = format!("{}/{}", segs[0], segs[1]);
    let Some(repo) = repos.iter().find(|r| r.id == id) else {
        return error(404, "RepoNotFound", "Repository not found");
    };
    if segs[3] != "main" && segs[3] != repo.commit {
        return error(404, "RevisionNotFound", "Invalid rev id");
    }
    if let (Some(token), None) = (&repo.token, cdn) {
        match &req.auth {
            None => return error(401, "GatedRepo", "Access to this model is restricted"),
            Some(a) if *a != format!("Bearer {token}") => {
                return error(403, "GatedRepo", "Access to this model is restricted")
            }
            Some(_) => {}
        }
    }
    let name = percent_decode(segs[4]);
    let Some(file) = repo.files.iter().find(|f| f.name == name) else {
        return error(404, "EntryNotFound", "Entry not found");
    };
    let etag = file.etag();
    let len = file.bytes.len();
    let mut headers = vec![
        ("X-Repo-Commit".to_string(), repo.commit.clone()),
        ("ETag".to_string(), format!("\"{etag}\"")),
        ("Accept-Ranges".to_string(), "bytes".to_string()),
        (
            "Content-Type".to_string(),
            "application/octet-stream".to_string(),
        ),
    ];
    if file.lfs {
        headers.push(("X-Linked-Etag".into(), format!("\"{etag}\"")));
        headers.push(("X-Linked-Size".into(), len.to_string()));
        if repo.cdn && cdn.is_none() {
            headers.push((
                "Location".into(),
                format!("http://localhost:{port}/cdn/{}/{}", repo.id, segs[4]),
            ));
            return Response {
                status: 302,
                headers,
                body: Vec::new(),
                is_file: false,
            };
        }
    }
    let start = req
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.parse::<usize>().ok());
    match start {
        Some(s) if s >= len => {
            headers.push(("Content-Range".into(), format!("bytes */{len}")));
            Response {
                status: 416,
                headers,
                body: Vec::new(),
                is_file: false,
            }
        }
        Some(s) => {
            headers.push((
                "Content-Range".into(),
                format!("bytes {s}-{}/{len}", len - 1),
            ));
            Response {
                status: 206,
                headers,
                body: file.bytes[s..].to_vec(),
                is_file: true,
            }
        }
        None => Response {
            status: 200,
            headers,
            body: file.bytes.to_vec(),
            is_file: true,
        },
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Other",
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh folder under the system temp dir, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "llama-wgpu-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every regular file or link under `dir`, relative, sorted.
pub fn files_under(dir: &std::path::Path) -> Vec<String> {
    fn walk(d: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                walk(&p, base, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
