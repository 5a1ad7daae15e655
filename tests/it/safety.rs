//! docs/DESIGN.md section 4: plan before acting, crash-safe order, the intent journal, the lock, and bad
//! input that gets a clear error naming the path with nothing lost.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::*;

/// Every path of a store, without the lock file: the state two runs are compared by.
fn paths(root: &Path) -> BTreeSet<String> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap().path().strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .filter(|p| !p.ends_with(".regsweep.lock"))
        .collect()
}

const PRUNE: [&str; 5] = ["--keep", "1", "--grace", "0s", "--quiet"];

fn prune(root: &Path, crash_after: Option<usize>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    cmd.arg("prune").arg("--root").arg(root).args(PRUNE);
    if let Some(k) = crash_after {
        cmd.env("REGSWEEP_TEST_CRASH_AFTER", k.to_string());
    }
    cmd.output().unwrap()
}

/// The dry-run report of [`prune`]'s run.
fn planned(root: &Path) -> serde_json::Value {
    let mut args = vec!["prune", "--root", root.to_str().unwrap(), "--dry-run"];
    args.extend(PRUNE);
    regsweep_json(&args)
}

#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs the test hooks: cargo test --features test-hooks")]
fn a_rerun_after_a_crash_in_the_first_half_of_the_run_ends_exactly_as_an_uninterrupted_run() {
    crashed_then_rerun(0);
}

#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs the test hooks: cargo test --features test-hooks")]
fn a_rerun_after_a_crash_in_the_second_half_of_the_run_ends_exactly_as_an_uninterrupted_run() {
    crashed_then_rerun(1);
}

/// Crashed after K deletions, for K across the whole run (`half` 0: the first half of the
/// points, 1: the second; two tests that run side by side), then run again.
fn crashed_then_rerun(half: usize) {
    let uninterrupted = fixture("demo");
    let plan = planned(uninterrupted.path());
    assert!(prune(uninterrupted.path(), None).status.success());
    let expected = paths(uninterrupted.path());
    let tags = plan["tags_deleted"].as_u64().unwrap() as usize;
    let total: usize = [
        "tags_deleted",
        "manifests_deleted",
        "index_entries_deleted",
        "layer_links_deleted",
        "blobs_deleted",
        "uploads_deleted",
    ]
    .iter()
    .map(|k| plan[k].as_u64().unwrap() as usize)
    .sum();
    // K across the whole run: every stage, its first and last deletion among them.
    let step = (total / 30).max(1);
    let points: Vec<usize> = (1..total).step_by(step).chain([tags, tags + 1, total - 1]).collect();
    let mid = points.len() / 2;
    let mut left_empty_folders = 0;
    for (i, k) in points.into_iter().enumerate().filter(|(i, _)| (*i >= mid) == (half == 1)) {
        let store = fixture("demo");
        let crashed = prune(store.path(), Some(k));
        assert!(!crashed.status.success(), "the run was expected to stop after {k} deletions");
        assert!(v2(store.path()).join(".regsweep-journal.json").exists(), "crash after {k}: no journal");
        // `check` finds nothing worse than leftovers, and every tag still present pulls whole.
        let check = regsweep(&["check", "--root", store.path().to_str().unwrap(), "--json"]);
        assert_eq!(check.status.code(), Some(0), "crash after {k}: {}", String::from_utf8_lossy(&check.stdout));
        let problems: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
        left_empty_folders += problems["problems"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["kind"] == "incomplete" || p["kind"] == "registry_leftover")
            .filter(|p| !p["path"].as_str().unwrap().ends_with("journal.json"))
            .count();
        // And through the real registry at every fourth point (check judges every tag at each,
        // offline; each pull is a skopeo process and the registry's work).
        if i % 4 == 0 {
            let reg = Registry::serve(store.path());
            reg.assert_all_tags_pull(store.path());
        }
        // The rerun, of either kind, finishes the interrupted plan.
        let rerun = if i % 2 == 1 {
            regsweep(&["gc", "--root", store.path().to_str().unwrap(), "--grace", "0s", "--quiet"])
        } else {
            prune(store.path(), None)
        };
        assert!(rerun.status.success(), "{}", String::from_utf8_lossy(&rerun.stderr));
        let got = paths(store.path());
        let extra: Vec<_> = got.difference(&expected).collect();
        let missing: Vec<_> = expected.difference(&got).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "crash after {k} deletions, then a rerun: extra {extra:?}, missing {missing:?}"
        );
    }
    // Each crash stopped inside a deletion: the folder's file gone, the folder still there.
    assert!(left_empty_folders > 0, "no crash left a folder without its file to clean up");
}

#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs the test hooks: cargo test --features test-hooks")]
fn without_the_journal_a_rerun_would_keep_for_ever_what_the_crash_left() {
    // Why the journal exists: once the tag folders are gone, their manifests look untagged on
    // purpose, and rule 3 keeps them.
    let uninterrupted = fixture("demo");
    assert!(prune(uninterrupted.path(), None).status.success());
    let plan_store = fixture("demo");
    let plan = planned(plan_store.path());
    let store = fixture("demo");
    assert!(!prune(store.path(), Some(plan["tags_deleted"].as_u64().unwrap() as usize)).status.success());
    std::fs::remove_file(v2(store.path()).join(".regsweep-journal.json")).unwrap();
    assert!(prune(store.path(), None).status.success());
    let (ours, expected) = (store_state(store.path()), store_state(uninterrupted.path()));
    assert!(ours.revisions.len() > expected.revisions.len(), "without the journal the deleted tags' manifests survive");
}

/// A tag the crashed run had journaled for deletion, pushed again (onto the same digest) after
/// the crash, is a new push: the reruns keep it (the journal is older than its link), even
/// when the first rerun crashes too (its journal no longer names it).
#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs the test hooks: cargo test --features test-hooks")]
fn a_journaled_tag_pushed_again_after_the_crash_is_kept() {
    let store = fixture("demo");
    let plan = planned(store.path());
    let (repo, tag, digest) = plan["repos"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["tags"].as_array().unwrap().iter().map(move |t| (r, t)))
        .find(|(_, t)| t["action"] == "delete" && !t["name"].as_str().unwrap().starts_with("sha256-"))
        .map(|(r, t)| {
            let s = |v: &serde_json::Value| v.as_str().unwrap().to_string();
            (s(&r["name"]), s(&t["name"]), s(&t["digest"]))
        })
        .unwrap();
    // Crash once every tag folder is gone: the journal names the tag.
    assert!(!prune(store.path(), Some(plan["tags_deleted"].as_u64().unwrap() as usize)).status.success());
    let journal = std::fs::read_to_string(v2(store.path()).join(".regsweep-journal.json")).unwrap();
    assert!(journal.contains(&format!("\"{tag}\"")), "{journal}");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let reg = Registry::serve(store.path());
    copy_within(reg.port, &format!("{repo}@{digest}"), &format!("{repo}:{tag}"), true).unwrap();
    drop(reg);
    // The newest tag now: --keep 1 keeps it, unless the journal were taken as this push's.
    assert!(!prune(store.path(), Some(1)).status.success(), "the first rerun crashes too");
    let journal = std::fs::read_to_string(v2(store.path()).join(".regsweep-journal.json")).unwrap();
    assert!(!journal.contains(&format!("\"{tag}\"")), "the rerun's journal drops it: {journal}");
    assert!(prune(store.path(), None).status.success());
    assert_eq!(tag_digest(store.path(), &repo, &tag), digest);
    let reg = Registry::serve(store.path());
    reg.pull(&repo, &tag).unwrap();
    reg.assert_all_tags_pull(store.path());
}

#[test]
fn a_second_run_is_refused_while_one_holds_the_lock() {
    let store = fixture("demo");
    let lock = std::fs::File::create(v2(store.path()).join(".regsweep.lock")).unwrap();
    lock.lock().unwrap();
    let before = snapshot(store.path());
    let out = prune(store.path(), None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds the lock"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // In JSON, a kind a cron job can branch on (try later), with exit 1.
    let out = regsweep(&["prune", "--root", store.path().to_str().unwrap(), "--keep", "1", "--json"]);
    let fatal: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((out.status.code(), &fatal["kind"], &fatal["exit"]), (Some(1), &"lock_held".into(), &1.into()));
    assert_eq!(before, snapshot(store.path()));
    // A dry run takes no lock, so it runs.
    let dry = regsweep(&["prune", "--root", store.path().to_str().unwrap(), "--keep", "1", "--dry-run"]);
    assert!(dry.status.success());
}

#[test]
fn folders_that_are_not_stores_are_refused() {
    let empty = tempfile::tempdir().unwrap();
    for root in [empty.path().to_str().unwrap(), "/"] {
        let out = regsweep(&["gc", "--root", root, "--dry-run"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("is not a registry store"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Runs prune on a damaged store; asserts it fails, names `needle`, and changed nothing.
fn refused(store: &tempfile::TempDir, needle: &str) {
    let root = store.path().to_str().unwrap();
    assert_refused(store.path(), &["prune", "--root", root, "--keep", "1", "--grace", "0s", "--quiet"], needle);
}

fn manifest_blob(root: &Path, repo: &str, tag: &str) -> std::path::PathBuf {
    blob_data(root, &tag_digest(root, repo, tag))
}

#[test]
fn a_corrupt_manifest_that_must_be_kept_aborts_before_any_deletion() {
    let store = fixture("demo");
    let blob = manifest_blob(store.path(), "team/app", "rc");
    std::fs::write(&blob, b"{").unwrap();
    refused(&store, &blob.display().to_string());
}

#[test]
fn an_index_with_manifests_as_an_object_is_an_error_not_a_panic() {
    // `"manifests": {}` without a media type panics the reference collector.
    let store = fixture("demo");
    let blob = manifest_blob(store.path(), "team/multi", "2026.3");
    std::fs::write(&blob, br#"{"schemaVersion":2,"manifests":{}}"#).unwrap();
    refused(&store, &blob.display().to_string());
}

#[test]
fn a_corrupt_manifest_that_is_being_removed_does_not_block_the_run() {
    let store = fixture("demo");
    let blob = manifest_blob(store.path(), "team/app", "v1");
    std::fs::write(&blob, b"not json").unwrap();
    let out = prune(store.path(), None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!blob.exists());
}

#[test]
fn a_malformed_link_is_an_error_naming_it() {
    let store = fixture("demo");
    let link = v2(store.path()).join("repositories/team/app/_manifests/tags/v3/current/link");
    let mut text = read_link(&link);
    text.push('\n');
    std::fs::write(&link, text).unwrap();
    refused(&store, &link.display().to_string());
}

#[test]
fn a_symlink_inside_the_store_is_refused_and_its_target_untouched() {
    let store = fixture("demo");
    let outside = fixture("demo");
    let target = v2(outside.path()).join("repositories/team");
    let link = v2(store.path()).join("repositories/elsewhere");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let before = snapshot(outside.path());
    refused(&store, &link.display().to_string());
    assert_eq!(before, snapshot(outside.path()));
}

#[test]
fn killed_early_then_rerun_ends_as_an_uninterrupted_run() {
    killed_then_rerun(&[0.15, 0.45]);
}

#[test]
fn killed_late_then_rerun_ends_as_an_uninterrupted_run() {
    killed_then_rerun(&[0.65, 0.85]);
}

/// SIGKILL at these fractions of a real run's time on a generated store, then run again.
fn killed_then_rerun(fractions: &[f64]) {
    let template = tempfile::tempdir().unwrap();
    let generated =
        regsweep(&["gen", "--root", template.path().to_str().unwrap(), "--repos", "40", "--tags", "12", "--quiet"]);
    assert!(generated.status.success());
    let uninterrupted = copy_store(template.path());
    let started = std::time::Instant::now();
    assert!(prune(uninterrupted.path(), None).status.success());
    let took = started.elapsed();
    let expected = paths(uninterrupted.path());
    let tags = tags_on_disk(template.path());
    let mut interrupted = 0;
    for &fraction in fractions {
        let store = copy_store(template.path());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_regsweep"));
        cmd.arg("prune").arg("--root").arg(store.path()).args(PRUNE).stdout(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(took.mul_f64(fraction));
        let _ = child.kill();
        child.wait().unwrap();
        interrupted += usize::from(v2(store.path()).join(".regsweep-journal.json").exists());
        let check = regsweep(&["check", "--root", store.path().to_str().unwrap(), "--json"]);
        assert_eq!(check.status.code(), Some(0), "killed at {fraction}: {}", String::from_utf8_lossy(&check.stdout));
        let left = tags_on_disk(store.path());
        let reg = Registry::serve(store.path());
        for (repo, tag) in left.iter().step_by(23) {
            reg.pull(repo, tag).unwrap_or_else(|e| panic!("killed at {fraction}: {repo}:{tag}: {e}"));
        }
        drop(reg);
        assert!(left.len() <= tags.len());
        assert!(prune(store.path(), None).status.success());
        let got = paths(store.path());
        assert!(got == expected, "killed at {fraction} of the run, then rerun: a different store");
    }
    assert!(interrupted > 0, "no kill landed while the run was deleting");
}

/// Issue 22 review: the manifests stage deletes in waves (a subject, then its referrer, then the
/// referrer's children). A crash after the referrer's revision went and before its child's
/// left the child with nothing that named it: a journal of the deleted tags' digests alone
/// names the subject, and a rerun learns a subject's referrers only from revisions still
/// present; the child looked untagged before the run and stayed for ever. The journal now also
/// names the removed manifests with an edge to other removed ones.
#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs the test hooks: cargo test --features test-hooks")]
fn a_crash_between_waves_of_a_referrer_index_ends_as_an_uninterrupted_run() {
    let build = || {
        let store = fixture("demo");
        let root = store.path();
        let v2d = tag_digest(root, "team/app", "v2");
        referrer_index_of(root, "team/app", &v2d);
        store
    };
    let args = |root: &Path| -> Vec<String> {
        ["prune", "--root", root.to_str().unwrap(), "--keep", "2", "--grace", "0s", "--quiet"]
            .map(String::from)
            .to_vec()
    };
    let uninterrupted = build();
    let mut a = args(uninterrupted.path());
    a.push("--dry-run".into());
    let plan = regsweep_json(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let (tags, manifests) =
        (plan["tags_deleted"].as_u64().unwrap() as usize, plan["manifests_deleted"].as_u64().unwrap() as usize);
    let out = Command::new(env!("CARGO_BIN_EXE_regsweep")).args(args(uninterrupted.path())).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = paths(uninterrupted.path());
    let mut failures = Vec::new();
    for k in tags + 1..tags + manifests {
        let store = build();
        let crashed = Command::new(env!("CARGO_BIN_EXE_regsweep"))
            .args(args(store.path()))
            .env("REGSWEEP_TEST_CRASH_AFTER", k.to_string())
            .output()
            .unwrap();
        assert!(!crashed.status.success(), "the run was expected to stop after {k} deletions");
        let rerun = Command::new(env!("CARGO_BIN_EXE_regsweep")).args(args(store.path())).output().unwrap();
        assert!(rerun.status.success(), "{}", String::from_utf8_lossy(&rerun.stderr));
        let got = paths(store.path());
        let extra: Vec<_> = got.difference(&expected).cloned().collect();
        let missing: Vec<_> = expected.difference(&got).cloned().collect();
        if !extra.is_empty() || !missing.is_empty() {
            failures.push(format!("crash after {k}: extra {extra:?}, missing {missing:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
