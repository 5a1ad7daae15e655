//! Trust, round 2 (issue 12): what an adversary and a new operator found, one test a case. A
//! partly failed run, a full disk, FIFOs where files should be, `--keep 0`, orphan attachments,
//! and what an operator meets (exit codes, messages, reports).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs regsweep with `--json`; returns the exit code and the report.
fn json_run(args: &[&str]) -> (i32, serde_json::Value) {
    let mut a = args.to_vec();
    a.push("--json");
    let out = regsweep(&a);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap_or(-1), report)
}

/// `chattr +i` on folders, undone when dropped (else the temporary store cannot be removed).
struct Immutable(Vec<PathBuf>);

impl Immutable {
    /// `None` where the file system or the user cannot (then the test is skipped).
    fn set(paths: Vec<PathBuf>) -> Option<Immutable> {
        let ok = Command::new("chattr").arg("+i").args(&paths).status().is_ok_and(|s| s.success());
        let guard = Immutable(paths);
        ok.then_some(guard)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").args(&self.0).status();
    }
}

/// The dry-run report of `args` (a prune whose third argument is the root), and the blob folders
/// it deletes, found by running it on a copy.
fn planned_blob_dirs(root: &Path, args: &[&str]) -> (serde_json::Value, Vec<PathBuf>) {
    let plan = regsweep_json(&[args, &["--dry-run"]].concat());
    let copy = copy_store(root);
    let mut on_copy = args.to_vec();
    on_copy[2] = s(copy.path());
    regsweep_json(&on_copy);
    let after = store_state(copy.path()).blobs;
    let gone = store_state(root).blobs.into_iter().filter(|hex| !after.contains(hex));
    (plan, gone.map(|hex| v2(root).join("blobs/sha256").join(&hex[..2]).join(hex)).collect())
}

#[test]
fn a_partly_failed_run_reports_what_is_gone_and_lists_what_failed() {
    let store = fixture("demo");
    let root = store.path();
    let args = ["prune", "--root", s(root), "--keep", "2"];
    let (plan, blob_dirs) = planned_blob_dirs(root, &args);
    assert_eq!(plan["blobs_deleted"].as_u64().unwrap() as usize, blob_dirs.len());
    // Every blob the run would delete is made immutable: none can go.
    let Some(_guard) = Immutable::set(blob_dirs.clone()) else {
        eprintln!("skipped: chattr +i is not possible here");
        return;
    };
    let (code, report) = json_run(&args);
    assert_eq!(code, 3, "some deletions failed: {report}");
    assert_eq!(report["blobs_deleted"], 0, "none was deleted, whatever the plan said");
    assert_eq!(report["restart_required"], false, "no blob is gone: no restart");
    assert_eq!(report["tags_deleted"], plan["tags_deleted"], "the stages before the blobs ran");
    assert_eq!(report["manifests_deleted"], plan["manifests_deleted"]);
    assert_eq!(report["uploads_deleted"], 0, "the uploads stage comes after the failed one");
    assert_eq!(report["bytes_freed"], 0);
    let failed: Vec<&str> = report["failed"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(failed.len(), blob_dirs.len(), "{failed:?}");
    for d in &blob_dirs {
        assert!(failed.contains(&s(d)), "{} is not listed as failed", d.display());
    }
    drop(_guard);
    // The store is valid, and a rerun finishes the job.
    let (code, again) = json_run(&args);
    assert_eq!(code, 0, "{again}");
    assert_eq!(again["blobs_deleted"].as_u64().unwrap() as usize, blob_dirs.len());
    assert_eq!(again["restart_required"], true);
    assert_served(root, &plan);
}

#[test]
fn one_failed_blob_is_counted_apart_from_those_that_went() {
    let store = fixture("demo");
    let root = store.path();
    let args = ["prune", "--root", s(root), "--keep", "2"];
    let (plan, blob_dirs) = planned_blob_dirs(root, &args);
    let Some(_guard) = Immutable::set(blob_dirs[..1].to_vec()) else {
        eprintln!("skipped: chattr +i is not possible here");
        return;
    };
    let size = std::fs::metadata(blob_dirs[0].join("data")).unwrap().len();
    let (code, report) = json_run(&args);
    assert_eq!(code, 3);
    assert_eq!(report["blobs_deleted"].as_u64().unwrap() as usize, blob_dirs.len() - 1);
    assert_eq!(report["restart_required"], true);
    // The demo's one upload holds no data: the plan's bytes are its blobs'.
    let planned = plan["bytes_freed"].as_u64().unwrap();
    assert_eq!(report["bytes_freed"].as_u64().unwrap(), planned - size);
    assert_eq!(report["failed"].as_array().unwrap().len(), 1);
    assert_eq!(report["failed"][0]["path"], s(&blob_dirs[0]));
    assert!(report["failed"][0]["error"].as_str().unwrap().contains("not permitted"), "{}", report["failed"][0]);
}

