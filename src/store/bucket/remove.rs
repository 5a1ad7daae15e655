//! The bucket's deletions. A batch's parent folder is listed again right before (one request
//! per 1,000 keys; blob prefix folders sixteen at a time, in one range), so that what was
//! written since the scan is seen and left; then the key that makes each folder what it is
//! (`current/link`, `link`, `data`; an upload's everything but `startedat`) goes for every
//! folder of the group, by DeleteObjects, then the rest. A crash in between leaves keys the
//! registry ignores and the next run removes.

use std::collections::BTreeMap;
use std::time::SystemTime;

use rayon::prelude::*;

use crate::model::digest::Digest;
use crate::model::outcome::What;
use crate::store::bucket::client::{Bucket, Obj};
use crate::store::bucket::list_blob_range;
use crate::store::stage::{
    self, Batch, Decision, Folder, Keep, Parent, Removal, Stage, Stamp, Tally, crash_point, decide,
};
use crate::store::tree;

/// One folder's keys, in the order they go.
struct Plan {
    /// Deleted first: from then on the folder is gone for the registry.
    first: Vec<String>,
    /// Deleted after every folder's first keys.
    then: Vec<String>,
    bytes: u64,
}

/// What to do with one folder, counted as `kind`, from the fresh listing of its parent (`objs`,
/// keys relative to the parent `parent`), as [`decide`] says: its keys' plan, or what it keeps
/// when it is left.
fn plan_folder(
    parent: &str,
    objs: &BTreeMap<&str, &Obj>,
    f: &Folder,
    kind: What,
    since: Option<SystemTime>,
) -> Result<Plan, Keep> {
    let found = f
        .decisive()
        .iter()
        .find_map(|rel| objs.get(rel.as_str()))
        .map(|o| Stamp { size: o.size, modified: o.modified });
    let bytes = match decide(f, kind, since, found) {
        Decision::Go { bytes } => bytes,
        Decision::Leave(keep) => return Err(keep),
    };
    let prefix = format!("{}/", f.name());
    let mut plan = Plan { first: Vec::new(), then: Vec::new(), bytes };
    for (k, _) in objs.range(prefix.as_str()..).take_while(|(k, _)| k.starts_with(&prefix)) {
        let key = format!("{parent}/{k}");
        if f.goes_first(k) { plan.first.push(key) } else { plan.then.push(key) }
    }
    Ok(plan)
}

/// The digest the re-mark must keep for a folder left because it was written again: its own,
/// or the one a tag's link holds now (read: a tag pushed again may name another manifest).
fn kept_digest(bucket: &Bucket, parent: &str, f: &Folder, keep: Keep) -> Option<Digest> {
    match keep {
        Keep::Nothing => None,
        Keep::Its(d) => Some(d),
        Keep::TagsManifest => {
            let link = f.decisive().into_iter().next()?;
            let (bytes, _) = bucket.get(&format!("{parent}/{link}"), 1024).ok()??;
            std::str::from_utf8(&bytes).ok().and_then(Digest::parse)
        }
    }
}

/// How a group of batches is listed right before its deletions.
enum Listing {
    /// One batch's parent folder.
    Parent(String),
    /// Blob prefix folders `<d>0` to `<d>f`: the range of one first hex digit `d`.
    BlobRange(u8),
}

/// The objects of a group's listing; an error with what was listed.
fn list(bucket: &Bucket, listing: &Listing) -> Result<Vec<Obj>, (String, anyhow::Error)> {
    match listing {
        Listing::Parent(p) => bucket.list(p).map_err(|e| (bucket.url(p), e)),
        Listing::BlobRange(d) => list_blob_range(bucket, *d).map_err(|e| (bucket.url(tree::BLOBS), e)),
    }
}

/// Removes the folders of a group of batches: listed together, planned, the first keys of every
/// folder, then the rest.
fn remove_group(
    bucket: &Bucket,
    stage: Stage,
    batches: &[&Batch],
    listing: &Listing,
    since: Option<SystemTime>,
    tally: &Tally,
) {
    if tally.stop_requested() {
        return;
    }
    let listed = match list(bucket, listing) {
        Ok(l) => l,
        Err((url, e)) => {
            let repo = if batches.len() == 1 { batches[0].repo } else { None };
            return tally.failed(repo, &url, &format!("{e:#}"));
        }
    };
    // Each folder's plan, with its repository (for the count) and what it is.
    let mut plans: Vec<(Option<usize>, What, &Folder, Plan)> = Vec::new();
    for b in batches {
        let parent = b.parent.place();
        let strip = format!("{parent}/");
        let objs: BTreeMap<&str, &Obj> = listed.iter().filter_map(|o| Some((o.key.strip_prefix(&strip)?, o))).collect();
        if objs.is_empty() {
            continue; // gone already: a rerun
        }
        for f in &b.folders {
            let what = f.kind(b.what);
            match plan_folder(&parent, &objs, f, what, since) {
                Ok(p) => plans.push((b.repo, what, f, p)),
                Err(keep) => tally.rescued(b.repo, what, kept_digest(bucket, &parent, f, keep)),
            }
        }
    }
    crate::store::apply::stop_point(&format!("delete:{}", stage.name()));
    let first: Vec<String> = plans.iter().flat_map(|(_, _, _, p)| p.first.iter().cloned()).collect();
    let failed: BTreeMap<String, String> = bucket.delete_many(&first).into_iter().collect();
    for _ in &first {
        crash_point();
    }
    // A tag pushed again between the listing and the deletion of its link wrote a history entry
    // first (perhaps over one listed as old): listed again, such keys stay, and the next
    // re-mark writes the tag back onto the digest they name.
    let written = match since {
        Some(since) if batches.iter().any(|b| b.what == What::Tag) => list(bucket, listing)
            .map(|l| l.into_iter().filter(|o| o.modified >= since).map(|o| o.key).collect())
            .unwrap_or_default(),
        _ => std::collections::BTreeSet::new(),
    };
    let then: Vec<String> = plans
        .iter()
        .filter(|(_, _, _, p)| !p.first.iter().any(|k| failed.contains_key(k)))
        .flat_map(|(_, _, _, p)| p.then.iter().filter(|k| !written.contains(*k)).cloned())
        .collect();
    let failed_then: BTreeMap<String, String> = bucket.delete_many(&then).into_iter().collect();
    for (repo, what, folder, p) in &plans {
        let err = p.first.iter().chain(&p.then).find_map(|k| failed.get(k).or(failed_then.get(k)).map(|e| (k, e)));
        match err {
            Some((k, e)) => tally.failed(*repo, &bucket.url(k), e),
            None => tally.gone(*repo, *what, folder, p.bytes),
        }
    }
}

/// Runs one stage; true when every folder went or was rescued. Each batch's parent is listed
/// again right before its deletions; blob prefix folders by sixteen at a time (one range
/// listing, and DeleteObjects of up to 1,000 keys across them); groups in parallel.
pub(super) fn stage(bucket: &Bucket, removal: &Removal) -> bool {
    let Removal { stage: name, batches, since, tally, progress } = *removal;
    let mut groups: Vec<(Vec<&Batch>, Listing)> = Vec::new();
    let mut ranges: BTreeMap<u8, Vec<&Batch>> = BTreeMap::new();
    for b in batches {
        match &b.parent {
            Parent::BlobPrefix(p) => ranges.entry(p >> 4).or_default().push(b),
            _ => groups.push((vec![b], Listing::Parent(b.parent.place()))),
        }
    }
    for (d, list) in ranges {
        // A few prefix folders of a range are listed each alone (a large store's range is long).
        if list.len() >= 4 {
            groups.push((list, Listing::BlobRange(d)));
        } else {
            groups.extend(list.into_iter().map(|b| (vec![b], Listing::Parent(b.parent.place()))));
        }
    }
    stage::run(tally, progress, name, batches.iter().map(|b| b.folders.len() as u64).sum(), |bar| {
        groups.par_iter().for_each(|(list, listing)| {
            remove_group(bucket, name, list, listing, since, tally);
            bar.inc(list.iter().map(|b| b.folders.len() as u64).sum());
        })
    })
}
