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
use crate::store::stage::Relink;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;

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

/// Marks what every repository (those created since the scan too) wrote since `since`: revision
/// links and `_layers` links with a younger mtime, and `extra` (revisions a deletion found
/// written again). A manifest that cannot be read is an error: its blobs are unknown.
pub fn remark(layout: &Layout, since: SystemTime, extra: &[(String, Digest)]) -> Result<Rescued> {
    let names = scan::repositories(layout)?;
    let blobs_dir = Dir::open(&layout.blobs())?;
    let per_repo: Vec<Young> = names
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
            Ok(Young { repo: name, manifests, links, tags: Vec::new() })
        })
        .collect::<Result<_>>()?;
    rescue(per_repo, &|d| match &blobs_dir {
        Some(dir) => scan::load_manifest(layout, dir, d),
        None => Parsed::Missing,
    })
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

/// Writes back a link this run deleted (see [`Relink`]), where there is none: written beside
/// it, then linked into place, which fails where a link exists (a push wrote it meanwhile). True
/// when written.
pub fn relink(layout: &Layout, link: &Relink) -> Result<bool> {
    let write = |path: std::path::PathBuf, d: &Digest| -> Result<bool> {
        if fs::stat(&path)?.is_some() {
            return Ok(false);
        }
        let dir = path.parent().unwrap_or(layout.v2());
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // Named as registry 3.1 names its own temporary files: a crash leaves nothing it reads.
        let tmp = dir.join(format!("link.regsweep-{}.tmp", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(d.to_string().as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot write {}", path.display())),
        }
    };
    Ok(match *link {
        Relink::Revision(repo, d) => write(layout.revision_dir(repo, &d).join("link"), &d)?,
        Relink::Layer(repo, d) => write(layout.layer_dir(repo, &d).join("link"), &d)?,
        Relink::Tag(repo, tag, d) => {
            write(layout.tag_index_entry(repo, tag, &d).join("link"), &d)?;
            write(layout.tag_current(repo, tag), &d)?
        }
    })
}
