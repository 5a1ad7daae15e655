//! Pushes racing a prune on a bucket (issue 22), through the real registry 2.8.2 (and 3.1.1 for a
//! copy landing in the manifests stage) and its s3 driver on moto: the run is stopped at an
//! exact point (after a stage's listing, before its deletions), a push lands, the run goes on;
//! afterwards the registry is started again and what was pushed must pull. On a bucket the
//! window between a listing and its DeleteObjects cannot be closed: what a push there needs is
//! written back by the next re-mark.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::s3::{S3Server, demo_bucket};
use common::*;
use sha2::{Digest as _, Sha256};

const URL: &str = "s3://reg/store";
const V2: &str = "store/docker/registry/v2/";

fn digest_of(reg: &Registry, repo: &str, tag: &str) -> String {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://127.0.0.1:{}/{repo}:{tag}", reg.port))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    format!("sha256:{}", hex::encode(Sha256::digest(&out.stdout)))
}

/// A blob of a repository, through the registry.
fn blob(reg: &Registry, repo: &str, digest: &str) -> Vec<u8> {
    // Through a bucket, the registry answers with a redirect to the S3 server.
    let out = Command::new("curl")
        .args(["-sfL", &format!("http://127.0.0.1:{}/v2/{repo}/blobs/{digest}", reg.port)])
        .output()
        .unwrap();
    assert!(out.status.success(), "GET blob {digest} of {repo}");
    assert_eq!(format!("sha256:{}", hex::encode(Sha256::digest(&out.stdout))), digest);
    out.stdout
}

/// An OCI layout holding one new image (a config of its own) over a layer given by its bytes;
/// `tag` names it in the layout.
fn image_over(layer: &[u8], tag: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let l = dir.path();
    std::fs::create_dir_all(l.join("blobs/sha256")).unwrap();
    let put = |bytes: &[u8]| {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::write(l.join("blobs/sha256").join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let (layer_digest, layer_size) = put(layer);
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "created": "2026-12-01T00:00:00Z",
        "config": {"Labels": {"pushed": tag}}, "rootfs": {"type": "layers", "diff_ids": []}});
    let (config, config_size) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_size}],
    });
    let (m, size) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": m, "size": size, "annotations": {"org.opencontainers.image.ref.name": tag}}]});
    std::fs::write(l.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(l.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    dir
}

fn push_layout(reg: &Registry, layout: &Path, tag: &str, to: &str) {
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://127.0.0.1:{}/{to}", reg.port))
        .output()
        .unwrap();
    assert!(out.status.success(), "push {to}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A bucket with the demo store, and the registry serving it.
fn demo() -> (S3Server, Registry) {
    demo_served_by(Version::V2)
}

/// [`demo`], served by registry `version`.
fn demo_served_by(version: Version) -> (S3Server, Registry) {
    let moto = S3Server::moto();
    demo_bucket(&moto, "reg", "store");
    let reg = serve(&moto, version);
    (moto, reg)
}

/// Registry `version` serving the bucket's store. 3.1.1's s3-aws driver asks `BUCKET.127.0.0.1`
/// unless `forcepathstyle: true`; 2.8.2 reads no such key.
fn serve(moto: &S3Server, version: Version) -> Registry {
    let mut storage = moto.storage("reg", "store");
    if !storage.contains("forcepathstyle") {
        storage = storage.replacen("secure: false", "secure: false, forcepathstyle: true", 1);
    }
    Registry::serve_with(Path::new("/nonexistent"), &Setup { version, storage: Some(storage), ..Setup::default() })
}

/// Runs `prune ARGS --json` stopped at `point`, runs `meanwhile`, lets it finish; returns its
/// exit code and report.
fn prune_with_push(moto: &S3Server, args: &[&str], point: &str, meanwhile: &dyn Fn()) -> (i32, serde_json::Value) {
    let mut all = vec!["prune", "--root", URL, "--grace", "0s", "--json"];
    all.extend_from_slice(args);
    let mut cmd = moto.command(&all);
    cmd.stdin(Stdio::null());
    let run = stopped_at(cmd, point);
    meanwhile();
    signal(&run, "-CONT");
    let out = run.wait_with_output().unwrap();
    let report =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), report)
}

/// Issue 22.1: stopped before the DeleteObjects of `_layers` links, a new image is pushed to the
/// repository over a layer only a deleted tag used: the registry answers the client's HEAD
/// from the link still there, nothing is uploaded, no link is written; the link then goes. The
/// re-mark before the blobs sees the new manifest and writes the link back.
#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs --features test-hooks")]
fn a_layer_link_a_racing_push_relies_on_is_written_back() {
    let (moto, reg) = demo();
    // v1's own layer (its other one is the base every image shares).
    let layer = "sha256:1188c32628167df5d8e90cd3582e0e5c9a1f638a1105b234212cd3ab0cb864d9";
    let layout = image_over(&blob(&reg, "team/app", layer), "new");
    let (code, report) = prune_with_push(&moto, &["--keep", "2", "--repo", "team/app"], "delete:links", &|| {
        push_layout(&reg, layout.path(), "new", "team/app:new")
    });
    assert_eq!(code, 0, "{report}");
    assert!(tags_with(&report, "team/app", "delete").contains("v1"), "the prune went ahead");
    let link = format!("{V2}repositories/team/app/_layers/sha256/{}/link", &layer[7..]);
    assert!(moto.keys("reg").contains(&link), "the layer link is back: {report}");
    drop(reg);
    let reg = Registry::serve_with(Path::new("/nonexistent"), &moto.setup("reg", "store"));
    reg.pull("team/app", "new").expect("the image pushed during the run pulls");
    assert_eq!(reg.manifest_status("team/app", "v1"), 404);
}

/// Issue 22.2: stopped before the DeleteObjects of revision links, an old manifest the plan
/// deletes is tagged again: its revision link, written again by that push, goes. The re-mark
/// sees the new tag and writes the revision back, and the cosign signature tag of that
/// manifest, which the tags stage deleted by policy, comes back with it. On each registry
/// version (a copy during a prune, landing in the manifests stage), which writes the tag
/// through its s3 driver and serves the bucket after.
#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs --features test-hooks")]
fn an_old_manifest_tagged_again_before_its_revision_goes_pulls() {
    for version in VERSIONS {
        if version.available("an_old_manifest_tagged_again_before_its_revision_goes_pulls").is_some() {
            tagged_again_before_its_revision_goes(version);
        }
    }
}

fn tagged_again_before_its_revision_goes(version: Version) {
    let (moto, reg) = demo_served_by(version);
    let v1 = digest_of(&reg, "team/app", "v1");
    let sig = format!("sha256-{}.sig", &v1[7..]);
    assert_eq!(reg.manifest_status("team/app", &sig), 200);
    let (code, report) = prune_with_push(&moto, &["--keep", "2", "--repo", "team/app"], "delete:manifests", &|| {
        copy_within(reg.port, &format!("team/app@{v1}"), "team/app:again", false).unwrap()
    });
    assert_eq!(code, 0, "{version}: {report}");
    assert!(tags_with(&report, "team/app", "delete").contains(&sig), "the plan deleted the signature tag");
    drop(reg);
    let reg = serve(&moto, version);
    let pulls =
        |what: &str, tag: &str| reg.pull("team/app", tag).unwrap_or_else(|e| panic!("{version}: {what} ({tag}): {e}"));
    pulls("the manifest tagged again during the run pulls", "again");
    pulls("its signature follows it", &sig);
    assert_eq!(reg.manifest_status("team/app", "v2"), 404);
    let check = moto.regsweep(&["check", "--root", URL]);
    assert_eq!(check.status.code(), Some(0), "{version}: {}", String::from_utf8_lossy(&check.stdout));
}

/// Issue 22.3: stopped before the DeleteObjects of tag links, a new image is pushed under a tag
/// the plan deletes: its fresh `current/link` goes. The history entry that push wrote first
/// tells the re-mark which manifest the tag was pushed onto, and the tag is written back.
#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs --features test-hooks")]
fn a_tag_pushed_again_before_its_link_goes_is_written_back() {
    let (moto, reg) = demo();
    let tools = digest_of(&reg, "team/app/tools", "1.0.0");
    let (code, report) = prune_with_push(&moto, &["--keep", "2", "--repo", "team/app"], "delete:tags", &|| {
        copy_within(reg.port, "team/app/tools:1.0.0", "team/app:v1", false).unwrap()
    });
    assert_eq!(code, 0, "{report}");
    drop(reg);
    let reg = Registry::serve_with(Path::new("/nonexistent"), &moto.setup("reg", "store"));
    reg.pull("team/app", "v1").expect("the tag pushed during the run pulls");
    assert_eq!(digest_of(&reg, "team/app", "v1"), tools, "onto what was pushed");
    assert_eq!(report["rescued"]["tags"], 1, "written back, not gone: {report}");
}

/// Issue 22.3, the same tag pushed again onto the digest it had: its history entry was listed
/// (as old) with the tag, so the entry the push wrote over it must not go with the rest of the
/// tag folder: listed again after the link went, it stays, and tells the re-mark.
#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs --features test-hooks")]
fn a_tag_pushed_again_onto_its_own_digest_before_its_link_goes_is_written_back() {
    let (moto, reg) = demo();
    let v1 = digest_of(&reg, "team/app", "v1");
    let (code, report) = prune_with_push(&moto, &["--keep", "2", "--repo", "team/app"], "delete:tags", &|| {
        copy_within(reg.port, &format!("team/app@{v1}"), "team/app:v1", false).unwrap()
    });
    assert_eq!(code, 0, "{report}");
    // v1, and its signature tag: its subject was pushed again.
    assert_eq!(report["rescued"]["tags"], 2, "written back, not gone: {report}");
    drop(reg);
    let reg = Registry::serve_with(Path::new("/nonexistent"), &moto.setup("reg", "store"));
    reg.pull("team/app", "v1").expect("the tag pushed again during the run pulls");
    assert_eq!(digest_of(&reg, "team/app", "v1"), v1);
    reg.pull("team/app", &format!("sha256-{}.sig", &v1[7..])).expect("its signature follows it");
}

/// Issue 22.4: one push's revision link lands late in second S-1, its tag link early in second
/// S, and the run starts in S+1 (`--grace 0s`, the tag beyond `--keep`): the bucket's clock
/// tells only seconds, so the tag is written "since the scan" and its revision not. A tag left
/// because it was written again keeps the manifest it names.
#[test]
fn a_push_split_across_a_second_keeps_its_tag_and_its_manifest() {
    let (moto, reg) = demo();
    let v2 = digest_of(&reg, "team/app", "v2");
    let hex = &v2[7..];
    let content = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(content.path(), &v2).unwrap();
    // The demo's last pushes a few seconds old, the run's only young tag is v2.
    std::thread::sleep(std::time::Duration::from_secs(2));
    moto.tool(&[
        "splitpush",
        "reg",
        &format!("{V2}repositories/team/app/_manifests/revisions/sha256/{hex}/link"),
        &format!("{V2}repositories/team/app/_manifests/tags/v2/current/link"),
        content.path().to_str().unwrap(),
    ]);
    let report = moto.regsweep_json(&[
        "prune", "--root", URL, "--keep", "2", "--order", "name", "--grace", "0s", "--repo", "team/app",
    ]);
    assert!(tags_with(&report, "team/app", "delete").contains("v2"), "{report}");
    assert_eq!(report["rescued"]["tags"], 1, "{report}");
    drop(reg);
    let reg = Registry::serve_with(Path::new("/nonexistent"), &moto.setup("reg", "store"));
    reg.pull("team/app", "v2").expect("the tag left by the run pulls");
}

/// Issue 22.10: a listing that misses a kept image's manifest blob (a server's listing lagging
/// or wrong) must not make the run believe it gone and delete that image's layers: one GET
/// tells. Here every listing leaves out the manifest of `team/app:rc`, which the prune keeps.
#[test]
fn a_kept_manifest_a_listing_misses_is_read_before_its_layers_go() {
    kept_manifest_a_listing_misses(&|rc| format!("{rc}/data"));
}

/// The same with the listing of the repository missing the revision link of `team/app:rc`:
/// one HEAD finds it.
#[test]
fn a_kept_revision_a_listing_misses_is_looked_for_before_its_layers_go() {
    kept_manifest_a_listing_misses(&|rc| format!("revisions/sha256/{rc}/link"));
}

/// A prune through a proxy whose listings leave out what `hidden` names of the manifest of
/// `team/app:rc` (given its hex digest): the kept image still pulls afterwards.
fn kept_manifest_a_listing_misses(hidden: &dyn Fn(&str) -> String) {
    let (moto, reg) = demo();
    let rc = digest_of(&reg, "team/app", "rc");
    let port = common::s3::fault_proxy(moto.port, common::s3::Fault::HideKeys(hidden(&rc[7..])));
    let out = moto.regsweep_through(port, &["prune", "--root", URL, "--keep", "2", "--grace", "0s"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(tags_with(&report, "team/app", "keep").contains("rc"), "{report}");
    assert_eq!(report["warnings"].as_array().map(Vec::len), Some(0), "{report}");
    drop(reg);
    let reg = Registry::serve_with(Path::new("/nonexistent"), &moto.setup("reg", "store"));
    reg.pull("team/app", "rc").expect("the kept image whose manifest the listing missed pulls");
}

/// Issue 22 review: the same tag pushed twice between the tags stage's listing and its
/// DeleteObjects (onto two images): both history entries are young, and the tag must come back
/// onto the image pushed last, not onto whichever entry sorts first.
#[test]
#[cfg_attr(not(feature = "test-hooks"), ignore = "needs --features test-hooks")]
fn a_tag_pushed_twice_before_its_link_goes_comes_back_onto_the_last_push() {
    let (moto, reg) = demo();
    let (tools, v3) = (digest_of(&reg, "team/app/tools", "1.0.0"), digest_of(&reg, "team/app", "v3"));
    assert!(tools < v3, "the first push's digest sorts first");
    let (code, report) = prune_with_push(&moto, &["--keep", "2", "--repo", "team/app"], "delete:tags", &|| {
        copy_within(reg.port, "team/app/tools:1.0.0", "team/app:v1", false).unwrap();
        // The bucket's clock tells seconds: the second push is the later by its time too.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        copy_within(reg.port, "team/app:v3", "team/app:v1", false).unwrap();
    });
    assert_eq!(code, 0, "{report}");
    drop(reg);
    let reg = Registry::serve_with(Path::new("/nonexistent"), &moto.setup("reg", "store"));
    reg.pull("team/app", "v1").expect("the tag pushed during the run pulls");
    assert_eq!(digest_of(&reg, "team/app", "v1"), v3, "onto what was pushed last");
}
