//! The registry's own config.yml: where its store is (a folder, or an s3 bucket), read as the
//! registry reads it (`REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY` and `REGISTRY_STORAGE_S3_*`
//! override the file).

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
fn read_config(path: &Path) -> std::io::Result<String> {
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
    if let Some(s3) = storage.and_then(|s| s.get("s3")).or_else(|| var("REGISTRY_STORAGE_S3_BUCKET").map(|_| &NULL)) {
        let mut keys = HashMap::new();
        for k in S3_KEYS {
            let value = match s3.get(k) {
                Some(serde_norway::Value::String(v)) => Some(v.clone()),
                Some(serde_norway::Value::Bool(b)) => Some(b.to_string()),
                Some(serde_norway::Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            if let Some(v) = var(&format!("REGISTRY_STORAGE_S3_{}", k.to_ascii_uppercase())).or(value) {
                keys.insert(k.to_string(), v);
            }
        }
        let loc = S3Location::from_registry(&keys, env).with_context(|| format!("{}: storage.s3", path.display()))?;
        return Ok(Location::S3(loc));
    }
    let storage = storage.with_context(|| format!("{}: no storage section", path.display()))?;
    let Some(fs) = storage.get("filesystem") else {
        let drivers: Vec<String> = storage
            .as_mapping()
            .map(|m| m.keys().filter_map(|k| k.as_str().map(String::from)).collect())
            .unwrap_or_default();
        bail!(
            "{}: the storage driver is not filesystem or s3 ({}): regsweep works on a filesystem store or an S3 bucket",
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
        std::fs::write(&cfg, "storage:\n  gcs: {bucket: b}\n").unwrap();
        assert!(format!("{:#}", fs_root(&cfg, &[]).unwrap_err()).contains("gcs"));
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
