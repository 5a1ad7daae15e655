//! `regsweep listen` under load, as the registry loads it: registry 2.8 posts one envelope per
//! event (its bridge writes each event alone into the endpoint's queue, and the queue posts
//! one block per write), one post at a time per endpoint (the queue waits for each answer),
//! over a kept-alive HTTP/1.1 connection. This bench is that client: envelopes of `--batch`
//! events (default 1), posted one after another, each answered before the next.
//!
//! Run: `cargo bench --bench listen -- [EVENTS] [BATCH] [RECORD_DIR] [SYNC]` (defaults 100000, 1,
//! a temporary folder: give a folder on the disk the record would live on; `full` or `normal`,
//! the listener's `--sync`). Prints events per
//! second per tenth of the run and the listener's RSS (VmRSS, VmHWM) as it goes.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One pull event as 2.8.2 sends it (the fields it fills for a manifest GET by tag): the tags
/// of a 1,000 x 60 store pulled in turn, so the record holds 60,000 tags and digests and each
/// event raises a time already there, as on a registry serving the same images all day.
fn event(i: u64, at: &str) -> String {
    let (r, t) = (i % 1000, (i / 1000) % 60);
    let repo = format!("team{}/app{r}", r % 10);
    let tag = format!("v{t}");
    let digest = format!("sha256:{:064x}", r * 60 + t);
    format!(
        r#"{{"id":"{i:x}","timestamp":"{at}","action":"pull","target":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","size":1161,"length":1161,"repository":"{repo}","url":"http://registry:5000/v2/{repo}/manifests/{digest}","tag":"{tag}"}},"request":{{"id":"{i:x}","addr":"10.0.0.7:41234","host":"registry:5000","method":"GET","useragent":"containerd/1.7.24"}},"actor":{{}},"source":{{"addr":"registry:5000","instanceID":"5c2a3f1e-1d7e-4c1b-9b0e-7f1e2d3c4b5a"}}}}"#
    )
}

fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0u64)
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

fn main() {
    // cargo bench passes --bench; the numbers are ours.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let events: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let batch: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1);
    let tmp = tempfile::tempdir().unwrap();
    let dir = args.get(2).map_or(tmp.path().to_path_buf(), std::path::PathBuf::from);
    let sync = args.get(3).map_or("normal", String::as_str);
    let record = dir.join("bench-pulls.db");
    let _ = std::fs::remove_file(&record);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut listener = Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args(["listen", "--pulls", record.to_str().unwrap(), "--addr", &format!("127.0.0.1:{port}"), "--sync", sync])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(listener.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("on http://"), "{line}");
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));

    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let base = chrono::Utc::now() - chrono::Duration::days(1);
    let tenth = (events / 10).max(batch);
    let (start, mut lap, mut sent, mut lap_from) = (Instant::now(), Instant::now(), 0u64, 0u64);
    println!("{events} events, {batch} per envelope, --sync {sync}, record {}", record.display());
    while sent < events {
        let n = batch.min(events - sent);
        let at =
            (base + chrono::Duration::milliseconds(sent as i64)).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let body =
            format!("{{\"events\":[{}]}}", (sent..sent + n).map(|i| event(i, &at)).collect::<Vec<_>>().join(","));
        write!(
            conn,
            "POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: Go-http-client/1.1\r\n\
             Content-Type: application/vnd.docker.distribution.events.v1+json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        // The answer: a status line, headers, no body (Content-Length: 0).
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            if h == "\r\n" || h.is_empty() {
                break;
            }
        }
        let before = sent;
        sent += n;
        if sent / tenth != before / tenth || sent == events {
            let (now, high) = rss(listener.id());
            println!(
                "{sent:>9} events: {:>7.0}/s over the last {:>7}, {:>7.0}/s overall; listener RSS {now} KiB (peak {high} KiB)",
                (sent - lap_from) as f64 / lap.elapsed().as_secs_f64(),
                sent - lap_from,
                sent as f64 / start.elapsed().as_secs_f64(),
            );
            lap_from = sent;
            lap = Instant::now();
        }
    }
    let took = start.elapsed();
    println!(
        "{events} events in {:.1} s: {:.0} events/s; record {} MiB",
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64(),
        std::fs::metadata(&record).map_or(0, |m| m.len()) >> 20
    );
    let _ = Command::new("kill").arg(listener.id().to_string()).status();
    let _ = listener.wait();
    std::thread::sleep(Duration::from_millis(50));
}
