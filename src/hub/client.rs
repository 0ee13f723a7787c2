//! The Hub's HTTP API, as much of it as downloading needs: a repository's file
//! list (`/api/models/ORG/NAME/revision/REV`), a file's metadata (`HEAD
//! /ORG/NAME/resolve/REV/FILE`, read as huggingface_hub's
//! `get_hf_file_metadata` reads it) and its bytes (`GET`, with `Range` to resume).

use std::io::Read;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use serde::Deserialize;

use super::env::HubEnv;

/// Enough for a file list; a file's bytes are streamed, not read whole.
const MAX_API_BODY: u64 = 64 << 20;
/// Relative redirects (a renamed repository) are followed; absolute ones lead
/// to the file's storage, whose headers are not the hub's.
const MAX_RELATIVE_REDIRECTS: usize = 5;

pub struct Client {
    agent: ureq::Agent,
    pub endpoint: String,
    token: Option<String>,
}

/// A repository at one commit.
#[derive(Debug, Deserialize)]
pub struct RepoInfo {
    /// The commit the revision resolved to.
    pub sha: String,
    #[serde(default)]
    pub siblings: Vec<Sibling>,
}

#[derive(Debug, Deserialize)]
pub struct Sibling {
    pub rfilename: String,
}

/// What the hub says of one file (huggingface_hub's `HfFileMetadata`).
#[derive(Clone, Debug)]
pub struct FileMeta {
    pub commit: String,
    /// Normalised ETag: the sha256 of an LFS file, the git blob id of other files.
    pub etag: String,
    pub size: u64,
    /// Where to GET the bytes.
    pub location: String,
}

/// The body of a GET: the offset it starts at and the whole file's size.
pub struct Download {
    pub start: u64,
    pub total: u64,
    pub reader: Box<dyn Read + Send>,
}

impl Client {
    pub fn new(env: &HubEnv) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            // A stalled transfer fails (and can be resumed) rather than hanging forever.
            .timeout_recv_body(Some(Duration::from_secs(60)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .user_agent(concat!("llama-wgpu/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client {
            agent,
            endpoint: env.endpoint.clone(),
            token: env.token.clone(),
        }
    }

    fn with_auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => req.header("Authorization", format!("Bearer {t}")),
            None => req,
        }
    }

    /// The commit and file list of `repo` at `revision`.
    pub fn repo_info(&self, repo: &str, revision: &str) -> Result<RepoInfo> {
        let url = format!(
            "{}/api/models/{repo}/revision/{}",
            self.endpoint,
            encode_path(revision)
        );
        let resp = self
            .with_auth(self.agent.get(&url))
            .call()
            .map_err(|e| self.transport(e))?;
        check_status(&resp, repo, None, self.token.is_some())?;
        let body = resp
            .into_body()
            .with_config()
            .limit(MAX_API_BODY)
            .read_to_string()
            .with_context(|| format!("reading the file list of {repo}"))?;
        serde_json::from_str(&body)
            .with_context(|| format!("{} sent an unexpected file list for {repo}", self.endpoint))
    }

    /// A file's commit, ETag and size, from a HEAD request.
    pub fn file_meta(&self, repo: &str, revision: &str, file: &str) -> Result<FileMeta> {
        let mut url = self.file_url(repo, revision, file);
        for _ in 0..=MAX_RELATIVE_REDIRECTS {
            let resp = self
                .with_auth(self.agent.head(&url))
                .header("Accept-Encoding", "identity")
                .config()
                .max_redirects(0)
                .max_redirects_will_error(false)
                .build()
                .call()
                .map_err(|e| self.transport(e))?;
            let status = resp.status().as_u16();
            let header = |k: &str| {
                resp.headers()
                    .get(k)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            if (300..400).contains(&status) {
                if let Some(loc) = header("Location").filter(|l| l.starts_with('/')) {
                    url = format!("{}{loc}", origin(&url));
                    continue;
                }
            }
            // An absolute redirect (to the hub's storage) carries the metadata itself.
            if !(300..400).contains(&status) {
                check_status(&resp, repo, Some(file), self.token.is_some())?;
            }
            let commit = header("X-Repo-Commit").ok_or_else(|| {
                anyhow!(
                    "{} did not send X-Repo-Commit for {repo}/{file}: is HF_ENDPOINT a Hugging Face hub?",
                    self.endpoint
                )
            })?;
            let etag = header("X-Linked-Etag")
                .or_else(|| header("ETag"))
                .map(|e| normalize_etag(&e))
                .filter(|e| !e.is_empty() && !e.contains(['/', '\\']))
                .ok_or_else(|| {
                    anyhow!("{} sent no usable ETag for {repo}/{file}", self.endpoint)
                })?;
            let size = header("X-Linked-Size")
                .or_else(|| header("Content-Length"))
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| anyhow!("{} sent no size for {repo}/{file}", self.endpoint))?;
            let location = match header("Location") {
                Some(l) if l.starts_with('/') => format!("{}{l}", origin(&url)),
                Some(l) => l,
                None => url.clone(),
            };
            return Ok(FileMeta {
                commit,
                etag,
                size,
                location,
            });
        }
        bail!("too many redirects for {repo}/{file}")
    }

    /// GETs `meta.location` from byte `start` on.
    pub fn download(
        &self,
        repo: &str,
        file: &str,
        meta: &FileMeta,
        start: u64,
    ) -> Result<Download> {
        let mut req = self
            .agent
            .get(&meta.location)
            .header("Accept-Encoding", "identity");
        // A redirect to another host is a signed storage URL: the token stays
        // with the hub (huggingface_hub does the same).
        if origin(&meta.location) == origin(&self.endpoint) {
            req = self.with_auth(req);
        }
        if start > 0 {
            req = req.header("Range", format!("bytes={start}-"));
        }
        let resp = req.call().map_err(|e| self.transport(e))?;
        let status = resp.status().as_u16();
        let header = |k: &str| {
            resp.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let got_start = match status {
            206 => {
                let range = header("Content-Range").unwrap_or_default();
                let (first, total) = parse_content_range(&range).ok_or_else(|| {
                    anyhow!("{repo}/{file}: the server sent a partial response with Content-Range {range:?}")
                })?;
                if total != meta.size {
                    bail!(
                        "{repo}/{file} changed on the hub during the download ({} bytes, now {total}): run the command again",
                        meta.size
                    );
                }
                first
            }
            // The server ignored the range: the body is the whole file.
            200 => 0,
            _ => {
                check_status(&resp, repo, Some(file), self.token.is_some())?;
                bail!("{repo}/{file}: unexpected HTTP status {status}");
            }
        };
        Ok(Download {
            start: got_start,
            total: meta.size,
            reader: Box::new(resp.into_body().into_reader()),
        })
    }

    fn file_url(&self, repo: &str, revision: &str, file: &str) -> String {
        format!(
            "{}/{repo}/resolve/{}/{}",
            self.endpoint,
            encode_path(revision),
            encode_path(file)
        )
    }

    fn transport(&self, e: ureq::Error) -> anyhow::Error {
        anyhow::Error::new(Unreachable {
            endpoint: self.endpoint.clone(),
            cause: e.to_string(),
        })
    }
}

/// The hub could not be reached (or the connection failed before a response):
/// worth retrying, unlike an answer from the hub.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the Hugging Face hub at {endpoint} ({cause}); check the network or HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use only the cache")]
pub struct Unreachable {
    endpoint: String,
    cause: String,
}

/// Turns the hub's error statuses into messages that say what to do.
/// The hub names the error in `X-Error-Code` (huggingface_hub's `hf_raise_for_status`).
fn check_status(
    resp: &ureq::http::Response<ureq::Body>,
    repo: &str,
    file: Option<&str>,
    has_token: bool,
) -> Result<()> {
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let code = resp
        .headers()
        .get("X-Error-Code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let what = match file {
        Some(f) => format!("{repo}/{f}"),
        None => repo.to_string(),
    };
    if matches!(code, "RepoNotFound" | "RepositoryNotFound") || (status == 404 && file.is_none()) {
        bail!(
            "no model {repo} on the hub{}",
            if has_token {
                ""
            } else {
                " (if it is private, set HF_TOKEN)"
            }
        );
    }
    if code == "GatedRepo" || (matches!(status, 401 | 403) && !has_token) {
        bail!(
            "{repo} is gated or private: {} (HTTP {status})",
            if has_token {
                "your token has no access; accept its conditions on the model page"
            } else {
                "accept its conditions on the model page and set HF_TOKEN (or run `huggingface-cli login`)"
            }
        );
    }
    match status {
        401 | 403 => bail!("{what}: access denied with the token given (HTTP {status})"),
        404 => bail!("{what}: no such file on the hub"),
        _ => bail!("{what}: the hub answered HTTP {status}"),
    }
}

/// `W/"abc"` and `"abc"` -> `abc` (huggingface_hub's `_normalize_etag`).
pub fn normalize_etag(e: &str) -> String {
    e.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_string()
}

/// `bytes FIRST-LAST/TOTAL` -> (FIRST, TOTAL).
fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, _last) = range.split_once('-')?;
    Some((first.trim().parse().ok()?, total.trim().parse().ok()?))
}

/// Percent-encodes a path, keeping `/` (huggingface_hub's `quote(filename)`).
fn encode_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_read_as_huggingface_hub_reads_them() {
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag("\"abc\""), "abc");
        assert_eq!(parse_content_range("bytes 100-199/200"), Some((100, 200)));
        assert_eq!(parse_content_range("bytes */200"), None);
        assert_eq!(encode_path("a b/c+d.gguf"), "a%20b/c%2Bd.gguf");
        assert_eq!(origin("http://127.0.0.1:8/x/y"), "http://127.0.0.1:8");
    }
}
