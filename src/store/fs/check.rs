//! `regsweep check` on a file system (the kinds, report and verdicts are `store::check`'s).

use std::path::{Path, PathBuf};

use anyhow::Result;
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::core::progress::Progress;
use crate::model::digest::{Digest, DigestMap, DigestSet};
use crate::model::manifest::{self, Manifest};
use crate::model::outcome::What;
use crate::store::check::{CheckOptions, CheckReport, Found, Kind, Trouble, why_broken};
use crate::store::fs::layout::Layout;
use crate::store::fs::{self, Dir, remove, scan};
use crate::store::stage;

/// A link, or a problem recorded for it.
fn link(found: &Found, repo: &str, path: &Path, breaks: bool) -> Result<Option<Digest>> {
    match fs::read_link(path) {
        Ok(d) => Ok(d.map(|(d, _)| d)),
        Err(e) if e.is::<fs::MalformedLink>() => {
            found.add(Kind::MalformedLink, Some(repo), path, format!("{e:#}"), breaks);
            Ok(None)
        }
        Err(e) if e.is::<fs::NotRegular>() => {
            found.add(Kind::NotAFile, Some(repo), path, format!("{e:#}"), breaks);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The stages of `--repair`, in the crash-safe order of deletion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Repair {
    /// A tag folder whose manifest is gone.
    Tag,
    /// A revision folder without its blob, a history entry naming nothing, an empty revision
    /// folder.
    Revision,
    /// A `_layers` link to nothing, an empty `_layers` folder.
    Link,
}

/// Per repository: what the check found and what `--repair` would remove.
#[derive(Default)]
struct RepoCheck {
    tags: usize,
    manifests: usize,
    repairs: Vec<(Repair, PathBuf)>,
}

/// What the check knows of the store's blobs.
struct Blobs {
    /// Blobs whose `data` is a regular file, sorted: the registry can serve them.
    present: Vec<Digest>,
    /// With `--verify-digests`: blobs whose content does not hash to their name.
    corrupt: DigestSet,
}

/// A leftover folder (no link) of a repository: the registry's empty folder, or an interrupted
/// write's; repaired when old enough.
fn leftover_folder(found: &Found, name: &str, dir: &Path, what: &str, grace: &dyn Fn(&Path) -> bool) -> bool {
    let empty = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none());
    if !empty {
        found.add(Kind::Incomplete, Some(name), &dir.join("link"), format!("a {what} folder without its link"), false);
        return false;
    }
    let old = grace(dir);
    let detail = format!(
        "an empty {what} folder: the registry's API delete leaves these{}",
        if old { "" } else { " (younger than the grace period: left)" }
    );
    found.push(Kind::RegistryLeftover, Some(name), &dir.display(), detail, false, old);
    old
}

fn check_repo(
    layout: &Layout,
    name: &str,
    blobs: &Blobs,
    found: &Found,
    old: &dyn Fn(&Path) -> bool,
) -> Result<RepoCheck> {
    let mut out = RepoCheck::default();
    let has_blob = |d: &Digest| blobs.present.binary_search(d).is_ok();
    // Layer links, by path; their content must name a blob.
    let mut linked = DigestSet::default();
    for d in fs::digest_folders(&layout.layers(name))? {
        let path = layout.layer_dir(name, &d).join("link");
        match link(found, name, &path, false)? {
            Some(target) if !has_blob(&target) => {
                found.add(
                    Kind::DanglingLayerLink,
                    Some(name),
                    &path,
                    format!("links {target}, which is not in the store"),
                    false,
                );
                out.repairs.push((Repair::Link, layout.layer_dir(name, &d)));
            }
            Some(_) => {
                linked.insert(d);
            }
            None if path.exists() => {}
            None => {
                if leftover_folder(found, name, &layout.layer_dir(name, &d), "layer link", old) {
                    out.repairs.push((Repair::Link, layout.layer_dir(name, &d)));
                }
            }
        }
    }
    // Revisions and their manifests.
    let mut manifests: DigestMap<Option<Manifest>> = DigestMap::default();
    let mut own_problem = DigestMap::default();
    let blobs_dir = Dir::open(&layout.blobs())?;
    for d in fs::digest_folders(&layout.revisions(name))? {
        let path = layout.revision_dir(name, &d).join("link");
        let Some(target) = link(found, name, &path, false)? else {
            if !path.exists() && leftover_folder(found, name, &layout.revision_dir(name, &d), "revision", old) {
                out.repairs.push((Repair::Revision, layout.revision_dir(name, &d)));
            }
            own_problem.insert(d, Trouble::new("its revision link is malformed or missing".into()));
            continue;
        };
        out.manifests += 1;
        let read = match &blobs_dir {
            Some(dir) => dir.read(&crate::store::tree::blob_data_in_blobs(&target), scan::MAX_MANIFEST),
            None => Ok(None),
        };
        match read {
            Ok(None) => {
                found.add(
                    Kind::RevisionWithoutBlob,
                    Some(name),
                    &path,
                    format!("manifest {target} has no blob"),
                    false,
                );
                out.repairs.push((Repair::Revision, layout.revision_dir(name, &d)));
                let text = format!("its manifest blob {target} is missing");
                own_problem.insert(d, Trouble { text, blob_gone: true });
            }
            Ok(Some(_)) if blobs.corrupt.contains(&target) => {
                let text = format!("its manifest blob {target} is corrupt (its content does not hash to its name)");
                own_problem.insert(d, Trouble::new(text));
            }
            Ok(Some((bytes, _))) => match manifest::parse(&bytes) {
                Ok(m) => {
                    let foreign = manifest::foreign_layers(&bytes);
                    for b in m.blobs.iter().filter(|b| !foreign.contains(b)) {
                        if !has_blob(b) {
                            found.add(
                                Kind::MissingBlob,
                                Some(name),
                                &path,
                                format!("manifest {d} needs blob {b}"),
                                false,
                            );
                            own_problem.insert(d, Trouble::new(format!("blob {b} is missing")));
                        } else if blobs.corrupt.contains(b) {
                            let text = format!("blob {b} is corrupt (its content does not hash to its name)");
                            own_problem.insert(d, Trouble::new(text));
                        } else if !linked.contains(b) {
                            found.add(
                                Kind::MissingLayerLink,
                                Some(name),
                                &path,
                                format!("manifest {d} needs blob {b}, not linked here"),
                                false,
                            );
                            own_problem.insert(d, Trouble::new(format!("blob {b} is not linked in this repository")));
                        }
                    }
                    manifests.insert(d, Some(m));
                }
                Err(e) => {
                    found.add(Kind::ManifestUnreadable, Some(name), &path, format!("manifest {d}: {e:#}"), false);
                    own_problem.insert(d, Trouble::new("its manifest cannot be parsed".into()));
                }
            },
            Err(e) => {
                found.add(Kind::ManifestUnreadable, Some(name), &path, format!("{e:#}"), false);
                own_problem.insert(d, Trouble::new("its manifest cannot be read".into()));
            }
        }
    }
    // Children: an index whose child is missing or broken is broken.
    for (d, m) in &manifests {
        for c in m.iter().flat_map(|m| m.children.iter()) {
            if !manifests.contains_key(c) {
                found.add(
                    Kind::MissingChild,
                    Some(name),
                    &layout.revision_dir(name, d),
                    format!("index {d} lists {c}, not held here"),
                    false,
                );
                own_problem.entry(*d).or_insert_with(|| Trouble::new(format!("its child {c} is missing")));
            }
        }
    }
    // Tags.
    for e in fs::list(&layout.tags(name))?.into_iter().filter(|e| e.is_dir) {
        out.tags += 1;
        let tag = e.name;
        let current = layout.tag_current(name, &tag);
        match link(found, name, &current, true)? {
            None if !current.exists() => found.add(
                Kind::Incomplete,
                Some(name),
                &layout.tag_dir(name, &tag),
                format!("tag {tag} has no current link"),
                false,
            ),
            None => {}
            Some(d) if !manifests.contains_key(&d) && !own_problem.contains_key(&d) => {
                let detail = format!("points to {d}, which this repository does not hold");
                found.push(Kind::TagBroken, Some(name), &current.display(), detail, true, true);
                out.repairs.push((Repair::Tag, layout.tag_dir(name, &tag)));
            }
            Some(d) => {
                if let Some((why, blob_gone)) = why_broken(&d, &own_problem, &manifests) {
                    // A tag on a manifest whose blob is gone points to nothing: --repair removes it.
                    let detail =
                        if blob_gone { format!("points to {d}: {why}") } else { format!("{tag} ({d}): {why}") };
                    found.push(Kind::TagBroken, Some(name), &current.display(), detail, true, blob_gone);
                    if blob_gone {
                        out.repairs.push((Repair::Tag, layout.tag_dir(name, &tag)));
                    }
                }
            }
        }
        for d in fs::digest_folders(&layout.tag_index(name, &tag))? {
            let path = layout.tag_index_entry(name, &tag, &d).join("link");
            link(found, name, &path, false)?;
            if !manifests.contains_key(&d) && !own_problem.contains_key(&d) {
                found.add(
                    Kind::DanglingIndexEntry,
                    Some(name),
                    &path,
                    format!("tag {tag} history names {d}, no longer held"),
                    false,
                );
                out.repairs.push((Repair::Revision, layout.tag_index_entry(name, &tag, &d)));
            }
        }
    }
    Ok(out)
}

/// Finds `*.tmp` files.
fn leftovers(dir: &Path, found: &Found) -> Result<()> {
    let entries = fs::list(dir)?;
    // The folders in a prefix folder are blobs, which [`present`] looks into (the registry
    // moves a blob's data there from its upload, and writes nothing else there).
    let blob_prefix = dir.parent().is_some_and(|p| p.ends_with("blobs/sha256"));
    entries.par_iter().try_for_each(|e| {
        let path = dir.join(&e.name);
        if e.is_dir {
            if blob_prefix { Ok(()) } else { leftovers(&path, found) }
        } else {
            if e.name.ends_with(".tmp") {
                found.add(Kind::TmpFile, None, &path, "left by an interrupted write".into(), false);
            }
            Ok(())
        }
    })
}

/// Hashes every blob present (`bytes` in all, for the progress bar); returns those whose
/// content does not hash to their name.
fn verify(layout: &Layout, blobs: &[Digest], bytes: u64, found: &Found, progress: Progress) -> Result<DigestSet> {
    let bar = progress.bar("verifying", bytes);
    let corrupt = blobs
        .par_iter()
        .filter_map(|b| -> Option<Result<Digest>> {
            let path = layout.blob_data(b);
            let mut f = fs::open_nofollow(&path).ok()?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = match std::io::Read::read(&mut f, &mut buf) {
                    Ok(n) => n,
                    Err(e) => return Some(Err(anyhow::anyhow!("cannot read {}: {e}", path.display()))),
                };
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                bar.inc(n as u64);
            }
            if Digest(h.finalize().into()) == *b {
                return None;
            }
            let detail = format!("the content of {b} does not hash to its name");
            found.add(Kind::DigestMismatch, None, &path, detail, true);
            Some(Ok(*b))
        })
        .collect::<Result<DigestSet>>()?;
    bar.finish_and_clear();
    Ok(corrupt)
}

/// The blobs whose `data` is a regular file, and their bytes in all. A blob folder without it,
/// or with anything else in its place, is no blob the registry can serve, and is reported.
fn present(layout: &Layout, blobs: Vec<Digest>, found: &Found) -> Result<(Vec<Digest>, u64)> {
    let Some(dir) = Dir::open(&layout.blobs())? else { return Ok((Vec::new(), 0)) };
    let size = |b: &Digest| -> Result<Option<u64>> {
        match dir.stat_file(&crate::store::tree::blob_data_in_blobs(b)) {
            Ok(Some(st)) => Ok(Some(st.size)),
            Ok(None) => {
                found.add(Kind::Incomplete, None, &layout.blob_dir(b), "a blob folder without data".into(), false);
                Ok(None)
            }
            Err(e) if e.is::<fs::NotRegular>() => {
                found.add(Kind::NotAFile, None, &layout.blob_data(b), format!("{e:#}"), false);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    };
    let sizes: Vec<Option<u64>> = blobs.par_iter().map(size).collect::<Result<_>>()?;
    let bytes = sizes.iter().flatten().sum();
    Ok((blobs.into_iter().zip(sizes).filter(|(_, s)| s.is_some()).map(|(b, _)| b).collect(), bytes))
}

fn run_check(layout: &Layout, opts: CheckOptions, progress: Progress) -> Result<(CheckReport, Vec<(Repair, PathBuf)>)> {
    let names = scan::repositories(layout)?;
    let all: Vec<Digest> = scan::scan_blobs(layout)?.iter().copied().collect();
    let count = all.len();
    let found = Found::default();
    let (present, bytes) = present(layout, all, &found)?;
    // Hashed first: a corrupt blob breaks the tags that need it, and they are named.
    let corrupt =
        if opts.verify_digests { verify(layout, &present, bytes, &found, progress)? } else { DigestSet::default() };
    let blobs_verified = if opts.verify_digests { present.len() } else { 0 };
    let blobs = Blobs { present, corrupt };
    let now = std::time::SystemTime::now();
    let old = |dir: &Path| {
        fs::stat(dir).ok().flatten().is_some_and(|(_, t)| now.duration_since(t).unwrap_or_default() >= opts.grace)
    };
    let bar = progress.bar("checking", names.len() as u64);
    let repos: Vec<RepoCheck> = names
        .par_iter()
        .map(|n| {
            let r = check_repo(layout, n, &blobs, &found, &old);
            bar.inc(1);
            r
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    for dir in [layout.repositories(), layout.blobs()] {
        leftovers(&dir, &found)?;
    }
    let journal = layout.journal_file();
    if journal.exists() {
        found.add(
            Kind::Incomplete,
            None,
            &journal,
            "an interrupted regsweep run: run gc or prune to finish it".into(),
            false,
        );
    }
    let problems = found.sorted();
    let report = CheckReport {
        root: String::new(),
        repositories: names.len(),
        tags: repos.iter().map(|r| r.tags).sum(),
        manifests: repos.iter().map(|r| r.manifests).sum(),
        blobs: count,
        blobs_verified,
        repaired: 0,
        problems,
    };
    Ok((report, repos.into_iter().flat_map(|r| r.repairs).collect()))
}

/// Checks the store under `root`; with `repair`, removes the links that point to nothing
/// (tag folders first, then revisions and history entries, then layer links) and checks again.
pub fn check(root: &Path, opts: CheckOptions, progress: Progress) -> Result<CheckReport> {
    let layout = Layout::open(root)?;
    let _lock = if opts.repair { Some(fs::Lock::acquire(&layout)?) } else { None };
    let (mut report, repairs) = run_check(&layout, opts, progress)?;
    if opts.repair && !repairs.is_empty() {
        let mut batches: [Vec<stage::Batch>; 3] = Default::default();
        let count = repairs.len();
        for (stage, path) in &repairs {
            let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
                continue;
            };
            let (folder, what) = match (stage, Digest::from_hex(name)) {
                (Repair::Tag, _) | (_, None) => (stage::Folder::Tag(name, None), What::Tag),
                (Repair::Revision, Some(d)) => (stage::Folder::Link(d), What::Manifest),
                (Repair::Link, Some(d)) => (stage::Folder::Link(d), What::LayerLink),
            };
            batches[*stage as usize].push(stage::Batch {
                parent: stage::Parent::Path(parent.to_path_buf()),
                repo: None,
                what,
                folders: vec![folder],
            });
        }
        let outcome =
            remove::delete_in_stages(&layout, ["tags", "revisions", "links"].into_iter().zip(batches), None, progress);
        if let Some(f) = outcome.failed.first() {
            anyhow::bail!("repair stopped: {}: {}", f.path, f.error);
        }
        (report, _) = run_check(&layout, CheckOptions { repair: false, ..opts }, progress)?;
        report.repaired = count;
    }
    report.root = root.display().to_string();
    Ok(report)
}
