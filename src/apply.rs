//! Carries a [`Plan`] out in the crash-safe order of SPEC section 5: the journal, then tag folders,
//! revision folders (and the tag index entries naming them), `_layers` links, blobs, uploads.
//! Each folder leaves in one atomic rename into the trash, emptied at the end, so a crash never
//! leaves half a folder. A stage with a failed deletion stops the run there, so nothing a
//! surviving tag needs is lost; the journal stays and the next run finishes the job.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result, bail};
use rayon::prelude::*;

use crate::journal::Journal;
use crate::layout::Layout;
use crate::plan::{Action, Plan};
use crate::progress::Progress;

/// The exclusive lock of one store, held until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the store's lock, or says who holds it.
    pub fn acquire(layout: &Layout) -> Result<Lock> {
        let path = layout.lock_file();
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
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

/// Empties the trash an earlier, interrupted run may have left.
pub fn empty_trash(layout: &Layout) -> Result<()> {
    let trash = layout.trash();
    let shards = match fs::read_dir(&trash) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other.with_context(|| format!("cannot list {}", trash.display()))?,
    };
    // In parallel: hundreds of thousands of small folders, one after the other, is the slow
    // part of a large run.
    let shards: Vec<PathBuf> = shards.map(|e| e.map(|e| e.path())).collect::<std::io::Result<_>>()?;
    shards.par_iter().try_for_each(|shard| -> Result<()> {
        let entries: Vec<PathBuf> = match fs::read_dir(shard) {
            Ok(rd) => rd.map(|e| e.map(|e| e.path())).collect::<std::io::Result<_>>()?,
            Err(_) => vec![shard.clone()],
        };
        entries.par_iter().try_for_each(|e| remove_path(e))?;
        remove_path(shard)
    })?;
    remove_path(&trash)
}

/// Removes a file or a folder tree; gone already is fine.
fn remove_path(path: &Path) -> Result<()> {
    let removed = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot empty {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Trash subfolders: renames into one folder would all wait on that folder's lock.
const TRASH_SHARDS: usize = 64;

/// Moves one folder of the plan into the trash; a folder already gone is no error (a rerun
/// after a crash). Where the trash is on another file system, removes it in place.
fn remove(layout: &Layout, path: &Path, serial: &AtomicUsize) -> Result<()> {
    if !layout.may_delete(path) {
        bail!("refusing to delete {}: outside the store's repositories and blobs", path.display());
    }
    let n = serial.fetch_add(1, Ordering::Relaxed);
    let dest = layout.trash().join((n % TRASH_SHARDS).to_string()).join(n.to_string());
    let removed = match fs::rename(path, &dest) {
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => fs::remove_dir_all(path),
        other => other,
    };
    crash_point();
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot delete {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Runs one stage in parallel; returns its errors.
fn stage(layout: &Layout, progress: Progress, name: &str, paths: Vec<PathBuf>, serial: &AtomicUsize) -> Vec<String> {
    let bar = progress.bar(name, paths.len() as u64);
    let errors = Mutex::new(Vec::new());
    paths.par_iter().for_each(|p| {
        if let Err(e) = remove(layout, p, serial) {
            errors.lock().unwrap_or_else(|p| p.into_inner()).push(format!("{e:#}"));
        }
        bar.inc(1);
    });
    bar.finish_and_clear();
    errors.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// Carries out the plan. The caller holds the store's [`Lock`].
pub fn execute(layout: &Layout, plan: &Plan, progress: Progress) -> Result<Outcome> {
    // The plan's journal names every tag deleted (or still to finish from an earlier run).
    if !plan.journal.is_empty() {
        plan.journal.write(layout)?;
    }
    let repos = &plan.repos;
    let stages: [(&str, Vec<PathBuf>); 5] = [
        (
            "tags",
            repos
                .iter()
                .flat_map(|r| {
                    r.tags.iter().filter(|t| t.action != Action::Keep).map(|t| layout.tag_dir(&r.name, &t.name))
                })
                .collect(),
        ),
        (
            "manifests",
            repos
                .iter()
                .flat_map(|r| {
                    let revs = r.manifests.iter().map(|d| layout.revision_dir(&r.name, d));
                    revs.chain(r.index_entries.iter().map(|e| layout.tag_index_entry(&r.name, &e.tag, &e.digest)))
                })
                .collect(),
        ),
        ("links", repos.iter().flat_map(|r| r.layer_links.iter().map(|d| layout.layer_dir(&r.name, d))).collect()),
        ("blobs", plan.blobs.iter().map(|b| layout.blob_dir(&b.digest)).collect()),
        ("uploads", repos.iter().flat_map(|r| r.uploads.iter().map(|u| layout.upload_dir(&r.name, &u.id))).collect()),
    ];
    let errors = delete_in_stages(layout, stages.into(), progress)?;
    if errors.is_empty() {
        Journal::remove(layout)?;
    }
    Ok(Outcome { errors })
}

/// Deletes folders stage by stage, each stage in parallel, stopping after the first stage with
/// a failure; returns the failures. The caller holds the store's [`Lock`].
pub fn delete_in_stages(layout: &Layout, stages: Vec<(&str, Vec<PathBuf>)>, progress: Progress) -> Result<Vec<String>> {
    let trash = layout.trash();
    for shard in 0..TRASH_SHARDS {
        let dir = trash.join(shard.to_string());
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let serial = AtomicUsize::new(0);
    for (name, paths) in stages {
        let errors = stage(layout, progress, name, paths, &serial);
        if !errors.is_empty() {
            return Ok(errors);
        }
    }
    let bar = progress.bar("emptying", 0);
    empty_trash(layout)?;
    bar.finish_and_clear();
    Ok(Vec::new())
}
