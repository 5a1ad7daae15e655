//! `regsweep check`: clean stores from the real registry check clean; each kind of damage is
//! found, named, and decides the exit status; `--repair` removes only links to nothing.

use crate::common;

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

/// Clean but for the legacy store's schema 1 tags, which registry 3.x will not serve.
#[test]
fn stores_from_the_real_registry_check_clean() {
    for name in ["demo", "legacy"] {
        let store = fixture(name);
        let (code, report) = check(store.path(), &["--verify-digests"]);
        assert_eq!(code, 0, "{report}");
        let not_v3: Vec<String> = kinds(&report).into_iter().filter(|k| k != "v3_unservable").collect();
        assert_eq!(not_v3, Vec::<String>::new(), "{name}");
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

/// `--repair` goes through the deletions of a prune: a tag pushed again since the check began
/// (here while the repair waits before its tags stage) is left, not removed as pointing to
/// nothing.
#[test]
fn repair_leaves_a_tag_pushed_again_since_the_check_began() {
    let store = fixture("demo");
    let root = store.path();
    let old = tag_digest(root, "team/app", "v2");
    std::fs::remove_dir_all(blob_dir(root, &old)).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_regsweep"));
    cmd.args(["check", "--root", root.to_str().unwrap(), "--repair", "--json"]);
    let run = stopped_at(cmd, "delete:tags");
    // v2 pushed again, onto v1's image, as the registry writes a tag: history entry, then link.
    let v1 = tag_digest(root, "team/app", "v1");
    let tag = v2(root).join("repositories/team/app/_manifests/tags/v2");
    let entry = tag.join("index/sha256").join(&v1[7..]);
    std::fs::create_dir_all(&entry).unwrap();
    std::fs::write(entry.join("link"), &v1).unwrap();
    std::fs::write(tag.join("current/link"), &v1).unwrap();
    signal(&run, "-CONT");
    let out = run.wait_with_output().unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(tag_digest(root, "team/app", "v2"), v1, "{report}");
    // Only the revision without blob went; the old history entry now names nothing.
    assert_eq!(report["repaired"], 1, "{report}");
    assert_eq!(kinds(&report), ["dangling_index_entry"], "{report}");
    let reg = Registry::serve(root);
    reg.pull("team/app", "v2").unwrap();
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
    // The tags it breaks are named: v6 and latest share the image.
    assert_eq!(kinds(&report), ["digest_mismatch", "tag_broken", "tag_broken"]);
    let broken: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "tag_broken")
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert!(broken[0].contains("/tags/latest/") && broken[1].contains("/tags/v6/"), "{broken:?}");
    assert!(report["problems"][1]["detail"].as_str().unwrap().contains(&format!("blob {layer} is corrupt")));
    // The real registry serves it, and a full pull, which checks every digest, fails.
    let reg = Registry::serve(store.path());
    assert!(reg.pull("team/app", "v6").is_err());
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
    // The revision folder of the deleted manifest is empty: the registry's own leftover, not an
    // interrupted write; removed by --repair once older than the grace period.
    let rev = v2(store.path()).join("repositories/team/app/_manifests/revisions/sha256").join(&d[7..]);
    assert!(rev.is_dir() && !rev.join("link").exists());
    let leftover: Vec<_> =
        report["problems"].as_array().unwrap().iter().filter(|p| p["path"] == rev.to_str().unwrap()).collect();
    assert_eq!(leftover.len(), 1, "{report}");
    assert_eq!(leftover[0]["kind"], "registry_leftover");
    check(store.path(), &["--repair"]);
    assert!(rev.is_dir(), "younger than the grace period: left");
    let (code, report) = check(store.path(), &["--repair", "--grace", "0s"]);
    assert_eq!(code, 0, "{report}");
    assert!(!rev.exists(), "repaired");
    assert!(!kinds(&report).contains(&"registry_leftover".to_string()));
}

/// Breaks one layer of `team/app:rc` with `damage`; check must call rc broken (exit 4), naming
/// it, as the real registry does (the pull fails).
fn layer_without_data(damage: fn(&Path)) {
    let store = fixture("demo");
    let layer = manifest_of(store.path(), "team/app", "rc")["layers"][1]["digest"].as_str().unwrap().to_string();
    damage(&blob_dir(store.path(), &layer).join("data"));
    let (code, report) = check(store.path(), &[]);
    assert_eq!(code, 4, "{report}");
    let broken: Vec<_> = report["problems"].as_array().unwrap().iter().filter(|p| p["kind"] == "tag_broken").collect();
    assert!(broken.iter().any(|p| p["path"].as_str().unwrap().contains("/tags/rc/")), "{report}");
    assert!(kinds(&report).contains(&"missing_blob".to_string()));
    let reg = Registry::serve(store.path());
    assert!(reg.pull("team/app", "rc").is_err(), "the registry cannot serve it either");
}

#[test]
fn a_blob_folder_without_its_data_breaks_the_tags_that_use_it() {
    layer_without_data(|data| std::fs::remove_file(data).unwrap());
}

#[test]
fn a_blob_whose_data_is_a_folder_breaks_the_tags_that_use_it() {
    layer_without_data(|data| {
        std::fs::remove_file(data).unwrap();
        std::fs::create_dir(data).unwrap();
    });
}

#[test]
fn a_manifest_with_duplicate_keys_is_read_as_the_registry_reads_it() {
    // Go's encoding/json takes the last of duplicate keys; the registry serves such a manifest
    // and skopeo pulls it. Here the first `layers` is empty, the last the real one: reading the
    // first would let a prune sweep the layers of a kept tag.
    use sha2::Digest as _;
    let store = fixture("demo");
    let root = store.path();
    let old = std::fs::read_to_string(blob_data(root, &tag_digest(root, "team/app", "v1"))).unwrap();
    let dup = old.replacen('{', r#"{"layers":[],"#, 1);
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(dup.as_bytes())));
    let data = blob_data(root, &digest);
    std::fs::create_dir_all(data.parent().unwrap()).unwrap();
    std::fs::write(&data, &dup).unwrap();
    let repo = v2(root).join("repositories/team/app/_manifests");
    for dir in [repo.join("revisions/sha256").join(&digest[7..]), repo.join("tags/dup/current")] {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("link"), &digest).unwrap();
    }
    let (code, report) = check(root, &[]);
    assert_eq!((code, kinds(&report)), (0, vec![]), "{report}");
    let report = regsweep_json(&[
        "prune",
        "--root",
        root.to_str().unwrap(),
        "--keep",
        "2",
        "--keep-tag",
        "^dup$",
        "--grace",
        "0s",
    ]);
    assert!(tags_with(&report, "team/app", "delete").contains("v1"));
    let reg = assert_served(root, &report);
    reg.pull("team/app", "dup").unwrap();
}

#[test]
fn the_next_run_removes_the_empty_folders_of_api_deletes_after_the_grace() {
    let store = fixture("demo");
    let reg = Registry::serve(store.path());
    let d = tag_digest(store.path(), "team/app", "rc");
    assert_eq!(reg.status("DELETE", &format!("/v2/team/app/manifests/{d}"), ""), Some(202));
    drop(reg);
    let rev = v2(store.path()).join("repositories/team/app/_manifests/revisions/sha256").join(&d[7..]);
    assert!(rev.is_dir());
    let report = regsweep_json(&["gc", "--root", store.path().to_str().unwrap()]);
    assert!(rev.is_dir(), "younger than the grace period: left ({report})");
    let report = regsweep_json(&["gc", "--root", store.path().to_str().unwrap(), "--grace", "0s"]);
    assert!(!rev.exists(), "{report}");
    assert!(report["leftovers_deleted"].as_u64().unwrap() >= 1);
}

/// What [`not_for_v3`] made of the legacy store, and what `check` must name.
pub(crate) struct NotForV3 {
    /// The tags 3.x will not serve, as `repo:tag`.
    pub(crate) tags: Vec<String>,
    /// The untagged schema 1 manifests, as `repo@digest`.
    pub(crate) untagged: Vec<String>,
}

/// The legacy store (Docker manifest lists, and signed schema 1 images as 2.8.2 wrote them)
/// with what else registry 3.x refuses: a manifest list tagged `multi` over schema 1 `v1`, a
/// schema 1 manifest whose `mediaType` says OCI tagged `typed` (2.8 reads any `schemaVersion: 1`
/// as schema 1), and schema 1 `v3` left untagged (its tag folder removed, as
/// `--delete-untagged` would find it).
pub(crate) fn not_for_v3(root: &Path) -> NotForV3 {
    const REPO: &str = "legacy/schema1";
    let tags = v2(root).join("repositories").join(REPO).join("_manifests/tags");
    let put_tagged = |tag: &str, manifest: serde_json::Value| {
        let (d, _) = put_old_blob(root, REPO, &serde_json::to_vec(&manifest).unwrap(), "_manifests/revisions/sha256");
        let entry = tags.join(tag).join("index/sha256").join(&d[7..]);
        std::fs::create_dir_all(&entry).unwrap();
        std::fs::write(entry.join("link"), &d).unwrap();
        std::fs::create_dir_all(tags.join(tag).join("current")).unwrap();
        std::fs::write(tags.join(tag).join("current/link"), &d).unwrap();
    };
    let v1 = tag_digest(root, REPO, "v1");
    let v3 = tag_digest(root, REPO, "v3");
    let size = std::fs::metadata(blob_data(root, &v1)).unwrap().len();
    put_tagged(
        "multi",
        serde_json::json!({"schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
            "manifests": [{"mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws",
                "digest": v1, "size": size, "platform": {"architecture": "amd64", "os": "linux"}}]}),
    );
    let mut typed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob_data(root, &tag_digest(root, REPO, "v2"))).unwrap()).unwrap();
    typed["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
    put_tagged("typed", typed);
    std::fs::remove_dir_all(tags.join("v3")).unwrap();
    NotForV3 {
        tags: ["multi", "typed", "v1", "v2"].map(|t| format!("{REPO}:{t}")).to_vec(),
        untagged: vec![format!("{REPO}@{v3}")],
    }
}

/// What a `check --json` report names as registry 3.x's refusals: (`repo:tag` of tags,
/// `repo@digest` of untagged manifests), each sorted.
pub(crate) fn named_not_for_v3(report: &serde_json::Value) -> (Vec<String>, Vec<String>) {
    let (mut tags, mut untagged) = (Vec::new(), Vec::new());
    for p in report["problems"].as_array().unwrap().iter().filter(|p| p["kind"] == "v3_unservable") {
        let (repo, path) = (p["repo"].as_str().unwrap(), p["path"].as_str().unwrap());
        let inside = path.split(&format!("/{repo}/_manifests/")).nth(1).unwrap();
        if let Some(tag) = inside.strip_prefix("tags/").and_then(|t| t.strip_suffix("/current/link")) {
            tags.push(format!("{repo}:{tag}"));
        } else {
            let hex = inside.strip_prefix("revisions/sha256/").unwrap().strip_suffix("/link").unwrap();
            untagged.push(format!("{repo}@sha256:{hex}"));
        }
        assert_eq!((&p["breaks_pull"], &p["repairable"]), (&false.into(), &false.into()), "{p}");
    }
    tags.sort();
    untagged.sort();
    (tags, untagged)
}

/// Issue 33, "ready to upgrade?": the tags `check` names as ones registry 3.x will not serve
/// answer an error on 3.1.1 and pull whole from 2.8.2, the same store served by both; every
/// tag it does not name pulls from both. A store 2.8 serves whole exits 0.
#[test]
fn check_names_the_tags_registry_3_will_not_serve_and_both_registries_agree() {
    if Version::V3.available("check_names_the_tags_registry_3_will_not_serve").is_none() {
        return;
    }
    let store = fixture("legacy");
    let root = store.path();
    let want = not_for_v3(root);
    let (code, report) = check(root, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(named_not_for_v3(&report), (want.tags.clone(), want.untagged.clone()), "{report}");
    assert!(kinds(&report).iter().all(|k| k == "v3_unservable"), "{report}");
    // Judged as 3.x serves it, the same store is broken.
    let (code, on_v3) = check(root, &["--for-registry", "3"]);
    assert_eq!(code, 4, "{on_v3}");
    assert!(on_v3["problems"].as_array().unwrap().iter().all(|p| p["breaks_pull"] == true), "{on_v3}");

    let (old, new) = (Registry::serve_version(root, Version::V2), Registry::serve_version(root, Version::V3));
    for (repo, tag) in tags_on_disk(root) {
        let name = format!("{repo}:{tag}");
        old.pull(&repo, &tag).unwrap_or_else(|e| panic!("{name} from 2.8.2: {e}"));
        let on_v3 = new.pull(&repo, &tag);
        if want.tags.contains(&name) {
            assert!(on_v3.is_err(), "{name} pulls from 3.1.1");
        } else {
            on_v3.unwrap_or_else(|e| panic!("{name} from 3.1.1: {e}"));
        }
    }
    // A schema 1 manifest answers 500 on 3.1.1 (HEAD and GET, by tag and by digest), 200 on
    // 2.8.2; the list over one is served itself, its child is not.
    let s1 = "application/vnd.docker.distribution.manifest.v1+prettyjws, application/json";
    let repo = "legacy/schema1";
    let refs = ["v1".to_string(), tag_digest(root, repo, "v2"), want.untagged[0].split('@').nth(1).unwrap().into()];
    for r in &refs {
        let path = format!("/v2/{repo}/manifests/{r}");
        for (method, accept) in [("HEAD", s1), ("GET", s1), ("GET", "")] {
            assert_eq!(new.status(method, &path, accept), Some(500), "3.1.1: {method} {path} ({accept})");
            assert_eq!(old.status(method, &path, accept), Some(200), "2.8.2: {method} {path} ({accept})");
        }
        assert_eq!(new.manifest_status(repo, r), 500, "{r}");
    }
    assert_eq!(new.manifest_status(repo, "multi"), 200);
    // 3.1.1's collector stops on the first schema 1 manifest it marks; 2.8.2's marks them.
    for reg in [&old, &new] {
        let out = reg.version.command().args(["garbage-collect", "--dry-run"]).arg(reg.config_path()).output().unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let stopped = said.contains("unrecognized manifest schema version 1");
        assert_eq!((out.status.success(), stopped), (reg.version == Version::V2, reg.version == Version::V3), "{said}");
    }
}
