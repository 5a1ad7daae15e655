//! A small, blocking client of the Registry HTTP API v2: one `ureq` agent (pooled connections,
//! rustls), anonymous, basic or bearer authentication, retries with backoff for 429 and 5xx, and
//! pages followed through the `Link` header. Credentials never appear in an error or a log.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use crate::model::message_error;

/// A user name and its password.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <hidden>)", self.username)
    }
}

/// How to reach the registry.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// `https://host[:port]`, `http://host[:port]`, or `host[:port]` (https, but http for loopback).
    pub url: String,
    pub credentials: Option<Credentials>,
    /// Trust only the certificates of this PEM file (as curl's `--cacert`).
    pub ca_cert: Option<PathBuf>,
    /// Skip the verification of the server's certificate.
    pub insecure: bool,
    /// Parallel requests: the agent keeps this many connections.
    pub concurrency: usize,
}

/// What one request asks the token server for: `registry:catalog:*` or `repository:<name>:<action>`.
pub type Scope = String;

pub fn repo_scope(repo: &str, action: &str) -> Scope {
    format!("repository:{repo}:{action}")
}

pub const CATALOG_SCOPE: &str = "registry:catalog:*";

/// The methods regsweep sends a registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Delete,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Delete => "DELETE",
        })
    }
}

/// One answer.
pub struct Reply {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The registry's error codes (`{"errors":[{"code":...}]}`), for messages.
    pub fn error_codes(&self) -> String {
        #[derive(Deserialize)]
        struct Errors {
            errors: Vec<Code>,
        }
        #[derive(Deserialize)]
        struct Code {
            code: String,
        }
        match serde_json::from_slice::<Errors>(&self.body) {
            Ok(e) => e.errors.into_iter().map(|c| c.code).collect::<Vec<_>>().join(", "),
            Err(_) => String::from_utf8_lossy(&self.body[..self.body.len().min(200)]).trim().to_string(),
        }
    }
}

/// The `WWW-Authenticate: Bearer realm=...,service=...` of a registry behind a token server.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Challenge {
    realm: String,
    service: Option<String>,
    scope: Option<String>,
}

struct Token {
    value: String,
    expires: Instant,
}

#[derive(Deserialize)]
struct TokenReply {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// Requests are tried this many times when the answer is 429, 5xx or a broken connection.
const ATTEMPTS: u32 = 5;
/// The first wait before another try; it doubles with every try.
const BACKOFF: Duration = Duration::from_millis(200);
/// Bodies larger than this are refused (manifests are capped at 4 MiB by the registry).
const MAX_BODY: u64 = 64 << 20;

/// A registry, reached over HTTP.
pub struct Client {
    /// `scheme://host[:port]`, no trailing slash.
    pub base: String,
    agent: ureq::Agent,
    credentials: Option<Credentials>,
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<HashMap<Scope, Token>>,
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h == "localhost" || h == "::1" || h.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

/// The host part of `host[:port]` (IPv6 in brackets).
fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        authority.split_inclusive(']').next().unwrap_or(authority)
    } else {
        authority.split(':').next().unwrap_or(authority)
    }
}

/// `scheme://authority` for what the operator wrote; a scheme-less name is https unless loopback.
pub fn base_url(url: &str) -> Result<String> {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => (String::new(), url),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        bail!("bad --url {url:?}: give https://host[:port] (credentials go in --username, never in the URL)");
    }
    let scheme = match scheme.as_str() {
        "" if is_loopback(host_of(authority)) => "http".to_string(),
        "" => "https".to_string(),
        "http" | "https" => scheme,
        other => bail!("bad --url {url:?}: scheme {other:?} (http or https)"),
    };
    Ok(format!("{scheme}://{authority}"))
}

/// The credentials for `base` in a Docker client config (`auths.<host>.auth`, base64 `user:pass`).
pub fn docker_config_credentials(config: &Path, base: &str) -> Result<Option<Credentials>> {
    #[derive(Deserialize)]
    struct Config {
        #[serde(default)]
        auths: HashMap<String, Auth>,
    }
    #[derive(Deserialize)]
    struct Auth {
        auth: Option<String>,
        username: Option<String>,
        password: Option<String>,
    }
    let text = match std::fs::read(config) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", config.display())),
    };
    let cfg: Config = serde_json::from_slice(&text).with_context(|| format!("cannot parse {}", config.display()))?;
    let want = base.split_once("://").map_or(base, |(_, a)| a);
    let key_authority = |k: &str| -> String {
        let k = k.split_once("://").map_or(k, |(_, a)| a);
        k.split('/').next().unwrap_or_default().to_string()
    };
    let Some(auth) = cfg.auths.iter().find(|(k, _)| key_authority(k) == want).map(|(_, a)| a) else {
        return Ok(None);
    };
    if let Some(encoded) = &auth.auth {
        let decoded = BASE64
            .decode(encoded.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .with_context(|| format!("{}: auths.{want}.auth is not base64 of user:password", config.display()))?;
        let (u, p) = decoded
            .split_once(':')
            .with_context(|| format!("{}: auths.{want}.auth is not base64 of user:password", config.display()))?;
        return Ok(Some(Credentials { username: u.to_string(), password: p.to_string() }));
    }
    Ok(match (&auth.username, &auth.password) {
        (Some(u), Some(p)) => Some(Credentials { username: u.clone(), password: p.clone() }),
        _ => None,
    })
}

/// Parses `Bearer realm="...",service="...",scope="..."`.
fn parse_challenge(h: &str) -> Option<Challenge> {
    let (scheme, params) = h.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut fields: HashMap<String, String> = HashMap::new();
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, after) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            after.split_once(',').map_or((after, ""), |(v, a)| (v, a))
        };
        fields.insert(key.trim().to_ascii_lowercase(), value.to_string());
        rest = after.trim_start_matches([',', ' ']);
    }
    Some(Challenge { realm: fields.remove("realm")?, service: fields.remove("service"), scope: fields.remove("scope") })
}

fn status_text(code: u16) -> &'static str {
    match code {
        401 => {
            "unauthorized: the credentials were refused or are missing (--username, REGSWEEP_PASSWORD, ~/.docker/config.json)"
        }
        403 => "forbidden: these credentials may not do this",
        _ => "",
    }
}

impl Client {
    pub fn new(opts: &ClientOptions) -> Result<Client> {
        let base = base_url(&opts.url)?;
        let roots = match &opts.ca_cert {
            Some(path) => {
                let pem = std::fs::read(path).with_context(|| format!("cannot read --ca-cert {}", path.display()))?;
                let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                    .filter_map(|item| match item {
                        Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                        Ok(_) => None,
                        Err(e) => Some(Err(e)),
                    })
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("--ca-cert {}: not a PEM file", path.display()))?;
                if certs.is_empty() {
                    bail!("--ca-cert {}: no certificate in it", path.display());
                }
                RootCerts::new_with_certs(&certs)
            }
            None => RootCerts::PlatformVerifier,
        };
        let tls = TlsConfig::builder().root_certs(roots).disable_verification(opts.insecure).build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_global(Some(Duration::from_secs(300)))
            .max_idle_connections(opts.concurrency.max(1) * 2)
            .max_idle_connections_per_host(opts.concurrency.max(1) * 2)
            .user_agent(concat!("regsweep/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Client {
            base,
            agent,
            credentials: opts.credentials.clone(),
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// True when requests go over plain HTTP to another machine.
    pub fn plain_remote(&self) -> bool {
        self.base.starts_with("http://") && !is_loopback(host_of(&self.base["http://".len()..]))
    }

    fn basic(c: &Credentials) -> String {
        format!("Basic {}", BASE64.encode(format!("{}:{}", c.username, c.password)))
    }

    /// A bearer token for `scope`, from the cache or the token server.
    fn token(&self, ch: &Challenge, scope: &str) -> Result<String> {
        if let Some(t) = self.tokens.lock().unwrap().get(scope).filter(|t| t.expires > Instant::now()) {
            return Ok(t.value.clone());
        }
        let wanted = ch.scope.clone().filter(|s| s.split(':').nth(1) == scope.split(':').nth(1));
        // ureq encodes the parameters and appends them to any query the realm has already.
        let mut req = self.agent.get(&ch.realm);
        if let Some(s) = &ch.service {
            req = req.query("service", s);
        }
        req = req.query("scope", wanted.as_deref().unwrap_or(scope));
        if let Some(c) = &self.credentials {
            req = req.header("Authorization", Self::basic(c));
        }
        let mut resp = req.call().with_context(|| format!("cannot reach the token server {}", ch.realm))?;
        let status = resp.status().as_u16();
        if status != 200 {
            bail!("the token server {} answered {status} for {scope}: {}", ch.realm, status_text(status));
        }
        let body = resp.body_mut().with_config().limit(1 << 20).read_to_vec()?;
        let reply: TokenReply =
            serde_json::from_slice(&body).with_context(|| format!("the token server {} sent no token", ch.realm))?;
        let value = reply.token.or(reply.access_token).context("the token server sent no token")?;
        // The spec's default lifetime is 60 s; renew a little before the end.
        let life = Duration::from_secs(reply.expires_in.unwrap_or(60).max(1));
        let expires = Instant::now() + life.mul_f32(0.9);
        self.tokens.lock().unwrap().insert(scope.to_string(), Token { value: value.clone(), expires });
        Ok(value)
    }

    /// Sends a request to `path` (starting `/v2/`), authenticated for `scope`, retried on 429,
    /// 5xx and broken connections. Every status comes back; 401 only when auth failed for good.
    pub fn send(&self, method: Method, path: &str, scope: &str, accept: Option<&str>) -> Result<Reply> {
        let url = format!("{}{path}", self.base);
        // One more try to learn the challenge, one more for a token refused as expired.
        let mut auth_tries = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let challenge = self.challenge.lock().unwrap().clone();
            let auth = match (&challenge, &self.credentials) {
                (Some(ch), _) => Some(format!("Bearer {}", self.token(ch, scope)?)),
                (None, Some(c)) => Some(Self::basic(c)),
                (None, None) => None,
            };
            let mut req = match method {
                Method::Get => self.agent.get(&url),
                Method::Head => self.agent.head(&url),
                Method::Delete => self.agent.delete(&url),
            };
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            if let Some(a) = accept {
                req = req.header("Accept", a);
            }
            let result = req.call();
            let retry_after = |resp: &ureq::http::Response<ureq::Body>| {
                resp.headers()
                    .get("Retry-After")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs)
            };
            let wait = match result {
                Err(e) if attempt < ATTEMPTS && retryable(&e) => None,
                Err(e) => return Err(tls_hint(e)).with_context(|| format!("{method} {url}")),
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    if status == 401 && auth_tries < 2 {
                        let header = resp.headers().get("WWW-Authenticate").and_then(|v| v.to_str().ok());
                        if let Some(ch) = header.and_then(parse_challenge) {
                            auth_tries += 1;
                            self.tokens.lock().unwrap().remove(scope);
                            *self.challenge.lock().unwrap() = Some(ch);
                            attempt -= 1;
                            continue;
                        }
                    }
                    if (status == 429 || status >= 500) && attempt < ATTEMPTS {
                        retry_after(&resp)
                    } else {
                        let body = if method == Method::Head {
                            Vec::new()
                        } else {
                            resp.body_mut()
                                .with_config()
                                .limit(MAX_BODY)
                                .read_to_vec()
                                .with_context(|| format!("{method} {url}: cannot read the answer"))?
                        };
                        if status == 401 || status == 403 {
                            return Err(Refused(format!("{method} {url}: {status} {}", status_text(status))).into());
                        }
                        return Ok(Reply { status, headers: resp.headers().clone(), body });
                    }
                }
            };
            let backoff = BACKOFF * 2u32.pow(attempt - 1);
            std::thread::sleep(wait.unwrap_or(backoff).min(Duration::from_secs(30)));
        }
    }

    /// GETs a JSON list through every page (`Link: <...>; rel="next"`); with `missing_ok`, a
    /// 404 is an empty list.
    pub fn pages<T: for<'de> Deserialize<'de>>(&self, first: &str, scope: &str, missing_ok: bool) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let mut next = Some(first.to_string());
        while let Some(path) = next.take() {
            let r = self.send(Method::Get, &path, scope, None)?;
            match r.status {
                200 => {}
                404 if missing_ok || !out.is_empty() => break,
                s => bail!("GET {}{path}: {s} {}", self.base, r.error_codes()),
            }
            out.push(serde_json::from_slice(&r.body).with_context(|| format!("GET {path}: not the expected JSON"))?);
            next = r.header("Link").and_then(next_link).filter(|n| n != &path);
        }
        Ok(out)
    }

    /// `GET /v2/`: is it a registry, and may we talk to it?
    pub fn ping(&self) -> Result<()> {
        let r = self.send(Method::Get, "/v2/", CATALOG_SCOPE, None)?;
        match r.status {
            200 => Ok(()),
            s if s == 429 || s >= 500 => {
                bail!("{}/v2/ answered {s} {ATTEMPTS} times: the registry is down or overloaded", self.base)
            }
            s => bail!("{}/v2/ answered {s}: not a registry's API?", self.base),
        }
    }
}

message_error!(
    /// A 401 or 403 that no retry or new token changed: every further request would meet it too.
    Refused
);

/// True for an error that is a [`Refused`].
pub fn is_refusal(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Refused>().is_some()
}

/// The TLS error inside a ureq error, where it is one: as such, or inside the I/O error that
/// the handshake gave.
fn tls_error(e: &ureq::Error) -> Option<&rustls::Error> {
    match e {
        ureq::Error::Rustls(t) => Some(t),
        ureq::Error::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        _ => None,
    }
}

/// webpki's refusal of a CA certificate that the server presents as its own.
fn ca_used_as_end_entity(t: &rustls::Error) -> bool {
    matches!(t, rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o))
        if o.0.downcast_ref::<webpki::Error>() == Some(&webpki::Error::CaUsedAsEndEntity))
}

/// The first bytes back were no TLS record: a plain HTTP port.
fn not_tls(t: &rustls::Error) -> bool {
    matches!(t, rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType))
}

/// Explains rustls's refusal of a self-signed CA certificate used as the server's own, which
/// `openssl req -x509` makes by default (curl and Go accept it; webpki does not), and TLS spoken
/// to a plain HTTP port. Told by the errors' types, not their text.
fn tls_hint(e: ureq::Error) -> anyhow::Error {
    match tls_error(&e) {
        Some(t) if ca_used_as_end_entity(t) => anyhow::anyhow!(
            "{e}: the registry's certificate is a CA certificate used as its own; make it with \
             `-addext basicConstraints=critical,CA:FALSE`, or sign it with a CA of yours and give that CA to \
             --ca-cert, or use --insecure"
        ),
        Some(t) if not_tls(t) => {
            anyhow::anyhow!("{e}: this port answers plain HTTP, not TLS: give the URL with http://")
        }
        _ => e.into(),
    }
}

/// A broken or timed-out connection is worth another try; a TLS or name error is not (nor TLS
/// spoken to a plain HTTP port).
fn retryable(e: &ureq::Error) -> bool {
    matches!(e, ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed | ureq::Error::Protocol(_))
        && !tls_error(e).is_some_and(not_tls)
}

/// The path of `Link: </v2/...?last=x&n=5>; rel="next"` (an absolute URL loses its origin).
fn next_link(h: &str) -> Option<String> {
    let (target, params) = h.split_once(';')?;
    if !params.contains("rel=\"next\"") && !params.contains("rel=next") {
        return None;
    }
    let t = target.trim().trim_start_matches('<').trim_end_matches('>');
    let path = match t.split_once("://") {
        Some((_, rest)) => &rest[rest.find('/')?..],
        None => t,
    };
    path.starts_with("/v2/").then(|| path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_errors_are_told_by_their_type() {
        use std::sync::Arc;
        let ca = || {
            let other = rustls::OtherError(Arc::new(webpki::Error::CaUsedAsEndEntity));
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))
        };
        let plain = || rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        // As the handshake gives them: inside an I/O error; or as such.
        let io = |t: rustls::Error| ureq::Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, t));
        for e in [io(ca()), ureq::Error::Rustls(ca())] {
            assert!(format!("{:#}", tls_hint(e)).contains("CA certificate used as its own"));
        }
        assert!(format!("{:#}", tls_hint(io(plain()))).contains("answers plain HTTP"));
        assert!(!retryable(&io(plain())));
        // Another certificate error, or an I/O error whose text names one, gets no hint.
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert!(!format!("{:#}", tls_hint(io(unknown))).contains("CA certificate"));
        let mimic = ureq::Error::Io(std::io::Error::other("CaUsedAsEndEntity InvalidContentType"));
        assert!(retryable(&mimic));
        let text = format!("{:#}", tls_hint(mimic));
        assert!(!text.contains("CA certificate used") && !text.contains("plain HTTP"), "{text}");
    }

    #[test]
    fn urls() {
        assert_eq!(base_url("127.0.0.1:5000").unwrap(), "http://127.0.0.1:5000");
        assert_eq!(base_url("localhost:5000/").unwrap(), "http://localhost:5000");
        assert_eq!(base_url("registry.example:5000").unwrap(), "https://registry.example:5000");
        assert_eq!(base_url("HTTP://registry.example").unwrap(), "http://registry.example");
        assert!(base_url("https://u:p@registry.example").is_err());
        assert!(base_url("ftp://x").is_err());
        assert!(is_loopback(host_of("[::1]:5000")));
    }

    #[test]
    fn challenges_and_links() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,delete""#,
        )
        .unwrap();
        assert_eq!(c.realm, "https://auth.example/token");
        assert_eq!(c.service.as_deref(), Some("registry.example"));
        assert_eq!(c.scope.as_deref(), Some("repository:a/b:pull,delete"));
        assert!(parse_challenge(r#"Basic realm="x""#).is_none());
        assert_eq!(
            next_link(r#"</v2/_catalog?last=team%2Fapp&n=2>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=team%2Fapp&n=2")
        );
        assert_eq!(
            next_link(r#"<https://h/v2/x/tags/list?n=1&last=a>; rel="next""#).as_deref(),
            Some("/v2/x/tags/list?n=1&last=a")
        );
        assert_eq!(next_link(r#"</v2/x>; rel="prev""#), None);
    }

    #[test]
    fn docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(
            &p,
            format!(r#"{{"auths":{{"https://reg.example:5000":{{"auth":"{}"}}}}}}"#, BASE64.encode("bob:s:cret")),
        )
        .unwrap();
        let c = docker_config_credentials(&p, "https://reg.example:5000").unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("bob", "s:cret"));
        assert!(docker_config_credentials(&p, "https://other:5000").unwrap().is_none());
        assert!(!format!("{c:?}").contains("cret"));
    }
}
