//! The filesystem backend's deletions. Each folder is removed in place, its own file first
//! (`current/link`, `link`, `data`): from that moment it is gone for the registry, and a crash
//! before its folder follows leaves an empty folder that the next run removes. Folders sharing
//! a parent are removed one after the other through the parent's open descriptor, parents in
//! parallel: no two threads wait on one folder's lock, and no path is walked twice. Anything
//! written again since the scan is left.

use std::fs;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result};
use rayon::prelude::*;

use crate::model::digest::Digest;
use crate::model::outcome::What;
use crate::store::fs::layout::Layout;
use crate::store::fs::{Dir, FileStat, list};
use crate::store::stage::{self, Batch, Decision, Folder, Keep, Parent, Removal, Stamp, Tally, crash_point, decide};
use crate::store::tree::{LINK, STARTED, inside};

impl Parent<'_> {
    /// Where it is in a filesystem store.
    fn path(&self, layout: &Layout) -> PathBuf {
        layout.v2().join(self.place())
    }
}

/// At most this many folders of one parent go to one thread (a few parents with many folders
/// each still spread over the threads).
const CHUNK: usize = 1024;

/// Removes the file or empty folder `rel`; gone already is fine.
fn remove_entry(dir: &Dir, rel: &str, folder: bool) -> std::io::Result<()> {
    match dir.remove(rel, folder) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes the folder `name` once its own files are gone; whatever else it holds (a `*.tmp`
/// file, a longer tag history) goes with it. Never follows a symbolic link.
fn remove_rest(dir: &Dir, name: &str) -> Result<()> {
    let path = dir.path().join(name);
    match dir.remove(name, true) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => match fs::remove_dir_all(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot delete {}", path.display()))
            }
            _ => Ok(()),
        },
        Err(e) => Err(e).with_context(|| format!("cannot delete {}", path.display())),
    }
}

/// What became of one folder.
enum Removed {
    /// Gone, with the bytes of its content (a blob's data, an upload's data).
    Gone(u64),
    /// Left: written again since the scan (or, for a leftover, completed by a write); with the
    /// digest the re-mark must keep (a revision's, a layer link's, the one a tag holds now).
    Rescued(Option<Digest>),
}

/// The first of a folder's decisive files that is there ([`Folder::decisive`]). No regular
/// file where a link, data or a tag's link should be (a FIFO, a folder, a symbolic link put in
/// since the plan) is an error: the folder stays, its deletion reported as failed, naming it.
fn decisive(dir: &Dir, folder: &Folder) -> Result<Option<Stamp>> {
    let stamp = |s: FileStat| Stamp { size: s.size, modified: s.modified };
    for rel in folder.decisive() {
        let found = match folder {
            Folder::Upload(_) | Folder::Leftover(_) => dir.stat(&rel).ok().flatten(),
            _ => dir.stat_file(&rel)?,
        };
        if let Some(s) = found {
            return Ok(Some(stamp(s)));
        }
    }
    Ok(None)
}

/// Removes one folder inside `dir` as [`decide`] says: the file that makes it what it is
/// first, then the rest.
fn remove_folder(dir: &Dir, kind: What, folder: &Folder, since: Option<SystemTime>) -> Result<Removed> {
    let name = folder.name();
    if let Folder::Leftover(_) = folder {
        // An empty one goes at once; one with an interrupted write's files after a look at
        // what it holds.
        match dir.remove(&name, true) {
            Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => {}
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot delete {}", dir.path().join(&name).display()));
            }
            _ => return Ok(Removed::Gone(0)),
        }
    }
    let bytes = match decide(folder, kind, since, decisive(dir, folder)?) {
        Decision::Go { bytes } => bytes,
        Decision::Leave(keep) => {
            return Ok(Removed::Rescued(match keep {
                Keep::Nothing => None,
                Keep::Its(d) => Some(d),
                // Pushed again: the manifest it names now stays with it.
                Keep::TagsManifest => match folder.decisive().first() {
                    Some(link) => dir.read_link(link)?.map(|(d, _)| d),
                    None => None,
                },
            }));
        }
    };
    match folder {
        Folder::Link(_) | Folder::Blob(_) => {
            // An error here (no permission) is the final removal's to report, with the path.
            if let Some(file) = folder.decisive().first() {
                let _ = remove_entry(dir, file, false);
            }
            crash_point();
        }
        Folder::Leftover(_) | Folder::History(_) => {}
        Folder::Tag(tag, current) => {
            // Its inner folders are opened through no symbolic link before anything in them
            // goes (the tag folder itself was listed, and is no link).
            if let Ok(cur) = dir.open_dir(&inside::tag_current_dir_in_tags(tag)) {
                let _ = remove_entry(&cur, LINK, false);
                let _ = remove_entry(dir, &inside::tag_current_dir_in_tags(tag), true);
            }
            crash_point();
            if let Some(d) = current
                && let entry = inside::tag_index_entry_in_tags(tag, d)
                && let Ok(e) = dir.open_dir(&entry)
            {
                let _ = remove_entry(&e, LINK, false);
                for rel in [entry, inside::tag_index_in_tags(tag), inside::tag_history_in_tags(tag)] {
                    if remove_entry(dir, &rel, true).is_err() {
                        break; // more than the usual shape: the rest goes in one walk
                    }
                }
            }
        }
        Folder::Upload(id) => {
            let path = dir.path().join(id);
            for e in list(&path)?.into_iter().filter(|e| folder.goes_first(&format!("{id}/{}", e.name))) {
                let removed =
                    if e.is_dir { fs::remove_dir_all(path.join(&e.name)) } else { fs::remove_file(path.join(&e.name)) };
                removed.with_context(|| format!("cannot delete {}", path.join(&e.name).display()))?;
            }
            remove_entry(dir, &format!("{id}/{STARTED}"), false)
                .with_context(|| format!("cannot delete {}", path.join(STARTED).display()))?;
            crash_point();
        }
    }
    remove_rest(dir, &name)?;
    Ok(Removed::Gone(bytes))
}

/// Removes the folders of a batch, one after the other, counting each; a failed one is recorded
/// and the others still go (nothing in one stage depends on another of the same stage).
fn remove_batch(
    layout: &Layout,
    batch: (&Batch, &[Folder]),
    since: Option<SystemTime>,
    tally: &Tally,
    done: &dyn Fn(),
) {
    let (b, folders) = batch;
    let fail = |path: &std::path::Path, e: anyhow::Error| tally.failed(b.repo, &path.display(), &format!("{e:#}"));
    let parent = b.parent.path(layout);
    if !layout.may_delete(&parent) {
        let e =
            anyhow::anyhow!("refusing to delete in {}: outside the store's repositories and blobs", parent.display());
        return fail(&parent, e);
    }
    let dir = match Dir::open(&parent) {
        Ok(Some(dir)) => dir,
        Ok(None) => return, // gone already: a rerun
        Err(e) => return fail(&parent, e),
    };
    for f in folders {
        // Between two folders, never inside one: each goes whole, and a rerun finishes the rest.
        if tally.stop_requested() {
            return;
        }
        let what = f.kind(b.what);
        match remove_folder(&dir, what, f, since) {
            Ok(Removed::Gone(bytes)) => tally.gone(b.repo, what, f, bytes),
            Ok(Removed::Rescued(digest)) => tally.rescued(b.repo, what, digest),
            Err(e) => fail(&parent.join(f.name()), e),
        }
        done();
    }
}

/// Runs one stage, its batches in parallel; true when every folder went or was rescued.
pub(crate) fn stage(layout: &Layout, removal: &Removal) -> bool {
    let Removal { stage: name, batches, since, tally, progress } = *removal;
    crate::store::apply::stop_point(&format!("delete:{}", name.name()));
    let chunks: Vec<(&Batch, &[Folder])> =
        batches.iter().flat_map(|b| b.folders.chunks(CHUNK).map(move |c| (b, c))).collect();
    let folders = chunks.iter().map(|c| c.1.len() as u64).sum();
    stage::run(tally, progress, name, folders, |bar| {
        chunks.par_iter().for_each(|chunk| remove_batch(layout, *chunk, since, tally, &|| bar.inc(1)))
    })
}
