//! One file into the cache: locked, resumed, verified, then made visible.
//!
//! The order is huggingface_hub's (`_hf_hub_download_to_cache_dir`): the bytes
//! go to `blobs/ETAG.incomplete` under `.locks/.../ETAG.lock`; once complete and
//! verified against the ETag, the file is renamed to `blobs/ETAG` and only then
//! linked from `snapshots/COMMIT/FILE`. An interrupted download leaves only the
//! `.incomplete` file, which the next attempt (ours or Python's) resumes.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use sha2::Digest as _;

use super::cache::{link_pointer, RepoCache};
use super::client::{Client, FileMeta};
use super::progress::Progress;

/// Attempts per file: a dropped connection is resumed from where it stopped.
const ATTEMPTS: usize = 3;

/// A file's place in the cache after [`fetch_file`].
#[derive(Debug)]
pub struct Fetched {
    pub pointer: PathBuf,
    /// Bytes received over the network for this file (0 when already cached).
    pub downloaded: u64,
}

/// Makes `file` of `repo` at `meta.commit` present in the cache, downloading
/// what is missing.
pub fn fetch_file(
    client: &Client,
    cache: &RepoCache,
    repo: &str,
    file: &str,
    meta: &FileMeta,
    progress: &Progress,
) -> Result<Fetched> {
    let pointer = cache.pointer(&meta.commit, file);
    let blob = cache.blob(&meta.etag);
    if pointer.is_file() && blob.is_file() {
        return Ok(Fetched {
            pointer,
            downloaded: 0,
        });
    }
    let lock_path = cache.lock(&meta.etag);
    std::fs::create_dir_all(cache.lock_dir())
        .with_context(|| format!("cannot create {}", cache.lock_dir().display()))?;
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open the lock {}", lock_path.display()))?;
    let mut lock = fd_lock::RwLock::new(lock_file);
    // Another process downloading the same blob: wait for it, then use its file.
    let _guard = lock
        .write()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    let mut downloaded = 0;
    if !blob.is_file() {
        let blobs = blob.parent().expect("blobs/ETAG has a parent");
        std::fs::create_dir_all(blobs)
            .with_context(|| format!("cannot create {}", blobs.display()))?;
        downloaded = download_blob(client, cache, repo, file, meta, progress)?;
    }
    link_pointer(&blob, &pointer)?;
    Ok(Fetched {
        pointer,
        downloaded,
    })
}

fn download_blob(
    client: &Client,
    cache: &RepoCache,
    repo: &str,
    file: &str,
    meta: &FileMeta,
    progress: &Progress,
) -> Result<u64> {
    let partial = cache.incomplete(&meta.etag);
    let blob = cache.blob(&meta.etag);
    let mut out = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    let mut have = out.seek(SeekFrom::End(0))?;
    if have > meta.size {
        // Not a prefix of this file: start over.
        out.set_len(0)?;
        have = 0;
    }
    if have > 0 {
        tracing::info!("resuming {file} from byte {have} of {}", meta.size);
    }
    let bar = progress.file(file, meta.size, have);
    let mut received = 0;
    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        match receive(client, repo, file, meta, &mut out, &mut have, &bar) {
            Ok(n) => {
                received += n;
                break Ok(());
            }
            Err(Receive::Network(e, n)) if attempt < ATTEMPTS => {
                received += n;
                tracing::info!("{file}: {e:#}; resuming from byte {have}");
            }
            Err(Receive::Network(e, n)) => {
                received += n;
                break Err(e.context(format!(
                    "download of {repo}/{file} interrupted at {have} of {} bytes (run the command again to resume)",
                    meta.size
                )));
            }
            Err(Receive::Fatal(e)) => break Err(e),
        }
    };
    bar.finish();
    if let Err(e) = result {
        // A full disk or a refusal will not get better by resuming: free the space.
        if is_disk_full(&e) {
            drop(out);
            let _ = std::fs::remove_file(&partial);
        }
        return Err(e);
    }
    out.sync_all()
        .with_context(|| format!("cannot write {}", partial.display()))?;
    if let Err(e) = verify(&mut out, meta) {
        drop(out);
        let _ = std::fs::remove_file(&partial);
        return Err(e.context(format!("{repo}/{file}: the download was discarded")));
    }
    drop(out);
    std::fs::rename(&partial, &blob)
        .with_context(|| format!("cannot move the download to {}", blob.display()))?;
    Ok(received)
}

enum Receive {
    /// Worth resuming: the connection failed or was cut. Carries the bytes received.
    Network(anyhow::Error, u64),
    Fatal(anyhow::Error),
}

/// One GET from `have` to the end of the file, appended to `out`.
fn receive(
    client: &Client,
    repo: &str,
    file: &str,
    meta: &FileMeta,
    out: &mut File,
    have: &mut u64,
    bar: &super::progress::FileBar,
) -> std::result::Result<u64, Receive> {
    if *have == meta.size {
        return Ok(0);
    }
    let mut dl = client
        .download(repo, file, meta, *have)
        .map_err(|e| classify(e, 0))?;
    if dl.start != *have {
        // The server sent the whole file (or another range): write from there.
        out.set_len(dl.start)
            .map_err(|e| Receive::Fatal(e.into()))?;
        out.seek(SeekFrom::Start(dl.start))
            .map_err(|e| Receive::Fatal(e.into()))?;
        *have = dl.start;
        bar.set(*have);
    }
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    while *have < dl.total {
        let n = match dl.reader.read(&mut buf) {
            Ok(0) => {
                return Err(Receive::Network(
                    anyhow::anyhow!("the connection closed early"),
                    received,
                ))
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Receive::Network(e.into(), received)),
        };
        // More than the file's size: the server is wrong, not the network.
        let n = n.min((dl.total - *have) as usize);
        out.write_all(&buf[..n]).map_err(|e| {
            Receive::Fatal(
                anyhow::Error::new(e).context(format!("cannot write {file} to the cache")),
            )
        })?;
        *have += n as u64;
        received += n as u64;
        bar.set(*have);
    }
    Ok(received)
}

fn classify(e: anyhow::Error, received: u64) -> Receive {
    if e.is::<super::client::Unreachable>() {
        Receive::Network(e, received)
    } else {
        Receive::Fatal(e)
    }
}

fn is_disk_full(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::StorageFull)
    })
}

/// Checks size and content against the hub's ETag: the sha256 for LFS files
/// (64 hex digits), the git blob id (sha1 of `blob LEN\0` + bytes) for the
/// small files git stores itself (40 hex digits).
fn verify(out: &mut File, meta: &FileMeta) -> Result<()> {
    let len = out.metadata()?.len();
    if len != meta.size {
        bail!(
            "size mismatch: {len} bytes received, the hub announced {}",
            meta.size
        );
    }
    let etag = meta.etag.to_ascii_lowercase();
    let is_hex = |n: usize| etag.len() == n && etag.bytes().all(|b| b.is_ascii_hexdigit());
    out.seek(SeekFrom::Start(0))?;
    let (kind, got) = if is_hex(64) {
        let mut h = sha2::Sha256::new();
        hash_file(out, |b| h.update(b))?;
        ("sha256", hex(&h.finalize()))
    } else if is_hex(40) {
        let mut h = sha1::Sha1::new();
        h.update(format!("blob {len}\0").as_bytes());
        hash_file(out, |b| h.update(b))?;
        ("git blob id", hex(&h.finalize()))
    } else {
        tracing::warn!(
            "ETag {} is neither a sha256 nor a git blob id: only the size was checked",
            meta.etag
        );
        return Ok(());
    };
    if got != etag {
        bail!("checksum mismatch: {kind} {got}, the hub announced {etag}");
    }
    Ok(())
}

fn hash_file(f: &mut File, mut update: impl FnMut(&[u8])) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        update(&buf[..n]);
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
