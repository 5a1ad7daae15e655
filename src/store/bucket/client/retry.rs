//! How long a request may take, and its retries: object_store's for its own requests
//! ([`options`], [`retry`]), [`send`]'s for those a provider makes itself, and [`NoAnswer`],
//! the request that had none; and `SAID`, what the provider's last error answer in a call said
//! (set as `watch.rs`'s HTTP client sees it), for the failing call's message.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use object_store::ClientOptions;
use object_store::client::{HttpClient, HttpError, HttpErrorKind, HttpRequest};

tokio::task_local! {
    /// What the provider's last error answer said, during one call of a [`Bucket`](super::Bucket): set by the
    /// HTTP client (`Watching`), read when the call fails.
    pub(super) static SAID: RefCell<Option<String>>;
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

/// How long a request may go without an answer: two minutes.
/// Test-only (feature `test-hooks`): `REGSWEEP_TEST_TIMEOUT_MS` sets it.
pub fn timeout() -> Duration {
    #[cfg(feature = "test-hooks")]
    if let Some(ms) = std::env::var("REGSWEEP_TEST_TIMEOUT_MS").ok().and_then(|v| v.parse().ok()) {
        return Duration::from_millis(ms);
    }
    Duration::from_secs(120)
}

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
