//! The Hugging Face cache layout, exactly as `huggingface_hub` writes it:
//!
//! ```text
//! HF_HUB_CACHE/
//!   models--ORG--NAME/
//!     blobs/ETAG                      file contents, named by the hub's ETag (sha256 for LFS files)
//!     blobs/ETAG.incomplete           a download in progress (resumed from its length)
//!     snapshots/COMMIT/PATH           relative symlink to ../../blobs/ETAG
//!     refs/main                       the commit `main` pointed to at the last download
//!   .locks/models--ORG--NAME/ETAG.lock
//! ```
//!
//! A file is visible under `snapshots/` only once its blob is complete and verified.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use super::names::repo_of_folder;

#[derive(Clone, Debug)]
pub struct Cache {
    pub root: PathBuf,
}

/// One repository's folder in the cache.
#[derive(Clone, Debug)]
pub struct RepoCache {
    pub dir: PathBuf,
    lock_dir: PathBuf,
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    pub fn repo(&self, repo: &str) -> RepoCache {
        let folder = super::names::repo_folder(repo);
        RepoCache {
            dir: self.root.join(&folder),
            lock_dir: self.root.join(".locks").join(folder),
        }
    }

    /// Every cached model repository, sorted by name.
    pub fn repos(&self) -> Result<Vec<(String, RepoCache)>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", self.root.display()))
            }
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(repo) = repo_of_folder(&name) {
                out.push((repo.clone(), self.repo(&repo)));
            }
        }
        out.sort_by_key(|a| a.0.to_lowercase());
        Ok(out)
    }
}

impl RepoCache {
    pub fn blob(&self, etag: &str) -> PathBuf {
        self.dir.join("blobs").join(etag)
    }

    pub fn incomplete(&self, etag: &str) -> PathBuf {
        self.dir.join("blobs").join(format!("{etag}.incomplete"))
    }

    pub fn lock(&self, etag: &str) -> PathBuf {
        self.lock_dir.join(format!("{etag}.lock"))
    }

    pub fn lock_dir(&self) -> &Path {
        &self.lock_dir
    }

    pub fn snapshot(&self, commit: &str) -> PathBuf {
        self.dir.join("snapshots").join(commit)
    }

    pub fn pointer(&self, commit: &str, file: &str) -> PathBuf {
        let mut p = self.snapshot(commit);
        p.extend(file.split('/'));
        p
    }

    /// The commit a ref (`main`) pointed to when last downloaded.
    pub fn read_ref(&self, revision: &str) -> Option<String> {
        let s = std::fs::read_to_string(self.dir.join("refs").join(revision)).ok()?;
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_string())
    }

    /// Records the commit of a ref, atomically (a reader sees the old or the new commit).
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<()> {
        let refs = self.dir.join("refs");
        std::fs::create_dir_all(&refs)
            .with_context(|| format!("cannot create {}", refs.display()))?;
        let tmp = refs.join(format!(".{revision}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, commit).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, refs.join(revision))
            .with_context(|| format!("cannot write refs/{revision} in {}", self.dir.display()))
    }

    /// Snapshots to look in for a cached model: the one `main` points to first,
    /// then the others, newest first.
    pub fn snapshots(&self) -> Vec<(String, PathBuf)> {
        let mut all: Vec<(String, PathBuf, std::time::SystemTime)> =
            std::fs::read_dir(self.dir.join("snapshots"))
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| {
                    let t = e
                        .metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH);
                    (e.file_name().to_string_lossy().into_owned(), e.path(), t)
                })
                .collect();
        all.sort_by_key(|s| std::cmp::Reverse(s.2));
        if let Some(main) = self.read_ref("main") {
            if let Some(i) = all.iter().position(|s| s.0 == main) {
                let m = all.remove(i);
                all.insert(0, m);
            }
        }
        all.into_iter().map(|(c, p, _)| (c, p)).collect()
    }

    /// Files in a snapshot whose content is there (dangling links left out),
    /// as repository paths with `/`.
    pub fn snapshot_files(&self, snapshot: &Path) -> Vec<String> {
        let mut out = Vec::new();
        walk(snapshot, "", &mut out);
        out.sort();
        out
    }
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        // `metadata` follows the link: a dangling one is not a cached file.
        match std::fs::metadata(e.path()) {
            Ok(m) if m.is_dir() => walk(&e.path(), &rel, out),
            Ok(_) => out.push(rel),
            Err(_) => {}
        }
    }
}

/// Creates `pointer` as a relative symlink to `blob` (huggingface_hub's
/// `_create_symlink`), replacing whatever is there; where symlinks are not
/// available (Windows without developer mode) the blob is copied, as
/// huggingface_hub then does.
pub fn link_pointer(blob: &Path, pointer: &Path) -> Result<()> {
    let parent = pointer.parent().expect("a pointer is inside a snapshot");
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let target = relative(blob, parent);
    // Link beside the final name then rename over it: a reader never sees a
    // missing or half-made pointer.
    let tmp = parent.join(format!(
        ".{}.{}.tmp",
        pointer.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    #[cfg(unix)]
    let made = std::os::unix::fs::symlink(&target, &tmp);
    #[cfg(windows)]
    let made = std::os::windows::fs::symlink_file(&target, &tmp)
        .or_else(|_| std::fs::copy(blob, &tmp).map(|_| ()));
    made.with_context(|| format!("cannot link {}", pointer.display()))?;
    std::fs::rename(&tmp, pointer).with_context(|| format!("cannot create {}", pointer.display()))
}

/// `to` relative to the directory `from` (both inside the same cache folder).
fn relative(to: &Path, from: &Path) -> PathBuf {
    let to: Vec<_> = to.components().collect();
    let from: Vec<_> = from.components().collect();
    let common = to.iter().zip(&from).take_while(|(a, b)| a == b).count();
    let mut p = PathBuf::new();
    for _ in common..from.len() {
        p.push("..");
    }
    for c in &to[common..] {
        p.push(c);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_huggingface_hub() {
        let c = Cache::new("/c");
        let r = c.repo("org/name");
        assert_eq!(
            r.blob("abc"),
            PathBuf::from("/c/models--org--name/blobs/abc")
        );
        assert_eq!(
            r.incomplete("abc"),
            PathBuf::from("/c/models--org--name/blobs/abc.incomplete")
        );
        assert_eq!(
            r.lock("abc"),
            PathBuf::from("/c/.locks/models--org--name/abc.lock")
        );
        assert_eq!(
            r.pointer("c0", "sub/f.gguf"),
            PathBuf::from("/c/models--org--name/snapshots/c0/sub/f.gguf")
        );
        assert_eq!(
            relative(
                Path::new("/c/models--o--n/blobs/e"),
                Path::new("/c/models--o--n/snapshots/c0/sub")
            ),
            PathBuf::from("../../../blobs/e")
        );
    }
}
