//! Hostile input, one case a test: each gets a clear error naming the path, or a documented safe
//! handling; never a panic, nothing outside the plan deleted, nothing outside the root touched.

use crate::common;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use common::*;

fn gc_refused(root: &Path, needle: &str) {
    assert_refused(root, &["gc", "--root", root.to_str().unwrap(), "--grace", "0s", "--quiet"], needle);
}

fn app_link(root: &Path, tag: &str) -> std::path::PathBuf {
    v2(root).join("repositories/team/app/_manifests/tags").join(tag).join("current/link")
}

/// The revision link of `team/app:v4`: every run reads it.
fn revision_link(root: &Path) -> std::path::PathBuf {
    let digest = read_link(&app_link(root, "v4"));
    v2(root).join("repositories/team/app/_manifests/revisions/sha256").join(&digest[7..]).join("link")
}

#[test]
fn empty_link() {
    let store = fixture("demo");
    let link = revision_link(store.path());
    std::fs::write(&link, "").unwrap();
    gc_refused(store.path(), &link.display().to_string());
}

#[test]
fn link_with_a_newline() {
    let store = fixture("demo");
    let link = revision_link(store.path());
    let text = read_link(&link);
    std::fs::write(&link, format!("{text}\n")).unwrap();
    gc_refused(store.path(), "followed by white space");
}

#[test]
fn link_naming_another_algorithm() {
    let store = fixture("demo");
    let link = revision_link(store.path());
    std::fs::write(&link, format!("sha512:{}", "ab".repeat(64))).unwrap();
    gc_refused(store.path(), &link.display().to_string());
}

#[test]
fn empty_tag_link() {
    // A prune reads every tag link; a plain gc keeps every revision and reads none (as the
    // reference collector), so it neither stops on it nor loses anything.
    let store = fixture("demo");
    let root = store.path();
    let link = app_link(root, "v4");
    std::fs::write(&link, "").unwrap();
    let args = ["prune", "--root", root.to_str().unwrap(), "--keep", "1", "--grace", "0s", "--quiet"];
    assert_refused(root, &args, &link.display().to_string());
    let before = store_state(root).revisions;
    regsweep_json(&["gc", "--root", root.to_str().unwrap(), "--grace", "0s", "--quiet"]);
    assert_eq!(store_state(root).revisions, before);
}

#[test]
fn link_whose_content_differs_from_its_path() {
    // The content counts (docs/DESIGN.md section 1): an alias revision keeps the manifest it names, and both
    // digests are kept; the collection agrees with the reference collector.
    let store = fixture("demo");
    let root = store.path();
    let target = read_link(&app_link(root, "v1"));
    let alias = v2(root).join("repositories/team/app/_manifests/revisions/sha256").join("cd".repeat(32));
    std::fs::create_dir_all(&alias).unwrap();
    std::fs::write(alias.join("link"), &target).unwrap();
    std::fs::remove_dir_all(v2(root).join("repositories/team/app/_manifests/tags/v1")).unwrap();
    std::fs::remove_dir_all(v2(root).join("repositories/team/app/_manifests/revisions/sha256").join(&target[7..]))
        .unwrap();
    let report = regsweep_json(&["gc", "--root", root.to_str().unwrap(), "--grace", "0s", "--quiet"]);
    assert_eq!(report["manifests_deleted"], 0);
    assert!(store_state(root).blobs.contains(&target[7..]), "the manifest an alias names stays");
}

#[test]
fn symlink_loop() {
    let store = fixture("demo");
    let link = v2(store.path()).join("repositories/team/loop");
    std::os::unix::fs::symlink(&link, &link).unwrap();
    gc_refused(store.path(), &link.display().to_string());
}

#[test]
fn symlinked_blob_folder_pointing_outside() {
    let store = fixture("demo");
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("precious");
    std::fs::write(&victim, "keep me").unwrap();
    let link = v2(store.path()).join("blobs/sha256/ee");
    std::os::unix::fs::symlink(outside.path(), &link).unwrap();
    gc_refused(store.path(), &link.display().to_string());
    assert!(victim.exists());
}

#[test]
fn non_utf8_name() {
    let store = fixture("demo");
    let dir = v2(store.path()).join("repositories/team").join(std::ffi::OsStr::from_bytes(b"bad\xffname"));
    std::fs::create_dir_all(dir.join("_layers")).unwrap();
    gc_refused(store.path(), "not UTF-8");
}

#[test]
fn a_100_mb_manifest() {
    let store = fixture("demo");
    let root = store.path();
    let d = tag_digest(root, "team/app", "rc");
    let data = blob_data(root, &d);
    std::fs::OpenOptions::new().write(true).open(&data).unwrap().set_len(100 << 20).unwrap();
    gc_refused(root, "more than the 4194304 regsweep reads");
}

#[test]
fn a_deeply_nested_manifest() {
    let store = fixture("demo");
    let root = store.path();
    let d = tag_digest(root, "team/app", "rc");
    let data = blob_data(root, &d);
    std::fs::write(&data, format!("{}{}", "[".repeat(200_000), "]".repeat(200_000))).unwrap();
    gc_refused(root, &d);
}

#[test]
fn a_folder_without_permission() {
    // Root reads anything: run as nobody on a store nobody owns, but for one folder.
    let store = fixture("demo");
    let root = store.path();
    let st = Command::new("chown").args(["-R", "65534:65534"]).arg(root).status().unwrap();
    assert!(st.success());
    let closed = v2(root).join("repositories/team/multi/_manifests/tags");
    let st = Command::new("chmod").arg("000").arg(&closed).status().unwrap();
    assert!(st.success());
    let before = snapshot_without_lock(root);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_regsweep"))
        .args(["gc", "--grace", "0s", "--quiet", "--root"])
        .arg(root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&closed.display().to_string()) && err.contains("ermission denied"), "{err}");
    assert!(before == snapshot_without_lock(root), "nothing may change");
}

#[test]
fn no_repositories_folder() {
    // The reference collector aborts here (distribution#3200); so does regsweep, rather than
    // sweep every blob of a store whose repositories are perhaps just not mounted.
    let store = fixture("demo");
    std::fs::rename(v2(store.path()).join("repositories"), store.path().join("elsewhere")).unwrap();
    gc_refused(store.path(), "refusing to treat every blob as garbage");
}

#[test]
fn an_empty_store() {
    let store = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(v2(store.path())).unwrap();
    let r = regsweep_json(&["gc", "--root", store.path().to_str().unwrap(), "--quiet"]);
    assert_eq!((r["repositories"].as_u64(), r["blobs_deleted"].as_u64()), (Some(0), Some(0)));
    let r = regsweep_json(&["prune", "--root", store.path().to_str().unwrap(), "--keep", "1", "--quiet"]);
    assert_eq!(r["tags_deleted"], 0);
}

#[test]
fn root_is_slash() {
    let out = regsweep(&["gc", "--root", "/", "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a registry store"));
}

#[test]
fn symlinked_tag_folder_inside_a_tag() {
    // `current` of a tag a prune would delete is a link to a folder outside: refused, and the
    // outside `link` is untouched (unlinking `v1/current/link` would have followed it).
    let store = fixture("demo");
    let root = store.path();
    let outside = tempfile::tempdir().unwrap();
    let current = app_link(root, "v1").parent().unwrap().to_path_buf();
    std::fs::copy(current.join("link"), outside.path().join("link")).unwrap();
    std::fs::remove_dir_all(&current).unwrap();
    std::os::unix::fs::symlink(outside.path(), &current).unwrap();
    let args = ["prune", "--root", root.to_str().unwrap(), "--keep", "1", "--grace", "0s", "--quiet"];
    assert_refused(root, &args, "symbolic link");
    assert!(outside.path().join("link").exists());
}
