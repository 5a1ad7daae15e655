//! Carries a [`Plan`] out in the crash-safe order of docs/DESIGN.md section 4: the journal, then tag folders,
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
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use rayon::prelude::*;

use crate::core::plan::{Action, Plan, RepoPlan};
use crate::core::progress::Progress;
use crate::model::digest::{Digest, DigestSet};
use crate::model::outcome::{Failure, Outcome, WHATS, What};
use crate::store::fs::{Dir, list};
use crate::store::layout::Layout;
use crate::store::{Store, interrupt, remark};

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

/// The counters behind an [`Outcome`], shared by the threads of a stage; a backend's
/// [`Store::remove`] counts into it.
pub struct Tally {
    gone: Vec<[AtomicUsize; WHATS]>,
    bytes: AtomicU64,
    rescued: [AtomicUsize; WHATS],
    failed: Mutex<Vec<Failure>>,
    /// Revisions a deletion found written again (plan's repository index): the re-mark reads them.
    rewritten: Mutex<Vec<(usize, Digest)>>,
    /// Blobs whose `_layers` link a deletion found written again.
    relinked: Mutex<DigestSet>,
    interrupted: AtomicBool,
}

impl Tally {
    fn new(repos: usize) -> Tally {
        Tally {
            gone: (0..=repos).map(|_| Default::default()).collect(),
            bytes: AtomicU64::new(0),
            rescued: Default::default(),
            failed: Mutex::default(),
            rewritten: Mutex::default(),
            relinked: Mutex::default(),
            interrupted: AtomicBool::new(false),
        }
    }

    fn failures(&self) -> usize {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn into_outcome(self, errors: Vec<String>) -> Outcome {
        let load = |a: &[AtomicUsize; WHATS]| a.each_ref().map(|c| c.load(Ordering::Relaxed));
        Outcome {
            gone: self.gone.iter().map(load).collect(),
            bytes_freed: self.bytes.into_inner(),
            rescued: load(&self.rescued),
            failed: self.failed.into_inner().unwrap_or_else(|p| p.into_inner()),
            errors,
            interrupted: self.interrupted.into_inner(),
        }
    }
}

/// Test-only (feature `test-hooks`): `REGSWEEP_TEST_CRASH_AFTER=K` aborts the process after K
/// deletions, so that the crash tests can stop a real run at an exact point.
#[cfg(not(feature = "test-hooks"))]
fn crash_point() {}

#[cfg(feature = "test-hooks")]
fn crash_point() {
    static LIMIT: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    static DONE: AtomicUsize = AtomicUsize::new(0);
    if let Some(limit) =
        *LIMIT.get_or_init(|| std::env::var("REGSWEEP_TEST_CRASH_AFTER").ok().and_then(|v| v.parse().ok()))
        && DONE.fetch_add(1, Ordering::SeqCst) + 1 >= limit
    {
        std::process::abort();
    }
}

/// Test-only (feature `test-hooks`): `REGSWEEP_TEST_STOP_AT=<point>` stops the process
/// (SIGSTOP) at that point of a real run, so that a test can push at an exact moment and then
/// let it go on (SIGCONT).
#[cfg(not(feature = "test-hooks"))]
pub fn stop_point(_point: &str) {}

#[cfg(feature = "test-hooks")]
pub fn stop_point(point: &str) {
    if std::env::var("REGSWEEP_TEST_STOP_AT").is_ok_and(|p| p == point) {
        // SAFETY: raising a signal on our own process.
        unsafe { libc::raise(libc::SIGSTOP) };
        // A signal sent while stopped is handled by any thread once continued: give it the time,
        // so that the test sees the run at this point, not a little later.
        std::thread::sleep(std::time::Duration::from_millis(100));
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
    /// `<hex>/` without its `link` or `data`: removed only while it still has none.
    Leftover(Digest),
    /// `<tag>/index/`: the history of a tag being deleted.
    History(&'a str),
}

impl Folder<'_> {
    /// Its name in its parent folder.
    fn name(&self) -> String {
        match self {
            Folder::Link(d) | Folder::Blob(d) | Folder::Leftover(d) => d.hex(),
            Folder::Tag(name, _) | Folder::Upload(name) => name.to_string(),
            Folder::History(tag) => format!("{tag}/index"),
        }
    }
}

/// The folder that holds the folders of a [`Batch`], named by repository (and tag) rather than
/// by path: each backend knows where it keeps it.
#[derive(Clone, Debug)]
pub enum Parent<'a> {
    /// `_manifests/tags/` of a repository.
    Tags(&'a str),
    /// `_manifests/revisions/sha256/` of a repository.
    Revisions(&'a str),
    /// `_manifests/tags/<tag>/index/sha256/` of a repository's tag.
    TagIndex(&'a str, &'a str),
    /// `_layers/sha256/` of a repository.
    Layers(&'a str),
    /// `_uploads/` of a repository.
    Uploads(&'a str),
    /// `blobs/sha256/<xx>/`.
    BlobPrefix(u8),
    /// A folder of the filesystem store by its path (`check --repair`).
    Path(PathBuf),
}

impl Parent<'_> {
    /// Where it is in a filesystem store.
    fn path(&self, layout: &Layout) -> PathBuf {
        match self {
            Parent::Tags(r) => layout.tags(r),
            Parent::Revisions(r) => layout.revisions(r),
            Parent::TagIndex(r, t) => layout.tag_index(r, t),
            Parent::Layers(r) => layout.layers(r),
            Parent::Uploads(r) => layout.uploads(r),
            Parent::BlobPrefix(b) => layout.blobs().join(format!("{b:02x}")),
            Parent::Path(p) => p.clone(),
        }
    }
}

/// Folders to remove inside one parent folder.
#[derive(Clone, Debug)]
pub struct Batch<'a> {
    pub parent: Parent<'a>,
    /// The plan's index of the repository they belong to; `None` for blobs.
    pub repo: Option<usize>,
    /// What its `Link` and `Blob` folders are (a leftover is counted as one).
    pub what: What,
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

/// What became of one folder.
enum Removed {
    /// Gone, with the bytes of its content (a blob's data, an upload's data).
    Gone(u64),
    /// Left: written again since the scan (or, for a leftover, completed by a write).
    Rescued,
}

/// The size of `rel`; `None` when it was written at or after `since`.
fn fresh(dir: &Dir, rel: &str, since: Option<SystemTime>) -> Result<Option<u64>> {
    let st = dir.stat(rel).with_context(|| format!("cannot stat {}", dir.path().join(rel).display()))?;
    Ok(match st {
        Some(s) if since.is_some_and(|since| s.modified >= since) => None,
        Some(s) => Some(s.size),
        None => Some(0),
    })
}

/// Removes one folder inside `dir`: the file that makes it what it is first, then the rest. A
/// tag, revision, layer link or blob written again since the scan (`since`) is left.
fn remove_folder(dir: &Dir, what: What, folder: &Folder, since: Option<SystemTime>) -> Result<Removed> {
    let name = folder.name();
    let mut bytes = 0;
    match folder {
        Folder::Link(d) | Folder::Blob(d) => {
            let hex = d.hex();
            let file = if matches!(folder, Folder::Link(_)) { "link" } else { "data" };
            if what != What::IndexEntry {
                match fresh(dir, &format!("{hex}/{file}"), since)? {
                    Some(size) if what == What::Blob => bytes = size,
                    Some(_) => {}
                    None => return Ok(Removed::Rescued),
                }
            }
            // An error here (a folder where the file should be, no permission) is the final
            // removal's to report, with the path.
            let _ = remove_entry(dir, &format!("{hex}/{file}"), false);
            crash_point();
        }
        Folder::Leftover(_) => {
            // A folder that holds a link or data now (a push just wrote it) is no leftover any
            // more; an empty one goes at once, one with an interrupted write's files after
            // this look.
            match dir.remove(&name, true) {
                Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => {}
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("cannot delete {}", dir.path().join(&name).display()));
                }
                _ => return Ok(Removed::Gone(0)),
            }
            for file in ["link", "data"] {
                if dir.stat(&format!("{name}/{file}")).ok().flatten().is_some() {
                    return Ok(Removed::Rescued);
                }
            }
        }
        Folder::History(tag) => {
            if fresh(dir, &format!("{tag}/current/link"), since)?.is_none() {
                return Ok(Removed::Rescued);
            }
        }
        Folder::Tag(tag, current) => {
            if fresh(dir, &format!("{tag}/current/link"), since)?.is_none() {
                return Ok(Removed::Rescued);
            }
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
        }
        Folder::Upload(id) => {
            let path = dir.path().join(id);
            bytes = dir.stat(&format!("{id}/data")).ok().flatten().map_or(0, |s| s.size);
            for e in list(&path)?.into_iter().filter(|e| e.name != "startedat") {
                let removed =
                    if e.is_dir { fs::remove_dir_all(path.join(&e.name)) } else { fs::remove_file(path.join(&e.name)) };
                removed.with_context(|| format!("cannot delete {}", path.join(&e.name).display()))?;
            }
            remove_entry(dir, &format!("{id}/startedat"), false)
                .with_context(|| format!("cannot delete {}", path.join("startedat").display()))?;
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
    let fail = |path: &std::path::Path, e: anyhow::Error| {
        let f = Failure { path: path.display().to_string(), error: format!("{e:#}") };
        tally.failed.lock().unwrap_or_else(|p| p.into_inner()).push(f);
    };
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
    let row = b.repo.unwrap_or(tally.gone.len() - 1);
    for f in folders {
        // Between two folders, never inside one: each goes whole, and a rerun finishes the rest.
        if interrupt::requested() {
            tally.interrupted.store(true, Ordering::SeqCst);
            return;
        }
        let what = match f {
            Folder::Leftover(_) => What::Leftover,
            Folder::History(_) => What::History,
            _ => b.what,
        };
        match remove_folder(&dir, what, f, since) {
            Ok(Removed::Gone(bytes)) => {
                tally.gone[row][what as usize].fetch_add(1, Ordering::Relaxed);
                tally.bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            Ok(Removed::Rescued) => {
                tally.rescued[what as usize].fetch_add(1, Ordering::Relaxed);
                match (what, f) {
                    (What::Manifest, Folder::Link(d)) => {
                        tally.rewritten.lock().unwrap_or_else(|p| p.into_inner()).push((row, *d));
                    }
                    (What::LayerLink, Folder::Link(d)) => {
                        tally.relinked.lock().unwrap_or_else(|p| p.into_inner()).insert(*d);
                    }
                    _ => {}
                }
            }
            Err(e) => fail(&parent.join(f.name()), e),
        }
        done();
    }
}

/// Runs one stage, its batches in parallel; true when every folder went or was rescued.
pub(crate) fn stage(
    layout: &Layout,
    progress: Progress,
    name: &str,
    batches: &[Batch],
    since: Option<SystemTime>,
    tally: &Tally,
) -> bool {
    let before = tally.failures();
    let chunks: Vec<(&Batch, &[Folder])> =
        batches.iter().flat_map(|b| b.folders.chunks(CHUNK).map(move |c| (b, c))).collect();
    let bar = progress.bar(name, chunks.iter().map(|c| c.1.len() as u64).sum());
    chunks.par_iter().for_each(|chunk| remove_batch(layout, *chunk, since, tally, &|| bar.inc(1)));
    bar.finish_and_clear();
    tally.failures() == before && !tally.interrupted.load(Ordering::SeqCst)
}

/// Deletes folders stage by stage, each stage in parallel, stopping after the first stage with
/// a failure; a folder written at or after `since` is left. The caller holds the store's [`Lock`].
pub fn delete_in_stages<'s, 'a>(
    layout: &Layout,
    stages: impl IntoIterator<Item = (&'s str, Vec<Batch<'a>>)>,
    since: Option<SystemTime>,
    progress: Progress,
) -> Outcome {
    let tally = Tally::new(0);
    for (name, batches) in stages {
        if !stage(layout, progress, name, &batches, since, &tally) {
            break;
        }
    }
    tally.into_outcome(Vec::new())
}

/// True when an error is a full disk (ENOSPC, or a quota: EDQUOT).
fn disk_full(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .is_some_and(|n| n == libc::ENOSPC || n == libc::EDQUOT)
    })
}

/// Carries out the plan. The caller holds the store's [`Lock`]. `since` is when the scan began
/// (less the file system's timestamp slack): what was written at or after it is left.
pub fn execute(store: &dyn Store, plan: &Plan, since: SystemTime, progress: Progress) -> Result<Outcome> {
    interrupt::deleting_begins();
    let mut x = Execution { store, plan, since, progress, tally: Tally::new(plan.repos.len()), errors: Vec::new() };
    let Some(freed_first) = x.journal_or_room()? else {
        return Ok(x.tally.into_outcome(x.errors));
    };
    stop_point("journal");
    // Each step runs only if the one before left nothing a later one depends on.
    let _ = x.tags() && x.manifests() && x.links_and_blobs(freed_first) && (freed_first || x.uploads());
    let outcome = x.tally.into_outcome(x.errors);
    if outcome.failed.is_empty() && outcome.errors.is_empty() && !outcome.interrupted {
        store.remove_journal()?;
    }
    Ok(outcome)
}

/// One plan being carried out, step by step in the crash-safe order.
struct Execution<'a> {
    store: &'a dyn Store,
    plan: &'a Plan,
    since: SystemTime,
    progress: Progress,
    tally: Tally,
    /// What stopped the run, besides failed deletions.
    errors: Vec<String>,
}

impl<'a> Execution<'a> {
    /// Runs one stage; true when nothing failed and no signal came.
    fn run(&self, name: &str, batches: Vec<Batch>) -> bool {
        self.store.remove(name, &batches, Some(self.since), &self.tally, self.progress)
    }

    /// One batch per repository with folders to remove.
    fn per_repo(
        &self,
        what: What,
        parent: &dyn Fn(&'a str) -> Parent<'a>,
        folders: &dyn Fn(usize, &'a RepoPlan) -> Vec<Folder<'a>>,
    ) -> Vec<Batch<'a>> {
        self.plan
            .repos
            .iter()
            .enumerate()
            .map(|(i, r)| Batch { parent: parent(&r.name), repo: Some(i), what, folders: folders(i, r) })
            .filter(|b| !b.folders.is_empty())
            .collect()
    }

    /// Writes the journal, which names every tag deleted (or still to finish from an earlier
    /// run). On a full disk, what needs no journal goes first (blobs no manifest of the store
    /// references, old uploads, and the history folders of the tags being deleted, which the
    /// registry does not read to serve them), then the journal has room. `Some(true)` when that
    /// happened; `None` when even then it could not be written.
    fn journal_or_room(&mut self) -> Result<Option<bool>> {
        let (store, plan) = (self.store, self.plan);
        match store.write_journal(&plan.journal, &plan.repos) {
            Ok(()) => return Ok(Some(false)),
            Err(e) if !disk_full(&e) => return Err(e),
            Err(_) => {}
        }
        let rescued = store.remark(self.since, &[])?;
        let unreferenced = |i: u32| plan.unreferenced.binary_search(&i).is_ok();
        let (mut batches, kept) = blob_batches(plan, &unreferenced, &rescued.blobs);
        self.tally.rescued[What::Blob as usize].fetch_add(kept, Ordering::Relaxed);
        batches.extend(upload_batches(plan));
        batches.extend(self.per_repo(What::History, &|r| Parent::Tags(r), &|_, r| {
            r.tags.iter().filter(|t| t.action != Action::Keep).map(|t| Folder::History(t.name)).collect()
        }));
        self.run("freeing space", batches);
        if let Err(e) = store.write_journal(&plan.journal, &plan.repos) {
            self.errors.push(format!(
                "{e:#}: the disk is full even after deleting what needs no journal; free some space and run again"
            ));
            return Ok(None);
        }
        Ok(Some(true))
    }

    /// The tag folders of deleted tags.
    fn tags(&self) -> bool {
        let batches = self.per_repo(What::Tag, &|r| Parent::Tags(r), &|_, r| {
            r.tags.iter().filter(|t| t.action != Action::Keep).map(|t| Folder::Tag(t.name, t.digest)).collect()
        });
        self.run("tags", batches)
    }

    /// The revision folders of removed manifests (and leftover ones), and the kept tags'
    /// history entries naming them.
    fn manifests(&mut self) -> bool {
        let (store, plan) = (self.store, self.plan);
        // A manifest tagged again since the scan stays, with the children it lists.
        let retagged: Result<Vec<DigestSet>> = plan
            .repos
            .par_iter()
            .map(|r| store.retagged(&r.name, &mut r.manifests.iter(&plan.store_blobs), self.since))
            .collect();
        let retagged = match retagged {
            Ok(r) => r,
            Err(e) => {
                self.errors.push(format!("{e:#}; stopped before the manifests: nothing a tag needs was deleted"));
                return false;
            }
        };
        for (i, kept) in retagged.iter().enumerate() {
            self.tally.rescued[What::Manifest as usize].fetch_add(kept.len(), Ordering::Relaxed);
            self.tally.rewritten.lock().unwrap_or_else(|p| p.into_inner()).extend(kept.iter().map(|d| (i, *d)));
        }
        let mut batches = self.per_repo(What::Manifest, &|r| Parent::Revisions(r), &|i, r| {
            let kept = &retagged[i];
            let leftovers = r.leftover_revisions.iter().copied().map(Folder::Leftover);
            let going = r.manifests.iter(&plan.store_blobs).filter(|d| !kept.contains(d)).map(Folder::Link);
            going.chain(leftovers).collect()
        });
        for (i, r) in plan.repos.iter().enumerate() {
            for e in &r.index_entries {
                batches.push(Batch {
                    parent: Parent::TagIndex(&r.name, &e.tag),
                    repo: Some(i),
                    what: What::IndexEntry,
                    folders: vec![Folder::Link(e.digest)],
                });
            }
        }
        self.run("manifests", batches)
    }

    /// What pushes wrote since the scan (and the revisions a deletion found written again),
    /// marked again; an error says the run stopped before the layer links and blobs.
    fn remark(&self, rewritten: &[(String, Digest)]) -> Result<remark::Rescued, String> {
        self.store.remark(self.since, rewritten).map_err(|e| {
            format!("{e:#}; stopped before the layer links and blobs: nothing a tag needs was deleted, run again")
        })
    }

    /// The layer links, then the blobs in rounds, each after a re-mark of what pushes wrote
    /// since the scan; then the check that no push landed on a deleted blob.
    fn links_and_blobs(&mut self, freed_first: bool) -> bool {
        let plan = self.plan;
        let links_planned = plan.repos.iter().any(|r| !r.layer_links.is_empty() || !r.leftover_layer_links.is_empty());
        if !links_planned && plan.blobs.is_empty() && plan.leftover_blobs.is_empty() {
            return true;
        }
        let rewritten: Vec<(String, Digest)> =
            std::mem::take(&mut *self.tally.rewritten.lock().unwrap_or_else(|p| p.into_inner()))
                .into_iter()
                .map(|(i, d)| (plan.repos[i].name.clone(), d))
                .collect();
        let rescued = match self.remark(&rewritten) {
            Ok(r) => r,
            Err(e) => {
                self.errors.push(e);
                return false;
            }
        };
        if !self.layer_links(&rescued) {
            return false;
        }
        let mut needed = rescued.blobs;
        needed.extend(self.tally.relinked.lock().unwrap_or_else(|p| p.into_inner()).iter().copied());
        if !self.blob_rounds(&rewritten, needed, freed_first) {
            return false;
        }
        self.lost_to_pushes(&rewritten);
        self.tally.failures() == 0 && self.errors.is_empty()
    }

    /// The layer links no live manifest of their repository needs, but those a push since the
    /// scan needs.
    fn layer_links(&self, rescued: &remark::Rescued) -> bool {
        let plan = self.plan;
        let links = self.per_repo(What::LayerLink, &|r| Parent::Layers(r), &|_, r| {
            let needed = rescued.links.get(&r.name);
            let mut folders: Vec<Folder> = r.layer_links.iter(&plan.store_blobs).map(Folder::Link).collect();
            folders.retain(|f| !matches!(f, Folder::Link(d) if needed.is_some_and(|n| n.contains(d))));
            folders.extend(r.leftover_layer_links.iter().copied().map(Folder::Leftover));
            folders
        });
        let kept = plan.repos.iter().map(|r| r.layer_links.len()).sum::<usize>()
            - links.iter().flat_map(|b| &b.folders).filter(|f| matches!(f, Folder::Link(_))).count();
        self.tally.rescued[What::LayerLink as usize].fetch_add(kept, Ordering::Relaxed);
        self.run("links", links)
    }

    /// The blobs, in rounds of 16 prefix folders, each after a re-mark: a push that needs a
    /// planned blob is missed only if it lands within one round. A failed blob holds up no
    /// other round; a signal stops them.
    fn blob_rounds(&mut self, rewritten: &[(String, Digest)], mut needed: DigestSet, freed_first: bool) -> bool {
        let plan = self.plan;
        stop_point("blobs");
        let done_first = |i: u32| freed_first && plan.unreferenced.binary_search(&i).is_ok();
        for round in 0..16u8 {
            let wanted = |i: u32| plan.blob(i).0[0] >> 4 == round && !done_first(i);
            if !plan.blobs.iter().chain(&plan.leftover_blobs).any(|i| wanted(*i)) {
                continue;
            }
            match self.remark(rewritten) {
                Ok(r) => needed.extend(r.blobs),
                Err(e) => {
                    self.errors.push(e);
                    return false;
                }
            }
            let (blobs, kept) = blob_batches(plan, &wanted, &needed);
            self.tally.rescued[What::Blob as usize].fetch_add(kept, Ordering::Relaxed);
            self.run("blobs", blobs);
            if self.tally.interrupted.load(Ordering::SeqCst) {
                return false;
            }
        }
        true
    }

    /// A push that landed inside a round and needs a blob that round deleted: it cannot be
    /// undone, but it is named (the image must be pushed again).
    fn lost_to_pushes(&mut self, rewritten: &[(String, Digest)]) {
        let plan = self.plan;
        let needed = match self.remark(rewritten) {
            Ok(r) => r.blobs,
            Err(e) => return self.errors.push(e),
        };
        let deleted =
            |b: &Digest| plan.store_blobs.position(b).is_some_and(|i| plan.blobs.binary_search(&(i as u32)).is_ok());
        let mut lost: Vec<Digest> = needed.into_iter().filter(|b| deleted(b) && !self.store.has_blob(b)).collect();
        lost.sort();
        if !lost.is_empty() {
            let list: Vec<String> = lost.iter().map(|b| b.to_string()).collect();
            self.errors.push(format!(
                "a push during the run needs {} this run deleted ({}): push that image again",
                if lost.len() == 1 { "a blob" } else { "blobs" },
                list.join(", ")
            ));
        }
    }

    /// The uploads older than `--upload-age`.
    fn uploads(&self) -> bool {
        self.run("uploads", upload_batches(self.plan))
    }
}

/// The blob folders of the plan that `wanted` selects (by blob index), by prefix folder, without
/// those in `needed`; and how many `needed` kept. Leftover blob folders are selected likewise.
fn blob_batches<'p>(plan: &'p Plan, wanted: &dyn Fn(u32) -> bool, needed: &DigestSet) -> (Vec<Batch<'p>>, usize) {
    let mut by_prefix: Vec<Vec<Folder>> = vec![Vec::new(); 256];
    let mut kept = 0;
    for d in plan.blobs.iter().filter(|i| wanted(**i)).map(|i| plan.blob(*i)) {
        if needed.contains(&d) {
            kept += 1;
        } else {
            by_prefix[usize::from(d.0[0])].push(Folder::Blob(d));
        }
    }
    for d in plan.leftover_blobs.iter().filter(|i| wanted(**i)).map(|i| plan.blob(*i)) {
        by_prefix[usize::from(d.0[0])].push(Folder::Leftover(d));
    }
    let batches = by_prefix
        .into_iter()
        .filter_map(|folders| match folders.first() {
            Some(Folder::Blob(d) | Folder::Leftover(d)) => {
                Some(Batch { parent: Parent::BlobPrefix(d.0[0]), repo: None, what: What::Blob, folders })
            }
            _ => None,
        })
        .collect();
    (batches, kept)
}

/// Every upload of the plan.
fn upload_batches(plan: &Plan) -> Vec<Batch<'_>> {
    plan.repos
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.uploads.is_empty())
        .map(|(i, r)| Batch {
            parent: Parent::Uploads(&r.name),
            repo: Some(i),
            what: What::Upload,
            folders: r.uploads.iter().map(|u| Folder::Upload(&u.id)).collect(),
        })
        .collect()
}
