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
//! [--repos 30] [--tags 10] [--delay 5] [--runs 3] [--logs DIR] [--ceiling N]`. DIR: each run's
//! proxy log kept, a line a request (time, kind, the server's time, target). N: first, on a
//! server of its own, benches/buckets_ceiling.py deletes N keys straight, as regsweep would
//! there: the server's own rate. Needs target/s3venv and target/npm (tests/run.sh).

#[allow(unused_imports)]
#[path = "../tests/it/common/mod.rs"]
mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::azure::Azurite;
use common::emu::{self, Emulator};
use common::gcs::{Bridge, FakeGcs};
use common::s3::S3Server;
use serde_json::Value;

/// What regsweep's `--json` counts, in its order.
const KINDS: [&str; 7] = ["list", "get", "head", "put", "delete_objects", "delete", "throttled"];

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
    assert!(
        out.status.success(),
        "regsweep {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
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

/// A server started: the emulator, the port the proxy goes in front of, the environment regsweep
/// runs with through the proxy (given the proxy's port), and for benches/buckets_ceiling.py its
/// kind and own address.
type Started =
    (Box<dyn Emulator>, u16, Box<dyn Fn(u16) -> Vec<(&'static str, String)>>, Option<(&'static str, String)>);

/// The emulator and the environment regsweep runs with through the proxy.
fn server(name: &str) -> Started {
    match name {
        "azurite" => {
            let s = Azurite::start();
            let up = s.port;
            let base = s.env();
            let env = move |port: u16| {
                let mut e = base.clone();
                e.retain(|(k, _)| *k != "AZURITE_BLOB_STORAGE_URL");
                e.push(("AZURITE_BLOB_STORAGE_URL", format!("http://127.0.0.1:{port}")));
                e
            };
            let ceiling = Some(("azurite", s.endpoint()));
            (Box::new(s), up, Box::new(env), ceiling)
        }
        "fakegcs" | "fakegcs-single" => {
            let s = FakeGcs::start_with(Bridge { multi_delete: name == "fakegcs", ..Bridge::default() });
            let up = s.bridge;
            let base = s.env();
            let env = move |port: u16| {
                let mut e = base.clone();
                e.retain(|(k, _)| *k != "GOOGLE_BASE_URL");
                e.push(("GOOGLE_BASE_URL", format!("http://127.0.0.1:{port}")));
                e
            };
            let ceiling = Some(("fakegcs", s.endpoint()));
            (Box::new(s), up, Box::new(env), ceiling)
        }
        "seaweedfs" => {
            let s = SeaweedFs(S3Server::seaweedfs());
            let up = s.0.port;
            let env = move |port: u16| SeaweedFs::env_at(&format!("http://127.0.0.1:{port}"));
            (Box::new(s), up, Box::new(env), None)
        }
        _ => panic!("unknown server {name} (azurite, fakegcs, fakegcs-single, seaweedfs)"),
    }
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
        "| server | store | run | time | regsweep's requests list / get / head / put / delete_objects / delete / throttled | total (per blob) | per blob, by kind | the proxy's | keys deleted (blobs) | deletion window | deletions/s: run / window |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut summary = Vec::new();
    for name in &o.servers {
        if let Some(n) = o.ceiling {
            // On a server of its own: the emulators slow down with what they hold.
            let (_emu, _, _, ceiling) = server(name);
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
        let mut up: Option<(Started, Proxy)> = None;
        for i in 0..o.runs {
            if i == 0 || name != "seaweedfs" {
                drop(up.take()); // the server before stopped first
                let started = server(name);
                let logs = dir.path().join(i.to_string());
                std::fs::create_dir_all(&logs).unwrap();
                let proxy = Proxy::start(started.1, o.delay, &logs);
                up = Some((started, proxy));
            }
            let ((emu, _, env_at, _), proxy) = up.as_ref().unwrap();
            let delayed = env_at(proxy.port);
            let bucket = format!("bench-{i}");
            emu.create(&bucket);
            let url = emu.url(&bucket, "store");
            let start = Instant::now();
            let (r, t) = (o.repos.to_string(), o.tags.to_string());
            let out = emu::command(&emu.env(), &["gen", "--root", &url, "--repos", &r, "--tags", &t, "--json"])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let took = start.elapsed().as_secs_f64();
            assert!(out.status.success(), "gen: {}", String::from_utf8_lossy(&out.stderr));
            let made: Value = serde_json::from_slice(&out.stdout).unwrap();
            blobs = made["blobs"].as_u64().unwrap();
            keys = emu.keys(&bucket).len() as u64;
            eprintln!("{name}: {store}, copy {i}: {keys} keys, {blobs} blobs, uploaded by gen in {took:.1} s");
            if i == 0 {
                for _ in 0..o.runs {
                    let (r, _) = timed(&delayed, &["gc", "--root", &url, "--dry-run", "--json", "--quiet"], proxy);
                    row(name, &store, "gc --dry-run", &r, blobs);
                    gcs.push(r);
                }
            }
            std::thread::sleep(Duration::from_millis(2100)); // older than the run's start, to the second
            let args =
                ["prune", "--root", &url, "--keep", "5", "--order", "name", "--grace", "0s", "--json", "--quiet"];
            let (mut r, report) = timed(&delayed, &args, proxy);
            r.deleted = keys - emu.keys(&bucket).len() as u64;
            if !report["failed"].as_array().is_none_or(Vec::is_empty) {
                eprintln!("{name}: failed deletions: {}", report["failed"]);
            }
            row(name, &store, "prune --keep 5", &r, blobs);
            prunes.push(r);
            if let Some(logs) = &o.logs {
                std::fs::create_dir_all(logs).unwrap();
                std::fs::copy(&proxy.log, logs.join(format!("{name}-{i}.log"))).unwrap();
            }
        }
        summary.push((name.clone(), keys, blobs, gcs, prunes));
    }
    println!("\nMedians (time; requests of the median run by time; deletions/s from the medians):\n");
    println!(
        "| server | store | run | time | list / get / head / put / delete_objects / delete / throttled | per blob | keys deleted | deletions/s: run / window |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, keys, blobs, gcs, prunes) in &summary {
        for (what, runs) in [("gc --dry-run", gcs), ("real prune --keep 5", prunes)] {
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
