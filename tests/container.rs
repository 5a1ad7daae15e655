//! The container step of `regsweep online` against a real engine: podman running the real
//! registry (tests/podman/setup.sh builds its image), reached through the podman CLI and through
//! the Docker Engine API socket that `podman system service` serves.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A private podman (its own storage and config) with the registry image, and one registry
/// container serving a copy of the demo store on a loopback port.
struct Engine {
    dir: tempfile::TempDir,
    store: tempfile::TempDir,
    port: u16,
    service: Option<Child>,
}

const CONTAINER: &str = "regsweep-test-registry";

impl Engine {
    fn start() -> Engine {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("bash").arg(top().join("tests/podman/setup.sh")).arg(dir.path()).output().unwrap();
        assert!(out.status.success(), "podman setup failed: {}", String::from_utf8_lossy(&out.stderr));
        let store = fixture("demo");
        let port = free_port();
        let e = Engine { dir, store, port, service: None };
        let out = e
            .podman()
            .args(["run", "-d", "--name", CONTAINER, "--network", "host"])
            .arg(format!("--env=REGISTRY_HTTP_ADDR=127.0.0.1:{port}"))
            .arg(format!("--volume={}:/var/lib/registry", e.store.path().display()))
            .arg("regsweep-registry")
            .output()
            .unwrap();
        assert!(out.status.success(), "podman run: {}", String::from_utf8_lossy(&out.stderr));
        e.wait_for_registry();
        e
    }

    fn env(&self) -> [(&'static str, String); 2] {
        [
            ("CONTAINERS_CONF", self.dir.path().join("containers.conf").display().to_string()),
            ("CONTAINERS_STORAGE_CONF", self.dir.path().join("storage.conf").display().to_string()),
        ]
    }

    fn podman(&self) -> Command {
        let mut c = Command::new("podman");
        c.envs(self.env());
        c
    }

    fn wait_for_registry(&self) {
        let start = Instant::now();
        while pull_status(self.port) != "200" {
            assert!(start.elapsed() < Duration::from_secs(20), "the registry in the container did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Serves the Docker Engine API on a unix socket; returns `unix://...`.
    fn api_socket(&mut self) -> String {
        let sock = self.dir.path().join("api.sock");
        let child = self
            .podman()
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", sock.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.service = Some(child);
        let start = Instant::now();
        while !sock.exists() {
            assert!(start.elapsed() < Duration::from_secs(20), "podman system service did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        format!("unix://{}", sock.display())
    }

    fn online(&self, extra: &[&str], docker_host: Option<&str>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_regsweep"));
        cmd.args(["online", "--url", &format!("127.0.0.1:{}", self.port), "--json"]).args(extra).envs(self.env());
        match docker_host {
            Some(h) => cmd.env("DOCKER_HOST", h),
            None => cmd.env_remove("DOCKER_HOST"),
        };
        cmd.stdin(Stdio::null()).output().unwrap()
    }

    fn assert_all_tags_pull(&self) {
        let failed: Vec<String> = tags_on_disk(self.store.path())
            .into_iter()
            .filter_map(|(r, t)| pull_from(self.port, &r, &t, None).err().map(|e| format!("{r}:{t}: {e}")))
            .collect();
        assert!(failed.is_empty(), "tags that no longer pull:\n{}", failed.join("\n"));
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.podman().args(["rm", "-f", "-t", "0", CONTAINER]).output();
        if let Some(mut c) = self.service.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.podman().args(["rmi", "-f", "regsweep-registry"]).output();
    }
}

fn pull_status(port: u16) -> String {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://127.0.0.1:{port}/v2/")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn started_at(e: &Engine) -> String {
    let out = e.podman().args(["inspect", "-f", "{{.State.StartedAt}}", CONTAINER]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn blobs(root: &Path) -> usize {
    store_state(root).blobs.len()
}

fn check_collected(e: &Engine, out: &Output, before_blobs: usize, before_start: &str) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &report["collector"];
    assert_eq!(c["exit_code"], 0);
    assert_eq!(c["restarted"], true);
    assert!(c["output"].as_str().unwrap().contains("blobs marked"), "{c}");
    assert!(blobs(e.store.path()) < before_blobs, "the collector freed nothing");
    assert_ne!(started_at(e), before_start, "the container was not restarted");
    e.assert_all_tags_pull();
    report
}

/// A dry run with `--gc-container` asks the engine whether the container runs: exit 0 with a
/// note when it does, exit 5 with the engine's words when it does not, nothing changed.
fn dry_run_checks_the_engine(e: &Engine, docker_host: Option<&str>, engine: &[&str]) {
    let before = snapshot(e.store.path());
    let args = |name: &'static str| {
        [&["--keep", "2", "--order", "name", "--dry-run", "--gc-container", name], engine].concat()
    };
    let out = e.online(&args(CONTAINER), docker_host);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is running"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = e.online(&args("no-such-container"), docker_host);
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("would fail"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(before == snapshot(e.store.path()), "a dry run changes nothing");
}

#[test]
fn the_collector_runs_in_the_container_through_the_podman_cli_then_it_restarts() {
    let e = Engine::start();
    dry_run_checks_the_engine(&e, None, &["--engine", "podman"]);
    let (before, start) = (blobs(e.store.path()), started_at(&e));
    let out = e.online(
        &["--keep", "2", "--order", "name", "--gc-container", CONTAINER, "--engine", "podman", "--restart"],
        None,
    );
    let report = check_collected(&e, &out, before, &start);
    assert_eq!(report["collector"]["engine"], "podman CLI");
    assert!(report["collector"]["blobs_deleted"].as_u64().unwrap() > 0);

    // A collector that fails (a config that is not there) is exit 5 with the engine's message.
    let out = e.online(
        &[
            "--keep",
            "2",
            "--order",
            "name",
            "--gc-container",
            CONTAINER,
            "--engine",
            "podman",
            "--gc-config",
            "/nope.yml",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.yml"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_collector_runs_through_the_docker_engine_api_socket() {
    let mut e = Engine::start();
    let host = e.api_socket();
    dry_run_checks_the_engine(&e, Some(&host), &[]);
    let (before, start) = (blobs(e.store.path()), started_at(&e));
    let out = e.online(&["--keep", "1", "--order", "name", "--gc-container", CONTAINER, "--restart"], Some(&host));
    let report = check_collected(&e, &out, before, &start);
    assert!(report["collector"]["engine"].as_str().unwrap().starts_with("Docker Engine API"));

    // No such container: exit 5, the engine's words.
    let out = e.online(&["--keep", "1", "--order", "name", "--gc-container", "no-such-container"], Some(&host));
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("no such container") || err.contains("no container"), "{err}");
}
