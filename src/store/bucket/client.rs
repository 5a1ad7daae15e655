//! The bucket as regsweep speaks to it, whatever the provider: flat listings by prefix, page by
//! page, small reads, heads, puts (two of them conditional), batched deletions, every call
//! counted by kind where it is made. An `Arc<dyn ObjectStore>` underneath; what one kind of
//! bucket adds (its builder and credentials, its batched deletion, how its error answers read)
//! is a [`Provider`] in a file of its own ([`super::s3`], [`super::memory`]). Blocking calls over
//! one async runtime: the worker threads of a run (rayon's, 128 by default) are the requests in
//! flight, as they are the reads in flight on a disk.

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService,
};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path as Key;
use object_store::{
    ClientOptions, GetOptions, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
};
use serde::Serialize;

use super::gate::{Gate, Pass};
use crate::model::outcome::RequestCounts;

/// Requests sent, by kind, counted at the calls that send them (a listing by its pages, a
/// batched deletion by its batches); `throttled` counts the answers 429 and 503, and
/// `timed_out` the tries that had no answer in time, which the client retries with backoff.
#[derive(Debug, Default, Serialize)]
pub struct Requests {
    /// Listing pages.
    pub list: AtomicU64,
    pub get: AtomicU64,
    pub head: AtomicU64,
    pub put: AtomicU64,
    /// Batched deletions (S3's DeleteObjects, up to 1,000 keys each).
    pub delete_objects: AtomicU64,
    /// Deletions of one key.
    pub delete: AtomicU64,
    /// Answers 503 (SlowDown, ServerBusy) or 429: retried with backoff.
    pub throttled: AtomicU64,
    /// Tries with no answer within the [`timeout`]: retried once.
    pub timed_out: AtomicU64,
}

impl Requests {
    fn add(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts, as plain numbers.
    pub fn snapshot(&self) -> RequestCounts {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RequestCounts {
            list: l(&self.list),
            get: l(&self.get),
            head: l(&self.head),
            put: l(&self.put),
            delete_objects: l(&self.delete_objects),
            delete: l(&self.delete),
            throttled: l(&self.throttled),
            timed_out: l(&self.timed_out),
        }
    }
}

/// What one kind of bucket adds to the object store underneath it.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    /// Up to how many keys one batched deletion takes; 0 when the provider has none (one
    /// DELETE a key, several in flight).
    fn batch_size(&self) -> usize {
        0
    }

    /// Deletes `keys` (at most [`Provider::batch_size`]) in one request, retried as the
    /// provider needs (see [`Batched`]). A key the answer does not name as deleted is not
    /// deleted.
    async fn delete_batch(&self, _keys: &[Key]) -> Batched {
        Batched::Refused
    }

    /// When the space of deleted objects is freed, where the bucket keeps them (versioning, soft
    /// delete) and its API tells it; `None` when at once, or when it cannot tell.
    async fn freed_later(&self) -> Option<String> {
        None
    }

    /// One page of a listing, where the provider lists itself (Azure: its listing tells each
    /// blob's `Content-MD5`, which object_store's leaves out); `None`: object_store's listing.
    /// A request with no answer fails with [`NoAnswer`] in its chain.
    async fn list_page(&self, _prefix: Option<&str>, _opts: PaginatedListOptions) -> Option<Result<Page>> {
        None
    }
}

/// What became of a batched deletion.
pub enum Batched {
    /// Sent and answered: the keys it did not delete, each with why.
    Sent(Vec<(Key, String)>),
    /// Sent and failed as a whole (after its retries): no key deleted, or none said to be.
    Failed(anyhow::Error),
    /// Refused: the server takes no batch (the keys go one by one, from then on).
    Refused,
}

/// One page of a listing.
pub struct Page {
    pub objects: Vec<Listed>,
    /// The sub-folders, when listed with a delimiter.
    pub prefixes: Vec<Key>,
    /// Where the next page begins; `None` on the last.
    pub token: Option<String>,
}

/// An object as a listing shows it, with the MD5 of its content (hex) where the listing tells
/// it apart from the ETag.
pub struct Listed {
    pub meta: ObjectMeta,
    pub md5: Option<String>,
}

tokio::task_local! {
    /// What the provider's last error answer said, during one call of a [`Bucket`]: set by the
    /// HTTP client ([`Watching`]), read when the call fails.
    static SAID: RefCell<Option<String>>;
}

/// The HTTP client of an object store, watching what comes back: it counts throttling, and
/// keeps what an error answer says (decoded by the provider) for the failing call's message.
#[derive(Debug)]
struct Watching {
    inner: HttpClient,
    requests: Arc<Requests>,
    decode: fn(u16, &[u8]) -> Option<String>,
}

#[async_trait::async_trait]
impl HttpService for Watching {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        // What an earlier request's answer said is not this one's.
        let _ = SAID.try_with(|s| s.borrow_mut().take());
        let res = self.inner.execute(req).await.inspect_err(|e| {
            if timed_out(e) {
                Requests::add(&self.requests.timed_out);
            }
        })?;
        let status = res.status().as_u16();
        if matches!(status, 429 | 503) {
            Requests::add(&self.requests.throttled);
        }
        if status < 400 {
            return Ok(res);
        }
        let (parts, body) = res.into_parts();
        let bytes = body.bytes().await?;
        if let Some(said) = (self.decode)(status, &bytes) {
            let _ = SAID.try_with(|s| *s.borrow_mut() = Some(said));
        }
        Ok(HttpResponse::from_parts(parts, bytes.into()))
    }
}

/// The HTTP connector a provider's builder is given: the default client, watched.
#[derive(Debug)]
pub struct Connector {
    pub requests: Arc<Requests>,
    /// What an error answer (its status and body) says, briefly and with what to check: the
    /// provider's error code and message, where the body holds them.
    pub decode: fn(u16, &[u8]) -> Option<String>,
}

impl HttpConnector for Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = object_store::client::ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(Watching { inner, requests: self.requests.clone(), decode: self.decode }))
    }
}

/// A bucket's URL read, `scheme://NAME[/ROOTDIRECTORY]`: the name, and the root without
/// slashes at either end ("" for none); `what` is how the provider calls the name (a bucket, a
/// container).
pub fn split_url(url: &str, scheme: &str, what: &str) -> Result<(String, String)> {
    let Some(rest) = url.strip_prefix(&format!("{scheme}://")) else { bail!("{url} is no {scheme}:// URL") };
    let (name, root) = rest.split_once('/').unwrap_or((rest, ""));
    if name.is_empty() {
        bail!("{url} names no {what}: give {scheme}://{}/ROOTDIRECTORY", what.to_ascii_uppercase());
    }
    Ok((name.to_string(), root.trim_matches('/').to_string()))
}

/// `scheme://name/rootdirectory`, as the operator names a bucket's store (the reverse of
/// [`split_url`]).
pub fn shown_url(scheme: &str, name: &str, root: &str) -> String {
    match root.is_empty() {
        true => format!("{scheme}://{name}"),
        false => format!("{scheme}://{name}/{root}"),
    }
}

/// The body of a successful answer to a request a provider makes of its own (a bucket's
/// settings), `None` when it fails in any way.
pub async fn answer(http: &HttpClient, req: HttpRequest) -> Option<Vec<u8>> {
    let res = http.execute(req).await.ok()?;
    if !res.status().is_success() {
        return None;
    }
    res.into_body().bytes().await.ok().map(|b| b.to_vec())
}

/// What a request a provider makes itself came to: its status, content type and body.
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// Sends a request a provider makes itself (object_store's client retries its own), made anew
/// by `make` for each try (a signature holds for a moment): throttling (429), a server error
/// (but 501, which says what is not there) and a broken connection are retried as
/// [`Retries`] says; any other answer is returned as it is.
pub async fn send(http: &HttpClient, make: impl Fn() -> Result<HttpRequest>) -> Result<Answer> {
    let mut retries = Retries::default();
    loop {
        let (err, timed_out) = match http.execute(make()?).await {
            Ok(res) => {
                let status = res.status().as_u16();
                let header = res.headers().get("content-type").and_then(|v| v.to_str().ok());
                let content_type = header.unwrap_or_default().to_string();
                match res.into_body().bytes().await {
                    Ok(body) if status != 429 && (status < 500 || status == 501) => {
                        return Ok(Answer { status, content_type, body: body.to_vec() });
                    }
                    Ok(_) => {
                        let said = SAID.try_with(|s| s.borrow_mut().take()).ok().flatten();
                        (said.unwrap_or_else(|| format!("status {status}")), false)
                    }
                    Err(e) => (format!("{e}"), timed_out(&e)),
                }
            }
            Err(e) => (format!("{e}"), timed_out(&e)),
        };
        retries.after(err, timed_out).await?;
    }
}

/// The retries of a request a provider sends itself, as object_store retries its own (see
/// [`retry`]): with backoff, up to 10 times, and none begun once the retry budget is spent.
pub struct Retries {
    tries: u32,
    start: Instant,
    backoff: Duration,
}

impl Default for Retries {
    fn default() -> Retries {
        Retries { tries: 0, start: Instant::now(), backoff: Duration::from_millis(100) }
    }
}

impl Retries {
    /// After a try that failed (`err`; `timed_out`: with no answer): waits for the next, or
    /// the error to return when there is none.
    pub async fn after(&mut self, err: String, timed_out: bool) -> Result<()> {
        self.tries += 1;
        if self.tries > 10 || self.start.elapsed() > retry().retry_timeout {
            return Err(match timed_out {
                true => anyhow::Error::new(NoAnswer),
                false => anyhow!("{err} (after {} retries)", self.tries - 1),
            });
        }
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(15));
        Ok(())
    }
}

/// A request that had no answer within the [`timeout`] on its last try (and, as retried, on
/// those before: [`retry`]): the server is down, or far behind.
#[derive(Debug)]
pub struct NoAnswer;

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no answer within {} s on its last try: the server is down or overloaded", timeout().as_secs_f64())
    }
}

impl std::error::Error for NoAnswer {}

/// Whether an error, or one it came from, is a request that had no answer in time.
pub fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |e| e.source()).any(|e| {
        e.is::<NoAnswer>() || e.downcast_ref::<HttpError>().is_some_and(|h| matches!(h.kind(), HttpErrorKind::Timeout))
    })
}

/// An MD5 as a store tells it, in hex: 32 hex digits (S3's and GCS's ETag of an object put in
/// one request) or 16 bytes in base64 (fake-gcs-server's ETag, Azure's `Content-MD5`). Any
/// other ETag (Azure's, a multipart upload's, a counter) is none; one that only looks like an
/// MD5 is harmless, as an MD5 is only ever matched against the MD5 of a content regsweep knows.
pub fn md5_hex(told: &str) -> Option<String> {
    if told.len() == 32 && told.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(told.to_ascii_lowercase());
    }
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(told).ok().filter(|b| b.len() == 16)?;
    Some(hex::encode(bytes))
}

/// How long a request may go without an answer: two minutes.
/// Test-only (feature `test-hooks`): `REGSWEEP_TEST_TIMEOUT_MS` sets it.
pub fn timeout() -> Duration {
    #[cfg(feature = "test-hooks")]
    if let Some(ms) = std::env::var("REGSWEEP_TEST_TIMEOUT_MS").ok().and_then(|v| v.parse().ok()) {
        return Duration::from_millis(ms);
    }
    Duration::from_secs(120)
}

/// The most keys a page of a listing holds by default (S3's and GCS's; Azure's 5,000).
const FULL_PAGE: usize = 1000;

/// What the requests of one kind in flight may grow to: more than a run sends at once.
const MAX_IN_FLIGHT: usize = 256;

/// The HTTP client's options every provider's builder is given: plain HTTP allowed (an
/// S3-compatible server or an emulator on loopback), the [`timeout`] a request, a connection
/// kept for each request in flight.
pub fn options() -> ClientOptions {
    ClientOptions::new().with_allow_http(true).with_timeout(timeout()).with_pool_max_idle_per_host(256)
}

/// Retries of a failed request (throttling, a server error, a broken connection, no answer),
/// with backoff, up to 10, none begun after one and a half [`timeout`]s: a request with no
/// answer is sent twice.
pub fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig { max_retries: 10, retry_timeout: timeout() * 3 / 2, ..Default::default() }
}

/// An object store's error, told briefly: what the provider's answer said where it said
/// something (its XML answer otherwise fills a screen, three times over), else the innermost
/// cause (a refused connection, a name not found, a status).
fn explain(e: object_store::Error) -> anyhow::Error {
    if timed_out(&e) {
        return anyhow::Error::new(NoAnswer);
    }
    if let Some(said) = SAID.try_with(|s| s.borrow_mut().take()).ok().flatten() {
        return anyhow!(said);
    }
    let mut inner: &dyn std::error::Error = &e;
    while let Some(s) = inner.source() {
        inner = s;
    }
    anyhow!("{inner}")
}

/// One object as a listing or a head shows it; `key` is relative to the store's `docker/registry/v2/`.
#[derive(Clone, Debug)]
pub struct Obj {
    pub key: String,
    pub size: u64,
    pub modified: SystemTime,
    /// The MD5 of the content (hex) as the store tells it: the ETag of an object put in one
    /// request to S3 or GCS (32 hex digits), the `Content-MD5` in an Azure listing. Only ever
    /// matched against the MD5 of a content regsweep knows.
    pub md5: Option<String>,
    /// The ETag as the store gave it, and its version where it has them (GCS's generation):
    /// the condition of a write over this object.
    pub version: UpdateVersion,
}

/// An object store that also lists one page at a time (each page one request, counted): every
/// store object_store builds.
pub trait PagedStore: ObjectStore + PaginatedListStore {}

impl<T: ObjectStore + PaginatedListStore> PagedStore for T {}

/// A bucket, rooted at a store's `docker/registry/v2/`.
pub struct Bucket {
    store: Arc<dyn PagedStore>,
    provider: Arc<dyn Provider>,
    runtime: tokio::runtime::Runtime,
    /// `<rootdirectory>/docker/registry/v2`, without leading or trailing slash.
    v2: String,
    /// How the bucket is named to the operator: `s3://bucket/rootdirectory`.
    pub shown: String,
    pub requests: Arc<Requests>,
    /// Listing pages in flight.
    lists: Gate,
    /// Deletions in flight (a batch, or a DELETE).
    deletions: Gate,
    /// False once the server refused a batched deletion: one DELETE a key from then on.
    batches: AtomicBool,
}

/// What a provider's builder hands over to make a [`Bucket`].
pub struct Parts {
    pub store: Arc<dyn PagedStore>,
    pub provider: Arc<dyn Provider>,
    /// The registry's `rootdirectory` ("" for none).
    pub root: String,
    /// `scheme://bucket/rootdirectory`.
    pub shown: String,
    pub requests: Arc<Requests>,
}

impl Bucket {
    pub fn new(p: Parts) -> Result<Bucket> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the bucket's client")?;
        let root = p.root.trim_matches('/');
        let v2 = if root.is_empty() { "docker/registry/v2".to_string() } else { format!("{root}/docker/registry/v2") };
        // Keys are the registry's, byte for byte (`Key::parse`; `Key::from` would percent-encode
        // `~`, `%` or a letter outside ASCII, and name another key): a root object_store cannot
        // name as it is is refused here, not used under another name.
        Key::parse(&v2).map_err(|e| anyhow!("rootdirectory {:?} cannot be used: {e}", p.root))?;
        Ok(Bucket {
            store: p.store,
            provider: p.provider,
            runtime,
            v2,
            shown: p.shown,
            requests: p.requests,
            lists: Gate::new(timeout(), MAX_IN_FLIGHT),
            deletions: Gate::new(timeout(), MAX_IN_FLIGHT),
            batches: AtomicBool::new(true),
        })
    }

    /// How a key is shown in messages: `s3://bucket/<root>/docker/registry/v2/<key>`.
    pub fn url(&self, key: &str) -> String {
        format!("{}/{}", self.shown_v2(), key)
    }

    /// `s3://bucket/<root>/docker/registry/v2`.
    pub fn shown_v2(&self) -> String {
        format!("{}/docker/registry/v2", self.shown.trim_end_matches('/'))
    }

    /// The key as it is in the bucket; one that object_store cannot name as it is (a control
    /// character, a `.` or `..` or empty segment) is an error naming it, never another key.
    fn key(&self, rel: &str) -> Result<Key> {
        Key::parse(format!("{}/{}", self.v2, rel.trim_matches('/')))
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("cannot use the key {:?}", self.url(rel)))
    }

    /// A full key, relative to `docker/registry/v2/`.
    fn rel<'k>(&self, full: &'k str) -> &'k str {
        full.strip_prefix(&self.v2).map(|k| k.trim_start_matches('/')).unwrap_or(full)
    }

    fn obj(&self, m: ObjectMeta) -> Obj {
        self.listed(Listed { meta: m, md5: None })
    }

    fn listed(&self, Listed { meta: m, md5 }: Listed) -> Obj {
        let etag = m.e_tag.as_deref().map(|e| e.trim_matches('"'));
        let md5 = md5.or_else(|| etag.and_then(md5_hex));
        Obj {
            key: self.rel(m.location.as_ref()).to_string(),
            size: m.size,
            modified: SystemTime::from(m.last_modified),
            md5,
            version: UpdateVersion { e_tag: m.e_tag, version: m.version },
        }
    }

    /// A request let through `pass` failed with `e` (after its retries). One that had no answer
    /// on any try closes its gate: every request of its kind fails at once from then on, rather
    /// than each waiting out the timeout in turn. Any other failure leaves it open.
    fn failed(pass: Pass<'_>, what: impl FnOnce() -> String, e: &anyhow::Error) {
        if timed_out(e.as_ref()) {
            pass.no_answer(format!("{} had no answer within {} s", what(), timeout().as_secs_f64()));
        }
    }

    /// Runs one call to its end, keeping what the provider's error answers say for its message.
    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(SAID.scope(RefCell::new(None), f))
    }

    /// One listing, page by page (each page a request): the objects whose keys begin with
    /// `prefix` (the whole bucket for none) and sort after `offset` and before `until` (full
    /// keys), sorted, and with `folders` the sub-folders, one level. A store that takes no
    /// offset (Azure's) lists from the start of the prefix, and what sorts before is left out
    /// here.
    async fn listing(
        &self,
        prefix: Option<String>,
        offset: Option<String>,
        until: Option<&str>,
        folders: bool,
    ) -> Result<(Vec<Listed>, Vec<Key>)> {
        let (mut objects, mut prefixes) = (Vec::new(), Vec::new());
        let mut token = None;
        // Set to the last key of a last page as full as a page goes: the next request asks for
        // what comes after it, to make sure the listing ended.
        let mut check: Option<String> = None;
        loop {
            let sent = token.take();
            let opts = PaginatedListOptions {
                offset: check.clone().or_else(|| offset.clone()),
                delimiter: folders.then(|| "/".into()),
                page_token: sent.clone(),
                ..PaginatedListOptions::default()
            };
            let pass = self.lists.enter().await.map_err(|why| anyhow!("not sent: {why}"))?;
            Requests::add(&self.requests.list);
            let page = match self.provider.list_page(prefix.as_deref(), opts.clone()).await {
                Some(page) => page,
                None => self.store.list_paginated(prefix.as_deref(), opts).await.map_err(explain).map(|page| {
                    let objects = page.result.objects.into_iter().map(|meta| Listed { meta, md5: None }).collect();
                    Page { objects, prefixes: page.result.common_prefixes, token: page.page_token }
                }),
            };
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    let shown =
                        || format!("a listing of {}", self.url(self.rel(prefix.as_deref().unwrap_or_default())));
                    Self::failed(pass, shown, &e);
                    return Err(e);
                }
            };
            drop(pass);
            let shown = || self.url(self.rel(prefix.as_deref().unwrap_or_default()));
            if let Some(last) = &check {
                let after = |k: &str| k > last.as_str();
                if page.objects.iter().any(|l| after(l.meta.location.as_ref()))
                    || page.prefixes.iter().any(|p| after(p.as_ref()))
                {
                    bail!(
                        "the listing of {} ended after {} keys with more after them: the server does not page \
                         its listings as asked (S3's ListObjectsV2, list-type=2), or they were written just then \
                         (run again)",
                        shown(),
                        objects.len() + prefixes.len()
                    );
                }
                break;
            }
            let full = page.objects.len() + page.prefixes.len() >= FULL_PAGE;
            let last =
                [page.objects.last().map(|l| l.meta.location.to_string()), page.prefixes.last().map(|p| p.to_string())]
                    .into_iter()
                    .flatten()
                    .max();
            objects.extend(page.objects);
            prefixes.extend(page.prefixes);
            let past = until.is_some_and(|u| objects.last().is_some_and(|l: &Listed| l.meta.location.as_ref() >= u));
            match page.token {
                // A server that answers a page with the token it was sent would be asked forever.
                Some(t) if Some(&t) == sent.as_ref() => bail!(
                    "the server answered a page of the listing of {} with the token it was sent ({t}): it lists in \
                     a circle",
                    shown()
                ),
                Some(t) if !past => token = Some(t),
                // A last page as full as a page goes, from a server that may say "truncated" in
                // a way object_store does not read (ListObjects v1's IsTruncated, no token).
                None if !past && full => check = last,
                _ => break,
            }
        }
        // A key a server lists twice (pages that overlap) is one key.
        objects.sort_by(|a, b| a.meta.location.cmp(&b.meta.location));
        objects.dedup_by(|a, b| a.meta.location == b.meta.location);
        prefixes.sort();
        prefixes.dedup();
        if let Some(u) = until {
            objects.retain(|l| l.meta.location.as_ref() < u);
        }
        if let Some(o) = &offset {
            objects.retain(|l| l.meta.location.as_ref() > o.as_str());
        }
        Ok((objects, prefixes))
    }

    /// Every object under `prefix` (a folder of the store, relative to `docker/registry/v2/`),
    /// flat, sorted by key.
    pub fn list(&self, prefix: &str) -> Result<Vec<Obj>> {
        let key = self.key(prefix)?;
        let (found, _) = self
            .block_on(async { self.listing(Some(format!("{key}/")), None, None, false).await })
            .with_context(|| format!("cannot list {}", self.url(prefix)))?;
        Ok(found.into_iter().map(|l| self.listed(l)).collect())
    }

    /// Every object under the folder `prefix` whose name there begins with `start` (a range
    /// of a listing split for parallel requests, by a prefix every store takes).
    pub fn list_beginning(&self, prefix: &str, start: &str) -> Result<Vec<Obj>> {
        let key = self.key(prefix)?;
        let (found, _) = self
            .block_on(async { self.listing(Some(format!("{key}/{start}")), None, None, false).await })
            .with_context(|| format!("cannot list {}", self.url(&format!("{prefix}/{start}"))))?;
        Ok(found.into_iter().map(|l| self.listed(l)).collect())
    }

    /// The objects under `prefix` whose keys sort after `prefix/after` and before `prefix/until`
    /// (to the end without it): one range of a listing split for parallel requests.
    pub fn list_range(&self, prefix: &str, after: &str, until: Option<&str>) -> Result<Vec<Obj>> {
        let (key, offset) = (self.key(prefix)?, self.key(&format!("{prefix}/{after}"))?);
        let end = until.map(|u| format!("{}/{u}", key.as_ref()));
        let (found, _) = self
            .block_on(async {
                let offset = Some(offset.as_ref().to_string());
                self.listing(Some(format!("{key}/")), offset, end.as_deref(), false).await
            })
            .with_context(|| format!("cannot list {}", self.url(prefix)))?;
        Ok(found.into_iter().map(|l| self.listed(l)).collect())
    }

    /// The sub-folders of `prefix` (their names) and the objects right in it: one level.
    pub fn folders(&self, prefix: &str) -> Result<(Vec<String>, Vec<Obj>)> {
        let key = self.key(prefix)?;
        let (objects, prefixes) = self
            .block_on(async { self.listing(Some(format!("{key}/")), None, None, true).await })
            .with_context(|| format!("cannot list {}", self.url(prefix)))?;
        let names = prefixes.iter().filter_map(|p| p.filename().map(String::from)).collect();
        Ok((names, objects.into_iter().map(|l| self.listed(l)).collect()))
    }

    /// The folders at the top of the bucket, outside the store (for an error message).
    pub fn top_folders(&self) -> Result<Vec<String>> {
        let (_, prefixes) = self.block_on(async { self.listing(None, None, None, true).await })?;
        Ok(prefixes.iter().map(|p| format!("{}/", p.as_ref())).collect())
    }

    /// The content of a small object, or `None` when there is none; larger than `max`: an error.
    pub fn get(&self, rel: &str, max: u64) -> Result<Option<(Vec<u8>, Obj)>> {
        let key = self.key(rel)?;
        let got = self.block_on(async {
            Requests::add(&self.requests.get);
            let r = match self.store.get_opts(&key, GetOptions::default()).await {
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                r => r.map_err(explain)?,
            };
            if r.meta.size > max {
                return Err(anyhow!("{} bytes, more than the {max} a manifest, link or config may have", r.meta.size));
            }
            let meta = r.meta.clone();
            let bytes = r.bytes().await.map_err(explain)?;
            Ok(Some((bytes.to_vec(), meta)))
        });
        let got = got.with_context(|| format!("cannot read {}", self.url(rel)))?;
        Ok(got.map(|(b, m)| (b, self.obj(m))))
    }

    /// The SHA-256 of an object's content, hashed as it comes (a layer may be gigabytes, and
    /// many are read at once), or `None` when there is none.
    pub fn sha256(&self, rel: &str) -> Result<Option<[u8; 32]>> {
        use futures::StreamExt as _;
        use sha2::Digest as _;
        let key = self.key(rel)?;
        self.block_on(async {
            Requests::add(&self.requests.get);
            let r = match self.store.get_opts(&key, GetOptions::default()).await {
                Err(object_store::Error::NotFound { .. }) => return Ok::<_, anyhow::Error>(None),
                r => r.map_err(explain)?,
            };
            let mut hash = sha2::Sha256::new();
            let mut body = r.into_stream();
            while let Some(chunk) = body.next().await {
                hash.update(chunk.map_err(explain)?);
            }
            Ok(Some(hash.finalize().into()))
        })
        .with_context(|| format!("cannot read {}", self.url(rel)))
    }

    /// The object's size and time, or `None` when there is none.
    pub fn head(&self, rel: &str) -> Result<Option<Obj>> {
        let key = self.key(rel)?;
        self.block_on(async {
            Requests::add(&self.requests.head);
            match self.store.head(&key).await {
                Ok(m) => Ok(Some(self.obj(m))),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(explain(e)),
            }
        })
        .with_context(|| format!("cannot read {}", self.url(rel)))
    }

    /// Writes an object, replacing any.
    pub fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        let key = self.key(rel)?;
        self.block_on(async {
            Requests::add(&self.requests.put);
            self.store.put(&key, PutPayload::from(bytes)).await.map_err(explain)
        })
        .with_context(|| format!("cannot write {}", self.url(rel)))?;
        Ok(())
    }

    /// Writes an object under a condition: its new ETag and version as the store gives them
    /// when written, `None` when the condition failed.
    fn put_if(&self, rel: &str, bytes: Vec<u8>, mode: PutMode) -> Result<Option<UpdateVersion>> {
        let key = self.key(rel)?;
        let opts = PutOptions { mode, ..PutOptions::default() };
        self.block_on(async {
            Requests::add(&self.requests.put);
            match self.store.put_opts(&key, PutPayload::from(bytes), opts).await {
                Ok(r) => Ok(Some(UpdateVersion { e_tag: r.e_tag, version: r.version })),
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. }
                    | object_store::Error::NotFound { .. },
                ) => Ok(None),
                Err(e) => Err(explain(e)),
            }
        })
        .with_context(|| format!("cannot write {}", self.url(rel)))
    }

    /// Creates an object only if there is none (`If-None-Match: *`): false when one exists.
    pub fn create(&self, rel: &str, bytes: Vec<u8>) -> Result<bool> {
        Ok(self.put_if(rel, bytes, PutMode::Create)?.is_some())
    }

    /// Writes an object only if it is still the one read (its [`Obj::version`]: `If-Match` on
    /// its ETag, or its generation on GCS): its new version when written (an ETag names one
    /// write, not a content, on most stores), `None` when it is another object, or gone.
    pub fn replace(&self, rel: &str, bytes: Vec<u8>, version: &UpdateVersion) -> Result<Option<UpdateVersion>> {
        match self.put_if(rel, bytes, PutMode::Update(version.clone()))? {
            None => Ok(None),
            // A store that names neither on a write: read them.
            Some(UpdateVersion { e_tag: None, version: None }) => Ok(self.head(rel)?.map(|o| o.version)),
            Some(new) => Ok(Some(new)),
        }
    }

    /// Deletes one object; none there is fine.
    pub fn delete(&self, rel: &str) -> Result<()> {
        let key = self.key(rel)?;
        self.block_on(self.delete_one(&key))
            .map_err(|e| anyhow!(e))
            .with_context(|| format!("cannot delete {}", self.url(rel)))
    }

    /// Deletes one key, in a call of its own: why it failed.
    async fn delete_one(&self, key: &Key) -> Result<(), String> {
        SAID.scope(RefCell::new(None), async {
            let pass = self.deletions.enter().await.map_err(|why| format!("not sent: {why}"))?;
            Requests::add(&self.requests.delete);
            match self.store.delete(key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => {
                    let e = explain(e);
                    Self::failed(pass, || format!("the deletion of {}", self.url(self.rel(key.as_ref()))), &e);
                    Err(format!("{e:#}"))
                }
            }
        })
        .await
    }

    /// When the space of deleted objects is freed, where not at once: one GET of the bucket's
    /// (or account's) settings, counted as the run's other GETs.
    pub fn freed_later(&self) -> Option<String> {
        Requests::add(&self.requests.get);
        self.block_on(self.provider.freed_later())
    }

    /// Deletes keys, in the provider's batches (several in flight) or one by one; the keys not
    /// deleted (or not said to be) are tried again twice, then looked at: one a batch's answer
    /// named as failed, or did not name, that is gone was deleted all the same (a server's answer
    /// may say a key failed that it deleted, issue 35); the rest are returned with why.
    pub fn delete_many(&self, rels: &[String]) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        let mut todo: Vec<(Key, &String)> = Vec::new();
        for r in rels {
            match self.key(r) {
                Ok(k) => todo.push((k, r)),
                Err(e) => failed.push((r.clone(), format!("{e:#}"))),
            }
        }
        let mut left: Vec<(Key, &String, NotDeleted)> = Vec::new();
        for _ in 0..3 {
            if todo.is_empty() {
                break;
            }
            let keys: Vec<Key> = todo.iter().map(|(k, _)| k.clone()).collect();
            let not: std::collections::HashMap<Key, NotDeleted> =
                self.block_on(self.delete_round(&keys)).into_iter().collect();
            left = todo.into_iter().filter_map(|(k, r)| not.get(&k).map(|why| (k.clone(), r, why.clone()))).collect();
            todo = left.iter().map(|(k, r, _)| (k.clone(), *r)).collect();
        }
        let gone = self.block_on(self.gone_all_the_same(&left));
        failed.extend(left.into_iter().filter(|(k, _, _)| !gone.contains(k)).map(|(_, r, why)| (r.clone(), why.why)));
        failed
    }

    /// Of keys a batch's answer named as not deleted (or did not name), those a HEAD finds
    /// gone. A key whose HEAD fails stays failed, as does one a whole request failed for (a
    /// server that did not answer is not asked again, key by key).
    async fn gone_all_the_same(&self, left: &[(Key, &String, NotDeleted)]) -> std::collections::HashSet<Key> {
        let heads = left.iter().filter(|(_, _, why)| why.named).map(|(k, _, _)| async move {
            Requests::add(&self.requests.head);
            matches!(self.store.head(k).await, Err(object_store::Error::NotFound { .. })).then(|| k.clone())
        });
        futures::stream::iter(heads).buffer_unordered(32).filter_map(futures::future::ready).collect().await
    }

    /// One round of deletions: the keys not deleted, with why.
    async fn delete_round(&self, keys: &[Key]) -> Vec<(Key, NotDeleted)> {
        let batch = self.provider.batch_size();
        if batch == 0 || !self.batches.load(Ordering::Relaxed) {
            return self.delete_each(keys).await;
        }
        let batches = keys.chunks(batch).map(|c| async move {
            let all = |why: &str| c.iter().map(|k| (k.clone(), NotDeleted::whole(why))).collect();
            let pass = match self.deletions.enter().await {
                Ok(pass) => pass,
                Err(why) => return all(&format!("not sent: {why}")),
            };
            let batched = self.provider.delete_batch(c).await;
            Requests::add(&self.requests.delete_objects);
            match batched {
                Batched::Sent(failed) => {
                    failed.into_iter().map(|(k, why)| (k, NotDeleted { why, named: true })).collect()
                }
                Batched::Failed(e) => {
                    Self::failed(pass, || format!("a batched deletion of {} keys", c.len()), &e);
                    all(&format!("{e:#}"))
                }
                Batched::Refused => {
                    drop(pass);
                    self.batches.store(false, Ordering::Relaxed);
                    self.delete_each(c).await
                }
            }
        });
        futures::stream::iter(batches).buffer_unordered(8).flat_map(futures::stream::iter).collect().await
    }

    /// Deletes keys one DELETE each, several in flight: the keys not deleted, with why.
    async fn delete_each(&self, keys: &[Key]) -> Vec<(Key, NotDeleted)> {
        let each = keys
            .iter()
            .map(|k| async move { self.delete_one(k).await.err().map(|why| (k.clone(), NotDeleted::whole(&why))) });
        futures::stream::iter(each).buffer_unordered(32).filter_map(futures::future::ready).collect().await
    }
}

/// Why a key was not deleted, and whether a batch's answer said so of that key alone (named it
/// failed, or left it out): then the server answered, and the key is looked at before it is
/// reported ([`Bucket::delete_many`]).
#[derive(Clone)]
struct NotDeleted {
    why: String,
    named: bool,
}

impl NotDeleted {
    /// A key whose whole request failed (or was not sent, or was a DELETE of its own).
    fn whole(why: &str) -> NotDeleted {
        NotDeleted { why: why.to_string(), named: false }
    }
}

/// Whether the instance metadata service (AWS's and Azure's, at the same address) takes a connection within a second (on EC2 it does at
/// once; elsewhere the address leads nowhere).
pub(crate) fn metadata_service_answers() -> bool {
    let addr = std::net::SocketAddr::from(([169, 254, 169, 254], 80));
    std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::md5_hex;

    #[test]
    fn an_etag_is_an_md5_only_when_it_is_one() {
        let md5 = "8287118b36ca543751029b871b6d2c01";
        assert_eq!(md5_hex(md5).as_deref(), Some(md5));
        assert_eq!(md5_hex("8287118B36CA543751029B871B6D2C01").as_deref(), Some(md5));
        // fake-gcs-server's, of the same content.
        assert_eq!(md5_hex("gocRizbKVDdRApuHG20sAQ==").as_deref(), Some(md5));
        for other in ["0x8DD1F0A2B3C4D5E", "8287118b36ca543751029b871b6d2c01-2", "3", "CKih16GjycICEAE=", ""] {
            assert_eq!(md5_hex(other), None, "{other}");
        }
    }
}
