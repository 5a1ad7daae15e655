//! The re-mark on a file system: folder mtimes make it cheap (only the revision and `_layers`
//! folders that changed since the scan are listed, only links written since are read); and
//! links written back where a push needs them.

use std::time::SystemTime;

use anyhow::{Context, Result};
use rayon::prelude::*;

use crate::model::digest::{Digest, DigestSet};
use crate::model::inventory::Parsed;
use crate::store::fs::layout::Layout;
use crate::store::fs::{self, Dir, scan};
use crate::store::remark::{Rescued, Young, rescue};
use crate::store::stage::Relink;
use crate::store::tree::inside;

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
                    manifests.extend(dir.read_link(&inside::link_in_hashes(&d))?.map(|(target, _)| target));
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
        let rel = inside::link_in_hashes(&d);
        let st = open.stat(&rel).with_context(|| format!("cannot stat {}", dir.join(&rel).display()))?;
        if st.is_some_and(|s| s.modified >= since) {
            young.push(d);
        }
    }
    Ok(Some((open, young)))
}

/// Writes back a link this run deleted (see [`Relink`]), where there is none: written beside
/// it, then linked into place, which fails where a link exists (a push wrote it meanwhile). The
/// folders on the way are created as the registry creates them, each opened through no
/// symbolic link (one planted in the tree during the run is refused, never followed). True
/// when written.
pub fn relink(layout: &Layout, link: &Relink) -> Result<bool> {
    let v2 = Dir::open(layout.v2())?.with_context(|| format!("{} is gone", layout.v2().display()))?;
    let write = |path: std::path::PathBuf, d: &Digest| -> Result<bool> {
        let rel = path.strip_prefix(layout.v2()).with_context(|| format!("{} is outside the store", path.display()))?;
        let (Some(dir), Some(name)) = (rel.parent(), rel.file_name().and_then(|n| n.to_str())) else {
            anyhow::bail!("{} names no file", path.display());
        };
        let dir = v2.create_dirs(dir)?;
        if dir.stat(name).with_context(|| format!("cannot stat {}", path.display()))?.is_some() {
            return Ok(false);
        }
        // Named as registry 3.1 names its own temporary files: a crash leaves nothing it reads.
        let tmp = format!("{name}.regsweep-{}.tmp", std::process::id());
        dir.write_new(name, &tmp, d.to_string().as_bytes())
    };
    Ok(match *link {
        Relink::Revision(repo, d) => write(layout.revision_link(repo, &d), &d)?,
        Relink::Layer(repo, d) => write(layout.layer_link(repo, &d), &d)?,
        Relink::Tag(repo, tag, d) => {
            // Not where the tag is there again (pushed since, perhaps onto another manifest):
            // no history entry for what it does not name.
            if fs::stat(&layout.tag_current(repo, tag))?.is_some() {
                return Ok(false);
            }
            write(layout.tag_index_link(repo, tag, &d), &d)?;
            write(layout.tag_current(repo, tag), &d)?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// Issue 35, 3: a link written back creates the folders it needs without following a
    /// symbolic link planted in the tree during the run, at any level.
    #[test]
    fn a_link_written_back_follows_no_symbolic_link_planted_on_its_way() {
        let d = Digest([7; 32]);
        for planted in ["repositories/r/_manifests", "repositories/r/_manifests/revisions/sha256", "revision"] {
            let t = tempfile::tempdir().unwrap();
            let (v2, outside) = (t.path().join("v2"), t.path().join("outside"));
            std::fs::create_dir_all(v2.join("repositories/r/_manifests/revisions/sha256")).unwrap();
            std::fs::create_dir(&outside).unwrap();
            let layout = Layout::at(v2.clone());
            let at = match planted {
                "revision" => layout.revision_dir("r", &d),
                p => v2.join(p),
            };
            if at.exists() {
                // What the folder held goes outside, as a move would take it.
                std::fs::remove_dir_all(&at).unwrap();
                if planted != "revision" {
                    std::fs::create_dir_all(outside.join("revisions/sha256")).unwrap();
                }
            }
            std::os::unix::fs::symlink(&outside, &at).unwrap();
            let e = relink(&layout, &Relink::Revision("r", d)).unwrap_err();
            assert!(format!("{e:#}").contains("symbolic link"), "{planted}: {e:#}");
            let written: Vec<_> =
                walkdir::WalkDir::new(&outside).into_iter().flatten().filter(|e| e.file_type().is_file()).collect();
            assert!(written.is_empty(), "{planted}: written through the link: {written:?}");
        }
        // Without a link on the way: written, as the registry writes it.
        let t = tempfile::tempdir().unwrap();
        let layout = Layout::at(t.path().to_path_buf());
        assert!(relink(&layout, &Relink::Layer("a/b", d)).unwrap());
        let path = layout.layer_link("a/b", &d);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), d.to_string());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o600, 0o600, "{mode:o}");
        assert!(!relink(&layout, &Relink::Layer("a/b", d)).unwrap(), "one there: not written again");
        let left: Vec<_> =
            std::fs::read_dir(path.parent().unwrap()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("link")], "no temporary file left");
    }
}
