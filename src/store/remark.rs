//! The second mark, right before layer links and blobs go: what pushes wrote since the scan. The
//! grace period protects only what existed when the plan was made; a push that mounts an old
//! image into a new repository (or tags an old digest again) between the plan and the sweep
//! links blobs the plan is about to delete. Each backend finds what was written since ([`Young`]);
//! what that needs is closed here, once.

use std::collections::HashMap;

use anyhow::{Result, bail};

use crate::model::digest::{Digest, DigestSet};
use crate::model::inventory::Parsed;

/// What pushes since the scan need: the sweep must leave it.
#[derive(Debug, Default)]
pub struct Rescued {
    /// Blobs (manifests, configs, layers) that something written since the scan needs.
    pub blobs: DigestSet,
    /// Per repository, the `_layers` links it needs for what was written since the scan.
    pub links: HashMap<String, DigestSet>,
    /// Per repository, the manifests written since the scan and those they list, recursively.
    pub manifests: HashMap<String, DigestSet>,
    /// Per repository, tags with a history entry written since the scan but no `current/link`
    /// (a bucket: the registry writes the entry first), with the entry's digest.
    pub tags: HashMap<String, Vec<(String, Digest)>>,
}

/// What one repository wrote since the scan, as a backend found it.
#[derive(Debug, Default)]
pub struct Young {
    pub repo: String,
    /// Manifests: of revision links and tag links written since, and those named to the re-mark.
    pub manifests: Vec<Digest>,
    /// The digests of `_layers` links written since (by their path: their content is not read).
    pub links: DigestSet,
    /// Tags with a history entry written since and no `current/link`.
    pub tags: Vec<(String, Digest)>,
}

/// What each repository's manifests written since the scan need: the manifests, their blobs
/// and children, recursively, and the repository's links to them; `load` reads a manifest.
pub(crate) fn rescue(per_repo: Vec<Young>, load: &dyn Fn(&Digest) -> Parsed) -> Result<Rescued> {
    let mut rescued = Rescued::default();
    for Young { repo: name, manifests, mut links, tags } in per_repo {
        if !tags.is_empty() {
            rescued.tags.insert(name.clone(), tags);
        }
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
        if !seen.is_empty() {
            rescued.manifests.insert(name.clone(), seen);
        }
        if !links.is_empty() {
            rescued.links.insert(name, links);
        }
    }
    Ok(rescued)
}
