//! The XML of S3's API, which GCS's XML API speaks too: error answers, and the multi-object
//! delete (`POST /BUCKET?delete`, up to 1,000 keys) with its per-key answers. A key is deleted
//! when the answer says so: one it names in an `<Error>`, or does not name at all, is not.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use anyhow::{Context, Result, anyhow};
use base64::Engine as _;
use md5::Digest as _;
use object_store::client::{HttpClient, HttpRequest, HttpRequestBody};
use object_store::path::Path as Key;
use serde::Deserialize;

use super::client::{self, Retries};

/// An error answer: `<Error><Code>…</Code><Message>…</Message></Error>`.
#[derive(Deserialize)]
#[serde(rename = "Error")]
pub(super) struct ErrorAnswer {
    #[serde(rename = "Code")]
    pub code: String,
    #[serde(rename = "Message", default)]
    message: String,
}

impl ErrorAnswer {
    pub fn read(body: &[u8]) -> Option<ErrorAnswer> {
        quick_xml::de::from_str(std::str::from_utf8(body).ok()?).ok()
    }

    /// Worth sending again: the server failed or asks to slow down.
    pub fn transient(&self) -> bool {
        matches!(self.code.as_str(), "InternalError" | "SlowDown" | "ServiceUnavailable")
    }

    /// `Code: Message`, with what `hint` says to check for the code.
    pub fn told(&self, hint: fn(&str) -> &'static str) -> String {
        let hint = hint(&self.code);
        match self.message.is_empty() {
            true => format!("{}{hint}", self.code),
            false => format!("{}: {}{hint}", self.code, self.message),
        }
    }
}

/// The body of a multi-object delete of `keys`.
pub(super) fn delete_body(keys: &[Key]) -> Vec<u8> {
    let mut body = String::from("<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for k in keys {
        body += &format!("<Object><Key>{}</Key></Object>", quick_xml::escape::escape(k.as_ref()));
    }
    body += "</Delete>";
    body.into_bytes()
}

/// A multi-object delete's answer: what was deleted, what was not and why.
#[derive(Deserialize)]
#[serde(rename = "DeleteResult")]
pub(super) struct DeleteResult {
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

impl DeleteResult {
    pub fn read(body: &[u8]) -> Option<DeleteResult> {
        quick_xml::de::from_reader(body).ok()
    }

    /// The keys of `keys` it does not say it deleted (one not there is gone all the same),
    /// each with why.
    pub fn failed(self, keys: &[Key]) -> Vec<(Key, String)> {
        let mut deleted = BTreeSet::new();
        let mut errors = BTreeMap::new();
        for entry in self.entries {
            match entry {
                DeleteEntry::Deleted { key } => {
                    deleted.insert(key);
                }
                DeleteEntry::Error { key, code, .. } if code == "NoSuchKey" => {
                    deleted.insert(key);
                }
                DeleteEntry::Error { key, code, message } => {
                    errors.insert(key, if message.is_empty() { code } else { format!("{code}: {message}") });
                }
                DeleteEntry::Other => {}
            }
        }
        keys.iter()
            .filter_map(|k| match errors.get(k.as_ref()) {
                Some(e) => Some((k.clone(), e.clone())),
                None if deleted.contains(k.as_ref()) => None,
                None => Some((k.clone(), "not confirmed deleted (the answer to the deletion did not name it)".into())),
            })
            .collect()
    }
}

/// What a multi-object delete came to: the answer, or a refusal (a status that is no failure
/// of the moment, with what the server said).
pub(super) enum Posted {
    Answer(DeleteResult),
    Refused(#[cfg_attr(not(feature = "gcs"), allow(dead_code))] u16, String),
}

/// Sends a multi-object delete (its XML body) to `url`, signed by `sign`; throttling, a server
/// error or a broken connection is retried with backoff (the request deletes the same keys
/// again), up to 10 times.
pub(super) async fn post_delete<F, Fut>(
    http: &HttpClient,
    url: &str,
    body: Vec<u8>,
    sign: F,
    hint: fn(&str) -> &'static str,
) -> Result<Posted>
where
    F: Fn(HttpRequest) -> Fut,
    Fut: Future<Output = Result<HttpRequest>>,
{
    let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body));
    let mut retries = Retries::default();
    loop {
        let req: HttpRequest = http::Request::builder()
            .method("POST")
            .uri(url)
            .header("Content-Type", "application/xml")
            .header("Content-MD5", &md5)
            .body(HttpRequestBody::from(body.clone()))
            .context("cannot make a deletion request")?;
        let (err, timed_out) = match http.execute(sign(req).await?).await {
            Ok(res) => {
                let status = res.status();
                let bytes = match res.into_body().bytes().await {
                    Ok(b) => b.to_vec(),
                    Err(e) => {
                        let timed_out = client::timed_out(&e);
                        retries.after(e.to_string(), timed_out).await?;
                        continue;
                    }
                };
                let said = ErrorAnswer::read(&bytes);
                if status.is_success() {
                    match (DeleteResult::read(&bytes), said) {
                        (Some(answer), _) => return Ok(Posted::Answer(answer)),
                        // An error document with a 200 (S3 may answer so when it fails late).
                        (None, Some(said)) if said.transient() => (said.told(hint), false),
                        (None, Some(said)) => return Err(anyhow!(said.told(hint))),
                        (None, None) => {
                            let text = String::from_utf8_lossy(&bytes);
                            return Err(anyhow!("the deletion answered what is not XML: {text:.200}"));
                        }
                    }
                } else {
                    let told = said.map_or_else(|| format!("status {status}"), |s| s.told(hint));
                    if !(status.is_server_error() || status.as_u16() == 429) {
                        return Ok(Posted::Refused(status.as_u16(), told));
                    }
                    (told, false)
                }
            }
            Err(e) => (format!("{e}"), client::timed_out(&e)),
        };
        retries.after(err, timed_out).await?;
    }
}
