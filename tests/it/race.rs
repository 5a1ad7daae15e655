//! Racing pushes: while the real registry serves a store and `skopeo` keeps pushing new images
//! to it, a collector runs on that store, again and again. With regsweep every pushed image
//! pulls whole afterwards (the grace period); the reference collector's breakage is recorded.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use sha2::{Digest as _, Sha256};

const IMAGES: usize = 24;

fn put_blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let hex = hex::encode(Sha256::digest(bytes));
    std::fs::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
    (format!("sha256:{hex}"), bytes.len())
}

/// An OCI layout with IMAGES small images, each with a layer of its own (new blobs to upload).
fn images(tag: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let l = dir.path();
    std::fs::create_dir_all(l.join("blobs/sha256")).unwrap();
    std::fs::write(l.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut entries = Vec::new();
    for i in 0..IMAGES {
        let content: Vec<u8> =
            (0..4096u32).map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i as u32 * 7919) >> 13) as u8).collect();
        let content = [format!("{tag} image {i}").as_bytes(), &content].concat();
        let (layer, lsize) = put_blob(l, &content);
        let config = serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer]}});
        let (cfg, csize) = put_blob(l, &serde_json::to_vec(&config).unwrap());
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": csize},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": lsize}],
        });
        let (m, msize) = put_blob(l, &serde_json::to_vec(&manifest).unwrap());
        entries.push(
            serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m, "size": msize,
            "annotations": {"org.opencontainers.image.ref.name": format!("img{i}")}}),
        );
    }
    std::fs::write(
        l.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": entries})).unwrap(),
    )
    .unwrap();
    dir
}

/// Pushes every image while `collect` runs again and again on the store; returns how many
/// pushed images fail a full pull from a freshly started registry afterwards.
fn race(collect: &dyn Fn(&Path)) -> usize {
    let store = tempfile::tempdir().unwrap();
    let generated =
        regsweep(&["gen", "--root", store.path().to_str().unwrap(), "--repos", "30", "--tags", "10", "--quiet"]);
    assert!(generated.status.success());
    let layout = images(&format!("{:?}", store.path()));
    let reg = Registry::serve(store.path());
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..IMAGES {
                let st = Command::new("skopeo")
                    .args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"])
                    .arg(format!("oci:{}:img{i}", layout.path().display()))
                    .arg(format!("docker://127.0.0.1:{}/race/img{i}:latest", reg.port))
                    .stderr(Stdio::null())
                    .status()
                    .unwrap();
                // A push the collector broke half-way may fail: that image counts as broken.
                let _ = st;
            }
            done.store(true, Ordering::SeqCst);
        });
        while !done.load(Ordering::SeqCst) {
            collect(store.path());
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    drop(reg);
    // A fresh registry: no blob cache from before the collections (distribution#1803).
    let reg = Registry::serve(store.path());
    (0..IMAGES).filter(|i| reg.pull(&format!("race/img{i}"), "latest").is_err()).count()
}

#[test]
fn pushes_racing_regsweep_gc_all_pull_whole() {
    let broken = race(&|root| {
        let out = regsweep(&["gc", "--root", root.to_str().unwrap(), "--quiet"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    });
    assert_eq!(broken, 0, "regsweep gc (grace 1h) broke pushed images");
}

#[test]
fn pushes_racing_the_reference_collector_are_recorded() {
    // Evidence for the grace period, not an assertion: how many images the reference breaks
    // depends on timing. The figure is printed (cargo test -- --nocapture) and kept in docs/safety.md.
    let broken = race(&|root| {
        let cfg = tempfile::Builder::new().suffix(".yml").tempfile().unwrap();
        std::fs::write(
            cfg.path(),
            format!("version: 0.1\nstorage:\n  filesystem: {{rootdirectory: {}}}\n", root.display()),
        )
        .unwrap();
        let _ = Command::new("docker-registry").arg("garbage-collect").arg(cfg.path()).output();
    });
    eprintln!("racing pushes: docker-registry garbage-collect broke {broken} of {IMAGES} pushed images");
    let record = top().join("target").join("race-reference.txt");
    let _ = std::fs::write(record, format!("{broken} of {IMAGES}\n"));
}

#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs the test hooks: cargo test --features test-hooks")]
fn old_images_copied_into_new_repositories_while_a_prune_runs_still_pull() {
    // Issue 12.1: the grace period protects what existed at the plan. Here the run is stopped
    // right after its journal (the plan is made, nothing is deleted yet), old images the plan
    // deletes are copied by digest into new repositories, then the run goes on. On each
    // registry version: the registry of that version writes the copies and serves the result.
    for version in VERSIONS {
        if version.available("old_images_copied_into_new_repositories_while_a_prune_runs_still_pull").is_some() {
            copied_while_a_prune_runs(version);
        }
    }
}

fn copied_while_a_prune_runs(version: Version) {
    let store = fixture("demo");
    let root = store.path();
    let reg = Registry::serve_version(root, version);
    let old = [
        ("team/app", tag_digest(root, "team/app", "v1"), false),
        ("team/app", tag_digest(root, "team/app", "v4"), false),
        ("team/multi", tag_digest(root, "team/multi", "2026.1"), true),
        ("team/app/tools", tag_digest(root, "team/app/tools", "1.0.0"), false),
    ];
    let run = prune_stopped_at(root, "journal");
    assert!(v2(root).join(".regsweep-journal.json").exists(), "stopped after the journal");
    let copies: Vec<(String, &str)> =
        old.iter().enumerate().map(|(i, (repo, _, _))| (format!("copied/c{i}"), repo.to_owned())).collect();
    for ((to, _), (repo, digest, all)) in copies.iter().zip(&old) {
        copy_within(reg.port, &format!("{repo}@{digest}"), &format!("{to}:v1"), *all).unwrap();
        reg.pull(to, "v1").expect("the copy pulls right after the push");
    }
    signal(&run, "-CONT");
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{version}: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["rescued"]["blobs"].as_u64().unwrap() > 0, "{version}: {}", report["rescued"]);
    assert_eq!(tags_with(&report, "team/app", "delete").len(), 7, "the prune itself went ahead");
    drop(reg);
    // A fresh registry: no blob cache from before the run (distribution#1803).
    let reg = assert_served_by(root, &report, version);
    for (to, from) in &copies {
        // (Without the re-mark, the copies' config and layers are gone: 404 on pull.)
        reg.pull(to, "v1")
            .unwrap_or_else(|e| panic!("{version}: {to}:v1 (copied from {from} during the run) broke: {e}"));
    }
    assert_eq!(reg.manifest_status("team/app", "v1"), 404);
}

#[test]
fn old_images_copied_while_a_prune_runs_pull_or_the_run_names_them() {
    // The same race without a stop: copies of images the prune deletes, many at once, while it
    // runs. A copy either fails (its source went first) or pulls whole afterwards; the only
    // exception is a push inside one blob round, which the run names (exit 3).
    let store = tempfile::tempdir().unwrap();
    let root = store.path();
    let out = regsweep(&["gen", "--root", root.to_str().unwrap(), "--repos", "60", "--tags", "30", "--quiet"]);
    assert!(out.status.success());
    let plan = regsweep_json(&["prune", "--root", root.to_str().unwrap(), "--keep", "2", "--dry-run"]);
    let mut old: Vec<(String, String)> = Vec::new();
    for r in plan["repos"].as_array().unwrap() {
        for t in r["tags"].as_array().unwrap().iter().filter(|t| t["action"] == "delete") {
            old.push((r["name"].as_str().unwrap().to_string(), t["digest"].as_str().unwrap().to_string()));
        }
    }
    old.truncate(48);
    let reg = Registry::serve(root);
    let copied = std::sync::Mutex::new(Vec::new());
    let run = std::thread::scope(|s| {
        let run = s.spawn(|| regsweep(&["prune", "--root", root.to_str().unwrap(), "--keep", "2", "--json"]));
        for chunk in old.chunks(6) {
            let copied = &copied;
            s.spawn(move || {
                for (i, (repo, digest)) in chunk.iter().enumerate() {
                    let to = format!("copied/{}-{i}", repo.replace('/', "-"));
                    if copy_within(reg.port, &format!("{repo}@{digest}"), &format!("{to}:v1"), true).is_ok() {
                        copied.lock().unwrap().push(to);
                    }
                }
            });
        }
        run.join().unwrap()
    });
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    // Each blob lost to a push is an error of its own kind, named by its digest.
    let named = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "push_during_run" && e["path"].as_str().unwrap().starts_with("sha256:"));
    assert!(run.status.code() == Some(0) || named, "{}", String::from_utf8_lossy(&run.stderr));
    drop(reg);
    let reg = Registry::serve(root);
    let copied = copied.into_inner().unwrap();
    let broken: Vec<&String> = copied.iter().filter(|to| reg.pull(to, "v1").is_err()).collect();
    eprintln!("{} copies succeeded during the run, {} broke, run named a loss: {named}", copied.len(), broken.len());
    assert!(broken.is_empty() || named, "copies broken by the prune and not named: {broken:?}");
}

#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs the test hooks: cargo test --features test-hooks")]
fn an_old_index_tagged_again_while_a_prune_runs_keeps_its_children() {
    // A tag pushed onto an old multi-arch index (the manifest alone, as `crane tag` does): the
    // registry writes the index's revision link again, not its children's. The run must keep the
    // children's revisions too, or the index no longer pulls.
    let store = fixture("demo");
    let root = store.path();
    let reg = tagged_again_during_a_prune(root, "team/multi", &tag_digest(root, "team/multi", "2026.1"));
    reg.pull("team/multi", "again").expect("the index tagged again during the run pulls whole");
    reg.assert_all_tags_pull(root);
}

/// Runs `prune --keep 2` on `root` and, once its journal is written, pushes the manifest
/// `digest` of `repo` again under the tag `again` (the manifest alone, as `crane tag` does);
/// returns the registry serving the store after the run.
fn tagged_again_during_a_prune(root: &Path, repo: &str, digest: &str) -> Registry {
    tagged_again_at(root, "journal", &[(repo, digest, "again")])
}

/// Pushes the manifest in `file` to `repo` under `tag` (the manifest alone, as `crane tag`
/// does), with the media type it names.
fn put_manifest(reg: &Registry, file: &Path, repo: &str, tag: &str) {
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let put = Command::new("curl")
        .args(["-sf", "-X", "PUT", "-H"])
        .arg(format!(
            "Content-Type: {}",
            manifest["mediaType"].as_str().unwrap_or("application/vnd.oci.image.manifest.v1+json")
        ))
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(format!("{}/v2/{repo}/manifests/{tag}", reg.url))
        .status()
        .unwrap();
    assert!(put.success(), "the registry takes {repo}:{tag}");
}

/// Runs `prune --keep 2` on `root` stopped at `point`, pushes each manifest given again under
/// the tag given (the manifest alone), lets the run finish; returns the registry serving the
/// store after it.
fn tagged_again_at(root: &Path, point: &str, pushes: &[(&str, &str, &str)]) -> Registry {
    tagged_again_by(Version::V2, root, point, pushes)
}

/// [`tagged_again_at`], the pushes written by registry `version`, which serves the store after.
fn tagged_again_by(version: Version, root: &Path, point: &str, pushes: &[(&str, &str, &str)]) -> Registry {
    let reg = Registry::serve_version(root, version);
    let run = prune_stopped_at(root, point);
    for (repo, digest, tag) in pushes {
        put_manifest(&reg, &blob_data(root, digest), repo, tag);
    }
    signal(&run, "-CONT");
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{version}: {}", String::from_utf8_lossy(&out.stderr));
    drop(reg);
    Registry::serve_version(root, version)
}

#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs the test hooks: cargo test --features test-hooks")]
fn old_images_tagged_again_inside_the_manifests_stage_keep_referrers_and_signature_tags() {
    // Issue 22, left from the last round. Tagged again once the manifests stage has begun, after
    // any look a run takes before it: v2's OCI referrer, deleted in that same stage, stays (a
    // subject goes before its referrers, and one left keeps them); v1's cosign signature tag,
    // which the tags stage deleted by policy, is written back by the re-mark. On each registry
    // version: that version writes the tags (3.1.1 through its `.tmp` files and renames) and
    // serves the result.
    for version in VERSIONS {
        if version.available("old_images_tagged_again_inside_the_manifests_stage").is_some() {
            tagged_again_inside_the_manifests_stage(version);
        }
    }
}

fn tagged_again_inside_the_manifests_stage(version: Version) {
    let store = fixture("demo");
    let root = store.path();
    let (v1, v2) = (tag_digest(root, "team/app", "v1"), tag_digest(root, "team/app", "v2"));
    let sig = format!("sha256-{}.sig", &v1[7..]);
    let plan = regsweep_json(&["prune", "--root", root.to_str().unwrap(), "--keep", "2", "--dry-run"]);
    assert!(tags_with(&plan, "team/app", "delete").contains(&sig));
    let referrer = "sha256:12f21adae9b0c817476386b96268e7bb488c4dcd47d38f3de7ef1bd605225d12";
    let reg = tagged_again_by(
        version,
        root,
        "delete:manifests",
        &[("team/app", v1.as_str(), "again1"), ("team/app", v2.as_str(), "again2")],
    );
    let pulls = |what: &str, reference: &str| {
        reg.pull("team/app", reference).unwrap_or_else(|e| panic!("{version}: {what} ({reference}): {e}"))
    };
    pulls("the image tagged again during the run pulls whole", "again2");
    pulls("its referrer is still there, whole", referrer);
    pulls("v1's signature tag follows v1", &sig);
    reg.assert_all_tags_pull(root);
}

#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs the test hooks: cargo test --features test-hooks")]
fn an_old_image_tagged_again_while_a_prune_runs_keeps_its_referrers() {
    // team/app:v2 has an OCI referrer (a manifest whose `subject` is v2's): a prune that deletes
    // v2 deletes the referrer with it. Tagged again during the run, v2 stays, and so must what
    // is attached to it.
    let store = fixture("demo");
    let root = store.path();
    let digest = tag_digest(root, "team/app", "v2");
    let plan = regsweep_json(&["prune", "--root", root.to_str().unwrap(), "--keep", "2", "--dry-run"]);
    assert!(tags_with(&plan, "team/app", "delete").contains("v2"));
    let referrer = "sha256:12f21adae9b0c817476386b96268e7bb488c4dcd47d38f3de7ef1bd605225d12";
    let attached: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob_data(root, referrer)).unwrap()).unwrap();
    assert_eq!(attached["subject"]["digest"], digest.as_str());
    let reg = tagged_again_during_a_prune(root, "team/app", &digest);
    reg.pull("team/app", "again").expect("the image tagged again during the run pulls whole");
    reg.pull("team/app", referrer).expect("its referrer is still there, whole");
    reg.assert_all_tags_pull(root);
}

#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs the test hooks: cargo test --features test-hooks")]
fn a_referrer_that_is_an_index_keeps_its_children_when_its_subject_is_tagged_again() {
    // Issue 22, left from the last round: v2 gets a referrer that is itself an index (as an
    // SBOM bundle per platform would be), listing one image of its own. The prune deletes all
    // three; v2 tagged again once the manifests stage has begun keeps the referrer, and the
    // referrer keeps its child.
    let store = fixture("demo");
    let root = store.path();
    let v2d = tag_digest(root, "team/app", "v2");
    let referrer = referrer_index_of(root, "team/app", &v2d);
    let plan = regsweep_json(&["prune", "--root", root.to_str().unwrap(), "--keep", "2", "--dry-run"]);
    assert!(tags_with(&plan, "team/app", "delete").contains("v2"));
    assert_eq!(repo(&plan, "team/app")["manifests_deleted"], 9, "the referrer and its child go with v2: {plan}");
    let reg = tagged_again_at(root, "delete:manifests", &[("team/app", v2d.as_str(), "again")]);
    reg.pull("team/app", "again").expect("the image tagged again during the run pulls whole");
    reg.pull("team/app", &referrer).expect("its referrer, an index, pulls whole: with its child");
    reg.assert_all_tags_pull(root);
}

/// Uploads blob `digest` (its content read from the store) to `repo` as a client does, in two
/// requests (POST, then PUT with the digest).
fn upload_blob(reg: &Registry, root: &Path, repo: &str, digest: &str) {
    let out = Command::new("curl")
        .args(["-sfi", "-X", "POST"])
        .arg(format!("{}/v2/{repo}/blobs/uploads/", reg.url))
        .output()
        .unwrap();
    assert!(out.status.success(), "the registry starts an upload");
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("Location: ").or_else(|| l.strip_prefix("location: ")))
        .unwrap()
        .trim()
        .to_string();
    let url = if location.starts_with("http") { location } else { format!("{}{location}", reg.url) };
    let sep = if url.contains('?') { '&' } else { '?' };
    let put = Command::new("curl")
        .args(["-sf", "-X", "PUT", "-H", "Content-Type: application/octet-stream", "--data-binary"])
        .arg(format!("@{}", blob_data(root, digest).display()))
        .arg(format!("{url}{sep}digest={digest}"))
        .status()
        .unwrap();
    assert!(put.success(), "the registry takes blob {digest}");
}

#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs the test hooks: cargo test --features test-hooks")]
fn a_signature_tag_is_not_written_back_onto_a_manifest_a_blob_round_deleted() {
    // Issue 22 review. v1 and its cosign signature tag go with a prune. v1 is pushed again
    // (whole: its blobs, then the manifest) inside the first blob round, after that round's
    // re-mark, and that round deletes the signature's manifest blob. The next re-mark writes the
    // signature tag back because its subject is needed again: it must not write a tag onto a
    // manifest whose blob is gone (the tag would not pull; `check` calls it broken).
    let store = fixture("demo");
    let root = store.path();
    let v1 = tag_digest(root, "team/app", "v1");
    let sig = format!("sha256-{}.sig", &v1[7..]);
    // The signature's manifest, made to fall in the first blob round (its hex begins with 0).
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob_data(root, &tag_digest(root, "team/app", &sig))).unwrap()).unwrap();
    let bytes = (0u32..)
        .map(|n| {
            let mut m = original.clone();
            m["annotations"] = serde_json::json!({"nonce": n.to_string()});
            serde_json::to_vec(&m).unwrap()
        })
        .find(|b| Sha256::digest(b)[0] < 0x10)
        .unwrap();
    let signature = sign_v1_with(root, &bytes);
    let plan = regsweep_json(&["prune", "--root", root.to_str().unwrap(), "--keep", "2", "--dry-run"]);
    assert!(tags_with(&plan, "team/app", "delete").contains(&sig), "{plan}");
    let (stderr, ok) = v1_pushed_again_inside_the_first_blob_round(root);
    // v1's own blobs all fall in later rounds: nothing the push needs was lost, none is named.
    assert!(ok && !stderr.contains("needs a blob this run deleted"), "{stderr}");
    assert!(!blob_data(root, &signature).exists(), "the first round deleted the signature's manifest");
    let reg = Registry::serve(root);
    reg.pull("team/app", "again").expect("v1 pushed again during the run pulls whole");
    reg.assert_all_tags_pull(root);
}

/// Points team/app's tag `sha256-<v1>.sig` at a new signature manifest (`signature`'s bytes,
/// written old), as cosign would have; returns its digest.
fn sign_v1_with(root: &Path, bytes: &[u8]) -> String {
    let v1 = tag_digest(root, "team/app", "v1");
    let sig = format!("sha256-{}.sig", &v1[7..]);
    let (signature, _) = put_old_blob(root, "team/app", bytes, "_manifests/revisions/sha256");
    let tag = v2(root).join("repositories/team/app/_manifests/tags").join(&sig);
    let entry = tag.join("index/sha256").join(&signature[7..]).join("link");
    std::fs::create_dir_all(entry.parent().unwrap()).unwrap();
    std::fs::write(&entry, &signature).unwrap();
    std::fs::write(tag.join("current/link"), &signature).unwrap();
    for p in [entry.parent().unwrap(), &entry, &tag.join("current/link")] {
        assert!(Command::new("touch").args(["-d", "2026-01-01T12:00:00Z"]).arg(p).status().unwrap().success());
    }
    signature
}

/// Runs `prune --keep 2` on `root` stopped before the first blob round's deletions (after its
/// re-mark), pushes team/app's v1 again whole (its blobs, then the manifest, as tag `again`),
/// lets the run finish; returns its stderr and success.
fn v1_pushed_again_inside_the_first_blob_round(root: &Path) -> (String, bool) {
    let v1 = tag_digest(root, "team/app", "v1");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(blob_data(root, &v1)).unwrap()).unwrap();
    let reg = Registry::serve(root);
    let run = prune_stopped_at(root, "delete:blobs");
    let mut blobs = vec![manifest["config"]["digest"].as_str().unwrap().to_string()];
    blobs.extend(manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()));
    for b in &blobs {
        upload_blob(&reg, root, "team/app", b);
    }
    put_manifest(&reg, &blob_data(root, &v1), "team/app", "again");
    signal(&run, "-CONT");
    let out = run.wait_with_output().unwrap();
    (String::from_utf8_lossy(&out.stderr).into_owned(), out.status.success())
}

#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs the test hooks: cargo test --features test-hooks")]
fn a_signature_tag_is_not_written_back_onto_a_signature_a_blob_round_broke() {
    // Issue 22 review. As above, but the first blob round deletes the signature's layer (its
    // payload), not its manifest: the tag written back would name a manifest whose layer is
    // gone (it would not pull), and the run would blame the push for a blob it never needed.
    let store = fixture("demo");
    let root = store.path();
    let v1 = tag_digest(root, "team/app", "v1");
    let sig = format!("sha256-{}.sig", &v1[7..]);
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob_data(root, &tag_digest(root, "team/app", &sig))).unwrap()).unwrap();
    // The payload, made to fall in the first blob round; the manifest in the last.
    let payload = (0u32..)
        .map(|n| format!(r#"{{"critical":{{"image":{{"docker-manifest-digest":"{v1}"}}}},"nonce":{n}}}"#).into_bytes())
        .find(|b| Sha256::digest(b)[0] < 0x10)
        .unwrap();
    let (layer, size) = put_old_blob(root, "team/app", &payload, "_layers/sha256");
    let bytes = (0u32..)
        .map(|n| {
            let mut m = original.clone();
            m["layers"][0]["digest"] = layer.as_str().into();
            m["layers"][0]["size"] = size.into();
            m["annotations"] = serde_json::json!({"nonce": n.to_string()});
            serde_json::to_vec(&m).unwrap()
        })
        .find(|b| Sha256::digest(b)[0] >= 0xf0)
        .unwrap();
    sign_v1_with(root, &bytes);
    let plan = regsweep_json(&["prune", "--root", root.to_str().unwrap(), "--keep", "2", "--dry-run"]);
    assert!(tags_with(&plan, "team/app", "delete").contains(&sig), "{plan}");
    let (stderr, ok) = v1_pushed_again_inside_the_first_blob_round(root);
    assert!(!blob_data(root, &layer).exists(), "the first round deleted the signature's layer");
    assert!(ok && !stderr.contains("needs a blob this run deleted"), "{stderr}");
    let reg = Registry::serve(root);
    reg.pull("team/app", "again").expect("v1 pushed again during the run pulls whole");
    reg.assert_all_tags_pull(root);
}

#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs the test hooks: cargo test --features test-hooks")]
fn a_signature_signed_anew_during_a_prune_does_not_bring_the_old_one_back() {
    // Issue 22 review. v1 and its cosign signature go with a prune. Once the tags stage is over,
    // v1 is tagged again and signed anew (cosign's signatures differ each time): the signature
    // tag now names the new signature. The re-mark must not write back the old signature's
    // revision for a tag that no longer names it: untagged, no deleted tag's, it would stay for
    // ever.
    let store = fixture("demo");
    let root = store.path();
    let v1 = tag_digest(root, "team/app", "v1");
    let sig = format!("sha256-{}.sig", &v1[7..]);
    let old = tag_digest(root, "team/app", &sig);
    let mut signature: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob_data(root, &old)).unwrap()).unwrap();
    signature["annotations"] = serde_json::json!({"signed": "again"});
    let new_sig = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(new_sig.path(), serde_json::to_vec(&signature).unwrap()).unwrap();
    let reg = Registry::serve(root);
    let run = prune_stopped_at(root, "delete:manifests");
    put_manifest(&reg, &blob_data(root, &v1), "team/app", "again");
    put_manifest(&reg, new_sig.path(), "team/app", &sig);
    signal(&run, "-CONT");
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(reg);
    let reg = Registry::serve(root);
    reg.pull("team/app", "again").expect("v1 tagged again pulls");
    reg.pull("team/app", &sig).expect("its new signature pulls");
    assert_ne!(tag_digest(root, "team/app", &sig), old);
    let revision = v2(root).join("repositories/team/app/_manifests/revisions/sha256").join(&old[7..]).join("link");
    assert!(!revision.exists(), "the old signature, which nothing names, is not written back");
    reg.assert_all_tags_pull(root);
}

#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs the test hooks: cargo test --features test-hooks")]
fn a_tag_pushed_again_onto_a_kept_image_rescues_no_manifest_in_the_report() {
    // Issue 22 review. v1, which the prune deletes, is pushed again before the tags stage onto
    // rc's image (which the plan keeps): the tag stays (rescued), v1's old manifest goes. The
    // report must not count rc's as a manifest rescued: it was never to go.
    let store = fixture("demo");
    let root = store.path();
    let rc = tag_digest(root, "team/app", "rc");
    let reg = Registry::serve(root);
    let run = prune_stopped_at(root, "delete:tags");
    let put = Command::new("curl")
        .args(["-sf", "-X", "PUT", "-H", "Content-Type: application/vnd.oci.image.manifest.v1+json", "--data-binary"])
        .arg(format!("@{}", blob_data(root, &rc).display()))
        .arg(format!("{}/v2/team/app/manifests/v1", reg.url))
        .status()
        .unwrap();
    assert!(put.success(), "the registry takes the tag");
    signal(&run, "-CONT");
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["rescued"]["tags"], 1, "{report}");
    assert_eq!(report["rescued"]["manifests"], 0, "rc's manifest was never to go: {report}");
    assert_eq!(tag_digest(root, "team/app", "v1"), rc);
}

#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs the test hooks: cargo test --features test-hooks")]
fn a_run_that_sweeps_nothing_still_writes_back_what_a_push_needs() {
    // Every blob and layer link younger than the grace period, the old tags and revisions not:
    // the plan deletes tags and manifests and sweeps nothing. v1 tagged again once the
    // manifests stage has begun keeps its signature tag, which the tags stage deleted: the run
    // re-marks at its end all the same and writes it back.
    let store = fixture("demo");
    let root = store.path();
    let v2 = v2(root);
    for dir in [v2.join("blobs"), v2.join("repositories")] {
        let st = Command::new("find")
            .arg(&dir)
            .args(["(", "-name", "data", "-o", "-path", "*/_layers/*", ")", "-exec", "touch", "{}", "+"])
            .status()
            .unwrap();
        assert!(st.success());
    }
    let v1 = tag_digest(root, "team/app", "v1");
    let sig = format!("sha256-{}.sig", &v1[7..]);
    let plan = regsweep_json(&["prune", "--root", root.to_str().unwrap(), "--keep", "2", "--dry-run"]);
    assert!(tags_with(&plan, "team/app", "delete").contains(&sig));
    assert_eq!((plan["blobs_deleted"].as_u64(), plan["layer_links_deleted"].as_u64()), (Some(0), Some(0)), "{plan}");
    let reg = tagged_again_at(root, "delete:manifests", &[("team/app", v1.as_str(), "again")]);
    reg.pull("team/app", "again").expect("the image tagged again during the run pulls whole");
    reg.pull("team/app", &sig).expect("v1's signature tag follows v1");
    reg.assert_all_tags_pull(root);
}

#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs the test hooks: cargo test --features test-hooks")]
fn an_image_pushed_again_into_the_revision_folder_an_api_delete_left_keeps_its_blobs() {
    // A review of the re-mark: the registry's API delete of a manifest removes its revision link
    // and leaves the folder. Pushed again (by digest: no tag) during a gc that deletes no
    // revision of the repository, its link goes into that folder, which changes the folder's
    // time and not its parent's, the one the re-mark looked at: the image's blobs went.
    let store = fixture("demo");
    let root = store.path();
    let v1 = tag_digest(root, "team/app", "v1");
    let revisions = v2(root).join("repositories/team/app/_manifests/revisions/sha256");
    std::fs::remove_file(revisions.join(&v1[7..]).join("link")).unwrap();
    std::fs::remove_dir_all(v2(root).join("repositories/team/app/_manifests/tags/v1")).unwrap();
    let reg = Registry::serve(root);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    cmd.args(["gc", "--root", root.to_str().unwrap(), "--json"]);
    let run = stopped_at(cmd, "journal");
    put_manifest(&reg, &blob_data(root, &v1), "team/app", &v1);
    signal(&run, "-CONT");
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(blob_data(root, &v1).exists(), "the manifest pushed again was deleted");
    let check = regsweep(&["check", "--root", root.to_str().unwrap(), "--json"]);
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stdout));
}
