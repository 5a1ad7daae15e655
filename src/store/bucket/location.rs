//! Where a bucket store is and how to sign for it: from `--root s3://BUCKET/ROOTDIRECTORY` and
//! the usual AWS environment (and profiles), or from the registry's own `storage.s3` section
//! with its `REGISTRY_STORAGE_S3_*` overrides, read as registry 2.8 reads them.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Result, bail};

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
    /// No credentials anywhere: unsigned requests (a public bucket, a test server).
    pub anonymous: bool,
}

/// The region when nothing names one (the registry requires one; the AWS tools default to it).
const DEFAULT_REGION: &str = "us-east-1";

impl S3Location {
    /// `s3://bucket/rootdirectory`, as the operator names it.
    pub fn shown(&self) -> String {
        if self.root.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.root)
        }
    }

    /// From `s3://BUCKET[/ROOTDIRECTORY]` and the environment `env` gives.
    pub fn from_url(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<S3Location> {
        let Some(rest) = url.strip_prefix("s3://") else { bail!("{url} is no s3:// URL") };
        let (bucket, root) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("{url} names no bucket: give s3://BUCKET/ROOTDIRECTORY");
        }
        let mut loc = S3Location {
            bucket: bucket.to_string(),
            root: root.trim_matches('/').to_string(),
            ..S3Location::default()
        };
        loc.fill_from_environment(env);
        Ok(loc)
    }

    /// The usual AWS environment, then the profile (`AWS_PROFILE`, or `default`), for what is
    /// not set yet.
    fn fill_from_environment(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        let var = |k: &str| env(k).filter(|v| !v.is_empty());
        let profile = Profile::load(env);
        let set = |field: &mut Option<String>, value: Option<String>| {
            if field.is_none() {
                *field = value;
            }
        };
        set(&mut self.endpoint, var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL")));
        set(&mut self.endpoint, profile.get("endpoint_url"));
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
        self.anonymous = self.access_key.is_none() || self.secret_key.is_none();
    }

    /// From the registry's `storage.s3` section (`keys`, with the `REGISTRY_STORAGE_S3_<KEY>`
    /// overrides applied by the caller): `bucket` and `region` as the registry requires,
    /// `regionendpoint` with `secure` for its scheme, `rootdirectory`, `accesskey`/`secretkey`
    /// (else the AWS environment and profile, as the registry's SDK falls back to them).
    pub fn from_registry(keys: &HashMap<String, String>, env: &dyn Fn(&str) -> Option<String>) -> Result<S3Location> {
        let get = |k: &str| keys.get(k).filter(|v| !v.is_empty()).cloned();
        let Some(bucket) = get("bucket") else { bail!("storage.s3 has no bucket") };
        let secure = get("secure").is_none_or(|v| v != "false");
        let endpoint = get("regionendpoint")
            .map(|e| if e.contains("://") { e } else { format!("{}://{e}", if secure { "https" } else { "http" }) });
        let mut loc = S3Location {
            bucket,
            root: get("rootdirectory").unwrap_or_default().trim_matches('/').to_string(),
            region: get("region").unwrap_or_default(),
            endpoint,
            access_key: get("accesskey"),
            secret_key: get("secretkey"),
            ..S3Location::default()
        };
        loc.fill_from_environment(env);
        Ok(loc)
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
        assert!(!loc.anonymous);
        assert_eq!(loc.shown(), "s3://reg/store");
        assert!(S3Location::from_url("s3:///x", &env).is_err());
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

    #[test]
    fn registry_keys() {
        let keys: HashMap<String, String> = [
            ("bucket", "reg"),
            ("region", "eu-central-1"),
            ("regionendpoint", "127.0.0.1:9000"),
            ("secure", "false"),
            ("rootdirectory", "/s/"),
            ("accesskey", "a"),
            ("secretkey", "s"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let loc = S3Location::from_registry(&keys, &env_of(&[])).unwrap();
        assert_eq!(loc.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!((loc.root.as_str(), loc.region.as_str()), ("s", "eu-central-1"));
        assert_eq!(loc.access_key.as_deref(), Some("a"));
    }
}
