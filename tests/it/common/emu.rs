//! What the Azure and Google Cloud Storage emulators' harnesses ([`super::azure`], [`super::gcs`])
//! share (and S3's, for tests/s3tool.py): their chores through tests/aztool.py and tests/gcstool.py (in target/s3venv, which
//! tests/run.sh makes), waiting for a port, and regsweep run with an environment.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::azure::Azurite;
use super::gcs::FakeGcs;
use super::s3::venv;
use super::top;

/// Runs a command of `tests/<script>` with the venv's Python against `endpoint`; panics when it
/// fails, returns what it printed. One `serve` process an endpoint answers them all (the SDK's
/// import costs most of a second of CPU: once a server, not once a chore), until [`forget`].
pub fn tool(script: &str, endpoint: &str, args: &[&str]) -> String {
    let served = {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        pool.entry((script.to_string(), endpoint.to_string()))
            .or_insert_with(|| {
                let mut child = Command::new(venv().join("bin/python"))
                    .arg(top().join("tests").join(script))
                    .args([endpoint, "serve"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap();
                let (input, output) = (child.stdin.take().unwrap(), BufReader::new(child.stdout.take().unwrap()));
                Arc::new(Mutex::new(Served { child, input, output }))
            })
            .clone()
    };
    let mut s = served.lock().unwrap_or_else(|e| e.into_inner());
    writeln!(s.input, "{}", serde_json::to_string(args).unwrap()).unwrap();
    let mut line = String::new();
    s.output.read_line(&mut line).unwrap();
    let answer: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{script} {args:?}: no answer ({e}): {line:?}"));
    let out = answer["out"].as_str().unwrap_or_default().to_string();
    assert_eq!(answer["ok"], true, "{script} {args:?}: {out}");
    out
}

/// A running `tests/<script> ENDPOINT serve`.
struct Served {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Pool = Mutex<HashMap<(String, String), Arc<Mutex<Served>>>>;
static POOL: std::sync::LazyLock<Pool> = std::sync::LazyLock::new(Pool::default);

/// Stops the tools serving `endpoint` (its server is gone).
pub fn forget(endpoint: &str) {
    POOL.lock().unwrap_or_else(|e| e.into_inner()).retain(|(_, e), _| e != endpoint);
}

/// Waits until `child` listens on a loopback port; panics at once if it exits.
pub fn wait_for_port(child: &mut Child, port: u16, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}) before it listened");
        }
        assert!(start.elapsed() < Duration::from_secs(120), "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A key's bytes through a file, for a tool's `put`.
pub fn put_with(script: &str, endpoint: &str, container: &str, key: &str, bytes: &[u8]) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    tool(script, endpoint, &["put", container, key, file.path().to_str().unwrap()]);
}

/// `upload DIR CONTAINER ROOT`, paced or not.
pub fn upload_with(script: &str, endpoint: &str, dir: &Path, container: &str, root: &str, paced: bool) {
    let mut args = vec!["upload", dir.to_str().unwrap(), container, root];
    if paced {
        args.push("--paced");
    }
    tool(script, endpoint, &args);
}

/// regsweep with this environment (and no cache, nor any AWS or Google credential of the host).
pub fn command(env: &[(&'static str, String)], args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    cmd.args(args).env("REGSWEEP_CACHE", "off").env_remove("AWS_PROFILE");
    for var in ["GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_SERVICE_ACCOUNT", "GOOGLE_SERVICE_ACCOUNT_KEY"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

pub fn regsweep(env: &[(&'static str, String)], args: &[&str]) -> Output {
    command(env, args).stdin(Stdio::null()).output().unwrap()
}

/// regsweep's JSON report (`--json` is added); panics when it fails.
pub fn regsweep_json(env: &[(&'static str, String)], args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = regsweep(env, &all);
    assert!(
        out.status.success(),
        "regsweep {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// What a [`throttle_proxy`] answers the first try of each request with.
#[derive(Clone, Copy, Debug)]
pub struct Busy {
    /// The status line's code and reason, as `503 Server Busy`.
    pub status: &'static str,
    /// More header lines, each ending in CRLF.
    pub headers: &'static str,
    pub body: &'static str,
}

/// Azure's answer when it throttles (Blob service, `ServerBusy`).
pub const AZURE_BUSY: Busy = Busy {
    status: "503 The server is busy.",
    headers: "Content-Type: application/xml\r\nx-ms-error-code: ServerBusy\r\n",
    body: "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>ServerBusy</Code><Message>The server is busy.</Message></Error>",
};

/// Google Cloud Storage's when it throttles (`503 Service Unavailable`, JSON error).
pub const GCS_BUSY: Busy = Busy {
    status: "503 Service Unavailable",
    headers: "Content-Type: application/json\r\n",
    body: "{\"error\":{\"code\":503,\"message\":\"We encountered an internal error. Please try again.\"}}",
};

/// The requests a [`throttle_proxy`] has seen: request line and body.
type Seen = std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<(String, Vec<u8>)>>>;

/// A proxy in front of `upstream` that answers the first try of every distinct request (its
/// request line and body: a batch retried whole is the same request) with `busy`, and passes
/// the rest through unchanged. Neither emulator ever throttles. Returns its port.
pub fn throttle_proxy(upstream: u16, busy: Busy) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Default::default();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
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
                if seen.lock().unwrap().insert((first, body.clone())) {
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {}\r\n{}Content-Length: {}\r\nConnection: close\r\n\r\n{}",
                        busy.status,
                        busy.headers,
                        busy.body.len(),
                        busy.body
                    );
                    return;
                }
                let head: String = text
                    .split("\r\n")
                    .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
                    .map(|l| format!("{l}\r\n"))
                    .collect();
                let Ok(mut up) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else { return };
                let _ = write!(up, "{head}Connection: close\r\n\r\n");
                let _ = up.write_all(&body);
                let mut resp = Vec::new();
                let _ = up.read_to_end(&mut resp);
                let _ = conn.write_all(&resp);
            });
        }
    });
    port
}

/// What both harnesses do, as the tests use it.
pub trait Emulator {
    fn create(&self, name: &str);
    fn keys(&self, name: &str) -> Vec<String>;
    fn upload(&self, dir: &Path, name: &str, root: &str, paced: bool);
    fn download(&self, name: &str, root: &str, dir: &Path);
    fn put(&self, name: &str, key: &str, bytes: &[u8]);
    fn delete(&self, name: &str, key: &str);
    /// The environment regsweep runs with.
    fn env(&self) -> Vec<(&'static str, String)>;
    /// `scheme://name/root`.
    fn url(&self, name: &str, root: &str) -> String;
}

impl Emulator for Azurite {
    fn create(&self, name: &str) {
        self.create_container(name);
    }
    fn keys(&self, name: &str) -> Vec<String> {
        Azurite::keys(self, name)
    }
    fn upload(&self, dir: &Path, name: &str, root: &str, paced: bool) {
        if paced { self.upload_paced(dir, name, root) } else { Azurite::upload(self, dir, name, root) }
    }
    fn download(&self, name: &str, root: &str, dir: &Path) {
        Azurite::download(self, name, root, dir);
    }
    fn put(&self, name: &str, key: &str, bytes: &[u8]) {
        Azurite::put(self, name, key, bytes);
    }
    fn delete(&self, name: &str, key: &str) {
        Azurite::delete(self, name, key);
    }
    fn env(&self) -> Vec<(&'static str, String)> {
        Azurite::env(self)
    }
    fn url(&self, name: &str, root: &str) -> String {
        Azurite::url(self, name, root)
    }
}

impl Emulator for FakeGcs {
    fn create(&self, name: &str) {
        self.create_bucket(name);
    }
    fn keys(&self, name: &str) -> Vec<String> {
        FakeGcs::keys(self, name)
    }
    fn upload(&self, dir: &Path, name: &str, root: &str, paced: bool) {
        if paced { self.upload_paced(dir, name, root) } else { FakeGcs::upload(self, dir, name, root) }
    }
    fn download(&self, name: &str, root: &str, dir: &Path) {
        FakeGcs::download(self, name, root, dir);
    }
    fn put(&self, name: &str, key: &str, bytes: &[u8]) {
        FakeGcs::put(self, name, key, bytes);
    }
    fn delete(&self, name: &str, key: &str) {
        FakeGcs::delete(self, name, key);
    }
    fn env(&self) -> Vec<(&'static str, String)> {
        FakeGcs::env(self)
    }
    fn url(&self, name: &str, root: &str) -> String {
        FakeGcs::url(self, name, root)
    }
}
