//! regsweep on a bucket written by the real registry's s3 driver (moto's S3 server): the same
//! commands, the same semantics and safety as on disk, checked by the registry serving the
//! result, by the reference collector on the same bucket, and by a filesystem copy.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::s3::{Moto, demo_bucket};
use common::*;

const V2: &str = "store/docker/registry/v2/";

/// The keys of a bucket's store, relative to `docker/registry/v2/`.
fn store_keys(moto: &Moto, bucket: &str) -> BTreeSet<String> {
    moto.keys(bucket).into_iter().filter_map(|k| k.strip_prefix(V2).map(String::from)).collect()
}

/// Every file of a filesystem store, relative to `docker/registry/v2/`.
fn store_files(root: &Path) -> BTreeSet<String> {
    let base = v2(root);
    walkdir::WalkDir::new(&base)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(&base).unwrap().to_string_lossy().into_owned())
        .filter(|k| k != ".regsweep.lock") // a file system's lock stays, to be locked again
        .collect()
}

/// Panics naming what only one side has.
fn assert_same(a: &BTreeSet<String>, b: &BTreeSet<String>, what: &str) {
    let only_a: Vec<_> = a.difference(b).collect();
    let only_b: Vec<_> = b.difference(a).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "{what}: only in the first {only_a:#?}, only in the second {only_b:#?}"
    );
}

#[test]
fn prune_on_a_bucket_leaves_what_the_registry_serves() {
    let moto = Moto::start();
    let tags = demo_bucket(&moto, "reg", "/store");
    let url = "s3://reg/store";
    let report = moto.regsweep_json(&["prune", "--root", url, "--keep", "2", "--grace", "0s"]);
    assert_eq!(report["root"], url);
    assert!(report["tags_deleted"].as_u64().unwrap() > 0 && report["blobs_deleted"].as_u64().unwrap() > 0, "{report}");
    assert!(report["failed"].as_array().unwrap().is_empty(), "{report}");
    let requests = &report["requests"];
    assert!(requests["list"].as_u64().unwrap() > 0 && requests["delete_objects"].as_u64().unwrap() > 0, "{requests}");
    // Nothing of regsweep's own is left in the bucket.
    let keys = store_keys(&moto, "reg");
    assert!(!keys.iter().any(|k| k.starts_with(".regsweep")), "{keys:?}");

    let reg = Registry::serve_with(Path::new("/nonexistent"), &moto.setup("reg", "/store"));
    let mut kept = 0;
    for (r, t) in &tags {
        let action =
            repo(&report, r)["tags"].as_array().unwrap().iter().find(|x| x["name"] == t.as_str()).unwrap()["action"]
                .clone();
        if action == "keep" {
            kept += 1;
            reg.pull(r, t).unwrap_or_else(|e| panic!("{r}:{t} kept but does not pull: {e}"));
        } else if action == "delete" {
            assert_eq!(reg.manifest_status(r, t), 404, "{r}:{t} deleted but served");
        }
    }
    assert!(kept >= 4, "{report}");
}

#[test]
fn a_bucket_and_its_filesystem_copy_end_alike() {
    let moto = Moto::start();
    demo_bucket(&moto, "reg", "store");
    let copy = tempfile::tempdir().unwrap();
    moto.tool(&["download", "reg", "store", copy.path().to_str().unwrap()]);
    let before = store_keys(&moto, "reg");
    assert_same(&before, &store_files(copy.path()), "the copy");
    let args = ["prune", "--keep", "2", "--grace", "0s", "--upload-age", "0s"];
    let plan = |root: &str| {
        let mut r = moto.regsweep_json(&[&args[..], &["--root", root, "--dry-run"]].concat());
        r.as_object_mut().unwrap().remove("root");
        r.as_object_mut().unwrap().remove("requests");
        r
    };
    assert_eq!(plan("s3://reg/store"), plan(copy.path().to_str().unwrap()), "the same plan");
    moto.regsweep_json(&[&args[..], &["--root", "s3://reg/store"]].concat());
    moto.regsweep_json(&[&args[..], &["--root", copy.path().to_str().unwrap()]].concat());
    let (after_bucket, after_disk) = (store_keys(&moto, "reg"), store_files(copy.path()));
    assert_same(&after_bucket, &after_disk, "the same keys after the same prune");
    assert!(after_bucket.len() < before.len());
}
