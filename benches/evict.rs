//! Evicting a run's keys from the registry's redis blob cache (issue 34): keys removed a
//! second, through regsweep's own evictor (`blobcache::RedisEvictor`, DEL and SREM pipelined in
//! batches of 10,000) on Debian's redis-server on loopback, started by the bench without
//! persistence. Each run fills the cache as the registry would have (`blobs::<d>` hashes of
//! `--blobs` blobs; one repository's set and `repository::<r>::blobs::<d>` hashes for each
//! blob's layer link), then times the stage evictions (the blobs, then the links) and the
//! run's last pass (every key again, by then absent). Prints each run and the medians.
//!
//! Run: `cargo bench --bench evict -- [--blobs 100000] [--runs 5]`. Goal: 100,000 keys a
//! second.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use regsweep::blobcache::{RedisEvictor, from_url};
use regsweep::model::digest::Digest;
use regsweep::store::stage::{Evict, Removed};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let (n, runs) = (arg("--blobs", 100_000), arg("--runs", 5));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let _server = Server(
        Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (tests/run.sh installs it)"),
    );
    let url = format!("redis://127.0.0.1:{port}/0");
    let client = redis::Client::open(url.as_str()).unwrap();
    let start = Instant::now();
    let mut conn = loop {
        match client.get_connection() {
            Ok(c) => break c,
            Err(_) if start.elapsed() < Duration::from_secs(10) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("redis-server: {e}"),
        }
    };
    let blobs: Vec<Digest> = (0..n as u64)
        .map(|i| {
            let mut d = [0u8; 32];
            d[..8].copy_from_slice(&i.to_be_bytes());
            d[8] = 0x5a;
            Digest(d)
        })
        .collect();
    let repo = "team0/app0";
    println!("| run | blobs: keys/s | links: keys/s | last pass: keys/s | keys removed |");
    println!("|---|---|---|---|---|");
    let (mut b, mut l, mut f) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs {
        // The cache as the registry leaves it: a global hash a blob, the repository's set and hash.
        redis::cmd("FLUSHDB").exec(&mut conn).unwrap();
        for chunk in blobs.chunks(10_000) {
            let mut pipe = redis::pipe();
            for d in chunk {
                let s = d.to_string();
                pipe.hset_multiple(format!("blobs::{s}"), &[("digest", s.as_str()), ("size", "1234")]).ignore();
                pipe.hset_nx(format!("blobs::{s}"), "mediatype", "application/octet-stream").ignore();
                pipe.sadd(format!("repository::{repo}::blobs"), &s).ignore();
                pipe.hset_nx(format!("repository::{repo}::blobs::{s}"), "mediatype", "application/octet-stream")
                    .ignore();
            }
            pipe.exec(&mut conn).unwrap();
        }
        let evictor = RedisEvictor::connect(from_url(&url, None).unwrap()).unwrap();
        let t = Instant::now();
        evictor.removed(&Removed { blobs: blobs.clone(), links: Vec::new() });
        let blob_s = t.elapsed().as_secs_f64();
        let links: Vec<(String, Digest)> = blobs.iter().map(|d| (repo.to_string(), *d)).collect();
        let t = Instant::now();
        evictor.removed(&Removed { blobs: Vec::new(), links });
        let link_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        evictor.finish();
        let last_s = t.elapsed().as_secs_f64();
        let mut report = regsweep::core::report::CacheReport::default();
        evictor.fill(&mut report);
        assert!(report.stale_keys.is_empty() && report.failures == 0, "{report:?}");
        let left: u64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
        assert_eq!(left, 0, "keys left");
        let (kb, kl, kf) = (n as f64 / blob_s, 2.0 * n as f64 / link_s, 3.0 * n as f64 / last_s);
        println!(
            "| {run} | {kb:.0} ({blob_s:.3} s) | {kl:.0} ({link_s:.3} s) | {kf:.0} ({last_s:.3} s) | {} |",
            report.keys_removed
        );
        b.push(kb);
        l.push(kl);
        f.push(kf);
    }
    println!("| median | {:.0} | {:.0} | {:.0} | |", median(b), median(l), median(f));
}
