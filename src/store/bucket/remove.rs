//! The bucket's deletions. A batch's parent folder is listed again right before (one request
//! per 1,000 keys; blob prefix folders sixteen at a time, in one range), so that what was
//! written since the scan is seen and left; then the key that makes each folder what it is
//! (`current/link`, `link`, `data`; an upload's everything but `startedat`) goes for every
//! folder of the group, by DeleteObjects, then the rest. A crash in between leaves keys the
//! registry ignores and the next run removes.

use std::collections::BTreeMap;
use std::time::SystemTime;

use rayon::prelude::*;

use crate::core::progress::Progress;
use crate::model::digest::Digest;
use crate::model::outcome::What;
use crate::store::bucket::client::{Bucket, Obj};
use crate::store::bucket::list_blob_range;
use crate::store::stage::{Batch, Folder, Parent, Tally, crash_point};
use crate::store::tree::{self, DATA, LINK, inside};

/// One folder's keys, in the order they go.
struct Plan {
    /// Deleted first: from then on the folder is gone for the registry.
    first: Vec<String>,
    /// Deleted after every folder's first keys.
    then: Vec<String>,
    bytes: u64,
}

/// What to do with one folder, from the fresh listing of its parent (`objs`, keys relative to
/// the parent `parent`); `None` when it is left (written since the scan).
fn plan_folder(
    parent: &str,
    objs: &BTreeMap<&str, &Obj>,
    f: &Folder,
    what: What,
    since: Option<SystemTime>,
) -> Option<Plan> {
    let young = |rel: &str| objs.get(rel).is_some_and(|o| since.is_some_and(|s| o.modified >= s));
    let prefix = format!("{}/", f.name());
    let all: Vec<(&str, &Obj)> =
        objs.range(prefix.as_str()..).take_while(|(k, _)| k.starts_with(&prefix)).map(|(k, o)| (*k, *o)).collect();
    // The key that makes the folder what it is; written since the scan, the folder stays.
    let main = match f {
        Folder::Link(_) => Some(format!("{prefix}{LINK}")),
        Folder::Blob(_) => Some(format!("{prefix}{DATA}")),
        Folder::Tag(tag, _) => Some(inside::tag_current_in_tags(tag)),
        Folder::Upload(_) | Folder::History(_) | Folder::Leftover(_) => None,
    };
    let left = match f {
        Folder::History(tag) => young(&inside::tag_current_in_tags(tag)),
        // Holding a link or data now (a push wrote it): no leftover any more.
        Folder::Leftover(_) => all.iter().any(|(k, _)| k.rsplit('/').next().is_some_and(|f| f == LINK || f == DATA)),
        _ => main.as_deref().is_some_and(|m| what != What::IndexEntry && young(m)),
    };
    if left {
        return None;
    }
    let mut plan = Plan { first: Vec::new(), then: Vec::new(), bytes: 0 };
    for (k, o) in all {
        let (is_first, counts) = match f {
            // An upload's `startedat` goes last: interrupted, it still looks old.
            Folder::Upload(_) => (!k.ends_with("/startedat"), k.ends_with("/data")),
            _ => (main.as_deref() == Some(k), what == What::Blob && main.as_deref() == Some(k)),
        };
        if counts {
            plan.bytes = o.size;
        }
        let key = format!("{parent}/{k}");
        if is_first { plan.first.push(key) } else { plan.then.push(key) }
    }
    Some(plan)
}

/// The digest the re-mark must keep for a folder left because it was written again: a
/// revision's or a layer link's own, the one a tag's link holds now (read: a tag pushed again
/// may name another manifest).
fn left_digest(bucket: &Bucket, parent: &str, f: &Folder) -> Option<Digest> {
    match f {
        Folder::Link(d) => Some(*d),
        Folder::Tag(tag, _) => {
            let (bytes, _) = bucket.get(&format!("{parent}/{}", inside::tag_current_in_tags(tag)), 1024).ok()??;
            std::str::from_utf8(&bytes).ok().and_then(Digest::parse)
        }
        _ => None,
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
    stage: &str,
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
            let what = match f {
                Folder::Leftover(_) => What::Leftover,
                Folder::History(_) => What::History,
                _ => b.what,
            };
            match plan_folder(&parent, &objs, f, b.what, since) {
                Some(p) => plans.push((b.repo, what, f, p)),
                None => tally.rescued(b.repo, what, left_digest(bucket, &parent, f)),
            }
        }
    }
    crate::store::apply::stop_point(&format!("delete:{stage}"));
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
pub(super) fn stage(
    bucket: &Bucket,
    progress: Progress,
    name: &str,
    batches: &[Batch],
    since: Option<SystemTime>,
    tally: &Tally,
) -> bool {
    let before = tally.failures();
    let bar = progress.bar(name, batches.iter().map(|b| b.folders.len() as u64).sum());
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
    groups.par_iter().for_each(|(list, listing)| {
        remove_group(bucket, name, list, listing, since, tally);
        bar.inc(list.iter().map(|b| b.folders.len() as u64).sum());
    });
    bar.finish_and_clear();
    tally.failures() == before && !tally.stop_requested()
}
