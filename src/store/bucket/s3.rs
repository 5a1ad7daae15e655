//! The bucket as regsweep speaks to it: flat listings by prefix, small reads, heads, puts (two
//! of them conditional), batched deletions, every request counted by kind. Blocking calls over
//! one async runtime: the worker threads of a run (rayon's, 128 by default) are the requests in
//! flight, as they are the reads in flight on a disk.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow};
use base64::Engine as _;
use futures::{StreamExt, TryStreamExt};
use md5::Digest as _;
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsAuthorizer};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpRequestBody, HttpResponse, HttpService, ReqwestConnector,
};
use object_store::path::Path as Key;
use object_store::{
    ClientOptions, GetOptions, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
    UpdateVersion,
};
use serde::{Deserialize, Serialize};

use crate::model::outcome::RequestCounts;
use crate::store::bucket::location::S3Location;

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
    match s3_error(&text) {
        Some(said) => anyhow!(said),
        // No S3 error: the innermost cause (a refused connection, a name not found, a status),
        // and the retries already made.
        None => {
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

/// The S3 error in a text holding an XML error answer: `Code: Message`, with what to check.
fn s3_error(text: &str) -> Option<String> {
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
        (Some(code), Some(msg)) => Some(format!("{code}: {msg}{}", hint(&code))),
        (Some(code), None) => Some(format!("{code}{}", hint(&code))),
        _ => None,
    }
}

/// A DeleteObjects answer: what was deleted, what was not and why.
#[derive(Deserialize)]
#[serde(rename = "DeleteResult")]
struct DeleteResult {
    #[serde(rename = "$value", default)]
    entries: Vec<DeleteEntry>,
}

#[derive(Deserialize)]
enum DeleteEntry {
    Deleted {
        #[serde(rename = "Key")]
        key: String,
    },
    Error {
        #[serde(rename = "Key")]
        key: String,
        #[serde(rename = "Code", default)]
        code: String,
        #[serde(rename = "Message", default)]
        message: String,
    },
    #[serde(other)]
    Other,
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
    /// The client DeleteObjects requests are sent with (counted as the store's).
    http: HttpClient,
    /// `https://endpoint/bucket`: where DeleteObjects requests go (path-style, as the store's).
    endpoint: String,
    region: String,
    /// False for an anonymous bucket: requests go unsigned.
    sign: bool,
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
        let options = ClientOptions::new()
            .with_allow_http(true)
            .with_timeout(Duration::from_secs(120))
            .with_pool_max_idle_per_host(256);
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
            .with_client_options(options.clone());
        if let Some(e) = &loc.endpoint {
            b = b.with_endpoint(e);
        }
        let mut sign = true;
        match (&loc.access_key, &loc.secret_key) {
            (Some(a), Some(s)) => {
                b = b.with_access_key_id(a).with_secret_access_key(s);
                if let Some(t) = &loc.session_token {
                    b = b.with_token(t);
                }
            }
            _ => {
                b = b.with_skip_signature(loc.anonymous);
                sign = !loc.anonymous;
            }
        }
        let store = b.build().with_context(|| format!("cannot use bucket {}", loc.shown()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the S3 client")?;
        let http = CountingConnector(requests.clone()).connect(&options).context("cannot start the S3 client")?;
        let endpoint = match &loc.endpoint {
            Some(e) => format!("{}/{}", e.trim_end_matches('/'), loc.bucket),
            None => format!("https://s3.{}.amazonaws.com/{}", loc.region, loc.bucket),
        };
        let root = loc.root.trim_matches('/');
        let v2 = if root.is_empty() { "docker/registry/v2".to_string() } else { format!("{root}/docker/registry/v2") };
        // Keys are the registry's, byte for byte (`Key::parse`; `Key::from` would percent-encode
        // `~`, `%` or a letter outside ASCII, and name another key): a root object_store cannot
        // name as it is is refused here, not used under another name.
        Key::parse(&v2).map_err(|e| anyhow!("rootdirectory {:?} cannot be used: {e}", loc.root))?;
        let region = loc.region.clone();
        Ok(Bucket { store, http, endpoint, region, sign, runtime, v2, shown: loc.shown(), requests })
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
        let key = self.key(prefix)?;
        let found: Vec<ObjectMeta> = self
            .block_on(self.store.list(Some(&key)).try_collect())
            .map_err(explain)
            .with_context(|| format!("cannot list {}", self.url(prefix)))?;
        Ok(found.into_iter().map(|m| self.obj(m)).collect())
    }

    /// The objects under `prefix` whose keys sort after `prefix/after` and before `prefix/until`
    /// (to the end without it): one range of a listing split for parallel requests.
    pub fn list_range(&self, prefix: &str, after: &str, until: Option<&str>) -> Result<Vec<Obj>> {
        let (key, offset) = (self.key(prefix)?, self.key(&format!("{prefix}/{after}"))?);
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
        let key = self.key(prefix)?;
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
        let key = self.key(rel)?;
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
        match self.block_on(self.store.head(&self.key(rel)?)) {
            Ok(m) => Ok(Some(self.obj(m))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(explain(e)).with_context(|| format!("cannot read {}", self.url(rel))),
        }
    }

    /// Writes an object, replacing any.
    pub fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        self.block_on(self.store.put(&self.key(rel)?, PutPayload::from(bytes)))
            .map_err(explain)
            .with_context(|| format!("cannot write {}", self.url(rel)))?;
        Ok(())
    }

    /// Creates an object only if there is none (`If-None-Match: *`): false when one exists.
    pub fn create(&self, rel: &str, bytes: Vec<u8>) -> Result<bool> {
        let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match self.block_on(self.store.put_opts(&self.key(rel)?, PutPayload::from(bytes), opts)) {
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
        match self.block_on(self.store.put_opts(&self.key(rel)?, PutPayload::from(bytes), opts)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(explain(e)).with_context(|| format!("cannot write {}", self.url(rel))),
        }
    }

    /// Deletes one object; none there is fine.
    pub fn delete(&self, rel: &str) -> Result<()> {
        match self.block_on(self.store.delete(&self.key(rel)?)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(explain(e)).with_context(|| format!("cannot delete {}", self.url(rel))),
        }
    }

    /// Deletes keys with DeleteObjects, 1,000 to a request, several requests in flight; the
    /// keys a request did not delete (or did not say it deleted) are tried again twice, then
    /// returned with what the server said.
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

    /// One DeleteObjects request: the keys it did not delete, each with what the server said
    /// of it. Sent here rather than by object_store, which retries the whole request when one
    /// key's error is `InternalError` and then fails every key with the raw answer, and counts
    /// a key the answer does not mention as deleted: here a key is deleted when the answer
    /// says so.
    async fn delete_chunk(&self, rels: &[String]) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        let mut keys: Vec<(&String, Key)> = Vec::new();
        for r in rels {
            match self.key(r) {
                Ok(k) => keys.push((r, k)),
                Err(e) => failed.push((r.clone(), format!("{e:#}"))),
            }
        }
        if keys.is_empty() {
            return failed;
        }
        let mut body = String::from("<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
        for (_, k) in &keys {
            body += &format!("<Object><Key>{}</Key></Object>", quick_xml::escape::escape(k.as_ref()));
        }
        body += "</Delete>";
        let answer = match self.post_delete(body.into_bytes()).await {
            Ok(a) => a,
            Err(e) => {
                failed.extend(keys.into_iter().map(|(r, _)| (r.clone(), format!("{e:#}"))));
                return failed;
            }
        };
        let mut deleted = std::collections::BTreeSet::new();
        let mut errors = std::collections::BTreeMap::new();
        for entry in answer.entries {
            match entry {
                DeleteEntry::Deleted { key } => {
                    deleted.insert(key);
                }
                // Not there: gone all the same.
                DeleteEntry::Error { key, code, .. } if code == "NoSuchKey" => {
                    deleted.insert(key);
                }
                DeleteEntry::Error { key, code, message } => {
                    errors.insert(key, if message.is_empty() { code } else { format!("{code}: {message}") });
                }
                DeleteEntry::Other => {}
            }
        }
        for (r, k) in keys {
            if let Some(e) = errors.get(k.as_ref()) {
                failed.push((r.clone(), e.clone()));
            } else if !deleted.contains(k.as_ref()) {
                failed.push((r.clone(), "not confirmed deleted (the answer to DeleteObjects did not name it)".into()));
            }
        }
        failed
    }

    /// Sends a DeleteObjects request (its XML body), signed; throttling, a server error or a
    /// broken connection is retried with backoff (the request deletes the same keys again),
    /// up to 10 times.
    async fn post_delete(&self, body: Vec<u8>) -> Result<DeleteResult> {
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body));
        let mut backoff = Duration::from_millis(100);
        let mut tries = 0;
        loop {
            tries += 1;
            let mut req: HttpRequest = http::Request::builder()
                .method("POST")
                .uri(format!("{}?delete", self.endpoint))
                .header("Content-Type", "application/xml")
                .header("Content-MD5", &md5)
                .body(HttpRequestBody::from(body.clone()))
                .context("cannot make a DeleteObjects request")?;
            if self.sign {
                let credential = self.store.credentials().get_credential().await.map_err(explain)?;
                AwsAuthorizer::new(&credential, "s3", &self.region)
                    .try_authorize(&mut req, None)
                    .map_err(explain)
                    .context("cannot sign a DeleteObjects request")?;
            }
            let err = match self.http.execute(req).await {
                Ok(res) => {
                    let status = res.status();
                    let text = match res.into_body().bytes().await {
                        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                        Err(e) => e.to_string(),
                    };
                    if status.is_success() {
                        match quick_xml::de::from_str::<DeleteResult>(&text) {
                            Ok(answer) => return Ok(answer),
                            // An error document with a 200 (S3 may answer so when it fails late).
                            Err(_) => match s3_error(&text) {
                                Some(said) if said.starts_with("InternalError") || said.starts_with("SlowDown") => said,
                                Some(said) => return Err(anyhow!(said)),
                                None => return Err(anyhow!("DeleteObjects answered what is not XML: {text:.200}")),
                            },
                        }
                    } else {
                        let said = s3_error(&text).unwrap_or_else(|| format!("status {status}"));
                        if !(status.is_server_error() || status.as_u16() == 429) {
                            return Err(anyhow!(said));
                        }
                        said
                    }
                }
                Err(e) => format!("{e}"),
            };
            if tries > 10 {
                return Err(anyhow!("{err} (after {} retries)", tries - 1));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(15));
        }
    }

    /// A full key, relative to `docker/registry/v2/`.
    fn obj_key<'k>(&self, full: &'k str) -> &'k str {
        full.strip_prefix(&self.v2).map(|k| k.trim_start_matches('/')).unwrap_or(full)
    }
}
