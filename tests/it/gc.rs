//! `regsweep gc` against the real `docker-registry garbage-collect`: blob for blob the same where
//! our semantics match (no `--delete-untagged`), and a named difference where they do not.

use crate::common;

use common::*;

/// Deletes manifests through the real registry's API, as the cron recipe does: a store with garbage.
fn store_with_api_deletes() -> tempfile::TempDir {
    let store = fixture("demo");
    let reg = Registry::serve(store.path());
    let v2 = v2(store.path());
    for (repo, tag) in [("team/app", "v1"), ("team/app", "v2"), ("team/multi", "2026.1"), ("team/app/tools", "1.0.0")] {
        let digest =
            read_link(&v2.join("repositories").join(repo).join("_manifests/tags").join(tag).join("current/link"));
        assert_eq!(
            reg.status("DELETE", &format!("/v2/{repo}/manifests/{digest}"), ""),
            Some(202),
            "DELETE {repo}@{digest}"
        );
    }
    store
}

fn assert_gc_equals_reference(store: &tempfile::TempDir) {
    let ours = copy_store(store.path());
    let theirs = copy_store(store.path());
    let report = regsweep_json(&["gc", "--root", ours.path().to_str().unwrap(), "--grace", "0s"]);
    reference_gc(theirs.path(), false);
    let (a, b) = (store_state(ours.path()), store_state(theirs.path()));
    assert_eq!(a.blobs, b.blobs, "blobs differ from the reference collector's");
    assert_eq!(a.revisions, b.revisions, "revision links differ from the reference collector's");
    assert_eq!(report["tags_deleted"], 0);
    let reg = Registry::serve(ours.path());
    reg.assert_all_tags_pull(ours.path());
}

#[test]
fn gc_equals_reference_collector_on_the_demo_store() {
    let store = fixture("demo");
    assert_gc_equals_reference(&store);
}

#[test]
fn gc_equals_reference_collector_after_api_deletes() {
    let store = store_with_api_deletes();
    assert_gc_equals_reference(&store);
}

#[test]
fn gc_equals_reference_collector_after_a_prune() {
    let store = fixture("demo");
    regsweep_json(&["prune", "--root", store.path().to_str().unwrap(), "--keep", "1", "--grace", "0s"]);
    assert_gc_equals_reference(&store);
}

#[test]
fn gc_equals_reference_collector_on_the_legacy_store() {
    let store = fixture("legacy");
    assert_gc_equals_reference(&store);
}

#[test]
fn reference_delete_untagged_breaks_multiarch_while_regsweep_keeps_it() {
    // docs/DESIGN.md section 3, a deliberate difference: registry 2.8's --delete-untagged does not mark the
    // untagged children of a tagged index, so their layers are swept (distribution#3178).
    let store = fixture("demo");
    let theirs = copy_store(store.path());
    reference_gc(theirs.path(), true);
    let reg = Registry::serve(theirs.path());
    let broken = reg.pull("team/multi", "2026.3");
    assert!(broken.is_err(), "the reference collector was expected to break team/multi:2026.3");
    drop(reg);

    let ours = copy_store(store.path());
    let report = regsweep_json(&["gc", "--root", ours.path().to_str().unwrap(), "--delete-untagged", "--grace", "0s"]);
    assert!(report["manifests_deleted"].as_u64().unwrap() > 0, "the untagged manifests do go");
    let reg = Registry::serve(ours.path());
    reg.assert_all_tags_pull(ours.path());
    // The referrer of a tagged image stays too (v3 deletes every untagged referrer).
    let v2 = v2(ours.path());
    let v6 = read_link(&v2.join("repositories/team/app/_manifests/tags/v6/current/link"));
    let revs = std::fs::read_dir(v2.join("repositories/team/app/_manifests/revisions/sha256")).unwrap();
    let with_subject = revs
        .flatten()
        .filter(|e| {
            let hex = e.file_name().to_string_lossy().into_owned();
            let data = std::fs::read(v2.join("blobs/sha256").join(&hex[..2]).join(&hex).join("data")).unwrap();
            serde_json::from_slice::<serde_json::Value>(&data).unwrap()["subject"]["digest"] == v6.as_str()
        })
        .count();
    assert_eq!(with_subject, 1, "the SBOM of v6 survives --delete-untagged");
}

#[test]
fn gc_removes_stale_layer_links_and_old_uploads_that_the_reference_keeps() {
    let store = store_with_api_deletes();
    let ours = copy_store(store.path());
    let report = regsweep_json(&["gc", "--root", ours.path().to_str().unwrap(), "--grace", "0s"]);
    assert!(report["layer_links_deleted"].as_u64().unwrap() > 0);
    assert_eq!(report["uploads_deleted"], 1);
    let reg = Registry::serve(ours.path());
    reg.assert_all_tags_pull(ours.path());
}

#[test]
fn grace_protects_young_blobs() {
    let store = store_with_api_deletes();
    let root = store.path().to_str().unwrap();
    // The API deletes just made revisions disappear, but every file is from 2026-01-01: so with
    // the default grace everything unreferenced goes; touch the blobs and nothing does.
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("find {}/docker/registry/v2/blobs -name data -exec touch {{}} +", store.path().display()))
        .status()
        .unwrap();
    assert!(st.success());
    let r = regsweep_json(&["gc", "--root", root, "--dry-run"]);
    assert_eq!(r["blobs_deleted"], 0);
    assert!(r["grace_kept"]["blobs"].as_u64().unwrap() > 0);
    let r = regsweep_json(&["gc", "--root", root, "--dry-run", "--grace", "0s"]);
    assert!(r["blobs_deleted"].as_u64().unwrap() > 0);
}
