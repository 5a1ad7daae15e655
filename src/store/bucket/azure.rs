//! What is Azure's in the bucket backend: where a store is (`--root
//! azure://CONTAINER/ROOTDIRECTORY` with the environment object_store reads:
//! `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, a SAS, `AZURE_STORAGE_USE_EMULATOR`
//! with `AZURITE_BLOB_STORAGE_URL`; or the registry's `storage.azure`), the client built from it,
//! Azure's error answers, and Blob Batch deletion (up to 256 blobs a request) with each
//! subrequest's answer read, falling back to one DELETE a blob where the account takes no batch.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use object_store::ObjectMeta;
use object_store::azure::{AzureAuthorizer, AzureConfigKey, MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::client::{HttpClient, HttpConnector, HttpRequest, HttpRequestBody};
use object_store::list::PaginatedListOptions;
use object_store::path::Path as Key;
use serde::Deserialize;

use crate::model::warning::Warning;
use crate::store::bucket::client::{self, Batched, Bucket, Connector, Listed, Page, Parts, Provider, Requests};
use crate::store::section::{Section, not_honoured};

/// Blobs one Blob Batch request deletes, at most.
const BATCH: usize = 256;

/// A store in an Azure container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AzureLocation {
    pub container: String,
    /// The registry's `rootdirectory`, without slashes at either end ("" for none).
    pub root: String,
    /// Where the registry's config says the account is and how it signs; `None` for `--root
    /// azure://...`, which object_store's environment settles.
    pub service: Option<AzureService>,
}

/// The account as the registry's `storage.azure` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AzureService {
    pub account: String,
    /// `serviceurl` (3.x), else `https://<accountname>.blob.<realm>` (`core.windows.net` by
    /// default): every request goes there.
    pub url: String,
    pub auth: AzureAuth,
    /// `skipverify` (3.x): the server's certificate is not checked.
    pub skip_verify: bool,
}

/// How requests are signed: `credentials.type` of 3.x (2.8 has only the account key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AzureAuth {
    /// `shared_key` (and 2.8): `accountkey`.
    SharedKey { key: String },
    /// `client_secret`, or `default_credentials` where the environment holds one
    /// (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`).
    ClientSecret { tenant: String, client: String, secret: String, authority: Option<String> },
    /// `default_credentials` with a federated token (AKS workload identity:
    /// `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`).
    WorkloadIdentity { tenant: String, client: String, token_file: String, authority: Option<String> },
    /// `default_credentials` otherwise: the machine's managed identity where its metadata
    /// service answers (`AZURE_CLIENT_ID` picks a user-assigned one), else the Azure CLI's login,
    /// decided when the container is opened.
    ManagedIdentityOrCli { client: Option<String> },
}

/// The environment variables object_store reads for `--root azure://`; with `--config` the
/// registry's file says where and how, and these are not read.
const OBJECT_STORE_ENV: [&str; 6] = [
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_ENDPOINT",
    "AZURE_STORAGE_USE_EMULATOR",
    "AZURITE_BLOB_STORAGE_URL",
];

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

    /// From the registry's `storage.azure` section, as 2.8 and 3.1.1 read it: `accountname` and
    /// `container` required; the endpoint `serviceurl`, else from `realm`; signed as
    /// `credentials.type` says (3.x: `shared_key` with `accountkey`, `client_secret` with
    /// `tenantid`, `clientid`, `secret`, `default_credentials` with what object_store can do of
    /// Azure's chain), or with `accountkey` where there is no `credentials` (2.8).
    /// `connectionstring` the registry reads and never uses: nor does regsweep, in a warning.
    /// `rootdirectory` is 3.x's: 2.8's store is at the container's root.
    pub fn from_registry(
        s: &Section,
        env: &dyn Fn(&str) -> Option<String>,
        warnings: &mut Vec<Warning>,
    ) -> Result<AzureLocation> {
        let var = |k: &str| env(k).filter(|v| !v.is_empty());
        let Some(container) = s.text("container")? else { bail!("{} is missing", s.at("container")) };
        let Some(account) = s.text("accountname")? else {
            bail!("{} is missing (both registries require it)", s.at("accountname"))
        };
        let realm = s.text("realm")?.unwrap_or_else(|| "core.windows.net".into());
        let service_url = s.text("serviceurl")?;
        let kind = s.text("credentials.type")?;
        if s.value("credentials").is_some_and(|c| !c.is_mapping()) {
            bail!("{} is not a map", s.at("credentials"));
        }
        let auth = match kind.as_deref() {
            None if service_url.is_some() => bail!(
                "{} is given without {}: registry 3 refuses to start so (invalid credentials type) and registry 2.8 \
                 ignores serviceurl (it goes to https://{account}.blob.{realm}); add credentials: {{type: shared_key}} \
                 or whichever the registry uses",
                s.at("serviceurl"),
                s.at("credentials.type")
            ),
            None | Some("shared_key") => {
                let Some(key) = s.text("accountkey")? else {
                    bail!("{} is missing (a shared key signs with it)", s.at("accountkey"))
                };
                AzureAuth::SharedKey { key }
            }
            Some("client_secret") => {
                let need = |k: &str| -> Result<String> {
                    s.text(&format!("credentials.{k}"))?.with_context(|| {
                        format!("{} is missing (client_secret needs it)", s.at(&format!("credentials.{k}")))
                    })
                };
                AzureAuth::ClientSecret {
                    tenant: need("tenantid")?,
                    client: need("clientid")?,
                    secret: need("secret")?,
                    authority: var("AZURE_AUTHORITY_HOST"),
                }
            }
            Some("default_credentials") => default_credentials(&var)?,
            Some(other) => bail!(
                "{} is {other:?}: the registry takes shared_key, client_secret or default_credentials",
                s.at("credentials.type")
            ),
        };
        if kind.as_deref() != Some("client_secret") {
            for k in ["clientid", "tenantid", "secret"] {
                if s.value(&format!("credentials.{k}")).is_some() {
                    warnings.push(not_honoured(format!(
                        "{}: the registry uses it only with credentials.type client_secret: ignored",
                        s.at(&format!("credentials.{k}"))
                    )));
                }
            }
        }
        if s.value("connectionstring").is_some() {
            warnings.push(not_honoured(format!(
                "{}: the registry (3.1.1) reads it but never uses it: its endpoint is serviceurl, else \
                 https://ACCOUNT.blob.REALM, and credentials.type says how it signs; regsweep does the same",
                s.at("connectionstring")
            )));
        }
        for name in OBJECT_STORE_ENV.iter().filter(|n| var(n).is_some()) {
            warnings.push(not_honoured(format!(
                "{name}: not read with --config (the registry's file says where the store is, and its \
                 REGISTRY_STORAGE_AZURE_* variables override it)"
            )));
        }
        let url = service_url.unwrap_or_else(|| format!("https://{account}.blob.{realm}"));
        let url = url.trim_end_matches('/').to_string();
        if !url.starts_with("https://") && !url.starts_with("http://") {
            // Not echoed: a connection string pasted there carries the account key.
            bail!("{} is not an http(s) URL (https://ACCOUNT.blob.core.windows.net)", s.at("serviceurl"));
        }
        // 2.8's driver (a section without credentials: 3.x refuses one) has no rootdirectory:
        // its store is at the container's root.
        let mut root = s.text("rootdirectory")?.unwrap_or_default().trim_matches('/').to_string();
        if kind.is_none() && !root.is_empty() {
            warnings.push(not_honoured(format!(
                "{}: registry 2.8's azure driver has none (its store is at the container's root), and without \
                 credentials.type this is 2.8's section (registry 3 refuses it): read at the container's root",
                s.at("rootdirectory")
            )));
            root.clear();
        }
        Ok(AzureLocation {
            container,
            root,
            service: Some(AzureService { account, url, auth, skip_verify: s.flag("skipverify", false)? }),
        })
    }
}

/// `default_credentials`: what the registry's DefaultAzureCredential would take, in its order
/// (the environment's client secret, a workload identity, a managed identity, the Azure CLI),
/// as far as object_store has it; a certificate or a user's password in the environment (which
/// Azure's chain would take first) is an error, as regsweep cannot sign with those.
fn default_credentials(var: &dyn Fn(&str) -> Option<String>) -> Result<AzureAuth> {
    let authority = var("AZURE_AUTHORITY_HOST");
    if let (Some(tenant), Some(client)) = (var("AZURE_TENANT_ID"), var("AZURE_CLIENT_ID")) {
        if let Some(secret) = var("AZURE_CLIENT_SECRET") {
            return Ok(AzureAuth::ClientSecret { tenant, client, secret, authority });
        }
        for cannot in ["AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_USERNAME"] {
            if var(cannot).is_some() {
                bail!(
                    "credentials.type default_credentials: {cannot} is set, so the registry signs with a certificate or a \
                     user's password, which regsweep cannot (it takes a client secret, a workload identity, a managed \
                     identity or the Azure CLI's login)"
                );
            }
        }
        if let Some(token_file) = var("AZURE_FEDERATED_TOKEN_FILE") {
            return Ok(AzureAuth::WorkloadIdentity { tenant, client, token_file, authority });
        }
    }
    Ok(AzureAuth::ManagedIdentityOrCli { client: var("AZURE_CLIENT_ID") })
}

/// Whether a program is on `PATH`.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Opens the container a location names.
pub fn open(loc: &AzureLocation) -> Result<Bucket> {
    let requests = Arc::new(Requests::default());
    let connector = || Connector { requests: requests.clone(), decode };
    let mut options = client::options();
    let (b, service, account) = match &loc.service {
        Some(service) => {
            if service.skip_verify {
                options = options.with_allow_invalid_certificates(true);
            }
            let b = MicrosoftAzureBuilder::new()
                .with_container_name(&loc.container)
                .with_http_connector(connector())
                .with_retry(client::retry())
                .with_client_options(options.clone())
                .with_account(&service.account)
                .with_endpoint(service.url.clone());
            (signed(b, &service.auth)?, service.url.clone(), service.account.clone())
        }
        None => {
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_container_name(&loc.container)
                .with_http_connector(connector())
                .with_retry(client::retry())
                .with_client_options(options.clone());
            let account = b.get_config_value(&AzureConfigKey::AccountName).unwrap_or_else(|| "devstoreaccount1".into());
            let emulator = b.get_config_value(&AzureConfigKey::UseEmulator).is_some_and(|v| v == "true");
            let service = match b.get_config_value(&AzureConfigKey::Endpoint) {
                _ if emulator => {
                    let url =
                        std::env::var("AZURITE_BLOB_STORAGE_URL").unwrap_or_else(|_| "http://127.0.0.1:10000".into());
                    format!("{}/{account}", url.trim_end_matches('/'))
                }
                Some(e) => e.trim_end_matches('/').to_string(),
                None => format!("https://{account}.blob.core.windows.net"),
            };
            if !emulator && b.get_config_value(&AzureConfigKey::Endpoint).is_none() {
                b = b.with_endpoint(service.clone());
            }
            (b, service, account)
        }
    };
    let store = Arc::new(b.build().with_context(|| format!("cannot use container {}", loc.shown()))?);
    let http = connector().connect(&options).context("cannot start the Azure client")?;
    let provider =
        Arc::new(Azure { store: store.clone(), http, container_url: format!("{service}/{}", loc.container), account });
    Bucket::new(Parts { store, provider, root: loc.root.clone(), shown: loc.shown(), requests })
}

/// The builder signing as the registry's config says.
fn signed(b: MicrosoftAzureBuilder, auth: &AzureAuth) -> Result<MicrosoftAzureBuilder> {
    let authority = |b: MicrosoftAzureBuilder, a: &Option<String>| match a {
        Some(a) => b.with_authority_host(a),
        None => b,
    };
    Ok(match auth {
        AzureAuth::SharedKey { key } => b.with_access_key(key).with_credential_type("access_key"),
        AzureAuth::ClientSecret { tenant, client, secret, authority: a } => authority(
            b.with_tenant_id(tenant)
                .with_client_id(client)
                .with_client_secret(secret)
                .with_credential_type("client_secret"),
            a,
        ),
        AzureAuth::WorkloadIdentity { tenant, client, token_file, authority: a } => authority(
            b.with_tenant_id(tenant)
                .with_client_id(client)
                .with_federated_token_file(token_file)
                .with_credential_type("workload_identity"),
            a,
        ),
        AzureAuth::ManagedIdentityOrCli { client } => {
            if client::metadata_service_answers() {
                let b = b.with_credential_type("managed_identity");
                match client {
                    Some(c) => b.with_client_id(c),
                    None => b,
                }
            } else if on_path("az") {
                b.with_credential_type("azure_cli")
            } else {
                bail!(
                    "credentials.type default_credentials: no credentials found as far as regsweep can look (no \
                     AZURE_TENANT_ID, AZURE_CLIENT_ID with AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE, no \
                     managed identity's metadata service at 169.254.169.254, no az on PATH; App Service's and Arc's \
                     identity endpoints and the Azure Developer CLI are beyond it)"
                )
            }
        }
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
}

/// Why a whole batch request failed: a refusal of batches (a hierarchical namespace, an
/// emulator without them), or anything else.
enum Refused {
    Batches,
    Other(anyhow::Error),
}

#[async_trait::async_trait]
impl Provider for Azure {
    fn batch_size(&self) -> usize {
        BATCH
    }

    async fn delete_batch(&self, keys: &[Key]) -> Batched {
        match self.post_batch(keys).await {
            Ok(failed) => Batched::Sent(failed),
            Err(Refused::Other(e)) => Batched::Failed(e),
            Err(Refused::Batches) => Batched::Refused,
        }
    }

    /// Its own List Blobs: object_store's leaves out each blob's `Content-MD5`, which spares
    /// reading a link whose content is known (an Azure ETag is no MD5).
    async fn list_page(&self, prefix: Option<&str>, opts: PaginatedListOptions) -> Option<Result<Page>> {
        Some(self.list_blobs(prefix, &opts).await)
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

/// A blob's name (or a query's value) in a URL: each byte outside the unreserved set and `/` percent-encoded.
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
        let other = Refused::Other;
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
        let make = || {
            let mut req: HttpRequest = http::Request::builder()
                .method("POST")
                .uri(format!("{}?restype=container&comp=batch", self.container_url))
                .header("Content-Type", format!("multipart/mixed; boundary={boundary}"))
                .header("Content-Length", body.len().to_string())
                .body(HttpRequestBody::from(body.clone()))?;
            authorizer.try_authorize(&mut req)?;
            Ok(req)
        };
        let answer = client::send(&self.http, make).await.map_err(other)?;
        let said = decode(answer.status, &answer.body).unwrap_or_else(|| format!("status {}", answer.status));
        match answer.status {
            200..=299 => match answer.content_type.split("boundary=").nth(1) {
                Some(b) => Ok(answers(keys, &answer.body, b.trim_matches('"'))),
                None => Err(Refused::Other(anyhow!("a batch answered without parts: {said}"))),
            },
            // No batch here (Azurite before batches, a hierarchical namespace).
            400 | 403 | 404 | 405 | 409 | 501 => Err(Refused::Batches),
            _ => Err(Refused::Other(anyhow!(said))),
        }
    }

    /// One page of a List Blobs request, with each blob's `Content-MD5`.
    async fn list_blobs(&self, prefix: Option<&str>, opts: &PaginatedListOptions) -> Result<Page> {
        let credential = self.store.credentials().get_credential().await?;
        let authorizer = AzureAuthorizer::new(&credential, &self.account);
        let mut url = format!("{}?restype=container&comp=list", self.container_url);
        let mut query = |name: &str, value: &str| url.push_str(&format!("&{name}={}", url_path(value)));
        if let Some(p) = prefix {
            query("prefix", p);
        }
        if let Some(d) = &opts.delimiter {
            query("delimiter", d);
        }
        match (&opts.page_token, &opts.offset) {
            (Some(t), _) => query("marker", t),
            // Where the account takes it (Azurite does not): inclusive, and the caller drops
            // what does not sort after the offset.
            (None, Some(o)) => query("startFrom", o),
            (None, None) => {}
        }
        if let Some(m) = opts.max_keys {
            query("maxresults", &m.to_string());
        }
        let make = || {
            let mut req: HttpRequest =
                http::Request::builder().method("GET").uri(&url).body(HttpRequestBody::empty())?;
            authorizer.try_authorize(&mut req)?;
            Ok(req)
        };
        let answer = client::send(&self.http, make).await?;
        if !(200..300).contains(&answer.status) {
            bail!(decode(answer.status, &answer.body).unwrap_or_else(|| format!("status {}", answer.status)));
        }
        blob_list(&answer.body, prefix.unwrap_or_default())
    }
}

/// A List Blobs answer: `<EnumerationResults><Blobs><Blob>…</Blob><BlobPrefix>…</BlobPrefix>
/// </Blobs><NextMarker>…</NextMarker></EnumerationResults>`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnumerationResults {
    #[serde(default)]
    blobs: Blobs,
    next_marker: Option<String>,
}

#[derive(Default, Deserialize)]
struct Blobs {
    #[serde(rename = "Blob", default)]
    blobs: Vec<Blob>,
    #[serde(rename = "BlobPrefix", default)]
    prefixes: Vec<BlobPrefix>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BlobPrefix {
    name: Name,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Blob {
    name: Name,
    properties: BlobProperties,
}

/// A blob's name in a listing: percent-encoded, and so marked, when it holds what XML cannot
/// carry (a control character).
#[derive(Deserialize)]
struct Name {
    #[serde(rename = "@Encoded", default)]
    encoded: Option<String>,
    #[serde(rename = "$text", default)]
    text: String,
}

impl Name {
    /// The name, decoded where it is encoded.
    fn read(self) -> Result<String> {
        if self.encoded.as_deref() != Some("true") {
            return Ok(self.text);
        }
        let decoded = percent_encoding::percent_decode_str(&self.text).decode_utf8();
        Ok(decoded.with_context(|| format!("the listing named a blob {:?} that is not UTF-8", self.text))?.into_owned())
    }
}

#[derive(Deserialize)]
struct BlobProperties {
    #[serde(rename = "Last-Modified")]
    last_modified: String,
    #[serde(rename = "Etag")]
    etag: Option<String>,
    #[serde(rename = "Content-Length")]
    size: u64,
    /// Base64; there for a blob put in one request (the service computes it), not for one put
    /// in blocks.
    #[serde(rename = "Content-MD5")]
    md5: Option<String>,
    /// `directory` for a folder of an account with a hierarchical namespace.
    #[serde(rename = "ResourceType")]
    resource_type: Option<String>,
}

/// A page of a listing from a List Blobs answer (its blobs under `prefix`, folders left out).
fn blob_list(body: &[u8], prefix: &str) -> Result<Page> {
    let list: EnumerationResults = quick_xml::de::from_reader(body)
        .map_err(|e| anyhow::anyhow!("the listing answered what is no blob list: {e}"))?;
    let mut objects = Vec::with_capacity(list.blobs.blobs.len());
    for b in list.blobs.blobs {
        let name = b.name.read()?;
        if b.properties.resource_type.as_deref() == Some("directory") || name.len() <= prefix.len() {
            continue;
        }
        let p = b.properties;
        let modified = chrono::DateTime::parse_from_rfc2822(&p.last_modified)
            .with_context(|| format!("the listing gave {name:?} a time that is none: {:?}", p.last_modified))?;
        let meta = ObjectMeta {
            location: Key::parse(&name).with_context(|| format!("cannot use the blob {name:?}"))?,
            last_modified: modified.with_timezone(&chrono::Utc),
            size: p.size,
            e_tag: p.etag,
            version: None,
        };
        objects.push(Listed { meta, md5: p.md5.as_deref().and_then(|m| client::md5_hex(m.trim())) });
    }
    let prefixes = list.blobs.prefixes.into_iter().map(|p| Ok(Key::parse(p.name.read()?)?)).collect::<Result<_>>()?;
    Ok(Page { objects, prefixes, token: list.next_marker.filter(|m| !m.is_empty()) })
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
        // Not there is gone, where the answer says the blob (or its container) is not there:
        // a 404 for a path that names nothing (ResourceNotFound) leaves the blob where it was.
        let gone = status.starts_with("404")
            && code.as_deref().is_none_or(|c| matches!(c, "BlobNotFound" | "ContainerNotFound"));
        let ok = status.starts_with('2') || gone;
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
        let elsewhere =
            "--r\r\nContent-ID: 0\r\n\r\nHTTP/1.1 404 Not Found\r\nx-ms-error-code: ResourceNotFound\r\n--r--";
        assert_eq!(answers(&keys[..1], elsewhere.as_bytes(), "r")[0].1, "ResourceNotFound");
        // A part naming no subrequest of the batch counts for none.
        assert_eq!(answers(&keys[..1], b"--r\r\nContent-ID: 7\r\n\r\nHTTP/1.1 202 Accepted\r\n--r--", "r").len(), 1);
        assert_eq!(url_path("r/a b~%/ü"), "r/a%20b~%25/%C3%BC");
    }

    #[test]
    fn a_blob_list_tells_each_blobs_md5_and_the_folders_between_them() {
        let body = r#"<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="http://127.0.0.1:10000/devstoreaccount1" ContainerName="reg">
<Prefix>r/</Prefix><Delimiter>/</Delimiter><Blobs>
<Blob><Name>r/a/link</Name><Properties><Last-Modified>Wed, 02 Dec 2026 10:20:30 GMT</Last-Modified>
<Etag>0x8DD1F0A2B3C4D5E</Etag><Content-Length>71</Content-Length>
<Content-MD5>qDZEQ9Tx7hXMM7OO968nAg==</Content-MD5><BlobType>BlockBlob</BlobType></Properties></Blob>
<BlobPrefix><Name>r/b/</Name></BlobPrefix>
<Blob><Name>r/c</Name><Properties><Last-Modified>Wed, 02 Dec 2026 10:20:31 GMT</Last-Modified>
<Etag>"0x8DD1F0A2B3C4D5F"</Etag><Content-Length>5</Content-Length><Content-MD5 /></Properties></Blob>
<BlobPrefix><Name>r/d/</Name></BlobPrefix>
<Blob><Name>r/e</Name><Properties><Last-Modified>Wed, 02 Dec 2026 10:20:32 GMT</Last-Modified>
<Content-Length>0</Content-Length><ResourceType>directory</ResourceType></Properties></Blob>
</Blobs><NextMarker>2!72!MDAw+/=</NextMarker></EnumerationResults>"#;
        let page = blob_list(body.as_bytes(), "r/").unwrap();
        let names: Vec<&str> = page.objects.iter().map(|l| l.meta.location.as_ref()).collect();
        assert_eq!(names, ["r/a/link", "r/c"], "a folder of a hierarchical namespace is no blob");
        // The MD5 of the link to sha256:8010… (the test of link_md5 in bucket/mod.rs), in hex.
        assert_eq!(page.objects[0].md5.as_deref(), Some("a8364443d4f1ee15cc33b38ef7af2702"));
        assert_eq!((page.objects[0].meta.size, page.objects[1].md5.as_deref()), (71, None));
        assert_eq!(page.objects[1].meta.last_modified.to_rfc3339(), "2026-12-02T10:20:31+00:00");
        let prefixes: Vec<&str> = page.prefixes.iter().map(|p| p.as_ref()).collect();
        assert_eq!(prefixes, ["r/b", "r/d"]);
        assert_eq!(page.token.as_deref(), Some("2!72!MDAw+/="));
        assert!(blob_list(b"not xml", "").is_err());
    }

    #[test]
    fn an_encoded_name_is_read_decoded() {
        let list = |name: &str| {
            format!(
                "<EnumerationResults><Blobs><Blob>{name}<Properties><Last-Modified>Wed, 02 Dec 2026 10:20:30 GMT\
                 </Last-Modified><Content-Length>1</Content-Length></Properties></Blob></Blobs></EnumerationResults>"
            )
        };
        let page = blob_list(list(r#"<Name Encoded="true">r/a%20b~%25c</Name>"#).as_bytes(), "r/").unwrap();
        assert_eq!(page.objects[0].meta.location.as_ref(), "r/a b~%c");
        let page = blob_list(list(r#"<Name Encoded="false">r/a%20b</Name>"#).as_bytes(), "r/").unwrap();
        assert_eq!(page.objects[0].meta.location.as_ref(), "r/a%20b", "not encoded: as it is");
        // A control character: the blob is named, never taken for another.
        let err = blob_list(list(r#"<Name Encoded="true">r/tags/v%01/link</Name>"#).as_bytes(), "r/").err().unwrap();
        assert!(format!("{err:#}").contains("r/tags/v\\u{1}/link"), "{err:#}");
    }

    #[test]
    fn locations() {
        let loc = AzureLocation::from_url("azure://reg/store/").unwrap();
        assert_eq!((loc.container.as_str(), loc.root.as_str()), ("reg", "store"));
        assert_eq!(loc.shown(), "azure://reg/store");
        assert!(AzureLocation::from_url("azure:///x").is_err());
    }

    /// Each way the registry's config signs builds a client at its serviceurl.
    #[test]
    fn registry_credentials_open() {
        let authority = Some("https://login.microsoftonline.us".to_string());
        for auth in [
            AzureAuth::SharedKey { key: "a2V5".into() },
            AzureAuth::ClientSecret {
                tenant: "t".into(),
                client: "c".into(),
                secret: "s".into(),
                authority: authority.clone(),
            },
            AzureAuth::WorkloadIdentity { tenant: "t".into(), client: "c".into(), token_file: "/t".into(), authority },
        ] {
            let loc = AzureLocation {
                container: "reg".into(),
                root: "r".into(),
                service: Some(AzureService {
                    account: "acct".into(),
                    url: "https://acct.blob.core.usgovcloudapi.net".into(),
                    auth: auth.clone(),
                    skip_verify: true,
                }),
            };
            open(&loc).unwrap_or_else(|e| panic!("{auth:?}: {e:#}"));
        }
    }
}
