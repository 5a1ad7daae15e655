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

use super::client::{self, Batched, Retries};

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
fn delete_body(keys: &[Key]) -> Vec<u8> {
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

/// Sends a multi-object delete of `keys` to `url`, signed by `sign`; throttling, a server
/// error (but 501) or a broken connection is retried with backoff (the request deletes the
/// same keys again), up to 10 times. With `fallback`, a server that has no multi-object delete
/// (400, 404, 405, 501: fake-gcs-server answers 404) refuses it, and is sent one DELETE a key
/// from then on; without (S3, where object_store deletes even one key by DeleteObjects), the
/// batch fails with what the server said.
pub(super) async fn post_delete<F, Fut>(
    http: &HttpClient,
    url: &str,
    keys: &[Key],
    sign: F,
    hint: fn(&str) -> &'static str,
    fallback: bool,
) -> Batched
where
    F: Fn(HttpRequest) -> Fut,
    Fut: Future<Output = Result<HttpRequest>>,
{
    match post(http, url, delete_body(keys), sign, hint).await {
        Ok(Posted::Answer(a)) => Batched::Sent(a.failed(keys)),
        Ok(Posted::Refused(400 | 404 | 405 | 501, _)) if fallback => Batched::Refused,
        Ok(Posted::Refused(_, told)) => Batched::Failed(anyhow!(told)),
        Err(e) => Batched::Failed(e),
    }
}

/// What a multi-object delete came to: the answer, or a refusal (a status that is no failure
/// of the moment, with what the server said).
enum Posted {
    Answer(DeleteResult),
    Refused(u16, String),
}

async fn post<F, Fut>(
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
                if status.is_success() {
                    match answered(&bytes) {
                        Ok(answer) => return Ok(Posted::Answer(answer)),
                        Err(Some(said)) if said.transient() => (said.told(hint), false),
                        Err(Some(said)) => return Err(anyhow!(said.told(hint))),
                        Err(None) => {
                            let text = String::from_utf8_lossy(&bytes);
                            return Err(anyhow!("the deletion answered what is not XML: {text:.200}"));
                        }
                    }
                } else {
                    let told = ErrorAnswer::read(&bytes).map_or_else(|| format!("status {status}"), |s| s.told(hint));
                    // 501 says what is not there: no failure of the moment.
                    if !(status.is_server_error() && status.as_u16() != 501 || status.as_u16() == 429) {
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

/// A multi-object delete's successful answer: what it deleted, or the error document S3 may
/// send with a 200 when it fails late (`None`: neither). The error document is looked for
/// first: the DeleteResult reader takes any root and skips what it does not know, so it would
/// read an error as a deletion of nothing.
fn answered(body: &[u8]) -> std::result::Result<DeleteResult, Option<ErrorAnswer>> {
    match ErrorAnswer::read(body) {
        Some(said) => Err(Some(said)),
        None => DeleteResult::read(body).ok_or(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_answered_with_a_200_is_an_error_and_a_result_with_errors_is_a_result() {
        let late =
            b"<?xml version=\"1.0\"?><Error><Code>InternalError</Code><Message>We hit an error</Message></Error>";
        let Err(Some(said)) = answered(late) else { panic!("an error document read as a DeleteResult") };
        assert!(said.transient());
        let result = b"<DeleteResult><Deleted><Key>a</Key></Deleted>\
            <Error><Key>b&amp;c</Key><Code>AccessDenied</Code><Message>held</Message></Error></DeleteResult>";
        let Ok(answer) = answered(result) else { panic!("a DeleteResult not read") };
        let keys = [Key::from("a"), Key::from("b&c"), Key::from("d")];
        let failed: Vec<(String, String)> =
            answer.failed(&keys).into_iter().map(|(k, why)| (k.to_string(), why)).collect();
        assert_eq!(failed[0], ("b&c".into(), "AccessDenied: held".into()));
        assert_eq!(failed[1].0, "d");
        assert_eq!(failed.len(), 2);
        assert!(matches!(answered(b"not xml"), Err(None)));
    }
}
