//! The registry's own config.yml: where its filesystem store is, read as the registry reads it
//! (`REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY` overrides the file).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

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

/// The `rootdirectory` of the filesystem store a registry config names.
pub fn root_from_config(path: &Path, env_override: Option<String>) -> Result<PathBuf> {
    let text = read_config(path).with_context(|| format!("cannot read registry config {}", path.display()))?;
    let doc: serde_norway::Value = serde_norway::from_str(&text)
        .with_context(|| format!("registry config {} is not valid YAML", path.display()))?;
    if let Some(root) = env_override.filter(|r| !r.is_empty()) {
        return Ok(PathBuf::from(root));
    }
    let storage = doc.get("storage").with_context(|| format!("{}: no storage section", path.display()))?;
    let Some(fs) = storage.get("filesystem") else {
        let drivers: Vec<String> = storage
            .as_mapping()
            .map(|m| m.keys().filter_map(|k| k.as_str().map(String::from)).collect())
            .unwrap_or_default();
        bail!(
            "{}: the storage driver is not filesystem ({}): regsweep works on a filesystem store",
            path.display(),
            drivers.join(", ")
        );
    };
    match fs.get("rootdirectory") {
        None | Some(serde_norway::Value::Null) => Ok(PathBuf::from(DEFAULT_ROOT)),
        Some(v) => v
            .as_str()
            .map(PathBuf::from)
            .with_context(|| format!("{}: storage.filesystem.rootdirectory is not a string", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rootdirectory_and_env_override() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            "version: 0.1\nstorage:\n  cache: {blobdescriptor: inmemory}\n  filesystem:\n    rootdirectory: /srv/reg\n",
        )
        .unwrap();
        assert_eq!(root_from_config(&cfg, None).unwrap(), PathBuf::from("/srv/reg"));
        assert_eq!(root_from_config(&cfg, Some("/other".into())).unwrap(), PathBuf::from("/other"));
        std::fs::write(&cfg, "storage:\n  filesystem: {}\n").unwrap();
        assert_eq!(root_from_config(&cfg, None).unwrap(), PathBuf::from(DEFAULT_ROOT));
        std::fs::write(&cfg, "storage:\n  s3: {bucket: b}\n").unwrap();
        assert!(format!("{:#}", root_from_config(&cfg, None).unwrap_err()).contains("s3"));
    }
}
