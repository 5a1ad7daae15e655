//! The re-mark on a file system: folder mtimes make it cheap (only the revision and `_layers`
//! folders that changed since the scan are listed, only links written since are read); and
//! links written back where a push needs them.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::time::SystemTime;

use anyhow::{Context, Result};
use rayon::prelude::*;

use crate::model::digest::{Digest, DigestSet};
use crate::model::inventory::Parsed;
use crate::store::fs::layout::Layout;
use crate::store::fs::{self, Dir, scan};
use crate::store::remark::{Rescued, Young, rescue};
use crate::store::stage::Relink;

/// Marks what every repository (those created since the scan too) wrote since `since`: revision
/// links and `_layers` links with a younger mtime, the links now in the revision folders the
/// scan found without one (`incomplete`: a link written into a folder already there changes no
/// time of its parent's), and `extra` (revisions a deletion found written again). A manifest
/// that cannot be read is an error: its blobs are unknown.
pub fn remark(
    layout: &Layout,
    since: SystemTime,
    extra: &[(String, Digest)],
    incomplete: &[(String, Digest)],
) -> Result<Rescued> {
    let names = scan::repositories(layout)?;
    let blobs_dir = Dir::open(&layout.blobs())?;
    let per_repo: Vec<Young> = names
        .into_par_iter()
        .map(|name| {
            let mut manifests: Vec<Digest> = extra.iter().filter(|(r, _)| *r == name).map(|(_, d)| *d).collect();
            let mut filled: Vec<Digest> = incomplete.iter().filter(|(r, _)| *r == name).map(|(_, d)| *d).collect();
            let revisions = match young_links(&layout.revisions(&name), since)? {
                Some((dir, young)) => {
                    filled.extend(young);
                    Some(dir)
                }
                None if filled.is_empty() => None,
                None => Dir::open(&layout.revisions(&name))?,
            };
            if let Some(dir) = revisions {
                for d in filled {
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
            // Not where the tag is there again (pushed since, perhaps onto another manifest):
            // no history entry for what it does not name.
            if fs::stat(&layout.tag_current(repo, tag))?.is_some() {
                return Ok(false);
            }
            write(layout.tag_index_entry(repo, tag, &d).join("link"), &d)?;
            write(layout.tag_current(repo, tag), &d)?
        }
    })
}
