//! What is S3's in the bucket backend: where a store is and how to sign for it (from `--root
//! s3://BUCKET/ROOTDIRECTORY` and the usual AWS environment and profiles, or from the registry's
//! own `storage.s3` section with its `REGISTRY_STORAGE_S3_*` overrides, read as registry 2.8
//! reads them), the client built from it, S3's error answers, and DeleteObjects with its
//! per-key errors.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer};
use object_store::client::{HttpClient, HttpConnector, HttpRequest};
use object_store::path::Path as Key;

use serde::Deserialize;

use crate::model::warning::Warning;
use crate::store::bucket::client::{self, Batched, Bucket, Connector, Parts, Provider, Requests};
use crate::store::bucket::xml::{self, ErrorAnswer};
use crate::store::section::{Section, not_honoured};

/// A store in a bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// The registry's `rootdirectory`, without slashes at either end ("" for none).
    pub root: String,
    pub region: String,
    /// `regionendpoint` / `AWS_ENDPOINT_URL`, with its scheme: an S3-compatible server.
    pub endpoint: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub session_token: Option<String>,
    /// Without keys, where the credentials come from.
    pub role: Role,
    /// `endpoint` names the bucket's own host (3.x's `accelerate`): requests are not path-style.
    pub virtual_hosted: bool,
    /// The registry's `skipverify`: the server's certificate is not checked.
    pub skip_verify: bool,
    /// The registry's `encrypt` (and `keyid`): the server-side encryption of what regsweep
    /// writes (`AES256`, or `aws:kms` with the key), as the registry's own writes.
    pub encryption: Option<(String, Option<String>)>,
}

/// Where credentials come from without keys: the rest of the chain the registry's AWS SDK
/// follows (environment, profile, then a role given to the process or the machine).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// Keys are given (or none is needed: an unsigned bucket).
    #[default]
    None,
    /// A role the environment names (object_store's settings of it): EKS's web identity
    /// (`AWS_WEB_IDENTITY_TOKEN_FILE` with `AWS_ROLE_ARN`), an ECS task's
    /// (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`), EKS Pod Identity's
    /// (`AWS_CONTAINER_CREDENTIALS_FULL_URI` with `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`).
    Named(Vec<(String, String)>),
    /// The instance's role, from its metadata service (IMDSv2): on AWS itself when the service
    /// answers (else unsigned requests), or where `AWS_EC2_METADATA_SERVICE_ENDPOINT` names one.
    Instance { endpoint: String },
}

/// The EC2 instance metadata service.
const METADATA_SERVICE: &str = "http://169.254.169.254";

/// The region when nothing names one (the registry requires one; the AWS tools default to it).
const DEFAULT_REGION: &str = "us-east-1";

impl S3Location {
    /// `s3://bucket/rootdirectory`, as the operator names it.
    pub fn shown(&self) -> String {
        client::shown_url("s3", &self.bucket, &self.root)
    }

    /// From `s3://BUCKET[/ROOTDIRECTORY]` and the environment `env` gives.
    pub fn from_url(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<S3Location> {
        let (bucket, root) = client::split_url(url, "s3", "bucket")?;
        let mut loc = S3Location { bucket, root, ..S3Location::default() };
        loc.fill_from_environment(env, true);
        Ok(loc)
    }

    /// The usual AWS environment, then the profile (`AWS_PROFILE`, or `default`), for what is
    /// not set yet; the endpoint too where `endpoint` says so.
    fn fill_from_environment(&mut self, env: &dyn Fn(&str) -> Option<String>, endpoint: bool) {
        let var = |k: &str| env(k).filter(|v| !v.is_empty());
        let profile = Profile::load(env);
        let set = |field: &mut Option<String>, value: Option<String>| {
            if field.is_none() {
                *field = value;
            }
        };
        if endpoint {
            set(&mut self.endpoint, var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL")));
            set(&mut self.endpoint, profile.get("endpoint_url"));
        }
        if self.access_key.is_none() && self.secret_key.is_none() {
            match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
                (Some(a), Some(s)) => {
                    self.access_key = Some(a);
                    self.secret_key = Some(s);
                    self.session_token = var("AWS_SESSION_TOKEN");
                }
                _ => {
                    self.access_key = profile.get("aws_access_key_id");
                    self.secret_key = profile.get("aws_secret_access_key");
                    self.session_token = profile.get("aws_session_token");
                }
            }
        }
        if self.region.is_empty() {
            self.region = var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .or_else(|| profile.get("region"))
                .unwrap_or_else(|| DEFAULT_REGION.to_string());
        }
        if self.access_key.is_none() || self.secret_key.is_none() {
            self.role = Role::from_environment(&var, self.endpoint.is_none());
        }
    }

    /// From the registry's `storage.s3` section (`s`, its `REGISTRY_STORAGE_S3_<KEY>` overrides
    /// applied), as 2.8 and 3.1.1 read it: `bucket`, `region` (else the AWS environment's),
    /// `regionendpoint` with `secure` for its scheme, `rootdirectory`, `accesskey`/`secretkey`
    /// (else the AWS environment, profile and role, as the registry's SDK falls back to them),
    /// `skipverify`, `encrypt` with `keyid` for what regsweep writes; without `regionendpoint`,
    /// 3.x's `usefipsendpoint`, `usedualstack` and `accelerate` pick AWS's endpoint as its SDK
    /// does. `v4auth: false` (2.8's signature v2) is named in a warning: regsweep signs v4.
    /// Requests are path-style on `regionendpoint`, the host the registry reaches whatever
    /// `forcepathstyle` says.
    pub fn from_registry(
        s: &Section,
        env: &dyn Fn(&str) -> Option<String>,
        warnings: &mut Vec<Warning>,
    ) -> Result<S3Location> {
        let Some(bucket) = s.text("bucket")? else { bail!("{} is missing", s.at("bucket")) };
        let secure = s.flag("secure", true)?;
        let region = s.text("region")?;
        let mut endpoint = s
            .text("regionendpoint")?
            .map(|e| if e.contains("://") { e } else { format!("{}://{e}", if secure { "https" } else { "http" }) });
        let mut virtual_hosted = false;
        let (fips, dualstack, accelerate) =
            (s.flag("usefipsendpoint", false)?, s.flag("usedualstack", false)?, s.flag("accelerate", false)?);
        if endpoint.is_some() {
            for k in ["usefipsendpoint", "usedualstack", "accelerate"] {
                if s.flag(k, false)? {
                    warnings.push(not_honoured(format!(
                        "{}: the registry's SDK goes to regionendpoint all the same: so does regsweep",
                        s.at(k)
                    )));
                }
            }
        } else if fips || dualstack || accelerate {
            let Some(region) = &region else { bail!("{} is missing", s.at("region")) };
            let scheme = if secure { "https" } else { "http" };
            endpoint = Some(if accelerate {
                if fips {
                    bail!(
                        "{} and {} together: the registry's SDK refuses them",
                        s.at("accelerate"),
                        s.at("usefipsendpoint")
                    );
                }
                virtual_hosted = true;
                let host = if dualstack { "s3-accelerate.dualstack" } else { "s3-accelerate" };
                format!("{scheme}://{bucket}.{host}.amazonaws.com")
            } else {
                let host = match (fips, dualstack) {
                    (true, true) => "s3-fips.dualstack",
                    (true, false) => "s3-fips",
                    _ => "s3.dualstack",
                };
                format!("{scheme}://{host}.{region}.amazonaws.com")
            });
        }
        if !s.flag("v4auth", true)? {
            warnings.push(not_honoured(format!(
                "{}: false (signature v2): regsweep signs with signature v4, which the server may refuse",
                s.at("v4auth")
            )));
        }
        let encryption = match (s.flag("encrypt", false)?, s.text("keyid")?) {
            (false, _) => None,
            (true, None) => Some(("AES256".to_string(), None)),
            (true, Some(k)) => Some(("aws:kms".to_string(), Some(k))),
        };
        // The registry's SDK (aws-sdk-go v1) reads no endpoint from the environment or the
        // profile: with its config, neither does regsweep, or it would prune another server's
        // bucket of the same name.
        if endpoint.is_none() {
            let profile = Profile::load(env);
            let named = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
                .into_iter()
                .filter(|k| env(k).is_some_and(|v| !v.is_empty()))
                .map(String::from)
                .chain(profile.get("endpoint_url").map(|_| "endpoint_url of the AWS profile".to_string()));
            for name in named {
                warnings.push(not_honoured(format!(
                    "{name}: not read with --config (the registry's SDK reads no endpoint from the environment): \
                     AWS's own endpoint, as the registry's; set {} to go elsewhere",
                    s.at("regionendpoint")
                )));
            }
        }
        let mut loc = S3Location {
            bucket,
            root: s.text("rootdirectory")?.unwrap_or_default().trim_matches('/').to_string(),
            region: region.unwrap_or_default(),
            endpoint,
            access_key: s.text("accesskey")?,
            secret_key: s.text("secretkey")?,
            virtual_hosted,
            skip_verify: s.flag("skipverify", false)?,
            encryption,
            ..S3Location::default()
        };
        loc.fill_from_environment(env, false);
        Ok(loc)
    }
}

impl Role {
    /// The role the environment names, else the instance's where there is one (on AWS, not an
    /// S3-compatible server: `aws`), else none.
    fn from_environment(var: &dyn Fn(&str) -> Option<String>, aws: bool) -> Role {
        let named = |names: &[&str]| names.iter().all(|n| var(n).is_some());
        if named(&["AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"])
            || named(&["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"])
            || named(&["AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"])
        {
            let settings = [
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_ROLE_ARN",
                "AWS_ROLE_SESSION_NAME",
                "AWS_ENDPOINT_URL_STS",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            ];
            return Role::Named(settings.iter().filter_map(|n| Some((n.to_ascii_lowercase(), var(n)?))).collect());
        }
        if var("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Role::None;
        }
        match var("AWS_EC2_METADATA_SERVICE_ENDPOINT") {
            Some(e) => Role::Instance { endpoint: e.trim_end_matches('/').to_string() },
            // Asked for when the bucket is opened: none where the service does not answer.
            None if aws => Role::Instance { endpoint: METADATA_SERVICE.into() },
            None => Role::None,
        }
    }
}

/// The settings of one AWS profile, from the shared credentials and config files.
#[derive(Default)]
struct Profile(HashMap<String, String>);

impl Profile {
    fn load(env: &dyn Fn(&str) -> Option<String>) -> Profile {
        let name = env("AWS_PROFILE").filter(|p| !p.is_empty()).unwrap_or_else(|| "default".into());
        let home = env("HOME").map(PathBuf::from);
        let file =
            |var: &str, default: &str| env(var).map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(default)));
        let mut settings = HashMap::new();
        // The credentials file names sections `[name]`; the config file `[profile name]` (and `[default]`).
        let sources = [
            (file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"), name.clone()),
            (
                file("AWS_CONFIG_FILE", ".aws/config"),
                if name == "default" { name.clone() } else { format!("profile {name}") },
            ),
        ];
        for (path, section) in sources {
            let Some(text) = path.and_then(|p| std::fs::read_to_string(p).ok()) else { continue };
            for (k, v) in ini_section(&text, &section) {
                settings.entry(k).or_insert(v);
            }
        }
        Profile(settings)
    }

    fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).filter(|v| !v.is_empty()).cloned()
    }
}

/// The `key = value` lines of one `[section]` of an INI file.
fn ini_section(text: &str, section: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
        } else if inside
            && !line.starts_with(['#', ';'])
            && let Some((k, v)) = line.split_once('=')
        {
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    out
}

/// Opens the bucket a location names. A missing bucket or bad credentials fail at the first
/// request, not here.
pub fn open(loc: &S3Location) -> Result<Bucket> {
    let requests = Arc::new(Requests::default());
    let connector = || Connector { requests: requests.clone(), decode };
    let mut options = client::options();
    if loc.skip_verify {
        options = options.with_allow_invalid_certificates(true);
    }
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(&loc.bucket)
        .with_region(&loc.region)
        .with_virtual_hosted_style_request(loc.virtual_hosted)
        .with_http_connector(connector())
        .with_retry(client::retry())
        .with_client_options(options.clone());
    if let Some(e) = &loc.endpoint {
        b = b.with_endpoint(e);
    }
    if let Some((kind, key)) = &loc.encryption {
        let setting = |name: &str| name.parse::<AmazonS3ConfigKey>().with_context(|| format!("cannot use {name}"));
        b = b.with_config(setting("aws_server_side_encryption")?, kind);
        if let Some(k) = key {
            b = b.with_config(setting("aws_sse_kms_key_id")?, k);
        }
    }
    let mut sign = true;
    match (&loc.access_key, &loc.secret_key) {
        (Some(a), Some(s)) => {
            b = b.with_access_key_id(a).with_secret_access_key(s);
            if let Some(t) = &loc.session_token {
                b = b.with_token(t);
            }
        }
        _ => match &loc.role {
            Role::Named(settings) => {
                for (k, v) in settings {
                    b = b.with_config(k.parse().with_context(|| format!("cannot use {k}"))?, v);
                }
            }
            Role::Instance { endpoint } if endpoint != METADATA_SERVICE || client::metadata_service_answers() => {
                b = b.with_metadata_endpoint(endpoint)
            }
            // No credentials anywhere: unsigned requests (a public bucket, a test server).
            _ => {
                b = b.with_skip_signature(true);
                sign = false;
            }
        },
    }
    let store = Arc::new(b.build().with_context(|| format!("cannot use bucket {}", loc.shown()))?);
    let http = connector().connect(&options).context("cannot start the S3 client")?;
    let endpoint = match &loc.endpoint {
        Some(e) if loc.virtual_hosted => e.trim_end_matches('/').to_string(),
        Some(e) => format!("{}/{}", e.trim_end_matches('/'), loc.bucket),
        None => format!("https://s3.{}.amazonaws.com/{}", loc.region, loc.bucket),
    };
    let provider = Arc::new(S3 { store: store.clone(), http, endpoint, region: loc.region.clone(), sign });
    Bucket::new(Parts { store, provider, root: loc.root.clone(), shown: loc.shown(), requests })
}

/// What an S3 error answer says, with what to check.
fn decode(_status: u16, body: &[u8]) -> Option<String> {
    ErrorAnswer::read(body).map(|a| a.told(hint))
}

fn hint(code: &str) -> &'static str {
    match code {
        "NoSuchBucket" => " (is the bucket's name right, and the endpoint?)",
        "NotImplemented" => " (the server takes no DeleteObjects, by which regsweep deletes on S3)",
        "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied" | "InvalidToken" | "ExpiredToken" => {
            " (check the credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, the profile, the config's \
             accesskey and secretkey, or the role of the instance, pod or task; regsweep needs to list, get, put and \
             delete)"
        }
        _ => "",
    }
}

/// An S3 bucket's own part: DeleteObjects, sent by regsweep (object_store retries the whole
/// request when one key's error is `InternalError` and then fails every key with the raw
/// answer, and counts a key the answer does not mention as deleted: here a key is deleted when
/// the answer says so).
struct S3 {
    store: Arc<AmazonS3>,
    /// The client DeleteObjects requests are sent with.
    http: HttpClient,
    /// `https://endpoint/bucket`: where DeleteObjects requests go (path-style, as the store's).
    endpoint: String,
    region: String,
    /// False for an anonymous bucket: requests go unsigned.
    sign: bool,
}

#[async_trait::async_trait]
impl Provider for S3 {
    fn batch_size(&self) -> usize {
        1000
    }

    async fn delete_batch(&self, keys: &[Key]) -> Batched {
        let url = format!("{}?delete", self.endpoint);
        let sign = |mut req: HttpRequest| async move {
            if self.sign {
                let credential = self.store.credentials().get_credential().await?;
                AwsAuthorizer::new(&credential, "s3", &self.region)
                    .try_authorize(&mut req, None)
                    .context("cannot sign a DeleteObjects request")?;
            }
            Ok(req)
        };
        xml::post_delete(&self.http, &url, keys, sign, hint, false).await
    }

    /// A versioned bucket (GetBucketVersioning: `Enabled`, or `Suspended` with versions kept)
    /// keeps what is deleted as noncurrent versions behind a delete marker.
    async fn freed_later(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct VersioningConfiguration {
            #[serde(rename = "Status", default)]
            status: String,
        }
        let mut req: HttpRequest = http::Request::builder()
            .method("GET")
            .uri(format!("{}?versioning", self.endpoint))
            .body(object_store::client::HttpRequestBody::empty())
            .ok()?;
        if self.sign {
            let credential = self.store.credentials().get_credential().await.ok()?;
            AwsAuthorizer::new(&credential, "s3", &self.region).try_authorize(&mut req, None).ok()?;
        }
        let body = client::answer(&self.http, req).await?;
        let v: VersioningConfiguration = quick_xml::de::from_reader(body.as_slice()).ok()?;
        matches!(v.status.as_str(), "Enabled" | "Suspended").then(|| {
            format!(
                "the bucket is versioned ({}): a deletion adds a delete marker and keeps the object as a noncurrent \
                 version, whose space is freed when a lifecycle rule (NoncurrentVersionExpiration) expires it",
                v.status
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn url_and_environment() {
        let env = env_of(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("HOME", "/nonexistent"),
        ]);
        let loc = S3Location::from_url("s3://reg/store/", &env).unwrap();
        assert_eq!((loc.bucket.as_str(), loc.root.as_str(), loc.region.as_str()), ("reg", "store", DEFAULT_REGION));
        assert_eq!(loc.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(loc.role, Role::None);
        assert_eq!(loc.shown(), "s3://reg/store");
        assert!(S3Location::from_url("s3:///x", &env).is_err());
    }

    #[test]
    fn without_keys_a_role() {
        let role = |pairs: &[(&str, &str)]| {
            let mut all = vec![("HOME", "/nonexistent")];
            all.extend_from_slice(pairs);
            S3Location::from_url("s3://b/r", &env_of(&all)).unwrap().role
        };
        let eks = role(&[("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token"), ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r")]);
        let Role::Named(settings) = eks else { panic!("{eks:?}") };
        assert!(settings.contains(&("aws_web_identity_token_file".into(), "/var/run/token".into())));
        for (k, _) in &settings {
            k.parse::<object_store::aws::AmazonS3ConfigKey>().unwrap();
        }
        assert!(matches!(role(&[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/creds")]), Role::Named(_)));
        // A token file without its role is no role.
        assert_eq!(
            role(&[("AWS_WEB_IDENTITY_TOKEN_FILE", "/t")]),
            Role::Instance { endpoint: METADATA_SERVICE.into() }
        );
        assert_eq!(role(&[("AWS_EC2_METADATA_DISABLED", "true")]), Role::None);
        assert_eq!(role(&[("AWS_ENDPOINT_URL", "http://minio:9000")]), Role::None);
        let keys = role(&[("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "s"), ("AWS_ROLE_ARN", "x")]);
        assert_eq!(keys, Role::None);
    }

    #[test]
    fn profile_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".aws")).unwrap();
        std::fs::write(
            dir.path().join(".aws/credentials"),
            "[default]\naws_access_key_id = d\n[ops]\naws_access_key_id = o\naws_secret_access_key = os\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join(".aws/config"),
            "[profile ops]\nregion = eu-west-3\nendpoint_url = http://x:1\n",
        )
        .unwrap();
        let home = dir.path().to_str().unwrap();
        let env = env_of(&[("HOME", home), ("AWS_PROFILE", "ops")]);
        let loc = S3Location::from_url("s3://b", &env).unwrap();
        assert_eq!(loc.access_key.as_deref(), Some("o"));
        assert_eq!(loc.region, "eu-west-3");
        assert_eq!(loc.endpoint.as_deref(), Some("http://x:1"));
    }

    /// What the registry's keys turn into builds a client: encryption, accelerate's
    /// virtual-hosted endpoint, skipverify.
    #[test]
    fn registry_settings_open() {
        for (encryption, virtual_hosted, endpoint) in [
            (Some(("AES256".to_string(), None)), false, None),
            (
                Some(("aws:kms".to_string(), Some("k1".to_string()))),
                false,
                Some("https://s3-fips.eu-west-1.amazonaws.com"),
            ),
            (None, true, Some("https://b.s3-accelerate.amazonaws.com")),
        ] {
            let loc = S3Location {
                bucket: "b".into(),
                region: "eu-west-1".into(),
                endpoint: endpoint.map(String::from),
                access_key: Some("a".into()),
                secret_key: Some("s".into()),
                virtual_hosted,
                skip_verify: true,
                encryption,
                ..S3Location::default()
            };
            open(&loc).unwrap_or_else(|e| panic!("{loc:?}: {e:#}"));
        }
    }
}
