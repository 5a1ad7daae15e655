//! The second mark, right before layer links and blobs go: what pushes wrote since the scan. The
//! grace period protects only what existed when the plan was made; a push that mounts an old
//! image into a new repository (or tags an old digest again) between the plan and the sweep
//! links blobs the plan is about to delete. Folder mtimes make this cheap: only the revision and
//! `_layers` folders that changed since the scan are listed, only links written since are read.

use std::collections::HashMap;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use rayon::prelude::*;

use crate::model::digest::{Digest, DigestSet};
use crate::model::inventory::Parsed;
use crate::store::fs::{self, Dir};
use crate::store::layout::Layout;
use crate::store::scan;

/// What pushes since the scan need: the sweep must leave it.
#[derive(Debug, Default)]
pub struct Rescued {
    /// Blobs (manifests, configs, layers) that something written since the scan needs.
    pub blobs: DigestSet,
    /// Per repository, the `_layers` links it needs for what was written since the scan.
    pub links: HashMap<String, DigestSet>,
}

/// Marks what every repository (those created since the scan too) wrote since `since`: revision
/// links and `_layers` links with a younger mtime, and `extra` (revisions a deletion found
/// written again). A manifest that cannot be read is an error: its blobs are unknown.
pub fn remark(layout: &Layout, since: SystemTime, extra: &[(String, Digest)]) -> Result<Rescued> {
    let names = scan::repositories(layout)?;
    let blobs_dir = Dir::open(&layout.blobs())?;
    let per_repo: Vec<(String, Vec<Digest>, DigestSet)> = names
        .into_par_iter()
        .map(|name| {
            let mut manifests: Vec<Digest> = extra.iter().filter(|(r, _)| *r == name).map(|(_, d)| *d).collect();
            if let Some((dir, young)) = young_links(&layout.revisions(&name), since)? {
                for d in young {
                    manifests.extend(dir.read_link(&format!("{}/link", d.hex()))?.map(|(target, _)| target));
                }
            }
            // A layer link counts by the digest in its path: its content is not read.
            let links: DigestSet =
                young_links(&layout.layers(&name), since)?.into_iter().flat_map(|(_, l)| l).collect();
            Ok((name, manifests, links))
        })
        .collect::<Result<_>>()?;
    rescue(per_repo, &|d| match &blobs_dir {
        Some(dir) => scan::load_manifest(layout, dir, d),
        None => Parsed::Missing,
    })
}

/// What each repository's manifests written since the scan need (`per_repo`: the repository,
/// its young manifests, the digests of its young layer links): the manifests, their blobs and
/// children, recursively, and the repository's links to them; `load` reads a manifest.
pub(crate) fn rescue(
    per_repo: Vec<(String, Vec<Digest>, DigestSet)>,
    load: &dyn Fn(&Digest) -> Parsed,
) -> Result<Rescued> {
    let mut rescued = Rescued::default();
    for (name, manifests, mut links) in per_repo {
        // A new manifest needs its blobs, and this repository's links to them; an index its children.
        let mut seen = DigestSet::default();
        let mut todo = manifests;
        while let Some(d) = todo.pop() {
            if !seen.insert(d) {
                continue;
            }
            rescued.blobs.insert(d);
            links.insert(d);
            match load(&d) {
                Parsed::Ok(m) => {
                    rescued.blobs.extend(m.blobs.iter().copied());
                    links.extend(m.blobs.iter().copied());
                    todo.extend(m.children.iter().copied());
                }
                Parsed::Missing => {}
                Parsed::Broken(e) => bail!("{name}: a manifest pushed during the run: {e}"),
            }
        }
        rescued.blobs.extend(links.iter().copied());
        if !links.is_empty() {
            rescued.links.insert(name, links);
        }
    }
    Ok(rescued)
}

/// The folder `dir` (a `sha256/` of revisions or layer links), opened, and the digests in the
/// paths of its links written at or after `since`; `None` when the folder has not changed since
/// (no entry added or removed).
fn young_links(dir: &std::path::Path, since: SystemTime) -> Result<Option<(Dir, Vec<Digest>)>> {
    if fs::stat(dir)?.is_none_or(|(_, mtime)| mtime < since) {
        return Ok(None);
    }
    let Some(open) = Dir::open(dir)? else { return Ok(None) };
    let mut young = Vec::new();
    for d in fs::digest_folders(dir)? {
        let rel = format!("{}/link", d.hex());
        let st = open.stat(&rel).with_context(|| format!("cannot stat {}", dir.join(&rel).display()))?;
        if st.is_some_and(|s| s.modified >= since) {
            young.push(d);
        }
    }
    Ok(Some((open, young)))
}

/// Of the manifests of `repo` about to be deleted (indexes, subjects of referrers), those whose
/// revision link was written again since `since` (a tag pushed again onto an old one), with the
/// children they list, recursively: deleting a child's revision would break the index that was
/// tagged again.
pub fn retagged(
    layout: &Layout,
    repo: &str,
    planned: &mut dyn Iterator<Item = Digest>,
    since: SystemTime,
) -> Result<DigestSet> {
    let Some(revisions) = Dir::open(&layout.revisions(repo))? else { return Ok(DigestSet::default()) };
    let mut todo = Vec::new();
    for d in planned {
        let rel = format!("{}/link", d.hex());
        let st =
            revisions.stat(&rel).with_context(|| format!("cannot stat {}", layout.revision_dir(repo, &d).display()))?;
        if st.is_some_and(|s| s.modified >= since) {
            todo.push(d);
        }
    }
    let blobs = Dir::open(&layout.blobs())?;
    let mut kept = DigestSet::default();
    while let Some(d) = todo.pop() {
        if !kept.insert(d) {
            continue;
        }
        let target = revisions.read_link(&format!("{}/link", d.hex()))?.map_or(d, |(t, _)| t);
        if let Some(Parsed::Ok(m)) = blobs.as_ref().map(|b| scan::load_manifest(layout, b, &target)) {
            todo.extend(m.children.iter().copied());
        }
    }
    Ok(kept)
}
