//! The container step of `regsweep online` against a real engine: podman running the real
//! registry (tests/podman/setup.sh builds its image), reached through the podman CLI and through
//! the Docker Engine API socket that `podman system service` serves.

use crate::common;

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
        Engine::start_version(Version::V2)
    }

    /// With registry 3.1.1, an image laid out as `registry:3` (its config at
    /// /etc/distribution/config.yml, which the collector must find by itself).
    fn start_version(version: Version) -> Engine {
        let dir = tempfile::tempdir().unwrap();
        let mut setup = Command::new("bash");
        setup.arg(top().join("tests/podman/setup.sh")).arg(dir.path());
        if version == Version::V3 {
            setup.arg(version.binary().unwrap());
        }
        let out = setup.output().unwrap();
        assert!(out.status.success(), "podman setup failed: {}", String::from_utf8_lossy(&out.stderr));
        let store = fixture("demo");
        let port = free_port();
        let e = Engine { dir, store, port, service: None };
        let out = e
            .podman()
            .args(["run", "-d", "--name", CONTAINER, "--network", "host"])
            .arg(format!("--env=REGISTRY_HTTP_ADDR=127.0.0.1:{port}"))
            .arg(format!("--volume={}:/var/lib/registry", e.store.path().display()))
            .arg(if version == Version::V3 { "regsweep-registry3" } else { "regsweep-registry" })
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
        let _ = self.podman().args(["rmi", "-f", "regsweep-registry", "regsweep-registry3"]).output();
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

/// Through the API, on registry 3.1.1 where it is (`registry:3`'s layout: the collector finds
/// /etc/distribution/config.yml from the container's command; the podman CLI test above finds
/// 2.8.2's /etc/docker/registry/config.yml so).
#[test]
fn the_collector_runs_through_the_docker_engine_api_socket() {
    let version = Version::V3
        .available("the_collector_runs_through_the_docker_engine_api_socket")
        .map_or(Version::V2, |_| Version::V3);
    let mut e = Engine::start_version(version);
    let host = e.api_socket();
    dry_run_checks_the_engine(&e, Some(&host), &[]);
    let (before, start) = (blobs(e.store.path()), started_at(&e));
    let out = e.online(&["--keep", "1", "--order", "name", "--gc-container", CONTAINER, "--restart"], Some(&host));
    let report = check_collected(&e, &out, before, &start);
    assert!(report["collector"]["engine"].as_str().unwrap().starts_with("Docker Engine API"));
    let config =
        if version == Version::V3 { "/etc/distribution/config.yml" } else { "/etc/docker/registry/config.yml" };
    assert_eq!(report["collector"]["command"].as_array().unwrap().last().unwrap(), config, "{version}");

    // No such container: exit 5, the engine's words.
    let out = e.online(&["--keep", "1", "--order", "name", "--gc-container", "no-such-container"], Some(&host));
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("no such container") || err.contains("no container"), "{err}");
}

fn running(e: &Engine) -> bool {
    let out = e.podman().args(["inspect", "-f", "{{.State.Running}}", CONTAINER]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "true"
}

/// `regsweep prune` on the container's store, with `extra`, the engine's environment and
/// `DOCKER_HOST` as given.
fn offline(e: &Engine, extra: &[&str], docker_host: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    cmd.args(["prune", "--root", e.store.path().to_str().unwrap(), "--grace", "0s", "--json"]).args(extra);
    cmd.envs(e.env());
    match docker_host {
        Some(h) => cmd.env("DOCKER_HOST", h),
        None => cmd.env_remove("DOCKER_HOST"),
    };
    cmd.stdin(Stdio::null()).output().unwrap()
}

/// `prune --stop-container`: the registry's container is stopped for the run and started
/// again, ready (`--url`) when regsweep exits; started again too when the run fails; a
/// container that cannot be stopped means nothing is done (exit 5); a dry run stops nothing.
#[test]
fn an_offline_run_stops_the_registry_container_and_starts_it_again() {
    let mut e = Engine::start();
    let url = format!("127.0.0.1:{}", e.port);
    let podman = ["--stop-container", CONTAINER, "--engine", "podman", "--url", url.as_str()];
    let (before, start) = (snapshot(e.store.path()), started_at(&e));
    let out = offline(&e, &[&["--keep", "2", "--order", "name", "--dry-run"][..], &podman].concat(), None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is running"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(started_at(&e), start, "a dry run stops nothing");
    assert!(before == snapshot(e.store.path()));

    let blobs_before = blobs(e.store.path());
    let out = offline(&e, &[&["--keep", "2", "--order", "name"][..], &podman].concat(), None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["tags_deleted"].as_u64().unwrap() > 0);
    assert!(blobs(e.store.path()) < blobs_before);
    assert_ne!(started_at(&e), start, "the container was stopped and started");
    assert_eq!(pull_status(e.port), "200", "--url: the registry answers when regsweep exits");
    e.assert_all_tags_pull();

    // Interrupted (SIGINT) once planned: exit 130, the container started again.
    let prune_cmd = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_regsweep"));
        cmd.args([
            "prune",
            "--root",
            e.store.path().to_str().unwrap(),
            "--keep",
            "1",
            "--order",
            "name",
            "--grace",
            "0s",
        ])
        .args(podman)
        .envs(e.env())
        .env_remove("DOCKER_HOST");
        cmd
    };
    let child = stopped_at(prune_cmd(), "plan");
    assert!(!running(&e), "stopped during the run");
    signal(&child, "-INT");
    signal(&child, "-CONT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(running(&e), "started again after the interruption: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(pull_status(e.port), "200");

    // A container that cannot be started again (renamed during the run): exit 5, said loudly.
    let child = stopped_at(prune_cmd(), "plan");
    assert!(e.podman().args(["rename", CONTAINER, "renamed-registry"]).status().unwrap().success());
    signal(&child, "-CONT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("may still be down"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(e.podman().args(["rename", "renamed-registry", CONTAINER]).status().unwrap().success());
    assert!(e.podman().args(["start", CONTAINER]).status().unwrap().success());
    e.wait_for_registry();

    // A run that fails (a kept manifest is corrupt: nothing is deleted) still starts it again;
    // here through the Docker Engine API that podman serves.
    let host = e.api_socket();
    for (repo, tag) in tags_on_disk(e.store.path()) {
        std::fs::write(blob_data(e.store.path(), &tag_digest(e.store.path(), &repo, &tag)), b"{not json").unwrap();
    }
    let start = started_at(&e);
    let before = snapshot(e.store.path());
    let out = offline(&e, &["--keep", "1", "--order", "name", "--stop-container", CONTAINER], Some(&host));
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(before == snapshot(e.store.path()), "nothing deleted");
    assert_ne!(started_at(&e), start, "stopped for the run");
    assert!(running(&e), "and started again");

    // A container the engine does not know: nothing is done, exit 5.
    let out = offline(&e, &["--keep", "1", "--stop-container", "no-such-container", "--engine", "podman"], None);
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(before == snapshot(e.store.path()));
    assert!(running(&e));
}

/// The image of contrib/container/build.sh (a static binary on an empty base), loaded into
/// podman, prunes the registry container's store through the same volume while the registry
/// is stopped; started again, every kept tag pulls and the deleted ones are gone. Its default
/// user (not root) cannot change a store the registry wrote as root: a clear error, nothing
/// changed.
#[test]
fn the_container_image_prunes_the_registrys_volume() {
    let e = Engine::start();
    let image = e.dir.path().join("regsweep-image.tar");
    // The packaging is what is tested, not the optimizer: an unoptimized build, on the
    // dependencies the tests' build compiled (its build directory; its own artifact directory,
    // not to replace the binary the other tests run): 37 s of CPU instead of 149 here.
    // Without what cargo tells a test about itself: a build script that reads one of these
    // (ring's reads CARGO_MANIFEST_DIR) would be run again, and every crate above it rebuilt.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    let mut build = Command::new("bash");
    for (var, _) in std::env::vars_os() {
        let var = var.to_string_lossy();
        if ["CARGO_PKG_", "CARGO_BIN_EXE_", "CARGO_MANIFEST_", "CARGO_CRATE_", "CARGO_TARGET_TMPDIR", "CARGO_PRIMARY_"]
            .iter()
            .any(|p| var.starts_with(p))
            || var == "LD_LIBRARY_PATH"
        {
            build.env_remove(&*var);
        }
    }
    let out = build
        .env("BUILD_PROFILE", "dev")
        .env("CARGO_BUILD_BUILD_DIR", target)
        .env("CARGO_TARGET_DIR", e.dir.path().join("target"))
        .arg(top().join("contrib/container/build.sh"))
        .arg(&image)
        .arg("regsweep-test:latest")
        .output()
        .unwrap();
    assert!(out.status.success(), "build.sh: {}", String::from_utf8_lossy(&out.stderr));
    let out = e.podman().args(["load", "-q", "-i"]).arg(&image).output().unwrap();
    assert!(out.status.success(), "podman load: {}", String::from_utf8_lossy(&out.stderr));
    let inspect = e
        .podman()
        .args(["image", "inspect", "-f", "{{.Config.User}} {{.Labels}}", "regsweep-test:latest"])
        .output()
        .unwrap();
    let inspect = String::from_utf8_lossy(&inspect.stdout);
    assert!(inspect.starts_with("65532:65532 "), "{inspect}");
    assert!(
        inspect.contains("org.opencontainers.image.version") && inspect.contains("org.opencontainers.image.revision")
    );
    let volume = format!("--volume={}:/var/lib/registry", e.store.path().display());
    let regsweep = |user: Option<&str>, args: &[&str]| -> Output {
        let mut cmd = e.podman();
        cmd.args(["run", "--rm", "--network", "host", &volume]);
        if let Some(u) = user {
            cmd.args(["--user", u]);
        }
        cmd.arg("regsweep-test:latest").args(args).output().unwrap()
    };
    let prune = ["prune", "--root", "/var/lib/registry", "--keep", "2", "--order", "name", "--grace", "0s", "--json"];

    let before = snapshot(e.store.path());
    let out = regsweep(None, &prune);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Permission denied") && err.contains("/var/lib/registry/docker/registry/v2"), "{err}");
    assert!(before == snapshot(e.store.path()), "nothing changed");

    let plan = regsweep_json(&[
        "prune",
        "--root",
        e.store.path().to_str().unwrap(),
        "--keep",
        "2",
        "--order",
        "name",
        "--grace",
        "0s",
        "--dry-run",
    ]);
    let out = e.podman().args(["stop", CONTAINER]).output().unwrap();
    assert!(out.status.success());
    let out = regsweep(Some("0"), &prune);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["tags_deleted"], plan["tags_deleted"]);
    assert_eq!(report["bytes_freed"], plan["bytes_freed"]);
    let out = e.podman().args(["start", CONTAINER]).output().unwrap();
    assert!(out.status.success());
    e.wait_for_registry();
    e.assert_all_tags_pull();
    for r in plan["repos"].as_array().unwrap() {
        for t in r["tags"].as_array().unwrap().iter().filter(|t| t["action"] == "delete") {
            let (repo, tag) = (r["name"].as_str().unwrap(), t["name"].as_str().unwrap());
            assert!(pull_from(e.port, repo, tag, None).is_err(), "{repo}:{tag} was deleted");
        }
    }
    // Online mode from the image, resolving a host name (a static glibc binary).
    let out = regsweep(
        None,
        &["online", "--url", &format!("http://localhost:{}", e.port), "--keep", "9", "--order", "name", "--dry-run"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = e.podman().args(["rmi", "-f", "regsweep-test:latest"]).output();
}
