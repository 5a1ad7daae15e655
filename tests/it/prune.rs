//! `regsweep prune` on stores written by the real registry, checked through the real registry:
//! every remaining tag pulls whole with `skopeo copy --all`, every removed tag answers 404.

use crate::common;

use std::collections::BTreeSet;

use common::*;

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Runs `prune --keep 2` on the demo store; returns the store and the report.
fn pruned_demo(extra: &[&str]) -> (tempfile::TempDir, serde_json::Value) {
    let store = fixture("demo");
    let root = store.path().to_str().unwrap().to_string();
    let mut args = vec!["prune", "--root", &root, "--keep", "2"];
    args.extend_from_slice(extra);
    let report = regsweep_json(&args);
    (store, report)
}

#[test]
fn prune_keeps_the_newest_and_the_registry_serves_them_whole() {
    let (store, report) = pruned_demo(&[]);
    let v2 = v2(store.path());
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["restart_required"], true);
    assert_eq!(tags_with(&report, "team/multi", "keep"), set(&["2026.2", "2026.3"]));
    assert_eq!(tags_with(&report, "team/multi", "delete"), set(&["2026.1"]));
    assert_eq!(tags_with(&report, "team/app/tools", "keep"), set(&["1.10.0", "2.0.0"]));
    assert_eq!(report["uploads_deleted"], 1);
    assert!(report["blobs_deleted"].as_u64().unwrap() > 0);
    assert!(report["bytes_freed"].as_u64().unwrap() > 0);
    assert!(!v2.join(".regsweep-journal.json").exists(), "the journal goes when the run finishes");
    assert!(std::fs::read_dir(v2.join("repositories/team/app/_uploads")).unwrap().next().is_none());

    let reg = assert_served(store.path(), &report);
    for (repo, tags) in [
        ("team/app", &["v1", "v2", "v3", "v4", "v5", "stable"][..]),
        ("team/multi", &["2026.1"]),
        ("team/app/tools", &["1.0.0", "1.1.0"]),
    ] {
        for t in tags {
            assert_eq!(reg.manifest_status(repo, t), 404, "{repo}:{t} should be gone");
        }
    }
}

#[test]
fn shared_digest_tag_is_untagged_not_deleted() {
    // v6 is beyond --keep 2, but `latest` (kept) points to the same digest: the API would delete
    // the digest and `latest` with it; regsweep removes the tag folder of v6 alone.
    let (store, report) = pruned_demo(&[]);
    assert_eq!(tags_with(&report, "team/app", "untag"), set(&["v6"]));
    let reg = assert_served(store.path(), &report);
    assert_eq!(reg.manifest_status("team/app", "v6"), 404);
    reg.pull("team/app", "latest").unwrap();
}

#[test]
fn attachments_and_referrers_follow_their_subject() {
    let store = fixture("demo");
    let v2 = v2(store.path());
    let tags = v2.join("repositories/team/app/_manifests/tags");
    let digest_of = |t: &str| read_link(&tags.join(t).join("current/link"));
    let (v6, v1, v2d) = (digest_of("v6"), digest_of("v1"), digest_of("v2"));
    let sig = |d: &str| format!("sha256-{}.sig", &d[7..]);
    let report = regsweep_json(&["prune", "--root", store.path().to_str().unwrap(), "--keep", "2"]);
    let kept = tags_with(&report, "team/app", "keep");
    assert!(kept.contains(&sig(&v6)), "signature of a kept image stays");
    assert!(tags_with(&report, "team/app", "delete").contains(&sig(&v1)), "signature of a deleted image goes");

    // The OCI referrers (SBOMs pushed by digest with `subject`) live and die with their subject.
    let reg = assert_served(store.path(), &report);
    let referrers = referrers_on_disk(&v2, "team/app");
    assert!(referrers.iter().any(|(_, s)| *s == v6), "the referrer of v6 stays");
    assert!(!referrers.iter().any(|(_, s)| *s == v2d), "the referrer of v2 goes");
    for (r, _) in &referrers {
        reg.pull("team/app", r).unwrap();
    }
}

/// (referrer digest, subject digest) of every manifest with a subject in a repository.
fn referrers_on_disk(v2: &std::path::Path, repo: &str) -> Vec<(String, String)> {
    let revs = v2.join("repositories").join(repo).join("_manifests/revisions/sha256");
    let mut out = Vec::new();
    for e in std::fs::read_dir(revs).unwrap().flatten() {
        let hex = e.file_name().to_string_lossy().into_owned();
        let data = v2.join("blobs/sha256").join(&hex[..2]).join(&hex).join("data");
        let Ok(bytes) = std::fs::read(data) else {
            continue;
        };
        let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        if let Some(s) = m["subject"]["digest"].as_str() {
            out.push((format!("sha256:{hex}"), s.to_string()));
        }
    }
    out
}

#[test]
fn untagged_manifests_stay_unless_asked_and_cascade_with_deleted_tags() {
    // Without --delete-untagged, the manifest left untagged before the run (tmp-orphan, rc's old
    // image) stays; with it, both go, while the children of kept indexes stay.
    let (store, report) = pruned_demo(&[]);
    let before_untagged = repo(&report, "team/app")["manifests_deleted"].as_u64().unwrap();
    assert_eq!(before_untagged, 7, "v1..v5, the signature of v1, the referrer of v2");
    drop(store);
    let (store, report) = pruned_demo(&["--delete-untagged"]);
    assert_eq!(repo(&report, "team/app")["manifests_deleted"].as_u64().unwrap(), 9);
    assert_eq!(repo(&report, "team/multi")["manifests_deleted"].as_u64().unwrap(), 3);
    assert_served(store.path(), &report);
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let store = fixture("demo");
    let before = snapshot(store.path());
    let root = store.path().to_str().unwrap();
    let dry = regsweep_json(&["prune", "--root", root, "--keep", "2", "--dry-run"]);
    assert_eq!(before, snapshot(store.path()), "a dry run changed the store");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["restart_required"], false);
    let text = regsweep(&["prune", "--root", root, "--keep", "2", "--dry-run"]);
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("untag  v6") && text.contains("delete v1") && text.contains("keep   latest"), "{text}");
    assert_eq!(before, snapshot(store.path()));

    // The real run does exactly what the dry run planned.
    let real = regsweep_json(&["prune", "--root", root, "--keep", "2"]);
    for key in [
        "tags_deleted",
        "manifests_deleted",
        "blobs_deleted",
        "layer_links_deleted",
        "uploads_deleted",
        "bytes_freed",
        "repos",
    ] {
        assert_eq!(dry[key], real[key], "{key}");
    }
    // And a second run finds nothing left to do.
    let again = regsweep_json(&["prune", "--root", root, "--keep", "2"]);
    for key in ["tags_deleted", "manifests_deleted", "blobs_deleted", "layer_links_deleted", "uploads_deleted"] {
        assert_eq!(again[key], 0, "{key}");
    }
}

/// Issue 35, 5: the text of a run lists the repositories where something happens, then the
/// summary; `--verbose` lists every one; `--json` is the same, byte for byte, with or without it.
#[test]
fn the_text_lists_the_repositories_where_something_happens() {
    let store = fixture("demo");
    let root = store.path().to_str().unwrap();
    let text = |args: &[&str]| {
        let out = regsweep(&[&["gc", "--root", root, "--grace", "0s"][..], args].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let repos = ["team/app:", "team/app/tools:", "team/multi:"];
    let listed = |t: &str| repos.iter().filter(|r| t.lines().any(|l| l.starts_with(*r))).count();
    // The first gc deletes in some repositories; the second in none.
    let first = text(&["-q", "--delete-untagged"]);
    assert!(listed(&first) >= 1, "{first}");
    let second = text(&["-q"]);
    assert_eq!(listed(&second), 0, "{second}");
    assert!(
        second.contains("\n3 repositories where nothing happened not listed (--verbose lists every one)\n"),
        "{second}"
    );
    assert!(second.contains("3 repositories: deleted 0 tags"), "the summary: {second}");
    let verbose = text(&["--verbose"]);
    assert_eq!(listed(&verbose), 3, "{verbose}");
    assert!(!verbose.contains("not listed"), "{verbose}");
    let dry = text(&["--dry-run", "--json"]);
    assert_eq!(text(&["--dry-run", "--json", "--verbose"]), dry, "--json is the same");
}

#[test]
fn filters_and_orders() {
    let store = fixture("demo");
    let root = store.path().to_str().unwrap();
    let plan =
        |extra: &[&str]| regsweep_json(&[&["prune", "--root", root, "--keep", "1", "--dry-run"], extra].concat());
    let r = plan(&["--order", "semver", "--exclude-repo", "team/multi"]);
    assert_eq!(tags_with(&r, "team/app/tools", "keep"), set(&["2.0.0"]));
    assert_eq!(tags_with(&r, "team/multi", "delete"), set(&[]));
    assert_eq!(repo(&r, "team/multi")["in_scope"], false);
    // Not versions: kept, never guessed at.
    assert!(tags_with(&r, "team/app", "keep").is_superset(&set(&["latest", "stable", "rc", "v1", "v6"])));

    let r = plan(&["--order", "name", "--repo", "team/app/*"]);
    assert_eq!(tags_with(&r, "team/app/tools", "keep"), set(&["2.0.0"]));
    assert_eq!(tags_with(&r, "team/app", "delete"), set(&[]), "team/app is not matched by team/app/*");

    let r = plan(&["--order", "created", "--keep-tag", "^v[12]$"]);
    assert_eq!(tags_with(&r, "team/multi", "keep"), set(&["2026.3"]), "an index is as new as its newest child");
    let kept = tags_with(&r, "team/app", "keep");
    assert!(kept.contains("rc") && kept.contains("v1") && kept.contains("v2") && !kept.contains("v3"), "{kept:?}");

    // Tags younger than --older-than stay: every tag here is from 2026, so 100000d keeps all.
    let r = regsweep_json(&["prune", "--root", root, "--keep", "0", "--older-than", "100000d", "--dry-run"]);
    assert_eq!(r["tags_deleted"], 0);
}

#[test]
fn uniform_push_times_keep_every_tag_and_warn() {
    let store = fixture("demo");
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "find {} -path '*/current/link' -exec touch -d 2026-05-05T00:00:00Z {{}} +",
            store.path().display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    let out = regsweep(&["prune", "--root", store.path().to_str().unwrap(), "--keep", "1", "--json"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("same push time"));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["tags_deleted"], 0);
    let kinds: Vec<&serde_json::Value> = r["warnings"].as_array().unwrap().iter().map(|w| &w["kind"]).collect();
    assert!(!kinds.is_empty() && kinds.iter().all(|k| *k == "uniform_push_times"), "{kinds:?}");
}

#[test]
fn kept_tags_that_cannot_be_pulled_are_warned_of_by_kind() {
    let store = fixture("demo");
    let tags = v2(store.path()).join("repositories/team/app/_manifests/tags");
    // v1's manifest blob is gone; v2 points to a manifest this repository does not have.
    let link = std::fs::read_to_string(tags.join("v1/current/link")).unwrap();
    let hex = link.trim().strip_prefix("sha256:").unwrap();
    std::fs::remove_file(v2(store.path()).join(format!("blobs/sha256/{}/{hex}/data", &hex[..2]))).unwrap();
    std::fs::write(tags.join("v2/current/link"), format!("sha256:{}", "0".repeat(64))).unwrap();
    let r = regsweep_json(&["prune", "--root", store.path().to_str().unwrap(), "--keep", "100", "--dry-run"]);
    let warnings: Vec<(&str, &str)> = r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["kind"].as_str().unwrap(), w["message"].as_str().unwrap()))
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(warnings[0].0, "manifest_missing");
    assert!(warnings[0].1.starts_with("team/app:v1: "), "{warnings:?}");
    assert_eq!(warnings[1].0, "foreign_manifest");
    assert!(warnings[1].1.starts_with("team/app:v2: "), "{warnings:?}");
}

#[test]
fn config_file_and_environment_name_the_store() {
    let store = fixture("demo");
    let cfg = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        cfg.path(),
        format!("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n", store.path().display()),
    )
    .unwrap();
    let r = regsweep_json(&["prune", "--config", cfg.path().to_str().unwrap(), "--keep", "2", "--dry-run"]);
    assert_eq!(r["repositories"], 3);
    std::fs::write(cfg.path(), "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /nonexistent\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args(["gc", "--dry-run", "--json", "--config", cfg.path().to_str().unwrap()])
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", store.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn prune_on_manifest_lists_and_schema1() {
    // Docker manifest lists whose children are tagged too (`1.0-amd64`): the children of the
    // kept list are untagged, not deleted; signed schema1 manifests are parsed and pruned.
    let store = fixture("legacy");
    let report = regsweep_json(&["prune", "--root", store.path().to_str().unwrap(), "--keep", "1"]);
    assert_eq!(tags_with(&report, "legacy/list", "keep"), set(&["3.0"]));
    assert_eq!(tags_with(&report, "legacy/list", "untag"), set(&["3.0-amd64", "3.0-arm64"]));
    assert_eq!(tags_with(&report, "legacy/schema1", "keep"), set(&["v3"]));
    assert_eq!(tags_with(&report, "legacy/buildx", "keep"), set(&["2"]));
    assert_eq!(repo(&report, "legacy/buildx")["manifests_deleted"], 3, "the old list and its untagged children");
    assert_served(store.path(), &report);
}

/// Push, prune and pull back on each version: the demo's images pushed through the registry of
/// that version into an empty folder, which `check` finds clean; `prune --keep 2` (the pushes are
/// a moment old: `--grace 0s`); the same registry then serves every kept tag whole and none of
/// the others, and `check` still finds the store clean.
#[test]
fn push_prune_and_pull_back_on_each_version() {
    for version in VERSIONS {
        if version.available("push_prune_and_pull_back_on_each_version").is_none() {
            continue;
        }
        let store = copy_store(pushed_by(version));
        let root = store.path().to_str().unwrap();
        for when in ["before", "after"] {
            let check = regsweep_json(&["check", "--root", root]);
            assert!(check["problems"].as_array().is_some_and(|p| p.is_empty()), "{version}, {when}: {check}");
            if when == "after" {
                break;
            }
            let report = regsweep_json(&["prune", "--root", root, "--keep", "2", "--grace", "0s"]);
            assert_eq!(tags_with(&report, "team/app", "untag"), set(&["v6"]), "{version}");
            assert_eq!(tags_with(&report, "team/multi", "keep"), set(&["2026.2", "2026.3"]), "{version}");
            assert!(report["blobs_deleted"].as_u64().unwrap() > 0, "{version}: {report}");
            let reg = assert_served_by(store.path(), &report, version);
            reg.pull("team/app", "latest").unwrap();
        }
    }
}
