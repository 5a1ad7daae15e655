//! The registry's own config.yml: where its store is (a folder, or an s3, azure or gcs bucket),
//! read as registry 2.8 and 3.x read it: `REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY` and
//! `REGISTRY_STORAGE_<DRIVER>_<KEY>` (a nested key's path joined by `_`, its value YAML) override
//! the file. Each driver's keys are read by its own module ([`Section`]); a key that changes
//! where or how the store is reached and that regsweep cannot honour is a warning naming it
//! ([`crate::model::warning::WarningKind::ConfigNotHonoured`]), one the registry alone uses (chunk sizes, retries of
//! its own) is left alone, and one neither registry knows is named too.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_norway::Value;

use crate::model::warning::Warning;
use crate::store::bucket::s3::S3Location;
use crate::store::location::Location;
use crate::store::section::{Keys, Section};

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

/// The registry's own name as clients reach it: `http.host` (`REGISTRY_HTTP_HOST` overrides it,
/// as in the registry), a URL (`https://registry.example.com:5000`); `None` when neither says.
pub fn registry_host(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>> {
    if let Some(h) = env("REGISTRY_HTTP_HOST").filter(|h| !h.is_empty()) {
        return Ok(Some(h));
    }
    let text = read_config(path).with_context(|| format!("cannot read registry config {}", path.display()))?;
    let doc: Value = serde_norway::from_str(&text)
        .with_context(|| format!("registry config {} is not valid YAML", path.display()))?;
    Ok(doc.get("http").and_then(|h| h.get("host")).and_then(Value::as_str).filter(|h| !h.is_empty()).map(String::from))
}

/// The keys of the s3 driver, 2.8's (`s3-aws`) and 3.1.1's (`s3-aws`, with `forcepathstyle`,
/// `accelerate`, `usedualstack`, `usefipsendpoint` and `loglevel` new).
const S3_KEYS: Keys = Keys {
    read: &[
        "bucket",
        "region",
        "regionendpoint",
        "secure",
        "skipverify",
        "rootdirectory",
        "accesskey",
        "secretkey",
        "v4auth",
        "encrypt",
        "keyid",
        "forcepathstyle",
        "accelerate",
        "usedualstack",
        "usefipsendpoint",
    ],
    registry_only: &[
        "chunksize",
        "multipartcopychunksize",
        "multipartcopymaxconcurrency",
        "multipartcopythresholdsize",
        "storageclass",
        "useragent",
        "objectacl",
        "loglevel",
    ],
    any_case: false,
};

/// The keys of the azure driver: 2.8's `accountname`, `accountkey`, `container`, `realm`, and
/// 3.1.1's besides (`serviceurl`, `credentials`, `connectionstring`, `skipverify`, retries).
#[cfg(feature = "azure")]
const AZURE_KEYS: Keys = Keys {
    read: &[
        "container",
        "accountname",
        "accountkey",
        "realm",
        "serviceurl",
        "rootdirectory",
        "credentials",
        "credentials.type",
        "credentials.clientid",
        "credentials.tenantid",
        "credentials.secret",
        "connectionstring",
        "skipverify",
    ],
    registry_only: &["max_retries", "retry_delay"],
    any_case: true,
};

/// The keys of the gcs driver (the same in 2.8 and 3.1.1): `keyfile`, else `credentials`
/// inline (a service account's key as a map), else Google's default credentials.
#[cfg(feature = "gcs")]
const GCS_KEYS: Keys = Keys {
    read: &["bucket", "rootdirectory", "keyfile", "credentials"],
    registry_only: &["chunksize", "maxconcurrency", "useragent"],
    any_case: false,
};

/// The keys of `storage` that are not a driver, as the registry's `Storage.Type` skips them.
const NOT_DRIVERS: [&str; 5] = ["maintenance", "cache", "delete", "redirect", "tag"];

/// The bucket drivers, and their keys.
const DRIVERS: &[(&str, &Keys)] = &[
    ("s3", &S3_KEYS),
    #[cfg(feature = "azure")]
    ("azure", &AZURE_KEYS),
    #[cfg(feature = "gcs")]
    ("gcs", &GCS_KEYS),
];

/// The store a registry config names: its filesystem `rootdirectory`, or its bucket, with the
/// registry's environment overrides (`env` reads them), and a warning for each key regsweep does
/// not honour.
pub fn location_from_config(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<(Location, Vec<Warning>)> {
    let text = read_config(path).with_context(|| format!("cannot read registry config {}", path.display()))?;
    let doc: Value = serde_norway::from_str(&text)
        .with_context(|| format!("registry config {} is not valid YAML", path.display()))?;
    // The registry applies a variable even when empty: it sets its key to null (for
    // `rootdirectory`, the driver's default), it does not skip it.
    let root_env = env(ROOT_ENV);
    let storage = doc.get("storage");
    let at = |driver: &str| format!("{}: storage.{driver}", path.display());
    let mut warnings = Vec::new();
    // The drivers named, by the file or the environment: the registry refuses more than one.
    let mut drivers: Vec<String> = storage
        .and_then(|s| s.as_mapping())
        .map(|m| m.keys().filter_map(|k| k.as_str().map(String::from)).collect())
        .unwrap_or_default();
    drivers.retain(|d| !NOT_DRIVERS.contains(&d.as_str()));
    for (driver, keys) in DRIVERS {
        if !drivers.iter().any(|d| d == driver) && Section::read(None, driver, keys, env)?.is_some() {
            drivers.push(driver.to_string());
        }
    }
    if root_env.is_some() && !drivers.iter().any(|d| d == "filesystem") {
        drivers.push("filesystem".to_string());
    }
    if drivers.len() > 1 {
        bail!(
            "{}: the registry's storage names more than one driver ({}, with its REGISTRY_STORAGE_* variables): the \
             registry refuses to start so",
            path.display(),
            drivers.join(", ")
        );
    }
    if let Some(root) = root_env {
        let root = if root.is_empty() { DEFAULT_ROOT.to_string() } else { root };
        return Ok((Location::Fs(PathBuf::from(root)), warnings));
    }
    if let Some(s) = Section::read(storage, "s3", &S3_KEYS, env).with_context(|| at("s3"))? {
        s.unknown(&S3_KEYS, &mut warnings);
        let loc = S3Location::from_registry(&s, env, &mut warnings).with_context(|| at("s3"))?;
        return Ok((Location::S3(loc), warnings));
    }
    #[cfg(feature = "azure")]
    if let Some(s) = Section::read(storage, "azure", &AZURE_KEYS, env).with_context(|| at("azure"))? {
        s.unknown(&AZURE_KEYS, &mut warnings);
        let loc = crate::store::bucket::azure::AzureLocation::from_registry(&s, env, &mut warnings)
            .with_context(|| at("azure"))?;
        return Ok((Location::Azure(loc), warnings));
    }
    #[cfg(feature = "gcs")]
    if let Some(s) = Section::read(storage, "gcs", &GCS_KEYS, env).with_context(|| at("gcs"))? {
        s.unknown(&GCS_KEYS, &mut warnings);
        let loc =
            crate::store::bucket::gcs::GcsLocation::from_registry(&s, env, &mut warnings).with_context(|| at("gcs"))?;
        return Ok((Location::Gcs(loc), warnings));
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
    let fs = match fs.get("rootdirectory") {
        None | Some(Value::Null) => Location::Fs(PathBuf::from(DEFAULT_ROOT)),
        Some(v) => v
            .as_str()
            .map(|r| Location::Fs(PathBuf::from(r)))
            .with_context(|| format!("{}: storage.filesystem.rootdirectory is not a string", path.display()))?,
    };
    Ok((fs, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::warning::WarningKind;
    use std::collections::HashMap;

    /// The location and warnings a config file's text gives with the environment `env`.
    fn read(yaml: &str, env: &[(&str, &str)]) -> Result<(Location, Vec<Warning>)> {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, yaml).unwrap();
        let mut env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        env.entry("HOME".into()).or_insert("/nonexistent".into());
        location_from_config(&cfg, &|k| env.get(k).cloned())
    }

    fn fs_root(yaml: &str, env: &[(&str, &str)]) -> Result<Location> {
        read(yaml, env).map(|(l, _)| l)
    }

    fn path(l: Location) -> PathBuf {
        match l {
            Location::Fs(p) => p,
            other => panic!("not a folder: {other:?}"),
        }
    }

    fn messages(w: &[Warning]) -> String {
        assert!(w.iter().all(|w| w.kind == WarningKind::ConfigNotHonoured));
        w.iter().map(|w| w.message.as_str()).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn reads_rootdirectory_and_env_override() {
        let yaml =
            "version: 0.1\nstorage:\n  cache: {blobdescriptor: inmemory}\n  filesystem:\n    rootdirectory: /srv/reg\n";
        assert_eq!(path(fs_root(yaml, &[]).unwrap()), PathBuf::from("/srv/reg"));
        assert_eq!(path(fs_root(yaml, &[(ROOT_ENV, "/other")]).unwrap()), PathBuf::from("/other"));
        assert_eq!(path(fs_root("storage:\n  filesystem: {}\n", &[]).unwrap()), PathBuf::from(DEFAULT_ROOT));
        assert!(format!("{:#}", fs_root("storage:\n  swift: {container: b}\n", &[]).unwrap_err()).contains("swift"));
    }

    #[test]
    fn reads_the_s3_section_and_its_overrides() {
        let yaml = "storage:\n  s3:\n    bucket: reg\n    region: eu-west-1\n    regionendpoint: http://127.0.0.1:9000\n    \
                    secure: false\n    rootdirectory: /store\n    accesskey: a\n    secretkey: s\n";
        let Location::S3(s3) = fs_root(yaml, &[("REGISTRY_STORAGE_S3_BUCKET", "other")]).unwrap() else {
            panic!("not a bucket")
        };
        assert_eq!((s3.bucket.as_str(), s3.root.as_str(), s3.region.as_str()), ("other", "store", "eu-west-1"));
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!((s3.access_key.as_deref(), s3.secret_key.as_deref()), (Some("a"), Some("s")));
        assert!(!s3.virtual_hosted && !s3.skip_verify && s3.encryption.is_none());
    }

    /// Every s3 key of 2.8 and 3.1.1: each read as the registry reads it, or in a warning.
    #[test]
    fn the_s3_keys_of_both_versions() {
        let s3 = |yaml: &str, env: &[(&str, &str)]| -> (S3Location, String) {
            let (l, w) = read(&format!("storage:\n  s3:\n{yaml}"), env).unwrap();
            let Location::S3(s3) = l else { panic!("not a bucket") };
            (s3, messages(&w))
        };
        // secure: the scheme of an endpoint given without one; a string as the registry parses it.
        let (l, _) = s3("    bucket: b\n    regionendpoint: minio:9000\n", &[]);
        assert_eq!(l.endpoint.as_deref(), Some("https://minio:9000"));
        let (l, _) = s3("    bucket: b\n    regionendpoint: minio:9000\n    secure: 'false'\n", &[]);
        assert_eq!(l.endpoint.as_deref(), Some("http://minio:9000"));
        let (l, _) = s3("    bucket: b\n    regionendpoint: minio:9000\n", &[("REGISTRY_STORAGE_S3_SECURE", "false")]);
        assert_eq!(l.endpoint.as_deref(), Some("http://minio:9000"), "an override is YAML: false");
        assert!(read("storage:\n  s3: {bucket: b, secure: maybe}\n", &[]).is_err());
        // skipverify, encrypt and keyid.
        let (l, w) = s3("    bucket: b\n    region: eu-west-1\n    skipverify: true\n    encrypt: true\n", &[]);
        assert!(l.skip_verify && w.is_empty(), "{w}");
        assert_eq!(l.encryption, Some(("AES256".into(), None)));
        let (l, _) = s3("    bucket: b\n    region: eu-west-1\n    encrypt: true\n    keyid: k1\n", &[]);
        assert_eq!(l.encryption, Some(("aws:kms".into(), Some("k1".into()))));
        let (l, _) = s3("    bucket: b\n    region: eu-west-1\n    encrypt: false\n    keyid: k1\n", &[]);
        assert_eq!(l.encryption, None, "keyid without encrypt: nothing, as in the registry");
        // v4auth: false is named.
        let (_, w) = s3("    bucket: b\n    regionendpoint: http://ceph:7480\n    v4auth: false\n", &[]);
        assert!(w.contains("storage.s3.v4auth") && w.contains("signature v4"), "{w}");
        // 3.1.1's endpoint keys: AWS's endpoints as its SDK picks them.
        let (l, _) = s3("    bucket: b\n    region: eu-west-1\n    usefipsendpoint: true\n", &[]);
        assert_eq!(l.endpoint.as_deref(), Some("https://s3-fips.eu-west-1.amazonaws.com"));
        let (l, _) = s3("    bucket: b\n    region: eu-west-1\n    usedualstack: true\n", &[]);
        assert_eq!(l.endpoint.as_deref(), Some("https://s3.dualstack.eu-west-1.amazonaws.com"));
        let (l, _) =
            s3("    bucket: b\n    region: eu-west-1\n    usedualstack: true\n    usefipsendpoint: true\n", &[]);
        assert_eq!(l.endpoint.as_deref(), Some("https://s3-fips.dualstack.eu-west-1.amazonaws.com"));
        let (l, _) = s3("    bucket: b\n    region: eu-west-1\n    accelerate: true\n", &[]);
        assert_eq!(l.endpoint.as_deref(), Some("https://b.s3-accelerate.amazonaws.com"));
        assert!(l.virtual_hosted);
        let (l, w) = s3("    bucket: b\n    regionendpoint: http://m:1\n    usefipsendpoint: true\n", &[]);
        assert_eq!(l.endpoint.as_deref(), Some("http://m:1"), "regionendpoint first, as the SDK");
        assert!(w.contains("storage.s3.usefipsendpoint"), "{w}");
        // forcepathstyle: the same host either way; registry-only keys; unknown keys named.
        let (l, w) = s3(
            "    bucket: b\n    regionendpoint: http://m:1\n    forcepathstyle: false\n    chunksize: 5242880\n    \
             storageclass: STANDARD\n    loglevel: debug\n    objectacl: private\n    useragent: x\n    \
             multipartcopychunksize: 33554432\n    multipartcopymaxconcurrency: 100\n    \
             multipartcopythresholdsize: 33554432\n    sessiontoken: t\n",
            &[],
        );
        assert_eq!(l.endpoint.as_deref(), Some("http://m:1"));
        assert_eq!(w, "storage.s3.sessiontoken: not a key of the registry's s3 driver: ignored");
        // accesskey and secretkey, else the environment's.
        let (l, _) =
            s3("    bucket: b\n    region: r\n", &[("AWS_ACCESS_KEY_ID", "ea"), ("AWS_SECRET_ACCESS_KEY", "es")]);
        assert_eq!((l.access_key.as_deref(), l.secret_key.as_deref()), (Some("ea"), Some("es")));
        let (l, _) = s3(
            "    bucket: b\n    region: r\n",
            &[("REGISTRY_STORAGE_S3_ACCESSKEY", "oa"), ("REGISTRY_STORAGE_S3_SECRETKEY", "os")],
        );
        assert_eq!((l.access_key.as_deref(), l.secret_key.as_deref()), (Some("oa"), Some("os")));
        // A section the environment alone makes; beside another driver, refused as by the registry.
        let (l, _) = read("storage:\n  delete: {enabled: true}\n", &[("REGISTRY_STORAGE_S3_BUCKET", "eb")]).unwrap();
        assert!(matches!(l, Location::S3(s) if s.bucket == "eb"));
        let e = read("storage:\n  filesystem: {}\n", &[("REGISTRY_STORAGE_S3_BUCKET", "eb")]).unwrap_err();
        assert!(format!("{e:#}").contains("more than one driver (filesystem, s3"), "{e:#}");
        assert!(format!("{:#}", read("storage:\n  s3: {region: r}\n", &[]).unwrap_err()).contains("storage.s3.bucket"));
    }

    #[cfg(feature = "azure")]
    fn azure(yaml: &str, env: &[(&str, &str)]) -> Result<(crate::store::bucket::azure::AzureLocation, String)> {
        let (l, w) = read(&format!("storage:\n  azure:\n{yaml}"), env)?;
        let Location::Azure(a) = l else { panic!("not a container") };
        Ok((a, messages(&w)))
    }

    /// 2.8's azure section: accountname, accountkey, container, realm; its overrides.
    #[cfg(feature = "azure")]
    #[test]
    fn the_azure_keys_of_2_8() {
        use crate::store::bucket::azure::AzureAuth;
        let yaml =
            "    accountname: acct\n    accountkey: a2V5\n    container: reg\n    realm: core.chinacloudapi.cn\n";
        let (a, w) = azure(yaml, &[("REGISTRY_STORAGE_AZURE_CONTAINER", "other")]).unwrap();
        assert_eq!((a.container.as_str(), a.root.as_str()), ("other", ""));
        let s = a.service.unwrap();
        assert_eq!((s.account.as_str(), s.url.as_str()), ("acct", "https://acct.blob.core.chinacloudapi.cn"));
        assert_eq!(s.auth, AzureAuth::SharedKey { key: "a2V5".into() });
        assert!(w.is_empty(), "{w}");
        let (a, _) = azure("    accountname: acct\n    accountkey: k\n    container: reg\n", &[]).unwrap();
        assert_eq!(a.service.unwrap().url, "https://acct.blob.core.windows.net", "the default realm");
        // 2.8 has no rootdirectory: the store is at the container's root, and the key is named.
        let (a, w) =
            azure("    accountname: acct\n    accountkey: k\n    container: reg\n    rootdirectory: /r\n", &[])
                .unwrap();
        assert_eq!(a.root, "");
        assert!(w.contains("storage.azure.rootdirectory: registry 2.8's azure driver has none"), "{w}");
        let (a, w) = azure(
            "    accountname: acct\n    accountkey: k\n    container: reg\n    rootdirectory: /r/\n    credentials: {type: shared_key}\n",
            &[],
        )
        .unwrap();
        assert_eq!((a.root.as_str(), w.as_str()), ("r", ""), "3.x's");
        let err = |yaml: &str| format!("{:#}", azure(yaml, &[]).unwrap_err());
        assert!(err("    accountkey: k\n    container: reg\n").contains("storage.azure.accountname"));
        assert!(err("    accountname: a\n    container: reg\n").contains("storage.azure.accountkey"));
        assert!(err("    accountname: a\n    accountkey: k\n").contains("storage.azure.container"));
    }

    /// What the registry does with its environment, where skipping or following a variable would
    /// send regsweep elsewhere: an empty override clears its key, the filesystem's variable counts
    /// as a driver, AWS's endpoint variables are not the registry's, a variable inside a map the
    /// file gives is ignored.
    #[test]
    fn the_environment_as_the_registry_reads_it() {
        let s3 =
            "storage:\n  s3: {bucket: reg, region: eu-west-1, rootdirectory: /store, regionendpoint: http://m:9000}\n";
        let (l, _) = read(s3, &[("REGISTRY_STORAGE_S3_ROOTDIRECTORY", "")]).unwrap();
        let Location::S3(b) = l else { panic!("not s3") };
        assert_eq!(b.root, "", "an empty variable clears rootdirectory");
        let (l, _) = read(s3, &[("REGISTRY_STORAGE_S3_REGIONENDPOINT", "")]).unwrap();
        let Location::S3(b) = l else { panic!("not s3") };
        assert_eq!(b.endpoint, None, "an empty variable clears regionendpoint: AWS, as the registry");
        let e = read(s3, &[(ROOT_ENV, "/srv/reg")]).unwrap_err();
        assert!(format!("{e:#}").contains("more than one driver"), "{e:#}");
        assert_eq!(
            path(fs_root("storage:\n  filesystem: {rootdirectory: /a}\n", &[(ROOT_ENV, "")]).unwrap()),
            PathBuf::from(DEFAULT_ROOT)
        );
        let aws = "storage:\n  s3: {bucket: reg, region: eu-west-1}\n";
        let (l, w) =
            read(aws, &[("AWS_ENDPOINT_URL", "http://minio:9000"), ("AWS_ENDPOINT_URL_S3", "http://m2:9000")]).unwrap();
        let Location::S3(b) = l else { panic!("not s3") };
        assert_eq!(b.endpoint, None, "the registry's SDK reads no endpoint variable");
        assert!(
            messages(&w).contains("AWS_ENDPOINT_URL:") && messages(&w).contains("AWS_ENDPOINT_URL_S3:"),
            "{}",
            messages(&w)
        );
        #[cfg(feature = "azure")]
        {
            use crate::store::bucket::azure::AzureAuth;
            let file = "storage:\n  azure: {accountname: a, accountkey: k, container: c, serviceurl: http://127.0.0.1:1/a, \
                        credentials: {type: shared_key}}\n";
            let (l, w) = read(file, &[("REGISTRY_STORAGE_AZURE_CREDENTIALS_TYPE", "default_credentials")]).unwrap();
            let Location::Azure(a) = l else { panic!("not azure") };
            assert_eq!(
                a.service.unwrap().auth,
                AzureAuth::SharedKey { key: "k".into() },
                "the file's map, as the registry"
            );
            assert!(messages(&w).contains("REGISTRY_STORAGE_AZURE_CREDENTIALS_TYPE: ignored"), "{}", messages(&w));
        }
    }

    /// 3.1.1's azure section: serviceurl over realm, each credentials type, skipverify,
    /// connectionstring (read, never used), retries (the registry's own), nested overrides.
    #[cfg(feature = "azure")]
    #[test]
    fn the_azure_keys_of_3() {
        use crate::store::bucket::azure::AzureAuth;
        let base = "    accountname: devstoreaccount1\n    container: reg\n";
        let shared = format!(
            "{base}    accountkey: a2V5\n    serviceurl: http://127.0.0.1:10000/devstoreaccount1/\n    realm: \
             core.usgovcloudapi.net\n    credentials: {{type: shared_key}}\n    max_retries: 3\n    retry_delay: 1s\n"
        );
        let (a, w) = azure(&shared, &[]).unwrap();
        let s = a.service.unwrap();
        assert_eq!(s.url, "http://127.0.0.1:10000/devstoreaccount1", "serviceurl before realm");
        assert_eq!(s.auth, AzureAuth::SharedKey { key: "a2V5".into() });
        assert!(!s.skip_verify && w.is_empty(), "{w}");
        // Keys in any case, as 3.x's mapstructure matches them; two of one name refused.
        let (a, w) = azure(
            "    AccountName: devstoreaccount1\n    container: reg\n    serviceURL: http://127.0.0.1:1/acct\n    \
             Credentials: {Type: client_secret, TenantID: t, ClientID: c, Secret: s}\n",
            &[],
        )
        .unwrap();
        let s = a.service.unwrap();
        assert_eq!((s.account.as_str(), s.url.as_str()), ("devstoreaccount1", "http://127.0.0.1:1/acct"));
        assert!(matches!(s.auth, AzureAuth::ClientSecret { .. }) && w.is_empty(), "{w}");
        let e = azure(&format!("{base}    serviceurl: http://a\n    serviceURL: http://b\n"), &[]).unwrap_err();
        assert!(format!("{e:#}").contains("two keys name serviceurl"), "{e:#}");
        // Overridden by the environment, a nested key too.
        let (a, _) = azure(
            &shared,
            &[
                ("REGISTRY_STORAGE_AZURE_SERVICEURL", "https://acct.privatelink.blob.core.windows.net"),
                ("REGISTRY_STORAGE_AZURE_SKIPVERIFY", "true"),
            ],
        )
        .unwrap();
        let s = a.service.unwrap();
        assert_eq!(s.url, "https://acct.privatelink.blob.core.windows.net");
        assert!(s.skip_verify);
        let (a, _) = azure(
            &format!("{base}    accountkey: k\n"),
            &[
                ("REGISTRY_STORAGE_AZURE_CREDENTIALS_TYPE", "client_secret"),
                ("REGISTRY_STORAGE_AZURE_CREDENTIALS_TENANTID", "t"),
                ("REGISTRY_STORAGE_AZURE_CREDENTIALS_CLIENTID", "c"),
                ("REGISTRY_STORAGE_AZURE_CREDENTIALS_SECRET", "s"),
            ],
        )
        .unwrap();
        let secret =
            AzureAuth::ClientSecret { tenant: "t".into(), client: "c".into(), secret: "s".into(), authority: None };
        assert_eq!(a.service.unwrap().auth, secret);
        // client_secret from the file, with the sovereign cloud's authority of the environment.
        let (a, _) = azure(
            &format!("{base}    credentials: {{type: client_secret, tenantid: t, clientid: c, secret: s}}\n"),
            &[("AZURE_AUTHORITY_HOST", "https://login.chinacloudapi.cn")],
        )
        .unwrap();
        let AzureAuth::ClientSecret { authority, .. } = a.service.unwrap().auth else { panic!() };
        assert_eq!(authority.as_deref(), Some("https://login.chinacloudapi.cn"));
        let e = format!(
            "{:#}",
            azure(&format!("{base}    credentials: {{type: client_secret, tenantid: t}}\n"), &[]).unwrap_err()
        );
        assert!(e.contains("storage.azure.credentials.clientid"), "{e}");
        // default_credentials: Azure's chain, as far as object_store goes.
        let default = format!("{base}    credentials: {{type: default_credentials}}\n");
        let env_secret = [("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c"), ("AZURE_CLIENT_SECRET", "s")];
        assert_eq!(azure(&default, &env_secret).unwrap().0.service.unwrap().auth, secret);
        let workload =
            [("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c"), ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token")];
        assert_eq!(
            azure(&default, &workload).unwrap().0.service.unwrap().auth,
            AzureAuth::WorkloadIdentity {
                tenant: "t".into(),
                client: "c".into(),
                token_file: "/var/run/token".into(),
                authority: None
            }
        );
        assert_eq!(
            azure(&default, &[("AZURE_CLIENT_ID", "c")]).unwrap().0.service.unwrap().auth,
            AzureAuth::ManagedIdentityOrCli { client: Some("c".into()) }
        );
        let cert = [("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c"), ("AZURE_CLIENT_CERTIFICATE_PATH", "/c.pem")];
        assert!(format!("{:#}", azure(&default, &cert).unwrap_err()).contains("AZURE_CLIENT_CERTIFICATE_PATH"));
        // A bad type, serviceurl without a type, and the keys the registry reads and does not use.
        let e = format!("{:#}", azure(&format!("{base}    credentials: {{type: sas}}\n"), &[]).unwrap_err());
        assert!(e.contains("storage.azure.credentials.type") && e.contains("\"sas\""), "{e}");
        let e =
            format!("{:#}", azure(&format!("{base}    accountkey: k\n    serviceurl: http://x\n"), &[]).unwrap_err());
        assert!(e.contains("storage.azure.serviceurl") && e.contains("credentials.type"), "{e}");
        let e = format!(
            "{:#}",
            azure(
                &format!("{base}    accountkey: k\n    serviceurl: x:1\n    credentials: {{type: shared_key}}\n"),
                &[]
            )
            .unwrap_err()
        );
        assert!(e.contains("not an http(s) URL"), "{e}");
        let (a, w) = azure(
            &format!(
                "{base}    accountkey: k\n    credentials: {{type: shared_key, secret: s}}\n    connectionstring: \
                 DefaultEndpointsProtocol=https;AccountName=x;AccountKey=y;BlobEndpoint=https://elsewhere\n    \
                 serviceurl: https://acct.blob.core.windows.net\n    sas: z\n"
            ),
            &[("AZURE_STORAGE_USE_EMULATOR", "true")],
        )
        .unwrap();
        assert_eq!(a.service.unwrap().url, "https://acct.blob.core.windows.net", "not the connection string's");
        for named in [
            "storage.azure.connectionstring",
            "storage.azure.credentials.secret",
            "storage.azure.sas: not a key",
            "AZURE_STORAGE_USE_EMULATOR: not read with --config",
        ] {
            assert!(w.contains(named), "{named} in {w}");
        }
    }

    /// The gcs section (the same keys in 2.8 and 3.1.1): keyfile before credentials inline.
    #[cfg(feature = "gcs")]
    #[test]
    fn the_gcs_keys() {
        let gcs = |yaml: &str, env: &[(&str, &str)]| -> Result<(crate::store::bucket::gcs::GcsLocation, String)> {
            let (l, w) = read(&format!("storage:\n  gcs:\n{yaml}"), env)?;
            let Location::Gcs(g) = l else { panic!("not a bucket") };
            Ok((g, messages(&w)))
        };
        let (g, w) = gcs(
            "    bucket: reg\n    keyfile: /k.json\n    chunksize: 5242880\n    maxconcurrency: 50\n    useragent: x\n",
            &[("REGISTRY_STORAGE_GCS_ROOTDIRECTORY", "/r/")],
        )
        .unwrap();
        assert_eq!(
            (g.bucket.as_str(), g.root.as_str(), g.keyfile.as_deref(), g.key.as_deref()),
            ("reg", "r", Some("/k.json"), None)
        );
        assert!(w.is_empty(), "{w}");
        let inline = "    bucket: reg\n    credentials:\n      type: service_account\n      client_email: r@p.iam.gserviceaccount.com\n      \
                      private_key: |\n        -----BEGIN PRIVATE KEY-----\n        x\n        -----END PRIVATE KEY-----\n";
        let (g, _) = gcs(inline, &[]).unwrap();
        let key: serde_json::Value = serde_json::from_str(g.key.as_deref().unwrap()).unwrap();
        assert_eq!(key["client_email"], "r@p.iam.gserviceaccount.com");
        assert!(key["private_key"].as_str().unwrap().starts_with("-----BEGIN PRIVATE KEY-----\nx\n"));
        let (g, _) = gcs(&format!("{inline}    keyfile: /k.json\n"), &[]).unwrap();
        assert_eq!((g.keyfile.as_deref(), g.key), (Some("/k.json"), None), "keyfile first, as the registry");
        assert!(
            format!("{:#}", gcs("    bucket: reg\n    credentials: /k.json\n", &[]).unwrap_err())
                .contains("storage.gcs.credentials")
        );
        assert!(gcs("    keyfile: /k.json\n", &[]).is_err());
        let (_, w) = gcs("    bucket: reg\n", &[("GOOGLE_BASE_URL", "http://127.0.0.1:4443")]).unwrap();
        assert!(w.starts_with("GOOGLE_BASE_URL=http://127.0.0.1:4443: object_store's setting"), "{w}");
    }
}
