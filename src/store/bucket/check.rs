//! `check` on a bucket: the problems `check` finds on disk, from the bucket's listing (links
//! known from their ETags, read only when they name none of the repository's digests), each
//! named by its `s3://` URL. `--verify-digests` reads and hashes every blob. `--repair` is the
//! filesystem store's only.

use anyhow::{Result, bail};
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::core::progress::Progress;
use crate::model::UsageError;
use crate::model::digest::{Digest, DigestMap, DigestSet};
use crate::model::manifest::{self, Manifest};
use crate::store::MAX_MANIFEST;
use crate::store::Store;
use crate::store::bucket::client::Obj;
use crate::store::bucket::{BucketStore, digest_folders, link_etag};
use crate::store::check::{CheckOptions, CheckReport, Found, Kind, Trouble, why_broken};
use crate::store::tree::{self, Inside as RepoKey, JOURNAL};

/// Checks the store in a bucket.
pub fn check(store: &BucketStore, opts: CheckOptions, progress: Progress) -> Result<CheckReport> {
    if opts.repair {
        bail!(UsageError(format!(
            "check --repair works on a filesystem store, not yet on a bucket ({})",
            store.shown()
        )));
    }
    let names = store.repositories()?;
    let all: Vec<Digest> = store.blobs()?.iter().copied().collect();
    let found = Found::default();
    let corrupt = if opts.verify_digests { verify(store, &all, &found, progress)? } else { DigestSet::default() };
    let present: DigestSet = all.iter().copied().collect();
    let bar = progress.bar("checking", names.len() as u64);
    let counts: Vec<(usize, usize)> = names
        .par_iter()
        .map(|n| {
            let r = check_repo(store, n, &present, &corrupt, &found);
            bar.inc(1);
            r
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    if store.bucket.head(JOURNAL)?.is_some() {
        let detail = "an interrupted regsweep run: run gc or prune to finish it".to_string();
        found.push(Kind::Incomplete, None, &store.bucket.url(JOURNAL), detail, false, false);
    }
    Ok(CheckReport {
        root: store.shown().to_string(),
        repositories: names.len(),
        tags: counts.iter().map(|c| c.0).sum(),
        manifests: counts.iter().map(|c| c.1).sum(),
        blobs: all.len(),
        blobs_verified: if opts.verify_digests { all.len() } else { 0 },
        repaired: 0,
        problems: found.sorted(),
    })
}

/// Reads and hashes every blob; returns those whose content does not hash to their name.
fn verify(store: &BucketStore, blobs: &[Digest], found: &Found, progress: Progress) -> Result<DigestSet> {
    let bar = progress.bar("verifying", blobs.len() as u64);
    let corrupt = blobs
        .par_iter()
        .map(|b| {
            let key = tree::blob_data(b);
            let ok = match store.bucket.get(&key, u64::MAX)? {
                Some((bytes, _)) => Digest(Sha256::digest(&bytes).into()) == *b,
                None => true, // gone since the listing: a deletion, not a corruption
            };
            bar.inc(1);
            if !ok {
                let detail = format!("the content of {b} does not hash to its name");
                found.push(Kind::DigestMismatch, None, &store.bucket.url(&key), detail, true, false);
            }
            Ok((!ok).then_some(*b))
        })
        .collect::<Result<Vec<_>>>()?;
    bar.finish_and_clear();
    Ok(corrupt.into_iter().flatten().collect())
}

/// One repository's problems; its tags and manifests counted.
fn check_repo(
    store: &BucketStore,
    name: &str,
    present: &DigestSet,
    corrupt: &DigestSet,
    found: &Found,
) -> Result<(usize, usize)> {
    let objs = store.repo_objs(name);
    let base = format!("repositories/{name}/");
    let url = |rel: &str| store.bucket.url(&format!("{base}{rel}"));
    let digests = digest_folders(&objs, "_manifests/revisions/sha256/");
    let candidates = digests.iter().map(|d| (link_etag(d), *d)).collect();
    // A link's digest, or a problem recorded for it.
    let link = |o: &Obj, breaks: bool| -> Result<Option<Digest>> {
        match store.link(&format!("{base}{}", o.key), o, &candidates) {
            Ok(d) => Ok(d),
            Err(e) if e.is::<crate::store::MalformedLink>() => {
                found.push(Kind::MalformedLink, Some(name), &url(&o.key), format!("{e:#}"), breaks, false);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    };
    let add = |kind: Kind, rel: &str, detail: String| found.push(kind, Some(name), &url(rel), detail, false, false);
    let mut linked = DigestSet::default();
    let mut revisions: Vec<(Digest, &Obj)> = Vec::new();
    let mut tags: Vec<(&str, Option<&Obj>, Vec<Digest>)> = Vec::new();
    for o in objs.iter() {
        let key = RepoKey::of(&o.key);
        match key {
            RepoKey::LayerLink(d) => match link(o, false)? {
                Some(target) if !present.contains(&target) => {
                    add(Kind::DanglingLayerLink, &o.key, format!("links {target}, which is not in the store"))
                }
                Some(_) => {
                    linked.insert(d);
                }
                None => {}
            },
            RepoKey::RevisionLink(d) => revisions.push((d, o)),
            RepoKey::TagCurrent(tag) | RepoKey::TagHistory(tag, _) | RepoKey::TagOther(tag) => {
                if tags.last().is_none_or(|t| t.0 != tag) {
                    tags.push((tag, None, Vec::new()));
                }
                let t = tags.last_mut().expect("pushed");
                match key {
                    RepoKey::TagCurrent(_) => t.1 = Some(o),
                    RepoKey::TagHistory(_, d) => t.2.push(d),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let mut manifests: DigestMap<Option<Manifest>> = DigestMap::default();
    let mut own_problem: DigestMap<Trouble> = DigestMap::default();
    // Each revision: its digest, its link, the manifest it names and that manifest's content.
    type Read<'a> = (Digest, &'a Obj, Option<Digest>, Result<Option<Vec<u8>>>);
    let read: Vec<Read> = revisions
        .par_iter()
        .map(|(d, o)| {
            let target = link(o, false)?;
            let bytes = match target {
                Some(t) => store.bucket.get(&tree::blob_data(&t), MAX_MANIFEST).map(|r| r.map(|(b, _)| b)),
                None => Ok(None),
            };
            Ok((*d, *o, target, bytes))
        })
        .collect::<Result<_>>()?;
    for (d, o, target, bytes) in read {
        let Some(target) = target else {
            own_problem.insert(d, Trouble::new("its revision link is malformed".into()));
            continue;
        };
        match bytes {
            Ok(None) => {
                add(Kind::RevisionWithoutBlob, &o.key, format!("manifest {target} has no blob"));
                own_problem
                    .insert(d, Trouble { text: format!("its manifest blob {target} is missing"), blob_gone: true });
            }
            Ok(Some(_)) if corrupt.contains(&target) => {
                let text = format!("its manifest blob {target} is corrupt (its content does not hash to its name)");
                own_problem.insert(d, Trouble::new(text));
            }
            Ok(Some(bytes)) => match manifest::parse(&bytes) {
                Ok(m) => {
                    let foreign = manifest::foreign_layers(&bytes);
                    for b in m.blobs.iter().filter(|b| !foreign.contains(b)) {
                        let trouble = if !present.contains(b) {
                            add(Kind::MissingBlob, &o.key, format!("manifest {d} needs blob {b}"));
                            format!("blob {b} is missing")
                        } else if corrupt.contains(b) {
                            format!("blob {b} is corrupt (its content does not hash to its name)")
                        } else if !linked.contains(b) {
                            add(
                                Kind::MissingLayerLink,
                                &o.key,
                                format!("manifest {d} needs blob {b}, not linked here"),
                            );
                            format!("blob {b} is not linked in this repository")
                        } else {
                            continue;
                        };
                        own_problem.insert(d, Trouble::new(trouble));
                    }
                    manifests.insert(d, Some(m));
                }
                Err(e) => {
                    add(Kind::ManifestUnreadable, &o.key, format!("manifest {d}: {e:#}"));
                    own_problem.insert(d, Trouble::new("its manifest cannot be parsed".into()));
                }
            },
            Err(e) => {
                add(Kind::ManifestUnreadable, &o.key, format!("{e:#}"));
                own_problem.insert(d, Trouble::new("its manifest cannot be read".into()));
            }
        }
    }
    for (d, m) in &manifests {
        for c in m.iter().flat_map(|m| m.children.iter()) {
            if !manifests.contains_key(c) {
                let rel = format!("_manifests/revisions/sha256/{}/link", d.hex());
                add(Kind::MissingChild, &rel, format!("index {d} lists {c}, not held here"));
                own_problem.entry(*d).or_insert_with(|| Trouble::new(format!("its child {c} is missing")));
            }
        }
    }
    for (tag, current, history) in &tags {
        let held = |d: &Digest| manifests.contains_key(d) || own_problem.contains_key(d);
        match current {
            None => add(Kind::Incomplete, &format!("_manifests/tags/{tag}/"), format!("tag {tag} has no current link")),
            Some(o) => match link(o, true)? {
                None => {}
                Some(d) if !held(&d) => {
                    let detail = format!("points to {d}, which this repository does not hold");
                    found.push(Kind::TagBroken, Some(name), &url(&o.key), detail, true, false);
                }
                Some(d) => {
                    if let Some((why, blob_gone)) = why_broken(&d, &own_problem, &manifests) {
                        let detail =
                            if blob_gone { format!("points to {d}: {why}") } else { format!("{tag} ({d}): {why}") };
                        found.push(Kind::TagBroken, Some(name), &url(&o.key), detail, true, false);
                    }
                }
            },
        }
        for d in history.iter().filter(|d| !held(d)) {
            let rel = format!("_manifests/tags/{tag}/index/sha256/{}/link", d.hex());
            add(Kind::DanglingIndexEntry, &rel, format!("tag {tag} history names {d}, no longer held"));
        }
    }
    Ok((tags.len(), revisions.len()))
}
