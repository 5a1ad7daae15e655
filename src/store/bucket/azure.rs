//! What is Azure's in the bucket backend: where a store is (`--root
//! azure://CONTAINER/ROOTDIRECTORY` with the environment object_store reads:
//! `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, a SAS, `AZURE_STORAGE_USE_EMULATOR`
//! with `AZURITE_BLOB_STORAGE_URL`; or the registry's `storage.azure`), the client built from it,
//! Azure's error answers, and Blob Batch deletion (up to 256 blobs a request) with each
//! subrequest's answer read, falling back to one DELETE a blob where the account takes no batch.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use object_store::azure::{AzureAuthorizer, AzureConfigKey, MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::client::{HttpClient, HttpConnector, HttpRequest, HttpRequestBody};
use object_store::path::Path as Key;
use serde::Deserialize;

use crate::store::bucket::client::{self, Bucket, Connector, Parts, Provider, Requests};

/// Blobs one Blob Batch request deletes, at most.
const BATCH: usize = 256;

/// A store in an Azure container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AzureLocation {
    pub container: String,
    /// The registry's `rootdirectory`, without slashes at either end ("" for none).
    pub root: String,
    /// `accountname` / `accountkey` of the registry's config; else the environment's.
    pub account: Option<String>,
    pub key: Option<String>,
    /// The registry's `realm` (`core.windows.net` by default): the endpoint is
    /// `https://<account>.blob.<realm>`.
    pub realm: Option<String>,
}

impl AzureLocation {
    /// `azure://container/rootdirectory`, as the operator names it.
    pub fn shown(&self) -> String {
        client::shown_url("azure", &self.container, &self.root)
    }

    /// From `azure://CONTAINER[/ROOTDIRECTORY]`.
    pub fn from_url(url: &str) -> Result<AzureLocation> {
        let (container, root) = client::split_url(url, "azure", "container")?;
        Ok(AzureLocation { container, root, ..AzureLocation::default() })
    }

    /// From the registry's `storage.azure` section (with its `REGISTRY_STORAGE_AZURE_*`
    /// overrides applied by the caller).
    pub fn from_registry(keys: &HashMap<String, String>) -> Result<AzureLocation> {
        let get = |k: &str| keys.get(k).filter(|v| !v.is_empty()).cloned();
        let Some(container) = get("container") else { bail!("storage.azure has no container") };
        Ok(AzureLocation {
            container,
            root: get("rootdirectory").unwrap_or_default().trim_matches('/').to_string(),
            account: get("accountname"),
            key: get("accountkey"),
            realm: get("realm"),
        })
    }
}

/// Opens the container a location names.
pub fn open(loc: &AzureLocation) -> Result<Bucket> {
    let requests = Arc::new(Requests::default());
    let connector = || Connector { requests: requests.clone(), decode };
    let options = client::options();
    let mut b = MicrosoftAzureBuilder::from_env()
        .with_container_name(&loc.container)
        .with_http_connector(connector())
        .with_retry(client::retry())
        .with_client_options(options.clone());
    if let Some(a) = &loc.account {
        b = b.with_account(a);
    }
    if let Some(k) = &loc.key {
        b = b.with_access_key(k);
    }
    let account = b.get_config_value(&AzureConfigKey::AccountName).unwrap_or_else(|| "devstoreaccount1".into());
    let emulator = b.get_config_value(&AzureConfigKey::UseEmulator).is_some_and(|v| v == "true");
    let service = match (b.get_config_value(&AzureConfigKey::Endpoint), &loc.realm) {
        _ if emulator => {
            let url = std::env::var("AZURITE_BLOB_STORAGE_URL").unwrap_or_else(|_| "http://127.0.0.1:10000".into());
            format!("{}/{account}", url.trim_end_matches('/'))
        }
        (Some(e), _) => e.trim_end_matches('/').to_string(),
        (None, Some(realm)) => format!("https://{account}.blob.{realm}"),
        (None, None) => format!("https://{account}.blob.core.windows.net"),
    };
    if !emulator && b.get_config_value(&AzureConfigKey::Endpoint).is_none() {
        b = b.with_endpoint(service.clone());
    }
    let store = Arc::new(b.build().with_context(|| format!("cannot use container {}", loc.shown()))?);
    let http = connector().connect(&options).context("cannot start the Azure client")?;
    let provider = Arc::new(Azure {
        store: store.clone(),
        http,
        container_url: format!("{service}/{}", loc.container),
        account,
        batches: AtomicBool::new(true),
    });
    Bucket::new(Parts {
        store: store.clone(),
        pages: store,
        provider,
        root: loc.root.clone(),
        shown: loc.shown(),
        requests,
    })
}

/// Azure's error answer: `<Error><Code>…</Code><Message>…</Message></Error>`.
#[derive(Deserialize)]
#[serde(rename = "Error")]
struct ErrorAnswer {
    #[serde(rename = "Code")]
    code: String,
    #[serde(rename = "Message", default)]
    message: String,
}

/// What an Azure error answer says, with what to check.
fn decode(_status: u16, body: &[u8]) -> Option<String> {
    let a: ErrorAnswer = quick_xml::de::from_str(std::str::from_utf8(body).ok()?).ok()?;
    let hint = match a.code.as_str() {
        "ContainerNotFound" => " (is the container's name right, and the account?)",
        "AuthenticationFailed" | "AuthorizationFailure" | "AuthorizationPermissionMismatch" => {
            " (check the credentials: AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY or a SAS, or the \
             config's accountname and accountkey; regsweep needs to list, read, write and delete)"
        }
        _ => "",
    };
    // The message carries a request id and a time on lines of their own.
    let message = a.message.lines().next().unwrap_or_default();
    Some(format!("{}: {message}{hint}", a.code))
}

/// An Azure container's own part: Blob Batch.
struct Azure {
    store: Arc<MicrosoftAzure>,
    /// The client batches are sent with.
    http: HttpClient,
    /// `<service>/<container>`: where batches go, and the blobs' URLs begin.
    container_url: String,
    account: String,
    /// False once the account refused a batch (a hierarchical namespace, an emulator without
    /// it): one DELETE a blob from then on.
    batches: AtomicBool,
}

/// Why a whole batch request failed: a refusal of batches, or anything else.
enum Refused {
    Batches,
    Other(String),
}

#[async_trait::async_trait]
impl Provider for Azure {
    fn batch_size(&self) -> usize {
        BATCH
    }

    async fn delete_batch(&self, keys: &[Key]) -> Option<Vec<(Key, String)>> {
        if !self.batches.load(Ordering::Relaxed) {
            return None;
        }
        match self.post_batch(keys).await {
            Ok(failed) => Some(failed),
            Err(Refused::Other(e)) => Some(keys.iter().map(|k| (k.clone(), e.clone())).collect()),
            Err(Refused::Batches) => {
                self.batches.store(false, Ordering::Relaxed);
                None
            }
        }
    }

    /// An account with blob soft delete (its service properties' `DeleteRetentionPolicy`)
    /// keeps deleted blobs, and bills their space, for so many days.
    async fn freed_later(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct StorageServiceProperties {
            #[serde(rename = "DeleteRetentionPolicy")]
            policy: Option<RetentionPolicy>,
        }
        #[derive(Deserialize)]
        struct RetentionPolicy {
            #[serde(rename = "Enabled", default)]
            enabled: bool,
            #[serde(rename = "Days")]
            days: Option<u32>,
        }
        let credential = self.store.credentials().get_credential().await.ok()?;
        let service = self.container_url.rsplit_once('/')?.0;
        let mut req: HttpRequest = http::Request::builder()
            .method("GET")
            .uri(format!("{service}/?restype=service&comp=properties"))
            .body(HttpRequestBody::empty())
            .ok()?;
        AzureAuthorizer::new(&credential, &self.account).try_authorize(&mut req).ok()?;
        let body = client::answer(&self.http, req).await?;
        let props: StorageServiceProperties = quick_xml::de::from_reader(body.as_slice()).ok()?;
        let policy = props.policy.filter(|p| p.enabled)?;
        Some(format!(
            "the account's blob soft delete keeps deleted blobs {} days (billed as storage) before Azure frees their space",
            policy.days.map_or_else(|| "some".to_string(), |d| d.to_string())
        ))
    }
}

/// A blob's path in a URL: each byte outside the unreserved set and `/` percent-encoded.
fn url_path(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Azure {
    /// One Blob Batch request deleting `keys`, retried with backoff on throttling, a server
    /// error or a broken connection: the keys not deleted, with why (a blob the answer does not
    /// name is not deleted; one not there is gone all the same).
    async fn post_batch(&self, keys: &[Key]) -> Result<Vec<(Key, String)>, Refused> {
        let other = |e: anyhow::Error| Refused::Other(format!("{e:#}"));
        let credential = self.store.credentials().get_credential().await.map_err(|e| other(e.into()))?;
        let authorizer = AzureAuthorizer::new(&credential, &self.account);
        let boundary = format!("batch_{:032x}", rand_u128());
        let mut body = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let url = format!("{}/{}", self.container_url, url_path(k.as_ref()));
            let mut sub: HttpRequest = http::Request::builder()
                .method("DELETE")
                .uri(&url)
                .header("Content-Length", "0")
                .body(HttpRequestBody::empty())
                .map_err(|e| other(e.into()))?;
            authorizer.try_authorize(&mut sub).map_err(|e| other(e.into()))?;
            let path = sub.uri().path_and_query().map_or_else(|| sub.uri().path().to_string(), |p| p.to_string());
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: \
                     {i}\r\n\r\nDELETE {path} HTTP/1.1\r\n"
                )
                .as_bytes(),
            );
            for (name, value) in sub.headers() {
                body.extend_from_slice(name.as_str().as_bytes());
                body.extend_from_slice(b": ");
                body.extend_from_slice(value.as_bytes());
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"\r\n\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let mut backoff = Duration::from_millis(100);
        let mut tries = 0;
        loop {
            tries += 1;
            let mut req: HttpRequest = http::Request::builder()
                .method("POST")
                .uri(format!("{}?restype=container&comp=batch", self.container_url))
                .header("Content-Type", format!("multipart/mixed; boundary={boundary}"))
                .header("Content-Length", body.len().to_string())
                .body(HttpRequestBody::from(body.clone()))
                .map_err(|e| other(e.into()))?;
            authorizer.try_authorize(&mut req).map_err(|e| other(e.into()))?;
            let err = match self.http.execute(req).await {
                Ok(res) => {
                    let status = res.status().as_u16();
                    let content_type =
                        res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                    let bytes = res.into_body().bytes().await.map(|b| b.to_vec()).unwrap_or_default();
                    let said = decode(status, &bytes).unwrap_or_else(|| format!("status {status}"));
                    match status {
                        200..=299 => {
                            let Some(b) = content_type.split("boundary=").nth(1) else {
                                return Err(Refused::Other(format!("a batch answered without parts: {said}")));
                            };
                            return Ok(answers(keys, &bytes, b.trim_matches('"')));
                        }
                        // No batch here (Azurite before batches, a hierarchical namespace).
                        400 | 403 | 404 | 405 | 409 | 501 => return Err(Refused::Batches),
                        429 | 500..=599 => said,
                        _ => return Err(Refused::Other(said)),
                    }
                }
                Err(e) => format!("{e}"),
            };
            if tries > 10 {
                return Err(Refused::Other(format!("{err} (after {} retries)", tries - 1)));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(15));
        }
    }
}

/// The keys a batch's answer does not say it deleted, each with why: each part names its
/// subrequest (`Content-ID`) and holds its answer (`HTTP/1.1 202 Accepted`, an
/// `x-ms-error-code`).
fn answers(keys: &[Key], body: &[u8], boundary: &str) -> Vec<(Key, String)> {
    let text = String::from_utf8_lossy(body);
    let mut said: BTreeMap<usize, Result<(), String>> = BTreeMap::new();
    for part in text.split(&format!("--{boundary}")) {
        let mut id = None;
        let mut status = None;
        let mut code = None;
        for line in part.lines().map(str::trim) {
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-id:") {
                id = v.trim().parse::<usize>().ok();
            } else if let Some(v) = line.strip_prefix("HTTP/1.1 ") {
                status = Some(v.to_string());
            } else if lower.starts_with("x-ms-error-code:") {
                code = line.split_once(':').map(|(_, v)| v.trim().to_string());
            }
        }
        let (Some(id), Some(status)) = (id, status) else { continue };
        let ok = status.starts_with('2') || status.starts_with("404");
        said.insert(id, if ok { Ok(()) } else { Err(code.unwrap_or(status)) });
    }
    keys.iter()
        .enumerate()
        .filter_map(|(i, k)| match said.get(&i) {
            Some(Ok(())) => None,
            Some(Err(e)) => Some((k.clone(), e.clone())),
            None => Some((k.clone(), "not confirmed deleted (the batch's answer did not name it)".into())),
        })
        .collect()
}

/// A random number for a batch's boundary (no two batches in flight share one).
fn rand_u128() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    (u128::from(h.finish()) << 64) | u128::from(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_answer_is_read_part_by_part() {
        let keys: Vec<Key> = ["a", "b", "c", "d"].iter().map(|k| Key::parse(k).unwrap()).collect();
        let body = "--r\r\nContent-Type: application/http\r\nContent-ID: 0\r\n\r\nHTTP/1.1 202 Accepted\r\n\r\n\
                    --r\r\nContent-ID: 2\r\n\r\nHTTP/1.1 404 The specified blob does not exist.\r\nx-ms-error-code: BlobNotFound\r\n\r\n\
                    --r\r\nContent-ID: 1\r\n\r\nHTTP/1.1 403 Forbidden\r\nx-ms-error-code: AuthorizationFailure\r\n\r\n--r--\r\n";
        let failed = answers(&keys, body.as_bytes(), "r");
        assert_eq!(failed.len(), 2, "{:?}", failed);
        assert_eq!((failed[0].0.as_ref(), failed[0].1.as_str()), ("b", "AuthorizationFailure"));
        assert!(failed[1].0.as_ref() == "d" && failed[1].1.contains("not confirmed"));
        // A part naming no subrequest of the batch counts for none.
        assert_eq!(answers(&keys[..1], b"--r\r\nContent-ID: 7\r\n\r\nHTTP/1.1 202 Accepted\r\n--r--", "r").len(), 1);
        assert_eq!(url_path("r/a b~%/ü"), "r/a%20b~%25/%C3%BC");
    }

    #[test]
    fn locations() {
        let loc = AzureLocation::from_url("azure://reg/store/").unwrap();
        assert_eq!((loc.container.as_str(), loc.root.as_str()), ("reg", "store"));
        assert_eq!(loc.shown(), "azure://reg/store");
        assert!(AzureLocation::from_url("azure:///x").is_err());
        let keys: HashMap<String, String> = [("container", "c"), ("accountname", "acct"), ("rootdirectory", "/r/")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let loc = AzureLocation::from_registry(&keys).unwrap();
        assert_eq!((loc.container.as_str(), loc.root.as_str(), loc.account.as_deref()), ("c", "r", Some("acct")));
    }
}
