//! `regsweep check`: clean stores from the real registry check clean; each kind of damage is
//! found, named, and decides the exit status; `--repair` removes only links to nothing.

mod common;

use std::path::Path;

use common::*;

fn check(root: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["check", "--root", root.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = regsweep(&args);
    let report =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), report)
}

fn kinds(report: &serde_json::Value) -> Vec<String> {
    report["problems"].as_array().unwrap().iter().map(|p| p["kind"].as_str().unwrap().to_string()).collect()
}

fn blob_dir(root: &Path, digest: &str) -> std::path::PathBuf {
    blob_data(root, digest).parent().unwrap().to_path_buf()
}

fn manifest_of(root: &Path, repo: &str, tag: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(blob_data(root, &tag_digest(root, repo, tag))).unwrap()).unwrap()
}

#[test]
fn stores_from_the_real_registry_check_clean() {
    for name in ["demo", "legacy"] {
        let store = fixture(name);
        let (code, report) = check(store.path(), &["--verify-digests"]);
        assert_eq!(code, 0, "{report}");
        assert_eq!(kinds(&report), Vec::<String>::new(), "{name}");
        assert_eq!(report["blobs_verified"], report["blobs"]);
    }
}

#[test]
fn a_missing_layer_breaks_the_tag_and_the_exit_status_says_so() {
    let store = fixture("demo");
    let layer = manifest_of(store.path(), "team/app", "rc")["layers"][1]["digest"].as_str().unwrap().to_string();
    std::fs::remove_dir_all(blob_dir(store.path(), &layer)).unwrap();
    let (code, report) = check(store.path(), &[]);
    assert_eq!(code, 4);
    let k = kinds(&report);
    assert!(k.contains(&"missing_blob".into()) && k.contains(&"tag_broken".into()), "{k:?}");
    let broken: Vec<_> = report["problems"].as_array().unwrap().iter().filter(|p| p["kind"] == "tag_broken").collect();
    assert!(broken.iter().any(|p| p["path"].as_str().unwrap().contains("/tags/rc/")), "{broken:?}");
    // The real registry agrees: that tag no longer pulls.
    let reg = Registry::serve(store.path());
    assert!(reg.pull("team/app", "rc").is_err());
}

#[test]
fn repair_removes_links_to_nothing_and_never_a_blob() {
    let store = fixture("demo");
    let root = store.path();
    // A revision whose manifest blob is gone (and the tag pointing to it), a layer link to a
    // blob that is gone, a tag history entry naming a manifest that is gone.
    let d = read_link(&v2(root).join("repositories/team/app/_manifests/tags/v2/current/link"));
    std::fs::remove_dir_all(blob_dir(root, &d)).unwrap();
    let ghost = format!("sha256:{}", "ab".repeat(32));
    let layers = v2(root).join("repositories/team/app/_layers/sha256").join(&ghost[7..]);
    std::fs::create_dir_all(&layers).unwrap();
    std::fs::write(layers.join("link"), &ghost).unwrap();
    let index = v2(root).join("repositories/team/app/_manifests/tags/v3/index/sha256").join(&ghost[7..]);
    std::fs::create_dir_all(&index).unwrap();
    std::fs::write(index.join("link"), &ghost).unwrap();
    let blobs_before = store_state(root).blobs;

    let (code, report) = check(root, &[]);
    assert_eq!(code, 4);
    let k = kinds(&report);
    for kind in ["revision_without_blob", "tag_broken", "dangling_layer_link", "dangling_index_entry"] {
        assert!(k.contains(&kind.to_string()), "{kind} not in {k:?}");
    }
    let (code, report) = check(root, &["--repair"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(kinds(&report), Vec::<String>::new());
    assert!(report["repaired"].as_u64().unwrap() >= 4);
    assert_eq!(store_state(root).blobs, blobs_before, "repair never deletes a blob");
    assert!(!v2(root).join("repositories/team/app/_manifests/tags/v2").exists());
    let reg = Registry::serve(root);
    reg.assert_all_tags_pull(root);
}

#[test]
fn malformed_links_and_leftovers_are_reported() {
    let store = fixture("demo");
    let root = store.path();
    let link = v2(root).join("repositories/team/multi/_manifests/tags/2026.2/current/link");
    let text = read_link(&link);
    std::fs::write(&link, format!("{text}\n")).unwrap();
    let tmp = v2(root).join("repositories/team/app/_manifests/tags/rc/current/link.3f2a.tmp");
    std::fs::write(&tmp, "").unwrap();
    let (code, report) = check(root, &[]);
    assert_eq!(code, 4, "a tag whose link is malformed does not pull");
    let k = kinds(&report);
    assert!(k.contains(&"malformed_link".into()) && k.contains(&"tmp_file".into()), "{k:?}");
    // Leftovers alone break nothing.
    std::fs::write(&link, text).unwrap();
    let (code, report) = check(root, &[]);
    assert_eq!((code, kinds(&report)), (0, vec!["tmp_file".to_string()]));
}

#[test]
fn verify_digests_finds_a_corrupt_blob() {
    let store = fixture("demo");
    let layer = manifest_of(store.path(), "team/app", "v6")["layers"][1]["digest"].as_str().unwrap().to_string();
    let data = blob_dir(store.path(), &layer).join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    assert_eq!(check(store.path(), &[]).0, 0, "without --verify-digests the content is not read");
    let (code, report) = check(store.path(), &["--verify-digests"]);
    assert_eq!(code, 4);
    assert_eq!(kinds(&report), ["digest_mismatch"]);
}

#[test]
fn api_deletes_leave_history_entries_that_are_only_leftovers() {
    let store = fixture("demo");
    let reg = Registry::serve(store.path());
    let d = read_link(&v2(store.path()).join("repositories/team/app/_manifests/tags/rc/current/link"));
    // Delete rc's current image: rc goes, its older history entry (rc1) stays, as in 2.8.
    assert_eq!(reg.status("DELETE", &format!("/v2/team/app/manifests/{d}"), ""), Some(202));
    drop(reg);
    let (code, report) = check(store.path(), &[]);
    assert_eq!(code, 0, "{report}");
}
