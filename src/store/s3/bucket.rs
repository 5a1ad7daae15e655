//! The bucket as regsweep speaks to it: flat listings by prefix, small reads, heads, puts (two
//! of them conditional), batched deletions, every request counted by kind. Blocking calls over
//! one async runtime: the worker threads of a run (rayon's, 128 by default) are the requests in
//! flight, as they are the reads in flight on a disk.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};
use object_store::path::Path as Key;
use object_store::{
    ClientOptions, GetOptions, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
    UpdateVersion,
};
use serde::Serialize;

use crate::model::outcome::RequestCounts;
use crate::store::s3::location::S3Location;

/// Requests sent, by kind (retries included): what a run cost, in `--json`.
#[derive(Debug, Default, Serialize)]
pub struct Requests {
    /// ListObjectsV2 pages.
    pub list: AtomicU64,
    pub get: AtomicU64,
    pub head: AtomicU64,
    pub put: AtomicU64,
    /// DeleteObjects requests (up to 1,000 keys each).
    pub delete_objects: AtomicU64,
    /// Single DeleteObject requests.
    pub delete: AtomicU64,
    /// Answers 503 (SlowDown) or 429: retried with backoff.
    pub throttled: AtomicU64,
}

impl Requests {
    fn count(&self, method: &str, query: &str) {
        let c = match method {
            "GET" if query.contains("list-type=2") => &self.list,
            "GET" => &self.get,
            "HEAD" => &self.head,
            "PUT" => &self.put,
            "POST" if query.split('&').any(|q| q == "delete" || q == "delete=") => &self.delete_objects,
            "DELETE" => &self.delete,
            _ => return,
        };
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
        }
    }
}

/// The HTTP client of the object store, counting what goes through it.
#[derive(Debug)]
struct Counting {
    inner: HttpClient,
    requests: Arc<Requests>,
}

#[async_trait::async_trait]
impl HttpService for Counting {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        self.requests.count(req.method().as_str(), req.uri().query().unwrap_or(""));
        let res = self.inner.execute(req).await?;
        if matches!(res.status().as_u16(), 429 | 503) {
            self.requests.throttled.fetch_add(1, Ordering::Relaxed);
        }
        Ok(res)
    }
}

#[derive(Debug)]
struct CountingConnector(Arc<Requests>);

impl HttpConnector for CountingConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(Counting { inner, requests: self.0.clone() }))
    }
}

/// An object store's error, told briefly: the S3 error code and message where the server gave
/// them (its XML answer otherwise fills a screen, three times over), with what to check.
fn explain(e: object_store::Error) -> anyhow::Error {
    let text = e.to_string();
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        Some(text[start..].split('<').next()?.to_string())
    };
    let hint = |code: &str| match code {
        "NoSuchBucket" => " (is the bucket's name right, and the endpoint?)",
        "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied" | "InvalidToken" | "ExpiredToken" => {
            " (check the credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, the profile, or the config's \
             accesskey and secretkey; regsweep needs to list, get, put and delete)"
        }
        _ => "",
    };
    match (tag("Code"), tag("Message")) {
        (Some(code), Some(msg)) => anyhow!("{code}: {msg}{}", hint(&code)),
        (Some(code), None) => anyhow!("{code}{}", hint(&code)),
        // No S3 error: the innermost cause (a refused connection, a name not found, a status),
        // and the retries already made.
        _ => {
            let mut inner: &dyn std::error::Error = &e;
            while let Some(s) = inner.source() {
                inner = s;
            }
            let cause = inner.to_string();
            let cause = cause.split(": <").next().unwrap_or_default().trim().to_string();
            let retries = text.split_once(" after ").and_then(|(_, r)| r.split_once(" retries")).map(|(n, _)| n);
            match retries {
                Some(n) => anyhow!("{cause} (after {n} retries)"),
                None => anyhow!("{cause}"),
            }
        }
    }
}

/// One object as a listing or a head shows it; `key` is relative to the store's `docker/registry/v2/`.
#[derive(Clone, Debug)]
pub struct Obj {
    pub key: String,
    pub size: u64,
    pub modified: SystemTime,
    /// The ETag without its quotes: for a plain PUT, the MD5 of the content.
    pub etag: Option<String>,
}

/// A bucket, rooted at a store's `docker/registry/v2/`.
pub struct Bucket {
    store: AmazonS3,
    runtime: tokio::runtime::Runtime,
    /// `<rootdirectory>/docker/registry/v2`, without leading or trailing slash.
    v2: String,
    /// How the bucket is named to the operator: `s3://bucket/rootdirectory`.
    pub shown: String,
    pub requests: Arc<Requests>,
}

impl Bucket {
    pub fn open(loc: &S3Location) -> Result<Bucket> {
        let requests = Arc::new(Requests::default());
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&loc.bucket)
            .with_region(&loc.region)
            .with_virtual_hosted_style_request(false)
            .with_http_connector(CountingConnector(requests.clone()))
            .with_retry(RetryConfig {
                max_retries: 10,
                retry_timeout: Duration::from_secs(180),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(true)
                    .with_timeout(Duration::from_secs(120))
                    .with_pool_max_idle_per_host(256),
            );
        if let Some(e) = &loc.endpoint {
            b = b.with_endpoint(e);
        }
        match (&loc.access_key, &loc.secret_key) {
            (Some(a), Some(s)) => {
                b = b.with_access_key_id(a).with_secret_access_key(s);
                if let Some(t) = &loc.session_token {
                    b = b.with_token(t);
                }
            }
            _ => b = b.with_skip_signature(loc.anonymous),
        }
        let store = b.build().with_context(|| format!("cannot use bucket {}", loc.shown()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the S3 client")?;
        let root = loc.root.trim_matches('/');
        let v2 = if root.is_empty() { "docker/registry/v2".to_string() } else { format!("{root}/docker/registry/v2") };
        Ok(Bucket { store, runtime, v2, shown: loc.shown(), requests })
    }

    /// How a key is shown in messages: `s3://bucket/<root>/docker/registry/v2/<key>`.
    pub fn url(&self, key: &str) -> String {
        format!("{}/{}", self.shown_v2(), key)
    }

    /// `s3://bucket/<root>/docker/registry/v2`.
    pub fn shown_v2(&self) -> String {
        format!("{}/docker/registry/v2", self.shown.trim_end_matches('/'))
    }

    fn key(&self, rel: &str) -> Key {
        Key::from(format!("{}/{}", self.v2, rel.trim_matches('/')))
    }

    fn obj(&self, m: ObjectMeta) -> Obj {
        Obj {
            key: self.obj_key(m.location.as_ref()).to_string(),
            size: m.size,
            modified: SystemTime::from(m.last_modified),
            etag: m.e_tag.map(|e| e.trim_matches('"').to_string()),
        }
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Every object under `prefix` (a folder of the store, relative to `docker/registry/v2/`),
    /// flat: one request per page of 1,000 keys.
    pub fn list(&self, prefix: &str) -> Result<Vec<Obj>> {
        let key = self.key(prefix);
        let found: Vec<ObjectMeta> = self
            .block_on(self.store.list(Some(&key)).try_collect())
            .map_err(explain)
            .with_context(|| format!("cannot list {}", self.url(prefix)))?;
        Ok(found.into_iter().map(|m| self.obj(m)).collect())
    }

    /// The objects under `prefix` whose keys sort after `prefix/after` and before `prefix/until`
    /// (to the end without it): one range of a listing split for parallel requests.
    pub fn list_range(&self, prefix: &str, after: &str, until: Option<&str>) -> Result<Vec<Obj>> {
        let (key, offset) = (self.key(prefix), self.key(&format!("{prefix}/{after}")));
        let end = until.map(|u| format!("{}/{u}", key.as_ref()));
        let found: Vec<ObjectMeta> = self
            .block_on(
                self.store
                    .list_with_offset(Some(&key), &offset)
                    .try_take_while(|m| {
                        let more = end.as_ref().is_none_or(|e| m.location.as_ref() < e.as_str());
                        futures::future::ready(Ok(more))
                    })
                    .try_collect(),
            )
            .map_err(explain)
            .with_context(|| format!("cannot list {}", self.url(prefix)))?;
        Ok(found.into_iter().map(|m| self.obj(m)).collect())
    }

    /// The sub-folders of `prefix` (their names) and the objects right in it: one level.
    pub fn folders(&self, prefix: &str) -> Result<(Vec<String>, Vec<Obj>)> {
        let key = self.key(prefix);
        let r = self
            .block_on(self.store.list_with_delimiter(Some(&key)))
            .map_err(explain)
            .with_context(|| format!("cannot list {}", self.url(prefix)))?;
        let names = r.common_prefixes.iter().filter_map(|p| p.filename().map(String::from)).collect();
        Ok((names, r.objects.into_iter().map(|m| self.obj(m)).collect()))
    }

    /// The folders at the top of the bucket, outside the store (for an error message).
    pub fn top_folders(&self) -> Result<Vec<String>> {
        let r = self.block_on(self.store.list_with_delimiter(None)).map_err(explain)?;
        Ok(r.common_prefixes.iter().map(|p| format!("{}/", p.as_ref())).collect())
    }

    /// The content of a small object, or `None` when there is none; larger than `max`: an error.
    pub fn get(&self, rel: &str, max: u64) -> Result<Option<(Vec<u8>, Obj)>> {
        let key = self.key(rel);
        let got = self.block_on(async {
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

    /// The object's size and time, or `None` when there is none.
    pub fn head(&self, rel: &str) -> Result<Option<Obj>> {
        match self.block_on(self.store.head(&self.key(rel))) {
            Ok(m) => Ok(Some(self.obj(m))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(explain(e)).with_context(|| format!("cannot read {}", self.url(rel))),
        }
    }

    /// Writes an object, replacing any.
    pub fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        self.block_on(self.store.put(&self.key(rel), PutPayload::from(bytes)))
            .map_err(explain)
            .with_context(|| format!("cannot write {}", self.url(rel)))?;
        Ok(())
    }

    /// Creates an object only if there is none (`If-None-Match: *`): false when one exists.
    pub fn create(&self, rel: &str, bytes: Vec<u8>) -> Result<bool> {
        let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match self.block_on(self.store.put_opts(&self.key(rel), PutPayload::from(bytes), opts)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(explain(e)).with_context(|| format!("cannot create {}", self.url(rel))),
        }
    }

    /// Writes an object only if it is still the one with this ETag (`If-Match`): false when it
    /// is another, or gone.
    pub fn replace(&self, rel: &str, bytes: Vec<u8>, etag: &str) -> Result<bool> {
        let version = UpdateVersion { e_tag: Some(format!("\"{etag}\"")), version: None };
        let opts = PutOptions { mode: PutMode::Update(version), ..PutOptions::default() };
        match self.block_on(self.store.put_opts(&self.key(rel), PutPayload::from(bytes), opts)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(explain(e)).with_context(|| format!("cannot write {}", self.url(rel))),
        }
    }

    /// Deletes one object; none there is fine.
    pub fn delete(&self, rel: &str) -> Result<()> {
        match self.block_on(self.store.delete(&self.key(rel))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(explain(e)).with_context(|| format!("cannot delete {}", self.url(rel))),
        }
    }

    /// Deletes keys with DeleteObjects, 1,000 to a request, several requests in flight; the
    /// keys a request could not delete are tried again twice, then returned with the error.
    pub fn delete_many(&self, rels: &[String]) -> Vec<(String, String)> {
        let mut todo: Vec<String> = rels.to_vec();
        let mut failed = Vec::new();
        for _ in 0..3 {
            if todo.is_empty() {
                break;
            }
            failed = self
                .block_on(
                    futures::stream::iter(todo.chunks(1000).map(|c| self.delete_chunk(c)))
                        .buffer_unordered(8)
                        .collect::<Vec<_>>(),
                )
                .into_iter()
                .flatten()
                .collect();
            todo = failed.iter().map(|(k, _)| k.clone()).collect();
        }
        failed
    }

    /// One DeleteObjects request: the keys it failed to delete, with the error.
    async fn delete_chunk(&self, rels: &[String]) -> Vec<(String, String)> {
        let keys: Vec<object_store::Result<Key>> = rels.iter().map(|r| Ok(self.key(r))).collect();
        let results: Vec<object_store::Result<Key>> =
            self.store.delete_stream(futures::stream::iter(keys).boxed()).collect().await;
        let mut pending: std::collections::BTreeSet<&str> = rels.iter().map(String::as_str).collect();
        let mut failed = Vec::new();
        for r in results {
            match r {
                Ok(k) => {
                    pending.remove(self.obj_key(k.as_ref()));
                }
                Err(object_store::Error::NotFound { path, .. }) => {
                    pending.remove(self.obj_key(&path));
                }
                Err(e) => {
                    let text = e.to_string();
                    // "DeleteObjects request failed for key <key>: <message>": that key alone.
                    let key = rels.iter().find(|r| text.contains(&format!("key {}/{r}: ", self.v2)));
                    match key {
                        Some(k) => {
                            pending.remove(k.as_str());
                            failed.push((k.clone(), text));
                        }
                        None => return rels.iter().map(|r| (r.clone(), text.clone())).collect(),
                    }
                }
            }
        }
        // Keys the answer did not mention: not known to be gone.
        failed.extend(pending.into_iter().map(|k| (k.to_string(), "not confirmed deleted".to_string())));
        failed
    }

    /// A full key, relative to `docker/registry/v2/`.
    fn obj_key<'k>(&self, full: &'k str) -> &'k str {
        full.strip_prefix(&self.v2).map(|k| k.trim_start_matches('/')).unwrap_or(full)
    }
}
