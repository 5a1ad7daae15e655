//! What is Google Cloud Storage's in the bucket backend: where a store is (`--root
//! gs://BUCKET/ROOTDIRECTORY` with application default credentials or the environment
//! object_store reads: `GOOGLE_SERVICE_ACCOUNT`, `GOOGLE_APPLICATION_CREDENTIALS`,
//! `GOOGLE_BASE_URL`, ...; or the registry's `storage.gcs`), the client built from it, and the
//! XML API's multi-object delete (up to 1,000 keys, S3's format), falling back to one DELETE a
//! key where the server does not take it.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use object_store::client::{HttpClient, HttpConnector, HttpRequest};
use object_store::gcp::{GoogleCloudStorage, GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path as Key;

use crate::model::warning::Warning;
use crate::store::bucket::client::{self, Batched, Bucket, Connector, Parts, Provider, Requests};
use crate::store::bucket::xml::{self, ErrorAnswer};
use crate::store::section::{Section, not_honoured};

/// Keys one multi-object delete takes, at most.
const BATCH: usize = 1000;

/// A store in a GCS bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcsLocation {
    pub bucket: String,
    /// The registry's `rootdirectory`, without slashes at either end ("" for none).
    pub root: String,
    /// `keyfile` of the registry's config: a service account's JSON key.
    pub keyfile: Option<String>,
    /// `credentials` of the registry's config (where there is no `keyfile`): a service
    /// account's key inline, as JSON.
    pub key: Option<String>,
}

impl GcsLocation {
    /// `gs://bucket/rootdirectory`, as the operator names it.
    pub fn shown(&self) -> String {
        client::shown_url("gs", &self.bucket, &self.root)
    }

    /// From `gs://BUCKET[/ROOTDIRECTORY]`.
    pub fn from_url(url: &str) -> Result<GcsLocation> {
        let (bucket, root) = client::split_url(url, "gs", "bucket")?;
        Ok(GcsLocation { bucket, root, ..GcsLocation::default() })
    }

    /// From the registry's `storage.gcs` section (its `REGISTRY_STORAGE_GCS_*` overrides
    /// applied), as 2.8 and 3.1.1 read it: `bucket`, `rootdirectory`, and the credentials:
    /// `keyfile`, else `credentials` (a service account's key as a map), else Google's default.
    /// object_store's `GOOGLE_BASE_URL` (another endpoint than the registry's, which is Google's
    /// or `STORAGE_EMULATOR_HOST`) is followed, in a warning.
    pub fn from_registry(
        s: &Section,
        env: &dyn Fn(&str) -> Option<String>,
        warnings: &mut Vec<Warning>,
    ) -> Result<GcsLocation> {
        if let Some(url) = env("GOOGLE_BASE_URL").filter(|u| !u.is_empty()) {
            warnings.push(not_honoured(format!(
                "GOOGLE_BASE_URL={url}: object_store's setting, not the registry's (it reaches Google, or \
                 STORAGE_EMULATOR_HOST): followed"
            )));
        }
        let Some(bucket) = s.text("bucket")? else { bail!("{} is missing", s.at("bucket")) };
        let keyfile = s.text("keyfile")?;
        let key = match (&keyfile, s.value("credentials")) {
            (None, Some(c @ serde_norway::Value::Mapping(_))) => Some(
                serde_json::to_string(c).with_context(|| format!("{} cannot be read as JSON", s.at("credentials")))?,
            ),
            (None, Some(_)) => bail!("{} is not a map (a service account's key, key by key)", s.at("credentials")),
            _ => None,
        };
        Ok(GcsLocation {
            bucket,
            root: s.text("rootdirectory")?.unwrap_or_default().trim_matches('/').to_string(),
            keyfile,
            key,
        })
    }
}

/// `STORAGE_EMULATOR_HOST`, which Google's client libraries (and so the registry's gcs driver)
/// read: an emulator's `host:port` (or URL), reached without credentials.
pub const EMULATOR_ENV: &str = "STORAGE_EMULATOR_HOST";

/// The emulator's base URL, where `STORAGE_EMULATOR_HOST` names one: `http://` where it gives
/// no scheme, as Google's libraries do.
fn emulator(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let host = env(EMULATOR_ENV).filter(|h| !h.trim().is_empty())?;
    let host = host.trim().trim_end_matches('/');
    Some(if host.contains("://") { host.to_string() } else { format!("http://{host}") })
}

/// Opens the bucket a location names.
pub fn open(loc: &GcsLocation) -> Result<Bucket> {
    let requests = Arc::new(Requests::default());
    let connector = || Connector { requests: requests.clone(), decode };
    let options = client::options();
    let mut b = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(&loc.bucket)
        .with_http_connector(connector())
        .with_retry(client::retry())
        .with_client_options(options.clone());
    if let Some(url) = emulator(&|k| std::env::var(k).ok()) {
        // As Google's libraries: the emulator, and no credentials (an empty bearer: object_store
        // would ask a metadata server for a token to write and delete).
        let none =
            object_store::StaticCredentialProvider::new(object_store::gcp::GcpCredential { bearer: String::new() });
        b = b.with_base_url(&url).with_skip_signature(true).with_credentials(Arc::new(none));
    } else if let Some(k) = &loc.keyfile {
        b = b.with_service_account_path(k);
    } else if let Some(k) = &loc.key {
        b = b.with_service_account_key(k);
    }
    let base = b
        .get_config_value(&GoogleConfigKey::BaseUrl)
        .unwrap_or_else(|| "https://storage.googleapis.com".into())
        .trim_end_matches('/')
        .to_string();
    let sign = b.get_config_value(&GoogleConfigKey::SkipSignature).is_none_or(|v| v != "true");
    let store = Arc::new(b.build().with_context(|| format!("cannot use bucket {}", loc.shown()))?);
    let http = connector().connect(&options).context("cannot start the GCS client")?;
    let provider = Arc::new(Gcs { store: store.clone(), http, base, bucket: loc.bucket.clone(), sign });
    Bucket::new(Parts { store, provider, root: loc.root.clone(), shown: loc.shown(), requests })
}

/// What a GCS error answer says (its XML API's), with what to check.
fn decode(_status: u16, body: &[u8]) -> Option<String> {
    ErrorAnswer::read(body).map(|a| a.told(hint))
}

fn hint(code: &str) -> &'static str {
    match code {
        "NoSuchBucket" => " (is the bucket's name right?)",
        "AccessDenied" | "AuthenticationRequired" | "InvalidSecurity" => {
            " (check the credentials: GOOGLE_APPLICATION_CREDENTIALS or GOOGLE_SERVICE_ACCOUNT, or the config's \
             keyfile; regsweep needs storage.objects list, get, create and delete)"
        }
        _ => "",
    }
}

/// A GCS bucket's own part: the multi-object delete.
struct Gcs {
    store: Arc<GoogleCloudStorage>,
    /// The client deletions are sent with.
    http: HttpClient,
    /// Where the XML API is (`https://storage.googleapis.com`), and the JSON API under
    /// `/storage/v1`.
    base: String,
    bucket: String,
    /// False without credentials (an emulator): requests go unsigned.
    sign: bool,
}

#[async_trait::async_trait]
impl Provider for Gcs {
    fn batch_size(&self) -> usize {
        BATCH
    }

    async fn delete_batch(&self, keys: &[Key]) -> Batched {
        let url = format!("{}/{}?delete", self.base, self.bucket);
        let sign = |mut req: HttpRequest| async move {
            if self.sign {
                let credential = self.store.credentials().get_credential().await?;
                let bearer = format!("Bearer {}", credential.bearer);
                req.headers_mut().insert("Authorization", bearer.parse().context("a bearer token that is no header")?);
            }
            Ok(req)
        };
        xml::post_delete(&self.http, &url, keys, sign, hint, true).await
    }

    /// A bucket with a soft-delete policy (GCS's default: 7 days) keeps deleted objects, and
    /// bills their space, for its retention duration.
    async fn freed_later(&self) -> Option<String> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct BucketMeta {
            soft_delete_policy: Option<SoftDelete>,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct SoftDelete {
            retention_duration_seconds: Option<String>,
        }
        let url = format!("{}/storage/v1/b/{}", self.base, self.bucket);
        let mut req: HttpRequest = http::Request::builder()
            .method("GET")
            .uri(format!("{url}?fields=softDeletePolicy"))
            .body(object_store::client::HttpRequestBody::empty())
            .ok()?;
        if self.sign {
            let credential = self.store.credentials().get_credential().await.ok()?;
            req.headers_mut().insert("Authorization", format!("Bearer {}", credential.bearer).parse().ok()?);
        }
        let body = client::answer(&self.http, req).await?;
        let meta: BucketMeta = serde_json::from_slice(&body).ok()?;
        let seconds: u64 = meta.soft_delete_policy?.retention_duration_seconds?.parse().ok()?;
        (seconds > 0).then(|| {
            format!(
                "the bucket's soft-delete policy keeps deleted objects {} days (billed as storage) before GCS frees their \
                 space",
                seconds.div_ceil(86_400)
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let loc = GcsLocation::from_url("gs://reg/store/").unwrap();
        assert_eq!((loc.bucket.as_str(), loc.root.as_str()), ("reg", "store"));
        assert_eq!(loc.shown(), "gs://reg/store");
        assert!(GcsLocation::from_url("gs:///x").is_err());
    }
}
