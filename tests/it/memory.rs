//! The fast tier: runs in process on a bucket in memory (object_store's `InMemory` under the same
//! bucket backend as S3's), with faults the real servers cannot be made to show on cue: the
//! process gone after the K-th deletion, keys a batched deletion fails, a stale lock, a push
//! racing each deletion stage. Each store is a registry-written fixture copied key for key; the
//! same run on a filesystem copy is the reference.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use regsweep::Mode;
use regsweep::core::plan::Options;
use regsweep::core::policy::{Order, Retention};
use regsweep::core::progress::Progress;
use regsweep::core::report::Report;
use regsweep::store::bucket::memory::Memory;
use regsweep::store::check::CheckOptions;
use regsweep::store::location::Location;
use sha2::{Digest as _, Sha256};

use crate::common::{assert_same, fixture, store_files};

/// The store's `rootdirectory` in the bucket.
const ROOT: &str = "store";
const V2: &str = "store/docker/registry/v2/";

fn prune(keep: usize) -> Mode {
    Mode::Prune(Box::new(Retention {
        keep,
        order: Order::Push,
        keep_tags: Vec::new(),
        repos: None,
        exclude: None,
        older_than: None,
        pulled_within: None,
        pulls: None,
        in_use: None,
    }))
}

fn options(delete_untagged: bool) -> Options {
    Options {
        delete_untagged,
        grace: Duration::ZERO,
        allow_tagless: false,
        upload_age: Duration::ZERO,
        now: SystemTime::now(),
        list_kept_tags: true,
        orphan_attachments: false,
        bytes_left: false,
        in_use: None,
        untagged_collected: false,
    }
}

/// A fixture on disk and its copy in a bucket in memory.
fn stores(name: &str) -> (tempfile::TempDir, Memory) {
    let disk = fixture(name);
    let mem = Memory::new();
    mem.copy_from(disk.path(), ROOT).unwrap();
    (disk, mem)
}

fn at(mem: &Memory) -> Location {
    Location::Memory(mem.clone(), ROOT.into())
}

fn run(mem: &Memory, mode: &Mode, delete_untagged: bool) -> anyhow::Result<Report> {
    regsweep::run_at(&at(mem), mode, &options(delete_untagged), false, Progress::hidden())
}

/// The keys of the bucket's store, relative to `docker/registry/v2/`.
fn keys(mem: &Memory) -> BTreeSet<String> {
    mem.keys().into_iter().filter_map(|k| k.strip_prefix(V2).map(String::from)).collect()
}

/// The report as JSON, without what names the store or counts requests.
fn comparable(r: &Report) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap();
    v.as_object_mut().unwrap().remove("root");
    v.as_object_mut().unwrap().remove("requests");
    v
}

/// What `check` finds broken in the bucket's store (tags that fail a pull, blobs missing).
fn broken(mem: &Memory) -> Vec<String> {
    let opts = CheckOptions { verify_digests: false, repair: false, grace: Duration::ZERO };
    let report = at(mem).check(opts, Progress::hidden()).unwrap();
    report.problems.iter().filter(|p| p.breaks_pull).map(|p| format!("{}: {}", p.path, p.detail)).collect()
}

#[test]
fn prune_and_gc_in_memory_end_as_on_disk() {
    for (fixture, mode, untagged) in
        [("demo", prune(1), false), ("demo", Mode::Gc, true), ("legacy", prune(2), false), ("legacy", Mode::Gc, false)]
    {
        let (disk, mem) = stores(fixture);
        assert_same(&keys(&mem), &store_files(disk.path()), "the copy");
        let on_disk = regsweep::run(disk.path(), &mode, &options(untagged), false, Progress::hidden()).unwrap();
        let in_memory = run(&mem, &mode, untagged).unwrap();
        assert_eq!(comparable(&in_memory), comparable(&on_disk), "{fixture}: the same report");
        assert_same(
            &keys(&mem),
            &store_files(disk.path()),
            &format!("{fixture} {mode:?}: the same keys after the same run"),
        );
        assert!(broken(&mem).is_empty(), "{:?}", broken(&mem));
    }
}

/// A blob's data under a prefix folder in capitals (`blobs/sha256/aB/ab…/data`, which the
/// registry never writes) beside the real one: not the registry's, so left alone on the bucket
/// as on disk, and never a second listing of the digest (one of the two would be marked, the
/// other taken for unused and the real blob deleted).
#[test]
fn a_blob_under_a_prefix_in_capitals_is_not_the_blob() {
    let (_disk, kept) = stores("demo");
    run(&kept, &prune(1), false).unwrap();
    let (disk, mem) = stores("demo");
    let mut doubles = Vec::new();
    for k in keys(&kept) {
        let Some(rest) = k.strip_prefix("blobs/sha256/") else { continue };
        let (prefix, tail) = rest.split_at(2);
        if prefix.bytes().any(|b| b.is_ascii_alphabetic()) {
            let double = format!("blobs/sha256/{}{tail}", prefix.to_ascii_uppercase());
            let bytes = mem.get(&format!("{V2}{k}")).unwrap();
            mem.put(&format!("{V2}{double}"), bytes.clone());
            let path = disk.path().join("docker/registry/v2").join(&double);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
            doubles.push(k);
        }
    }
    assert!(!doubles.is_empty());
    let on_disk = regsweep::run(disk.path(), &prune(1), &options(false), false, Progress::hidden()).unwrap();
    let in_memory = run(&mem, &prune(1), false).unwrap();
    assert_eq!(comparable(&in_memory), comparable(&on_disk), "the same report");
    assert_same(&keys(&mem), &store_files(disk.path()), "the same keys");
    let left = keys(&mem);
    for k in &doubles {
        assert!(left.contains(k), "{k} deleted");
    }
    assert!(broken(&mem).is_empty(), "{:?}", broken(&mem));
}

/// The keys an uninterrupted prune leaves, and how many keys it deleted.
fn reference(fixture: &str, mode: &Mode) -> (BTreeSet<String>, u64) {
    reference_of(fixture, mode, false)
}

/// The keys an uninterrupted run leaves, and how many keys it deleted.
fn reference_of(fixture: &str, mode: &Mode, untagged: bool) -> (BTreeSet<String>, u64) {
    let (_disk, mem) = stores(fixture);
    let report = run(&mem, mode, untagged).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    (keys(&mem), mem.faults.deleted())
}

/// The lock a dead run left looks as old as a lock no run wrote for eleven minutes.
fn age_the_lock(mem: &Memory) {
    let lock = format!("{V2}.regsweep.lock");
    mem.faults.aged.lock().unwrap().push((lock, Duration::from_secs(660)));
}

/// A prune, and a `gc --delete-untagged` (no tag deleted, so no journal: a kept tag's history
/// entries for the untagged manifests it deletes go after them, and a rerun must find them).
#[test]
fn killed_after_any_deletion_a_rerun_ends_as_an_uninterrupted_run() {
    for (mode, untagged) in [(prune(1), false), (Mode::Gc, true)] {
        let (expected, deletions) = reference_of("demo", &mode, untagged);
        assert!(deletions > 5, "{deletions}");
        let mut stops: Vec<u64> = (1..deletions).step_by((deletions / 15).max(1) as usize).collect();
        stops.push(deletions - 1);
        for k in stops {
            let (_disk, mem) = stores("demo");
            mem.faults.die_after_deletes.store(k, Ordering::SeqCst);
            let first = run(&mem, &mode, untagged);
            assert!(first.is_err() || !first.as_ref().unwrap().errors.is_empty(), "stopped after {k}: no error");
            mem.faults.revive();
            age_the_lock(&mem);
            let second = run(&mem, &mode, untagged).unwrap_or_else(|e| panic!("rerun after {k}: {e:#}"));
            assert!(second.errors.is_empty(), "rerun after {k}: {:?}", second.errors);
            assert_same(&keys(&mem), &expected, &format!("{mode:?}: stopped after deletion {k}, then run again"));
            assert!(broken(&mem).is_empty(), "stopped after {k}: {:?}", broken(&mem));
        }
    }
}

#[test]
fn keys_a_batch_fails_to_delete_are_retried_then_reported_alone() {
    let mode = prune(1);
    let (expected, _) = reference("demo", &mode);
    let (_disk, mem) = stores("demo");
    let gone: Vec<String> = keys(&mem).difference(&expected).cloned().collect();
    let blobs: Vec<&String> = gone.iter().filter(|k| k.starts_with("blobs/") && k.ends_with("/data")).collect();
    let tags: Vec<&String> = gone.iter().filter(|k| k.contains("/_manifests/tags/")).collect();
    assert!(blobs.len() >= 3 && !tags.is_empty(), "{gone:#?}");
    {
        let mut errors = mem.faults.batch_errors.lock().unwrap();
        // Failing once: retried, and gone.
        errors.insert(format!("{V2}{}", blobs[0]), (1, "InternalError".into()));
        errors.insert(format!("{V2}{}", tags[0]), (2, "SlowDown".into()));
        // Failing every time: reported, and left alone.
        errors.insert(format!("{V2}{}", blobs[1]), (u32::MAX, "AccessDenied".into()));
    }
    let report = run(&mem, &mode, false).unwrap();
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    // A failed deletion, named by its key, with what the server said.
    let e = &report.errors[0];
    assert_eq!(e.kind, regsweep::model::error::ErrorKind::DeleteFailed, "{e:?}");
    assert!(e.path.as_deref().is_some_and(|p| p.ends_with(blobs[1].as_str())), "{e:?}");
    assert!(e.message.contains("AccessDenied"), "{e:?}");
    // The run stops after the failed stage, its journal kept; what it did is done.
    let left = keys(&mem);
    assert!(left.contains(blobs[1].as_str()) && left.contains(".regsweep-journal.json"), "{left:#?}");
    assert!(!left.contains(blobs[0].as_str()) && !left.contains(tags[0].as_str()), "retried keys went");
    assert!(broken(&mem).is_empty(), "{:?}", broken(&mem));
    // Once the key can be deleted, the next run finishes.
    mem.faults.batch_errors.lock().unwrap().clear();
    let report = run(&mem, &mode, false).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_same(&keys(&mem), &expected, "the next run finishes");
}

/// Issue 35, 1: keys a batch deletes although its answer names them failed (every time they
/// are asked for) are found gone and counted deleted: no failure, exit 0, the counts of an
/// uninterrupted run.
#[test]
fn keys_a_batch_says_it_failed_but_deleted_are_counted_deleted() {
    let mode = prune(1);
    let (expected, _) = reference("demo", &mode);
    let (disk, mem) = stores("demo");
    let want = regsweep::run(disk.path(), &mode, &options(false), false, Progress::hidden()).unwrap();
    let gone: Vec<String> = keys(&mem).difference(&expected).cloned().collect();
    let lied: Vec<&String> = gone
        .iter()
        .filter(|k| k.ends_with("/current/link") || (k.starts_with("blobs/") && k.ends_with("/data")))
        .collect();
    assert!(lied.len() >= 4, "{gone:#?}");
    for k in &lied {
        mem.faults.batch_lies.lock().unwrap().insert(format!("{V2}{k}"), "InternalError".into());
    }
    let report = run(&mem, &mode, false).unwrap();
    assert!(report.errors.is_empty() && report.failed.is_empty(), "{:?}", report.errors);
    assert_eq!(report.exit_code(), 0);
    assert_eq!(comparable(&report), comparable(&want), "counted as the run on disk counts");
    assert_same(&keys(&mem), &expected, "the store");
}

#[test]
fn a_live_lock_stops_a_run_and_a_stale_one_is_taken_over() {
    let mode = prune(1);
    let (expected, _) = reference("demo", &mode);
    let (_disk, mem) = stores("demo");
    let lock = format!("{V2}.regsweep.lock");
    mem.put(&lock, br#"{"host":"elsewhere","pid":1,"nonce":"1"}"#.to_vec());
    let before = keys(&mem);
    let e = run(&mem, &mode, false).unwrap_err();
    assert!(format!("{e:#}").contains("another run holds the lock"), "{e:#}");
    assert_same(&keys(&mem), &before, "nothing deleted under another run's lock");
    age_the_lock(&mem);
    let report = run(&mem, &mode, false).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_same(&keys(&mem), &expected, "taken over, then run");
}

/// A lock this host's name wrote from another pid namespace (a pod with the host's network, its
/// own pids): its pid says nothing here, so it is not taken for a dead process's; from this
/// namespace, it is.
#[test]
fn a_lock_from_another_pid_namespace_of_this_host_is_not_taken_over() {
    let mode = prune(1);
    let (expected, _) = reference("demo", &mode);
    let (_disk, mem) = stores("demo");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let here = std::fs::read_link("/proc/self/ns/pid").unwrap().to_string_lossy().into_owned();
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    let lock = format!("{V2}.regsweep.lock");
    let write = |ns: &str| {
        let holder = serde_json::json!({"host": host, "pid": pid, "nonce": "1", "pid_ns": ns});
        mem.put(&lock, holder.to_string().into_bytes());
    };
    write("pid:[1]");
    let e = run(&mem, &mode, false).unwrap_err();
    assert!(format!("{e:#}").contains("another run holds the lock"), "{e:#}");
    write(&here);
    let report = run(&mem, &mode, false).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_same(&keys(&mem), &expected, "taken over from a dead process of this namespace");
}

/// A bucket whose clock is ten minutes behind the local one (the lock it stamps looks ten
/// minutes old): a blob it stamped two minutes ago is two minutes old, not twelve, and stays
/// within a grace period of seven.
#[test]
fn ages_are_taken_on_the_buckets_clock_when_it_is_behind() {
    let (_disk, mem) = stores("demo");
    let content = b"a layer being pushed, its manifest not yet";
    let key = blob_key(&digest(content));
    mem.put(&key, content.to_vec());
    let mut aged = mem.faults.aged.lock().unwrap();
    aged.push((format!("{V2}.regsweep.lock"), Duration::from_secs(600)));
    aged.push((key.clone(), Duration::from_secs(720)));
    drop(aged);
    let opts = Options { grace: Duration::from_secs(420), ..options(false) };
    let report = regsweep::run_at(&at(&mem), &Mode::Gc, &opts, false, Progress::hidden()).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(mem.keys().contains(&key), "a blob two minutes old by the bucket's clock deleted");
    assert_eq!(report.grace_kept.blobs, 1, "{}", serde_json::to_string(&report).unwrap());
}

/// The digest of content, `sha256:<hex>`.
fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn blob_key(d: &str) -> String {
    let hex = d.trim_start_matches("sha256:");
    format!("{V2}blobs/sha256/{}/{hex}/data", &hex[..2])
}

/// Pushes, as the registry does, an image of two existing blobs (config and layer) into `repo`
/// under `tag`: layer links, the manifest's blob, its revision link, the tag's links.
fn push(mem: &Memory, repo: &str, tag: &str, config: &str, layer: &str) -> String {
    let size = |d: &str| mem.get(&blob_key(d)).map_or(0, |b| b.len());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": size(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": size(layer)}],
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let m = digest(&bytes);
    let link = |d: &str| d.as_bytes().to_vec();
    let repo_key = format!("{V2}repositories/{repo}");
    for d in [config, layer] {
        mem.put(&format!("{repo_key}/_layers/sha256/{}/link", d.trim_start_matches("sha256:")), link(d));
    }
    mem.put(&blob_key(&m), bytes);
    let hex = m.trim_start_matches("sha256:");
    mem.put(&format!("{repo_key}/_manifests/revisions/sha256/{hex}/link"), link(&m));
    mem.put(&format!("{repo_key}/_manifests/tags/{tag}/index/sha256/{hex}/link"), link(&m));
    mem.put(&format!("{repo_key}/_manifests/tags/{tag}/current/link"), link(&m));
    m
}

/// Runs a prune that calls `racer` before each deletion, with the key about to go.
fn racing(mem: &Memory, racer: impl FnMut(&str) + Send + 'static) -> Report {
    *mem.faults.before_delete.lock().unwrap() = Some(Box::new(racer));
    let report = run(mem, &prune(1), false).unwrap();
    *mem.faults.before_delete.lock().unwrap() = None;
    report
}

/// The blobs an uninterrupted prune deletes, sorted by digest (the order of the blob rounds).
fn blobs_deleted(expected: &BTreeSet<String>, before: &BTreeSet<String>) -> Vec<String> {
    before
        .difference(expected)
        .filter_map(|k| {
            k.strip_prefix("blobs/sha256/")?.strip_suffix("/data")?.split('/').nth(1).map(|h| format!("sha256:{h}"))
        })
        .collect()
}

#[test]
fn a_push_during_the_blob_rounds_keeps_the_blobs_of_later_rounds() {
    let (expected, _) = reference("demo", &prune(1));
    let (_disk, mem) = stores("demo");
    let doomed = blobs_deleted(&expected, &keys(&mem));
    assert!(doomed.len() >= 3, "{doomed:?}");
    // The last two to go (the highest digests): pushed when the first blob goes.
    let (config, layer) = (doomed[doomed.len() - 2].clone(), doomed[doomed.len() - 1].clone());
    assert_ne!(&config[7..8], &doomed[0][7..8], "the pushed blobs are in a later round than the first");
    let pushed = Arc::new(Mutex::new(None));
    let (m, p) = (mem.clone(), pushed.clone());
    let report = racing(&mem, move |key| {
        let mut pushed = p.lock().unwrap();
        if key.contains("/blobs/") && pushed.is_none() {
            *pushed = Some(push(&m, "racer", "new", &config, &layer));
        }
    });
    assert!(pushed.lock().unwrap().is_some(), "no blob was deleted");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(broken(&mem).is_empty(), "the pushed image pulls: {:?}", broken(&mem));
}

#[test]
fn a_push_reusing_a_layer_whose_link_goes_gets_the_link_back() {
    let (expected, _) = reference("demo", &prune(1));
    let (_disk, mem) = stores("demo");
    let before = keys(&mem);
    // A repository losing layer links, and a blob it keeps that can be the new image's config.
    let link = before.difference(&expected).find(|k| k.contains("/_layers/")).expect("a layer link goes").clone();
    let repo = link.trim_start_matches("repositories/").split("/_layers/").next().unwrap().to_string();
    let layer = format!("sha256:{}", link.split('/').rev().nth(1).unwrap());
    let config = expected
        .iter()
        .filter_map(|k| k.strip_prefix(&format!("repositories/{repo}/_layers/sha256/"))?.strip_suffix("/link"))
        .map(|h| format!("sha256:{h}"))
        .find(|d| expected.contains(&blob_key(d)[V2.len()..]))
        .expect("a layer link stays");
    let done = Arc::new(Mutex::new(false));
    let (m, d) = (mem.clone(), done.clone());
    let report = racing(&mem, move |key| {
        let mut done = d.lock().unwrap();
        if key.ends_with(&link) && !*done {
            push(&m, &repo, "racing", &config, &layer);
            *done = true;
        }
    });
    assert!(*done.lock().unwrap(), "the layer link was never deleted");
    let about_the_push =
        |e: &regsweep::model::error::RunError| e.kind == regsweep::model::error::ErrorKind::PushDuringRun;
    assert!(report.errors.iter().all(about_the_push), "{:?}", report.errors);
    assert!(broken(&mem).is_empty(), "the pushed image pulls: {:?}", broken(&mem));
}

#[test]
fn a_manifest_tagged_again_as_its_revision_goes_stays_whole() {
    let (expected, _) = reference("demo", &prune(1));
    let (_disk, mem) = stores("demo");
    let before = keys(&mem);
    let revision =
        before.difference(&expected).find(|k| k.contains("/_manifests/revisions/")).expect("a revision goes").clone();
    let repo = revision.trim_start_matches("repositories/").split("/_manifests/").next().unwrap().to_string();
    let target = String::from_utf8(mem.get(&format!("{V2}{revision}")).unwrap()).unwrap();
    let done = Arc::new(Mutex::new(false));
    let (m, d) = (mem.clone(), done.clone());
    let report = racing(&mem, move |key| {
        let mut done = d.lock().unwrap();
        if key.contains("/_manifests/revisions/") && !*done {
            let hex = target.trim_start_matches("sha256:");
            let tags = format!("{V2}repositories/{repo}/_manifests/tags/again");
            m.put(&format!("{tags}/index/sha256/{hex}/link"), target.as_bytes().to_vec());
            m.put(&format!("{tags}/current/link"), target.as_bytes().to_vec());
            *done = true;
        }
    });
    assert!(*done.lock().unwrap());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(broken(&mem).is_empty(), "the tag written again pulls: {:?}", broken(&mem));
}

/// Issue 35, 3: a manifests stage that fails (a revision of another repository the bucket
/// will not delete) still heals before it stops: a manifest tagged again as its revision goes
/// gets its revision back, and the tag pulls; the run reports the failure.
#[test]
fn a_failed_manifests_stage_heals_what_it_deleted_before_it_stops() {
    let (expected, _) = reference("demo", &prune(1));
    let (_disk, mem) = stores("demo");
    let before = keys(&mem);
    let repo_of = |k: &str| k.trim_start_matches("repositories/").split("/_manifests/").next().unwrap().to_string();
    let revisions: Vec<String> = before
        .difference(&expected)
        .filter(|k| k.contains("/_manifests/revisions/") && k.ends_with("/link"))
        .cloned()
        .collect();
    let failing = revisions.last().expect("a revision goes").clone();
    let stuck = repo_of(&failing);
    assert!(revisions.iter().any(|k| repo_of(k) != stuck), "{revisions:#?}");
    mem.faults.batch_errors.lock().unwrap().insert(format!("{V2}{failing}"), (u32::MAX, "AccessDenied".into()));
    let again = Arc::new(Mutex::new(None));
    let (m, a) = (mem.clone(), again.clone());
    let report = racing(&mem, move |key| {
        let mut again = a.lock().unwrap();
        let Some(rel) = key.strip_prefix(V2) else { return };
        if rel.contains("/_manifests/revisions/") && repo_of(rel) != stuck && again.is_none() {
            let target = String::from_utf8(m.get(key).unwrap()).unwrap();
            let hex = target.trim_start_matches("sha256:");
            let tags = format!("{V2}repositories/{}/_manifests/tags/again", repo_of(rel));
            m.put(&format!("{tags}/index/sha256/{hex}/link"), target.as_bytes().to_vec());
            m.put(&format!("{tags}/current/link"), target.as_bytes().to_vec());
            *again = Some(key.to_string());
        }
    });
    let revision = again.lock().unwrap().clone().expect("no revision of another repository went");
    assert_eq!(report.failed.len(), 1, "{:?}", report.errors);
    assert!(report.failed[0].path.ends_with(&failing), "{:?}", report.failed);
    assert_eq!(report.exit_code(), 3);
    assert!(mem.get(&revision).is_some(), "{revision} is written back");
    assert!(report.rescued.manifests >= 1, "{:?}", report.rescued);
    assert!(broken(&mem).is_empty(), "the tag written again pulls: {:?}", broken(&mem));
}

#[test]
fn a_tag_pushed_again_as_its_link_goes_stays_and_pulls() {
    let (_disk, mem) = stores("demo");
    let written = Arc::new(Mutex::new(None));
    let (m, w) = (mem.clone(), written.clone());
    let report = racing(&mem, move |key| {
        let mut written = w.lock().unwrap();
        if key.ends_with("/current/link") && written.is_none() {
            // The same tag pushed again, onto the manifest it named.
            let target = m.get(key).unwrap();
            let hex = String::from_utf8(target.clone()).unwrap().trim_start_matches("sha256:").to_string();
            let tag = key.trim_end_matches("/current/link");
            m.put(&format!("{tag}/index/sha256/{hex}/link"), target.clone());
            m.put(key, target);
            *written = Some(key.to_string());
        }
    });
    let key = written.lock().unwrap().clone().expect("no tag was deleted");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(mem.get(&key).is_some(), "{key} written again during the run is gone");
    assert!(broken(&mem).is_empty(), "the tag written again pulls: {:?}", broken(&mem));
}

/// Issue 33: on a bucket, `check` names what registry 3.x will not serve as on the filesystem
/// copy (the real registries' verdict on that store is `check::`'s test), problem for problem.
#[test]
fn a_bucket_names_what_registry_3_will_not_serve_as_its_disk_copy() {
    let disk = fixture("legacy");
    let want = crate::check::not_for_v3(disk.path());
    let mem = Memory::new();
    mem.copy_from(disk.path(), ROOT).unwrap();
    let opts = CheckOptions { verify_digests: false, repair: false, grace: Duration::ZERO };
    let reports = [Location::Fs(disk.path().into()), at(&mem)].map(|l| {
        let report = l.check(opts, Progress::hidden()).unwrap();
        assert!(!report.broken(), "{}", report.text());
        let mut v = serde_json::to_value(&report).unwrap();
        for p in v["problems"].as_array_mut().unwrap() {
            let path = p["path"].as_str().unwrap();
            p["path"] = path.split("docker/registry/v2/").nth(1).unwrap().into();
        }
        v.as_object_mut().unwrap().remove("root");
        v
    });
    assert_eq!(reports[1], reports[0]);
    let named = crate::check::named_not_for_v3(&reports[1]);
    assert_eq!((named.0, named.1), (want.tags, want.untagged));
    // A prune's plan says it once for the repository: `multi` and `typed` are kept (newest two).
    let report = serde_json::to_value(run(&mem, &prune(2), false).unwrap()).unwrap();
    let v3: Vec<&serde_json::Value> =
        report["warnings"].as_array().unwrap().iter().filter(|w| w["kind"] == "v3_unservable").collect();
    assert_eq!(v3.len(), 1, "{report}");
    let message = v3[0]["message"].as_str().unwrap();
    assert!(message.starts_with("legacy/schema1: 2 kept tags registry 3.x will not serve"), "{message}");
    assert!(message.contains("legacy/schema1:multi") && message.contains("legacy/schema1:typed"), "{message}");
}

/// `--keep-in-use` on a bucket as on disk, for prune (with and without --delete-untagged) and
/// gc --delete-untagged: a tag named stays, a manifest named by digest stays untagged (an index
/// with its children), and the same run without it deletes them.
#[test]
fn what_is_in_use_stays_on_a_bucket_as_on_disk() {
    use regsweep::core::in_use::{InUse, read};
    const UNTAGGED: &str = "31d9d91e546a5b8e9b43a7fffe6fe35e78e91025cfa5659478a7ebc1611ae338";
    const MULTI_2026_1: &str = "4ca5413b048400fd1d8de958d10f926dfc94baa280cba9a9823f2856cc1ba3a8";
    let list = format!("team/app:v2\nteam/app@sha256:{UNTAGGED}\nteam/multi@sha256:{MULTI_2026_1}\n");
    let in_use = Arc::new(InUse::new(vec![("list".into(), read(&list, "list").unwrap())], &[]).unwrap());
    let with = |mode: &Mode, on: bool| match mode {
        Mode::Prune(r) => Mode::Prune(Box::new(Retention { in_use: on.then(|| in_use.clone()), ..(**r).clone() })),
        Mode::Gc => Mode::Gc,
    };
    let revision = |repo: &str, hex: &str| format!("repositories/{repo}/_manifests/revisions/sha256/{hex}/link");
    let v2_tag = "repositories/team/app/_manifests/tags/v2/current/link".to_string();
    for (mode, untagged) in [(prune(1), false), (prune(1), true), (Mode::Gc, true)] {
        let (disk, mem) = stores("demo");
        let opts = Options { in_use: Some(in_use.clone()), ..options(untagged) };
        let mode_on = with(&mode, true);
        let on_disk = regsweep::run(disk.path(), &mode_on, &opts, false, Progress::hidden()).unwrap();
        let in_memory = regsweep::run_at(&at(&mem), &mode_on, &opts, false, Progress::hidden()).unwrap();
        assert_eq!(comparable(&in_memory), comparable(&on_disk), "{mode:?} {untagged}: the same report");
        assert_same(&keys(&mem), &store_files(disk.path()), &format!("{mode:?} {untagged}: the same keys"));
        assert!(broken(&mem).is_empty(), "{:?}", broken(&mem));
        let kept = keys(&mem);
        let prune = matches!(mode, Mode::Prune(_));
        assert!(kept.contains(&revision("team/multi", MULTI_2026_1)), "{mode:?} {untagged}");
        assert!(kept.contains(&revision("team/app", UNTAGGED)), "{mode:?} {untagged}");
        assert!(kept.contains(&v2_tag), "{mode:?} {untagged}");
        let multi = &in_memory.repos.iter().find(|r| r.name == "team/multi").unwrap().manifests_in_use;
        assert_eq!(multi.iter().map(|d| d.hex()).collect::<Vec<_>>(), [MULTI_2026_1]);
        assert!(in_memory.warnings.is_empty(), "{:?}", in_memory.warnings);
        // Without it, each goes where the run would delete it.
        let (_, mem) = stores("demo");
        let gone = regsweep::run_at(&at(&mem), &with(&mode, false), &options(untagged), false, Progress::hidden());
        assert!(gone.unwrap().in_use.is_none());
        let left = keys(&mem);
        assert_eq!(left.contains(&revision("team/multi", MULTI_2026_1)), !prune, "{mode:?} {untagged}");
        assert_eq!(left.contains(&revision("team/app", UNTAGGED)), !untagged, "{mode:?} {untagged}");
        assert_eq!(left.contains(&v2_tag), !prune, "{mode:?} {untagged}");
    }
}

/// A tag an interrupted prune was deleting (the journal names it) that is still there and that
/// the rerun's --keep-in-use names stays, pulling whole; the rest of the interrupted work is
/// finished and the journal goes.
#[test]
fn a_journaled_tag_in_use_at_the_rerun_stays() {
    use regsweep::core::in_use::{InUse, read};
    let (_disk, mem) = stores("demo");
    mem.faults.die_after_deletes.store(1, Ordering::SeqCst);
    let _ = run(&mem, &prune(1), false);
    mem.faults.revive();
    age_the_lock(&mem);
    let journal = format!("{V2}.regsweep-journal.json");
    assert!(mem.keys().contains(&journal), "the interrupted run left its journal");
    let tag_link = |t: &str| format!("repositories/team/app/_manifests/tags/{t}/current/link");
    let left = keys(&mem);
    let still = ["v1", "v2", "v3", "v4", "v5"].into_iter().find(|t| left.contains(&tag_link(t))).unwrap();
    let list = format!("team/app:{still}\n");
    let in_use = Arc::new(InUse::new(vec![("list".into(), read(&list, "list").unwrap())], &[]).unwrap());
    let Mode::Prune(r) = prune(1) else { unreachable!() };
    let mode = Mode::Prune(Box::new(Retention { in_use: Some(in_use.clone()), ..*r }));
    let opts = Options { in_use: Some(in_use), ..options(false) };
    let report = regsweep::run_at(&at(&mem), &mode, &opts, false, Progress::hidden()).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let after = keys(&mem);
    assert!(after.contains(&tag_link(still)), "team/app:{still} is in use: kept");
    assert!(!mem.keys().contains(&journal), "the rest was finished");
    assert!(broken(&mem).is_empty(), "{:?}", broken(&mem));
    let others = ["v1", "v2", "v3", "v4", "v5"].into_iter().filter(|t| *t != still);
    assert!(others.clone().all(|t| !after.contains(&tag_link(t))), "the others went");
}

/// Puts a tag `fresh` into team/app onto a manifest the store does not hold (its link and its
/// history entry): two links pointing to nothing, written now.
fn damage_now(mem: &Memory) {
    let nothing = digest(b"no such manifest");
    let hex = nothing.trim_start_matches("sha256:");
    let tags = format!("{V2}repositories/team/app/_manifests/tags/fresh");
    mem.put(&format!("{tags}/index/sha256/{hex}/link"), nothing.as_bytes().to_vec());
    mem.put(&format!("{tags}/current/link"), nothing.as_bytes().to_vec());
}

/// Issue 35, 4: `check --repair` on a bucket whose damage was written just before the repair
/// (within the bucket clock's second) leaves it, and says so: a typed warning, in the text a
/// line saying to run again in a second or two; run again then, it repairs.
#[test]
fn check_repair_says_it_left_what_was_written_as_it_began() {
    let (_disk, mem) = stores("demo");
    damage_now(&mem);
    let opts = CheckOptions { verify_digests: false, repair: true, grace: Duration::ZERO };
    let report = at(&mem).check(opts, Progress::hidden()).unwrap();
    // The history entry goes whatever its age (a history entry is never written again, as in a
    // prune); the tag's link, written in the repair's second, is left.
    assert_eq!((report.repaired, report.problems.len()), (1, 1), "{}", report.text());
    assert!(report.broken() && report.failed.is_empty());
    assert_eq!(report.exit_code(), 4);
    let kinds: Vec<_> = report.warnings.iter().map(|w| w.kind).collect();
    assert_eq!(kinds, [regsweep::model::warning::WarningKind::RepairLeftYoung], "{:?}", report.warnings);
    assert!(
        report.warnings[0].message.starts_with("--repair left 1 link pointing to nothing"),
        "{:?}",
        report.warnings
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["warnings"][0]["kind"], "repair_left_young", "{json}");
    let text = report.text();
    assert!(text.contains("1 problems; some tags would fail a pull\n"), "{text}");
    assert!(text.contains("run check --repair again in a second or two"), "{text}");
    std::thread::sleep(Duration::from_millis(2100));
    let report = at(&mem).check(opts, Progress::hidden()).unwrap();
    assert_eq!(report.repaired, 1, "{}", report.text());
    assert!(report.problems.is_empty() && report.warnings.is_empty(), "{}", report.text());
    assert_eq!(report.exit_code(), 0);
}

/// Issue 38, 4: a deletion of `check --repair` that fails is counted in `failed` with its key
/// and the server's words, exit 3 as a failed deletion is everywhere else (not a plain error,
/// exit 1, which says nothing was deleted); the next repair finishes.
#[test]
fn a_failed_deletion_of_check_repair_is_counted_and_exits_3() {
    let (_disk, mem) = stores("demo");
    damage_now(&mem);
    std::thread::sleep(Duration::from_millis(2100));
    let key = format!("{V2}repositories/team/app/_manifests/tags/fresh/current/link");
    mem.faults.batch_errors.lock().unwrap().insert(key.clone(), (u32::MAX, "AccessDenied".into()));
    let opts = CheckOptions { verify_digests: false, repair: true, grace: Duration::ZERO };
    let report = at(&mem).check(opts, Progress::hidden()).unwrap();
    assert_eq!(report.failed.len(), 1, "{}", report.text());
    assert!(report.failed[0].path.ends_with(&key) && report.failed[0].error.contains("AccessDenied"));
    assert_eq!(report.exit_code(), 3);
    assert!(report.warnings.is_empty(), "a failure is not left as young: {:?}", report.warnings);
    assert!(report.text().contains("1 deletion of the repair failed"), "{}", report.text());
    mem.faults.batch_errors.lock().unwrap().clear();
    let report = at(&mem).check(opts, Progress::hidden()).unwrap();
    assert!(report.failed.is_empty() && report.problems.is_empty(), "{}", report.text());
    assert_eq!(report.exit_code(), 0);
}

/// Pushes, as Harbor 2.15 writes (a push by tag rewritten as one by digest, goharbor/harbor#22507),
/// a new image into `repo` ten minutes ago: its blobs, layer links, the manifest's blob and
/// revision link, and no tag. Returns the manifest's digest.
fn push_by_digest(mem: &Memory, repo: &str, n: usize) -> String {
    let m = push_by_digest_now(mem, repo, n);
    let when = SystemTime::now() - Duration::from_secs(600);
    let all = keys(mem);
    let mut times = mem.faults.times.lock().unwrap();
    for k in all.into_iter().map(|k| format!("{V2}{k}")) {
        times.entry(k).or_insert(when);
    }
    m
}

/// [`push_by_digest`], written now.
fn push_by_digest_now(mem: &Memory, repo: &str, n: usize) -> String {
    let (config, layer) = (format!("{{\"n\":{n},\"repo\":\"{repo}\"}}"), format!("layer {n} of {repo}"));
    let (config, layer) = (config.into_bytes(), layer.into_bytes());
    let (c, l) = (digest(&config), digest(&layer));
    mem.put(&blob_key(&c), config);
    mem.put(&blob_key(&l), layer);
    let repo_key = format!("{V2}repositories/{repo}");
    for d in [&c, &l] {
        mem.put(&format!("{repo_key}/_layers/sha256/{}/link", &d[7..]), d.as_bytes().to_vec());
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": 1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l, "size": 1}],
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let m = digest(&bytes);
    mem.put(&blob_key(&m), bytes);
    mem.put(&format!("{repo_key}/_manifests/revisions/sha256/{}/link", &m[7..]), m.as_bytes().to_vec());
    m
}

/// A store's revision links, as `repository@digest`.
fn revisions(keys: &BTreeSet<String>) -> BTreeSet<String> {
    keys.iter()
        .filter_map(|k| {
            let (repo, rest) = k.strip_prefix("repositories/")?.split_once("/_manifests/revisions/sha256/")?;
            Some(format!("{repo}@sha256:{}", rest.strip_suffix("/link")?))
        })
        .collect()
}

/// What a run gave: refused (the error's kind), or its warnings of kind `tags_elsewhere`.
fn guarded(result: anyhow::Result<Report>) -> Result<usize, regsweep::model::error::ErrorKind> {
    use regsweep::model::warning::WarningKind;
    match result {
        Ok(r) => Ok(r.warnings.iter().filter(|w| w.kind == WarningKind::TagsElsewhere).count()),
        Err(e) => Err(regsweep::model::error::ErrorKind::of(&e)),
    }
}

/// Issue 35 item 2: `--delete-untagged` on a store whose tags live elsewhere, across what makes
/// the signature: the demo store with its tags or with its tag folders emptied (signature a),
/// 0 to 3 images pushed by digest after its newest tag, into one repository or two (b, from
/// two on), older than the grace period or not; `gc` and `prune`, with `--delete-untagged` or
/// not, `--allow-tagless` or not. Refused means nothing at all changed; otherwise the run is
/// what it was, and says it saw the signature where it runs anyway (and `prune` where it
/// ranks tags on a store with some).
#[test]
fn delete_untagged_is_refused_on_a_store_whose_tags_live_elsewhere_and_only_there() {
    use regsweep::model::error::ErrorKind;
    let with_tags = fixture("demo");
    let without_tags = fixture("demo");
    for repo in ["team/app", "team/app/tools", "team/multi"] {
        let tags = crate::common::v2(without_tags.path()).join("repositories").join(repo).join("_manifests/tags");
        for t in std::fs::read_dir(&tags).unwrap() {
            std::fs::remove_dir_all(t.unwrap().path()).unwrap();
        }
    }
    let runs: [(&str, Mode, bool, bool); 5] = [
        ("gc --delete-untagged", Mode::Gc, true, false),
        ("gc --delete-untagged --allow-tagless", Mode::Gc, true, true),
        ("prune --delete-untagged", prune(2), true, false),
        ("prune", prune(2), false, false),
        ("gc", Mode::Gc, false, false),
    ];
    // Pushes by digest: how many, into two repositories or one, and the grace period.
    let hour = Duration::from_secs(3600);
    let shapes =
        [(0, false, Duration::ZERO), (1, false, Duration::ZERO), (2, true, Duration::ZERO), (3, false, Duration::ZERO)]
            .into_iter()
            .chain([(3, true, hour), (1, false, hour)]);
    let mut cases = 0;
    for (tagless, disk) in [(false, &with_tags), (true, &without_tags)] {
        for (pushes, spread, grace) in shapes.clone() {
            for (what, mode, untagged, allow) in &runs {
                let case = format!(
                    "{what} on the demo {}, {pushes} pushes by digest{}, grace {grace:?}",
                    if tagless { "without tags" } else { "with its tags" },
                    if spread { " into two repositories" } else { "" }
                );
                let mem = Memory::new();
                mem.copy_from(disk.path(), ROOT).unwrap();
                let pushed: BTreeSet<String> = (0..pushes)
                    .map(|n| {
                        let repo = if spread && n % 2 == 1 { "team/multi" } else { "team/app" };
                        format!("{repo}@{}", push_by_digest(&mem, repo, n))
                    })
                    .collect();
                let before = keys(&mem);
                let opts = Options { grace, allow_tagless: *allow, ..options(*untagged) };
                let result = regsweep::run_at(&at(&mem), mode, &opts, false, Progress::hidden());
                // The oracle: (a) no tag and an old manifest (the demo's are); (b) two
                // pushes after the newest tag, older than the grace period.
                let found = tagless || (pushes >= 2 && grace.is_zero());
                let ranks_tags = matches!(mode, Mode::Prune(_));
                match guarded(result) {
                    Err(kind) => {
                        assert!(found && *untagged && !allow, "{case}: refused ({kind:?})");
                        assert_eq!(kind, ErrorKind::TaglessStore, "{case}");
                        assert_same(&keys(&mem), &before, &format!("{case}: refused, so nothing changes"));
                    }
                    Ok(warned) => {
                        assert!(!(found && *untagged && !allow), "{case}: not refused");
                        let says = found && (*untagged || (ranks_tags && !tagless));
                        assert_eq!(warned, usize::from(says), "{case}: the warning");
                        let left = revisions(&keys(&mem));
                        let gone: Vec<&String> = pushed.iter().filter(|p| !left.contains(*p)).collect();
                        let deletes_them = *untagged && grace.is_zero();
                        assert_eq!(gone.len(), if deletes_them { pushes } else { 0 }, "{case}: {gone:?}");
                        if tagless && *untagged {
                            let kept: Vec<&String> = left.iter().filter(|r| !pushed.contains(*r)).collect();
                            assert!(kept.is_empty(), "{case}: --allow-tagless deletes every manifest: {kept:?}");
                        }
                    }
                }
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 2 * 6 * runs.len());
}

/// Issue 35 item 2, calibrated on the stores `regsweep gen` writes (untagged manifests are
/// earlier pushes of a tag, referrers hang off tagged images): none trips the guard, whatever
/// its seed and shape; two images pushed by digest after its tags do.
#[test]
fn generated_stores_do_not_look_tagless_until_images_are_pushed_by_digest() {
    for (seed, repos, tags, untagged) in [(1, 6, 6, 2), (2, 2, 10, 5), (3, 1, 1, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let opts = regsweep::generate::GenOptions {
            repos,
            tags,
            layers: 3,
            shared: 2,
            multiarch_every: 3,
            signed_every: 2,
            untagged,
            seed,
        };
        regsweep::generate::generate(dir.path(), &opts, Progress::hidden()).unwrap();
        let case = format!("seed {seed}: {repos} x {tags}, {untagged} untagged");
        let mem = Memory::new();
        mem.copy_from(dir.path(), ROOT).unwrap();
        // Dry runs: the guard is the plan's.
        let dry = |mode: &Mode, untagged: bool| {
            regsweep::run_at(&at(&mem), mode, &options(untagged), true, Progress::hidden())
        };
        assert_eq!(guarded(dry(&prune(2), false)), Ok(0), "{case}: prune");
        assert_eq!(guarded(dry(&prune(2), true)), Ok(0), "{case}: prune --delete-untagged");
        assert_eq!(guarded(dry(&Mode::Gc, true)), Ok(0), "{case}: gc --delete-untagged");
        push_by_digest(&mem, "ns00/app00000", 0);
        assert_eq!(guarded(dry(&Mode::Gc, true)), Ok(0), "{case}: one push by digest is no pattern");
        push_by_digest(&mem, "ns00/app00000", 1);
        let refused = guarded(dry(&Mode::Gc, true));
        assert_eq!(
            refused,
            Err(regsweep::model::error::ErrorKind::TaglessStore),
            "{case}: pushes by digest after its tags"
        );
    }
}
