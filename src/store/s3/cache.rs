//! A local cache of the manifests a run reads from a bucket, by digest. A manifest's content
//! never changes (its name is its sha256), so every run after the first reads from the bucket
//! only the manifests pushed since: the rest of a bucket run's GETs. Each entry is checked
//! against its digest when read (a damaged one is read from the bucket again), and it is used
//! only for a manifest the run's own listing shows in the bucket (a deleted one is missing, as
//! without a cache). `REGSWEEP_CACHE`: a folder, or `off`; by default
//! `$XDG_CACHE_HOME/regsweep/manifests` (`~/.cache/regsweep/manifests`). Safe to delete at any
//! time.

use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use crate::model::digest::Digest;

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
        Cache { dir }
    }

    fn path(&self, d: &Digest) -> Option<PathBuf> {
        let hex = d.hex();
        Some(self.dir.as_ref()?.join(&hex[..2]).join(hex))
    }

    /// A manifest's content, when cached and whole.
    pub fn get(&self, d: &Digest) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.path(d)?).ok()?;
        (Sha256::digest(&bytes).as_slice() == d.0).then_some(bytes)
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
}
