//! Which blob cache a registry uses, from its config.yml as the registry reads it
//! (`REGISTRY_<SECTION>_<KEY>` overrides the file), or a `redis://` / `rediss://` URL.
//!
//! 2.8 (redigo): `redis: {addr, password, db, dialtimeout, ...}`, no TLS. 3.x (go-redis
//! `UniversalOptions` inline): `redis: {addrs: [...], username, password, db, mastername, ...,
//! tls: {certificate, key, rootcas: [...]}}`: one address and no `mastername` is one server;
//! more addresses a cluster, a `mastername` sentinels, which regsweep does not follow (an
//! error naming the setting, before anything is deleted).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_norway::Value;

/// The blob cache a registry uses.
#[derive(Debug)]
pub enum Cache {
    Redis(Box<Target>),
    /// `inmemory`: only a restart clears it.
    InMemory,
    /// No `storage.cache` (or an unknown kind, which the registry ignores).
    None,
    /// Not known: no config and no URL given.
    Unknown,
}

/// A redis server, as the registry reaches it.
#[derive(Clone)]
pub struct Target {
    /// `host:port` and db (`rediss://` for TLS), without credentials: what the report shows.
    pub shown: String,
    /// Where it was read from (`config.yml: redis.addrs`, `--redis-cache`).
    pub from: String,
    pub(crate) info: redis::ConnectionInfo,
    /// TLS: the roots to trust (PEM; none: the system's) and a client certificate and key.
    pub(crate) tls: Option<redis::TlsCertificates>,
    /// How long a connection, and a reply, may take.
    pub(crate) timeout: Duration,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No password.
        f.debug_struct("Target").field("shown", &self.shown).field("from", &self.from).finish()
    }
}

/// The default time a connection or reply may take (the registry's own dial timeout is
/// redigo's none / go-redis's 5 s).
const TIMEOUT: Duration = Duration::from_secs(5);

/// A `redis://[user][:password@]host[:port][/db]` or `rediss://...` URL; `ca_cert` (PEM) is
/// trusted in place of the system's roots for `rediss://`.
pub fn from_url(url: &str, ca_cert: Option<&Path>) -> Result<Target> {
    let bad = |why: &str| anyhow!("--redis-cache {}: {why}", redact(url));
    let parsed = redis::parse_redis_url(url).ok_or_else(|| bad("not a redis:// or rediss:// URL"))?;
    let tls = match parsed.scheme() {
        "redis" => false,
        "rediss" => true,
        s => {
            return Err(bad(&format!(
                "scheme {s}: give redis:// or rediss:// (no unix sockets, sentinels or clusters)"
            )));
        }
    };
    if ca_cert.is_some() && !tls {
        return Err(bad("--redis-ca-cert is for rediss:// only"));
    }
    let info = redis::IntoConnectionInfo::into_connection_info(parsed.clone()).map_err(|e| bad(&e.to_string()))?;
    let host = parsed.host_str().unwrap_or_default().to_string();
    let port = parsed.port().unwrap_or(6379);
    let tls = tls.then(|| read_tls(ca_cert, None)).transpose()?;
    Ok(Target {
        shown: shown(tls.is_some(), &host, port, info.redis_settings().db()),
        from: "--redis-cache".into(),
        info,
        tls,
        timeout: TIMEOUT,
    })
}

/// The URL with its password hidden (whatever its scheme).
fn redact(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else { return url.to_string() };
    let rest = &url[start..];
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("{}{}:***{}", &url[..start], &rest[..colon], &rest[at..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

fn shown(tls: bool, host: &str, port: u16, db: i64) -> String {
    let scheme = if tls { "rediss" } else { "redis" };
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() };
    format!("{scheme}://{host}:{port}/{db}")
}

/// The cache the registry whose config is `path` uses (`env` reads the registry's
/// environment overrides).
pub fn from_config(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Cache> {
    let text = crate::store::config::read_config(path)
        .with_context(|| format!("cannot read registry config {}", path.display()))?;
    let doc: Value = serde_norway::from_str(&text)
        .with_context(|| format!("registry config {} is not valid YAML", path.display()))?;
    parse(&doc, &path.display().to_string(), env)
}

/// A scalar as the registry reads it (YAML strings, numbers and booleans alike).
fn scalar(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse(doc: &Value, file: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Cache> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    let cache = doc.get("storage").and_then(|s| s.get("cache"));
    // 2.8 and 3.x read `blobdescriptor`, then the older `layerinfo`.
    let kind = var("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR")
        .or_else(|| scalar(cache.and_then(|c| c.get("blobdescriptor"))))
        .or_else(|| var("REGISTRY_STORAGE_CACHE_LAYERINFO"))
        .or_else(|| scalar(cache.and_then(|c| c.get("layerinfo"))));
    match kind.as_deref() {
        Some("redis") => {}
        Some("inmemory") => return Ok(Cache::InMemory),
        _ => return Ok(Cache::None),
    }
    let redis = doc.get("redis");
    let key = |k: &str| -> Option<String> {
        var(&format!("REGISTRY_REDIS_{}", k.to_ascii_uppercase())).or_else(|| scalar(redis.and_then(|r| r.get(k))))
    };
    let at = |k: &str| format!("{file}: redis.{k}");
    // Sentinels and clusters: 3.x's go-redis follows them, regsweep does not.
    for k in ["mastername", "sentinelusername", "sentinelpassword"] {
        if key(k).is_some() {
            bail!(
                "{}: a redis sentinel setup, which regsweep cannot follow: give the master's address with \
                 --redis-cache redis://HOST:PORT/DB",
                at(k)
            );
        }
    }
    let addrs: Option<Vec<String>> = match var("REGISTRY_REDIS_ADDRS") {
        Some(v) => Some(serde_norway::from_str(&v).with_context(|| "REGISTRY_REDIS_ADDRS is not a YAML list")?),
        None => match redis.and_then(|r| r.get("addrs")) {
            None | Some(Value::Null) => None,
            Some(Value::Sequence(s)) => Some(
                s.iter()
                    .map(|v| scalar(Some(v)).with_context(|| format!("{}: not a string", at("addrs"))))
                    .collect::<Result<_>>()?,
            ),
            Some(v) => Some(vec![scalar(Some(v)).with_context(|| format!("{}: not a list", at("addrs")))?]),
        },
    };
    let (addr, from, v3) = match (addrs, key("addr")) {
        (Some(_), Some(_)) => {
            bail!("{}: both redis.addr (2.8) and redis.addrs (3.x): which registry reads this file?", at("addr"))
        }
        (Some(a), None) if a.len() > 1 => bail!(
            "{}: {} addresses: a redis cluster, which regsweep cannot follow: give one node with --redis-cache, or \
             empty the cache's keys by hand after the run",
            at("addrs"),
            a.len()
        ),
        (Some(a), None) => (a.into_iter().next(), at("addrs"), true),
        (None, Some(a)) => (Some(a), at("addr"), false),
        (None, None) => (None, at("addr"), false),
    };
    let Some(addr) = addr.filter(|a| !a.is_empty()) else {
        bail!(
            "{file}: storage.cache.blobdescriptor is redis but redis.addr (2.8) or redis.addrs (3.x) gives no address"
        );
    };
    let (host, port) = match addr.rsplit_once(':') {
        Some((h, p)) => (h.trim_start_matches('[').trim_end_matches(']').to_string(), p.parse::<u16>().ok()),
        None => (addr.clone(), Some(6379)),
    };
    let Some(port) = port else { bail!("{from}: {addr:?} is not host:port") };
    let db: i64 = match key("db") {
        None => 0,
        Some(d) => d.parse().with_context(|| format!("{}: {d:?} is not a number", at("db")))?,
    };
    let mut settings = redis::RedisConnectionInfo::default().set_db(db);
    if let Some(p) = key("password") {
        settings = settings.set_password(p);
    }
    if v3 && let Some(u) = key("username") {
        settings = settings.set_username(u);
    }
    // 3.x: TLS where any of redis.tls is set (as the registry decides).
    let tls_section = redis.and_then(|r| r.get("tls"));
    let tls_key = |k: &str| scalar(tls_section.and_then(|t| t.get(k)));
    let roots: Vec<PathBuf> = match tls_section.and_then(|t| t.get("rootcas")) {
        Some(Value::Sequence(s)) => s.iter().filter_map(|v| scalar(Some(v))).map(PathBuf::from).collect(),
        _ => Vec::new(),
    };
    let tls = v3 && (tls_key("certificate").is_some() || tls_key("key").is_some() || !roots.is_empty());
    let timeout = key("dialtimeout").and_then(|t| go_duration(&t)).unwrap_or(TIMEOUT).max(TIMEOUT);
    let addr_kind = if tls {
        redis::ConnectionAddr::TcpTls { host: host.clone(), port, insecure: false, tls_params: None }
    } else {
        redis::ConnectionAddr::Tcp(host.clone(), port)
    };
    let info = redis::IntoConnectionInfo::into_connection_info(addr_kind)
        .map_err(|e| anyhow!("{from}: {e}"))?
        .set_redis_settings(settings);
    let tls = if tls {
        let client = match (tls_key("certificate"), tls_key("key")) {
            (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
            // As the registry: without both, no client certificate.
            _ => None,
        };
        Some(read_many_tls(&roots, client).with_context(|| format!("{file}: redis.tls"))?)
    } else {
        None
    };
    Ok(Cache::Redis(Box::new(Target { shown: shown(tls.is_some(), &host, port, db), from, info, tls, timeout })))
}

/// A Go duration as the registry's config has it (`5s`, `500ms`, `1m`), or a number of
/// nanoseconds.
fn go_duration(s: &str) -> Option<Duration> {
    if let Ok(ns) = s.parse::<u64>() {
        return Some(Duration::from_nanos(ns));
    }
    humantime::parse_duration(s).ok()
}

fn read_tls(ca: Option<&Path>, client: Option<(PathBuf, PathBuf)>) -> Result<redis::TlsCertificates> {
    let roots: Vec<PathBuf> = ca.into_iter().map(Path::to_path_buf).collect();
    read_many_tls(&roots, client)
}

/// The roots (all their PEM certificates together; none: the system's) and a client
/// certificate and key.
fn read_many_tls(roots: &[PathBuf], client: Option<(PathBuf, PathBuf)>) -> Result<redis::TlsCertificates> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let mut root_cert = None;
    for r in roots {
        root_cert.get_or_insert_with(Vec::new).extend(read(r)?);
    }
    let client_tls = match client {
        Some((cert, key)) => Some(redis::ClientTlsConfig { client_cert: read(&cert)?, client_key: read(&key)? }),
        None => None,
    };
    Ok(redis::TlsCertificates { client_tls, root_cert })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(yaml: &str, env: &[(&str, &str)]) -> Result<Cache> {
        let doc: Value = serde_norway::from_str(yaml).unwrap();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        parse(&doc, "config.yml", &|k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    fn target(yaml: &str) -> Target {
        match cache(yaml, &[]).unwrap() {
            Cache::Redis(t) => *t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_kind_is_storage_cache_blobdescriptor() {
        assert!(matches!(cache("storage: {filesystem: {}}", &[]).unwrap(), Cache::None));
        assert!(matches!(cache("storage: {cache: {blobdescriptor: inmemory}}", &[]).unwrap(), Cache::InMemory));
        assert!(matches!(cache("storage: {cache: {layerinfo: inmemory}}", &[]).unwrap(), Cache::InMemory));
        let env = [("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR", "inmemory")];
        assert!(matches!(cache("storage: {cache: {blobdescriptor: redis}}", &env).unwrap(), Cache::InMemory));
    }

    #[test]
    fn version_2_8s_addr_password_and_db() {
        let t =
            target("storage: {cache: {blobdescriptor: redis}}\nredis: {addr: 'localhost:6380', password: s, db: 3}");
        assert_eq!(t.shown, "redis://localhost:6380/3");
        assert_eq!(t.from, "config.yml: redis.addr");
        assert_eq!(t.info.redis_settings().password(), Some("s"));
        assert_eq!(t.info.redis_settings().db(), 3);
        assert!(t.tls.is_none());
    }

    #[test]
    fn version_3s_addrs_username_and_tls() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "PEM").unwrap();
        let yaml = format!(
            "storage: {{cache: {{blobdescriptor: redis}}}}\nredis: {{addrs: ['10.0.0.1:6379'], username: u, password: p, \
             db: 1, tls: {{rootcas: ['{}']}}}}",
            ca.display()
        );
        let t = target(&yaml);
        assert_eq!(t.shown, "rediss://10.0.0.1:6379/1");
        assert_eq!(t.info.redis_settings().username(), Some("u"));
        assert_eq!(t.tls.as_ref().unwrap().root_cert.as_deref(), Some(&b"PEM"[..]));
    }

    #[test]
    fn sentinels_and_clusters_are_errors_naming_the_setting() {
        let e =
            cache("storage: {cache: {blobdescriptor: redis}}\nredis: {addrs: [a:1], mastername: m}", &[]).unwrap_err();
        assert!(e.to_string().contains("redis.mastername"), "{e}");
        let e = cache("storage: {cache: {blobdescriptor: redis}}\nredis: {addrs: [a:1, b:2, c:3]}", &[]).unwrap_err();
        assert!(e.to_string().contains("redis.addrs: 3 addresses"), "{e}");
        let e = cache("storage: {cache: {blobdescriptor: redis}}", &[]).unwrap_err();
        assert!(e.to_string().contains("gives no address"), "{e}");
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let env = [("REGISTRY_REDIS_ADDR", "other:7000"), ("REGISTRY_REDIS_DB", "2")];
        let Cache::Redis(t) = cache("storage: {cache: {blobdescriptor: redis}}\nredis: {addr: 'a:1'}", &env).unwrap()
        else {
            panic!()
        };
        assert_eq!(t.shown, "redis://other:7000/2");
    }

    #[test]
    fn a_url_with_its_password_hidden_in_errors() {
        let t = from_url("redis://:secret@127.0.0.1:7001/4", None).unwrap();
        assert_eq!(t.shown, "redis://127.0.0.1:7001/4");
        assert_eq!(t.info.redis_settings().password(), Some("secret"));
        let e = from_url("http://:secret@h/0", None).unwrap_err().to_string();
        assert!(e.contains("not a redis:// or rediss:// URL") && !e.contains("secret"), "{e}");
        assert!(from_url("rediss://h:1/0", None).unwrap().tls.is_some());
    }
}
