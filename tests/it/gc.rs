//! `regsweep gc` against the real reference collectors, `garbage-collect` of registry 2.8.2 and
//! of 3.1.1: blob for blob the same where our semantics match (no `--delete-untagged`), on the
//! fixtures, on the demo as each version pushes it and on generated stores; with
//! `--delete-untagged`, every blob, revision, `_layers` link and upload that differs is of a kind
//! docs/DESIGN.md sections 2 and 3 name, and each kind shows where the store has it.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::Value;

/// Deletes manifests through the real registry's API (of `version`), as the cron recipe does: a
/// store with garbage.
fn store_with_api_deletes(version: Version) -> tempfile::TempDir {
    let store = fixture("demo");
    let reg = Registry::serve_version(store.path(), version);
    for (repo, tag) in [("team/app", "v1"), ("team/app", "v2"), ("team/multi", "2026.1"), ("team/app/tools", "1.0.0")] {
        let digest = tag_digest(store.path(), repo, tag);
        assert_eq!(
            reg.status("DELETE", &format!("/v2/{repo}/manifests/{digest}"), ""),
            Some(202),
            "DELETE {repo}@{digest} on {version}"
        );
    }
    store
}

/// `regsweep gc` on a copy of `store`, and the reference collector of each version available on
/// another: the same blobs and revision links, every other difference a documented one. Then
/// registry `serve_by` serves regsweep's result and every tag pulls whole.
fn assert_gc_equals_reference(store: &Path, versions: &[Version], serve_by: Option<Version>) {
    let ours = copy_store(store);
    let report = regsweep_json(&["gc", "--root", ours.path().to_str().unwrap(), "--grace", "0s", "--quiet"]);
    assert_eq!(report["tags_deleted"], 0);
    for &version in versions {
        if version.available("gc_equals_reference").is_none() {
            continue;
        }
        let theirs = copy_store(store);
        reference_gc_with(theirs.path(), &Setup { version, ..Setup::default() }, false);
        let (a, b) = (store_state(ours.path()), store_state(theirs.path()));
        assert_same(&a.blobs, &b.blobs, &format!("blobs (regsweep, then {version}'s collector)"));
        assert_same(&a.revisions, &b.revisions, &format!("revision links (regsweep, then {version}'s collector)"));
        let diff = differences(store, ours.path(), theirs.path(), version, false);
        diff.assert_documented(&format!("gc on {} against {version}", store.display()));
    }
    if let Some(version) = serve_by.filter(|v| v.available("gc_equals_reference (serving)").is_some()) {
        let reg = Registry::serve_version(ours.path(), version);
        reg.assert_all_tags_pull(ours.path());
    }
}

#[test]
fn gc_equals_reference_collector_on_the_demo_store() {
    let store = fixture("demo");
    assert_gc_equals_reference(store.path(), &VERSIONS, Some(Version::V2));
}

#[test]
fn gc_equals_reference_collector_on_the_demo_as_v3_pushed_it() {
    // 3.1.1 wrote this store itself (skopeo copy of every demo tag); it is compared with both
    // collectors and served by 3.1.1 afterwards. (The demo fixture is the store 2.8.2 wrote,
    // above: fixtures/make-fixtures.sh pushes it to docker-registry.)
    if Version::V3.available("gc_equals_reference_collector_on_the_demo_as_v3_pushed_it").is_some() {
        assert_gc_equals_reference(pushed_by(Version::V3), &VERSIONS, Some(Version::V3));
    }
}

#[test]
fn gc_equals_reference_collector_on_a_generated_store() {
    // `regsweep gen`: shared base layers, indexes, signature tags, SBOM referrers, untagged
    // earlier pushes. (generate.rs compares it with 2.8.2 on another seed.)
    // No pulls: generate.rs has the registry serve such a store.
    assert_gc_equals_reference(generated(), &VERSIONS, None);
}

#[test]
fn gc_equals_reference_collector_after_api_deletes() {
    for version in VERSIONS {
        if version.available("gc_equals_reference_collector_after_api_deletes").is_some() {
            // Served after by 2.8.2 only (3.1.1 serves the store it pushed, above, and the
            // store after a prune, below).
            let store = store_with_api_deletes(version);
            assert_gc_equals_reference(store.path(), &VERSIONS, (version == Version::V2).then_some(version));
        }
    }
}

#[test]
fn gc_equals_reference_collector_after_a_prune() {
    let store = fixture("demo");
    regsweep_json(&["prune", "--root", store.path().to_str().unwrap(), "--keep", "1", "--grace", "0s"]);
    assert_gc_equals_reference(store.path(), &VERSIONS, Some(Version::V3));
}

#[test]
fn gc_equals_reference_collector_on_the_legacy_store() {
    // Schema 1 manifests: 2.8.2 collects them as regsweep does; 3.1.1 knows no schema 1 and
    // aborts before deleting anything (SPEC section 3), which regsweep need not match.
    let store = fixture("legacy");
    assert_gc_equals_reference(store.path(), &[Version::V2], Some(Version::V2));
    if Version::V3.available("gc_equals_reference_collector_on_the_legacy_store").is_some() {
        let theirs = copy_store(store.path());
        let before = store_files(theirs.path());
        let cfg = tempfile::Builder::new().suffix(".yml").tempfile().unwrap();
        std::fs::write(
            cfg.path(),
            format!("version: 0.1\nstorage:\n  filesystem: {{rootdirectory: {}}}\n", theirs.path().display()),
        )
        .unwrap();
        let out = Version::V3.command().arg("garbage-collect").arg(cfg.path()).output().unwrap();
        assert!(!out.status.success(), "3.1.1's collector was expected to refuse a schema 1 manifest");
        assert!(String::from_utf8_lossy(&out.stderr).contains("schema version 1"), "{out:?}");
        assert_same(&before, &store_files(theirs.path()), "3.1.1's refused collection");
    }
}

/// A store `regsweep gen` wrote, once a test process: 6 repositories of 5 tags (one a
/// two-platform index, one signed with a signature tag and an SBOM referrer), 2 untagged earlier
/// pushes each, base layers shared across repositories. Tests take a [`copy_store`] of it.
fn generated() -> &'static Path {
    static STORE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    STORE
        .get_or_init(|| {
            let store = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
            let root = store.path().to_str().unwrap();
            let shape = ["--repos", "6", "--tags", "5", "--multiarch-every", "5", "--signed-every", "3"];
            let out = regsweep(&[&["gen", "--root", root, "--seed", "11", "--quiet"], &shape[..]].concat());
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            store
        })
        .path()
}

/// An upload in `repo` started long before the registry's 168 h, as a client that gave up
/// leaves it.
fn put_old_upload(root: &Path, repo: &str) {
    let upload = v2(root).join("repositories").join(repo).join("_uploads/0b1d0000-0000-4000-8000-000000000001");
    std::fs::create_dir_all(&upload).unwrap();
    std::fs::write(upload.join("data"), b"half a layer").unwrap();
    std::fs::write(upload.join("startedat"), "2026-01-01T00:00:00Z").unwrap();
}

/// A kind of difference between regsweep's collection and the reference's that the docs name
/// (DESIGN sections 2 and 3, SPEC sections 3 and 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// A referrer (OCI `subject`) of a kept manifest, what it reaches, and their blobs and
    /// `_layers` links: regsweep keeps them, the reference's `--delete-untagged` deletes them.
    Referrer,
    /// 2.8's `--delete-untagged`: the untagged children of a kept index lose their revision
    /// links and their config and layers (distribution#3178); regsweep keeps them.
    MultiArchChild,
    /// A `_layers` link no manifest regsweep keeps in that repository references: regsweep
    /// removes it; 2.8 never removes one, 3.1.1 keeps one whose blob is marked in any repository.
    StaleLayerLink,
    /// 3.1.1's `--delete-untagged` keeps an untagged manifest of one repository when the same
    /// digest is marked in any other (`unmarkReferencedManifest` looks at the digest, not the
    /// repository); regsweep, whose rule is per repository, deletes its revision (the blobs stay:
    /// the other repository needs them). 2.8 deletes it too.
    MarkedElsewhere,
    /// An upload started more than 168 h ago: regsweep purges it, the collector never touches
    /// uploads (the running registry's purger does).
    OldUpload,
}

/// A manifest's references, by hex digest.
#[derive(Default)]
struct Refs {
    /// Config and layers (schema 1: `fsLayers`).
    blobs: BTreeSet<String>,
    children: BTreeSet<String>,
    subject: Option<String>,
}

/// A repository of the store before the collections: its tagged digests and its manifests.
#[derive(Default)]
struct Repo {
    tagged: BTreeSet<String>,
    manifests: BTreeMap<String, Refs>,
}

impl Repo {
    /// What stays of this repository's manifests: from the roots (every revision; with
    /// `--delete-untagged` the tagged ones) over an index's children and, with `referrers`,
    /// from a manifest to those whose `subject` it is.
    fn live(&self, delete_untagged: bool, referrers: bool) -> BTreeSet<String> {
        let mut todo: Vec<&String> = match delete_untagged {
            true => self.tagged.iter().filter(|d| self.manifests.contains_key(*d)).collect(),
            false => self.manifests.keys().collect(),
        };
        let mut seen = BTreeSet::new();
        while let Some(d) = todo.pop() {
            if !seen.insert(d.clone()) {
                continue;
            }
            todo.extend(self.manifests[d].children.iter().filter(|c| self.manifests.contains_key(*c)));
            if referrers {
                todo.extend(self.manifests.iter().filter(|(_, m)| m.subject.as_ref() == Some(d)).map(|(k, _)| k));
            }
        }
        seen
    }
}

/// What a collection decides about: blob digests, revision and `_layers` links by
/// (repository, digest), uploads by (repository, id) with their `startedat`.
#[derive(Default)]
struct Files {
    blobs: BTreeSet<String>,
    revisions: BTreeSet<(String, String)>,
    layers: BTreeSet<(String, String)>,
    uploads: BTreeMap<(String, String), String>,
}

fn files(root: &Path) -> Files {
    let base = v2(root);
    let mut f = Files::default();
    let pair = |repo: &str, rest: &str| (repo.to_string(), rest.to_string());
    for e in walkdir::WalkDir::new(&base).into_iter().flatten().filter(|e| e.file_type().is_file()) {
        let rel = e.path().strip_prefix(&base).unwrap().to_string_lossy().into_owned();
        if let ["blobs", "sha256", _, hex, "data"] = rel.split('/').collect::<Vec<_>>()[..] {
            f.blobs.insert(hex.to_string());
        }
        let Some(rest) = rel.strip_prefix("repositories/") else { continue };
        if let Some((repo, hex)) = rest.split_once("/_manifests/revisions/sha256/") {
            if let Some(hex) = hex.strip_suffix("/link") {
                f.revisions.insert(pair(repo, hex));
            }
        } else if let Some((repo, hex)) = rest.split_once("/_layers/sha256/") {
            if let Some(hex) = hex.strip_suffix("/link") {
                f.layers.insert(pair(repo, hex));
            }
        } else if let Some((repo, id)) = rest.split_once("/_uploads/")
            && let Some(id) = id.strip_suffix("/startedat")
        {
            f.uploads.insert(pair(repo, id), std::fs::read_to_string(e.path()).unwrap());
        }
    }
    f
}

/// The store's repositories, read from its tags and its revisions whose manifest is there.
fn repositories(root: &Path, files: &Files) -> BTreeMap<String, Repo> {
    let mut repos: BTreeMap<String, Repo> = BTreeMap::new();
    for (r, hex) in &files.revisions {
        let Ok(bytes) = std::fs::read(blob_data(root, &format!("sha256:{hex}"))) else { continue };
        let m: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let digests = |list: &Value, field: &str| -> BTreeSet<String> {
            let items = list.as_array().map(Vec::as_slice).unwrap_or_default();
            items
                .iter()
                .filter_map(|i| i[field].as_str())
                .map(|d| d.trim_start_matches("sha256:").to_string())
                .collect()
        };
        let mut blobs = digests(&m["layers"], "digest");
        blobs.extend(digests(&m["fsLayers"], "blobSum"));
        blobs.extend(m["config"]["digest"].as_str().map(|d| d.trim_start_matches("sha256:").to_string()));
        let refs = Refs {
            blobs,
            children: digests(&m["manifests"], "digest"),
            subject: m["subject"]["digest"].as_str().map(|d| d.trim_start_matches("sha256:").to_string()),
        };
        repos.entry(r.clone()).or_default().manifests.insert(hex.clone(), refs);
    }
    for (r, t) in tags_on_disk(root) {
        let d = tag_digest(root, &r, &t);
        repos.entry(r).or_default().tagged.insert(d.trim_start_matches("sha256:").to_string());
    }
    repos
}

/// The differences between regsweep's collection and the reference's of one store, by kind, and
/// those of no documented kind (each named with its repository and digest).
#[derive(Debug, Default)]
struct Diff {
    kinds: BTreeMap<Kind, BTreeSet<String>>,
    undocumented: Vec<String>,
}

impl Diff {
    fn assert_documented(&self, what: &str) {
        assert!(
            self.undocumented.is_empty(),
            "{what}: differences of no documented kind:\n{}\n(documented: {:#?})",
            self.undocumented.join("\n"),
            self.kinds
        );
    }

    fn has(&self, kind: Kind) -> bool {
        self.kinds.get(&kind).is_some_and(|s| !s.is_empty())
    }
}

/// Sorts every difference between `ours` (regsweep's collection of `original`) and `theirs`
/// (the reference collector's of `version`) into the documented kinds, by what the store held
/// before: what regsweep keeps and the reference does not must be needed by a manifest that
/// regsweep keeps for a documented reason; nothing the reference keeps may be gone with
/// regsweep, except a stale `_layers` link and an old upload.
fn differences(original: &Path, ours: &Path, theirs: &Path, version: Version, delete_untagged: bool) -> Diff {
    let (before, a, b) = (files(original), files(ours), files(theirs));
    let repos = repositories(original, &before);
    let v2_untagged = version == Version::V2 && delete_untagged;
    // Per repository: what regsweep keeps; what the reference marks over children (v3 does;
    // 2.8 marks a kept index's children only as blobs, not what they reference, without
    // `--delete-untagged` harmless since every child's revision is a root of its own).
    let ours_live: BTreeMap<&String, BTreeSet<String>> =
        repos.iter().map(|(n, r)| (n, r.live(delete_untagged, true))).collect();
    let by_children: BTreeMap<&String, BTreeSet<String>> =
        repos.iter().map(|(n, r)| (n, r.live(delete_untagged, false))).collect();
    let referrer = |r: &String, d: &String| ours_live[r].contains(d) && !by_children[r].contains(d);
    let child = |r: &String, d: &String| v2_untagged && by_children[r].contains(d) && !repos[r].tagged.contains(d);
    // The manifests regsweep keeps that need blob `d` (as itself, its config, a layer or a child).
    let needers = |d: &String| -> Vec<(&String, &String)> {
        let mut out = Vec::new();
        for (r, live) in &ours_live {
            for m in live {
                let refs = &repos[*r].manifests[m];
                if m == d || refs.blobs.contains(d) || refs.children.contains(d) {
                    out.push((*r, m));
                }
            }
        }
        out
    };
    let mut diff = Diff::default();
    let mut note = |kind: Option<Kind>, item: String, why: &str| match kind {
        Some(k) => {
            diff.kinds.entry(k).or_default().insert(item);
        }
        None => diff.undocumented.push(format!("{item}: {why}")),
    };
    // What our semantics keep (DESIGN section 3) is there after regsweep's run.
    for (r, live) in &ours_live {
        for m in live {
            if !a.revisions.contains(&((*r).clone(), m.clone())) {
                note(None, format!("revision {r}@{m} gone after regsweep"), "our semantics keep it");
            }
            let refs = &repos[*r].manifests[m];
            for d in std::iter::once(m).chain(&refs.blobs).chain(&refs.children) {
                if before.blobs.contains(d) && !a.blobs.contains(d) {
                    note(None, format!("blob {d} of {r}@{m} gone after regsweep"), "our semantics keep it");
                }
            }
        }
    }
    for d in a.blobs.difference(&b.blobs) {
        let needed = needers(d);
        // The reference keeps a blob through a manifest it keeps: v3 (and 2.8 without
        // --delete-untagged) what it reaches over children; 2.8 with it, a tagged manifest's
        // references, and a child's own manifest blob.
        let reference_keeps = needed.iter().any(|(r, m)| match v2_untagged {
            false => by_children[*r].contains(*m),
            true => repos[*r].tagged.contains(*m) || (*m == d && by_children[*r].contains(*m)),
        });
        let kind = if reference_keeps {
            None
        } else if needed.iter().any(|(r, m)| referrer(r, m)) {
            Some(Kind::Referrer)
        } else if needed.iter().any(|(r, m)| child(r, m)) {
            Some(Kind::MultiArchChild)
        } else {
            None
        };
        note(kind, format!("blob {d} kept by regsweep only (needed by {needed:?})"), "not a documented kind");
    }
    for d in b.blobs.difference(&a.blobs) {
        note(
            None,
            format!("blob {d} kept by {version}'s collector only (needed by {:?})", needers(d)),
            "regsweep deleted it",
        );
    }
    for (r, d) in a.revisions.difference(&b.revisions) {
        let kind = if referrer(r, d) {
            Some(Kind::Referrer)
        } else if child(r, d) {
            Some(Kind::MultiArchChild)
        } else {
            None
        };
        note(kind, format!("revision {r}@{d} kept by regsweep only"), "not a documented kind");
    }
    for (r, d) in b.revisions.difference(&a.revisions) {
        let elsewhere: Vec<&String> =
            by_children.iter().filter(|(n, l)| **n != r && l.contains(d)).map(|(n, _)| *n).collect();
        if version == Version::V3 && delete_untagged && !elsewhere.is_empty() {
            note(
                Some(Kind::MarkedElsewhere),
                format!("revision {r}@{d} kept by {version}'s collector only (kept in {elsewhere:?})"),
                "",
            );
            continue;
        }
        let tagged_elsewhere: Vec<&String> =
            repos.iter().filter(|(n, x)| *n != r && x.tagged.contains(d)).map(|(n, _)| n).collect();
        note(
            None,
            format!("revision {r}@{d} kept by {version}'s collector only (tagged in {tagged_elsewhere:?})"),
            "regsweep deleted it",
        );
    }
    for (r, d) in a.layers.difference(&b.layers) {
        let needed: Vec<_> = needers(d).into_iter().filter(|(n, _)| *n == r).collect();
        let kind = if needed.is_empty() {
            None
        } else if needed.iter().any(|(n, m)| referrer(n, m)) {
            Some(Kind::Referrer)
        } else {
            // (3.1.1's link sweep by the order of repositories hits only revisions regsweep
            // deletes: Kind::MarkedElsewhere.)
            None
        };
        note(kind, format!("layer link {r}@{d} kept by regsweep only (needed by {needed:?})"), "not a documented kind");
    }
    for (r, d) in b.layers.difference(&a.layers) {
        let needed: Vec<_> = needers(d).into_iter().filter(|(n, _)| *n == r).collect();
        let kind = needed.is_empty().then_some(Kind::StaleLayerLink);
        note(
            kind,
            format!("layer link {r}@{d} kept by {version}'s collector only (needed by {needed:?})"),
            "regsweep removed a link a kept manifest needs",
        );
    }
    for (r, id) in a.uploads.keys().filter(|k| !b.uploads.contains_key(*k)) {
        note(None, format!("upload {r}/{id} kept by regsweep only"), "not a documented kind");
    }
    for ((r, id), started) in b.uploads.iter().filter(|(k, _)| !a.uploads.contains_key(*k)) {
        let old = humantime::parse_rfc3339_weak(started.trim())
            .is_ok_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() > Duration::from_secs(168 * 3600));
        let kind = old.then_some(Kind::OldUpload);
        note(kind, format!("upload {r}/{id} (started {started}) purged by regsweep"), "younger than 168 h");
    }
    diff
}

/// The kinds of difference `store` must show between `gc --delete-untagged` and `version`'s:
/// referrers of kept manifests where it has some, old uploads, and on 2.8 the untagged children
/// of kept indexes.
fn expected_kinds(store: &Path, version: Version) -> BTreeSet<Kind> {
    let before = files(store);
    let repos = repositories(store, &before);
    let mut kinds = BTreeSet::new();
    for r in repos.values() {
        let (all, by_children) = (r.live(true, true), r.live(true, false));
        if all.len() > by_children.len() {
            kinds.insert(Kind::Referrer);
        }
        if version == Version::V2 && by_children.iter().any(|d| !r.tagged.contains(d)) {
            kinds.insert(Kind::MultiArchChild);
        }
    }
    if version == Version::V3 {
        let kept: BTreeMap<&String, BTreeSet<String>> = repos.iter().map(|(n, r)| (n, r.live(true, false))).collect();
        let marked_elsewhere = |n: &String, d: &String| kept.iter().any(|(m, l)| *m != n && l.contains(d));
        if repos.iter().any(|(n, r)| r.manifests.keys().any(|d| !kept[n].contains(d) && marked_elsewhere(n, d))) {
            kinds.insert(Kind::MarkedElsewhere);
        }
    }
    let week = Duration::from_secs(168 * 3600);
    if before.uploads.values().any(|s| {
        humantime::parse_rfc3339_weak(s.trim())
            .is_ok_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() > week)
    }) {
        kinds.insert(Kind::OldUpload);
    }
    kinds
}

/// `gc --delete-untagged` on a copy of `store`, and each available version's collector with it
/// on others: every difference of a documented kind, and each kind the store has shows.
fn assert_delete_untagged_differs_as_documented(store: &Path, versions: &[Version]) {
    let ours = copy_store(store);
    let args = ["gc", "--root", ours.path().to_str().unwrap(), "--delete-untagged", "--grace", "0s", "--quiet"];
    regsweep_json(&args);
    for &version in versions {
        if version.available("delete_untagged_differs_as_documented").is_none() {
            continue;
        }
        let theirs = copy_store(store);
        reference_gc_with(theirs.path(), &Setup { version, ..Setup::default() }, true);
        let diff = differences(store, ours.path(), theirs.path(), version, true);
        let what = format!("gc --delete-untagged on {} against {version}", store.display());
        diff.assert_documented(&what);
        for kind in expected_kinds(store, version) {
            assert!(diff.has(kind), "{what}: the store has a case of {kind:?} and no difference shows it: {diff:#?}");
        }
        if version == Version::V3 {
            assert!(!diff.has(Kind::MultiArchChild), "3.1.1 keeps the children of a kept index");
        }
    }
}

#[test]
fn delete_untagged_differs_from_both_references_only_as_documented_on_the_demo_store() {
    // Referrers of v2 and v6 (by `subject`), team/multi's indexes, an upload from long ago.
    let store = fixture("demo");
    assert_delete_untagged_differs_as_documented(store.path(), &VERSIONS);
}

#[test]
fn delete_untagged_differs_from_v3_only_as_documented_on_stores_it_wrote_and_generated_ones() {
    // The demo as 3.1.1 pushed it (tags only: the referrers and the old upload do not travel
    // with skopeo), given an SBOM bundle on the kept v6 (a referrer that is an index, with a
    // child of its own), an upload from long ago and v6 untagged in another repository; and a
    // generated store.
    if Version::V3.available("delete_untagged_differs_from_v3_only_as_documented").is_none() {
        return;
    }
    let pushed = copy_store(pushed_by(Version::V3));
    let v6 = tag_digest(pushed.path(), "team/app", "v6");
    referrer_index_of(pushed.path(), "team/app", &v6);
    put_old_upload(pushed.path(), "team/multi");
    // v6 pushed by digest into team/multi too, untagged there (3.1.1 keeps it: Kind::MarkedElsewhere).
    let revision = v2(pushed.path()).join("repositories/team/multi/_manifests/revisions/sha256").join(&v6[7..]);
    std::fs::create_dir_all(&revision).unwrap();
    std::fs::write(revision.join("link"), &v6).unwrap();
    assert_delete_untagged_differs_as_documented(pushed.path(), &VERSIONS);
    assert_delete_untagged_differs_as_documented(generated(), &VERSIONS);
}

#[test]
fn v3_delete_untagged_deletes_the_referrers_of_kept_images_that_regsweep_keeps() {
    // DESIGN section 3, a deliberate difference: 3.1.1's --delete-untagged knows nothing of
    // `subject`, so the SBOM and signature attached to a kept image go; regsweep keeps them.
    if Version::V3.available("v3_delete_untagged_deletes_the_referrers_of_kept_images").is_none() {
        return;
    }
    let store = fixture("demo");
    let root = store.path();
    let repos = repositories(root, &files(root));
    let attached: Vec<(&String, String, String)> = repos
        .iter()
        .flat_map(|(n, r)| {
            r.manifests.iter().filter_map(move |(d, m)| {
                let subject = m.subject.as_ref().filter(|s| r.tagged.contains(*s))?;
                Some((n, format!("sha256:{d}"), format!("sha256:{subject}")))
            })
        })
        .collect();
    assert_eq!(attached.len(), 2, "the demo's referrers of v2 and v6: {attached:?}");
    let theirs = copy_store(root);
    reference_gc_with(theirs.path(), &Setup { version: Version::V3, ..Setup::default() }, true);
    let reg = Registry::serve_version(theirs.path(), Version::V3);
    for (repo, referrer, subject) in &attached {
        assert_eq!(reg.manifest_status(repo, referrer), 404, "3.1.1's collector was expected to delete {referrer}");
        reg.pull(repo, subject).expect("the reference keeps the image itself");
    }
    drop(reg);
    let ours = copy_store(root);
    regsweep_json(&["gc", "--root", ours.path().to_str().unwrap(), "--delete-untagged", "--grace", "0s"]);
    let reg = Registry::serve_version(ours.path(), Version::V3);
    for (repo, referrer, subject) in &attached {
        reg.pull(repo, referrer).unwrap_or_else(|e| panic!("{repo}@{referrer}, attached to {subject}, broke: {e}"));
        reg.pull(repo, subject).expect("the image pulls");
    }
}

#[test]
fn v3_delete_untagged_keeps_a_manifest_untagged_in_an_earlier_repository_without_its_layer_links() {
    // The order-dependent bug of 3.1.1's link sweep (DESIGN section 2), measured: v6 pushed by
    // digest into team/aaa (listed before team/app, which tags it), untagged there. 3.1.1 keeps
    // that revision (its digest is marked in team/app) but removes team/aaa's links to its config
    // and layers, marked only later: the manifest answers, the image does not pull. regsweep
    // deletes the revision with its links (untagged in its repository): nothing half there.
    if Version::V3.available("v3_delete_untagged_keeps_a_manifest_untagged_in_an_earlier_repository").is_none() {
        return;
    }
    let store = fixture("demo");
    let root = store.path();
    let v6 = tag_digest(root, "team/app", "v6");
    let manifest: Value = serde_json::from_slice(&std::fs::read(blob_data(root, &v6)).unwrap()).unwrap();
    let repo = v2(root).join("repositories/team/aaa");
    let mut links = vec![(repo.join("_manifests/revisions/sha256").join(&v6[7..]), v6.clone())];
    for d in std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array().unwrap()) {
        let d = d["digest"].as_str().unwrap();
        links.push((repo.join("_layers/sha256").join(&d[7..]), d.to_string()));
    }
    for (folder, digest) in links {
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("link"), digest).unwrap();
    }
    let theirs = copy_store(root);
    reference_gc_with(theirs.path(), &Setup { version: Version::V3, ..Setup::default() }, true);
    let reg = Registry::serve_version(theirs.path(), Version::V3);
    assert_eq!(reg.manifest_status("team/aaa", &v6), 200, "3.1.1 keeps the revision");
    assert!(reg.pull("team/aaa", &v6).is_err(), "3.1.1 was expected to remove the links it needs");
    drop(reg);
    let ours = copy_store(root);
    regsweep_json(&["gc", "--root", ours.path().to_str().unwrap(), "--delete-untagged", "--grace", "0s"]);
    let reg = Registry::serve_version(ours.path(), Version::V3);
    assert_eq!(reg.manifest_status("team/aaa", &v6), 404, "regsweep deletes it, untagged in team/aaa");
    reg.pull("team/app", "v6").expect("the image, tagged in team/app, pulls");
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
    let store = store_with_api_deletes(Version::V2);
    let ours = copy_store(store.path());
    let report = regsweep_json(&["gc", "--root", ours.path().to_str().unwrap(), "--grace", "0s"]);
    assert!(report["layer_links_deleted"].as_u64().unwrap() > 0);
    assert_eq!(report["uploads_deleted"], 1);
    let reg = Registry::serve(ours.path());
    reg.assert_all_tags_pull(ours.path());
}

#[test]
fn grace_protects_young_blobs() {
    let store = store_with_api_deletes(Version::V2);
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
