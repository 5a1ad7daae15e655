//! The registry's blob-descriptor cache (docs/DESIGN.md, "The registry's blob cache";
//! ../shared/SPEC.md section 9): which one the registry uses, read from its config.yml
//! (`storage.cache.blobdescriptor` and `redis:`, 2.8's redigo keys or 3.x's go-redis ones) or
//! given as a URL, and the eviction of exactly the entries of what a run deleted from a redis
//! cache, so that the registry answers from storage for them (distribution#1803: a stale entry
//! makes a re-pushed layer be skipped and the image it belongs to pull broken).
//!
//! Keys (identical in 2.8.3 and 3.1.1, `registry/storage/cache/redis/redis.go`): `blobs::<d>`, the
//! global descriptor (a hash); `repository::<name>::blobs`, a set of digests, and
//! `repository::<name>::blobs::<d>`, a hash. A deleted blob (manifests included) loses its global
//! key; a deleted revision or layer link its repository's set member and hash.

mod config;
mod redis_evict;

use std::path::Path;

use anyhow::Result;

pub use config::{Cache, Target, from_config, from_url};
pub use redis_evict::RedisEvictor;

use crate::core::report::{CacheKind, CacheReport, Report};
use crate::model::digest::Digest;
use crate::model::error::{ErrorKind, RunError};
use crate::store::stage::{Evict, NoEvict};

/// The global key of a blob.
pub fn blob_key(d: &Digest) -> String {
    format!("blobs::{d}")
}

/// A repository's set of blob digests.
pub fn repo_set_key(repo: &str) -> String {
    format!("repository::{repo}::blobs")
}

/// A repository's hash of one blob.
pub fn repo_blob_key(repo: &str, d: &Digest) -> String {
    format!("repository::{repo}::blobs::{d}")
}

/// The cache a run keeps true: what the registry uses, and for redis the evictor, connected
/// (its first check: a PING, before anything is deleted).
pub enum Keeper {
    /// A redis cache, reached.
    Redis(Box<RedisEvictor>),
    /// In memory (or no cache, or not known): nothing to evict from outside.
    Other(CacheKind),
}

impl Keeper {
    /// Connects to the cache `cache` names (redis: connects and sends PING, with AUTH and
    /// SELECT as configured; nothing is written). An error names the address and where it came
    /// from: the run must not begin.
    pub fn open(cache: Cache) -> Result<Keeper> {
        Ok(match cache {
            Cache::Redis(target) => Keeper::Redis(Box::new(RedisEvictor::connect(*target)?)),
            Cache::InMemory => Keeper::Other(CacheKind::Inmemory),
            Cache::None => Keeper::Other(CacheKind::None),
            Cache::Unknown => Keeper::Other(CacheKind::Unknown),
        })
    }

    /// What the execution tells what each stage removed.
    pub fn evict(&self) -> &dyn Evict {
        match self {
            Keeper::Redis(r) => r.as_ref(),
            Keeper::Other(_) => &NoEvict,
        }
    }

    /// Online mode, after the registry's collector (what it deleted is not known one by one):
    /// every key of the registry's cache goes, then the report's part as [`Keeper::finish`].
    pub fn clear_all(&self, report: &mut Report) {
        if let (Keeper::Redis(r), false) = (self, report.dry_run) {
            r.clear_all();
        }
        self.finish(report);
    }

    /// After the run: the last eviction (the whole run's keys once more), then the report's
    /// `cache`, the error where keys may be stale, and whether a restart is still needed.
    pub fn finish(&self, report: &mut Report) {
        let kind = match self {
            Keeper::Redis(_) => CacheKind::Redis,
            Keeper::Other(k) => *k,
        };
        let mut cache = CacheReport { kind, ..CacheReport::default() };
        if let Keeper::Redis(r) = self {
            cache.address = Some(r.target().shown.clone());
            if !report.dry_run {
                r.finish();
                r.fill(&mut cache);
            }
        }
        if !cache.stale_keys.is_empty() {
            report.errors.push(RunError::at(
                ErrorKind::CacheStale,
                cache.address.clone().unwrap_or_default(),
                format!(
                    "the registry's redis cache at {} could not be evicted ({}): {} keys may be stale (listed in \
                     the JSON report's cache.stale_keys); the storage deletions stand. Delete those keys once \
                     redis answers, or FLUSHDB its database (a restart of the registry does not clear redis)",
                    cache.address.as_deref().unwrap_or(""),
                    cache.last_error.as_deref().unwrap_or("no answer"),
                    cache.stale_keys.len()
                ),
            ));
        }
        // A restart is needed where a cache may still list a deleted blob (what breaks a push):
        // not after a redis cache evicted whole, nor without a cache.
        report.restart_required = !report.dry_run
            && match kind {
                CacheKind::Redis => !cache.stale_keys.is_empty(),
                CacheKind::None => false,
                CacheKind::Inmemory | CacheKind::Unknown => report.blobs_deleted > 0,
            };
        report.cache = Some(cache);
    }
}

/// The cache of the registry whose config is `config` (with the registry's environment
/// overrides), or the one `url` names (which wins); `Unknown` with neither.
pub fn cache_of(
    config: Option<&Path>,
    url: Option<&str>,
    ca_cert: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Cache> {
    match (url, config) {
        (Some(url), _) => Ok(Cache::Redis(Box::new(from_url(url, ca_cert)?))),
        (None, Some(path)) => from_config(path, env),
        (None, None) => Ok(Cache::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_deleting_blobs() -> Report {
        let mut r = Report::new(crate::core::report::Command::Prune, "/r", Default::default(), false);
        r.blobs_deleted = 3;
        r
    }

    #[test]
    fn a_restart_only_where_a_cache_may_still_list_a_deleted_blob() {
        for (kind, restart) in [(CacheKind::Inmemory, true), (CacheKind::Unknown, true), (CacheKind::None, false)] {
            let mut report = report_deleting_blobs();
            Keeper::Other(kind).finish(&mut report);
            assert_eq!(report.restart_required, restart, "{kind:?}");
            assert_eq!(report.cache.as_ref().unwrap().kind, kind);
        }
        let mut report = report_deleting_blobs();
        Keeper::Other(CacheKind::Inmemory).finish(&mut report);
        let text = report.to_string();
        assert!(text.contains("blob cache: in memory") && text.contains("--stop-container"), "{text}");
        assert!(report.errors.is_empty());
    }

    #[test]
    fn keys_are_the_registrys() {
        let d = Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap();
        assert_eq!(blob_key(&d), format!("blobs::sha256:{}", "ab".repeat(32)));
        assert_eq!(repo_set_key("library/a"), "repository::library/a::blobs");
        assert_eq!(repo_blob_key("a", &d), format!("repository::a::blobs::sha256:{}", "ab".repeat(32)));
    }
}
