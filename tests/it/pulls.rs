//! The pull record (issue 25): the real registry 2.8.2 posting its notifications to `regsweep
//! listen`, skopeo and curl pulling from it; the listener killed mid-burst; posts it must refuse;
//! an access log of the same pulls imported.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::*;

/// Every manifest media type: 2.8.2 answers 404 to a manifest GET whose Accept lacks its type.
const ACCEPT: &str = "Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// `regsweep listen` on a loopback port, killed (SIGKILL) when dropped; its stderr in a file.
struct Listener {
    child: Child,
    port: u16,
    stderr: PathBuf,
}

impl Listener {
    fn start(record: &Path, port: u16, args: &[&str]) -> Listener {
        Listener::start_with(record, port, args, &[])
    }

    /// With these environment variables (the `test-hooks` ones: `REGSWEEP_TEST_LISTEN_CRASH`, ...).
    fn start_with(record: &Path, port: u16, args: &[&str], env: &[(&str, &str)]) -> Listener {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let stderr = record.with_extension(format!("{port}.{n}.err"));
        let start = Instant::now();
        loop {
            let err = std::fs::File::create(&stderr).unwrap();
            let mut child = Command::new(env!("CARGO_BIN_EXE_regsweep"))
                .args(["listen", "--pulls", record.to_str().unwrap(), "--addr", &format!("127.0.0.1:{port}")])
                .args(args)
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stderr(err)
                .spawn()
                .unwrap();
            // Ready once it says where it listens; a port still held makes it exit: tried again.
            loop {
                let text = std::fs::read_to_string(&stderr).unwrap_or_default();
                if text.contains("regsweep listen: on http") {
                    return Listener { child, port, stderr };
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                assert!(start.elapsed() < Duration::from_secs(20), "the listener did not start: {text}");
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(start.elapsed() < Duration::from_secs(20), "the listener did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/events", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The registry's `notifications` section: one endpoint per (url, authorization header), quick
/// retries.
fn notifications(endpoints: &[(String, Option<&str>)]) -> String {
    let mut yaml = "notifications:\n  endpoints:\n".to_string();
    for (i, (url, auth)) in endpoints.iter().enumerate() {
        yaml += &format!(
            "    - name: e{i}\n      url: {url}\n      timeout: 1s\n      threshold: 1\n      backoff: 100ms\n"
        );
        if let Some(a) = auth {
            yaml += &format!("      headers: {{Authorization: [{a:?}]}}\n");
        }
    }
    yaml
}

/// `pulls show --json` of some records.
fn show(records: &[&Path]) -> Value {
    let mut args = vec!["pulls", "show"];
    for r in records {
        args.extend(["--pulls", r.to_str().unwrap()]);
    }
    regsweep_json(&args)
}

/// The (repository, tag, digest) of every tag of a shown record.
fn tags(shown: &Value) -> BTreeSet<(String, String, String)> {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    shown["tags"].as_array().unwrap().iter().map(|t| (s(&t["repository"]), s(&t["tag"]), s(&t["digest"]))).collect()
}

/// The (repository, digest) of every digest of a shown record.
fn digests(shown: &Value) -> BTreeSet<(String, String)> {
    let s = |v: &Value| v.as_str().unwrap().to_string();
    shown["digests"].as_array().unwrap().iter().map(|d| (s(&d["repository"]), s(&d["digest"]))).collect()
}

/// Waits until `record` shows every (repository, tag) of `want`, for at most `secs`.
fn wait_for_tags(record: &Path, want: &[(&str, &str)], secs: u64) -> Value {
    let start = Instant::now();
    loop {
        if record.exists() {
            let shown = show(&[record]);
            let have: BTreeSet<(String, String)> = tags(&shown).into_iter().map(|(r, t, _)| (r, t)).collect();
            if want.iter().all(|(r, t)| have.contains(&(r.to_string(), t.to_string()))) {
                return shown;
            }
            assert!(start.elapsed() < Duration::from_secs(secs), "missing pulls of {want:?}: the record has {have:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A manifest request with curl (`-I`: HEAD): its HTTP status.
fn curl_manifest(port: u16, repo: &str, reference: &str, head: bool, agent: &str) -> String {
    let url = format!("http://127.0.0.1:{port}/v2/{repo}/manifests/{reference}");
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", ACCEPT, "-A", agent]);
    if head {
        cmd.arg("-I");
    }
    String::from_utf8(cmd.arg(url).output().unwrap().stdout).unwrap()
}

/// POSTs a body (`@FILE` or text) to a listener with extra curl arguments: the HTTP status.
fn post(url: &str, body: &str, extra: &[&str]) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Content-Type: application/vnd.docker.distribution.events.v1+json",
        ])
        .args(extra)
        .args(["--data-binary", body, url])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// The children of an index in the store.
fn children(root: &Path, index: &str) -> Vec<String> {
    let m: Value = serde_json::from_slice(&std::fs::read(blob_data(root, index)).unwrap()).unwrap();
    m["manifests"].as_array().unwrap().iter().map(|c| c["digest"].as_str().unwrap().to_string()).collect()
}

fn owned(v: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String)> {
    v.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect()
}

/// Skopeo pulls reach the record by tag and by digest, GET only; a HEAD (curl -I) counts only
/// on a listener started with --count-head; an ignored user agent does not count; a token the
/// registry sends in its endpoint's headers is accepted; two records read together give the
/// latest of each.
/// On both versions: 3.1.1's notifications are what 2.8.2's are, for every rule the record reads.
#[test]
fn registry_pulls_are_recorded_get_only_and_head_with_count_head() {
    for version in VERSIONS {
        if version.available("registry_pulls_are_recorded_get_only_and_head_with_count_head").is_some() {
            pulls_are_recorded_by(version);
        }
    }
}

fn pulls_are_recorded_by(version: Version) {
    let store = fixture("demo");
    let root = store.path();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
    let la = Listener::start(&a, free_port(), &["--token", "s3cret", "--ignore-agent", "^probe/"]);
    let lb = Listener::start(&b, free_port(), &["--count-head"]);
    let extra = notifications(&[(la.url(), Some("Bearer s3cret")), (lb.url(), None)]);
    let reg = Registry::serve_with(root, &Setup { version, extra, ..Setup::default() });

    // The HEAD and the ignored GET first: each endpoint's queue is in order, so once the last
    // pulls are recorded, these were seen.
    assert_eq!(curl_manifest(reg.port, "team/app", "v2", true, "curl/8"), "200");
    assert_eq!(curl_manifest(reg.port, "team/app", "v3", false, "probe/1"), "200");
    reg.pull("team/app", "v1").unwrap();
    reg.pull("team/multi", "2026.1").unwrap();
    let want = [("team/app", "v1"), ("team/multi", "2026.1")];
    let shown_a = wait_for_tags(&a, &want, 30);
    let shown_b = wait_for_tags(&b, &[("team/app", "v2"), ("team/app", "v3"), want[0], want[1]], 30);

    let (v1, v2, v3) =
        (tag_digest(root, "team/app", "v1"), tag_digest(root, "team/app", "v2"), tag_digest(root, "team/app", "v3"));
    let multi = tag_digest(root, "team/multi", "2026.1");
    let kids = children(root, &multi);
    assert!(!kids.is_empty());
    assert_eq!(tags(&shown_a), owned(&[("team/app", "v1", &v1), ("team/multi", "2026.1", &multi)]));
    // The index by tag, then its children by digest (skopeo --all).
    let mut want_digests: BTreeSet<(String, String)> =
        [("team/app", &v1), ("team/multi", &multi)].iter().map(|(r, d)| (r.to_string(), d.to_string())).collect();
    want_digests.extend(kids.iter().map(|k| ("team/multi".to_string(), k.clone())));
    assert_eq!(digests(&shown_a), want_digests, "{version}: GETs only: no HEAD, no blob, no ignored agent");
    assert_eq!(
        tags(&shown_b),
        owned(&[
            ("team/app", "v1", &v1),
            ("team/app", "v2", &v2),
            ("team/app", "v3", &v3),
            ("team/multi", "2026.1", &multi)
        ]),
        "{version}: --count-head counts the HEAD of v2; no --ignore-agent here: v3 counts"
    );
    assert!(shown_a["since"].is_string() && shown_a["last_event"].is_string(), "{shown_a}");
    // Both together: the union, each at its latest.
    assert_eq!(tags(&show(&[&a, &b])), tags(&shown_b));
    assert!(!la.log().contains(" 401 "), "the registry's token was refused: {}", la.log());
    drop(reg);
}

/// The listener killed (SIGKILL) during a burst of pulls and started again on the same record:
/// every pull is there, those sent while it was down delivered by the registry's retries.
#[test]
fn a_listener_killed_mid_burst_loses_no_pull() {
    let store = fixture("demo");
    let root = store.path();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("pulls.db");
    let port = free_port();
    let mut listener = Some(Listener::start(&record, port, &[]));
    let url = format!("http://127.0.0.1:{port}/events");
    let reg = Registry::serve_with(root, &Setup { extra: notifications(&[(url, None)]), ..Setup::default() });

    let all = tags_on_disk(root);
    assert!(all.len() >= 15, "{all:?}");
    let (kill_at, restart_at) = (all.len() / 3, 2 * all.len() / 3);
    for (i, (repo, tag)) in all.iter().enumerate() {
        if i == kill_at {
            // Events of the pulls just made are in flight.
            listener = None;
        }
        if i == restart_at {
            listener = Some(Listener::start(&record, port, &[]));
        }
        assert_eq!(curl_manifest(reg.port, repo, tag, false, "burst/1"), "200", "{repo}:{tag}");
    }
    let want: Vec<(&str, &str)> = all.iter().map(|(r, t)| (r.as_str(), t.as_str())).collect();
    let shown = wait_for_tags(&record, &want, 60);
    let expected: BTreeSet<(String, String, String)> =
        all.iter().map(|(r, t)| (r.clone(), t.clone(), tag_digest(root, r, t))).collect();
    assert_eq!(tags(&shown), expected);
    drop(listener);
}

/// A listener that dies (SIGKILL) right before storing a batch, or once it is stored and before
/// its 200: started again, the record holds the pull, from the registry's retry or from the
/// first try. The 200 comes only after the commit.
#[test]
fn a_crash_before_storing_or_before_answering_loses_nothing() {
    let store = fixture("demo");
    let root = store.path();
    for (point, stored_by_the_dead) in [("store", false), ("answer", true)] {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("pulls.db");
        let port = free_port();
        let mut dying = Listener::start_with(&record, port, &[], &[("REGSWEEP_TEST_LISTEN_CRASH", point)]);
        let url = format!("http://127.0.0.1:{port}/events");
        let reg = Registry::serve_with(root, &Setup { extra: notifications(&[(url, None)]), ..Setup::default() });
        assert_eq!(curl_manifest(reg.port, "team/app", "v1", false, "curl/8"), "200");
        let start = Instant::now();
        let status = loop {
            if let Some(st) = dying.child.try_wait().unwrap() {
                break st;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "{point}: the listener did not crash");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(!status.success(), "{point}");
        let before: BTreeSet<(String, String)> = tags(&show(&[&record])).into_iter().map(|(r, t, _)| (r, t)).collect();
        assert_eq!(before.contains(&("team/app".into(), "v1".into())), stored_by_the_dead, "{point}");
        let _again = Listener::start(&record, port, &[]);
        assert_eq!(curl_manifest(reg.port, "team/app", "v2", false, "curl/8"), "200");
        let shown = wait_for_tags(&record, &[("team/app", "v1"), ("team/app", "v2")], 30);
        assert_eq!(tags(&shown).len(), 2, "{point}: {shown}");
    }
}

/// An envelope of two pulls, as the registry sends them.
fn envelope(events: &[(&str, &str, &str)]) -> String {
    let events: Vec<Value> = events
        .iter()
        .map(|(tag, digest, time)| {
            serde_json::json!({
                "id": "x", "timestamp": time, "action": "pull",
                "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": 499,
                    "repository": "team/app", "url": format!("http://r/v2/team/app/manifests/{digest}"), "tag": tag},
                "request": {"id": "y", "addr": "127.0.0.1:1", "host": "r", "method": "GET", "useragent": "skopeo/1.9.3"},
                "actor": {}, "source": {"addr": "vm:5000"}
            })
        })
        .collect();
    serde_json::json!({ "events": events }).to_string()
}

/// The same batch posted twice changes nothing (nor does an older pull); a wrong or missing
/// token, a body that is not an envelope and one over --max-body (declared, or chunked) are
/// refused with 401, 400, 413, store nothing, and are logged. SIGTERM stops it with exit 0.
#[test]
fn posts_twice_change_nothing_and_refused_posts_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("pulls.db");
    let l = Listener::start(&record, free_port(), &["--token", "t0k", "--max-body", "4096"]);
    let auth = ["-H", "Authorization: Bearer t0k"];
    let d1 = format!("sha256:{}", "1".repeat(64));
    let d2 = format!("sha256:{}", "2".repeat(64));
    let batch = envelope(&[("v1", &d1, "2026-12-01T10:00:00.5Z"), ("v2", &d2, "2026-12-01T11:00:00Z")]);
    assert_eq!(post(&l.url(), &batch, &auth), "200");
    let once = show(&[&record]);
    assert_eq!(tags(&once).len(), 2);
    assert_eq!(once["last_event"], "2026-12-01T11:00:00Z");
    assert_eq!(once["tags"][0]["last_pull"], "2026-12-01T10:00:00.500Z", "to the registry's fraction of a second");
    assert_eq!(post(&l.url(), &batch, &auth), "200");
    let older = envelope(&[("v1", &d2, "2026-11-01T10:00:00Z")]);
    assert_eq!(post(&l.url(), &older, &auth), "200");
    assert_eq!(show(&[&record]), once, "the same batch again, or an older pull, changes nothing");

    let new = envelope(&[("v9", &d1, "2026-12-02T10:00:00Z")]);
    assert_eq!(post(&l.url(), &new, &["-H", "Authorization: Bearer wrong"]), "401");
    assert_eq!(post(&l.url(), &new, &[]), "401");
    assert_eq!(post(&l.url(), "{\"events\": [", &auth), "400");
    assert_eq!(post(&l.url(), "{\"events\": 3}", &auth), "400");
    assert_eq!(post(&l.url(), "<html/>", &auth), "400");
    let many: Vec<(&str, &str, &str)> = (0..40).map(|_| ("v9", d1.as_str(), "2026-12-02T10:00:00Z")).collect();
    let big = envelope(&many);
    assert!(big.len() > 4096);
    let big_file = dir.path().join("big.json");
    std::fs::write(&big_file, &big).unwrap();
    let big_arg = format!("@{}", big_file.display());
    assert_eq!(post(&l.url(), &big_arg, &auth), "413");
    let chunked = [auth[0], auth[1], "-H", "Transfer-Encoding: chunked"];
    assert_eq!(post(&l.url(), &big_arg, &chunked), "413", "a chunked body has no length to refuse it by");
    assert_eq!(show(&[&record]), once, "refused posts store nothing");
    let log = l.log();
    for needle in ["401", "wrong Authorization", "no Authorization header", "400", "not an event envelope", "413"] {
        assert!(log.contains(needle), "the refusals are logged ({needle}): {log}");
    }
    // The token may also be the header's whole value, as configured; here from a file.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "Basic abc\n").unwrap();
    let l2 = Listener::start(&dir.path().join("b.db"), free_port(), &["--token-file", token_file.to_str().unwrap()]);
    assert_eq!(post(&l2.url(), &new, &["-H", "Authorization: Basic abc"]), "200");
    // SIGTERM ends it cleanly (exit 0), and what it stored stays.
    let mut l = l;
    signal(&l.child, "-TERM");
    let status = l.child.wait().unwrap();
    assert!(status.success(), "{status:?}: {}", l.log());
    assert!(l.log().contains("regsweep listen: stopped"), "{}", l.log());
    assert_eq!(show(&[&record]), once);
}

/// The registry's access log of some pulls, imported with the store at hand, gives the record
/// their events gave: the same (repository, tag, digest) and (repository, digest).
#[test]
fn an_imported_access_log_gives_the_record_of_the_events() {
    let store = fixture("demo");
    let root = store.path();
    let dir = tempfile::tempdir().unwrap();
    let (events, imported, log) =
        (dir.path().join("events.db"), dir.path().join("log.db"), dir.path().join("registry.log"));
    let l = Listener::start(&events, free_port(), &[]);
    let setup = Setup { extra: notifications(&[(l.url(), None)]), log: Some(log.clone()), ..Setup::default() };
    let reg = Registry::serve_with(root, &setup);
    let v5 = tag_digest(root, "team/app", "v5");
    reg.pull("team/app", "v1").unwrap();
    reg.pull("team/app", &v5).unwrap();
    reg.pull("team/app/tools", "1.10.0").unwrap();
    reg.pull("team/multi", "2026.2").unwrap();
    reg.pull("team/app", "rc").unwrap();
    let want = [("team/app", "v1"), ("team/app/tools", "1.10.0"), ("team/multi", "2026.2"), ("team/app", "rc")];
    let from_events = wait_for_tags(&events, &want, 30);
    drop(reg);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("\"GET /v2/team/app/manifests/v1 HTTP/1.1\" 200"), "{text}");
    assert!(text.contains("msg=\"response completed\""), "{text}");

    let out = regsweep(&[
        "pulls",
        "import",
        "--pulls",
        imported.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        log.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let from_log = show(&[&imported]);
    assert_eq!(tags(&from_log), tags(&from_events));
    assert_eq!(digests(&from_log), digests(&from_events));
    assert!(digests(&from_log).contains(&("team/app".to_string(), v5)), "the pull by digest");
    // The record began no later than the earliest pull the log holds.
    let time = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    let earliest = from_log["digests"].as_array().unwrap().iter().map(|d| time(&d["last_pull"])).min().unwrap();
    assert!(time(&from_log["since"]) <= earliest, "{from_log}");
    // Importing it again changes nothing.
    let out = regsweep(&[
        "pulls",
        "import",
        "--pulls",
        imported.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        log.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert_eq!(show(&[&imported]), from_log);
    // Without the store, the tags come without their digest, and the import says so.
    let bare = dir.path().join("bare.db");
    let out = regsweep(&["pulls", "import", "--pulls", bare.to_str().unwrap(), log.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("without their digest"));
    let bare_tags: BTreeSet<(String, String)> = tags(&show(&[&bare])).into_iter().map(|(r, t, _)| (r, t)).collect();
    let event_tags: BTreeSet<(String, String)> = tags(&from_events).into_iter().map(|(r, t, _)| (r, t)).collect();
    assert_eq!(bare_tags, event_tags);
    // A log that is not there: an error naming it, and no record made.
    let typo = dir.path().join("typo.db");
    let out =
        regsweep(&["pulls", "import", "--pulls", typo.to_str().unwrap(), log.to_str().unwrap(), "/nonexistent.log"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.log") && !typo.exists());
    // A table too.
    let out = regsweep(&["pulls", "show", "--pulls", imported.to_str().unwrap(), "team/multi"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("team/multi") && table.contains("2026.2") && !table.contains("team/app\n"), "{table}");
}

// Retention by last pull: prune with --pulls against the real registry's notifications.

/// A record that began `hours` ago: an access-log line of that time imported (a backfill), a
/// pull of a repository the store does not hold. Then a listener may carry it on.
fn record_begun(record: &Path, hours: i64) {
    let at = chrono::Utc::now() - chrono::Duration::hours(hours);
    let line = format!(
        "127.0.0.1 - - [{}] \"GET /v2/backfill/gone/manifests/old HTTP/1.1\" 200 499 \"\" \"skopeo/1.9.3\"\n",
        at.format("%d/%b/%Y:%H:%M:%S +0000")
    );
    let log = record.with_extension("backfill.log");
    std::fs::write(&log, line).unwrap();
    let out = regsweep(&["pulls", "import", "--pulls", record.to_str().unwrap(), log.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Waits until `record` holds a pull of each (repository, digest) of `want`.
fn wait_for_digests(record: &Path, want: &[(&str, &str)], secs: u64) {
    let start = Instant::now();
    loop {
        let have = if record.exists() { digests(&show(&[record])) } else { BTreeSet::new() };
        if want.iter().all(|(r, d)| have.contains(&(r.to_string(), d.to_string()))) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "missing pulls of {want:?}: the record has {have:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The real registry posting its pull events to a new listener on `record`, which leaves out
/// regsweep's own reads (as docs/pulls.md advises).
fn registry_recording(root: &Path, record: &Path, version: Version) -> (Registry, Listener) {
    let l = Listener::start(record, free_port(), &["--ignore-agent", "^regsweep/"]);
    let reg =
        Registry::serve_with(root, &Setup { version, extra: notifications(&[(l.url(), None)]), ..Setup::default() });
    (reg, l)
}

/// `prune --root ROOT ARGS... --pulls R...` as JSON.
fn prune_pulled(root: &Path, args: &[&str], records: &[&Path]) -> Value {
    let mut all = vec!["prune", "--root", root.to_str().unwrap()];
    all.extend_from_slice(args);
    for r in records {
        all.extend(["--pulls", r.to_str().unwrap()]);
    }
    regsweep_json(&all)
}

fn names(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The reason kind of a tag in a report.
fn reason<'a>(report: &'a Value, repo_name: &str, tag: &str) -> &'a str {
    let tags = repo(report, repo_name)["tags"].as_array().unwrap();
    let t = tags.iter().find(|t| t["name"] == tag).unwrap_or_else(|| panic!("no {repo_name}:{tag}"));
    t["reason"]["kind"].as_str().unwrap()
}

/// Skopeo pulls two old tags; `prune --keep 1 --keep-pulled-within 1h --pulls REC` keeps them
/// beside the newest (v1's signature tag with it), deletes the rest, and the real registry then
/// serves every kept tag (`skopeo copy --all`) and none of the others. Without --pulls the JSON
/// has none of the new fields.
#[test]
fn prune_keeps_the_tags_pulled_within_the_window_and_the_registry_serves_them() {
    for version in VERSIONS {
        if version.available("prune_keeps_the_tags_pulled_within_the_window_and_the_registry_serves_them").is_some() {
            prune_keeps_the_pulled(version);
        }
    }
}

fn prune_keeps_the_pulled(version: Version) {
    let store = fixture("demo");
    let root = store.path();
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("pulls.db");
    record_begun(&rec, 2);
    let (reg, listener) = registry_recording(root, &rec, version);
    reg.pull("team/app", "v1").unwrap();
    reg.pull("team/app/tools", "1.0.0").unwrap();
    wait_for_tags(&rec, &[("team/app", "v1"), ("team/app/tools", "1.0.0")], 30);
    // The same through the API (`online`; newest by name there, v6).
    let online = regsweep_json(&[
        "online",
        "--url",
        &reg.url,
        "--keep",
        "1",
        "--order",
        "name",
        "--keep-pulled-within",
        "1h",
        "--pulls",
        rec.to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(online["pulls"]["last_event"].is_string(), "{online}");
    assert_eq!(reason(&online, "team/app", "v6"), "count");
    assert_eq!(reason(&online, "team/app", "v1"), "pulled_within");
    assert_eq!(reason(&online, "team/app", "v2"), "beyond_count");
    drop(reg);

    let plain = regsweep_json(&["prune", "--root", root.to_str().unwrap(), "--keep", "1", "--dry-run"]);
    assert!(plain.get("pulls").is_none() && !plain.to_string().contains("last_pull"), "{plain}");
    assert!(tags_with(&plain, "team/app", "delete").contains("v1"));

    let args = ["--keep", "1", "--keep-pulled-within", "1h"];
    let plan = prune_pulled(root, &[&args[..], &["--dry-run"]].concat(), &[&rec]);
    assert!(plan["pulls"]["since"].is_string() && plan["pulls"]["last_event"].is_string(), "{}", plan["pulls"]);
    assert_eq!(
        tags_with(&plan, "team/app", "keep"),
        names(&["rc", "v1", &format!("sha256-{}.sig", &tag_digest(root, "team/app", "v1")[7..])])
    );
    assert_eq!(reason(&plan, "team/app", "v1"), "pulled_within");
    assert_eq!(reason(&plan, "team/app", "v2"), "beyond_count");
    assert_eq!(tags_with(&plan, "team/app/tools", "keep"), names(&["1.10.0", "1.0.0"]));
    assert_eq!(tags_with(&plan, "team/multi", "keep"), names(&["2026.3"]));
    let v1 = repo(&plan, "team/app")["tags"].as_array().unwrap().iter().find(|t| t["name"] == "v1").unwrap().clone();
    assert!(v1["last_pull"].is_string(), "{v1}");
    assert!(plan["warnings"].as_array().unwrap().is_empty(), "{}", plan["warnings"]);

    let done = prune_pulled(root, &args, &[&rec]);
    assert_eq!(tags_with(&done, "team/app", "keep"), tags_with(&plan, "team/app", "keep"));
    assert!(done["tags_deleted"].as_u64().unwrap() > 0);
    // Every kept tag pulls whole from the real registry; every other one is gone.
    drop(assert_served_by(root, &done, version));
    drop(listener);
}

/// `--order pull`: the newest by last pull are the last pulled (v4, then v2, though pushed
/// long before rc); the never pulled follow, by push time. The plan lines say when.
#[test]
fn order_pull_keeps_the_last_pulled() {
    let store = fixture("demo");
    let root = store.path();
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("pulls.db");
    let (reg, listener) = registry_recording(root, &rec, Version::V2);
    reg.pull("team/app", "v2").unwrap();
    wait_for_tags(&rec, &[("team/app", "v2")], 30);
    std::thread::sleep(Duration::from_millis(1100));
    reg.pull("team/app", "v4").unwrap();
    wait_for_tags(&rec, &[("team/app", "v4")], 30);

    let plan = prune_pulled(root, &["--keep", "2", "--order", "pull", "--dry-run"], &[&rec]);
    let rank = |t: &str| {
        let tags = repo(&plan, "team/app")["tags"].as_array().unwrap();
        tags.iter().find(|x| x["name"] == t).unwrap()["reason"]["rank"].as_u64().unwrap()
    };
    assert_eq!((rank("v4"), rank("v2")), (1, 2));
    assert_eq!((rank("rc"), rank("latest"), rank("v1")), (3, 4, 9), "never pulled: by push time");
    let kept = tags_with(&plan, "team/app", "keep");
    assert!(kept.contains("v4") && kept.contains("v2") && !kept.contains("rc"), "{kept:?}");
    // The text plan says when each was pulled.
    let text = regsweep(&[
        "prune",
        "--root",
        root.to_str().unwrap(),
        "--keep",
        "2",
        "--order",
        "pull",
        "--pulls",
        rec.to_str().unwrap(),
        "--dry-run",
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    let line = |tag: &str| text.lines().find(|l| l.split_whitespace().nth(1) == Some(tag)).unwrap().to_string();
    assert!(line("v4").contains("count: #1 newest; pulled ") && line("v4").ends_with(" ago"), "{text}");
    let began = &plan["pulls"]["since"].as_str().unwrap()[..10];
    assert!(line("rc").ends_with(&format!("not pulled since the record began ({began})")), "{text}");
    // Without a record, --order pull is a usage error.
    let out = regsweep(&["prune", "--root", root.to_str().unwrap(), "--keep", "2", "--order", "pull", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    drop((reg, listener));
}

/// A record begun just now cannot say what was not pulled in 30 days: every ordinary tag is
/// kept (the pulled one as pulled, the others as not judged), with one warning of its own
/// kind; `du` shows each repository's last pull (table, JSON, and issue 35: the HTML page's column
/// and the treemap's tooltips); the metrics file carries the last event.
#[test]
fn a_window_longer_than_the_record_keeps_every_tag_and_says_so() {
    let store = fixture("demo");
    let root = store.path();
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("pulls.db");
    let (reg, listener) = registry_recording(root, &rec, Version::V2);
    reg.pull("team/app", "v1").unwrap();
    wait_for_tags(&rec, &[("team/app", "v1")], 30);
    drop(reg);

    let metrics = dir.path().join("regsweep.prom");
    let args = ["--keep", "1", "--keep-pulled-within", "30d", "--metrics-file", metrics.to_str().unwrap()];
    let done = prune_pulled(root, &args, &[&rec]);
    assert_eq!(done["tags_deleted"], 0, "nothing judged, nothing deleted");
    let warnings = done["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["kind"], "pull_record_too_short");
    assert!(warnings[0]["message"].as_str().unwrap().contains("--keep-pulled-within 30days"), "{warnings:?}");
    assert_eq!(reason(&done, "team/app", "v1"), "pulled_within");
    assert_eq!(reason(&done, "team/app", "v2"), "pull_record_too_short");
    assert_eq!(reason(&done, "team/multi", "2026.1"), "pull_record_too_short");
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(prom.contains("regsweep_pulls_last_event_timestamp_seconds{command=\"prune\""), "{prom}");
    let check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&metrics).unwrap())
        .output()
        .expect("promtool must be installed (tests/run.sh installs prometheus)");
    assert!(check.status.success(), "promtool: {}", String::from_utf8_lossy(&check.stdout));

    let du = regsweep_json(&["du", "--root", root.to_str().unwrap(), "--pulls", rec.to_str().unwrap()]);
    let last =
        |name: &str| du["repos"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap()["last_pull"].clone();
    assert!(last("team/app").is_string() && last("team/multi").is_null(), "{du}");
    let plain = regsweep_json(&["du", "--root", root.to_str().unwrap()]);
    assert!(!plain.to_string().contains("last_pull") && plain.get("pulls").is_none(), "{plain}");
    let table = regsweep(&["du", "--root", root.to_str().unwrap(), "--pulls", rec.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.lines().next().unwrap().contains("LAST PULL"), "{table}");
    // The page and the treemap show it too (issue 35): a column and each rectangle's tooltip.
    let (html, svg) = (dir.path().join("du.html"), dir.path().join("du.svg"));
    let (html_arg, svg_arg) = (html.to_str().unwrap(), svg.to_str().unwrap());
    let root_arg = root.to_str().unwrap();
    let out =
        regsweep(&["du", "--root", root_arg, "--pulls", rec.to_str().unwrap(), "--html", html_arg, "--svg", svg_arg]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (page, map) = (std::fs::read_to_string(&html).unwrap(), std::fs::read_to_string(&svg).unwrap());
    let pulled = last("team/app").as_str().unwrap().replace('T', " ")[..16].to_string();
    assert!(page.contains("<th>last pull</th>"), "{page}");
    let row = |name: &str| page.lines().find(|l| l.starts_with(&format!("<tr><td>{name}</td>"))).unwrap().to_string();
    assert!(row("team/app").contains(&format!(">{pulled}</td>")), "{}", row("team/app"));
    assert!(row("team/multi").ends_with("<td data-v=\"0\">none</td></tr>"), "{}", row("team/multi"));
    assert!(map.contains(&format!("last pull {pulled} UTC</title>")), "{map}");
    assert!(map.contains("team/multi: ") && map.contains("not pulled since the pull record began</title>"), "{map}");
    let out = regsweep(&["du", "--root", root_arg, "--html", html_arg]);
    assert!(out.status.success());
    assert!(!std::fs::read_to_string(&html).unwrap().contains("last pull"), "without --pulls, the page as it was");
    drop(listener);
}

/// A pull of one platform of an old index by its digest keeps the index's tag; a pull of a
/// manifest by digest keeps every tag of that digest (v3 and stable). The registry then serves
/// them. A referrer's pull (v2's SBOM by digest, v1's signature tag by name) keeps its subject
/// only with --count-referrers (issue 35).
#[test]
fn an_index_pulled_by_a_child_and_a_manifest_by_digest_keep_their_tags() {
    let store = fixture("demo");
    let root = store.path();
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("pulls.db");
    record_begun(&rec, 2);
    let (reg, listener) = registry_recording(root, &rec, Version::V2);
    let (old, other) = (tag_digest(root, "team/multi", "2026.1"), tag_digest(root, "team/multi", "2026.2"));
    let child = children(root, &old).into_iter().find(|c| !children(root, &other).contains(c)).unwrap();
    let v3 = tag_digest(root, "team/app", "v3");
    assert_eq!(tag_digest(root, "team/app", "stable"), v3);
    reg.pull("team/multi", &child).unwrap();
    reg.pull("team/app", &v3).unwrap();
    // Referrers: v2's SBOM (an OCI artifact whose subject is v2) by digest, v1's signature tag
    // by name, as a verifier reads them.
    let (v1, v2) = (tag_digest(root, "team/app", "v1"), tag_digest(root, "team/app", "v2"));
    let sbom = sbom_of(root, &v2);
    let sig = format!("sha256-{}.sig", &v1["sha256:".len()..]);
    assert_eq!(curl_manifest(reg.port, "team/app", &sbom, false, "verifier/1"), "200");
    assert_eq!(curl_manifest(reg.port, "team/app", &sig, false, "verifier/1"), "200");
    wait_for_digests(&rec, &[("team/multi", &child), ("team/app", &v3), ("team/app", &sbom)], 30);
    wait_for_tags(&rec, &[("team/app", &sig)], 30);
    drop(reg);
    let shown = show(&[&rec]);
    assert!(tags(&shown).iter().all(|(r, t, _)| r == "backfill/gone" || *t == sig), "pulled by digest only: {shown}");

    // --count-referrers: the SBOM's pull keeps v2, the signature's keeps v1 (issue 35).
    let args = ["--keep", "1", "--keep-pulled-within", "1h"];
    let referred = prune_pulled(root, &[&args[..], &["--count-referrers", "--dry-run"]].concat(), &[&rec]);
    assert_eq!(reason(&referred, "team/app", "v1"), "pulled_within");
    assert_eq!(reason(&referred, "team/app", "v2"), "pulled_within");
    let done = prune_pulled(root, &args, &[&rec]);
    assert_eq!(tags_with(&done, "team/multi", "keep"), names(&["2026.3", "2026.1"]));
    assert_eq!(reason(&done, "team/multi", "2026.1"), "pulled_within");
    let app = tags_with(&done, "team/app", "keep");
    assert!(app.contains("v3") && app.contains("stable") && !app.contains("v2"), "{app:?}");
    assert!(!app.contains("v1"), "without --count-referrers a referrer's pull is not its subject's: {app:?}");
    drop(assert_served(root, &done));
    drop(listener);
}

/// The referrer in the store whose subject is `subject` (the demo's SBOM of v2).
fn sbom_of(root: &Path, subject: &str) -> String {
    let revisions = root.join("docker/registry/v2/repositories/team/app/_manifests/revisions/sha256");
    let mut found = std::fs::read_dir(&revisions).unwrap().filter_map(|e| {
        let d = format!("sha256:{}", e.unwrap().file_name().to_str().unwrap());
        let m: Value = serde_json::from_slice(&std::fs::read(blob_data(root, &d)).ok()?).ok()?;
        (m["subject"]["digest"] == subject).then_some(d)
    });
    found.next().expect("the demo store has an SBOM referrer of v2")
}

/// Two replicas serving one store, each posting to its own record: a prune reading both keeps
/// what either saw pulled (one alone would delete the other's), and judges a window only where
/// both records cover it.
#[test]
fn two_records_are_read_together() {
    let store = fixture("demo");
    let root = store.path();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
    record_begun(&a, 2);
    record_begun(&b, 3);
    let (reg_a, la) = registry_recording(root, &a, Version::V2);
    let (reg_b, lb) = registry_recording(root, &b, Version::V2);
    reg_a.pull("team/app", "v1").unwrap();
    reg_b.pull("team/app", "v2").unwrap();
    wait_for_tags(&a, &[("team/app", "v1")], 30);
    wait_for_tags(&b, &[("team/app", "v2")], 30);
    drop((reg_a, reg_b));

    let args = ["--keep", "1", "--keep-pulled-within", "1h"];
    let only_a = prune_pulled(root, &[&args[..], &["--dry-run"]].concat(), &[&a]);
    let kept = tags_with(&only_a, "team/app", "keep");
    assert!(kept.contains("v1") && !kept.contains("v2"), "{kept:?}");
    // 150 minutes: b covers them (3 h), a does not (2 h): not judged.
    let longer = prune_pulled(root, &["--keep", "1", "--keep-pulled-within", "150m", "--dry-run"], &[&a, &b]);
    assert_eq!(longer["warnings"][0]["kind"], "pull_record_too_short", "{}", longer["warnings"]);
    assert_eq!(reason(&longer, "team/app/tools", "1.0.0"), "pull_record_too_short");
    let done = prune_pulled(root, &args, &[&a, &b]);
    let kept = tags_with(&done, "team/app", "keep");
    assert!(kept.contains("v1") && kept.contains("v2") && !kept.contains("v4"), "{kept:?}");
    // Each record is a listener of its own: a window is judged only where both cover it: the
    // record begins with the later of the two (a's, 2 h ago).
    let time = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().timestamp();
    assert_eq!(time(&done["pulls"]["since"]), time(&show(&[&a])["since"]));
    drop(assert_served(root, &done));
    drop((la, lb));
}

/// `regsweep listen` that must refuse to start: its exit status and stderr (killed, and the
/// test failed, when it is still serving after 10 seconds).
fn listen_fails(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .arg("listen")
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if !exits_within(&mut child, Duration::from_secs(10)) {
        let out = child.wait_with_output().unwrap();
        panic!("listen {args:?} started: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = child.wait_with_output().unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Whether `child` exits within `limit`; killed when it does not.
fn exits_within(child: &mut std::process::Child, limit: Duration) -> bool {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// POSTs over HTTPS trusting `ca`: the HTTP status, `000` when no TLS session could be made.
fn post_tls(port: u16, ca: &Path, body: &str, token: &str) -> String {
    let auth = format!("Authorization: Bearer {token}");
    post(&format!("https://127.0.0.1:{port}/events"), body, &["--cacert", ca.to_str().unwrap(), "-H", &auth])
}

/// Issue 35: the listener off loopback. An address off loopback without a token refuses to
/// start (one line, exit 2, no record made); with --tls-cert/--tls-key it speaks HTTPS only, a
/// real HTTPS client (curl) posting; SIGHUP reads a new pair (new connections get it) and a pair
/// that does not load leaves the old one serving, with a line saying why; the real registry
/// posts its pull events to it over TLS, trusting the certificate (2.8.2 and 3.1.1); the inner
/// port behind the relay answers nobody else.
#[test]
fn the_listener_off_loopback_needs_a_token_and_speaks_tls() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("pulls.db");
    let rec = record.to_str().unwrap();
    let open = format!("0.0.0.0:{}", free_port());
    let (status, err) = listen_fails(&["--pulls", rec, "--addr", &open]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("off loopback") && err.contains("--token"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!record.exists(), "refused before the record is made");
    // A certificate that does not load: refused at the start, naming the file.
    let (cert, key) = crate::common::token::self_signed(dir.path(), "listen", false);
    let (cert2, key2) = crate::common::token::self_signed(dir.path(), "listen2", false);
    let (status, err) =
        listen_fails(&["--pulls", rec, "--tls-cert", cert.to_str().unwrap(), "--tls-key", key2.to_str().unwrap()]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains(key2.to_str().unwrap()) && err.contains("does not serve"), "{err}");

    // The files it serves from: a copy, replaced below.
    let (served_cert, served_key) = (dir.path().join("served.crt"), dir.path().join("served.key"));
    std::fs::copy(&cert, &served_cert).unwrap();
    std::fs::copy(&key, &served_key).unwrap();
    let tls = ["--tls-cert", served_cert.to_str().unwrap(), "--tls-key", served_key.to_str().unwrap()];
    let l = Listener::start(&record, free_port(), &[&tls[..], &["--token", "t0k"]].concat());
    assert!(l.log().contains(&format!("on https://127.0.0.1:{}", l.port)), "{}", l.log());
    let d = |n: u8| format!("sha256:{}", n.to_string().repeat(64));
    let batch = |tag: &str, n: u8| envelope(&[(tag, &d(n), "2026-12-01T10:00:00Z")]);
    assert_eq!(post_tls(l.port, &cert, &batch("v1", 1), "t0k"), "200");
    assert_eq!(post_tls(l.port, &cert, &batch("v9", 9), "wrong"), "401");
    assert_eq!(post(&l.url(), &batch("v9", 9), &["-H", "Authorization: Bearer t0k"]), "000", "no plain HTTP");
    assert_eq!(post_tls(l.port, &cert2, &batch("v9", 9), "t0k"), "000", "another certificate is not trusted");
    // The loopback port behind the relay answers nobody else (another local user), token or not.
    let log = l.log();
    let inner = log.split("relayed to ").nth(1).and_then(|r| r.split(',').next()).unwrap_or_else(|| panic!("{log}"));
    assert_eq!(post(&format!("http://{inner}/events"), &batch("v9", 9), &["-H", "Authorization: Bearer t0k"]), "403");
    assert!(l.log().contains("403 to 127.0.0.1:") && l.log().contains("not through TLS"), "{}", l.log());

    // SIGHUP with a new pair: new connections get it.
    std::fs::copy(&cert2, &served_cert).unwrap();
    std::fs::copy(&key2, &served_key).unwrap();
    signal(&l.child, "-HUP");
    let start = Instant::now();
    while post_tls(l.port, &cert2, &batch("v2", 2), "t0k") != "200" {
        assert!(start.elapsed() < Duration::from_secs(10), "the new certificate is not served: {}", l.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(post_tls(l.port, &cert, &batch("v9", 9), "t0k"), "000", "the old certificate is gone");
    // A pair that does not load (the key of another certificate): the old pair keeps serving.
    std::fs::copy(&key, &served_key).unwrap();
    signal(&l.child, "-HUP");
    let start = Instant::now();
    while !l.log().contains("SIGHUP: kept the certificate it had") {
        assert!(start.elapsed() < Duration::from_secs(10), "no word of the bad pair: {}", l.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(l.log().contains(served_key.to_str().unwrap()), "the line names the file: {}", l.log());
    assert_eq!(post_tls(l.port, &cert2, &batch("v3", 3), "t0k"), "200");
    assert_eq!(tags(&show(&[&record])).len(), 3, "v1, v2, v3; nothing refused was stored");

    // The real registries posting over TLS (Go reads its roots from SSL_CERT_FILE).
    let store = fixture("demo");
    let root = store.path();
    let url = format!("https://127.0.0.1:{}/events", l.port);
    let refused = l.log().matches(" 401 ").count();
    for (version, tag) in [(Version::V2, "v4"), (Version::V3, "v5")] {
        if version.available("the_listener_off_loopback_needs_a_token_and_speaks_tls (3.1.1's part)").is_none() {
            continue;
        }
        let extra = notifications(&[(url.clone(), Some("Bearer t0k"))]);
        let reg =
            Registry::serve_with(root, &Setup { version, extra, ca_file: Some(cert2.clone()), ..Setup::default() });
        reg.pull("team/app", tag).unwrap();
        wait_for_tags(&record, &[("team/app", tag)], 30);
    }
    assert_eq!(l.log().matches(" 401 ").count(), refused, "the registry's token was refused: {}", l.log());
}

/// Review finding 3: the TLS front holds no connection forever, nor more than 64 at once
/// (`REGSWEEP_TEST_TLS_TIMEOUT_MS` shortens the handshake deadline and the idle timeout to 3 s).
/// A client sending a byte of its handshake every 300 ms is closed at the deadline, which is one
/// for the whole handshake; a TLS session (openssl s_client) that says nothing is closed once
/// idle; a 65th connection while 64 are open is closed at once; and once they went, events are
/// taken again.
#[test]
fn the_tls_front_closes_idle_connections_and_holds_64_at_most() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("pulls.db");
    let (cert, key) = crate::common::token::self_signed(dir.path(), "listen", false);
    let tls = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap(), "--token", "t0k"];
    let l = Listener::start_with(&record, free_port(), &tls, &[("REGSWEEP_TEST_TLS_TIMEOUT_MS", "3000")]);
    // Closed: a read gives 0 bytes or an error, not a timeout.
    let closed = |c: &mut TcpStream| match c.read(&mut [0u8; 256]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    };

    // A TLS record header (a 512-byte handshake record), then its bytes one by one.
    let mut c = TcpStream::connect(("127.0.0.1", l.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    c.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).unwrap();
    let start = Instant::now();
    while c.write_all(&[0x01]).is_ok() && !closed(&mut c) {
        assert!(start.elapsed() < Duration::from_secs(8), "a trickling client still held on: {}", l.log());
    }
    assert!(start.elapsed() > Duration::from_secs(2), "closed before its deadline: {}", l.log());

    // A session that says nothing.
    let mut idle = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &format!("127.0.0.1:{}", l.port)])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(exits_within(&mut idle, Duration::from_secs(10)), "an idle TLS session is still open: {}", l.log());

    // 64 open; the 65th is closed at once.
    let held: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(("127.0.0.1", l.port)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = TcpStream::connect(("127.0.0.1", l.port)).unwrap();
    extra.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    assert!(closed(&mut extra), "a 65th connection was taken: {}", l.log());
    assert!(l.log().contains("64 TLS connections open already"), "{}", l.log());
    drop(held);
    let d = format!("sha256:{}", "1".repeat(64));
    let start = Instant::now();
    while post_tls(l.port, &cert, &envelope(&[("v1", &d, "2026-12-01T10:00:00Z")]), "t0k") != "200" {
        assert!(start.elapsed() < Duration::from_secs(10), "events are refused still: {}", l.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Review finding 4: the relay is known by its address and port on the inner port, not the port
/// alone. Another local user binds the port of a live relay (found in /proc/net/tcp) on
/// 127.0.0.2 and posts to the inner port: 403, as any connection that did not come through TLS.
#[test]
fn the_inner_port_tells_the_relay_from_another_address_with_its_port() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("pulls.db");
    let (cert, key) = crate::common::token::self_signed(dir.path(), "listen", false);
    let tls = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap(), "--token", "t0k"];
    let l = Listener::start(&record, free_port(), &tls);
    let log = l.log();
    let inner = log.split("relayed to ").nth(1).and_then(|r| r.split(',').next()).unwrap().to_string();
    let inner_port: u16 = inner.rsplit(':').next().unwrap().parse().unwrap();
    // A TLS session held open: its relay's connection to the inner port.
    let mut session = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &format!("127.0.0.1:{}", l.port)])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // /proc/net/tcp: `sl local rem st ...`, addresses as hex `0100007F:PORT`.
    let to_inner = format!("0100007F:{inner_port:04X}");
    let start = Instant::now();
    let relay_port = loop {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        let found = table.lines().skip(1).find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() > 3 && f[2] == to_inner && f[3] == "01")
                .then(|| u16::from_str_radix(f[1].split(':').nth(1)?, 16).ok())
                .flatten()
        });
        if let Some(p) = found {
            break p;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no relay to {inner}: {}", l.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    let d = format!("sha256:{}", "1".repeat(64));
    let body = envelope(&[("v1", &d, "2026-12-01T10:00:00Z")]);
    let local_port = relay_port.to_string();
    let args = ["--interface", "127.0.0.2", "--local-port", &local_port, "-H", "Authorization: Bearer t0k"];
    let status = post(&format!("http://{inner}/events"), &body, &args);
    let _ = session.kill();
    let _ = session.wait();
    assert_eq!(status, "403", "127.0.0.2:{relay_port} passed for the relay: {}", l.log());
    assert!(l.log().contains(&format!("403 to 127.0.0.2:{relay_port}")), "{}", l.log());
}

/// Review finding 8: the method of a refused request reaches the log escaped, as its URL does
/// (an escape sequence in it would reach the operator's terminal).
#[test]
fn a_refused_method_is_logged_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let l = Listener::start(&dir.path().join("pulls.db"), free_port(), &[]);
    assert_eq!(post(&l.url(), "{}", &["-X", "\x1b[2JPUT"]), "405");
    let start = Instant::now();
    while !l.log().contains(" 405 ") {
        assert!(start.elapsed() < Duration::from_secs(10), "no line for the 405: {}", l.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!l.log().contains('\x1b') && l.log().contains("(\\u{1b}[2JPUT /events)"), "{:?}", l.log());
}

/// Issue 35: names the registry would never send. A tag with a NUL, one of 100,000 characters,
/// one with an escape sequence, a repository like an SQL statement, a digest that is none: each
/// skipped and logged (escaped, and short), the valid pull beside them stored. `pulls show`
/// prints a record that holds such names (written by an older listener) escaped.
#[test]
fn names_the_registry_would_never_send_are_skipped_and_printed_safely() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("pulls.db");
    let l = Listener::start(&record, free_port(), &[]);
    let d = format!("sha256:{}", "1".repeat(64));
    let event = |repo: &str, tag: &str, digest: &str| {
        serde_json::json!({"timestamp": "2026-12-01T10:00:00Z", "action": "pull",
            "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
                "repository": repo, "url": format!("http://r/v2/x/manifests/{digest}"), "tag": tag},
            "request": {"method": "GET", "useragent": "skopeo/1.9.3"}})
    };
    let long = "a".repeat(100_000);
    let events = vec![
        event("team/app", "v\u{0}1", &d),
        event("team/app", &long, &d),
        event("team/app", "v1\u{1b}]0;owned\u{7}\u{1b}[2J", &d),
        event("x'); DROP TABLE tag_pulls; --", "v1", &d),
        event("team/app", "v1", "sha256:\u{1b}[31m"),
        event("Team/App", "v1", &d),
        event("team/app", "good", &d),
    ];
    let body = serde_json::json!({ "events": events }).to_string();
    assert_eq!(post(&l.url(), &body, &[]), "200", "a batch is never refused for an event in it");
    let shown = show(&[&record]);
    assert_eq!(tags(&shown), owned(&[("team/app", "good", &d)]), "{shown}");
    assert_eq!(digests(&shown).len(), 1, "{shown}");
    let log = l.log();
    assert_eq!(log.matches("regsweep listen: skipped event ").count(), 6, "{log}");
    assert!(!log.contains('\u{1b}') && !log.contains('\u{0}') && !log.contains('\u{7}'), "{log:?}");
    assert!(log.contains("v1\\u{1b}]0;owned\\u{7}\\u{1b}[2J") && log.contains("99800 more characters"), "{log}");
    assert!(log.len() < 10_000, "a long name is cut short in the log: {} bytes", log.len());
    drop(l);

    // A record an older listener wrote, names and all: printed escaped.
    let old = dir.path().join("old.db");
    let mut rec = regsweep::pulls::record::Record::open(&old, 0).unwrap();
    let pull = |repo: &str, tag: &str| regsweep::pulls::Pull {
        repository: repo.into(),
        tag: Some(tag.into()),
        digest: Some(format!("sha256:\u{9b}{}", "2".repeat(64))),
        at: 1,
    };
    rec.store(&[pull("team/app\u{1b}[2J", "v1\u{1b}]0;owned\u{7}"), pull("team/app", "\u{202e}gnp.exe")]).unwrap();
    drop(rec);
    let out = regsweep(&["pulls", "show", "--pulls", old.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.chars().any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'), "{text:?}");
    assert!(text.contains("team/app\\u{1b}[2J") && text.contains("v1\\u{1b}]0;owned\\u{7}"), "{text}");
    assert!(text.contains("\\u{202e}gnp.exe") && text.contains("sha256:\\u{9b}"), "{text}");
}
