//! Models by name from the Hugging Face Hub, in the cache other tools share.
//!
//! `ORG/NAME[:QUANT|:FILE]` (`names`) picks files of a repository (`select`),
//! which are downloaded (`client`, `download`) into the standard cache
//! (`cache`, configured by the usual variables: `env`). Every command that
//! takes a model goes through [`resolve_model`]: a path stays a path; a name is
//! looked up in the cache and pulled when missing (unless `HF_HUB_OFFLINE`).

pub mod cache;
pub mod client;
pub mod download;
pub mod env;
pub mod names;
pub mod progress;
pub mod select;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

pub use cache::Cache;
pub use env::HubEnv;
pub use names::{ModelName, Tag};
pub use progress::Progress;
pub use select::Selection;

use client::Client;

/// The branch names resolve to.
const REVISION: &str = "main";

/// Turns a `-m` argument into a local path: an existing path as it is, else a
/// Hugging Face name resolved through the cache (pulled when missing). A GGUF
/// model gives its file (the first part of a split one); a safetensors model
/// its snapshot folder. Text that is neither comes back as a path, for the
/// loader to report as missing.
pub fn resolve_model(spec: &str, quiet: bool) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    match ModelName::parse(spec) {
        Some(name) => Hub::from_env()
            .resolve(&name, Progress::new(quiet))
            .with_context(|| format!("{spec} is not a file, and as a Hugging Face model")),
        None => Ok(path.to_path_buf()),
    }
}

/// As [`resolve_model`] for `-hf`/`--hf-repo`, which always names a repository.
pub fn resolve_repo(spec: &str, quiet: bool) -> Result<PathBuf> {
    let name = ModelName::parse_or_explain(spec)?;
    Hub::from_env().resolve(&name, Progress::new(quiet))
}

/// A model present in the cache.
#[derive(Debug)]
pub struct CachedModel {
    pub repo: String,
    pub commit: String,
    pub selection: Selection,
    /// The paths under `snapshots/COMMIT/`, in the selection's order.
    pub files: Vec<PathBuf>,
    /// What a loader opens: the first file, or the snapshot folder.
    pub path: PathBuf,
    /// Bytes received over the network by the pull that produced this (0 when cached).
    pub downloaded: u64,
}

impl CachedModel {
    pub fn size(&self) -> u64 {
        self.files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum()
    }
}

pub struct Hub {
    pub env: HubEnv,
    pub cache: Cache,
}

impl Hub {
    pub fn from_env() -> Hub {
        Hub::new(HubEnv::from_env())
    }

    pub fn new(env: HubEnv) -> Hub {
        let cache = Cache::new(env.cache.clone());
        Hub { env, cache }
    }

    /// The cached model, or a pull when it is missing and the network is allowed.
    pub fn resolve(&self, name: &ModelName, progress: Progress) -> Result<PathBuf> {
        if let Some(m) = self.find_cached(name) {
            tracing::info!("{name}: {} (cached)", m.path.display());
            return Ok(m.path);
        }
        if self.env.offline {
            bail!(
                "{name} is not in the cache {} and HF_HUB_OFFLINE is set: run `llama-wgpu pull {name}` while online",
                self.cache.root.display()
            );
        }
        Ok(self.pull(name, progress)?.path)
    }

    /// Finds `name` in the cache without the network: in the snapshot `main`
    /// points to first, then in the others. With no tag, a model already
    /// cached is preferred over downloading the default quantization.
    pub fn find_cached(&self, name: &ModelName) -> Option<CachedModel> {
        let repo = self.cache.repo(&name.repo);
        repo.snapshots().into_iter().find_map(|(commit, dir)| {
            let files = repo.snapshot_files(&dir);
            let sel = select::select(name, &files).ok()?;
            if let Selection::Safetensors { .. } = &sel {
                if !shards_complete(&dir, &files) {
                    return None;
                }
            }
            Some(self.cached(&name.repo, commit, sel, 0))
        })
    }

    fn cached(&self, repo: &str, commit: String, sel: Selection, downloaded: u64) -> CachedModel {
        let rc = self.cache.repo(repo);
        let files: Vec<PathBuf> = sel.files().iter().map(|f| rc.pointer(&commit, f)).collect();
        let path = match &sel {
            Selection::Gguf { .. } => files[0].clone(),
            Selection::Safetensors { .. } => rc.snapshot(&commit),
        };
        CachedModel {
            repo: repo.to_string(),
            commit,
            selection: sel,
            files,
            path,
            downloaded,
        }
    }

    /// Downloads what `name` needs from the hub's `main` (nothing when the
    /// cache already has it). Offline, the cached model or an error.
    pub fn pull(&self, name: &ModelName, progress: Progress) -> Result<CachedModel> {
        if self.env.offline {
            return self.find_cached(name).ok_or_else(|| {
                anyhow::anyhow!(
                    "{name} is not in the cache {} and HF_HUB_OFFLINE is set: pulling needs the network",
                    self.cache.root.display()
                )
            });
        }
        let client = Client::new(&self.env);
        let info = client.repo_info(&name.repo, REVISION)?;
        let files: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
        let sel = select::select(name, &files)?;
        let rc = self.cache.repo(&name.repo);
        let mut downloaded = 0;
        let mut commit = info.sha;
        for f in sel.files() {
            // Every file from the commit the listing came from, even if `main` moves meanwhile.
            let meta = client.file_meta(&name.repo, &commit, f)?;
            commit = meta.commit.clone();
            downloaded +=
                download::fetch_file(&client, &rc, &name.repo, f, &meta, &progress)?.downloaded;
        }
        rc.write_ref(REVISION, &commit)?;
        Ok(self.cached(&name.repo, commit, sel, downloaded))
    }

    /// Every model in the cache, repository by repository.
    pub fn list(&self) -> Result<Vec<CachedModel>> {
        let mut out = Vec::new();
        for (repo, rc) in self.cache.repos()? {
            for (commit, dir) in rc.snapshots() {
                let files = rc.snapshot_files(&dir);
                let models = select::gguf_models(&files);
                for m in models {
                    // Only complete split sets are models.
                    if m.files.iter().all(|f| files.contains(f)) {
                        let sel = Selection::Gguf {
                            files: m.files,
                            quant: m.quant,
                        };
                        out.push(self.cached(&repo, commit.clone(), sel, 0));
                    }
                }
                let bare = ModelName {
                    repo: repo.clone(),
                    tag: None,
                };
                if let Ok(sel @ Selection::Safetensors { .. }) = select::select(&bare, &files) {
                    if shards_complete(&dir, &files) {
                        out.push(self.cached(&repo, commit.clone(), sel, 0));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Removes a model from the cache: a whole repository, or with a tag just
    /// that model's files (and the blobs no other snapshot file links to).
    /// Returns the paths removed and the bytes freed.
    pub fn remove(&self, name: &ModelName) -> Result<(Vec<PathBuf>, u64)> {
        let rc = self.cache.repo(&name.repo);
        if !rc.dir.is_dir() {
            bail!(
                "{} is not in the cache {}",
                name.repo,
                self.cache.root.display()
            );
        }
        if name.tag.is_none() {
            let freed = dir_size(&rc.dir);
            std::fs::remove_dir_all(&rc.dir)
                .with_context(|| format!("cannot remove {}", rc.dir.display()))?;
            let _ = std::fs::remove_dir_all(rc.lock_dir());
            return Ok((vec![rc.dir.clone()], freed));
        }
        let mut removed = Vec::new();
        for (_, dir) in rc.snapshots() {
            let files = rc.snapshot_files(&dir);
            if let Ok(sel) = select::select(name, &files) {
                for f in sel.files() {
                    let p = dir.join(f);
                    if std::fs::symlink_metadata(&p).is_ok() {
                        std::fs::remove_file(&p)
                            .with_context(|| format!("cannot remove {}", p.display()))?;
                        removed.push(p);
                    }
                }
            }
        }
        if removed.is_empty() {
            bail!("{name} is not in the cache {}", self.cache.root.display());
        }
        // Blobs still linked from some snapshot stay.
        let mut linked = std::collections::HashSet::new();
        for (_, dir) in rc.snapshots() {
            for f in rc.snapshot_files(&dir) {
                if let Ok(p) = std::fs::canonicalize(dir.join(&f)) {
                    linked.insert(p);
                }
            }
        }
        let mut freed = 0;
        for entry in std::fs::read_dir(rc.dir.join("blobs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = entry.path();
            let canon = std::fs::canonicalize(&p).unwrap_or(p.clone());
            if !linked.contains(&canon) {
                freed += entry.metadata().map(|m| m.len()).unwrap_or(0);
                std::fs::remove_file(&p)
                    .with_context(|| format!("cannot remove {}", p.display()))?;
            }
        }
        Ok((removed, freed))
    }
}

/// A safetensors snapshot is usable only with every shard its index names.
fn shards_complete(dir: &Path, files: &[String]) -> bool {
    let Ok(index) = std::fs::read_to_string(dir.join("model.safetensors.index.json")) else {
        return true;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&index) else {
        return false;
    };
    v["weight_map"].as_object().is_some_and(|m| {
        m.values()
            .all(|s| s.as_str().is_some_and(|s| files.iter().any(|f| f == s)))
    })
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(m) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if m.is_dir() {
            total += dir_size(&e.path());
        } else if m.is_file() {
            total += m.len();
        }
    }
    total
}
