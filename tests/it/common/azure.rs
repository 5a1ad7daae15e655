//! Azure Blob Storage for the tests: Azurite's blob service (in target/npm, which tests/run.sh
//! installs), its containers filled key for key from filesystem stores, and regsweep run against
//! it with object_store's Azure environment (`--root azure://CONTAINER/ROOTDIRECTORY`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use super::{emu, free_port, top};

/// Azurite's well-known account and key (its only account unless told otherwise).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

const TOOL: &str = "aztool.py";

/// Azurite's `azurite-blob` (`REGSWEEP_AZURITE` overrides).
pub fn azurite_blob() -> PathBuf {
    std::env::var_os("REGSWEEP_AZURITE")
        .map(PathBuf::from)
        .unwrap_or_else(|| top().join("target/npm/node_modules/.bin/azurite-blob"))
}

/// Azurite's blob service on a loopback port, in memory, stopped (and its data gone) when
/// dropped.
pub struct Azurite {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Azurite {
    /// Any API version taken (`--skipApiVersionCheck`: object_store's and the Python SDK's may
    /// be newer than this Azurite), headers it does not know ignored (`--loose`), no telemetry
    /// (it would reach for the internet). It listens within a second or two.
    pub fn start() -> Azurite {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new(azurite_blob())
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--skipApiVersionCheck", "--loose", "--inMemoryPersistence", "--disableTelemetry", "--silent"])
            // No --location with --inMemoryPersistence (it refuses both); a folder of its own anyway.
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("azurite-blob must be installed (tests/run.sh installs it in target/npm)");
        emu::wait_for_port(&mut child, port, "Azurite");
        Azurite { port, child, _dir: dir }
    }

    /// The blob service's address, without the account (`AZURITE_BLOB_STORAGE_URL`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The store's URL for regsweep: `azure://CONTAINER/ROOT`.
    pub fn url(&self, container: &str, root: &str) -> String {
        format!("azure://{container}/{}", root.trim_start_matches('/'))
    }

    /// Runs tests/aztool.py against this server.
    pub fn tool(&self, args: &[&str]) -> String {
        emu::tool(TOOL, &self.endpoint(), args)
    }

    pub fn create_container(&self, container: &str) {
        self.tool(&["mkcontainer", container]);
    }

    /// Every key of a container, sorted.
    pub fn keys(&self, container: &str) -> Vec<String> {
        self.tool(&["keys", container]).lines().map(String::from).collect()
    }

    /// Every file under `dir` (a store's rootdirectory) as the blob `ROOT/<its path>`
    /// (`ROOT/docker/registry/v2/...`), all at once: their times are all about now.
    pub fn upload(&self, dir: &Path, container: &str, root: &str) {
        emu::upload_with(TOOL, &self.endpoint(), dir, container, root, false);
    }

    /// As [`Azurite::upload`], the tags' `current/link` last and in push order: the n-th tag of
    /// every repository on a second of its own (Last-Modified is to the second), so that
    /// `--order push` orders each repository as on disk. A second per round: 11 for the demo.
    pub fn upload_paced(&self, dir: &Path, container: &str, root: &str) {
        emu::upload_with(TOOL, &self.endpoint(), dir, container, root, true);
    }

    /// The blobs under `ROOT/` into `dir` (so `dir` is a filesystem store's rootdirectory), each
    /// file's mtime its blob's Last-Modified: the same push times as the container.
    pub fn download(&self, container: &str, root: &str, dir: &Path) {
        self.tool(&["download", container, root, dir.to_str().unwrap()]);
    }

    /// Writes one blob (a racing push).
    pub fn put(&self, container: &str, key: &str, bytes: &[u8]) {
        emu::put_with(TOOL, &self.endpoint(), container, key, bytes);
    }

    /// Deletes one blob; panics if it is not there.
    pub fn delete(&self, container: &str, key: &str) {
        self.tool(&["delete", container, key]);
    }

    /// The environment regsweep runs with: object_store's emulator settings.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        Self::env_at(&self.endpoint())
    }

    /// The same environment, through a proxy on `port` in front of this server (an
    /// [`emu::throttle_proxy`] with [`emu::AZURE_BUSY`]: Azurite itself never answers 503).
    pub fn env_via(&self, port: u16) -> Vec<(&'static str, String)> {
        Self::env_at(&format!("http://127.0.0.1:{port}"))
    }

    /// The environment for an Azurite (or a proxy in front of one) at `endpoint`.
    pub fn env_at(endpoint: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AZURE_STORAGE_ACCOUNT_NAME", ACCOUNT.to_string()),
            ("AZURE_STORAGE_ACCOUNT_KEY", KEY.to_string()),
            ("AZURE_STORAGE_USE_EMULATOR", "true".to_string()),
            ("AZURITE_BLOB_STORAGE_URL", endpoint.to_string()),
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

impl Drop for Azurite {
    fn drop(&mut self) {
        emu::forget(&self.endpoint());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
