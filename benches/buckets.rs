//! regsweep on Azure Blob Storage and Google Cloud Storage emulators, with a round trip added
//! (issue 24): Azurite's blob service and fake-gcs-server as the tests run them (the harness of
//! tests/it/common: Azurite in memory with `--skipApiVersionCheck`; fake-gcs-server in memory
//! behind the tests' `put_bridge`, which gives its XML API the PUT it refuses, and, for
//! `fakegcs`, S3's multi-object delete answered by deleting each key through the JSON API;
//! `fakegcs-single` leaves that out, so regsweep gets fake-gcs-server's own 404 and falls back to
//! one DELETE a key). `seaweedfs` (SeaweedFS's S3, as benches/s3.sh runs it) is there for scale.
//! In front of the server, benches/delay_proxy.py holds each chunk half `--delay` ms in each
//! direction and logs every request with its time and kind.
//!
//! For each server: a store from `regsweep gen --root azure://|gs://|s3://...` (uploaded by
//! regsweep itself, straight to the server, not through the proxy); `--runs` runs of `gc
//! --dry-run` (`REGSWEEP_CACHE=off`: first runs), then `--runs` real `prune --keep 5 --order name
//! --grace 0s` (by name: a generated bucket's push times are its upload's), each on a fresh
//! server holding a fresh copy of the store (the emulators slow down with what they hold; the
//! first server's copy is the gcs' too). Per run: wall time, regsweep's own request counts
//! (`--json`), the proxy's, keys before and after, and deletions a second over the whole run and
//! over its deletion window (the first deletion request to the last, as the proxy saw them
//! arrive). Prints the runs and the medians as Markdown.
//!
//! Run: `cargo bench --bench buckets -- [--server azurite,fakegcs,fakegcs-single,seaweedfs]
//! [--repos 30] [--tags 10] [--delay 5] [--runs 3] [--logs DIR] [--ceiling N] [--jobs N]
//! [--watch SECS] [--azurite-disk] [--azurite-db URL] [--gcs-fs] [--gcs-seed] [--only gc|prune]`.
//! DIR: each run's proxy log kept, a line a request (time, kind, the server's time, target). N:
//! first, on a server of its own, benches/buckets_ceiling.py deletes N keys straight, as regsweep
//! would there: the server's own rate. `--only`: the gcs or the prunes alone (on a large store on
//! an emulator either takes hours: one measured at a time). Needs target/s3venv and target/npm
//! (tests/run.sh).
//!
//! For the large stores, which the emulators as the tests run them do not take (issue 24's 300 x
//! 60): `--jobs N` is gen's (requests in flight during the upload; gen's default 128), `--run-jobs
//! N` gc's and prune's (fewer listings at once on a server whose listing is slow: regsweep gives
//! up on a request after 120 s).
//! `--watch SECS`: gen's upload goes through a proxy with no delay added, and every minute the
//! bench prints the keys answered so far, the last minute's rate, the server's median time for a
//! PUT, the server process's CPU seconds and RSS (the servers this bench starts itself) and the
//! load; gen is stopped after SECS (0: never) and that server's runs are skipped, as they are when
//! gen fails (Azurite is then started by the bench, as the harness starts it, to know its process).
//! `--azurite-disk`: Azurite started by the bench, persisting to a folder of its own
//! (`--location`, its LokiJS database saved every 5 s) instead of in memory. `--azurite-db URL`
//! (`mysql://USER:PASSWORD@127.0.0.1:PORT/DATABASE`): Azurite started by the bench with its blob
//! metadata in that SQL database (`AZURITE_DB`: tables with a unique index on account,
//! container, name, where LokiJS scans every blob of the account for each lookup), its blobs'
//! bytes in a folder of its own (`--location`); before each start the bench drops DATABASE and
//! creates it again, empty (Azurite makes its tables but not the database; each server must
//! start with none of the last one's blobs), through the mysql2 client Azurite brings along, so
//! USER needs the rights to (the last server's database is left). A MariaDB of its own, e.g.
//! (Debian's mariadb-server): `mariadb-install-db --user=root --datadir=/tmp/m/data`, `mariadbd
//! --no-defaults --user=root --datadir=/tmp/m/data --socket=/tmp/m/sock --port=33061
//! --bind-address=127.0.0.1 --innodb-buffer-pool-size=1G --innodb-flush-log-at-trx-commit=2`,
//! then as root through the socket `CREATE USER 'azurite'@'127.0.0.1' IDENTIFIED BY 'azurite';
//! GRANT ALL ON `azurite%`.* TO 'azurite'@'127.0.0.1'`. `--gcs-fs`:
//! fake-gcs-server started by the bench on its filesystem backend (`-backend filesystem`: an
//! object a file, its metadata in an xattr, a lookup by name a path; its in-memory backend finds
//! an object by scanning all the bucket's), behind the harness's bridge. `--gcs-seed`: no
//! upload: the store is written on disk by `regsweep gen --root DIR/bench/store` once, and each
//! fake-gcs-server (started by the bench, in memory unless `--gcs-fs`) loads it at start-up
//! (`-data DIR`: every file of DIR/BUCKET an object, its time the load's), bucket `bench`; the
//! load's time is printed (in memory each object loaded is looked for among those before it).

#[allow(unused_imports)]
#[path = "../tests/it/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::azure::Azurite;
use common::emu::{self, Emulator};
use common::gcs::{Bridge, FakeGcs};
use common::s3::S3Server;
use serde_json::Value;

/// What regsweep's `--json` counts, in its order.
const KINDS: [&str; 8] = ["list", "get", "head", "put", "delete_objects", "delete", "throttled", "timed_out"];

/// The proxy's kinds that delete: an Azure Blob Batch, S3's multi-object delete (POST, GCS's too), a
/// DELETE.
const DELETING: [&str; 3] = ["BATCH", "POST", "DELETE"];

struct Options {
    servers: Vec<String>,
    repos: u32,
    tags: u32,
    delay: u32,
    runs: usize,
    /// A folder to keep each run's proxy log in (`SERVER-RUN.log`).
    logs: Option<std::path::PathBuf>,
    /// Keys for benches/buckets_ceiling.py to delete first (the server's own rate).
    ceiling: Option<u32>,
    /// gen's `--jobs` (requests in flight during the upload).
    jobs: Option<u32>,
    /// gc's and prune's `--jobs`.
    run_jobs: Option<u32>,
    /// gen's upload watched through a proxy, stopped after this many seconds (0: never).
    watch: Option<u64>,
    azurite_disk: bool,
    /// Azurite's `AZURITE_DB`: its metadata in this SQL database, emptied before each start.
    azurite_db: Option<String>,
    gcs_fs: bool,
    gcs_seed: bool,
    /// `--only`: which of the runs to make.
    gc: bool,
    prune: bool,
}

fn options() -> Options {
    let mut o = Options {
        servers: vec!["azurite".into(), "fakegcs".into(), "fakegcs-single".into()],
        repos: 30,
        tags: 10,
        delay: 5,
        runs: 3,
        logs: None,
        ceiling: None,
        jobs: None,
        run_jobs: None,
        watch: None,
        azurite_disk: false,
        azurite_db: None,
        gcs_fs: false,
        gcs_seed: false,
        gc: true,
        prune: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--bench" => {} // cargo bench's
            "--server" => o.servers = value().split(',').map(String::from).collect(),
            "--repos" => o.repos = value().parse().unwrap(),
            "--tags" => o.tags = value().parse().unwrap(),
            "--delay" => o.delay = value().parse().unwrap(),
            "--runs" => o.runs = value().parse().unwrap(),
            "--logs" => o.logs = Some(value().into()),
            "--ceiling" => o.ceiling = Some(value().parse().unwrap()),
            "--jobs" => o.jobs = Some(value().parse().unwrap()),
            "--run-jobs" => o.run_jobs = Some(value().parse().unwrap()),
            "--watch" => o.watch = Some(value().parse().unwrap()),
            "--azurite-disk" => o.azurite_disk = true,
            "--azurite-db" => o.azurite_db = Some(value()),
            "--gcs-fs" => o.gcs_fs = true,
            "--gcs-seed" => o.gcs_seed = true,
            "--only" => match value().as_str() {
                "gc" => o.prune = false,
                "prune" => o.gc = false,
                v => panic!("--only {v}: gc or prune"),
            },
            _ => panic!("unknown option {a}"),
        }
    }
    o
}

/// benches/delay_proxy.py in front of `upstream`, logging to `log`; stopped when dropped.
struct Proxy {
    port: u16,
    child: Child,
    log: std::path::PathBuf,
}

impl Proxy {
    fn start(upstream: u16, delay: u32, dir: &Path) -> Proxy {
        let port = common::free_port();
        let log = dir.join("proxy.log");
        let mut child = Command::new("python3")
            .arg(common::top().join("benches/delay_proxy.py"))
            .args([port.to_string(), upstream.to_string(), delay.to_string()])
            .arg(dir.join("proxy.json"))
            .arg(&log)
            .spawn()
            .unwrap();
        emu::wait_for_port(&mut child, port, "delay_proxy.py");
        Proxy { port, child, log }
    }

    /// The log's lines so far.
    fn lines(&self) -> Vec<Line> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let mut fields = l.split(' ');
                let at = fields.next()?.parse().ok()?;
                let kind = fields.next()?.to_string();
                let server = fields.next()?.parse().ok();
                let keys = fields.find_map(|f| f.strip_prefix("keys=")?.parse().ok());
                Some(Line { at, kind, server, keys })
            })
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request as the proxy logged it.
struct Line {
    /// When it reached the proxy (unix time).
    at: f64,
    kind: String,
    /// Seconds until the server's answer began (less the half delay the request was held).
    server: Option<f64>,
    /// The keys a batch deletes.
    keys: Option<u64>,
}

/// One timed run.
#[derive(Default)]
struct Run {
    seconds: f64,
    /// regsweep's own counts, in [`KINDS`]' order.
    ours: Vec<u64>,
    /// The proxy's, by kind.
    proxy: std::collections::BTreeMap<String, u64>,
    deleted: u64,
    /// From the first deletion request to the last, as they reached the proxy.
    window: f64,
    blobs_deleted: u64,
    /// Keys the deletion requests named, and the median of the server's time for one.
    delete_keys: u64,
    delete_server: f64,
}

/// Runs regsweep with `env`, timed; its requests as the proxy saw them.
fn timed(env: &[(&'static str, String)], args: &[&str], proxy: &Proxy) -> (Run, Value) {
    let seen = proxy.lines().len();
    let start = Instant::now();
    let out = emu::command(env, args).stdin(Stdio::null()).output().unwrap();
    let seconds = start.elapsed().as_secs_f64();
    // A failed run is reported and measured all the same (how far it got, by the proxy's log).
    if !out.status.success() {
        eprintln!(
            "regsweep {args:?} failed ({}) after {seconds:.1} s: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    std::thread::sleep(Duration::from_millis(300));
    let lines: Vec<_> = proxy.lines().into_iter().skip(seen).collect();
    let mut run = Run { seconds, ..Run::default() };
    for l in &lines {
        *run.proxy.entry(l.kind.clone()).or_default() += 1;
    }
    // The log is in the order of the answers: the window from the earliest deletion to the latest.
    let deleting: Vec<&Line> = lines.iter().filter(|l| DELETING.contains(&l.kind.as_str())).collect();
    let (first, last) = deleting.iter().fold((f64::MAX, f64::MIN), |(a, b), l| (a.min(l.at), b.max(l.at)));
    if last > first {
        run.window = last - first;
    }
    run.delete_keys = deleting.iter().map(|l| l.keys.unwrap_or(1)).sum();
    let times: Vec<f64> = deleting.iter().filter_map(|l| l.server).collect();
    if !times.is_empty() {
        run.delete_server = median(times);
    }
    run.ours = KINDS.iter().map(|k| report["requests"][k].as_u64().unwrap_or(0)).collect();
    run.blobs_deleted = report["blobs_deleted"].as_u64().unwrap_or(0);
    (run, report)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// SeaweedFS's S3, for scale: what the bench asks of an emulator.
struct SeaweedFs(S3Server);

impl SeaweedFs {
    fn env_at(endpoint: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", endpoint.to_string()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }
}

impl Emulator for SeaweedFs {
    fn create(&self, name: &str) {
        self.0.create_bucket(name);
    }
    fn keys(&self, name: &str) -> Vec<String> {
        self.0.keys(name)
    }
    fn upload(&self, _: &Path, _: &str, _: &str, _: bool) {
        unimplemented!("regsweep gen uploads")
    }
    fn download(&self, _: &str, _: &str, _: &Path) {
        unimplemented!()
    }
    fn put(&self, _: &str, _: &str, _: &[u8]) {
        unimplemented!()
    }
    fn delete(&self, _: &str, _: &str) {
        unimplemented!()
    }
    fn env(&self) -> Vec<(&'static str, String)> {
        SeaweedFs::env_at(&self.0.endpoint())
    }
    fn url(&self, name: &str, root: &str) -> String {
        format!("s3://{name}/{root}")
    }
}

/// A server this bench starts itself rather than through the harness (`--azurite-disk`,
/// `--azurite-db`, `--gcs-fs`, `--gcs-seed`): stopped, and its folder removed, when dropped.
struct Own {
    gcs: bool,
    /// The server's own port.
    port: u16,
    /// What regsweep is given: the bridge's port in front of fake-gcs-server, else `port`.
    front: u16,
    child: Child,
    /// fake-gcs-server's filesystem root (its keys counted on disk).
    fs: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Own {
    /// Azurite with the harness's options, persisting to a folder of its own (`--location`) if
    /// `disk`, else in memory as the harness's; with `db`, its metadata in that SQL database,
    /// emptied first, and the blobs' bytes in the folder (it refuses `--inMemoryPersistence` then).
    fn azurite(disk: bool, db: Option<&str>) -> Own {
        let dir = tempfile::tempdir().unwrap();
        let port = common::free_port();
        let mut cmd = Command::new(common::azure::azurite_blob());
        if let Some(url) = db {
            empty_database(url);
            cmd.env("AZURITE_DB", url);
        }
        let mut child = cmd
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"])
            .args(if disk || db.is_some() {
                vec!["--location".as_ref(), dir.path().as_os_str()]
            } else {
                vec!["--inMemoryPersistence".as_ref()]
            })
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        emu::wait_for_port(&mut child, port, "Azurite");
        Own { gcs: false, port, front: port, child, fs: None, _dir: dir }
    }

    /// fake-gcs-server on its filesystem backend or in memory, loading `seed` (`-data`) if
    /// given, behind the harness's bridge; waits until it answers (after the load).
    fn fake_gcs(fs: bool, seed: Option<&Path>, bridge: Bridge) -> Own {
        let dir = tempfile::tempdir().unwrap();
        let port = common::free_port();
        let root = dir.path().join("fs");
        let mut cmd = Command::new(common::gcs::fake_gcs_server());
        cmd.args(["-scheme", "http", "-host", "127.0.0.1", "-port", &port.to_string()]).args([
            "-public-host",
            &format!("127.0.0.1:{port}"),
            "-log-level",
            "error",
        ]);
        if fs {
            cmd.args(["-backend", "filesystem", "-filesystem-root"]).arg(&root);
        } else {
            cmd.args(["-backend", "memory"]);
        }
        if let Some(seed) = seed {
            cmd.arg("-data").arg(seed);
        }
        let start = Instant::now();
        let mut child = cmd.current_dir(dir.path()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        emu::wait_for_port(&mut child, port, "fake-gcs-server");
        // It listens before it loads the seed, and answers after.
        loop {
            let answered = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut c| {
                let _ = c.set_read_timeout(Some(Duration::from_secs(3600)));
                let head = format!("GET /storage/v1/b HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
                let mut buf = [0u8; 16];
                c.write_all(head.as_bytes()).is_ok() && c.read(&mut buf).is_ok_and(|n| n > 0)
            });
            if answered {
                break;
            }
            assert!(child.try_wait().unwrap().is_none(), "fake-gcs-server exited");
            std::thread::sleep(Duration::from_millis(200));
        }
        if seed.is_some() {
            eprintln!(
                "fake-gcs-server ({}): the seed loaded in {:.1} s, CPU {:.1} s",
                if fs { "filesystem" } else { "memory" },
                start.elapsed().as_secs_f64(),
                cpu_seconds(child.id()).unwrap_or(0.0)
            );
        }
        let front = common::gcs::put_bridge(port, bridge);
        Own { gcs: true, port, front, child, fs: fs.then_some(root), _dir: dir }
    }

    /// The environment for the server (the bridge, for fake-gcs-server) or a proxy on `port`.
    fn env_at(gcs: bool, port: u16) -> Vec<(&'static str, String)> {
        let base = format!("http://127.0.0.1:{port}");
        if gcs { FakeGcs::env_at(&base) } else { Azurite::env_at(&base) }
    }

    fn tool(&self, args: &[&str]) -> String {
        emu::tool(if self.gcs { "gcstool.py" } else { "aztool.py" }, &format!("http://127.0.0.1:{}", self.port), args)
    }
}

impl Drop for Own {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Emulator for Own {
    fn create(&self, name: &str) {
        self.tool(&[if self.gcs { "mkbucket" } else { "mkcontainer" }, name]);
    }
    fn keys(&self, name: &str) -> Vec<String> {
        // On the filesystem backend, a listing reads every object's metadata: the files instead.
        if let Some(root) = &self.fs {
            let bucket = root.join(name);
            let mut keys = Vec::new();
            let mut dirs = vec![bucket.clone()];
            while let Some(d) = dirs.pop() {
                for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                    let path = e.path();
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        dirs.push(path);
                    } else if !path.to_string_lossy().ends_with(".metadata") {
                        keys.push(path.strip_prefix(&bucket).unwrap().to_string_lossy().into_owned());
                    }
                }
            }
            keys.sort();
            return keys;
        }
        self.tool(&["keys", name]).lines().map(String::from).collect()
    }
    fn upload(&self, _: &Path, _: &str, _: &str, _: bool) {
        unimplemented!("regsweep gen uploads")
    }
    fn download(&self, _: &str, _: &str, _: &Path) {
        unimplemented!()
    }
    fn put(&self, _: &str, _: &str, _: &[u8]) {
        unimplemented!()
    }
    fn delete(&self, _: &str, _: &str) {
        unimplemented!()
    }
    fn env(&self) -> Vec<(&'static str, String)> {
        Own::env_at(self.gcs, self.front)
    }
    fn url(&self, name: &str, root: &str) -> String {
        format!("{}://{name}/{root}", if self.gcs { "gs" } else { "azure" })
    }
}

/// `--azurite-db`: the URL's database dropped and created again, empty, with the mysql2 client
/// in target/npm (Azurite's own, so nothing more to install): Azurite creates its tables, not the
/// database, and a fresh server must not find the last one's blobs.
fn empty_database(url: &str) {
    const SCRIPT: &str = r#"
        const mysql = require("mysql2/promise");
        (async () => {
            const url = new URL(process.argv[1]);
            const db = decodeURIComponent(url.pathname.slice(1));
            url.pathname = "/";
            const c = await mysql.createConnection(url.toString());
            await c.query("DROP DATABASE IF EXISTS `" + db + "`");
            await c.query("CREATE DATABASE `" + db + "`");
            await c.end();
        })().catch(e => { console.error(e.message); process.exit(1); });
    "#;
    let out = Command::new("node")
        .args(["-e", SCRIPT, url])
        .env("NODE_PATH", common::top().join("target/npm/node_modules"))
        .output()
        .unwrap();
    assert!(out.status.success(), "emptying {url}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A process's CPU seconds (user and system), from /proc.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// A process's resident memory in MB, from /proc.
fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb / 1024.0)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// gen's upload, timed; with `watch` (a proxy with no delay in front of the server, gen's
/// environment through it, and the limit in seconds, 0: none) its progress printed every minute
/// and gen stopped at the limit. `Err`: why there is no store (gen failed or was stopped).
fn upload(
    name: &str,
    env: &[(&'static str, String)],
    args: &[&str],
    watch: Option<(&Proxy, u64)>,
    pid: Option<u32>,
) -> Result<(Value, f64), String> {
    let start = Instant::now();
    let mut child =
        emu::command(env, args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let errors = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let mut tick = start;
    let (mut answered, mut stopped) = (0usize, false);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(250));
        let Some((proxy, limit)) = watch else { continue };
        if stopped {
            continue; // killed: waiting for it to exit
        }
        if tick.elapsed() < Duration::from_secs(60) && !(limit > 0 && start.elapsed().as_secs() >= limit) {
            continue;
        }
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
            - tick.elapsed().as_secs_f64();
        tick = Instant::now();
        let lines = proxy.lines();
        let puts: Vec<&Line> = lines.iter().filter(|l| l.kind == "PUT" && l.server.is_some()).collect();
        let recent: Vec<f64> = puts.iter().filter(|l| l.at >= since).filter_map(|l| l.server).collect();
        let (median_ms, max_ms) = if recent.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            (median(recent.clone()) * 1000.0, recent.iter().cloned().fold(0.0, f64::max) * 1000.0)
        };
        eprintln!(
            "{name}: upload {:.0} s: {} keys answered, {} in the last minute ({:.0}/s); the server's time for a PUT: median {median_ms:.0} ms, max {max_ms:.0} ms; server CPU {}, RSS {}; load {}",
            start.elapsed().as_secs_f64(),
            puts.len(),
            puts.len() - answered,
            (puts.len() - answered) as f64 / 60.0,
            pid.and_then(cpu_seconds).map_or("-".into(), |c| format!("{c:.0} s")),
            pid.and_then(rss_mb).map_or("-".into(), |m| format!("{m:.0} MB")),
            load(),
        );
        answered = puts.len();
        if limit > 0 && start.elapsed().as_secs() >= limit {
            let _ = child.kill();
            stopped = true;
        }
    };
    let took = start.elapsed().as_secs_f64();
    let (out, err) = (reader.join().unwrap(), errors.join().unwrap());
    if stopped {
        return Err(format!("gen stopped after {took:.0} s ({answered} keys answered)"));
    }
    if !status.success() {
        return Err(format!("gen failed after {took:.0} s ({status}): {}", String::from_utf8_lossy(&err).trim()));
    }
    Ok((serde_json::from_slice(&out).unwrap(), took))
}

/// A server started: the emulator, the port the proxy goes in front of, the environment regsweep
/// runs with through the proxy (given the proxy's port), for benches/buckets_ceiling.py its kind
/// and own address, and the server's process id when the bench started it itself.
type Started = (
    Box<dyn Emulator>,
    u16,
    Box<dyn Fn(u16) -> Vec<(&'static str, String)>>,
    Option<(&'static str, String)>,
    Option<u32>,
);

/// The emulator and the environment regsweep runs with through the proxy (`seed`: a folder for
/// fake-gcs-server to load).
fn server(name: &str, o: &Options, seed: Option<&Path>) -> Started {
    match name {
        "azurite" if o.azurite_disk || o.azurite_db.is_some() || o.watch.is_some() => {
            own(Own::azurite(o.azurite_disk, o.azurite_db.as_deref()), "azurite")
        }
        "fakegcs" | "fakegcs-single" if o.gcs_fs || seed.is_some() => {
            let bridge = Bridge { multi_delete: name == "fakegcs", ..Bridge::default() };
            own(Own::fake_gcs(o.gcs_fs, seed, bridge), "fakegcs")
        }
        "azurite" => {
            let s = Azurite::start();
            let up = s.port;
            let env = |port: u16| Azurite::env_at(&format!("http://127.0.0.1:{port}"));
            let ceiling = Some(("azurite", s.endpoint()));
            (Box::new(s), up, Box::new(env), ceiling, None)
        }
        "fakegcs" | "fakegcs-single" => {
            let s = FakeGcs::start_with(Bridge { multi_delete: name == "fakegcs", ..Bridge::default() });
            let up = s.bridge;
            let env = |port: u16| FakeGcs::env_at(&format!("http://127.0.0.1:{port}"));
            let ceiling = Some(("fakegcs", s.endpoint()));
            (Box::new(s), up, Box::new(env), ceiling, None)
        }
        "seaweedfs" => {
            let s = SeaweedFs(S3Server::seaweedfs());
            let up = s.0.port;
            let env = move |port: u16| SeaweedFs::env_at(&format!("http://127.0.0.1:{port}"));
            (Box::new(s), up, Box::new(env), None, None)
        }
        _ => panic!("unknown server {name} (azurite, fakegcs, fakegcs-single, seaweedfs)"),
    }
}

/// A server of [`Own`]'s as [`server`] gives it.
fn own(s: Own, kind: &'static str) -> Started {
    let (up, pid, endpoint) = (s.front, s.child.id(), format!("http://127.0.0.1:{}", s.port));
    let gcs = s.gcs;
    let env = move |port: u16| Own::env_at(gcs, port);
    (Box::new(s), up, Box::new(env), Some((kind, endpoint)), Some(pid))
}

fn row(server: &str, store: &str, what: &str, r: &Run, blobs: u64) {
    let ours: Vec<String> = r.ours.iter().map(u64::to_string).collect();
    let total: u64 = r.ours[..6].iter().sum();
    let per: Vec<String> = r.ours[..6].iter().map(|n| format!("{:.3}", *n as f64 / blobs as f64)).collect();
    let mut proxy: Vec<String> = r.proxy.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let deletions: u64 = r.proxy.iter().filter(|(k, _)| DELETING.contains(&k.as_str())).map(|(_, n)| n).sum();
    if deletions > 0 {
        proxy.push(format!(
            "{:.1} keys a deletion request, {:.0} ms the server's median time for one",
            r.delete_keys as f64 / deletions as f64,
            r.delete_server * 1000.0
        ));
    }
    let rate = |s: f64| if r.deleted > 0 && s > 0.0 { format!("{:.0}", r.deleted as f64 / s) } else { "-".into() };
    println!(
        "| {server} | {store} | {what} | {:.2} s | {} | {total} ({:.3}) | {} | {} | {} | {} | {} / {} |",
        r.seconds,
        ours.join(" / "),
        total as f64 / blobs as f64,
        per.join(" / "),
        proxy.join(", "),
        if r.deleted > 0 { format!("{} ({} blobs)", r.deleted, r.blobs_deleted) } else { "-".into() },
        if r.window > 0.0 { format!("{:.2} s", r.window) } else { "-".into() },
        rate(r.seconds),
        rate(r.window),
    );
    let _ = std::io::stdout().flush();
}

fn main() {
    let o = options();
    let bin = env!("CARGO_BIN_EXE_regsweep");
    let store = format!("{} x {}", o.repos, o.tags);
    println!("regsweep {bin}, {store} store, {} ms added per round trip, {} runs each\n", o.delay, o.runs);
    println!(
        "| server | store | run | time | regsweep's requests list / get / head / put / delete_objects / delete / throttled / timed_out | total (per blob) | per blob, by kind | the proxy's | keys deleted (blobs) | deletion window | deletions/s: run / window |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut summary = Vec::new();
    for name in &o.servers {
        if let Some(n) = o.ceiling {
            // On a server of its own: the emulators slow down with what they hold.
            let (_emu, _, _, ceiling, _) = server(name, &o, None);
            if let Some((kind, endpoint)) = ceiling {
                let out = Command::new(common::s3::venv().join("bin/python"))
                    .arg(common::top().join("benches/buckets_ceiling.py"))
                    .args([kind, &endpoint, &n.to_string()])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "buckets_ceiling.py: {}", String::from_utf8_lossy(&out.stderr));
                eprint!("{name}: the server alone: {}", String::from_utf8_lossy(&out.stdout));
            }
        }
        let (mut gcs, mut prunes) = (Vec::new(), Vec::new());
        let (mut keys, mut blobs) = (0, 0);
        // Each prune on a fresh server holding one copy of the store (the emulators slow down
        // with the keys they hold, deleted ones included): the first server's also takes the
        // gcs. SeaweedFS does not slow down so (nor start twice in a row here): one server,
        // a bucket a run.
        let dir = tempfile::tempdir().unwrap();
        // `--gcs-seed`: the store written on disk once, as fake-gcs-server's `-data` folder.
        let seeded = o.gcs_seed && name.starts_with("fakegcs");
        let seed = dir.path().join("seed");
        if seeded {
            let (r, t) = (o.repos.to_string(), o.tags.to_string());
            let root = seed.join("bench/store");
            let out =
                emu::command(&[], &["gen", "--root", root.to_str().unwrap(), "--repos", &r, "--tags", &t, "--json"])
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
            assert!(out.status.success(), "gen: {}", String::from_utf8_lossy(&out.stderr));
            let made: Value = serde_json::from_slice(&out.stdout).unwrap();
            blobs = made["blobs"].as_u64().unwrap();
        }
        let mut up: Option<(Started, Proxy)> = None;
        let run_jobs = o.run_jobs.map(|j| j.to_string());
        for i in 0..o.runs {
            if i == 0 || name != "seaweedfs" {
                drop(up.take()); // the server before stopped first
                let started = server(name, &o, seeded.then_some(seed.as_path()));
                let logs = dir.path().join(i.to_string());
                std::fs::create_dir_all(&logs).unwrap();
                let proxy = Proxy::start(started.1, o.delay, &logs);
                up = Some((started, proxy));
            }
            let ((emu, port, env_at, _, pid), proxy) = up.as_ref().unwrap();
            let delayed = env_at(proxy.port);
            let bucket = if seeded { "bench".to_string() } else { format!("bench-{i}") };
            let url = emu.url(&bucket, "store");
            if seeded {
                keys = emu.keys(&bucket).len() as u64;
                eprintln!("{name}: {store}, copy {i}: {keys} keys, {blobs} blobs, loaded by the server");
            } else {
                emu.create(&bucket);
                let (r, t) = (o.repos.to_string(), o.tags.to_string());
                let mut args = vec!["gen", "--root", &url, "--repos", &r, "--tags", &t, "--json"];
                let jobs = o.jobs.map(|j| j.to_string());
                if let Some(j) = &jobs {
                    args.extend(["--jobs", j.as_str()]);
                }
                // Watched: through a proxy of its own, with no delay.
                let watching = o.watch.map(|limit| {
                    let logs = dir.path().join(format!("upload-{i}"));
                    std::fs::create_dir_all(&logs).unwrap();
                    (Proxy::start(*port, 0, &logs), limit)
                });
                let env = watching.as_ref().map_or_else(|| emu.env(), |(p, _)| env_at(p.port));
                let result = upload(name, &env, &args, watching.as_ref().map(|(p, l)| (p, *l)), *pid);
                if let (Some(logs), Some((p, _))) = (&o.logs, &watching) {
                    std::fs::create_dir_all(logs).unwrap();
                    std::fs::copy(&p.log, logs.join(format!("{name}-upload-{i}.log"))).unwrap();
                }
                let (made, took) = match result {
                    Ok(done) => done,
                    Err(why) => {
                        eprintln!("{name}: {store}, copy {i}: no store: {why}");
                        println!("| {name} | {store} | upload | {why} |");
                        break;
                    }
                };
                blobs = made["blobs"].as_u64().unwrap();
                keys = emu.keys(&bucket).len() as u64;
                eprintln!("{name}: {store}, copy {i}: {keys} keys, {blobs} blobs, uploaded by gen in {took:.1} s");
            }
            if i == 0 && o.gc {
                for _ in 0..o.runs {
                    let mut args = vec!["gc", "--root", &url, "--dry-run", "--json", "--quiet"];
                    args.extend(run_jobs.iter().flat_map(|j| ["--jobs", j.as_str()]));
                    let (r, _) = timed(&delayed, &args, proxy);
                    row(name, &store, "gc --dry-run", &r, blobs);
                    gcs.push(r);
                }
            }
            if o.prune {
                std::thread::sleep(Duration::from_millis(2100)); // older than the run's start, to the second
                let mut args = vec![
                    "prune", "--root", &url, "--keep", "5", "--order", "name", "--grace", "0s", "--json", "--quiet",
                ];
                args.extend(run_jobs.iter().flat_map(|j| ["--jobs", j.as_str()]));
                let (mut r, report) = timed(&delayed, &args, proxy);
                r.deleted = keys - emu.keys(&bucket).len() as u64;
                if !report["failed"].as_array().is_none_or(Vec::is_empty) {
                    eprintln!("{name}: failed deletions: {}", report["failed"]);
                }
                row(name, &store, "prune --keep 5", &r, blobs);
                prunes.push(r);
            }
            if let Some(logs) = &o.logs {
                std::fs::create_dir_all(logs).unwrap();
                std::fs::copy(&proxy.log, logs.join(format!("{name}-{i}.log"))).unwrap();
            }
            if !o.prune {
                break; // the gcs all run on the first copy
            }
        }
        if !gcs.is_empty() || !prunes.is_empty() {
            summary.push((name.clone(), keys, blobs, gcs, prunes));
        }
    }
    println!("\nMedians (time; requests of the median run by time; deletions/s from the medians):\n");
    println!(
        "| server | store | run | time | list / get / head / put / delete_objects / delete / throttled / timed_out | per blob | keys deleted | deletions/s: run / window |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, keys, blobs, gcs, prunes) in &summary {
        for (what, runs) in [("gc --dry-run", gcs), ("real prune --keep 5", prunes)] {
            if runs.is_empty() {
                continue;
            }
            let time = median(runs.iter().map(|r| r.seconds).collect());
            let mid = runs.iter().find(|r| r.seconds == time).unwrap();
            let total: u64 = mid.ours[..6].iter().sum();
            let deleted = median(runs.iter().map(|r| r.deleted as f64).collect());
            let window = median(runs.iter().map(|r| r.window).collect());
            let rates = if deleted > 0.0 {
                format!("{:.0} / {:.0}", deleted / time, if window > 0.0 { deleted / window } else { 0.0 })
            } else {
                "-".into()
            };
            println!(
                "| {name} | {store} ({keys} keys, {blobs} blobs) | {what} | {time:.2} s | {} | {total} ({:.3}) | {} | {rates} |",
                mid.ours.iter().map(u64::to_string).collect::<Vec<_>>().join(" / "),
                total as f64 / *blobs as f64,
                if deleted > 0.0 { format!("{deleted:.0} ({} blobs)", mid.blobs_deleted) } else { "-".into() },
            );
        }
    }
}
