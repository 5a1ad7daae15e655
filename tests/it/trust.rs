//! Trust, round 2 (issue 12): what an adversary and a new operator found, one test a case. A
//! partly failed run, a full disk, FIFOs where files should be, `--keep 0`, orphan attachments,
//! and what an operator meets (exit codes, messages, reports).

use crate::common;

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
    // Each is an error of kind delete_failed naming its folder, and nothing else went wrong.
    let errors = report["errors"].as_array().unwrap();
    assert!(errors.iter().all(|e| e["kind"] == "delete_failed"), "{report}");
    let mut named: Vec<&str> = errors.iter().map(|e| e["path"].as_str().unwrap()).collect();
    let mut listed = failed.clone();
    named.sort();
    listed.sort();
    assert_eq!(named, listed);
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

/// A small file system mounted on a temporary folder (tmpfs, or ext4 on a loop image made with
/// `mkfs.ext4 -m 0`), unmounted when dropped; `None` where mounting is not allowed.
struct Mounted {
    dir: tempfile::TempDir,
    _image: Option<tempfile::NamedTempFile>,
}

impl Mounted {
    fn new(kind: &str) -> Option<Mounted> {
        if kind == "tmpfs" {
            return Mounted::tmpfs("size=8m");
        }
        let dir = tempfile::tempdir().unwrap();
        let image = tempfile::NamedTempFile::new().unwrap();
        image.as_file().set_len(16 << 20).unwrap();
        let made = Command::new("mkfs.ext4").args(["-q", "-F", "-m", "0"]).arg(image.path()).status();
        if !made.is_ok_and(|s| s.success()) {
            return None;
        }
        let status = Command::new("mount").args(["-o", "loop"]).arg(image.path()).arg(dir.path()).status();
        status.is_ok_and(|s| s.success()).then_some(Mounted { dir, _image: Some(image) })
    }

    /// A tmpfs mounted with these options (`size=`, `nr_inodes=`).
    fn tmpfs(options: &str) -> Option<Mounted> {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount").args(["-t", "tmpfs", "-o", options, "tmpfs"]).arg(dir.path()).status();
        st.is_ok_and(|s| s.success()).then_some(Mounted { dir, _image: None })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills every free block with a file outside the store.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.path().join("fill")).unwrap();
        let block = vec![0xa5u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        let mut small = std::fs::File::create(self.path().join("fill-small")).unwrap();
        while small.write_all(&[0]).and_then(|()| small.sync_all()).is_ok() {}
    }

    /// Takes every free inode with an empty file outside the store.
    fn fill_inodes(&self) {
        let dir = self.path().join("fill-inodes");
        std::fs::create_dir(&dir).unwrap();
        for i in 0.. {
            if let Err(e) = std::fs::File::create(dir.join(i.to_string())) {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                return;
            }
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Every path of a store (the lock file and the fill files aside).
fn paths(root: &Path) -> std::collections::BTreeSet<String> {
    walkdir::WalkDir::new(root.join("docker"))
        .into_iter()
        .map(|e| e.unwrap().path().strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .filter(|p| !p.ends_with(".regsweep.lock"))
        .collect()
}

/// The demo store unpacked onto a file system of `kind`.
fn demo_on(kind: &str) -> Option<Mounted> {
    let m = Mounted::new(kind)?;
    let tarball = top().join("fixtures/demo.tar.gz");
    assert!(Command::new("tar").arg("-xzf").arg(&tarball).arg("-C").arg(m.path()).status().unwrap().success());
    Some(m)
}

fn full_disk_prune_ends_as_on_a_roomy_disk(kind: &str) {
    let Some(m) = demo_on(kind) else {
        eprintln!("skipped: cannot mount {kind} here");
        return;
    };
    let roomy = fixture("demo");
    let args = |root: &Path| -> Vec<String> {
        ["prune", "--root", s(root), "--keep", "2"].iter().map(|a| a.to_string()).collect()
    };
    let expected = regsweep_json(&args(roomy.path()).iter().map(String::as_str).collect::<Vec<_>>());
    m.fill();
    let a = args(m.path());
    let (code, report) = json_run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{report}");
    assert_eq!(paths(m.path()), paths(roomy.path()), "the full disk ends where the roomy one does");
    for key in ["tags_deleted", "manifests_deleted", "blobs_deleted", "uploads_deleted", "bytes_freed"] {
        assert_eq!(report[key], expected[key], "{key}");
    }
    assert!(!v2(m.path()).join(".regsweep-journal.json.tmp").exists());
}

#[test]
fn a_prune_on_a_full_tmpfs_ends_as_on_a_roomy_disk() {
    full_disk_prune_ends_as_on_a_roomy_disk("tmpfs");
}

#[test]
fn a_prune_on_a_full_ext4_ends_as_on_a_roomy_disk() {
    full_disk_prune_ends_as_on_a_roomy_disk("ext4");
}

#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs the test hooks: cargo test --features test-hooks")]
fn a_prune_on_a_store_without_a_free_inode_is_exclusive_and_ends_as_on_a_roomy_disk() {
    // No inode for the lock file: the run locks the store's folder itself, and still frees.
    let Some(m) = Mounted::tmpfs("size=64m,nr_inodes=2048") else {
        eprintln!("skipped: cannot mount tmpfs here");
        return;
    };
    let tarball = top().join("fixtures/demo.tar.gz");
    assert!(Command::new("tar").arg("-xzf").arg(&tarball).arg("-C").arg(m.path()).status().unwrap().success());
    let roomy = fixture("demo");
    let expected = regsweep_json(&["prune", "--root", s(roomy.path()), "--keep", "2"]);
    m.fill_inodes();
    let lock = v2(m.path()).join(".regsweep.lock");
    assert!(!lock.exists());
    let first = prune_stopped_at(m.path(), "journal");
    let (code, text) = run_bounded(&["prune", "--root", s(m.path()), "--keep", "2"]);
    assert_eq!(code, 1, "a second run while the first holds the store: {text}");
    assert!(text.contains("holds the lock"), "{text}");
    signal(&first, "-CONT");
    let out = first.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{report} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(paths(m.path()), paths(roomy.path()), "the store without inodes ends where the roomy one does");
    for key in ["tags_deleted", "manifests_deleted", "blobs_deleted", "uploads_deleted", "bytes_freed"] {
        assert_eq!(report[key], expected[key], "{key}");
    }
}

#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs the test hooks: cargo test --features test-hooks")]
fn gc_finishes_an_interrupted_prune_on_a_full_disk() {
    let Some(m) = demo_on("ext4") else {
        eprintln!("skipped: cannot mount ext4 here");
        return;
    };
    let roomy = fixture("demo");
    regsweep_json(&["prune", "--root", s(roomy.path()), "--keep", "2"]);
    // Killed after a few deletions: the journal stays.
    let crashed = Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args(["prune", "--root", s(m.path()), "--keep", "2", "--quiet"])
        .env("REGSWEEP_TEST_CRASH_AFTER", "3")
        .output()
        .unwrap();
    assert!(!crashed.status.success());
    assert!(v2(m.path()).join(".regsweep-journal.json").exists());
    m.fill();
    let (code, report) = json_run(&["gc", "--root", s(m.path())]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(paths(m.path()), paths(roomy.path()), "gc finished the prune: same end");
}

/// Runs regsweep, killed (and the test failed) after 30 s: a hang is the bug.
fn run_bounded(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            panic!("regsweep {args:?} hangs");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// Replaces a file with a FIFO.
fn make_fifo(path: &Path) {
    std::fs::remove_file(path).unwrap();
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

/// A FIFO in place of one file of the demo store: prune and gc refuse it with an error naming it
/// where they read it (exit 1, nothing deleted), check names it, none hangs.
fn fifo_case(rel: impl Fn(&Path) -> PathBuf, prune_reads: bool, gc_reads: bool) {
    let store = fixture("demo");
    let root = store.path();
    let path = rel(root);
    make_fifo(&path);
    let shown = s(&path);
    for (cmd, reads) in [("prune", prune_reads), ("gc", gc_reads)] {
        let copy = copy_store(root);
        let before = snapshot_without_lock(copy.path());
        let on_copy = s(&path).replace(s(root), s(copy.path()));
        let args = if cmd == "prune" {
            vec![cmd, "--root", s(copy.path()), "--keep", "2"]
        } else {
            vec![cmd, "--root", s(copy.path())]
        };
        let (code, text) = run_bounded(&args);
        if reads {
            assert_eq!(code, 1, "{cmd}: {text}");
            assert!(
                text.contains(&on_copy) && text.contains("not a regular file"),
                "{cmd} must name {on_copy}: {text}"
            );
            assert!(before == snapshot_without_lock(copy.path()), "{cmd}: nothing may change");
        } else {
            assert!(code == 0 || code == 1, "{cmd}: {text}");
        }
    }
    let (code, text) = run_bounded(&["check", "--root", s(root)]);
    assert_eq!(code, 4, "check: a tag that uses it fails a pull: {text}");
    assert!(text.contains(shown), "check must name {shown}: {text}");
}

fn app(root: &Path) -> PathBuf {
    v2(root).join("repositories/team/app")
}

#[test]
fn a_fifo_as_a_tag_link() {
    fifo_case(|r| app(r).join("_manifests/tags/latest/current/link"), true, false);
}

#[test]
fn a_fifo_as_a_revision_link() {
    fifo_case(
        |r| {
            let hex = &tag_digest(r, "team/app", "latest")[7..];
            app(r).join("_manifests/revisions/sha256").join(hex).join("link")
        },
        true,
        true,
    );
}

#[test]
fn a_fifo_as_a_layer_link() {
    fifo_case(
        |r| {
            let manifest: serde_json::Value =
                serde_json::from_slice(&std::fs::read(blob_data(r, &tag_digest(r, "team/app", "latest"))).unwrap())
                    .unwrap();
            let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_string();
            app(r).join("_layers/sha256").join(&layer[7..]).join("link")
        },
        false,
        false,
    );
}

#[test]
fn a_fifo_as_a_kept_manifests_data() {
    fifo_case(|r| blob_data(r, &tag_digest(r, "team/app", "latest")), true, true);
}

#[test]
fn a_fifo_as_an_uploads_startedat() {
    let store = fixture("demo");
    let root = store.path();
    let uploads = app(root).join("_uploads");
    let id = std::fs::read_dir(&uploads).unwrap().next().unwrap().unwrap().file_name();
    let path = uploads.join(id).join("startedat");
    make_fifo(&path);
    for args in [vec!["prune", "--root", s(root), "--keep", "2"], vec!["gc", "--root", s(root)]] {
        let (code, text) = run_bounded(&args);
        assert_eq!(code, 1, "{text}");
        assert!(text.contains(s(&path)), "{text}");
    }
    let (code, text) = run_bounded(&["check", "--root", s(root)]);
    assert!(code == 0, "an upload is no tag: {text}");
}

/// A FIFO, folder or symbolic link where a file of the store should be, one a case.
const NOT_FILES: [&str; 3] = ["FIFO", "folder", "symbolic link"];

/// Puts a `kind` of [`NOT_FILES`] at `path` (a symbolic link to `target`).
fn make_not_file(kind: &str, path: &Path, target: &Path) {
    let _ = std::fs::remove_file(path);
    match kind {
        "FIFO" => assert!(Command::new("mkfifo").arg(path).status().unwrap().success()),
        "folder" => std::fs::create_dir(path).unwrap(),
        _ => std::os::unix::fs::symlink(target, path).unwrap(),
    }
}

/// A run that would delete a non-file (`at`, on the store `root`) is refused before anything
/// goes: exit 1, the path named, nothing changed, the file a symbolic link names untouched.
fn refused_to_delete(args: &[&str], root: &Path, at: &Path, outside: &Path) {
    let before = snapshot_without_lock(root);
    let (code, text) = run_bounded(args);
    assert_eq!(code, 1, "{args:?}: {text}");
    assert!(text.contains(s(at)) && text.contains("not a regular file"), "{args:?} must name {}: {text}", at.display());
    assert!(before == snapshot_without_lock(root), "{args:?}: nothing may change");
    assert_eq!(std::fs::read(outside).unwrap(), b"keep me");
}

/// `check` reports a non-file at `at` as `not_a_file`, and exits `code`.
fn checked_as_not_a_file(root: &Path, at: &Path, code: i32) {
    let (got, report) = json_run(&["check", "--root", s(root)]);
    assert_eq!(got, code, "{report}");
    let problems = report["problems"].as_array().unwrap();
    assert!(problems.iter().any(|p| p["kind"] == "not_a_file" && p["path"] == s(at)), "{report}");
}

#[test]
fn an_unreferenced_blob_whose_data_is_no_file_is_never_deleted_nor_followed() {
    for kind in NOT_FILES {
        let store = fixture("demo");
        let root = store.path();
        let outside = tempfile::tempdir().unwrap();
        let precious = outside.path().join("precious");
        std::fs::write(&precious, "keep me").unwrap();
        let data = v2(root).join("blobs/sha256/ab").join("ab".repeat(32)).join("data");
        std::fs::create_dir_all(data.parent().unwrap()).unwrap();
        make_not_file(kind, &data, &precious);
        refused_to_delete(&["prune", "--root", s(root), "--keep", "2", "--grace", "0s"], root, &data, &precious);
        refused_to_delete(&["gc", "--root", s(root), "--grace", "0s"], root, &data, &precious);
        checked_as_not_a_file(root, &data, 0);
    }
}

#[test]
fn a_fifo_as_the_layer_link_of_a_deleted_tag_is_never_deleted() {
    let store = fixture("demo");
    let root = store.path();
    // A layer link the prune deletes, found by running it on a copy.
    let args = |root: &Path| vec!["prune".to_string(), "--root".into(), s(root).into(), "--keep".into(), "2".into()];
    let copy = copy_store(root);
    regsweep_json(&args(copy.path()).iter().map(String::as_str).collect::<Vec<_>>());
    let layers = app(root).join("_layers/sha256");
    let link = std::fs::read_dir(&layers)
        .unwrap()
        .map(|e| e.unwrap().path().join("link"))
        .find(|l| !copy.path().join(l.strip_prefix(root).unwrap()).exists())
        .expect("the prune deletes a layer link of team/app");
    make_fifo(&link);
    let precious = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(precious.path(), "keep me").unwrap();
    refused_to_delete(&args(root).iter().map(String::as_str).collect::<Vec<_>>(), root, &link, precious.path());
    // gc keeps every tag and needs the link: it leaves it; check names it (a tag needs it).
    let (code, text) = run_bounded(&["gc", "--root", s(root)]);
    assert_eq!(code, 0, "{text}");
    assert!(link.exists());
    checked_as_not_a_file(root, &link, 4);
}

#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs the test hooks: cargo test --features test-hooks")]
fn a_fifo_put_in_place_of_a_planned_blobs_data_is_a_failed_deletion_naming_it() {
    let store = fixture("demo");
    let root = store.path();
    let data = v2(root).join("blobs/sha256/ab").join("ab".repeat(32)).join("data");
    std::fs::create_dir_all(data.parent().unwrap()).unwrap();
    std::fs::write(&data, "unreferenced").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    cmd.args(["gc", "--root", s(root), "--grace", "0s", "--json"]);
    let run = stopped_at(cmd, "journal");
    make_fifo(&data);
    // Old, as the file it replaces: else it would be left as written since the scan.
    assert!(Command::new("touch").args(["-d", "2020-01-01"]).arg(&data).status().unwrap().success());
    signal(&run, "-CONT");
    let out = run.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(3), "{report}");
    assert_eq!(report["failed"][0]["path"], s(data.parent().unwrap()), "{report}");
    assert!(report["failed"][0]["error"].as_str().unwrap().contains("not a regular file (a FIFO)"), "{report}");
    assert_eq!(report["errors"][0]["kind"], "delete_failed", "{report}");
    assert_eq!(report["errors"][0]["path"], s(data.parent().unwrap()), "{report}");
    assert!(data.exists(), "the FIFO stays");
}

/// The attachment tag naming `subject` (`sha256-<hex>.sig`).
fn sig_tag(subject: &str) -> String {
    format!("sha256-{}.sig", &subject[7..])
}

#[test]
fn orphan_attachments_in_another_repository_go_only_when_asked_and_only_when_their_subject_is_nowhere() {
    // cosign with COSIGN_REPOSITORY: signatures in team/sigs, images in team/app.
    let store = fixture("demo");
    let root = store.path();
    let latest = tag_digest(root, "team/app", "latest");
    let v1 = tag_digest(root, "team/app", "v1");
    let nowhere = format!("sha256:{}", "e".repeat(64));
    let reg = Registry::serve(root);
    for subject in [&latest, &v1, &nowhere] {
        let out = Command::new("skopeo")
            .args(["--insecure-policy", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false"])
            .arg(format!("docker://127.0.0.1:{}/team/app:{}", reg.port, sig_tag(&latest)))
            .arg(format!("docker://127.0.0.1:{}/team/sigs:{}", reg.port, sig_tag(subject)))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    drop(reg);
    let prune = |extra: &[&str]| {
        let mut a = vec!["prune", "--root", s(root), "--keep", "2", "--grace", "0s"];
        a.extend_from_slice(extra);
        regsweep_json(&a)
    };
    let plain = prune(&["--dry-run"]);
    assert_eq!(tags_with(&plain, "team/sigs", "keep").len(), 3, "kept by default: the subject may be elsewhere");
    let plan = prune(&["--dry-run", "--delete-orphan-attachments"]);
    let tag = |name: &str| {
        repo(&plan, "team/sigs")["tags"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap().clone()
    };
    let held = tag(&sig_tag(&latest));
    assert_eq!((held["action"].as_str(), held["reason"]["kind"].as_str()), (Some("keep"), Some("subject_in_repo")));
    assert_eq!(held["reason"]["repo"], "team/app", "the plan says which repository holds the subject");
    assert_eq!(tag(&sig_tag(&v1))["action"], "keep", "its subject still exists at the scan: it stays");
    // (All three copies are one manifest: the orphan's tag goes, the manifest stays for the others.)
    let orphan = tag(&sig_tag(&nowhere));
    assert_eq!(
        (orphan["action"].as_str(), orphan["reason"]["kind"].as_str()),
        (Some("untag"), Some("subject_missing"))
    );
    let report = prune(&["--delete-orphan-attachments"]);
    let reg = assert_served(root, &report);
    assert_eq!(reg.manifest_status("team/sigs", &sig_tag(&nowhere)), 404);
    reg.pull("team/sigs", &sig_tag(&latest)).unwrap();
}

#[test]
fn keep_zero_deletes_a_repositorys_only_tag() {
    let store = fixture("demo");
    let root = store.path();
    let reg = Registry::serve(root);
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(format!("docker://127.0.0.1:{}/team/app:rc", reg.port))
        .arg(format!("docker://127.0.0.1:{}/solo/app:only", reg.port))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(reg);
    let report = regsweep_json(&["prune", "--root", s(root), "--keep", "0", "--repo", "solo/app", "--grace", "0s"]);
    assert_eq!(tags_with(&report, "solo/app", "delete").len(), 1, "{report}");
    assert!(report["warnings"].as_array().unwrap().is_empty(), "one tag is no uniform push time: {report}");
    let reg = assert_served(root, &report);
    assert_eq!(reg.manifest_status("solo/app", "only"), 404);
}

#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs the test hooks: cargo test --features test-hooks")]
fn sigint_during_the_deletions_stops_says_what_was_done_and_a_rerun_finishes() {
    let store = fixture("demo");
    let root = store.path();
    let roomy = fixture("demo");
    regsweep_json(&["prune", "--root", s(roomy.path()), "--keep", "2"]);
    let child = prune_stopped_at(root, "blobs");
    signal(&child, "-INT");
    signal(&child, "-CONT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("interrupted")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("deleted 11 tags") && lines[0].contains("0 blobs") && lines[0].contains("run again"),
        "{err}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((report["interrupted"].as_bool(), report["blobs_deleted"].as_u64()), (Some(true), Some(0)));
    assert!(v2(root).join(".regsweep-journal.json").exists(), "the journal stays for the rerun");
    Registry::serve(root).assert_all_tags_pull(root);
    regsweep_json(&["prune", "--root", s(root), "--keep", "2"]);
    assert_eq!(paths(root), paths(roomy.path()), "the rerun ends as an uninterrupted run");
}

#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs the test hooks: cargo test --features test-hooks")]
fn sigint_before_the_first_deletion_changes_nothing() {
    let store = fixture("demo");
    let root = store.path();
    let before = snapshot_without_lock(root);
    let child = prune_stopped_at(root, "plan");
    signal(&child, "-INT");
    signal(&child, "-CONT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing changed"));
    assert!(before == snapshot_without_lock(root));
}

#[test]
fn usage_errors_exit_2() {
    let store = fixture("demo");
    let root = s(store.path());
    for args in [
        vec!["prune", "--root", root, "--keep", "1", "--keep-tag", "("],
        vec!["prune", "--root", root, "--keep", "1", "--repo", "team/[app"],
        vec!["prune", "--root", root, "--keep", "1", "--exclude-repo", "{a"],
        vec!["online", "--url", "127.0.0.1:1", "--keep", "1", "--order", "push"],
        vec!["prune", "--root", root],
    ] {
        let out = regsweep(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn json_runs_that_fail_print_an_error_object() {
    let dir = tempfile::tempdir().unwrap();
    let (code, report) = json_run(&["gc", "--root", s(dir.path())]);
    assert_eq!((code, report["exit"].as_i64()), (1, Some(1)));
    assert_eq!(report["kind"], "fatal", "{report}");
    assert!(report["error"].as_str().unwrap().contains("not a registry store"), "{report}");
    let (code, report) = json_run(&["prune", "--root", s(dir.path()), "--keep", "1", "--keep-tag", "("]);
    assert_eq!((code, report["exit"].as_i64()), (2, Some(2)));
    assert_eq!(report["kind"], "usage", "{report}");
}

#[test]
fn a_root_inside_the_store_or_a_file_says_which_folder_to_give() {
    let store = fixture("demo");
    for inner in ["docker", "docker/registry", "docker/registry/v2"] {
        let out = regsweep(&["gc", "--root", s(&store.path().join(inner)), "--dry-run"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1));
        assert!(err.contains(&format!("give --root {}", store.path().canonicalize().unwrap().display())), "{err}");
    }
    let file = store.path().join("docker/registry/v2/repositories/team/app/_layers");
    let out = regsweep(&[
        "gc",
        "--root",
        s(&file.join("sha256").read_dir().unwrap().next().unwrap().unwrap().path().join("link")),
        "--dry-run",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is a file, not a folder"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unmatched_repository_patterns_warn() {
    let store = fixture("demo");
    let report = regsweep_json(&[
        "prune",
        "--root",
        s(store.path()),
        "--keep",
        "1",
        "--repo",
        "team/*",
        "--repo",
        "tem/*",
        "--exclude-repo",
        "team/multi",
        "--dry-run",
    ]);
    let warnings = report["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["kind"], "unmatched_filter", "{warnings:?}");
    assert!(
        warnings[0]["message"].as_str().unwrap().contains("--repo \"tem/*\" matches no repository"),
        "{warnings:?}"
    );
}

#[test]
fn a_real_run_lists_what_it_deleted_per_repository_in_words() {
    let store = fixture("demo");
    let out = regsweep(&["prune", "--root", s(store.path()), "--keep", "2"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("team/multi: 2 tags kept, 1 deleted; 3 manifests, 4 layer links, 0 uploads deleted"),
        "{text}"
    );
    assert!(text.lines().any(|l| l.trim_start().starts_with("delete v1 ")), "{text}");
    assert!(text.contains(", 1 upload;"), "singular: {text}");
    // Tags by rank, newest first, each with its shortened digest and push time.
    let app: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("team/app:")).skip(1).take(3).collect();
    assert!(
        app[0].contains("rc") && app[0].contains("#1") && app[1].contains("latest") && app[2].contains("v6"),
        "{app:?}"
    );
    assert!(app[0].contains("sha256:") && app[0].contains("2026-01-08 10:00"), "{app:?}");
}

#[test]
fn https_to_a_plain_http_port_says_so() {
    let store = fixture("demo");
    let reg = Registry::serve(store.path());
    let out = regsweep(&["online", "--url", &format!("https://127.0.0.1:{}", reg.port), "--keep", "1", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plain HTTP, not TLS") && err.contains("http://"), "{err}");
}

#[test]
fn a_prune_of_a_store_without_garbage_on_a_full_disk_ends_as_on_a_roomy_disk() {
    // No unreferenced blob and no upload to free first: the history folders of the tags being
    // deleted (which the registry does not read to serve a tag) make the journal's room.
    let Some(m) = Mounted::new("ext4") else {
        eprintln!("skipped: cannot mount ext4 here");
        return;
    };
    let generate = |root: &Path| {
        let out = regsweep(&["gen", "--root", s(root), "--repos", "8", "--tags", "12", "--quiet"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    generate(m.path());
    let roomy = tempfile::tempdir().unwrap();
    generate(roomy.path());
    let args = |root: &Path| vec!["prune".to_string(), "--root".into(), s(root).into(), "--keep".into(), "3".into()];
    let expected = regsweep_json(&args(roomy.path()).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(expected["blobs_deleted"].as_u64().unwrap() > 0);
    m.fill();
    let (code, report) = json_run(&args(m.path()).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{report}");
    assert_eq!(paths(m.path()), paths(roomy.path()));
    assert_eq!(report["bytes_freed"], expected["bytes_freed"]);
    let reg = Registry::serve(m.path());
    reg.assert_all_tags_pull(m.path());
}

#[test]
fn a_fifo_as_the_registry_config_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yml");
    assert!(Command::new("mkfifo").arg(&cfg).status().unwrap().success());
    let (code, text) = run_bounded(&["gc", "--config", s(&cfg), "--dry-run"]);
    assert_eq!(code, 1);
    assert!(text.contains("not a regular file") && text.contains(s(&cfg)), "{text}");
}

/// Issue 35, 3: on disk, a manifests stage that fails (a revision folder of team/multi made
/// immutable) still heals before it stops. v1, whose tag and signature tag the tags stage
/// deleted, is pushed again (its revision link written, a tag onto it) while the run waits
/// before the manifests stage: its revision stays, and its signature tag is written back before
/// the run stops with the failure (exit 3).
#[test]
fn a_failed_manifests_stage_on_disk_writes_back_what_a_push_needs_before_it_stops() {
    let store = fixture("demo");
    let root = store.path();
    let plan = regsweep_json(&["prune", "--root", s(root), "--keep", "2", "--dry-run"]);
    let multi = repo(&plan, "team/multi")["tags"].as_array().unwrap().iter().find(|t| t["action"] == "delete").cloned();
    let index = multi.expect("team/multi loses a tag")["digest"].as_str().unwrap().to_string();
    let stuck = v2(root).join("repositories/team/multi/_manifests/revisions/sha256").join(&index[7..]);
    let Some(_guard) = Immutable::set(vec![stuck.clone()]) else {
        eprintln!("skipped: chattr +i is not possible here");
        return;
    };
    let v1 = tag_digest(root, "team/app", "v1");
    let sig = format!("sha256-{}.sig", &v1[7..]);
    let signature = tag_digest(root, "team/app", &sig);
    let run = prune_stopped_at(root, "delete:manifests");
    let app = v2(root).join("repositories/team/app/_manifests");
    assert!(!app.join("tags").join(&sig).exists(), "the tags stage deleted the signature tag");
    // v1 pushed again under a new tag, as the registry writes it: revision link, then the tag.
    std::fs::write(app.join("revisions/sha256").join(&v1[7..]).join("link"), &v1).unwrap();
    let again = app.join("tags/again");
    std::fs::create_dir_all(again.join("index/sha256").join(&v1[7..])).unwrap();
    std::fs::write(again.join("index/sha256").join(&v1[7..]).join("link"), &v1).unwrap();
    std::fs::create_dir_all(again.join("current")).unwrap();
    std::fs::write(again.join("current/link"), &v1).unwrap();
    signal(&run, "-CONT");
    let out = run.wait_with_output().unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(3), "{report}");
    let failed: Vec<&str> = report["failed"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(failed, [s(&stuck)], "{report}");
    assert_eq!(tag_digest(root, "team/app", &sig), signature, "the signature tag is written back: {report}");
    assert_eq!(tag_digest(root, "team/app", "again"), v1);
    drop(_guard);
    let (code, check) = json_run(&["check", "--root", s(root)]);
    let broken: Vec<_> = check["problems"].as_array().unwrap().iter().filter(|p| p["breaks_pull"] == true).collect();
    assert!(code == 0 && broken.is_empty(), "{check}");
}
