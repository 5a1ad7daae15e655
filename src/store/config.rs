//! The registry's own config.yml: where its store is (a folder, or an s3, azure or gcs bucket),
//! read as the registry reads it (`REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY` and
//! `REGISTRY_STORAGE_<DRIVER>_*` override the file).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::store::bucket::s3::S3Location;
use crate::store::location::Location;

/// The registry's default `rootdirectory`.
const DEFAULT_ROOT: &str = "/var/lib/registry";
/// The environment variable that overrides the file, as in the registry.
pub const ROOT_ENV: &str = "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY";

/// Reads a config file (through a symbolic link: configuration tools make those), refusing
/// anything but a regular file without blocking on a FIFO.
pub(crate) fn read_config(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    Ok(text)
}

/// The keys of the registry's s3 driver (2.8), each overridden by `REGISTRY_STORAGE_S3_<KEY>`.
const S3_KEYS: [&str; 17] = [
    "accesskey",
    "secretkey",
    "region",
    "regionendpoint",
    "bucket",
    "encrypt",
    "keyid",
    "secure",
    "skipverify",
    "v4auth",
    "chunksize",
    "multipartcopychunksize",
    "multipartcopymaxconcurrency",
    "multipartcopythresholdsize",
    "rootdirectory",
    "storageclass",
    "useragent",
];

/// The keys of the registry's azure driver, each overridden by `REGISTRY_STORAGE_AZURE_<KEY>`
/// (the first one also names the driver when the file has no section).
#[cfg(feature = "azure")]
const AZURE_KEYS: [&str; 5] = ["container", "accountname", "accountkey", "realm", "rootdirectory"];

/// The keys of the registry's gcs driver, each overridden by `REGISTRY_STORAGE_GCS_<KEY>`.
#[cfg(feature = "gcs")]
const GCS_KEYS: [&str; 3] = ["bucket", "keyfile", "rootdirectory"];

/// The store a registry config names: its filesystem `rootdirectory`, or its s3 bucket, with
/// the registry's environment overrides (`env` reads them).
pub fn location_from_config(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Location> {
    let text = read_config(path).with_context(|| format!("cannot read registry config {}", path.display()))?;
    let doc: serde_norway::Value = serde_norway::from_str(&text)
        .with_context(|| format!("registry config {} is not valid YAML", path.display()))?;
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(root) = var(ROOT_ENV) {
        return Ok(Location::Fs(PathBuf::from(root)));
    }
    let storage = doc.get("storage");
    // A driver's section, with its `REGISTRY_STORAGE_<DRIVER>_<KEY>` overrides; present when the
    // file has it or the environment names its first key.
    let section = |driver: &str, keys: &[&str]| -> Option<HashMap<String, String>> {
        let upper = driver.to_ascii_uppercase();
        let over = |k: &str| var(&format!("REGISTRY_STORAGE_{upper}_{}", k.to_ascii_uppercase()));
        let found = storage.and_then(|s| s.get(driver)).or_else(|| over(keys[0]).map(|_| &NULL))?;
        let mut values = HashMap::new();
        for k in keys {
            let value = match found.get(k) {
                Some(serde_norway::Value::String(v)) => Some(v.clone()),
                Some(serde_norway::Value::Bool(b)) => Some(b.to_string()),
                Some(serde_norway::Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            if let Some(v) = over(k).or(value) {
                values.insert(k.to_string(), v);
            }
        }
        Some(values)
    };
    let at = |driver: &str| format!("{}: storage.{driver}", path.display());
    if let Some(keys) = section("s3", &S3_KEYS) {
        return Ok(Location::S3(S3Location::from_registry(&keys, env).with_context(|| at("s3"))?));
    }
    #[cfg(feature = "azure")]
    if let Some(keys) = section("azure", &AZURE_KEYS) {
        let loc = crate::store::bucket::azure::AzureLocation::from_registry(&keys).with_context(|| at("azure"))?;
        return Ok(Location::Azure(loc));
    }
    #[cfg(feature = "gcs")]
    if let Some(keys) = section("gcs", &GCS_KEYS) {
        let loc = crate::store::bucket::gcs::GcsLocation::from_registry(&keys).with_context(|| at("gcs"))?;
        return Ok(Location::Gcs(loc));
    }
    let storage = storage.with_context(|| format!("{}: no storage section", path.display()))?;
    let Some(fs) = storage.get("filesystem") else {
        let drivers: Vec<String> = storage
            .as_mapping()
            .map(|m| m.keys().filter_map(|k| k.as_str().map(String::from)).collect())
            .unwrap_or_default();
        bail!(
            "{}: the storage driver is not filesystem, s3, azure or gcs ({}): regsweep works on a filesystem store or a \
             bucket of those",
            path.display(),
            drivers.join(", ")
        );
    };
    match fs.get("rootdirectory") {
        None | Some(serde_norway::Value::Null) => Ok(Location::Fs(PathBuf::from(DEFAULT_ROOT))),
        Some(v) => v
            .as_str()
            .map(|r| Location::Fs(PathBuf::from(r)))
            .with_context(|| format!("{}: storage.filesystem.rootdirectory is not a string", path.display())),
    }
}

static NULL: serde_norway::Value = serde_norway::Value::Null;

#[cfg(test)]
mod tests {
    use super::*;

    fn fs_root(cfg: &Path, env: &[(&str, &str)]) -> Result<Location> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        location_from_config(cfg, &|k| env.get(k).cloned())
    }

    fn path(l: Location) -> PathBuf {
        match l {
            Location::Fs(p) => p,
            other => panic!("not a folder: {other:?}"),
        }
    }

    #[test]
    fn reads_rootdirectory_and_env_override() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            "version: 0.1\nstorage:\n  cache: {blobdescriptor: inmemory}\n  filesystem:\n    rootdirectory: /srv/reg\n",
        )
        .unwrap();
        assert_eq!(path(fs_root(&cfg, &[]).unwrap()), PathBuf::from("/srv/reg"));
        assert_eq!(path(fs_root(&cfg, &[(ROOT_ENV, "/other")]).unwrap()), PathBuf::from("/other"));
        std::fs::write(&cfg, "storage:\n  filesystem: {}\n").unwrap();
        assert_eq!(path(fs_root(&cfg, &[]).unwrap()), PathBuf::from(DEFAULT_ROOT));
        std::fs::write(&cfg, "storage:\n  swift: {container: b}\n").unwrap();
        assert!(format!("{:#}", fs_root(&cfg, &[]).unwrap_err()).contains("swift"));
    }

    #[cfg(all(feature = "azure", feature = "gcs"))]
    #[test]
    fn reads_the_azure_and_gcs_sections_and_their_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            "storage:\n  azure:\n    accountname: acct\n    accountkey: a2V5\n    container: reg\n    realm: \
             core.chinacloudapi.cn\n    rootdirectory: /store\n",
        )
        .unwrap();
        let Location::Azure(a) = fs_root(&cfg, &[("REGISTRY_STORAGE_AZURE_CONTAINER", "other")]).unwrap() else {
            panic!("not a container")
        };
        assert_eq!((a.container.as_str(), a.root.as_str(), a.account.as_deref()), ("other", "store", Some("acct")));
        assert_eq!(a.realm.as_deref(), Some("core.chinacloudapi.cn"));
        std::fs::write(&cfg, "storage:\n  gcs:\n    bucket: reg\n    keyfile: /k.json\n").unwrap();
        let Location::Gcs(g) = fs_root(&cfg, &[("REGISTRY_STORAGE_GCS_ROOTDIRECTORY", "/r/")]).unwrap() else {
            panic!("not a bucket")
        };
        assert_eq!((g.bucket.as_str(), g.root.as_str(), g.keyfile.as_deref()), ("reg", "r", Some("/k.json")));
    }

    #[test]
    fn reads_the_s3_section_and_its_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            "storage:\n  s3:\n    bucket: reg\n    region: eu-west-1\n    regionendpoint: http://127.0.0.1:9000\n    \
             secure: false\n    rootdirectory: /store\n    accesskey: a\n    secretkey: s\n",
        )
        .unwrap();
        let Location::S3(s3) =
            fs_root(&cfg, &[("REGISTRY_STORAGE_S3_BUCKET", "other"), ("HOME", "/nonexistent")]).unwrap()
        else {
            panic!("not a bucket")
        };
        assert_eq!((s3.bucket.as_str(), s3.root.as_str(), s3.region.as_str()), ("other", "store", "eu-west-1"));
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!((s3.access_key.as_deref(), s3.secret_key.as_deref()), (Some("a"), Some("s")));
    }
}
