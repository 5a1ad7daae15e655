//! Issue 35 item 2: `--delete-untagged` on a store whose tags live elsewhere. Harbor 2.15 and
//! later keep tags in their database only (goharbor/harbor#22507): what it pushes has revisions
//! and layer links but no tag in storage, as a `skopeo copy` to `repo@sha256:...` writes. The
//! reference collector deletes all of it; regsweep refuses before anything is done, naming
//! `--allow-tagless` (docs/DESIGN.md section 3, "Tags elsewhere"; the fast tier's
//! `memory::delete_untagged_is_refused_on_a_store_whose_tags_live_elsewhere_and_only_there`
//! carries the combinations).

use crate::common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// Empties every tag folder of a store (`_manifests/tags/` stays).
fn empty_tag_folders(root: &Path) {
    for (repo, tag) in tags_on_disk(root) {
        std::fs::remove_dir_all(v2(root).join("repositories").join(repo).join("_manifests/tags").join(tag)).unwrap();
    }
    assert!(tags_on_disk(root).is_empty());
}

/// The warnings of a report of this kind.
fn warnings_of(report: &Value, kind: &str) -> Vec<String> {
    let all = report["warnings"].as_array().unwrap();
    all.iter().filter(|w| w["kind"] == kind).map(|w| w["message"].as_str().unwrap().to_string()).collect()
}

/// The demo store with its tag folders emptied: 2.8.2's collector with `--delete-untagged`
/// deletes every manifest and blob (the issue measured it: 145 files, exit 0). regsweep's `gc`
/// and `prune` with it are refused, dry run or not, exit 1 and kind `tagless_store`, the store
/// untouched; with `--allow-tagless` it ends where the reference ends.
#[test]
fn delete_untagged_is_refused_on_the_demo_store_without_tags() {
    let store = fixture("demo");
    empty_tag_folders(store.path());
    let root = store.path().to_str().unwrap();
    for args in [
        &["gc", "--root", root, "--delete-untagged"][..],
        &["gc", "--root", root, "--delete-untagged", "--dry-run"],
        &["prune", "--root", root, "--keep", "1", "--delete-untagged"],
    ] {
        assert_refused(store.path(), args, "--allow-tagless");
    }
    let out = regsweep(&["gc", "--root", root, "--delete-untagged", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let fatal: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&fatal["kind"], &fatal["exit"]), (&"tagless_store".into(), &1.into()), "{fatal}");
    let line = String::from_utf8_lossy(&out.stderr);
    assert_eq!(line.lines().count(), 1, "one line: {line}");
    assert!(line.contains("no repository of this store has a tag"), "{line}");
    // Without --delete-untagged nothing untagged goes: neither refused nor said.
    let report = regsweep_json(&["prune", "--root", root, "--keep", "1", "--dry-run"]);
    assert!(warnings_of(&report, "tags_elsewhere").is_empty(), "{report}");

    let theirs = copy_store(store.path());
    reference_gc(theirs.path(), true);
    assert!(store_state(theirs.path()).blobs.is_empty(), "2.8.2's collector was expected to delete every blob");
    let report = regsweep_json(&["gc", "--root", root, "--delete-untagged", "--allow-tagless", "--quiet"]);
    assert_eq!(warnings_of(&report, "tags_elsewhere").len(), 1, "{report}");
    assert_eq!(store_state(store.path()), store_state(theirs.path()), "--allow-tagless: as the reference");
}

/// Pushes `reference` (`repo@digest`) of the registry on `from` by digest into `to` of the one on
/// `port`, as Harbor 2.15 writes every push: revisions and layer links, no tag.
fn push_by_digest(from: u16, port: u16, repo: &str, to: &str, digest: &str) {
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--all", "--preserve-digests", "-q"])
        .args(["--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(format!("docker://127.0.0.1:{from}/{repo}@{digest}"))
        .arg(format!("docker://127.0.0.1:{port}/{to}@{digest}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo copy by digest: {}", String::from_utf8_lossy(&out.stderr));
}

/// The demo as each registry wrote it (its tags pushed), then newer images pushed by digest, as
/// Harbor 2.15 pushes: one is no pattern (not refused); two are. `gc --delete-untagged` is
/// refused and changes nothing; `prune` runs and says it; the reference collector and
/// `--allow-tagless` delete the images pushed by digest, which the refused run kept pullable.
#[test]
fn delete_untagged_is_refused_on_a_store_pushed_by_digest_after_its_tags() {
    let demo = fixture("demo");
    let app = v2(demo.path()).join("repositories/team/app/_manifests/tags/rc");
    let rc = read_link(&app.join("current/link"));
    // rc's first push, untagged in the demo: pushed again by digest.
    let rc1 = std::fs::read_dir(app.join("index/sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
        .find(|d| *d != rc)
        .unwrap();
    // And the demo's orphan (its tag removed by hand): in no tag's history, no referrer.
    let named: Vec<String> = walkdir::WalkDir::new(app.parent().unwrap())
        .into_iter()
        .flatten()
        .filter(|e| e.file_name() == "link")
        .map(|e| read_link(e.path()))
        .collect();
    let orphan = std::fs::read_dir(v2(demo.path()).join("repositories/team/app/_manifests/revisions/sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|d| !named.contains(d))
        .find(|d| {
            let m: Value = serde_json::from_slice(&std::fs::read(blob_data(demo.path(), d)).unwrap()).unwrap();
            m.get("subject").is_none()
        })
        .unwrap();
    let source = Registry::serve(demo.path());
    for version in VERSIONS {
        if version.available("delete_untagged_is_refused_on_a_store_pushed_by_digest_after_its_tags").is_none() {
            continue;
        }
        let store = copy_store(pushed_by(version));
        let root = store.path().to_str().unwrap();
        // Its tags were pushed a day ago (before the upgrade, say), the pushes by digest now.
        let aged = Command::new("find").arg(root).args(["-exec", "touch", "-h", "-d", "1 day ago", "{}", "+"]).status();
        assert!(aged.unwrap().success());
        let reg = Registry::serve_version(store.path(), version);
        push_by_digest(source.port, reg.port, "team/app", "team/app", &rc1);
        drop(reg);
        let gc = ["gc", "--root", root, "--delete-untagged", "--grace", "0s"];
        let one = regsweep_json(&[&gc[..], &["--dry-run"]].concat());
        assert!(warnings_of(&one, "tags_elsewhere").is_empty(), "{version}: one push by digest is no pattern");
        let reg = Registry::serve_version(store.path(), version);
        // Into a repository with tags: 2.8.2's collector stops on one without a tags folder.
        push_by_digest(source.port, reg.port, "team/app", "team/app", &orphan);
        drop(reg);

        assert_refused(store.path(), &gc, "--allow-tagless");
        let report = regsweep_json(&["prune", "--root", root, "--keep", "2", "--grace", "0s"]);
        let said = warnings_of(&report, "tags_elsewhere");
        assert!(said.len() == 1 && said[0].contains("2 manifest(s)"), "{version}: {said:?}");
        let reg = Registry::serve_version(store.path(), version);
        for (repo, d) in [("team/app", &rc1), ("team/app", &orphan)] {
            reg.pull(repo, d).unwrap_or_else(|e| panic!("{version}: {repo}@{d} pushed by digest: {e}"));
        }
        drop(reg);

        let theirs = copy_store(store.path());
        reference_gc_with(theirs.path(), &Setup { version, ..Setup::default() }, true);
        let report = regsweep_json(&[&gc[..], &["--allow-tagless"]].concat());
        assert_eq!(warnings_of(&report, "tags_elsewhere").len(), 1, "{version}: {report}");
        for (at, who) in [(theirs.path(), "the reference collector"), (store.path(), "--allow-tagless")] {
            let reg = Registry::serve_version(at, version);
            for (repo, d) in [("team/app", &rc1), ("team/app", &orphan)] {
                assert_eq!(reg.manifest_status(repo, d), 404, "{version}: {who} was expected to delete {repo}@{d}");
            }
        }
        // (2.8.2's collector also breaks the multi-arch images, distribution#3178: not ours.)
        Registry::serve_version(store.path(), version).assert_all_tags_pull(store.path());
    }
}

/// Online mode passes `--gc-delete-untagged` to the registry's own collector, which on a store
/// without tags deletes every manifest. The API lists no untagged manifest, so only (a) shows
/// there: every repository of the catalog without a tag. Refused before any delete (a dry run
/// too, before the container is looked for), exit 1; with the demo's tags, or with
/// `--allow-tagless`, the run goes on to its container step (here, no container: exit 5).
#[test]
fn online_refuses_gc_delete_untagged_where_no_repository_has_a_tag() {
    let store = fixture("demo");
    let with_tags = fixture("demo");
    empty_tag_folders(store.path());
    for (root, extra, refused) in [
        (store.path(), &[][..], true),
        (store.path(), &["--allow-tagless"][..], false),
        (with_tags.path(), &[][..], false),
    ] {
        let reg = Registry::serve(root);
        let args = ["online", "--url", &reg.url, "--keep", "1", "--order", "name", "--dry-run", "--json"];
        let container = ["--gc-container", "regsweep-test-no-such-container", "--gc-delete-untagged"];
        let out = regsweep(&[&args[..], &container, extra].concat());
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if refused {
            assert_eq!((out.status.code(), &json["kind"]), (Some(1), &"tagless_store".into()), "{err}");
            assert!(err.contains("refusing --gc-delete-untagged") && err.contains("--allow-tagless"), "{err}");
        } else {
            assert_eq!(out.status.code(), Some(5), "the container step, not the guard: {err}");
            let said = warnings_of(&json, "tags_elsewhere").len();
            assert_eq!(said, usize::from(!extra.is_empty()), "{json}");
        }
    }
}

/// Review finding 9: `du` deletes nothing, so on a store whose tags live elsewhere it says that a
/// run with --delete-untagged would be refused, not that it runs anyway.
#[test]
fn du_says_a_run_would_be_refused_not_that_it_runs_anyway() {
    let store = fixture("demo");
    empty_tag_folders(store.path());
    let out = regsweep(&["du", "--root", store.path().to_str().unwrap(), "--delete-untagged"]);
    assert!(out.status.success());
    // du's warnings go to stderr (its JSON has none).
    let err = String::from_utf8_lossy(&out.stderr);
    let said: Vec<&str> = err.lines().filter(|l| l.contains("tags seem to live elsewhere")).collect();
    assert_eq!(said.len(), 1, "{err}");
    assert!(said[0].contains("would be refused") && !said[0].contains("runs anyway"), "{err}");
}
