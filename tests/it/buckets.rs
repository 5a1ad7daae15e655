//! Azure Blob Storage (Azurite) and Google Cloud Storage (fake-gcs-server, behind the bridge of
//! common::gcs that takes the XML API's writes): the same differential tests as for S3. A
//! registry-written store is copied key for key into the emulator (the registry 2.8.2 of Debian
//! has no azure or gcs driver), downloaded with the bucket's times, and each run on the bucket
//! ends with exactly the keys the same run leaves on the filesystem copy.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::azure::Azurite;
use crate::common::emu::{self, Emulator};
use crate::common::gcs::{Bridge, FakeGcs, put_bridge};
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
            // Azure's Content-MD5): what is read is each manifest, each upload's startedat, the
            // journal (none here) and the settings that tell when space is freed, never a link.
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
                (manifests.len() + uploads + 2) as u64,
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
            // Batches counted as sent are those the server refused before the run knew it
            // takes none: a few at most, not one for each batch the run would have sent.
            false => assert!(single > deleted && r["delete_objects"].as_u64().unwrap() <= 3, "{r}"),
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
    // Two points (every K is run on the in-memory bucket, memory.rs, in seconds): halfway
    // through the manifests stage, and halfway through the blobs, the last.
    let count = |k: &str| whole[k].as_u64().unwrap();
    let (tags, manifests, links, blobs) =
        (count("tags_deleted"), count("manifests_deleted"), count("layer_links_deleted"), count("blobs_deleted"));
    assert!(manifests >= 2 && blobs >= 2, "{whole}");
    let expected = store_files(disk.path());
    for k in [tags + manifests / 2, tags + manifests + links + blobs / 2] {
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

/// A push racing a stage's deletion, as on moto through the registry (s3race.rs), here written
/// key for key as the registry writes a push: the prune (team/app, `--keep 2` by name) is
/// stopped after the stage's listing, before its deletions, `push` writes, the run goes on.
/// What the push wrote must be there afterwards, and `check` must find every tag whole.
fn racing(s: &dyn Emulator, name: &str, point: &str, push: &dyn Fn(&str)) -> Value {
    s.create(name);
    s.upload(fixture("demo").path(), name, "store", false);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let url = s.url(name, "store");
    let args = ["prune", "--root", &url, "--keep", "2", "--order", "name", "--grace", "0s", "--repo", "team/app"];
    let run = crate::common::stopped_at(emu::command(&s.env(), &[&args[..], &["--json"]].concat()), point);
    push(name);
    crate::common::signal(&run, "-CONT");
    let out = run.wait_with_output().unwrap();
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{report}");
    let check = emu::regsweep(&s.env(), &["check", "--root", &url, "--json"]);
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stdout));
    report
}

/// A tag the prune deletes, and the manifest it names, from the demo's plan on disk.
fn doomed_tag() -> (String, String) {
    let disk = fixture("demo");
    let root = disk.path().to_str().unwrap();
    let plan = emu::regsweep_json(
        &[],
        &[
            "prune",
            "--root",
            root,
            "--keep",
            "2",
            "--order",
            "name",
            "--grace",
            "0s",
            "--repo",
            "team/app",
            "--dry-run",
        ],
    );
    let tag = crate::common::tags_with(&plan, "team/app", "delete").into_iter().find(|t| !t.ends_with(".sig")).unwrap();
    let link = disk.path().join(format!("docker/registry/v2/repositories/team/app/_manifests/tags/{tag}/current/link"));
    (tag, std::fs::read_to_string(link).unwrap())
}

/// The keys a push of `tag` onto `digest` writes in team/app (the manifest and its blobs there).
fn tag_keys(tag: &str, digest: &str) -> [String; 2] {
    let t = format!("{V2}repositories/team/app/_manifests/tags/{tag}");
    [format!("{t}/index/sha256/{}/link", &digest[7..]), format!("{t}/current/link")]
}

fn pushes_racing_the_stages(s: &dyn Emulator) {
    let (tag, digest) = doomed_tag();
    // The tag pushed again onto its own digest as its folder is about to go: written back.
    let report = racing(s, "race-tags", "delete:tags", &|name| {
        for k in tag_keys(&tag, &digest) {
            s.put(name, &k, digest.as_bytes());
        }
    });
    assert!(report["rescued"]["tags"].as_u64().unwrap() >= 1, "{report}");
    assert!(bucket_keys(s, "race-tags").contains(&tag_keys(&tag, &digest)[1][V2.len()..]), "{report}");
    // The manifest the tag named, tagged again as its revision is about to go: kept whole.
    let report = racing(s, "race-manifests", "delete:manifests", &|name| {
        for k in tag_keys("again", &digest) {
            s.put(name, &k, digest.as_bytes());
        }
    });
    let revision = format!("repositories/team/app/_manifests/revisions/sha256/{}/link", &digest[7..]);
    assert!(bucket_keys(s, "race-manifests").contains(&revision), "{report}");
}

#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs --features test-hooks")]
fn pushes_racing_the_stages_on_azurite_are_kept() {
    pushes_racing_the_stages(&Azurite::start());
}

#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs --features test-hooks")]
fn pushes_racing_the_stages_on_fake_gcs_are_kept() {
    pushes_racing_the_stages(&FakeGcs::start_with(Bridge { multi_delete: true, ..Bridge::default() }));
}

/// A key the provider will not delete in a batch is reported alone, with the provider's words,
/// and not counted; the rest of its batch goes; once it can go, a rerun ends as the run leaves
/// the filesystem copy. `hold(key)` makes the key undeletable and returns the environment of
/// the run that meets it; `release(key)` undoes it.
fn a_key_a_batch_does_not_delete(
    s: &dyn Emulator,
    hold: &dyn Fn(&str) -> Vec<(&'static str, String)>,
    release: &dyn Fn(&str),
    said: &str,
) {
    let copy = demo(s, "reg");
    let disk = copy.path().to_str().unwrap();
    let args = ["prune", "--keep", "2", "--grace", "0s", "--upload-age", "0s"];
    let url = s.url("reg", "store");
    let plan = json(s, &[&args[..], &["--root", &url, "--dry-run"]].concat());
    let before = bucket_keys(s, "reg");
    emu::regsweep_json(&[], &[&args[..], &["--root", disk]].concat());
    let expected = store_files(copy.path());
    let doomed = before.difference(&expected).find(|k| k.starts_with("blobs/") && k.ends_with("/data")).unwrap();
    let env = hold(&format!("{V2}{doomed}"));
    let out = emu::regsweep(&env, &[&args[..], &["--root", &url, "--json"]].concat());
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed = report["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{report}");
    assert_eq!(failed[0]["path"], format!("{url}/docker/registry/v2/{doomed}"), "{report}");
    assert!(failed[0]["error"].as_str().unwrap().contains(said), "{report}");
    assert!(report["requests"]["delete_objects"].as_u64().unwrap() > 0, "in batches: {report}");
    assert_eq!(report["blobs_deleted"].as_u64().unwrap() + 1, plan["blobs_deleted"].as_u64().unwrap(), "{report}");
    assert!(bucket_keys(s, "reg").contains(doomed), "the held blob is there");
    release(&format!("{V2}{doomed}"));
    json(s, &[&args[..], &["--root", &url]].concat());
    assert_same(&bucket_keys(s, "reg"), &expected, "released, run again");
}

/// On Azure, a blob under a lease (its part of the Blob Batch answers 412 LeaseIdMissing).
#[test]
fn a_leased_blob_is_reported_alone_and_a_rerun_finishes() {
    let az = Azurite::start();
    let hold = |key: &str| {
        az.tool(&["lease", "reg", key]);
        az.env()
    };
    a_key_a_batch_does_not_delete(&az, &hold, &|key| drop(az.tool(&["breaklease", "reg", key])), "LeaseIdMissing");
}

/// On GCS, a key the multi-object delete refuses (as for an object under a hold: the bridge
/// answers AccessDenied for it; fake-gcs-server has no holds); released, a bridge that does not.
#[test]
fn a_key_a_gcs_batch_refuses_is_reported_alone_and_a_rerun_finishes() {
    let gcs = FakeGcs::start_with(Bridge { multi_delete: true, ..Bridge::default() });
    let hold = |key: &str| {
        let needle: &'static str = Box::leak(key.to_string().into_boxed_str());
        gcs.env_via(put_bridge(gcs.port, Bridge { multi_delete: true, refuse: Some(needle), ..Bridge::default() }))
    };
    a_key_a_batch_does_not_delete(&gcs, &hold, &|_| {}, "AccessDenied");
}

/// The registry's GCS driver keeps an upload being written as an object of content type
/// `application/x-docker-upload-session` (its resumable session) beside `startedat`: such an
/// upload is judged by its `startedat` like any other, kept while younger than `--upload-age`,
/// removed once older, whatever its data's type and time.
#[test]
fn a_gcs_upload_in_progress_is_kept_and_an_abandoned_one_goes() {
    let gcs = FakeGcs::start();
    Emulator::create(&gcs, "reg");
    Emulator::upload(&gcs, fixture("demo").path(), "reg", "store", false);
    let session = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(session.path(), br#"{"SessionURI":"https://storage.googleapis.com/upload/x","Offset":5242880}"#)
        .unwrap();
    let started = tempfile::NamedTempFile::new().unwrap();
    let uploads = format!("{V2}repositories/team/app/_uploads");
    let now = chrono::Utc::now();
    for (id, at) in [("in-progress", now - chrono::Duration::hours(1)), ("abandoned", now - chrono::Duration::days(30))]
    {
        let data = format!("{uploads}/{id}/data");
        gcs.tool(&["put", "reg", &data, session.path().to_str().unwrap(), "application/x-docker-upload-session"]);
        std::fs::write(started.path(), at.to_rfc3339()).unwrap();
        gcs.tool(&["put", "reg", &format!("{uploads}/{id}/startedat"), started.path().to_str().unwrap()]);
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    let report = json(&gcs, &["prune", "--root", &gcs.url("reg", "store"), "--keep", "2", "--grace", "0s"]);
    assert!(report["uploads_deleted"].as_u64().unwrap() >= 1, "{report}");
    let keys = bucket_keys(&gcs, "reg");
    let rel = |id: &str, f: &str| format!("repositories/team/app/_uploads/{id}/{f}");
    assert!(keys.contains(&rel("in-progress", "data")) && keys.contains(&rel("in-progress", "startedat")), "{keys:?}");
    assert!(!keys.iter().any(|k| k.contains("/_uploads/abandoned/")), "{keys:?}");
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
