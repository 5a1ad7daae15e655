//! Test helpers around the real parts: fixture stores written by the real registry, the real
//! `docker-registry` server and `garbage-collect`, and `skopeo` for full pulls.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod azure;
pub mod emu;
pub mod gcs;
pub mod redis;
pub mod s3;
pub mod token;

/// The repository's top folder.
pub fn top() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh copy of a fixture store in a temporary folder (tar keeps the mtimes).
pub fn fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let tarball = top().join("fixtures").join(format!("{name}.tar.gz"));
    let st = Command::new("tar").arg("-xzf").arg(&tarball).arg("-C").arg(dir.path()).status().unwrap();
    assert!(st.success(), "cannot unpack {}", tarball.display());
    dir
}

/// The demo store as registry `version` writes it: every tag of the demo fixture copied (`skopeo
/// copy --all --preserve-digests`, in the demo's push order) into an empty folder that registry
/// serves, once a test process. Tests take a [`copy_store`] of it.
pub fn pushed_by(version: Version) -> &'static Path {
    static PUSHED: [std::sync::OnceLock<tempfile::TempDir>; 2] =
        [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
    PUSHED[version as usize]
        .get_or_init(|| {
            let demo = fixture("demo");
            let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
            let src = Registry::serve(demo.path());
            let dst = Registry::serve_version(dir.path(), version);
            for (r, t) in tags_by_push(demo.path()) {
                let out = Command::new("skopeo")
                    .args(["--insecure-policy", "copy", "--all", "--preserve-digests", "-q"])
                    .args(["--src-tls-verify=false", "--dest-tls-verify=false"])
                    .arg(format!("docker://127.0.0.1:{}/{r}:{t}", src.port))
                    .arg(format!("docker://127.0.0.1:{}/{r}:{t}", dst.port))
                    .output()
                    .unwrap();
                assert!(out.status.success(), "skopeo copy to {version}: {}", String::from_utf8_lossy(&out.stderr));
            }
            dir
        })
        .path()
}

/// The tags of a filesystem store, in the order they were pushed (mtime of `current/link`).
pub fn tags_by_push(root: &Path) -> Vec<(String, String)> {
    let mut tags: Vec<(std::time::SystemTime, String, String)> = tags_on_disk(root)
        .into_iter()
        .map(|(r, t)| {
            let link = v2(root).join(format!("repositories/{r}/_manifests/tags/{t}/current/link"));
            (std::fs::metadata(link).unwrap().modified().unwrap(), r, t)
        })
        .collect();
    tags.sort();
    tags.into_iter().map(|(_, r, t)| (r, t)).collect()
}

/// A copy of a store folder.
pub fn copy_store(from: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let st = Command::new("cp").arg("-a").arg(format!("{}/.", from.display())).arg(dir.path()).status().unwrap();
    assert!(st.success());
    dir
}

pub fn v2(root: &Path) -> PathBuf {
    root.join("docker/registry/v2")
}

/// Runs regsweep with these arguments.
pub fn regsweep(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_regsweep")).args(args).stdin(Stdio::null()).output().unwrap()
}

/// Starts a real prune (`--keep 2 --json`) on `root` that stops itself (SIGSTOP) at `point`
/// (`REGSWEEP_TEST_STOP_AT`, feature `test-hooks`); returns it stopped, stdout and stderr piped.
/// The caller lets it go on with [`signal`] `-CONT` and waits for it.
pub fn prune_stopped_at(root: &Path, point: &str) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    cmd.args(["prune", "--root", root.to_str().unwrap(), "--keep", "2", "--json"]);
    stopped_at(cmd, point)
}

/// Starts a regsweep command that stops itself at `point`, as [`prune_stopped_at`].
#[allow(clippy::zombie_processes)]
pub fn stopped_at(mut cmd: Command, point: &str) -> Child {
    let mut child =
        cmd.env("REGSWEEP_TEST_STOP_AT", point).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
        // The state follows the command name in parentheses.
        if stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T')) {
            return child;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the run never reached its stop point {point}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends a signal (`-INT`, `-CONT`) to a child process.
pub fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success());
}

/// Runs regsweep, asserts success, returns the JSON report (`--json` is added).
pub fn regsweep_json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = regsweep(&a);
    assert!(out.status.success(), "regsweep {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// The report's entry for one repository.
pub fn repo<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["repos"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("no repo {name}"))
}

/// The tags of a repository in the report with the given action.
pub fn tags_with(report: &Value, repo_name: &str, action: &str) -> BTreeSet<String> {
    repo(report, repo_name)["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["action"] == action)
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

fn registry_config(root: &Path, port: u16) -> tempfile::NamedTempFile {
    registry_config_with(root, port, &Setup::default())
}

/// A release line of the registry the tests run: Debian's 2.8.2 (`docker-registry`), or 3.1.1,
/// the `registry:3` most operators run now (built from its release tag, in `../shared/registry-v3/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V2,
    V3,
}

/// Both versions, for the scenarios that run on each.
pub const VERSIONS: [Version; 2] = [Version::V2, Version::V3];

/// Where registry 3.1.1 comes from: `REGSWEEP_REGISTRY_V3`, else the gzipped release binary in
/// `../shared/registry-v3/`, unpacked once into `target/` and checked against its SHA256SUMS.
const V3_ENV: &str = "REGSWEEP_REGISTRY_V3";

impl Version {
    /// The registry binary of this version, or why there is none (3.1.1 on a clone without
    /// `../shared` and no `REGSWEEP_REGISTRY_V3`).
    pub fn binary(self) -> Result<PathBuf, String> {
        match self {
            Version::V2 => Ok(PathBuf::from("docker-registry")),
            Version::V3 => {
                static V3: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
                V3.get_or_init(unpack_v3).clone()
            }
        }
    }

    /// The binary, or `None` after one line on stderr saying that `test` was skipped and why.
    pub fn available(self, test: &str) -> Option<PathBuf> {
        match self.binary() {
            Ok(b) => Some(b),
            // An override that names nothing is a mistake to see, not a reason to skip.
            Err(why) if std::env::var_os(V3_ENV).is_some_and(|v| !v.is_empty()) => panic!("{test}: {why}"),
            Err(why) => {
                eprintln!("{test}: skipped on registry {self}: {why}");
                None
            }
        }
    }

    /// A command running this registry, with the environment it needs here: 2.8.2's s3 driver
    /// panics at start-up when `AWS_CA_BUNDLE` is set; 3.1.1 exports traces to localhost:4318
    /// unless told not to.
    pub fn command(self) -> Command {
        let bin = self.binary().unwrap_or_else(|why| panic!("registry {self}: {why}"));
        let mut cmd = Command::new(bin);
        cmd.env_remove("AWS_CA_BUNDLE").env("OTEL_TRACES_EXPORTER", "none");
        cmd
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Version::V2 => "2.8.2",
            Version::V3 => "3.1.1",
        })
    }
}

/// Registry 3.1.1's binary: the override, or the release binary unpacked into `target/`.
fn unpack_v3() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(V3_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() { Ok(path) } else { Err(format!("{V3_ENV}={} is no file", path.display())) };
    }
    let shared = top().join("../shared/registry-v3");
    let gz = shared.join("registry-3.1.1-linux-amd64.gz");
    if !gz.is_file() {
        return Err(format!("no {} and no {V3_ENV}", gz.display()));
    }
    let sums = std::fs::read_to_string(shared.join("SHA256SUMS")).map_err(|e| format!("SHA256SUMS: {e}"))?;
    let want = sums
        .lines()
        .find_map(|l| l.strip_suffix("registry-3.1.1-linux-amd64").map(|h| h.trim().to_string()))
        .ok_or("SHA256SUMS names no registry-3.1.1-linux-amd64")?;
    let out = top().join("target/registry-3.1.1");
    let have = |p: &Path| -> Option<String> {
        use sha2::Digest as _;
        std::fs::read(p).ok().map(|b| hex::encode(sha2::Sha256::digest(b)))
    };
    if have(&out).as_deref() != Some(want.as_str()) {
        let tmp = top().join(format!("target/registry-3.1.1.{}", std::process::id()));
        let file = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        let st = Command::new("gunzip").arg("-c").arg(&gz).stdout(file).status().map_err(|e| e.to_string())?;
        if !st.success() || have(&tmp).as_deref() != Some(want.as_str()) {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("{} does not unpack to the binary SHA256SUMS names", gz.display()));
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &out).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// How a test registry differs from the plain one: its version, deletes off, TLS, more YAML
/// (auth, catalog).
#[derive(Clone, Debug)]
pub struct Setup {
    pub version: Version,
    pub delete: bool,
    /// Certificate and key files.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Top-level YAML sections, such as `auth:` or `catalog:`.
    pub extra: String,
    /// The storage driver's YAML line (`  s3: {...}`) instead of the filesystem's at the root.
    pub storage: Option<String>,
    /// The registry's output (its access log at level info, text formatter) appended to this
    /// file instead of thrown away.
    pub log: Option<PathBuf>,
    /// The registry's trust roots (`SSL_CERT_FILE`, which Go reads): what its notifications
    /// to an HTTPS endpoint verify against.
    pub ca_file: Option<PathBuf>,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            version: Version::V2,
            delete: true,
            tls: None,
            extra: String::new(),
            storage: None,
            log: None,
            ca_file: None,
        }
    }
}

/// The registry's own upload purger is off: it starts after a random 0-59 minutes, and at 0 it
/// would remove the fixtures' old upload under a test's feet.
fn registry_config_with(root: &Path, port: u16, setup: &Setup) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".yml").tempfile().unwrap();
    let tls = match &setup.tls {
        Some((cert, key)) => format!("\n  tls: {{certificate: {}, key: {}}}", cert.display(), key.display()),
        None => String::new(),
    };
    let driver =
        setup.storage.clone().unwrap_or_else(|| format!("  filesystem: {{rootdirectory: {}}}", root.display()));
    write!(
        f,
        "version: 0.1\nlog: {{level: {}}}\nstorage:\n{driver}\n  delete: {{enabled: {}}}\n  maintenance: {{uploadpurging: {{enabled: false}}}}\nhttp:\n  addr: 127.0.0.1:{port}{tls}\ncompatibility: {{schema1: {{enabled: true}}}}\n{}\n",
        if setup.log.is_some() { "info" } else { "error" },
        setup.delete,
        setup.extra
    )
    .unwrap();
    f
}

/// The real reference collector, `docker-registry garbage-collect`, on a store.
pub fn reference_gc(root: &Path, delete_untagged: bool) -> Output {
    reference_gc_with(root, &Setup::default(), delete_untagged)
}

/// The reference collector of the setup's version on the store it names (a bucket with `storage`).
pub fn reference_gc_with(root: &Path, setup: &Setup, delete_untagged: bool) -> Output {
    let cfg = registry_config_with(root, 1, setup);
    let mut cmd = setup.version.command();
    cmd.arg("garbage-collect");
    if delete_untagged {
        cmd.arg("--delete-untagged");
    }
    let out = cmd.arg(cfg.path()).output().unwrap();
    assert!(out.status.success(), "garbage-collect failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The real registry serving a store on a loopback port, stopped when dropped.
pub struct Registry {
    pub version: Version,
    pub port: u16,
    /// `http://127.0.0.1:<port>` (https with TLS).
    pub url: String,
    child: Child,
    _cfg: tempfile::NamedTempFile,
}

impl Registry {
    pub fn serve(root: &Path) -> Registry {
        Registry::serve_with(root, &Setup::default())
    }

    /// Serves a folder with registry `version`.
    pub fn serve_version(root: &Path, version: Version) -> Registry {
        Registry::serve_with(root, &Setup { version, ..Setup::default() })
    }

    /// Serves with a different setup; ready when `/v2/` answers at all (401 included).
    pub fn serve_with(root: &Path, setup: &Setup) -> Registry {
        let port = free_port();
        let cfg = registry_config_with(root, port, setup);
        let output = || match &setup.log {
            Some(path) => Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap()),
            None => Stdio::null(),
        };
        let child = setup
            .version
            .command()
            .arg("serve")
            .arg(cfg.path())
            .envs(setup.ca_file.as_ref().map(|f| ("SSL_CERT_FILE", f)))
            .stdout(output())
            .stderr(output())
            .spawn()
            .unwrap_or_else(|e| panic!("registry {} cannot start ({e}): tests/run.sh installs 2.8.2", setup.version));
        let scheme = if setup.tls.is_some() { "https" } else { "http" };
        let reg =
            Registry { version: setup.version, port, child, _cfg: cfg, url: format!("{scheme}://127.0.0.1:{port}") };
        let start = Instant::now();
        loop {
            let out = Command::new("curl")
                .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", &format!("{}/v2/", reg.url)])
                .output()
                .unwrap();
            if matches!(&out.stdout[..], b"200" | b"401") {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    /// The config.yml it serves from, as written for it.
    pub fn config_path(&self) -> &Path {
        self._cfg.path()
    }

    /// The HTTP status of one request, `None` when nothing answers.
    pub fn status(&self, method: &str, path: &str, accept: &str) -> Option<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let accept = if accept.is_empty() { String::new() } else { format!("Accept: {accept}\r\n") };
        write!(s, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{accept}\r\n").ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).ok()?;
        let line = String::from_utf8_lossy(&buf);
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// HEAD of a manifest with every manifest media type accepted.
    pub fn manifest_status(&self, repo: &str, reference: &str) -> u16 {
        let accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
            application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json, \
            application/vnd.docker.distribution.manifest.v1+prettyjws";
        self.status("HEAD", &format!("/v2/{repo}/manifests/{reference}"), accept).unwrap()
    }

    /// A full pull with `skopeo copy --all`, which checks every digest: Ok or skopeo's message.
    pub fn pull(&self, repo: &str, reference: &str) -> Result<(), String> {
        self.pull_as(repo, reference, None)
    }

    /// [`Registry::pull`] with `user:password`.
    pub fn pull_as(&self, repo: &str, reference: &str, creds: Option<&str>) -> Result<(), String> {
        pull_from(self.port, repo, reference, creds)
    }

    /// Pulls every tag in the store; panics naming each one that fails.
    pub fn assert_all_tags_pull(&self, root: &Path) {
        let failed: Vec<String> = tags_on_disk(root)
            .into_iter()
            .filter_map(|(r, t)| self.pull(&r, &t).err().map(|e| format!("{r}:{t}: {e}")))
            .collect();
        assert!(failed.is_empty(), "tags that no longer pull:\n{}", failed.join("\n"));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A full pull with `skopeo copy --all` from a registry on a loopback port (any scheme).
pub fn pull_from(port: u16, repo: &str, reference: &str, creds: Option<&str>) -> Result<(), String> {
    let out_dir = tempfile::tempdir().unwrap();
    let sep = if reference.starts_with("sha256:") { "@" } else { ":" };
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "copy", "--all", "-q", "--src-tls-verify=false"]);
    if let Some(c) = creds {
        cmd.arg(format!("--src-creds={c}"));
    }
    let out = cmd
        .arg(format!("docker://127.0.0.1:{port}/{repo}{sep}{reference}"))
        .arg(format!("dir:{}", out_dir.path().display()))
        .output()
        .unwrap();
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn walk_dirs(dir: &Path, f: &mut dyn FnMut(&Path)) {
    f(dir);
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut entries: Vec<_> = rd.flatten().filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false)).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            walk_dirs(&e.path(), f);
        }
    }
}

/// Every (repository, tag) with a current link, read from disk.
pub fn tags_on_disk(root: &Path) -> Vec<(String, String)> {
    let repos = v2(root).join("repositories");
    let mut out = Vec::new();
    walk_dirs(&repos, &mut |d| {
        if d.file_name().is_some_and(|n| n == "_manifests") {
            let name = d.parent().unwrap().strip_prefix(&repos).unwrap().to_string_lossy().into_owned();
            if let Ok(rd) = std::fs::read_dir(d.join("tags")) {
                for t in rd.flatten() {
                    if t.path().join("current/link").exists() {
                        out.push((name.clone(), t.file_name().to_string_lossy().into_owned()));
                    }
                }
            }
        }
    });
    out.sort();
    out
}

/// The blobs and revision links of a store: what the reference collector decides about.
#[derive(Debug, PartialEq, Eq)]
pub struct StoreState {
    pub blobs: BTreeSet<String>,
    pub revisions: BTreeSet<String>,
}

pub fn store_state(root: &Path) -> StoreState {
    let v2 = v2(root);
    let mut blobs = BTreeSet::new();
    let mut revisions = BTreeSet::new();
    walk_dirs(&v2, &mut |d| {
        let rel = d.strip_prefix(&v2).unwrap().to_string_lossy().into_owned();
        if rel.starts_with("blobs/") && d.join("data").is_file() {
            blobs.insert(d.file_name().unwrap().to_string_lossy().into_owned());
        } else if rel.contains("/_manifests/revisions/sha256/") && d.join("link").is_file() {
            revisions.insert(rel);
        }
    });
    StoreState { blobs, revisions }
}

/// Every file and folder of a tree with its size and mtime: to prove a run wrote nothing.
pub fn snapshot(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.unwrap();
        let m = e.path().symlink_metadata().unwrap();
        let mtime = m.modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        out.push(format!("{} {} {}", e.path().display(), m.len(), mtime));
    }
    out
}

/// The digest a link file holds.
pub fn read_link(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// Serves a store after a real run: every tag left pulls whole, every tag the report removed
/// answers 404. Returns the registry for more checks.
pub fn assert_served(root: &Path, report: &Value) -> Registry {
    assert_served_by(root, report, Version::V2)
}

/// [`assert_served`] by registry `version`.
pub fn assert_served_by(root: &Path, report: &Value, version: Version) -> Registry {
    let reg = Registry::serve_version(root, version);
    reg.assert_all_tags_pull(root);
    for r in report["repos"].as_array().unwrap() {
        for t in r["tags"].as_array().unwrap() {
            if t["action"] != "keep" {
                let (repo, tag) = (r["name"].as_str().unwrap(), t["name"].as_str().unwrap());
                assert_eq!(reg.manifest_status(repo, tag), 404, "{repo}:{tag} was removed but still answers");
            }
        }
    }
    reg
}

/// Runs regsweep with `args` on a damaged store: asserts exit 1, an error naming `needle`, no
/// panic, and the store as it was (the lock file aside).
pub fn assert_refused(root: &Path, args: &[&str], needle: &str) {
    let before = snapshot_without_lock(root);
    let out = regsweep(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(needle), "the error should name {needle}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(before == snapshot_without_lock(root), "nothing may change");
}

/// [`snapshot`] without the lock file and the mtime of the folder that holds it.
pub fn snapshot_without_lock(root: &Path) -> Vec<String> {
    let v2 = format!("{} ", v2(root).display());
    snapshot(root).into_iter().filter(|l| !l.contains(".regsweep.lock") && !l.starts_with(&v2)).collect()
}

/// The digest a tag points to, read from disk.
pub fn tag_digest(root: &Path, repo: &str, tag: &str) -> String {
    read_link(&v2(root).join("repositories").join(repo).join("_manifests/tags").join(tag).join("current/link"))
}

/// Every blob's bytes, read from disk.
pub fn blob_bytes(root: &Path) -> u64 {
    walkdir::WalkDir::new(v2(root).join("blobs"))
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && e.file_name() == "data")
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// The `data` file of a blob.
pub fn blob_data(root: &Path, digest: &str) -> PathBuf {
    let hex = &digest[7..];
    v2(root).join("blobs/sha256").join(&hex[..2]).join(hex).join("data")
}

/// How a [`proxy`] fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fail {
    Never,
    /// The first try of every request (method and target) gets `429` with `Retry-After: 0`.
    FirstTry,
    /// Every request gets `503`.
    Always,
}

/// The head of an HTTP request (request line and headers), read a byte at a time so that the
/// body stays in the stream.
pub fn read_head(conn: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A proxy in front of a registry. With `page_tags`, it pages `tags/list` two tags at a time
/// with `Link` headers, as distribution v3 does (2.8 never pages tags). [`Fail`] makes it answer
/// `429` or `503` instead. With `referrers_of`, a store's root, it answers the OCI referrers API from the
/// manifests of that store (2.8 lacks it). Everything else passes through. Returns its port.
pub fn proxy(upstream: u16, page_tags: bool, fail: Fail, referrers_of: Option<PathBuf>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: std::sync::Arc<std::sync::Mutex<BTreeSet<String>>> = Default::default();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let seen = seen.clone();
            let referrers_of = referrers_of.clone();
            std::thread::spawn(move || {
                let text = read_head(&mut conn);
                let mut lines = text.split("\r\n");
                let first = lines.next().unwrap_or("").to_string();
                let mut parts = first.split_whitespace();
                let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
                let headers: Vec<&str> =
                    lines.filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:")).collect();
                let first_try = seen.lock().unwrap().insert(first.clone());
                let status = match fail {
                    Fail::Always => Some("503 Service Unavailable"),
                    Fail::FirstTry if first_try => Some("429 Too Many Requests"),
                    _ => None,
                };
                if let Some(status) = status {
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status}\r\nRetry-After: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    return;
                }
                let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                if let (Some(root), Some((repo, subject))) = (&referrers_of, path.split_once("/referrers/")) {
                    let body = referrers(root, repo.trim_start_matches("/v2/"), subject).to_string();
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    return;
                }
                let paged = page_tags && path.ends_with("/tags/list");
                let forward = |target: &str| -> Vec<u8> {
                    let mut up = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                    write!(up, "{method} {target} HTTP/1.1\r\n{}\r\nConnection: close\r\n\r\n", headers.join("\r\n"))
                        .unwrap();
                    let mut resp = Vec::new();
                    up.read_to_end(&mut resp).unwrap();
                    resp
                };
                if !paged {
                    let _ = conn.write_all(&forward(&target));
                    return;
                }
                let resp = forward(path);
                let split = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                let status =
                    String::from_utf8_lossy(&resp[..split]).split_whitespace().nth(1).unwrap_or("").to_string();
                if status != "200" {
                    let _ = conn.write_all(&resp);
                    return;
                }
                let body: Value = serde_json::from_slice(&resp[split..]).unwrap();
                let mut tags: Vec<String> =
                    body["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
                tags.sort();
                let last = query.split('&').find_map(|kv| kv.strip_prefix("last=")).unwrap_or("");
                let rest: Vec<String> = tags.into_iter().filter(|t| t.as_str() > last).collect();
                let page: Vec<&String> = rest.iter().take(2).collect();
                let link = if rest.len() > 2 {
                    format!("Link: <{path}?n=2&last={}>; rel=\"next\"\r\n", page[1])
                } else {
                    String::new()
                };
                let out = serde_json::json!({"name": body["name"], "tags": page}).to_string();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{link}Content-Length: {}\r\nConnection: close\r\n\r\n{out}",
                    out.len()
                );
            });
        }
    });
    port
}

/// The OCI referrers index of a manifest: every manifest of the repository whose `subject` is it.
fn referrers(root: &Path, repo: &str, subject: &str) -> Value {
    let revisions = v2(root).join("repositories").join(repo).join("_manifests/revisions/sha256");
    let mut found = Vec::new();
    for e in std::fs::read_dir(revisions).into_iter().flatten().flatten() {
        let digest = format!("sha256:{}", e.file_name().to_string_lossy());
        let Ok(bytes) = std::fs::read(blob_data(root, &digest)) else { continue };
        let Ok(m) = serde_json::from_slice::<Value>(&bytes) else { continue };
        if m["subject"]["digest"] == subject {
            found.push(serde_json::json!({"mediaType": m["mediaType"], "digest": digest, "size": bytes.len()}));
        }
    }
    serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": found})
}

/// Copies `from` (a reference in the registry) into `to`, a new repository of the same registry:
/// the registry links the existing blobs into the new repository (a mount, or an upload of a
/// blob it already has) and writes a new revision.
pub fn copy_within(port: u16, from: &str, to: &str, all: bool) -> Result<(), String> {
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false"]);
    if all {
        cmd.arg("--all");
    }
    let out = cmd
        .arg(format!("docker://127.0.0.1:{port}/{from}"))
        .arg(format!("docker://127.0.0.1:{port}/{to}"))
        .output()
        .unwrap();
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

/// Writes `bytes` as a blob of the filesystem store at `root`, and `link`s naming it in `repo`
/// (`_layers`, or `revisions` for a manifest), all dated long ago; returns its digest and size.
pub fn put_old_blob(root: &Path, repo: &str, bytes: &[u8], folder: &str) -> (String, usize) {
    use sha2::Digest as _;
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)));
    let data = blob_data(root, &digest);
    std::fs::create_dir_all(data.parent().unwrap()).unwrap();
    std::fs::write(&data, bytes).unwrap();
    let link = v2(root).join("repositories").join(repo).join(folder).join(&digest[7..]).join("link");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::fs::write(&link, &digest).unwrap();
    for p in [data.parent().unwrap(), &data, link.parent().unwrap(), &link] {
        assert!(Command::new("touch").args(["-d", "2026-01-01T12:00:00Z"]).arg(p).status().unwrap().success());
    }
    (digest, bytes.len())
}

/// Gives manifest `subject` of `repo` a referrer that is itself an index (as an SBOM bundle per
/// platform would be), listing one image of its own, all written into the store dated long
/// ago; returns the referrer's digest.
pub fn referrer_index_of(root: &Path, repo: &str, subject: &str) -> String {
    let subject_size = std::fs::metadata(blob_data(root, subject)).unwrap().len();
    let (layer, layer_size) = put_old_blob(root, repo, b"a layer of the referrer's child", "_layers/sha256");
    let config =
        serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}});
    let (config, config_size) = put_old_blob(root, repo, &serde_json::to_vec(&config).unwrap(), "_layers/sha256");
    let child = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}]});
    let (child, child_size) =
        put_old_blob(root, repo, &serde_json::to_vec(&child).unwrap(), "_manifests/revisions/sha256");
    let referrer = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "artifactType": "application/vnd.example.sbom-bundle",
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": subject_size},
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": child, "size": child_size}]});
    put_old_blob(root, repo, &serde_json::to_vec(&referrer).unwrap(), "_manifests/revisions/sha256").0
}

/// Every file of a filesystem store, relative to `docker/registry/v2/` (its lock file stays,
/// to be locked again: a bucket's goes).
pub fn store_files(root: &Path) -> BTreeSet<String> {
    let base = v2(root);
    walkdir::WalkDir::new(&base)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(&base).unwrap().to_string_lossy().into_owned())
        .filter(|k| k != ".regsweep.lock")
        .collect()
}

/// Panics naming what only one side has.
pub fn assert_same(a: &BTreeSet<String>, b: &BTreeSet<String>, what: &str) {
    let only_a: Vec<_> = a.difference(b).collect();
    let only_b: Vec<_> = b.difference(a).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "{what}: only in the first {only_a:#?}, only in the second {only_b:#?}"
    );
}
