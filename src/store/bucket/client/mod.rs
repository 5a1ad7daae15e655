//! The bucket as regsweep speaks to it, whatever the provider: flat listings by prefix, page by
//! page, small reads, heads, puts (two of them conditional), batched deletions, every call
//! counted by kind where it is made. An `Arc<dyn ObjectStore>` underneath; what one kind of
//! bucket adds (its builder and credentials, its batched deletion, how its error answers read)
//! is a [`Provider`] in a file of its own ([`super::s3`], [`super::memory`]). Blocking calls over
//! one async runtime: the worker threads of a run (rayon's, 128 by default) are the requests in
//! flight, as they are the reads in flight on a disk. Here the [`Bucket`] and its reads and
//! writes; its listings in `list.rs`, its deletions in `delete.rs`, what it counts and watches in
//! `watch.rs`, timeouts and retries in `retry.rs`, the [`Provider`] trait in `provider.rs`, URLs
//! in `url.rs`.

mod delete;
mod list;
mod provider;
mod retry;
mod url;
mod watch;

pub use provider::{Batched, Listed, Page, PagedStore, Provider};
pub use retry::{Answer, NoAnswer, Retries, answer, options, retry, send, timed_out, timeout};
pub use url::{shown_url, split_url};
pub use watch::{Connector, Requests};

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow};
use object_store::path::Path as Key;
use object_store::{GetOptions, ObjectMeta, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use super::gate::{Gate, Pass};
use retry::SAID;
use watch::explain;

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

/// What the requests of one kind in flight may grow to: more than a run sends at once.
const MAX_IN_FLIGHT: usize = 256;

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

    /// When the space of deleted objects is freed, where not at once: one GET of the bucket's
    /// (or account's) settings, counted as the run's other GETs.
    pub fn freed_later(&self) -> Option<String> {
        Requests::add(&self.requests.get);
        self.block_on(self.provider.freed_later())
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
