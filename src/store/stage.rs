//! One stage of deletions, as the crash-safe order hands it to a backend: batches of folders
//! named by repository, tag and digest (not by path), and the tally every backend counts into.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::core::interrupt;
use crate::model::digest::{Digest, DigestSet};
use crate::model::error::RunError;
use crate::model::outcome::{Failure, Outcome, WHATS, What};
use crate::store::tree::{self, inside};

/// Test-only (feature `test-hooks`): `REGSWEEP_TEST_CRASH_AFTER=K` aborts the process after K
/// deletions, so that the crash tests can stop a real run at an exact point.
#[cfg(not(feature = "test-hooks"))]
pub(crate) fn crash_point() {}

#[cfg(feature = "test-hooks")]
pub(crate) fn crash_point() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static LIMIT: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
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
    /// `<hex>/` without its `link` or `data`: removed only while it still has none.
    Leftover(Digest),
    /// `<tag>/index/`: the history of a tag being deleted.
    History(&'a str),
}

impl Folder<'_> {
    /// Its name in its parent folder.
    pub fn name(&self) -> String {
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
}

impl Parent<'_> {
    /// Where it is in the storage tree, relative to `docker/registry/v2/`.
    pub fn place(&self) -> String {
        match self {
            Parent::Tags(r) => tree::in_repo(r, inside::TAGS),
            Parent::Revisions(r) => tree::in_repo(r, inside::REVISIONS),
            Parent::TagIndex(r, t) => tree::in_repo(r, &inside::tag_index(t)),
            Parent::Layers(r) => tree::in_repo(r, inside::LAYERS),
            Parent::Uploads(r) => tree::in_repo(r, inside::UPLOADS),
            Parent::BlobPrefix(b) => tree::blob_prefix(*b),
        }
    }
}

/// A link this run deleted that a push since the scan needs again, written back as the registry
/// writes it (only where there is none).
#[derive(Clone, Copy, Debug)]
pub enum Relink<'a> {
    /// `_manifests/revisions/sha256/<hex>/link` of a repository.
    Revision(&'a str, Digest),
    /// `_layers/sha256/<hex>/link` of a repository.
    Layer(&'a str, Digest),
    /// A tag's `index/sha256/<hex>/link`, then its `current/link`.
    Tag(&'a str, &'a str, Digest),
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

/// The counters behind an [`Outcome`], shared by the threads of a stage; a backend's
/// `Store::remove` counts into it.
pub struct Tally {
    gone: Vec<[AtomicUsize; WHATS]>,
    bytes: AtomicU64,
    blob_bytes: AtomicU64,
    rescued: [AtomicUsize; WHATS],
    failed: Mutex<Vec<Failure>>,
    /// Revisions a deletion found written again (plan's repository index): the re-mark reads them.
    rewritten: Mutex<Vec<(usize, Digest)>>,
    /// Blobs whose `_layers` link a deletion found written again.
    relinked: Mutex<DigestSet>,
    /// Manifests of tags a deletion found written again (plan's repository index): they stay.
    retagged: Mutex<Vec<(usize, Digest)>>,
    /// What went since the last [`Tally::take_removed`], by digest: the registry's blob cache
    /// holds entries of exactly these (a revision or a layer link of a repository, a blob).
    removed: Mutex<Vec<(Option<usize>, Digest)>>,
    interrupted: AtomicBool,
}

/// What a stage removed, named as the registry's blob-descriptor cache names its entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// Blobs whose data went (manifests' blobs included).
    pub blobs: Vec<Digest>,
    /// A repository's revision or layer link that went, by repository name.
    pub links: Vec<(String, Digest)>,
}

impl Removed {
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty() && self.links.is_empty()
    }
}

/// Told what each deletion stage removed, right after it (the registry's blob cache is evicted
/// so); it decides nothing about the run.
pub trait Evict: Sync {
    fn removed(&self, what: &Removed);
}

/// No cache to keep true.
#[derive(Debug)]
pub struct NoEvict;

impl Evict for NoEvict {
    fn removed(&self, _: &Removed) {}
}

impl Tally {
    pub(crate) fn new(repos: usize) -> Tally {
        Tally {
            gone: (0..=repos).map(|_| Default::default()).collect(),
            bytes: AtomicU64::new(0),
            blob_bytes: AtomicU64::new(0),
            rescued: Default::default(),
            failed: Mutex::default(),
            rewritten: Mutex::default(),
            relinked: Mutex::default(),
            retagged: Mutex::default(),
            removed: Mutex::default(),
            interrupted: AtomicBool::new(false),
        }
    }

    /// Counts a folder gone (of repository `repo` of the plan; `None`: the store's blobs), and
    /// remembers a revision's, a layer link's or a blob's digest for the blob cache.
    pub(crate) fn gone(&self, repo: Option<usize>, what: What, folder: &Folder, bytes: u64) {
        let row = repo.unwrap_or(self.gone.len() - 1);
        self.gone[row][what as usize].fetch_add(1, Ordering::Relaxed);
        if let (What::Manifest | What::LayerLink | What::Blob, Folder::Link(d) | Folder::Blob(d)) = (what, folder) {
            self.removed.lock().unwrap_or_else(|p| p.into_inner()).push((repo, *d));
        }
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if what == What::Blob {
            self.blob_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Counts a folder left because it was written again since the scan: a revision is then
    /// read by the re-mark, a layer link's blob stays, a tag's manifest (the digest its link
    /// holds now) stays.
    pub(crate) fn rescued(&self, repo: Option<usize>, what: What, digest: Option<Digest>) {
        self.rescued[what as usize].fetch_add(1, Ordering::Relaxed);
        match (what, repo, digest) {
            (What::Manifest, Some(r), Some(d)) => self.rewritten.lock().unwrap_or_else(|p| p.into_inner()).push((r, d)),
            (What::Tag, Some(r), Some(d)) => self.retagged.lock().unwrap_or_else(|p| p.into_inner()).push((r, d)),
            (What::LayerLink, _, Some(d)) => {
                self.relinked.lock().unwrap_or_else(|p| p.into_inner()).insert(d);
            }
            _ => {}
        }
    }

    /// What went since the last call: blobs (`None`) and links (of the plan's repository index).
    pub(crate) fn take_removed(&self) -> Vec<(Option<usize>, Digest)> {
        std::mem::take(&mut *self.removed.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Counts a folder written back after its deletion (a push since needs it): no longer gone,
    /// rescued.
    pub(crate) fn restored(&self, repo: usize, what: What) {
        let _ = self.gone[repo][what as usize].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        self.rescued[what as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `n` folders of a kind left by the re-mark before their stage.
    pub(crate) fn kept(&self, what: What, n: usize) {
        self.rescued[what as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Revisions found written again (by the plan's repository index), for the re-mark.
    pub(crate) fn add_rewritten(&self, found: impl IntoIterator<Item = (usize, Digest)>) {
        self.rewritten.lock().unwrap_or_else(|p| p.into_inner()).extend(found);
    }

    /// The revisions found written again so far.
    pub(crate) fn rewritten(&self) -> Vec<(usize, Digest)> {
        self.rewritten.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The manifests of tags found written again so far (by the plan's repository index).
    pub(crate) fn retagged(&self) -> Vec<(usize, Digest)> {
        self.retagged.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The blobs whose layer link a deletion found written again.
    pub(crate) fn relinked(&self) -> Vec<Digest> {
        self.relinked.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect()
    }

    /// Records a failed deletion.
    pub(crate) fn failed(&self, repo: Option<usize>, path: &dyn std::fmt::Display, e: &dyn std::fmt::Display) {
        let f = Failure { path: path.to_string(), error: format!("{e:#}"), repo };
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).push(f);
    }

    /// True once a signal asked the deletions to stop (and from then on).
    pub(crate) fn stop_requested(&self) -> bool {
        if interrupt::requested() {
            self.interrupted.store(true, Ordering::SeqCst);
        }
        self.interrupted.load(Ordering::SeqCst)
    }

    pub(crate) fn failures(&self) -> usize {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub(crate) fn into_outcome(self, errors: Vec<RunError>) -> Outcome {
        let load = |a: &[AtomicUsize; WHATS]| a.each_ref().map(|c| c.load(Ordering::Relaxed));
        Outcome {
            gone: self.gone.iter().map(load).collect(),
            bytes_freed: self.bytes.into_inner(),
            blob_bytes_freed: self.blob_bytes.into_inner(),
            rescued: load(&self.rescued),
            failed: self.failed.into_inner().unwrap_or_else(|p| p.into_inner()),
            errors,
            interrupted: self.interrupted.into_inner(),
        }
    }
}
