//! Carries a [`Plan`] out in the crash-safe order of SPEC section 5: the journal, then tag folders,
//! revision folders (and the tag index entries naming them), `_layers` links, blobs, uploads.
//! Each folder is removed in place, its own file first (`current/link`, `link`, `data`): from
//! that moment it is gone for the registry, and a crash before its folder follows leaves an
//! empty folder that the next run removes. Folders sharing a parent are removed one after the
//! other through the parent's open descriptor, parents in parallel: no two threads wait on one
//! folder's lock, and no path is walked twice. A stage with a failed deletion stops the run
//! there, so nothing a surviving tag needs is lost; the journal stays and the next run finishes
//! the job.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result, bail};
use rayon::prelude::*;

use crate::digest::Digest;
use crate::journal::{self, Journal};
use crate::layout::Layout;
use crate::plan::{Action, Plan, RepoPlan};
use crate::progress::Progress;
use crate::scan::{self, Dir};

/// The exclusive lock of one store, held until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the store's lock, or says who holds it.
    pub fn acquire(layout: &Layout) -> Result<Lock> {
        let path = layout.lock_file();
        // Not through a symbolic link, and without blocking on a FIFO put in its place.
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .with_context(|| format!("cannot create lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Lock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => {
                bail!("another regsweep run holds the lock {} on this store", path.display())
            }
            Err(fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }
}

/// What a run did not manage to delete.
#[derive(Debug, Default)]
pub struct Outcome {
    pub errors: Vec<String>,
}

/// Test-only: `REGSWEEP_TEST_CRASH_AFTER=K` aborts the process after K deletions, so that the
/// crash tests can stop a real run at an exact point.
fn crash_point() {
    static LIMIT: OnceLock<Option<usize>> = OnceLock::new();
    static DONE: AtomicUsize = AtomicUsize::new(0);
    if let Some(limit) =
        *LIMIT.get_or_init(|| std::env::var("REGSWEEP_TEST_CRASH_AFTER").ok().and_then(|v| v.parse().ok()))
        && DONE.fetch_add(1, Ordering::SeqCst) + 1 >= limit
    {
        std::process::abort();
    }
}

/// One folder to remove, by its name in its parent and the shape the registry gives it.
#[derive(Clone, Debug)]
pub enum Folder<'a> {
    /// `<hex>/link`: a revision, a `_layers` link, a tag history entry.
    Link(Digest),
    /// `<hex>/data`: a blob.
    Blob(Digest),
    /// `<tag>/current/link`, then `<tag>/index/sha256/<hex>/link` of the digest given.
    Tag(&'a str, Option<Digest>),
    /// An upload: `startedat` last, so that an interrupted removal still looks old.
    Upload(&'a str),
}

/// Folders to remove inside one parent folder.
#[derive(Clone, Debug)]
pub struct Batch<'a> {
    pub parent: PathBuf,
    pub folders: Vec<Folder<'a>>,
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

/// Removes one folder inside `dir`: the file that makes it what it is first, then the rest.
fn remove_folder(dir: &Dir, folder: &Folder) -> Result<()> {
    let name = match folder {
        Folder::Link(d) | Folder::Blob(d) => {
            let hex = d.hex();
            let file = if matches!(folder, Folder::Link(_)) { "link" } else { "data" };
            // An error here (a folder where the file should be, no permission) is the final
            // removal's to report, with the path.
            let _ = remove_entry(dir, &format!("{hex}/{file}"), false);
            crash_point();
            hex
        }
        Folder::Tag(tag, current) => {
            // Its inner folders are opened through no symbolic link before anything in them
            // goes (the tag folder itself was listed, and is no link).
            if let Ok(cur) = dir.open_dir(&format!("{tag}/current")) {
                let _ = remove_entry(&cur, "link", false);
                let _ = remove_entry(dir, &format!("{tag}/current"), true);
            }
            crash_point();
            if let Some(entry) = current.map(|d| format!("{tag}/index/sha256/{}", d.hex()))
                && let Ok(e) = dir.open_dir(&entry)
            {
                let _ = remove_entry(&e, "link", false);
                for rel in [entry.as_str(), &format!("{tag}/index/sha256"), &format!("{tag}/index")] {
                    if remove_entry(dir, rel, true).is_err() {
                        break; // more than the usual shape: the rest goes in one walk
                    }
                }
            }
            tag.to_string()
        }
        Folder::Upload(id) => {
            let path = dir.path().join(id);
            for e in scan::list(&path)?.into_iter().filter(|e| e.name != "startedat") {
                let removed =
                    if e.is_dir { fs::remove_dir_all(path.join(&e.name)) } else { fs::remove_file(path.join(&e.name)) };
                removed.with_context(|| format!("cannot delete {}", path.join(&e.name).display()))?;
            }
            remove_entry(dir, &format!("{id}/startedat"), false)
                .with_context(|| format!("cannot delete {}", path.join("startedat").display()))?;
            crash_point();
            id.to_string()
        }
    };
    remove_rest(dir, &name)
}

/// Removes the folders of a batch, one after the other; stops at the first failure.
fn remove_batch(layout: &Layout, parent: &std::path::Path, folders: &[Folder], done: &dyn Fn()) -> Result<()> {
    if !layout.may_delete(parent) {
        bail!("refusing to delete in {}: outside the store's repositories and blobs", parent.display());
    }
    let Some(dir) = Dir::open(parent)? else {
        return Ok(()); // gone already: a rerun
    };
    for f in folders {
        remove_folder(&dir, f)?;
        done();
    }
    Ok(())
}

/// Runs one stage, its batches in parallel; returns its errors.
fn stage(layout: &Layout, progress: Progress, name: &str, batches: &[Batch]) -> Vec<String> {
    let chunks: Vec<(&std::path::Path, &[Folder])> =
        batches.iter().flat_map(|b| b.folders.chunks(CHUNK).map(|c| (b.parent.as_path(), c))).collect();
    let bar = progress.bar(name, chunks.iter().map(|c| c.1.len() as u64).sum());
    let errors = Mutex::new(Vec::new());
    chunks.par_iter().for_each(|(parent, folders)| {
        if let Err(e) = remove_batch(layout, parent, folders, &|| bar.inc(1)) {
            errors.lock().unwrap_or_else(|p| p.into_inner()).push(format!("{e:#}"));
        }
    });
    bar.finish_and_clear();
    errors.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// Carries out the plan. The caller holds the store's [`Lock`].
pub fn execute<'p>(layout: &Layout, plan: &'p Plan, progress: Progress) -> Result<Outcome> {
    // The journal names every tag deleted (or still to finish from an earlier run).
    journal::write(layout, &plan.journal, &plan.repos)?;
    let per_repo = |parent: &dyn Fn(&str) -> PathBuf, folders: &dyn Fn(&RepoPlan) -> Vec<Folder<'_>>| {
        plan.repos
            .iter()
            .map(|r| Batch { parent: parent(&r.name), folders: folders(r) })
            .filter(|b| !b.folders.is_empty())
            .collect::<Vec<_>>()
    };
    let tags = || {
        per_repo(&|r| layout.tags(r), &|r| {
            r.tags.iter().filter(|t| t.action != Action::Keep).map(|t| Folder::Tag(t.name, t.digest)).collect()
        })
    };
    let manifests = || {
        let mut batches = per_repo(&|r| layout.revisions(r), &|r| {
            r.manifests.iter(&plan.store_blobs).chain(r.leftover_revisions.iter().copied()).map(Folder::Link).collect()
        });
        for r in &plan.repos {
            for e in &r.index_entries {
                batches
                    .push(Batch { parent: layout.tag_index(&r.name, &e.tag), folders: vec![Folder::Link(e.digest)] });
            }
        }
        batches
    };
    let links = || {
        per_repo(&|r| layout.layers(r), &|r| {
            r.layer_links
                .iter(&plan.store_blobs)
                .chain(r.leftover_layer_links.iter().copied())
                .map(Folder::Link)
                .collect()
        })
    };
    let blobs = || {
        let mut by_prefix: Vec<Vec<Folder>> = vec![Vec::new(); 256];
        for d in plan.blobs.iter().chain(&plan.leftover_blobs).map(|i| plan.blob(*i)) {
            by_prefix[usize::from(d.0[0])].push(Folder::Blob(d));
        }
        by_prefix
            .into_iter()
            .filter_map(|folders| match folders.first() {
                Some(Folder::Blob(d)) => Some(Batch { parent: layout.blob_prefix(d), folders }),
                _ => None,
            })
            .collect()
    };
    let uploads = || per_repo(&|r| layout.uploads(r), &|r| r.uploads.iter().map(|u| Folder::Upload(&u.id)).collect());
    // Each stage's batches are built only when the stage starts: never all deletions at once.
    let stages: [(&str, &dyn Fn() -> Vec<Batch<'p>>); 5] =
        [("tags", &tags), ("manifests", &manifests), ("links", &links), ("blobs", &blobs), ("uploads", &uploads)];
    let errors = delete_in_stages(layout, stages.into_iter().map(|(name, batches)| (name, batches())), progress);
    if errors.is_empty() {
        Journal::remove(layout)?;
    }
    Ok(Outcome { errors })
}

/// Deletes folders stage by stage, each stage in parallel, stopping after the first stage with
/// a failure; returns the failures. The caller holds the store's [`Lock`].
pub fn delete_in_stages<'s, 'a>(
    layout: &Layout,
    stages: impl IntoIterator<Item = (&'s str, Vec<Batch<'a>>)>,
    progress: Progress,
) -> Vec<String> {
    for (name, batches) in stages {
        let errors = stage(layout, progress, name, &batches);
        if !errors.is_empty() {
            return errors;
        }
    }
    Vec::new()
}
