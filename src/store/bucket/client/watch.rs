//! What the bucket's client watches in every call: the requests sent, counted by kind; the
//! throttling and timeouts its HTTP client sees; what a provider's error answer said, kept for
//! the failing call's message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::anyhow;
use object_store::ClientOptions;
use object_store::client::{HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService};
use serde::Serialize;

use super::retry::{NoAnswer, SAID, timed_out};
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
    /// Tries with no answer within the [`timeout`](super::timeout): retried once.
    pub timed_out: AtomicU64,
}

impl Requests {
    pub(super) fn add(c: &AtomicU64) {
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

/// An object store's error, told briefly: what the provider's answer said where it said
/// something (its XML answer otherwise fills a screen, three times over), else the innermost
/// cause (a refused connection, a name not found, a status).
pub(super) fn explain(e: object_store::Error) -> anyhow::Error {
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
