//! A bucket in memory: object_store's `InMemory` under the generic bucket backend, for the fast
//! tier of the tests (in process, no server). Everything a run does on a bucket goes through the
//! same code as on S3 but the provider's part: listings are paged (1,000 keys a page, as S3's),
//! deletions are batched (1,000 keys, each key answered on its own, as DeleteObjects), ETags are
//! not MD5s (as on Azure: links are read). [`Faults`] lets a test break it where a server
//! breaks: the process gone after the K-th deletion, keys a batch fails to delete (or deletes
//! and says it failed), keys older
//! than they are, a write racing a deletion.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::list::{PaginatedListOptions, PaginatedListResult, PaginatedListStore};
use object_store::memory::InMemory;
use object_store::path::Path as Key;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use crate::store::bucket::client::{Batched, Bucket, Parts, Provider, Requests};

/// Keys a listing page holds, and a batched deletion takes.
const PAGE: usize = 1000;

/// A test's hand on the bucket: what breaks, and when.
#[derive(Default)]
pub struct Faults {
    /// After this many keys deleted, every request fails, as if the process had died there
    /// (0: never).
    pub die_after_deletes: AtomicU64,
    deleted: AtomicU64,
    dead: AtomicBool,
    /// Keys (relative to the bucket's top) a batched deletion fails to delete, with how many
    /// more times, and the error code it names.
    pub batch_errors: Mutex<BTreeMap<String, (u32, String)>>,
    /// Keys (relative to the bucket's top) a batched deletion deletes and yet names as failed,
    /// with the error code it names (an answer that lies, or a retry that met the same error).
    pub batch_lies: Mutex<BTreeMap<String, String>>,
    /// The times of keys copied from files (their mtimes), in place of the time of the copy.
    pub times: Mutex<BTreeMap<String, SystemTime>>,
    /// Keys under these prefixes look older by so much (a stale lock, a link written long ago).
    pub aged: Mutex<Vec<(String, Duration)>>,
    /// Called with each key about to be deleted (a push racing a stage); it may write to the
    /// bucket through [`Memory::put`].
    #[allow(clippy::type_complexity)]
    pub before_delete: Mutex<Option<Box<dyn FnMut(&str) + Send>>>,
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faults").field("deleted", &self.deleted).field("dead", &self.dead).finish_non_exhaustive()
    }
}

impl Faults {
    /// Brings the process back: requests work again, and no more deaths are planned.
    pub fn revive(&self) {
        self.die_after_deletes.store(0, Ordering::SeqCst);
        self.dead.store(false, Ordering::SeqCst);
    }

    /// How many keys were deleted so far.
    pub fn deleted(&self) -> u64 {
        self.deleted.load(Ordering::SeqCst)
    }

    fn alive(&self) -> object_store::Result<()> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(object_store::Error::Generic { store: "memory", source: "the process is gone".into() });
        }
        Ok(())
    }

    /// Counts one deletion; the one past the limit dies first.
    fn deleting(&self, key: &str) -> object_store::Result<()> {
        self.alive()?;
        let limit = self.die_after_deletes.load(Ordering::SeqCst);
        if limit > 0 && self.deleted.load(Ordering::SeqCst) >= limit {
            self.dead.store(true, Ordering::SeqCst);
            return self.alive();
        }
        if let Some(f) = self.before_delete.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            f(key);
        }
        self.deleted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// A key written or deleted: its copied time no longer counts.
    fn forget(&self, key: &str) {
        self.times.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    fn age(&self, mut m: ObjectMeta) -> ObjectMeta {
        if let Some(t) = self.times.lock().unwrap_or_else(|e| e.into_inner()).get(m.location.as_ref()) {
            m.last_modified = (*t).into();
        }
        let aged = self.aged.lock().unwrap_or_else(|e| e.into_inner());
        for (prefix, by) in aged.iter() {
            if m.location.as_ref().starts_with(prefix.as_str()) {
                m.last_modified -= chrono::Duration::from_std(*by).unwrap_or_default();
            }
        }
        m
    }
}

/// A bucket in memory, with the faults a test sets.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    inner: Arc<InMemory>,
    pub faults: Arc<Faults>,
}

impl Memory {
    pub fn new() -> Memory {
        Memory::default()
    }

    /// The bucket, for a store under `root` (the registry's `rootdirectory`, "" for none).
    pub fn bucket(&self, root: &str) -> Result<Bucket> {
        let store = Arc::new(Faulty { inner: self.inner.clone(), faults: self.faults.clone() });
        let shown = if root.is_empty() { "memory://".to_string() } else { format!("memory://{root}") };
        Bucket::new(Parts {
            store: store.clone(),
            provider: Arc::new(Batches(store)),
            root: root.to_string(),
            shown,
            requests: Arc::new(Requests::default()),
        })
    }

    /// Copies a store on disk (its `rootdirectory`) under `root`, file for file, each key with
    /// its file's mtime: what the registry's s3 driver would have written. Returns how many keys.
    pub fn copy_from(&self, dir: &Path, root: &str) -> Result<usize> {
        let mut n = 0;
        for e in walkdir::WalkDir::new(dir).into_iter().filter_map(|e| e.ok()).filter(|e| e.file_type().is_file()) {
            let rel = e.path().strip_prefix(dir).ok().and_then(|r| r.to_str()).context("a path that is no key")?;
            let key = if root.is_empty() { rel.to_string() } else { format!("{root}/{rel}") };
            let bytes = std::fs::read(e.path()).with_context(|| format!("cannot read {}", e.path().display()))?;
            self.put(&key, bytes);
            let mtime = e.metadata()?.modified()?;
            self.faults.times.lock().unwrap_or_else(|e| e.into_inner()).insert(key, mtime);
            n += 1;
        }
        Ok(n)
    }

    /// Writes a key (relative to the bucket's top) behind the run's back, as a push does: it
    /// takes the time of now.
    pub fn put(&self, key: &str, bytes: Vec<u8>) {
        if let Ok(k) = Key::parse(key) {
            self.faults.forget(key);
            let _ = futures::executor::block_on(self.inner.put(&k, PutPayload::from(bytes)));
        }
    }

    /// Every key and its content, sorted.
    pub fn keys(&self) -> Vec<String> {
        let found: Vec<ObjectMeta> =
            futures::executor::block_on(self.inner.list(None).try_collect()).unwrap_or_default();
        let mut keys: Vec<String> = found.into_iter().map(|m| m.location.to_string()).collect();
        keys.sort();
        keys
    }

    /// The content of a key, if there is one.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let k = Key::parse(key).ok()?;
        let r = futures::executor::block_on(self.inner.get(&k)).ok()?;
        futures::executor::block_on(r.bytes()).ok().map(|b| b.to_vec())
    }
}

/// `InMemory` with faults.
#[derive(Debug)]
struct Faulty {
    inner: Arc<InMemory>,
    faults: Arc<Faults>,
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("memory")
    }
}

#[async_trait::async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(&self, location: &Key, payload: PutPayload, opts: PutOptions) -> object_store::Result<PutResult> {
        self.faults.alive()?;
        let r = self.inner.put_opts(location, payload, opts).await?;
        self.faults.forget(location.as_ref());
        Ok(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Key,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.faults.alive()?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Key, options: GetOptions) -> object_store::Result<GetResult> {
        self.faults.alive()?;
        let mut r = self.inner.get_opts(location, options).await?;
        r.meta = self.faults.age(r.meta);
        Ok(r)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Key>>,
    ) -> BoxStream<'static, object_store::Result<Key>> {
        let (inner, faults) = (self.inner.clone(), self.faults.clone());
        locations
            .then(move |k| {
                let (inner, faults) = (inner.clone(), faults.clone());
                async move {
                    let k = k?;
                    faults.deleting(k.as_ref())?;
                    inner.delete(&k).await?;
                    faults.forget(k.as_ref());
                    Ok(k)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Key>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        if let Err(e) = self.faults.alive() {
            return futures::stream::once(async { Err(e) }).boxed();
        }
        let faults = self.faults.clone();
        self.inner.list(prefix).map_ok(move |m| faults.age(m)).boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Key>) -> object_store::Result<ListResult> {
        self.faults.alive()?;
        let mut r = self.inner.list_with_delimiter(prefix).await?;
        r.objects = r.objects.into_iter().map(|m| self.faults.age(m)).collect();
        Ok(r)
    }

    async fn copy_opts(&self, from: &Key, to: &Key, options: CopyOptions) -> object_store::Result<()> {
        self.faults.alive()?;
        self.inner.copy_opts(from, to, options).await
    }
}

/// Listed a page at a time, as S3 lists: sorted keys after the offset (or the last page's
/// last key), 1,000 a page; with a delimiter, one page.
#[async_trait::async_trait]
impl PaginatedListStore for Faulty {
    async fn list_paginated(
        &self,
        prefix: Option<&str>,
        opts: PaginatedListOptions,
    ) -> object_store::Result<PaginatedListResult> {
        // The folder the prefix is in; its keys then filtered by the prefix as a string.
        let raw = prefix.unwrap_or_default().to_string();
        let folder = match raw.rsplit_once('/').map(|(f, _)| f).filter(|f| !f.is_empty()) {
            Some(p) => Some(Key::parse(p)?),
            None => None,
        };
        if opts.delimiter.is_some() {
            let result = self.list_with_delimiter(folder.as_ref()).await?;
            return Ok(PaginatedListResult { result, page_token: None });
        }
        let after = opts.page_token.or(opts.offset);
        let max = opts.max_keys.unwrap_or(PAGE);
        let listed = match after {
            Some(a) => self.list_with_offset(folder.as_ref(), &Key::parse(a)?),
            None => self.list(folder.as_ref()),
        };
        let objects: Vec<ObjectMeta> = listed
            .try_filter(|m| futures::future::ready(m.location.as_ref().starts_with(raw.as_str())))
            .take(max)
            .try_collect()
            .await?;
        let page_token = (objects.len() == max).then(|| objects.last().map(|m| m.location.to_string())).flatten();
        let result = ListResult { common_prefixes: Vec::new(), objects, extensions: Default::default() };
        Ok(PaginatedListResult { result, page_token })
    }
}

/// Batched deletion in memory: each key deleted on its own, answered on its own, as
/// DeleteObjects answers; the keys [`Faults::batch_errors`] names fail.
struct Batches(Arc<Faulty>);

#[async_trait::async_trait]
impl Provider for Batches {
    fn batch_size(&self) -> usize {
        PAGE
    }

    async fn delete_batch(&self, keys: &[Key]) -> Batched {
        let mut failed = Vec::new();
        for k in keys {
            let planned = {
                let mut errors = self.0.faults.batch_errors.lock().unwrap_or_else(|e| e.into_inner());
                match errors.get_mut(k.as_ref()) {
                    Some((n, code)) if *n > 0 => {
                        *n -= 1;
                        Some(code.clone())
                    }
                    _ => None,
                }
            };
            if let Some(code) = planned {
                failed.push((k.clone(), format!("{code}: injected")));
                continue;
            }
            match self.0.delete(k).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => failed.push((k.clone(), e.to_string())),
            }
            let lie = self.0.faults.batch_lies.lock().unwrap_or_else(|e| e.into_inner()).get(k.as_ref()).cloned();
            if let Some(code) = lie {
                failed.push((k.clone(), format!("{code}: injected")));
            }
        }
        Batched::Sent(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::bucket::client::{Listed, NoAnswer, Page};

    /// A provider that lists itself (as Azure's does), to a server that never answers.
    struct Unanswered;

    #[async_trait::async_trait]
    impl Provider for Unanswered {
        async fn list_page(&self, _prefix: Option<&str>, _opts: PaginatedListOptions) -> Option<Result<Page>> {
            Some(Err(anyhow::Error::new(NoAnswer).context("cannot list")))
        }
    }

    /// A provider that lists itself, to a server that answers every page with the token sent.
    struct Circling;

    #[async_trait::async_trait]
    impl Provider for Circling {
        async fn list_page(&self, _prefix: Option<&str>, _opts: PaginatedListOptions) -> Option<Result<Page>> {
            Some(Ok(Page { objects: Vec::new(), prefixes: Vec::new(), token: Some("again".into()) }))
        }
    }

    /// A provider that lists itself, to a server that gives the first 1,000 keys with no token
    /// (as ListObjects v1 says "truncated"), and what comes after a key when asked (`more`).
    struct Unpaged {
        more: bool,
    }

    #[async_trait::async_trait]
    impl Provider for Unpaged {
        async fn list_page(&self, _prefix: Option<&str>, opts: PaginatedListOptions) -> Option<Result<Page>> {
            let meta = |i: usize| ObjectMeta {
                location: Key::from(format!("docker/registry/v2/repositories/k{i:05}")),
                last_modified: chrono::Utc::now(),
                size: 1,
                e_tag: None,
                version: None,
            };
            let objects: Vec<Listed> = match opts.offset {
                None => (0..1000).map(|i| Listed { meta: meta(i), md5: None }).collect(),
                Some(_) if self.more => vec![Listed { meta: meta(1000), md5: None }],
                Some(_) => Vec::new(),
            };
            Some(Ok(Page { objects, prefixes: Vec::new(), token: None }))
        }
    }

    #[test]
    fn a_full_last_page_is_followed_by_a_check_that_the_listing_ended() {
        let e = format!("{:#}", listing_by(Arc::new(Unpaged { more: true })).list("repositories").unwrap_err());
        assert!(e.contains("ended after 1000 keys with more after them"), "{e}");
        let b = listing_by(Arc::new(Unpaged { more: false }));
        assert_eq!(b.list("repositories").unwrap().len(), 1000);
        assert_eq!(b.requests.snapshot().list, 2);
    }

    fn listing_by(provider: Arc<dyn Provider>) -> Bucket {
        let mem = Memory::new();
        let store = Arc::new(Faulty { inner: mem.inner.clone(), faults: mem.faults.clone() });
        let requests = Arc::new(Requests::default());
        Bucket::new(Parts { store, provider, root: String::new(), shown: "memory://".into(), requests }).unwrap()
    }

    #[test]
    fn a_listing_in_a_circle_is_an_error() {
        let e = format!("{:#}", listing_by(Arc::new(Circling)).list("repositories").unwrap_err());
        assert!(e.contains("with the token it was sent (again)"), "{e}");
    }

    #[test]
    fn a_listing_of_its_own_with_no_answer_closes_the_listings_gate() {
        let b = listing_by(Arc::new(Unanswered));
        let first = format!("{:#}", b.list("repositories/a").unwrap_err());
        assert!(first.contains("no answer within"), "{first}");
        let next = format!("{:#}", b.list("repositories/b").unwrap_err());
        assert!(next.contains("not sent: a listing of") && next.contains("repositories/a/ had no answer"), "{next}");
    }

    #[test]
    fn a_lock_written_over_and_over_keeps_its_condition() {
        let mem = Memory::new();
        let b = mem.bucket("r").unwrap();
        assert!(b.create("lock", b"me".to_vec()).unwrap());
        assert!(!b.create("lock", b"other".to_vec()).unwrap(), "created twice");
        let mut version = b.head("lock").unwrap().unwrap().version;
        // Each write changes the ETag here (as on Azure and GCS): the next condition is the new one.
        for _ in 0..3 {
            version = b.replace("lock", b"me".to_vec(), &version).unwrap().expect("still ours");
        }
        mem.put("r/docker/registry/v2/lock", b"other".to_vec());
        assert_eq!(b.replace("lock", b"me".to_vec(), &version).unwrap(), None, "written over by another");
    }
}
