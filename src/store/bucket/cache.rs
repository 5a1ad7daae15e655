//! A local cache of the manifests a run reads from a bucket, by digest. A manifest's content
//! never changes (its name is its sha256), so every run after the first reads from the bucket
//! only the manifests pushed since: the rest of a bucket run's GETs. Each entry is checked
//! against its digest when read (a damaged one is read from the bucket again), and it is used
//! only for a manifest the run's own listing shows in the bucket (a deleted one is missing, as
//! without a cache). `REGSWEEP_CACHE`: a folder, or `off`; by default
//! `$XDG_CACHE_HOME/regsweep/manifests` (`~/.cache/regsweep/manifests`). Safe to delete at any
//! time. Bounded: an entry no run has used for [`UNUSED`] is removed (looked for at most once a
//! day, when a run opens the cache), so it holds the manifests of the stores in use, not every
//! manifest ever read.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};

use crate::model::digest::Digest;

/// How long an entry no run used stays.
pub const UNUSED: Duration = Duration::from_secs(30 * 86_400);
/// How often a run looks for unused entries.
const EVICTION_EVERY: Duration = Duration::from_secs(86_400);
/// The file whose mtime says when that was done last.
const EVICTED: &str = ".last-eviction";

/// The cache, or none.
#[derive(Debug, Default)]
pub struct Cache {
    dir: Option<PathBuf>,
}

impl Cache {
    /// Where `REGSWEEP_CACHE` (or the default) says, read through `env`.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Cache {
        let dir = match env("REGSWEEP_CACHE").filter(|v| !v.is_empty()) {
            Some(v) if v == "off" => None,
            Some(v) => Some(PathBuf::from(v)),
            None => env("XDG_CACHE_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|c| c.join("regsweep").join("manifests")),
        };
        let cache = Cache { dir };
        cache.evict_unused(SystemTime::now());
        cache
    }

    /// Removes the entries unused for [`UNUSED`], at most once every [`EVICTION_EVERY`]. A
    /// cache that cannot be cleaned is no error.
    fn evict_unused(&self, now: SystemTime) {
        let Some(dir) = &self.dir else { return };
        let marker = dir.join(EVICTED);
        let age =
            |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok().and_then(|t| now.duration_since(t).ok());
        if std::fs::metadata(&marker).is_ok() && age(&marker).is_none_or(|a| a < EVICTION_EVERY) {
            return;
        }
        let Ok(prefixes) = std::fs::read_dir(dir) else { return };
        // Only what the cache writes: `<xx>/<64 hex beginning with xx>` (and its `.tmp<pid>`
        // files), never another file of a folder named as the cache (`REGSWEEP_CACHE=$HOME`).
        let hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        for prefix in prefixes.flatten() {
            let p = prefix.file_name().to_string_lossy().into_owned();
            if p.len() != 2 || !hex(&p) {
                continue;
            }
            for entry in std::fs::read_dir(prefix.path()).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let digest = name.split_once(".tmp").map_or(name.as_str(), |(d, _)| d);
                let ours = digest.len() == 64 && hex(digest) && digest.starts_with(&p);
                if ours && age(&entry.path()).is_some_and(|a| a > UNUSED) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let _ = std::fs::File::create(&marker).and_then(|f| f.set_modified(now));
    }

    fn path(&self, d: &Digest) -> Option<PathBuf> {
        let hex = d.hex();
        Some(self.dir.as_ref()?.join(&hex[..2]).join(hex))
    }

    /// A manifest's content, when cached and whole; the entry counts as used now.
    pub fn get(&self, d: &Digest) -> Option<Vec<u8>> {
        let path = self.path(d)?;
        let bytes = std::fs::read(&path).ok()?;
        if Sha256::digest(&bytes).as_slice() != d.0 {
            return None;
        }
        let _ = touch(&path, SystemTime::now());
        Some(bytes)
    }

    /// Keeps a manifest's content (written aside, then renamed: never half an entry). A cache
    /// that cannot be written is no error.
    pub fn put(&self, d: &Digest, bytes: &[u8]) {
        let Some(path) = self.path(d) else { return };
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let written = path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::write(&tmp, bytes));
        if written.and_then(|()| std::fs::rename(&tmp, &path)).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// Sets a file's mtime: when an entry was last used.
fn touch(path: &Path, t: SystemTime) -> std::io::Result<()> {
    std::fs::File::options().append(true).open(path)?.set_modified(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_checked_against_their_digest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap().to_string();
        let cache = Cache::from_env(&|k| (k == "REGSWEEP_CACHE").then(|| root.clone()));
        let content = b"{\"schemaVersion\":2}";
        let d = Digest(Sha256::digest(content).into());
        assert_eq!(cache.get(&d), None);
        cache.put(&d, content);
        assert_eq!(cache.get(&d).as_deref(), Some(&content[..]));
        std::fs::write(cache.path(&d).unwrap(), b"tampered").unwrap();
        assert_eq!(cache.get(&d), None, "a damaged entry is no entry");
        assert!(Cache::from_env(&|k| (k == "REGSWEEP_CACHE").then(|| "off".into())).dir.is_none());
        let default = Cache::from_env(&|k| (k == "HOME").then(|| "/home/op".into()));
        assert_eq!(default.dir, Some(PathBuf::from("/home/op/.cache/regsweep/manifests")));
    }

    #[test]
    fn entries_no_run_used_for_a_month_go() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap().to_string();
        let cache = Cache::from_env(&|k| (k == "REGSWEEP_CACHE").then(|| root.clone()));
        let (old, used, new) = (b"{\"a\":1}".as_slice(), b"{\"b\":2}".as_slice(), b"{\"c\":3}".as_slice());
        let digest = |b: &[u8]| Digest(Sha256::digest(b).into());
        for b in [old, used, new] {
            cache.put(&digest(b), b);
        }
        let long_ago = SystemTime::now() - UNUSED - Duration::from_secs(86_400);
        for b in [old, used] {
            touch(&cache.path(&digest(b)).unwrap(), long_ago).unwrap();
        }
        assert!(cache.get(&digest(used)).is_some(), "a hit counts as a use");
        // Looked for at most once a day: not now (the cache was opened a moment ago)...
        cache.evict_unused(SystemTime::now());
        assert!(cache.get(&digest(old)).is_some());
        touch(&cache.path(&digest(old)).unwrap(), long_ago).unwrap();
        // ...but a day later.
        cache.evict_unused(SystemTime::now() + EVICTION_EVERY + Duration::from_secs(1));
        assert!(cache.get(&digest(old)).is_none(), "unused for a month: gone");
        assert!(cache.get(&digest(used)).is_some() && cache.get(&digest(new)).is_some());
    }

    #[test]
    fn eviction_removes_only_the_caches_own_files() {
        // REGSWEEP_CACHE=$HOME, say: files two levels down that are no entry stay, however old.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap().to_string();
        let long_ago = SystemTime::now() - UNUSED - Duration::from_secs(86_400);
        let entry = "ab".to_string() + &"0".repeat(62);
        let files = [
            "Documents/old.pdf",
            "ab/notes.txt",
            "ab/cd00000000000000000000000000000000000000000000000000000000000000",
        ];
        for f in files.iter().copied().chain([format!("ab/{entry}").as_str(), format!("ab/{entry}.tmp42").as_str()]) {
            let path = dir.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"x").unwrap();
            touch(&path, long_ago).unwrap();
        }
        Cache::from_env(&|k| (k == "REGSWEEP_CACHE").then(|| root.clone()));
        for f in files {
            assert!(dir.path().join(f).exists(), "{f} deleted");
        }
        assert!(!dir.path().join("ab").join(&entry).exists(), "an old entry goes");
        assert!(!dir.path().join("ab").join(format!("{entry}.tmp42")).exists(), "and a leftover of one");
    }
}
