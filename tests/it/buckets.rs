//! Azure Blob Storage (Azurite) and Google Cloud Storage (fake-gcs-server, behind the bridge of
//! common::gcs that takes the XML API's writes): the same differential tests as for S3. A
//! registry-written store is copied key for key into the emulator (the registry 2.8.2 of Debian
//! has no azure or gcs driver), downloaded with the bucket's times, and each run on the bucket
//! ends with exactly the keys the same run leaves on the filesystem copy.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::azure::Azurite;
use crate::common::emu::{self, Emulator};
use crate::common::gcs::{Bridge, FakeGcs};
use crate::common::{assert_same, fixture, store_files};

const V2: &str = "store/docker/registry/v2/";

fn bucket_keys(s: &dyn Emulator, name: &str) -> BTreeSet<String> {
    s.keys(name).into_iter().filter_map(|k| k.strip_prefix(V2).map(String::from)).collect()
}

/// A JSON report with the store's name (a URL or a folder) made one, and the requests left out.
fn comparable(mut v: Value, shown: &str) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("root");
        o.remove("requests");
    }
    let text = v.to_string().replace(shown, "STORE");
    serde_json::from_str(&text).unwrap()
}

fn json(s: &dyn Emulator, args: &[&str]) -> Value {
    emu::regsweep_json(&s.env(), args)
}

/// The demo store in the emulator, pushed in its order, and its download.
fn demo(s: &dyn Emulator, name: &str) -> tempfile::TempDir {
    let demo = fixture("demo");
    s.create(name);
    s.upload(demo.path(), name, "store", true);
    let copy = tempfile::tempdir().unwrap();
    s.download(name, "store", copy.path());
    assert_same(&bucket_keys(s, name), &store_files(copy.path()), "the copy");
    // Written more than the bucket clock's second before the runs: no push during them.
    std::thread::sleep(std::time::Duration::from_secs(2));
    copy
}

/// check, du and prune's plan equal their filesystem runs; prune then gc --delete-untagged
/// leave the filesystem run's keys; deletions go in batches where the server takes them.
fn ends_as_on_disk(s: &dyn Emulator, batched: bool) {
    let copy = demo(s, "reg");
    let url = s.url("reg", "store");
    let disk = copy.path().to_str().unwrap();
    let (on_bucket, on_disk) = (format!("{url}/docker/registry/v2"), format!("{disk}/docker/registry/v2"));
    for args in [
        &["check"][..],
        &["du", "--keep", "2", "--grace", "0s"],
        &["prune", "--keep", "2", "--grace", "0s", "--dry-run"],
    ] {
        let b = json(s, &[args, &["--root", &url]].concat());
        if args[0] == "prune" {
            // A link's content is known from the MD5 the listing tells (S3's and GCS's ETag,
            // Azure's Content-MD5): what is read is each manifest, each upload's startedat and
            // the journal (none here), never a link.
            let files = store_files(copy.path());
            let manifests: BTreeSet<&str> = files
                .iter()
                .filter_map(|f| {
                    f.split_once("/_manifests/revisions/sha256/").and_then(|(_, d)| d.strip_suffix("/link"))
                })
                .collect();
            let uploads = files.iter().filter(|f| f.ends_with("/startedat")).count();
            let gets = b["requests"]["get"].as_u64().unwrap();
            assert_eq!(
                gets,
                (manifests.len() + uploads + 1) as u64,
                "{} manifests: {}",
                manifests.len(),
                b["requests"]
            );
        }
        let d = comparable(emu::regsweep_json(&[], &[args, &["--root", disk]].concat()), &on_disk);
        assert_eq!(comparable(b, &on_bucket), d, "{args:?}: the same report");
    }
    for args in [
        &["prune", "--keep", "2", "--grace", "0s", "--upload-age", "0s"][..],
        &["gc", "--delete-untagged", "--grace", "0s"],
    ] {
        let b = json(s, &[args, &["--root", &url]].concat());
        emu::regsweep_json(&[], &[args, &["--root", disk]].concat());
        assert_same(&bucket_keys(s, "reg"), &store_files(copy.path()), &format!("{args:?}: the same keys"));
        let r = &b["requests"];
        // Besides the deletions, the lock's probe and the lock itself go one by one.
        let (deleted, single) = (b["blobs_deleted"].as_u64().unwrap(), r["delete"].as_u64().unwrap());
        match batched {
            true => assert!(r["delete_objects"].as_u64().unwrap() > 0 && single <= 2, "{r}"),
            false => assert!(single > deleted, "{r}"),
        }
    }
    assert!(bucket_keys(s, "reg").len() < store_files(fixture("demo").path()).len());
}

#[test]
fn prune_and_gc_on_azurite_end_as_on_disk() {
    ends_as_on_disk(&Azurite::start(), true);
}

#[test]
fn prune_and_gc_on_fake_gcs_end_as_on_disk_one_delete_a_key_where_no_batch_is_taken() {
    ends_as_on_disk(&FakeGcs::start(), false);
}

#[test]
fn prune_and_gc_on_gcs_with_multi_object_delete_end_as_on_disk() {
    ends_as_on_disk(&FakeGcs::start_with(Bridge { multi_delete: true, ..Bridge::default() }), true);
}

/// Killed after K deletions and run again, the bucket ends as the same run leaves the
/// filesystem copy uninterrupted (ranked by name: the copies' push times are their upload's).
fn killed_anywhere(s: &dyn Emulator) {
    let args = |root: &str| {
        ["prune", "--root", root, "--keep", "2", "--order", "name", "--grace", "0s", "--upload-age", "0s"]
            .map(String::from)
    };
    let disk = fixture("demo");
    let whole =
        emu::regsweep_json(&[], &args(disk.path().to_str().unwrap()).iter().map(String::as_str).collect::<Vec<_>>());
    let total: u64 = ["tags_deleted", "manifests_deleted", "layer_links_deleted", "blobs_deleted"]
        .iter()
        .map(|k| whole[k].as_u64().unwrap())
        .sum();
    let expected = store_files(disk.path());
    for k in [1u64, 3, 8, 20] {
        assert!(total > k * 2, "{total} deletions");
        let name = format!("killed{k}");
        s.create(&name);
        s.upload(fixture("demo").path(), &name, "store", false);
        std::thread::sleep(std::time::Duration::from_secs(2));
        let url = s.url(&name, "store");
        let a = args(&url);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let out: std::process::Output =
            emu::command(&s.env(), &a).env("REGSWEEP_TEST_CRASH_AFTER", k.to_string()).output().unwrap();
        assert!(!out.status.success(), "the run stopped after {k} deletions");
        let left = bucket_keys(s, &name);
        assert!(left.contains(".regsweep-journal.json"), "after {k}: no journal");
        json(s, &a);
        assert_same(&bucket_keys(s, &name), &expected, &format!("killed after {k}, then run again"));
    }
}

#[test]
fn a_run_killed_anywhere_on_azurite_is_finished_by_the_next() {
    killed_anywhere(&Azurite::start());
}

#[test]
fn a_run_killed_anywhere_on_fake_gcs_is_finished_by_the_next() {
    killed_anywhere(&FakeGcs::start_with(Bridge { multi_delete: true, ..Bridge::default() }));
}

/// Throttling (Azure's 503 ServerBusy, GCS's 429) is retried: the run ends as without it.
#[test]
fn throttling_is_retried_on_both() {
    let az = Azurite::start();
    let gcs = FakeGcs::start_with(Bridge { multi_delete: true, ..Bridge::default() });
    for (s, env_via, busy) in [
        (
            &az as &dyn Emulator,
            Box::new(|p| az.env_via(p)) as Box<dyn Fn(u16) -> Vec<(&'static str, String)>>,
            emu::AZURE_BUSY,
        ),
        (&gcs as &dyn Emulator, Box::new(|p| gcs.env_via(p)), emu::GCS_BUSY),
    ] {
        let copy = demo(s, "reg");
        let upstream = match s.url("reg", "").starts_with("azure") {
            true => az.port,
            false => gcs.bridge,
        };
        let proxy = emu::throttle_proxy(upstream, busy);
        let args = ["prune", "--root", &s.url("reg", "store"), "--keep", "2", "--grace", "0s", "--upload-age", "0s"];
        let report = emu::regsweep_json(&env_via(proxy), &args);
        assert!(report["requests"]["throttled"].as_u64().unwrap() > 0, "{}", report["requests"]);
        let disk = copy.path().to_str().unwrap().to_string();
        emu::regsweep_json(&[], &["prune", "--root", &disk, "--keep", "2", "--grace", "0s", "--upload-age", "0s"]);
        assert_same(&bucket_keys(s, "reg"), &store_files(copy.path()), "throttled, the same keys");
    }
}

/// A GCS bucket with a soft-delete policy is said to free its space later.
#[test]
fn a_gcs_soft_delete_policy_is_said() {
    let gcs = FakeGcs::start_with(Bridge { soft_delete: Some(7 * 86_400), ..Bridge::default() });
    let _copy = demo(&gcs, "reg");
    let report = json(&gcs, &["gc", "--root", &gcs.url("reg", "store"), "--grace", "0s", "--dry-run"]);
    assert!(report["freed_later"].as_str().is_some_and(|s| s.contains("7 days")), "{report}");
}
