//! regsweep on a bucket written by the real registry's s3 driver (moto's S3 server): the same
//! commands, the same semantics and safety as on disk, checked by the registry serving the
//! result, by the reference collector on the same bucket, and by a filesystem copy.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::s3::{Fault, S3Server, demo_bucket, push_demo_bucket, push_demo_bucket_by};
use common::*;

const V2: &str = "store/docker/registry/v2/";

/// The keys of a bucket's store, relative to `docker/registry/v2/`.
fn store_keys(moto: &S3Server, bucket: &str) -> BTreeSet<String> {
    moto.keys(bucket).into_iter().filter_map(|k| k.strip_prefix(V2).map(String::from)).collect()
}

/// On moto, through the s3 driver of each version (3.1.1's is s3-aws, on the AWS SDK v2).
#[test]
fn prune_on_a_bucket_leaves_what_the_registry_serves() {
    for version in VERSIONS {
        if version.available("prune_on_a_bucket_leaves_what_the_registry_serves").is_some() {
            prune_leaves_what_the_registry_serves(&S3Server::moto(), version);
        }
    }
}

/// On SeaweedFS, which keeps listing deleted "folders" as common prefixes.
#[test]
fn prune_on_seaweedfs_leaves_what_the_registry_serves() {
    prune_leaves_what_the_registry_serves(&S3Server::seaweedfs(), Version::V2);
}

fn prune_leaves_what_the_registry_serves(moto: &S3Server, version: Version) {
    let tags = push_demo_bucket_by(moto, "reg", "/store", version);
    let url = "s3://reg/store";
    let report = moto.regsweep_json(&["prune", "--root", url, "--keep", "2", "--grace", "0s"]);
    assert_eq!(report["root"], url);
    assert!(report["tags_deleted"].as_u64().unwrap() > 0 && report["blobs_deleted"].as_u64().unwrap() > 0, "{report}");
    assert!(report["failed"].as_array().unwrap().is_empty(), "{report}");
    let requests = &report["requests"];
    assert!(requests["list"].as_u64().unwrap() > 0 && requests["delete_objects"].as_u64().unwrap() > 0, "{requests}");
    // Nothing of regsweep's own is left in the bucket.
    let keys = store_keys(moto, "reg");
    assert!(!keys.iter().any(|k| k.starts_with(".regsweep")), "{keys:?}");

    let reg = Registry::serve_with(Path::new("/nonexistent"), &Setup { version, ..moto.setup("reg", "/store") });
    let mut kept = 0;
    for (r, t) in &tags {
        let action =
            repo(&report, r)["tags"].as_array().unwrap().iter().find(|x| x["name"] == t.as_str()).unwrap()["action"]
                .clone();
        if action == "keep" {
            kept += 1;
            reg.pull(r, t).unwrap_or_else(|e| panic!("{r}:{t} kept but does not pull: {e}"));
        } else if action == "delete" {
            assert_eq!(reg.manifest_status(r, t), 404, "{r}:{t} deleted but served");
        }
    }
    assert!(kept >= 4, "{report}");
    // Done: the same prune again, and a gc, find nothing more.
    for args in [
        &["prune", "--root", url, "--keep", "2", "--grace", "0s", "--dry-run"][..],
        &["gc", "--root", url, "--dry-run"],
    ] {
        let again = moto.regsweep_json(args);
        for k in ["tags_deleted", "manifests_deleted", "layer_links_deleted", "blobs_deleted"] {
            assert_eq!(again[k], 0, "{args:?}: {k}: {again}");
        }
    }
}

#[test]
fn a_bucket_and_its_filesystem_copy_end_alike() {
    let moto = S3Server::moto();
    demo_bucket(&moto, "reg", "store");
    let copy = tempfile::tempdir().unwrap();
    moto.tool(&["download", "reg", "store", copy.path().to_str().unwrap()]);
    let before = store_keys(&moto, "reg");
    assert_same(&before, &store_files(copy.path()), "the copy");
    let args = ["prune", "--keep", "2", "--grace", "0s", "--upload-age", "0s"];
    let plan = |root: &str| {
        let mut r = moto.regsweep_json(&[&args[..], &["--root", root, "--dry-run"]].concat());
        r.as_object_mut().unwrap().remove("root");
        r.as_object_mut().unwrap().remove("requests");
        r
    };
    assert_eq!(plan("s3://reg/store"), plan(copy.path().to_str().unwrap()), "the same plan");
    moto.regsweep_json(&[&args[..], &["--root", "s3://reg/store"]].concat());
    moto.regsweep_json(&[&args[..], &["--root", copy.path().to_str().unwrap()]].concat());
    let (after_bucket, after_disk) = (store_keys(&moto, "reg"), store_files(copy.path()));
    assert_same(&after_bucket, &after_disk, "the same keys after the same prune");
    assert!(after_bucket.len() < before.len());
}

#[test]
fn du_on_a_bucket_is_du_on_its_filesystem_copy() {
    let moto = S3Server::moto();
    demo_bucket(&moto, "reg", "store");
    let copy = tempfile::tempdir().unwrap();
    moto.tool(&["download", "reg", "store", copy.path().to_str().unwrap()]);
    let du = |root: &str| {
        let mut r = moto.regsweep_json(&["du", "--root", root, "--keep", "2", "--grace", "0s"]);
        r.as_object_mut().unwrap().remove("root");
        r
    };
    let (bucket, disk) = (du("s3://reg/store"), du(copy.path().to_str().unwrap()));
    assert_eq!(bucket, disk);
    assert!(bucket["bytes_reclaimable"].as_u64().unwrap() > 0, "{bucket}");
    let plan = moto.regsweep_json(&["prune", "--root", "s3://reg/store", "--keep", "2", "--grace", "0s", "--dry-run"]);
    assert_eq!(bucket["bytes_reclaimable"], plan["bytes_freed"]);
}

/// The digest a tag points to, asked of the registry.
fn digest_of(reg: &Registry, repo: &str, tag: &str) -> String {
    let accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
        application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
    let out = std::process::Command::new("curl")
        .args(["-sfI", "-H", &format!("Accept: {accept}"), &format!("{}/v2/{repo}/manifests/{tag}", reg.url)])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_string();
    let line = head.lines().find(|l| l.to_ascii_lowercase().starts_with("docker-content-digest:")).expect(&head);
    line.split_once(':').unwrap().1.trim().to_string()
}

/// What the reference collector decides about: blobs and revision links.
fn collected(keys: &BTreeSet<String>) -> BTreeSet<String> {
    keys.iter().filter(|k| k.starts_with("blobs/") || k.contains("/_manifests/revisions/")).cloned().collect()
}

#[test]
fn gc_on_a_bucket_leaves_what_the_reference_collector_leaves() {
    let moto = S3Server::moto();
    demo_bucket(&moto, "reg-a", "store");
    // Garbage the registry's own way: manifests deleted through the API (a single image and a
    // multi-arch index, whose children stay as untagged revisions).
    {
        let reg = Registry::serve_with(Path::new("/nonexistent"), &moto.setup("reg-a", "store"));
        for (r, t) in [("team/app", "v1"), ("team/multi", "2026.1"), ("team/app/tools", "1.0.0")] {
            let d = digest_of(&reg, r, t);
            let st = reg.status("DELETE", &format!("/v2/{r}/manifests/{d}"), "").unwrap();
            assert_eq!(st, 202, "DELETE {r}@{d}");
        }
    }
    moto.create_bucket("reg-b");
    moto.tool(&["copy", "reg-a", "reg-b"]);
    // What was written within a second or two of the run is left as a push under way (the
    // bucket's times are to the second): the copy must be older.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let setup_a = moto.setup("reg-a", "store");
    reference_gc_with(Path::new("/nonexistent"), &setup_a, false);
    // regsweep's gc through the registry's own config file, naming the copy.
    let cfg = tempfile::Builder::new().suffix(".yml").tempfile().unwrap();
    std::fs::write(cfg.path(), format!("version: 0.1\nstorage:\n{}\n", moto.storage("reg-b", "/store"))).unwrap();
    let report = moto.regsweep_json(&["gc", "--config", cfg.path().to_str().unwrap(), "--grace", "0s"]);
    assert!(report["blobs_deleted"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["rescued"]["blobs"], 0, "{report}");
    assert_eq!(report["root"], "s3://reg-b/store");
    let (reference, ours) = (store_keys(&moto, "reg-a"), store_keys(&moto, "reg-b"));
    assert_same(&collected(&reference), &collected(&ours), "the reference collector's bucket and regsweep's");
    // The one deliberate difference (docs/DESIGN.md section 3): regsweep also removes the
    // `_layers` links to the blobs it collected, which the reference leaves dangling.
    let only_reference: Vec<&String> = reference.difference(&ours).collect();
    assert!(!only_reference.is_empty(), "the reference leaves dangling layer links");
    for k in &only_reference {
        let blob = k.contains("/_layers/sha256/").then(|| k.split('/').rev().nth(1).unwrap()).expect(k);
        assert!(!ours.iter().any(|o| o.starts_with("blobs/") && o.contains(blob)), "{k}: its blob is still there");
    }
    assert!(ours.is_subset(&reference), "regsweep removed nothing the reference keeps");
    let reg = Registry::serve_with(Path::new("/nonexistent"), &moto.setup("reg-b", "store"));
    for (r, t) in [("team/app", "v2"), ("team/multi", "2026.3"), ("team/app/tools", "2.0.0")] {
        reg.pull(r, t).unwrap_or_else(|e| panic!("{r}:{t}: {e}"));
    }
}

/// SIGKILL-like stops (an abort after K deletions) across a real prune on a bucket, then a
/// rerun: each ends with the keys of an uninterrupted run, and the lock the dead run left is
/// taken over.
#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs --features test-hooks")]
fn a_run_killed_anywhere_on_a_bucket_is_finished_by_the_next() {
    let moto = S3Server::moto();
    demo_bucket(&moto, "master", "store");
    // A few points here; every K is run on the in-memory bucket (memory.rs), in seconds.
    let points = [9usize, 60];
    let buckets: Vec<String> =
        std::iter::once("whole".to_string()).chain(points.iter().map(|k| format!("killed-{k}"))).collect();
    for b in &buckets {
        moto.create_bucket(b);
        moto.tool(&["copy", "master", b]);
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    // Server-side copies share one push time: ranked by name, not by push.
    let args = |b: &str| {
        let url = format!("s3://{b}/store");
        ["prune", "--root", &url, "--keep", "2", "--order", "name", "--grace", "0s", "--upload-age", "0s"]
            .map(String::from)
    };
    let run = |b: &str| moto.regsweep_json(&args(b).iter().map(String::as_str).collect::<Vec<_>>());
    let whole = run("whole");
    let total = ["tags_deleted", "manifests_deleted", "layer_links_deleted", "blobs_deleted"]
        .iter()
        .map(|k| whole[k].as_u64().unwrap() as usize)
        .sum::<usize>();
    assert!(total > *points.last().unwrap(), "the points fall inside the run: {total} deletions");
    let expected = store_keys(&moto, "whole");
    for (k, b) in points.iter().zip(&buckets[1..]) {
        let out = moto
            .command(&args(b).iter().map(String::as_str).collect::<Vec<_>>())
            .env("REGSWEEP_TEST_CRASH_AFTER", k.to_string())
            .output()
            .unwrap();
        assert!(!out.status.success(), "the run stopped after {k} deletions");
        let left = store_keys(&moto, b);
        assert!(left.contains(".regsweep.lock") && left.contains(".regsweep-journal.json"), "after {k}: {left:?}");
        run(b);
        assert_same(&expected, &store_keys(&moto, b), &format!("killed after {k} deletions, then run again"));
    }
    let reg = Registry::serve_with(Path::new("/nonexistent"), &moto.setup(&buckets[2], "store"));
    for (r, t) in [("team/app", "v6"), ("team/app", "v5"), ("team/multi", "2026.3"), ("team/app/tools", "2.0.0")] {
        reg.pull(r, t).unwrap_or_else(|e| panic!("{r}:{t}: {e}"));
    }
}

#[test]
fn a_missing_bucket_or_bad_credentials_is_a_clear_error_and_nothing_changes() {
    let moto = S3Server::moto();
    moto.create_bucket("reg");
    let out = moto.regsweep(&["gc", "--root", "s3://nobucket/store"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NoSuchBucket") && err.contains("s3://nobucket/store"), "{err}");
    assert!(err.lines().count() <= 2, "one short message: {err}");

    let strict = S3Server::moto_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let out = strict.regsweep(&["prune", "--root", "s3://reg/store", "--keep", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("InvalidAccessKeyId") && err.contains("credentials"), "{err}");
}

#[test]
fn a_held_lock_stops_a_real_run_and_a_dead_runs_lock_is_taken_over() {
    let moto = S3Server::moto();
    demo_bucket(&moto, "reg", "store");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let lock = |pid: u32| {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), format!(r#"{{"host":"{host}","pid":{pid},"nonce":"x"}}"#)).unwrap();
        moto.tool(&["put", "reg", &format!("{V2}.regsweep.lock"), f.path().to_str().unwrap()]);
    };
    let before = store_keys(&moto, "reg");
    lock(std::process::id()); // this test: alive
    let args = ["prune", "--root", "s3://reg/store", "--keep", "1", "--grace", "0s"];
    let out = moto.regsweep(&args);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another run holds the lock") && err.contains(&format!("process {}", std::process::id())),
        "{err}"
    );
    let json = moto.regsweep(&[&args[..], &["--json"]].concat());
    let fatal: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!((json.status.code(), &fatal["kind"]), (Some(1), &"lock_held".into()), "{fatal}");
    let mut expected = before.clone();
    expected.insert(".regsweep.lock".into());
    assert_same(&store_keys(&moto, "reg"), &expected, "nothing deleted");
    // A dry run takes no lock.
    moto.regsweep_json(&[&args[..], &["--dry-run"]].concat());

    let mut dead = std::process::Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    lock(dead.id());
    let report = moto.regsweep_json(&args);
    assert!(report["tags_deleted"].as_u64().unwrap() > 0);
    assert!(!store_keys(&moto, "reg").contains(".regsweep.lock"));
}

/// A lock written by a try whose answer was lost (a 500 after the server wrote it), then
/// refused when sent again (`If-None-Match: *`, the key now there): the run finds its own
/// content there and goes on, rather than stopping on a lock "held" by itself.
#[test]
fn a_lock_written_by_a_try_whose_answer_was_lost_is_the_runs_own() {
    let moto = S3Server::moto();
    demo_bucket(&moto, "reg", "store");
    let port = common::s3::fault_proxy(moto.port, Fault::LoseWrites(".regsweep.lock".into(), 1));
    let out = moto.regsweep_through(port, &["prune", "--root", "s3://reg/store", "--keep", "2", "--grace", "0s"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["blobs_deleted"].as_u64().unwrap() > 0, "{report}");
    assert!(!store_keys(&moto, "reg").contains(".regsweep.lock"), "released");
}

/// Writes a lock as another run would (`host`, `pid`), now.
fn put_lock(moto: &S3Server, host: &str, pid: u32) {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), format!(r#"{{"host":"{host}","pid":{pid},"nonce":"x"}}"#)).unwrap();
    moto.tool(&["put", "reg", &format!("{V2}.regsweep.lock"), f.path().to_str().unwrap()]);
}

/// Issue 22.5: a run whose clock is 11 minutes fast (libfaketime) does not take a lock another
/// host's run wrote just now for a stale one: the lock's age is read on the bucket's clock.
#[test]
fn a_run_with_a_fast_clock_does_not_take_over_a_live_lock() {
    let moto = S3Server::moto();
    demo_bucket(&moto, "reg", "store");
    put_lock(&moto, "elsewhere", 1);
    let before = store_keys(&moto, "reg");
    let base = moto.command(&["prune", "--root", "s3://reg/store", "--keep", "1", "--grace", "0s"]);
    let mut cmd = std::process::Command::new("faketime");
    cmd.args(["-f", "+11m"]).arg(base.get_program()).args(base.get_args());
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    // Timers and timeouts keep the real pace: only the wall clock is off.
    cmd.env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    let out = cmd.output().expect("faketime must be installed (tests/run.sh installs it)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("another run holds the lock") && err.contains("process 1 on elsewhere"), "{err}");
    assert_same(&store_keys(&moto, "reg"), &before, "nothing deleted");
}

/// Issue 22.6: two runs take over one stale lock at once, the first one's takeover request held
/// by a proxy until the second holds the lock and has planned: only one of them deletes, the
/// other stops with an error naming the lock.
#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs --features test-hooks")]
fn two_runs_taking_over_one_stale_lock_do_not_both_delete() {
    two_runs_take_over_one_stale_lock(false);
}

/// The same where the server ignores `If-Match` (the proxy drops it): the first run writes over
/// the second's lock and deletes; the second, let go after the first ended, finds its lock
/// gone at its first deletion stage and stops there with an error naming it (exit 3).
#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs --features test-hooks")]
fn a_run_whose_lock_was_taken_over_stops_before_deleting() {
    let (first, second) = two_runs_take_over_one_stale_lock(true);
    assert!(first.status.success(), "{first:?}");
    assert_eq!(second.status.code(), Some(3), "{second:?}");
    let report: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(report["errors"][0]["kind"], "lock_lost", "{report}");
    assert!(report["errors"][0]["message"].as_str().unwrap().contains("is no longer this run's (deleted)"), "{report}");
    for k in ["tags_deleted", "manifests_deleted", "layer_links_deleted", "blobs_deleted"] {
        assert_eq!(report[k], 0, "{k}: {report}");
    }
}

/// Two runs taking over one stale lock, the first through a proxy that holds its takeover
/// until the second has taken it over and planned (stopped there, let go after the first
/// ended); their outputs. Asserts that one of them, and only one, succeeded.
fn two_runs_take_over_one_stale_lock(ignore_if_match: bool) -> (std::process::Output, std::process::Output) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let moto = S3Server::moto();
    demo_bucket(&moto, "reg", "store");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    put_lock(&moto, &host, dead.id());
    let (arrived, release) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let fault = common::s3::Fault::HoldTakeover {
        key: ".regsweep.lock".into(),
        arrived: arrived.clone(),
        release: release.clone(),
        ignore_if_match,
    };
    let port = common::s3::fault_proxy(moto.port, fault);
    let args = ["prune", "--root", "s3://reg/store", "--keep", "1", "--grace", "0s", "--json"];
    let mut first = moto
        .command(&args)
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !arrived.load(Ordering::SeqCst) {
        if first.try_wait().unwrap().is_some() || start.elapsed() > std::time::Duration::from_secs(60) {
            let _ = first.kill();
            panic!("the first run never took the lock over: {:?}", first.wait_with_output().unwrap());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = stopped_at(moto.command(&args), "plan");
    release.store(true, Ordering::SeqCst);
    let first = first.wait_with_output().unwrap();
    signal(&second, "-CONT");
    let second = second.wait_with_output().unwrap();
    let said = |o: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    let ok: Vec<_> = [&first, &second].into_iter().filter(|o| o.status.success()).collect();
    assert_eq!(ok.len(), 1, "one run deletes:\nfirst: {}\nsecond: {}", said(&first), said(&second));
    let failed = if first.status.success() { &second } else { &first };
    assert!(said(failed).contains("s3://reg/store/docker/registry/v2/.regsweep.lock"), "{}", said(failed));
    assert!(!store_keys(&moto, "reg").contains(".regsweep.lock"), "the winner's lock is gone with it");
    (first, second)
}

/// Issue 22.7: the request deleting the lock at the end meets a reset connection: it is tried
/// again and the lock goes; reset every time, the run says so (exit 3, an error naming the lock
/// and what to do) rather than leaving it silently for ten minutes.
#[test]
fn a_lock_whose_deletion_fails_at_the_end_is_tried_again_then_reported() {
    let moto = S3Server::moto();
    demo_bucket(&moto, "reg", "store");
    let reset = |n| common::s3::fault_proxy(moto.port, common::s3::Fault::ResetDeletes(".regsweep.lock".into(), n));
    let out = moto.regsweep_through(reset(1), &["prune", "--root", "s3://reg/store", "--keep", "2", "--grace", "0s"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["errors"].as_array().unwrap().is_empty(), "{report}");
    assert!(!store_keys(&moto, "reg").contains(".regsweep.lock"), "deleted on the second try");

    let out = moto.regsweep_through(reset(100), &["gc", "--root", "s3://reg/store"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = report["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| {
            let m = e["message"].as_str().unwrap();
            e["kind"] == "lock_release"
                && m.contains("s3://reg/store/docker/registry/v2/.regsweep.lock")
                && m.contains("aws s3 rm")
        }),
        "{report}"
    );
    assert!(store_keys(&moto, "reg").contains(".regsweep.lock"));
}

/// Issue 12.1 on a bucket: old images the plan deletes, copied by digest into new repositories
/// after the plan (the run stopped right after its journal), still pull after the run: the
/// re-mark lists the bucket again before the layer links and each round of blobs.
#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs --features test-hooks")]
fn old_images_copied_into_new_repositories_during_a_prune_on_a_bucket_still_pull() {
    let moto = S3Server::moto();
    demo_bucket(&moto, "reg", "store");
    let reg = Registry::serve_with(Path::new("/nonexistent"), &moto.setup("reg", "store"));
    let old = [
        ("team/app", digest_of(&reg, "team/app", "v1"), false),
        ("team/multi", digest_of(&reg, "team/multi", "2026.1"), true),
        ("team/app/tools", digest_of(&reg, "team/app/tools", "1.0.0"), false),
    ];
    let mut cmd = moto.command(&["prune", "--root", "s3://reg/store", "--keep", "2", "--grace", "0s", "--json"]);
    cmd.stdin(std::process::Stdio::null());
    let run = stopped_at(cmd, "journal");
    assert!(store_keys(&moto, "reg").contains(".regsweep-journal.json"), "stopped after the journal");
    let copies: Vec<String> = (0..old.len()).map(|i| format!("copied/c{i}")).collect();
    for (to, (repo, digest, all)) in copies.iter().zip(&old) {
        copy_within(reg.port, &format!("{repo}@{digest}"), &format!("{to}:v1"), *all).unwrap();
    }
    signal(&run, "-CONT");
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["rescued"]["blobs"].as_u64().unwrap() > 0, "{}", report["rescued"]);
    assert!(tags_with(&report, "team/app", "delete").contains("v1"), "the prune itself went ahead");
    drop(reg);
    let reg = Registry::serve_with(Path::new("/nonexistent"), &moto.setup("reg", "store"));
    for to in &copies {
        reg.pull(to, "v1").unwrap_or_else(|e| panic!("{to}:v1, copied during the run, broke: {e}"));
    }
    assert_eq!(reg.manifest_status("team/app", "v1"), 404);
}

#[test]
fn check_on_a_bucket_names_what_breaks_a_pull() {
    let moto = S3Server::moto();
    demo_bucket(&moto, "reg", "store");
    let url = "s3://reg/store";
    let clean = moto.regsweep_json(&["check", "--root", url, "--verify-digests"]);
    assert!(clean["problems"].as_array().unwrap().is_empty(), "{clean}");
    assert!(clean["tags"].as_u64().unwrap() >= 18 && clean["blobs_verified"].as_u64().unwrap() > 0, "{clean}");
    let reg = Registry::serve_with(Path::new("/nonexistent"), &moto.setup("reg", "store"));
    let (v1, v2) = (digest_of(&reg, "team/app", "v1"), digest_of(&reg, "team/app", "v2"));
    drop(reg);
    let blob = |d: &str| {
        let hex = d.strip_prefix("sha256:").unwrap();
        format!("{V2}blobs/sha256/{}/{hex}/data", &hex[..2])
    };
    // v1's manifest blob gone; v2's manifest blob with other content; a tag link malformed.
    moto.tool(&["delete", "reg", &blob(&v1)]);
    let junk = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(junk.path(), b"{\"schemaVersion\": 2}").unwrap();
    moto.tool(&["put", "reg", &blob(&v2), junk.path().to_str().unwrap()]);
    std::fs::write(junk.path(), b"sha256:nothex").unwrap();
    moto.tool(&[
        "put",
        "reg",
        &format!("{V2}repositories/team/app/_manifests/tags/v3/current/link"),
        junk.path().to_str().unwrap(),
    ]);
    let out = moto.regsweep(&["check", "--root", url, "--verify-digests", "--json"]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = report["problems"].as_array().unwrap();
    let has = |kind: &str, path_part: &str| {
        problems.iter().any(|p| p["kind"] == kind && p["path"].as_str().unwrap().contains(path_part))
    };
    assert!(has("revision_without_blob", &v1[7..]), "{report}");
    assert!(has("tag_broken", "tags/v1/current/link"), "{report}");
    assert!(has("digest_mismatch", &v2[7..]), "{report}");
    assert!(has("tag_broken", "tags/v2/current/link"), "{report}");
    assert!(has("malformed_link", "tags/v3/current/link"), "{report}");
    assert!(problems.iter().all(|p| p["path"].as_str().unwrap().starts_with("s3://reg/store/")), "{report}");
    // --repair removes v1's tag and revision (they point to nothing); v3's link stays broken.
    let out = moto.regsweep(&["check", "--root", url, "--repair"]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    let keys = store_keys(&moto, "reg");
    let gone = [format!("_manifests/revisions/sha256/{}/", &v1[7..]), "_manifests/tags/v1/".to_string()];
    assert!(!keys.iter().any(|k| gone.iter().any(|g| k.contains(g.as_str()))), "{keys:#?}");
    assert!(keys.iter().any(|k| k.contains("_manifests/tags/v3/current/link")));
}

/// S3 throttles with 503 SlowDown: every request's first try gets one here, and the run still
/// ends as an unthrottled run would, counting what was retried.
#[test]
fn a_throttling_server_is_retried_with_backoff() {
    let moto = S3Server::moto();
    demo_bucket(&moto, "reg", "store");
    let port = common::s3::fault_proxy(moto.port, common::s3::Fault::Throttle);
    let args = ["prune", "--root", "s3://reg/store", "--keep", "2", "--grace", "0s"];
    let plan = moto.regsweep_json(&[&args[..], &["--dry-run"]].concat());
    let out = moto.regsweep_through(port, &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["requests"]["throttled"].as_u64().unwrap() > 10, "{}", report["requests"]);
    assert!(report["failed"].as_array().unwrap().is_empty(), "{report}");
    for k in ["tags_deleted", "manifests_deleted", "layer_links_deleted", "blobs_deleted", "bytes_freed"] {
        assert_eq!(report[k], plan[k], "{k}");
    }
    let again = moto.regsweep_json(&["gc", "--root", "s3://reg/store", "--dry-run"]);
    assert_eq!(again["blobs_deleted"], 0);
}

/// A server that lists one request at a time, each a while (fake-gcs-server walks the whole
/// bucket for each; an RGW or a MinIO on busy disks slows so under big listings): sent all the
/// listings a run has at once, the last would be answered after the timeout, cut off and sent
/// again while the server still works on it. regsweep starts with a few in flight and sends
/// more only while they come back quickly: none is cut off, and the run is the same. A server
/// that answers no listing: once one had no answer on either of its tries, no more are sent
/// and the run fails, saying so, instead of each listing waiting out its timeout in turn.
#[test]
fn a_server_slow_to_list_is_sent_what_it_answers_in_time_and_one_that_does_not_answer_ends_the_run() {
    let moto = S3Server::moto();
    moto.create_bucket("reg");
    // 60 repositories in 40 namespaces: 40 listings at once, then 60.
    moto.regsweep_json(&["gen", "--root", "s3://reg/store", "--repos", "60", "--tags", "1"]);
    let args = ["gc", "--root", "s3://reg/store", "--dry-run", "--json"];
    let plan = moto.regsweep_json(&args[..4]);
    let through = |fault: Fault, timeout: Duration| {
        let port = common::s3::fault_proxy(moto.port, fault);
        let mut cmd = moto.command(&args);
        cmd.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"));
        cmd.env("REGSWEEP_TEST_TIMEOUT_MS", timeout.as_millis().to_string()).output().unwrap()
    };

    // 40 listings at once, 130 ms each: the last answered after 5.2 s, past the timeout; 8 at
    // once answered within 1.1 s, and within the timeout with moto itself up to 0.4 s a listing.
    let (timeout, seen) = (Duration::from_secs(5), Arc::new(common::s3::Listings::default()));
    let out = through(Fault::SlowListings { each: Duration::from_millis(130), timeout, seen: seen.clone() }, timeout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let late = seen.late.load(Ordering::SeqCst);
    assert_eq!((late, report["requests"]["timed_out"].as_u64()), (0, Some(0)), "{seen:?} {}", report["requests"]);
    assert!(seen.most_at_once.load(Ordering::SeqCst) > 1, "{seen:?}");
    for k in ["blobs_deleted", "bytes_freed", "layer_links_deleted"] {
        assert_eq!(report[k], plan[k], "{k}");
    }

    // No answer to a listing of a namespace's folder; the others, the blobs' among them, go
    // through.
    let seen = Arc::new(common::s3::Listings::default());
    let out = through(Fault::HoldListings("%2Fns".into(), seen.clone()), Duration::from_secs(1));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    // The listing with no answer, or one not sent since, naming it.
    assert!(
        err.contains("s3://reg/store/docker/registry/v2/repositories/ns") && err.contains("no answer within 1 s"),
        "{err}"
    );
    let held = seen.held.lock().unwrap().clone();
    let namespaces: BTreeSet<&String> = held.iter().collect();
    assert!(held.len() <= 2 * namespaces.len(), "each sent twice at most: {held:#?}");
    // Sent: the first 8 in flight, and one more for each quick answer meanwhile (the blobs' 16
    // ranges and the folder above). Without the stop, every one rayon had begun (36 of 40
    // here) was sent in turn, and the run took 45 s more.
    assert!(namespaces.len() <= 8 + 17, "{} namespaces' listings sent: {held:#?}", namespaces.len());
}

#[test]
fn a_bucket_without_a_store_at_the_root_given_is_refused() {
    let moto = S3Server::moto();
    moto.create_bucket("reg");
    let out = moto.regsweep(&["gc", "--root", "s3://reg/store", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the bucket is empty"), "{out:?}");
    demo_bucket(&moto, "reg", "registry");
    let out = moto.regsweep(&["gc", "--root", "s3://reg/store", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a registry store") && err.contains("top-level folders: registry/"), "{err}");
}

/// A fake EC2 instance metadata service (IMDSv2) handing out the role's credentials `key`;
/// returns its port and the requests it took (method and path).
fn instance_metadata(key: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked: Arc<Mutex<Vec<String>>> = Default::default();
    let seen = asked.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let head = common::read_head(&mut conn);
            let line: Vec<&str> = head.lines().next().unwrap_or("").split(' ').collect();
            let (method, path) = (line[0], line.get(1).copied().unwrap_or(""));
            seen.lock().unwrap().push(format!("{method} {path}"));
            let token = head.to_ascii_lowercase().contains("x-aws-ec2-metadata-token: tok");
            let body = match (method, path) {
                ("PUT", "/latest/api/token") => "tok".to_string(),
                ("GET", "/latest/meta-data/iam/security-credentials/") if token => "registry-role".to_string(),
                ("GET", "/latest/meta-data/iam/security-credentials/registry-role") if token => format!(
                    r#"{{"Code":"Success","AccessKeyId":"{key}","SecretAccessKey":"secret","Token":"session","Expiration":"2099-01-01T00:00:00Z"}}"#
                ),
                _ => {
                    let _ = write!(conn, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                }
            };
            let _ =
                write!(conn, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    (port, asked)
}

/// Without keys, on a machine with an instance role (its metadata service, here named by
/// `AWS_EC2_METADATA_SERVICE_ENDPOINT`), requests are signed with the role's credentials,
/// regsweep's own DeleteObjects included; with no role anywhere, they go unsigned.
#[test]
fn without_keys_the_instance_role_signs() {
    let moto = S3Server::moto();
    demo_bucket(&moto, "reg", "store");
    let (imds, asked) = instance_metadata("ASIAROLEKEY");
    let heads: Arc<Mutex<Vec<String>>> = Default::default();
    let port = common::s3::fault_proxy(moto.port, common::s3::Fault::Record(heads.clone()));
    let run = |extra: &[(&str, String)]| {
        let mut cmd = moto.command(&["prune", "--root", "s3://reg/store", "--keep", "2", "--grace", "0s", "--json"]);
        cmd.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("HOME", "/nonexistent");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
        (out, std::mem::take(&mut *heads.lock().unwrap()))
    };
    let (out, signed) = run(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", format!("http://127.0.0.1:{imds}"))]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let auth =
        |h: &String| h.lines().find(|l| l.to_ascii_lowercase().starts_with("authorization:")).map(str::to_string);
    assert!(signed.iter().any(|h| h.starts_with("POST ") && h.contains("?delete")), "a prune that deletes");
    for h in &signed {
        let a = auth(h).unwrap_or_else(|| panic!("unsigned: {h}"));
        assert!(a.contains("Credential=ASIAROLEKEY/"), "{a}");
        assert!(h.to_ascii_lowercase().contains("x-amz-security-token: session"), "{h}");
    }
    assert!(asked.lock().unwrap().iter().any(|r| r == "PUT /latest/api/token"), "IMDSv2");
    // Nothing names a role, and the endpoint is no AWS one: unsigned (which moto refuses), the
    // metadata service not asked.
    let before = asked.lock().unwrap().len();
    let (out, unsigned) = run(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!unsigned.is_empty() && unsigned.iter().all(|h| auth(h).is_none()), "{unsigned:?}");
    assert_eq!(asked.lock().unwrap().len(), before);
}

/// An S3-compatible server without DeleteObjects (501 NotImplemented), by which regsweep (and
/// object_store, even for one key) deletes on S3: told at once, not retried as a failure of the
/// moment, nothing a tag needs deleted.
#[test]
fn a_server_without_delete_objects_is_told_at_once() {
    let moto = S3Server::moto();
    demo_bucket(&moto, "reg", "store");
    let before = store_keys(&moto, "reg");
    let port = common::s3::fault_proxy(moto.port, common::s3::Fault::NoDeleteObjects);
    let args = ["prune", "--root", "s3://reg/store", "--keep", "2", "--grace", "0s"];
    let out = moto.regsweep_through(port, &args);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("_manifests/tags/") && err.contains("the server takes no DeleteObjects"), "{err}");
    assert!(!err.contains("retries"), "a 501 is not retried: {err}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["blobs_deleted"], 0, "{report}");
    // Each batch sent three times (the run's rounds), none retried within its round.
    let sent = report["requests"]["delete_objects"].as_u64().unwrap();
    assert!(sent <= 3 * 8, "{}", report["requests"]);
    let after = store_keys(&moto, "reg");
    assert!(
        after.is_superset(&before.iter().filter(|k| !k.contains(".regsweep")).cloned().collect()),
        "nothing deleted"
    );
}

/// A DeleteObjects request that reports keys it did not delete (they are still there): they
/// are tried again, then named in `failed` (exit 3), the journal stays, and the next run
/// finishes the job. Keys failing once only are retried within the run and reported nowhere.
#[test]
fn a_partly_failed_delete_is_retried_then_reported() {
    let moto = S3Server::moto();
    demo_bucket(&moto, "reg", "store");
    // Every blob key under prefix folder 7x is refused, however often it is tried.
    let port = common::s3::fault_proxy(moto.port, common::s3::Fault::RefuseKeys("/blobs/sha256/7".into()));
    let args = ["prune", "--root", "s3://reg/store", "--keep", "2", "--grace", "0s"];
    let plan = moto.regsweep_json(&[&args[..], &["--dry-run"]].concat());
    let out = moto.regsweep_through(port, &args);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed = report["failed"].as_array().unwrap();
    assert!(!failed.is_empty(), "{report}");
    for f in failed {
        assert!(f["path"].as_str().unwrap().starts_with("s3://reg/store/docker/registry/v2/blobs/sha256/7"), "{f}");
        assert!(f["error"].as_str().unwrap().contains("InternalError"), "{f}");
    }
    assert!(
        report["blobs_deleted"].as_u64().unwrap() + failed.len() as u64 <= plan["blobs_deleted"].as_u64().unwrap(),
        "failed blobs are not counted as gone: {report}"
    );
    assert!(store_keys(&moto, "reg").contains(".regsweep-journal.json"), "the journal stays");
    // Tried three times: the requests for prefix 7x were sent again; then each looked at once.
    assert!(report["requests"]["delete_objects"].as_u64().unwrap() >= 3, "{}", report["requests"]);
    assert!(report["requests"]["head"].as_u64().unwrap() >= failed.len() as u64, "{}", report["requests"]);
    let again = moto.regsweep_json(&args);
    assert!(again["failed"].as_array().unwrap().is_empty(), "{again}");
    assert!(!store_keys(&moto, "reg").contains(".regsweep-journal.json"));

    // Failing once only, the same keys are retried within the run and nothing is reported (a
    // second bucket of the same server).
    demo_bucket(&moto, "other", "store");
    let port = common::s3::fault_proxy(moto.port, common::s3::Fault::FailKeysOnce("/blobs/sha256/".into()));
    let args = ["prune", "--root", "s3://other/store", "--keep", "2", "--grace", "0s"];
    let out = moto.regsweep_through(port, &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["failed"].as_array().unwrap().is_empty(), "{report}");
    assert_eq!(report["blobs_deleted"], plan["blobs_deleted"], "{report}");
}

/// Manifests read by one run are not read from the bucket again by the next (their digest is
/// their content), and the plan is the same with the cache as without: a damaged entry is read
/// again, a manifest deleted from the bucket is missing whatever the cache holds.
#[test]
fn a_second_run_reads_no_manifest_it_read_before() {
    let moto = S3Server::moto();
    demo_bucket(&moto, "reg", "store");
    let cache = tempfile::tempdir().unwrap();
    let args = ["prune", "--root", "s3://reg/store", "--keep", "2", "--grace", "0s", "--dry-run", "--json"];
    let run = |cache_dir: &str| {
        let out = moto.command(&args).env("REGSWEEP_CACHE", cache_dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let requests = report.as_object_mut().unwrap().remove("requests").unwrap();
        (report, requests["get"].as_u64().unwrap())
    };
    let dir = cache.path().to_str().unwrap();
    let (uncached, gets_off) = run("off");
    let (first, gets_first) = run(dir);
    let (second, gets_second) = run(dir);
    assert_eq!(first, uncached);
    assert_eq!(second, uncached);
    assert_eq!(gets_first, gets_off);
    assert!(gets_second + 20 < gets_first, "{gets_second} GETs after {gets_first}");
    // A damaged entry, and a manifest whose blob is gone from the bucket (v1's).
    let entries: Vec<_> =
        walkdir::WalkDir::new(cache.path()).into_iter().flatten().filter(|e| e.file_type().is_file()).collect();
    std::fs::write(entries[0].path(), b"damaged").unwrap();
    let reg = Registry::serve_with(Path::new("/nonexistent"), &moto.setup("reg", "store"));
    let v1 = digest_of(&reg, "team/app", "v1");
    drop(reg);
    let hex = v1.strip_prefix("sha256:").unwrap();
    assert!(cache.path().join(&hex[..2]).join(hex).exists(), "v1's manifest is cached");
    moto.tool(&["delete", "reg", &format!("{V2}blobs/sha256/{}/{hex}/data", &hex[..2])]);
    let (with_cache, _) = run(dir);
    let (without, _) = run("off");
    assert_eq!(with_cache, without);
}

/// Online mode and `du --url` against a registry whose store is a bucket: the registry answers
/// blob requests with a redirect to the S3 server (the s3 driver's default), which the client
/// follows without the registry's credentials. The plan by `created` (config blobs read through
/// redirects) is the bucket's own, and `du --url` sees what it sees on the same images served
/// from disk.
#[test]
fn through_the_api_of_a_registry_on_a_bucket() {
    let moto = S3Server::moto();
    demo_bucket(&moto, "reg", "store");
    let reg = Registry::serve_with(Path::new("/nonexistent"), &moto.setup("reg", "store"));
    let actions = |report: &serde_json::Value| -> BTreeSet<(String, String, String)> {
        let mut all = BTreeSet::new();
        for r in report["repos"].as_array().unwrap() {
            for t in r["tags"].as_array().unwrap() {
                let s = |v: &serde_json::Value| v.as_str().unwrap().to_string();
                all.insert((s(&r["name"]), s(&t["name"]), s(&t["action"])));
            }
        }
        all
    };
    let online = regsweep_json(&["online", "--url", &reg.url, "--keep", "1", "--dry-run"]);
    let offline = moto.regsweep_json(&[
        "prune",
        "--root",
        "s3://reg/store",
        "--keep",
        "1",
        "--order",
        "created",
        "--grace",
        "0s",
        "--dry-run",
    ]);
    assert_eq!(actions(&online), actions(&offline));
    assert!(actions(&online).iter().any(|(_, _, a)| a == "delete"));

    let demo = fixture("demo");
    let from_disk = Registry::serve(demo.path());
    let du = |url: &str| {
        let mut r = regsweep_json(&["du", "--url", url, "--keep", "1", "--order", "name"]);
        r["root"].take();
        r
    };
    let on_bucket = du(&reg.url);
    assert!(on_bucket["bytes_total"].as_u64().unwrap() > 0);
    assert_eq!(on_bucket, du(&from_disk.url));
}

/// Issue 35, 1: a DeleteObjects answer naming keys as failed (`InternalError`) that the server
/// deleted: each is looked at (HEAD), found gone, and counted deleted; no failure, exit 0, the
/// counts of the plan. Keys the server really refused, in a second bucket of the same server:
/// those alone are tried again and reported, each once with what the server said, and the
/// others of the same request are deleted and counted (object_store would try the whole request
/// again and fail all of them with its raw XML answer).
#[test]
fn keys_a_delete_fails_are_reported_alone_with_the_servers_words() {
    let moto = S3Server::moto();
    demo_bucket(&moto, "reg", "store");
    demo_bucket(&moto, "refusing", "store");
    // Blob prefix 12 holds two of the blobs the prune deletes; 11, 14 and 1e, in the same
    // range, are deleted by the same request. Tags' links too: the issue's case.
    let needles = ["/blobs/sha256/12/", "/current/link"];
    let before = store_keys(&moto, "reg");
    let args = ["prune", "--root", "s3://reg/store", "--keep", "2", "--grace", "0s"];
    let plan = moto.regsweep_json(&[&args[..], &["--dry-run"]].concat());

    let port = common::s3::fault_proxy(moto.port, common::s3::Fault::FailKeys(needles[0].into()));
    let lying = common::s3::fault_proxy(port, common::s3::Fault::FailKeys(needles[1].into()));
    let out = moto.regsweep_through(lying, &args);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["failed"].as_array().unwrap().is_empty(), "{report}");
    for n in ["tags_deleted", "manifests_deleted", "blobs_deleted", "bytes_freed"] {
        assert_eq!(report[n], plan[n], "{n}: {report}");
    }
    // The keys the server deleted while saying it did not: each looked at once.
    let after = store_keys(&moto, "reg");
    let tried: BTreeSet<String> = before
        .difference(&after)
        .filter(|k| format!("/{k}").contains(needles[0]))
        .map(|k| format!("s3://refusing/{V2}{k}"))
        .collect();
    let lied = before.difference(&after).filter(|k| needles.iter().any(|n| format!("/{k}").contains(n))).count();
    assert!(!tried.is_empty() && lied > tried.len());
    assert!(report["requests"]["head"].as_u64().unwrap() >= lied as u64, "{}", report["requests"]);

    let port = common::s3::fault_proxy(moto.port, common::s3::Fault::RefuseKeys(needles[0].into()));
    let args = ["prune", "--root", "s3://refusing/store", "--keep", "2", "--grace", "0s"];
    let out = moto.regsweep_through(port, &args);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed = report["failed"].as_array().unwrap();
    let paths: BTreeSet<String> = failed.iter().map(|f| f["path"].as_str().unwrap().to_string()).collect();
    assert_same(&paths, &tried, "the keys reported failed");
    for f in failed {
        assert_eq!(f["error"], "InternalError: injected", "{f}");
    }
    assert_eq!(
        report["blobs_deleted"].as_u64().unwrap() + failed.len() as u64,
        plan["blobs_deleted"].as_u64().unwrap(),
        "the other blobs are deleted and counted: {report}"
    );
}

/// A key a DeleteObjects answer does not name is not counted as deleted: the server did not
/// delete a tag's link; the run reports it, stops before the revisions, and the tag still pulls.
#[test]
fn a_key_a_delete_answer_does_not_name_is_not_counted_deleted() {
    let moto = S3Server::moto();
    demo_bucket(&moto, "reg", "store");
    let link = "team/app/tools/_manifests/tags/1.1.0/current/link";
    let port = common::s3::fault_proxy(moto.port, common::s3::Fault::DropKeys(link.into()));
    let args = ["prune", "--root", "s3://reg/store", "--keep", "2", "--grace", "0s"];
    let out = moto.regsweep_through(port, &args);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed = report["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{report}");
    assert!(failed[0]["path"].as_str().unwrap().ends_with(link), "{report}");
    assert!(failed[0]["error"].as_str().unwrap().contains("not confirmed deleted"), "{report}");
    assert!(store_keys(&moto, "reg").contains(&format!("repositories/{link}")));
    let reg = Registry::serve_with(Path::new("/nonexistent"), &moto.setup("reg", "store"));
    reg.pull("team/app/tools", "1.1.0").expect("the tag left still pulls");
    // The next run without the fault finishes.
    let again = moto.regsweep_json(&args);
    assert!(again["failed"].as_array().unwrap().is_empty(), "{again}");
    assert_eq!(reg.manifest_status("team/app/tools", "1.1.0"), 404);
}

/// Keys named as the registry (or anyone) wrote them, with characters object_store's
/// `Path::from` would percent-encode: a tag `0ü~%[x` pruned, under a root `root`; the bucket
/// ends as its filesystem copy does.
fn odd_names_end_as_on_disk(root: &str, pushed_here: bool) {
    let moto = S3Server::moto();
    if pushed_here {
        push_demo_bucket(&moto, "reg", root)
    } else {
        demo_bucket(&moto, "reg", root)
    };
    // The tag written into the bucket (from v1's keys), then the store copied to disk with the
    // bucket's times.
    let scratch = tempfile::tempdir().unwrap();
    moto.tool(&["download", "reg", root, scratch.path().to_str().unwrap()]);
    let tags = v2(scratch.path()).join("repositories/team/app/_manifests/tags");
    let odd = "0ü~%[x";
    for f in walkdir::WalkDir::new(tags.join("v1")) {
        let f = f.unwrap();
        if !f.file_type().is_file() {
            continue;
        }
        let rel = f.path().strip_prefix(tags.join("v1")).unwrap();
        let key = format!("{root}/docker/registry/v2/repositories/team/app/_manifests/tags/{odd}/{}", rel.display());
        moto.tool(&["put", "reg", &key, f.path().to_str().unwrap()]);
    }
    let copy = tempfile::tempdir().unwrap();
    moto.tool(&["download", "reg", root, copy.path().to_str().unwrap()]);
    // Older than the run's start by the bucket's clock (to its second).
    std::thread::sleep(std::time::Duration::from_secs(2));
    let url = format!("s3://reg/{root}");
    let keys = || -> BTreeSet<String> {
        let prefix = format!("{root}/docker/registry/v2/");
        moto.keys("reg").into_iter().filter_map(|k| k.strip_prefix(&prefix).map(String::from)).collect()
    };
    assert_same(&keys(), &store_files(copy.path()), "the copy");
    let args = ["prune", "--keep", "2", "--order", "name", "--grace", "0s", "--upload-age", "0s"];
    let plan = |root: &str| {
        let mut r = moto.regsweep_json(&[&args[..], &["--root", root, "--dry-run"]].concat());
        r.as_object_mut().unwrap().remove("root");
        r.as_object_mut().unwrap().remove("requests");
        r
    };
    let on_disk = plan(copy.path().to_str().unwrap());
    assert_eq!(plan(&url), on_disk, "the same plan");
    let app = repo(&on_disk, "team/app")["tags"].as_array().unwrap().iter().find(|t| t["name"] == odd).cloned();
    assert_eq!(app.unwrap()["action"], "delete", "{on_disk}");
    let report = moto.regsweep_json(&[&args[..], &["--root", &url]].concat());
    assert!(report["failed"].as_array().unwrap().is_empty(), "{report}");
    moto.regsweep_json(&[&args[..], &["--root", copy.path().to_str().unwrap()]].concat());
    let after = keys();
    assert!(!after.iter().any(|k| k.contains(odd)), "{after:#?} {report}");
    assert_same(&after, &store_files(copy.path()), "the same keys after the same prune");
}

#[test]
fn a_tag_named_with_characters_object_store_would_encode_is_deleted_under_its_own_key() {
    odd_names_end_as_on_disk("store", false);
}

#[test]
fn a_rootdirectory_with_a_tilde_is_a_store() {
    // The registry 2.8.2 writes such a root (not one with letters outside ASCII: its uploads
    // fail): pushed through it here.
    odd_names_end_as_on_disk("store~1", true);
}

/// A filesystem store and its copy in a bucket (`reg`, root `store`), changed alike, key for
/// file.
struct Twins<'a> {
    moto: &'a S3Server,
    disk: &'a Path,
}

impl Twins<'_> {
    fn write(&self, rel: &str, bytes: &[u8]) {
        let path = v2(self.disk).join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        self.moto.tool(&["put", "reg", &format!("{V2}{rel}"), path.to_str().unwrap()]);
    }

    /// Removes a file, or a folder with everything in it.
    fn remove(&self, rel: &str) {
        let path = v2(self.disk).join(rel);
        let files: Vec<String> =
            store_files(self.disk).into_iter().filter(|f| f == rel || f.starts_with(&format!("{rel}/"))).collect();
        assert!(!files.is_empty(), "{rel}");
        for f in &files {
            self.moto.tool(&["delete", "reg", &format!("{V2}{f}")]);
        }
        if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) }.unwrap();
    }

    fn manifest(&self, repo: &str, tag: &str) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(blob_data(self.disk, &tag_digest(self.disk, repo, tag))).unwrap())
            .unwrap()
    }
}

/// `blobs/sha256/<xx>/<hex>` of a digest.
fn blob_folder(d: &str) -> String {
    format!("blobs/sha256/{}/{}", &d[7..9], &d[7..])
}

/// Damage of every kind `check` reports (but `not_a_file`, which a bucket cannot hold), made
/// alike in the bucket and its filesystem copy; and, on disk only, an empty revision folder
/// (the registry's API delete leaves these; a bucket has no empty folders).
fn damage_every_kind(t: &Twins) {
    let ghost = |b: &str| format!("sha256:{}", b.repeat(32));
    let app = "repositories/team/app";
    let layer = |repo: &str, tag: &str| t.manifest(repo, tag)["layers"][1]["digest"].as_str().unwrap().to_string();
    // A revision without its blob (v2's manifest), and so a broken tag that points to nothing.
    t.remove(&blob_folder(&tag_digest(t.disk, "team/app", "v2")));
    // A missing layer blob (rc's), which leaves dangling layer links too.
    t.remove(&blob_folder(&layer("team/app", "rc")));
    // A corrupt layer (v6's and latest's), found with --verify-digests.
    let data = format!("{}/data", blob_folder(&layer("team/app", "v6")));
    let mut bytes = std::fs::read(v2(t.disk).join(&data)).unwrap();
    bytes[10] ^= 0xff;
    t.write(&data, &bytes);
    // A layer link to a blob that is gone.
    t.write(&format!("{app}/_layers/sha256/{}/link", "ab".repeat(32)), ghost("ab").as_bytes());
    // A tag pointing to a manifest the repository does not hold, with its history entry.
    let tools = "repositories/team/app/tools/_manifests/tags/ghost";
    t.write(&format!("{tools}/current/link"), ghost("cd").as_bytes());
    t.write(&format!("{tools}/index/sha256/{}/link", "cd".repeat(32)), ghost("cd").as_bytes());
    // A history entry naming a manifest that is gone; one whose link is empty.
    t.write(&format!("{app}/_manifests/tags/v3/index/sha256/{}/link", "ef".repeat(32)), ghost("ef").as_bytes());
    let v4 = tag_digest(t.disk, "team/app", "v4");
    t.write(&format!("{app}/_manifests/tags/v4/index/sha256/{}/link", &v4[7..]), b"");
    // A malformed tag link (followed by a newline).
    let multi = "repositories/team/multi";
    let link = format!("{multi}/_manifests/tags/2026.2/current/link");
    t.write(&link, format!("{}\n", tag_digest(t.disk, "team/multi", "2026.2")).as_bytes());
    // A missing child (2026.1's first) and a missing layer link (tools 1.0.0's layer).
    let child = t.manifest("team/multi", "2026.1")["manifests"][0]["digest"].as_str().unwrap().to_string();
    t.remove(&format!("{multi}/_manifests/revisions/sha256/{}", &child[7..]));
    t.remove(&format!("repositories/team/app/tools/_layers/sha256/{}", &layer("team/app/tools", "1.0.0")[7..]));
    // Interrupted writes: folders without their link, a tag without its current link, a blob
    // folder without its data, *.tmp files; an interrupted run's journal.
    t.write(&format!("{app}/_manifests/revisions/sha256/{}/link.5e1f.tmp", "12".repeat(32)), b"");
    t.write(&format!("{multi}/_layers/sha256/{}/link.77aa.tmp", "34".repeat(32)), b"");
    let v1 = tag_digest(t.disk, "team/app", "v1");
    t.write(&format!("{app}/_manifests/tags/half/index/sha256/{}/link", &v1[7..]), v1.as_bytes());
    t.write(&format!("{}/data.0c1d.tmp", blob_folder(&ghost("56"))), b"");
    t.write(&format!("{app}/_manifests/tags/rc/current/link.3f2a.tmp"), b"");
    t.write("blobs/sha256/ab/upload.9d8e.tmp", b"");
    t.write(".regsweep-journal.json", b"{}");
    // On disk only: the registry's empty revision folder.
    std::fs::create_dir_all(v2(t.disk).join(format!("{app}/_manifests/revisions/sha256/{}", "78".repeat(32)))).unwrap();
}

/// A check report with the filesystem copy's paths shown as the bucket's URLs, and without its
/// root.
fn as_on_the_bucket(mut report: serde_json::Value, disk: &Path) -> serde_json::Value {
    let from = format!("{}/", v2(disk).display());
    let to = format!("s3://reg/{V2}");
    report.as_object_mut().unwrap().remove("root");
    for p in report["problems"].as_array_mut().unwrap() {
        for k in ["path", "detail"] {
            p[k] = p[k].as_str().unwrap().replace(&from, &to).into();
        }
    }
    report
}

/// `check`'s JSON report and exit status.
fn check_json(moto: &S3Server, root: &str, args: &[&str]) -> (i32, serde_json::Value) {
    let out = moto.regsweep(&[&["check", "--root", root, "--json"][..], args].concat());
    let report =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), report)
}

/// Takes the registry's empty folders (a file system's only) out of a filesystem report,
/// checking there were some.
fn without_empty_folders(mut report: serde_json::Value) -> serde_json::Value {
    let problems = report["problems"].as_array_mut().unwrap();
    let before = problems.len();
    problems.retain(|p| p["kind"] != "registry_leftover");
    assert_eq!(before - problems.len(), 1, "{report}");
    report
}

#[test]
fn check_on_a_damaged_bucket_finds_what_it_finds_on_the_filesystem_copy() {
    let moto = S3Server::moto();
    demo_bucket(&moto, "reg", "store");
    let copy = tempfile::tempdir().unwrap();
    moto.tool(&["download", "reg", "store", copy.path().to_str().unwrap()]);
    damage_every_kind(&Twins { moto: &moto, disk: copy.path() });
    let disk = copy.path().to_str().unwrap();
    for args in [&[][..], &["--verify-digests"]] {
        let (code, on_disk) = check_json(&moto, disk, args);
        let (bucket_code, on_bucket) = check_json(&moto, "s3://reg/store", args);
        assert_eq!((bucket_code, code), (4, 4));
        let on_disk = without_empty_folders(as_on_the_bucket(on_disk, copy.path()));
        let mut on_bucket = on_bucket;
        on_bucket.as_object_mut().unwrap().remove("root");
        assert_eq!(on_bucket, on_disk, "{args:?}");
        let kinds: BTreeSet<&str> =
            on_bucket["problems"].as_array().unwrap().iter().map(|p| p["kind"].as_str().unwrap()).collect();
        let mut every = vec![
            "tag_broken",
            "malformed_link",
            "revision_without_blob",
            "missing_blob",
            "missing_layer_link",
            "missing_child",
            "dangling_layer_link",
            "dangling_index_entry",
            "incomplete",
            "tmp_file",
        ];
        if !args.is_empty() {
            every.push("digest_mismatch");
        }
        assert_eq!(kinds, every.into_iter().collect(), "{on_bucket}");
    }
}

#[test]
fn check_repair_on_a_bucket_ends_as_on_its_filesystem_copy() {
    let moto = S3Server::moto();
    demo_bucket(&moto, "reg", "store");
    let copy = tempfile::tempdir().unwrap();
    moto.tool(&["download", "reg", "store", copy.path().to_str().unwrap()]);
    damage_every_kind(&Twins { moto: &moto, disk: copy.path() });
    let disk = copy.path().to_str().unwrap();
    let (_, before) = check_json(&moto, "s3://reg/store", &["--verify-digests"]);
    let broken: BTreeSet<String> = before["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["breaks_pull"] == true)
        .map(|p| p["path"].as_str().unwrap().to_string())
        .collect();
    let blobs =
        || -> BTreeSet<String> { store_keys(&moto, "reg").into_iter().filter(|k| k.starts_with("blobs/")).collect() };
    let blobs_before = blobs();
    // Older than the repair's start by the bucket's clock (to its second).
    std::thread::sleep(std::time::Duration::from_secs(2));
    let repair = ["--repair", "--grace", "0s", "--verify-digests"];
    let (code, on_disk) = check_json(&moto, disk, &repair);
    let (bucket_code, on_bucket) = check_json(&moto, "s3://reg/store", &repair);
    assert_eq!((bucket_code, code), (4, 4), "tags broken for want of a blob stay broken: {on_bucket}");
    // The same store after the same repair, but for the empty folder only the disk had.
    let mut on_disk = as_on_the_bucket(on_disk, copy.path());
    on_disk["repaired"] = (on_disk["repaired"].as_u64().unwrap() - 1).into();
    let mut on_bucket = on_bucket;
    on_bucket.as_object_mut().unwrap().remove("root");
    assert_eq!(on_bucket, on_disk);
    // v2's and ghost's tags (to nothing), v2's revision (without blob), rc's and the ghost
    // layer links (dangling), v3's history entry (dangling); ghost's went with its tag.
    assert_eq!(on_bucket["repaired"], 6, "{on_bucket}");
    let repairable: Vec<_> =
        on_bucket["problems"].as_array().unwrap().iter().filter(|p| p["repairable"] == true).collect();
    assert!(repairable.is_empty(), "{repairable:?}");
    assert_same(&store_keys(&moto, "reg"), &store_files(copy.path()), "the same keys after the same repair");
    assert!(!store_keys(&moto, "reg").iter().any(|k| k.ends_with(".regsweep.lock")));
    assert_same(&blobs(), &blobs_before, "never a blob");
    // The real registry serves every tag that was not broken.
    let reg = Registry::serve_with(Path::new("/nonexistent"), &moto.setup("reg", "store"));
    let failed: Vec<String> = tags_on_disk(copy.path())
        .into_iter()
        .filter(|(r, t)| !broken.iter().any(|b| b.ends_with(&format!("/{r}/_manifests/tags/{t}/current/link"))))
        .filter_map(|(r, t)| reg.pull(&r, &t).err().map(|e| format!("{r}:{t}: {e}")))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    drop(reg);

    // Issue 35, 4: damage written just before the repair (in the bucket clock's second) is
    // left, and the report says so and how to run again; a second or two later it goes.
    let nothing = format!("sha256:{}", "e".repeat(64));
    let link = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(link.path(), &nothing).unwrap();
    let fresh = format!("{V2}repositories/team/app/_manifests/tags/fresh/current/link");
    // The repair must begin within the second of the write: on a busy machine it may not, then
    // it removes the link, and the write is tried again.
    let left = (0..3).any(|_| {
        moto.tool(&["put", "reg", &fresh, link.path().to_str().unwrap()]);
        let out = moto.regsweep(&["check", "--root", "s3://reg/store", "--repair", "--grace", "0s"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(4), "{text}");
        let left = text.contains("--repair left 1 link pointing to nothing");
        assert!(!left || (text.contains("in a second or two") && !text.contains("repaired: removed")), "{text}");
        assert!(left || text.contains("repaired: removed 1 links"), "{text}");
        left
    });
    assert!(left, "the repair never began within the second of the write");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (code, again) = check_json(&moto, "s3://reg/store", &["--repair", "--grace", "0s"]);
    assert_eq!((code, &again["repaired"], &again["warnings"]), (4, &1.into(), &serde_json::json!([])), "{again}");
}

/// `--repair` on a bucket goes through the deletions of a prune: a tag pushed again since the
/// check began (here while the repair waits with its plan made) is left.
#[test]
fn check_repair_on_a_bucket_leaves_a_tag_pushed_again_since_the_check_began() {
    let moto = S3Server::moto();
    demo_bucket(&moto, "reg", "store");
    let copy = tempfile::tempdir().unwrap();
    moto.tool(&["download", "reg", "store", copy.path().to_str().unwrap()]);
    let t = Twins { moto: &moto, disk: copy.path() };
    t.remove(&blob_folder(&tag_digest(copy.path(), "team/app", "v2")));
    let run = stopped_at(moto.command(&["check", "--root", "s3://reg/store", "--repair", "--json"]), "plan");
    // v2 pushed again, onto v1's image, as the registry writes a tag: history entry, then link.
    let v1 = tag_digest(copy.path(), "team/app", "v1");
    let tag = "repositories/team/app/_manifests/tags/v2";
    t.write(&format!("{tag}/index/sha256/{}/link", &v1[7..]), v1.as_bytes());
    t.write(&format!("{tag}/current/link"), v1.as_bytes());
    signal(&run, "-CONT");
    let out = run.wait_with_output().unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{report}");
    // Only the revision without blob went; the old history entry now names nothing.
    assert_eq!(report["repaired"], 1, "{report}");
    let kinds: Vec<&str> = report["problems"].as_array().unwrap().iter().map(|p| p["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["dangling_index_entry"], "{report}");
    assert!(store_keys(&moto, "reg").contains(&format!("{tag}/current/link")));
    let reg = Registry::serve_with(Path::new("/nonexistent"), &moto.setup("reg", "store"));
    assert_eq!(digest_of(&reg, "team/app", "v2"), v1);
    reg.pull("team/app", "v2").unwrap();
}

/// On a versioned bucket a deletion only adds a delete marker: the report says when the space
/// is freed (GetBucketVersioning), and says nothing of it on a bucket that is not versioned.
#[test]
fn a_versioned_bucket_is_said_to_free_its_space_later() {
    let moto = S3Server::moto();
    for (bucket, versioned) in [("plain", false), ("versioned", true)] {
        moto.create_bucket(bucket);
        if versioned {
            moto.tool(&["versioning", bucket]);
        }
        let root = format!("s3://{bucket}/store");
        moto.regsweep_json(&["gen", "--root", &root, "--repos", "2", "--tags", "4"]);
        // Written more than the bucket clock's second before the run: not a push during it.
        std::thread::sleep(std::time::Duration::from_secs(3));
        let report = moto.regsweep_json(&["prune", "--root", &root, "--keep", "1", "--order", "name", "--grace", "0s"]);
        assert!(report["bytes_freed"].as_u64().unwrap() > 0, "{report}");
        match versioned {
            true => assert!(report["freed_later"].as_str().unwrap().contains("versioned (Enabled)"), "{report}"),
            false => assert!(report.get("freed_later").is_none(), "{report}"),
        }
    }
}
