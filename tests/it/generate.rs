//! `regsweep gen` writes stores the real registry serves, deterministically for a seed.

use crate::common;

use common::*;

fn generate(root: &std::path::Path, seed: &str) -> serde_json::Value {
    let out =
        regsweep(&["gen", "--root", root.to_str().unwrap(), "--repos", "12", "--tags", "10", "--seed", seed, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_real_registry_serves_a_generated_store() {
    let store = tempfile::tempdir().unwrap();
    let report = generate(store.path(), "7");
    assert_eq!(report["repositories"], 12);
    assert_eq!(report["tags"], 12 * (10 + 1 + 2), "10 tags, latest, 2 signature tags per repository");
    let tags = tags_on_disk(store.path());
    let reg = Registry::serve(store.path());
    // A sample: every 7th tag, which covers images, indexes (1.9.0), signatures and nesting.
    for (repo, tag) in tags.iter().step_by(7).chain(tags.iter().filter(|(_, t)| t == "1.9.0").take(2)) {
        reg.pull(repo, tag).unwrap_or_else(|e| panic!("{repo}:{tag}: {e}"));
    }
    drop(reg);
    // It is a store regsweep and the reference collector agree on.
    let theirs = copy_store(store.path());
    regsweep_json(&["gc", "--root", store.path().to_str().unwrap(), "--grace", "0s", "--quiet"]);
    reference_gc(theirs.path(), false);
    assert_eq!(store_state(store.path()), store_state(theirs.path()));
}

#[test]
fn generation_is_deterministic_for_a_seed() {
    let (a, b, c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    generate(a.path(), "3");
    generate(b.path(), "3");
    generate(c.path(), "4");
    assert_eq!(store_state(a.path()), store_state(b.path()));
    assert_ne!(store_state(a.path()).blobs, store_state(c.path()).blobs);
    let (sa, sb) = (files_relative(a.path()), files_relative(b.path()));
    assert!(sa == sb, "two runs with one seed differ in their files, sizes or mtimes");
}

/// Every file's path, size and mtime, relative to the root (folders' mtimes are the run's).
fn files_relative(root: &std::path::Path) -> Vec<String> {
    let prefix = root.display().to_string();
    snapshot(root)
        .into_iter()
        .filter(|l| l.contains("/data ") || l.contains("/link "))
        .map(|l| l.replacen(&prefix, "", 1))
        .collect()
}
