//! One stage of deletions, as the crash-safe order hands it to a backend: batches of folders
//! named by repository, tag and digest (not by path), the rule that decides whether each folder
//! goes ([`decide`], pure: a backend only looks at the files it names and carries it out), and
//! the tally every backend counts into.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::SystemTime;

use indicatif::ProgressBar;

use crate::core::interrupt;
use crate::core::progress::Progress;
use crate::model::digest::{Digest, DigestSet};
use crate::model::error::RunError;
use crate::model::outcome::{Failure, Outcome, WHATS, What};
use crate::store::tree::{self, DATA, LINK, STARTED, inside};

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

/// The stages of a run's crash-safe order (docs/DESIGN.md section 4), in their order; each but
/// the journal removes folders through a backend, and names its progress bar and test point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// On a full disk, before the journal: what needs no journal.
    FreeingSpace,
    /// The journal written.
    Journal,
    Tags,
    Manifests,
    Links,
    Blobs,
    Uploads,
}

impl Stage {
    /// Its name, on its progress bar and in its test point (`delete:<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Stage::FreeingSpace => "freeing space",
            Stage::Journal => "journal",
            Stage::Tags => "tags",
            Stage::Manifests => "manifests",
            Stage::Links => "links",
            Stage::Blobs => "blobs",
            Stage::Uploads => "uploads",
        }
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
            Folder::History(tag) => inside::tag_history_in_tags(tag),
        }
    }

    /// What it counts as in a batch of `batch`: a leftover and a tag's history as themselves,
    /// any other folder as its batch says.
    pub fn kind(&self, batch: What) -> What {
        match self {
            Folder::Leftover(_) => What::Leftover,
            Folder::History(_) => What::History,
            _ => batch,
        }
    }

    /// The files that decide it, relative to its batch's parent; the first there is the one
    /// [`decide`] is given. The file that makes it what it is (a `link`, a blob's `data`, a
    /// tag's `current/link`, which its history goes by too); an upload's `data`, for its size;
    /// a leftover's `link` or `data`, which a push may have written since.
    pub fn decisive(&self) -> Vec<String> {
        let name = self.name();
        match self {
            Folder::Link(_) => vec![format!("{name}/{LINK}")],
            Folder::Blob(_) | Folder::Upload(_) => vec![format!("{name}/{DATA}")],
            Folder::Tag(tag, _) | Folder::History(tag) => vec![inside::tag_current_in_tags(tag)],
            Folder::Leftover(_) => vec![format!("{name}/{LINK}"), format!("{name}/{DATA}")],
        }
    }

    /// True for a file of the folder (`rel`, relative to its batch's parent) that goes before
    /// the rest: from then on the folder is gone for the registry. The file that makes it what
    /// it is; an upload's everything but `startedat`, which goes last, so that an interrupted
    /// removal still looks old. A history or a leftover has none.
    pub fn goes_first(&self, rel: &str) -> bool {
        match self {
            Folder::Link(_) | Folder::Blob(_) | Folder::Tag(..) => self.decisive().first().is_some_and(|d| d == rel),
            Folder::Upload(id) => rel != format!("{id}/{STARTED}"),
            Folder::History(_) | Folder::Leftover(_) => false,
        }
    }
}

/// A file as a backend found it: its size and when it was last written (by the store's clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub modified: SystemTime,
}

/// Whether a folder goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// It goes, freeing `bytes` (a blob's data, an upload's).
    Go { bytes: u64 },
    /// It stays: written since the scan (a leftover: completed since), keeping what it says.
    Leave(Keep),
}

/// What a folder left because it was written again keeps for the re-mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    Nothing,
    /// Its own digest (a revision's, a layer link's, a blob's).
    Its(Digest),
    /// The manifest its tag's `current/link` names now (a tag pushed again may name another).
    TagsManifest,
}

/// Whether `folder`, counted as `kind` ([`Folder::kind`]), goes, given the first of its
/// [`Folder::decisive`] files that is there (`found`) and the time the scan began by the
/// store's clock (`since`; `None`: no time is looked at). What was written at or after `since`
/// stays: a tag (with its manifest), a tag's history, a revision, a layer link, a blob; a tag
/// history entry's time is not looked at (what a push rescues is its tag, revision, layer
/// links and blobs). A leftover stays once it holds a link or data; an upload always goes.
pub fn decide(folder: &Folder, kind: What, since: Option<SystemTime>, found: Option<Stamp>) -> Decision {
    let young = found.is_some_and(|f| since.is_some_and(|since| f.modified >= since));
    let size = found.map_or(0, |f| f.size);
    match folder {
        Folder::Link(d) | Folder::Blob(d) if young && kind != What::IndexEntry => Decision::Leave(Keep::Its(*d)),
        Folder::Link(_) | Folder::Blob(_) => Decision::Go { bytes: if kind == What::Blob { size } else { 0 } },
        Folder::Tag(..) if young => Decision::Leave(Keep::TagsManifest),
        Folder::History(_) if young => Decision::Leave(Keep::Nothing),
        Folder::Tag(..) | Folder::History(_) => Decision::Go { bytes: 0 },
        Folder::Leftover(_) if found.is_some() => Decision::Leave(Keep::Nothing),
        Folder::Leftover(_) => Decision::Go { bytes: 0 },
        Folder::Upload(_) => Decision::Go { bytes: size },
    }
}

/// Runs one stage's deletions (`work`, given the stage's progress bar over `folders` steps);
/// true when none failed and no signal came.
pub(crate) fn run(
    tally: &Tally,
    progress: Progress,
    stage: Stage,
    folders: u64,
    work: impl FnOnce(&ProgressBar),
) -> bool {
    let before = tally.failures();
    let bar = progress.bar(stage.name(), folders);
    work(&bar);
    bar.finish_and_clear();
    tally.failures() == before && !tally.stop_requested()
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

/// One stage's removals, as a run hands them to a backend: its batches, the time the scan began
/// by the store's clock (what was written at or after it stays; `None`: no time is looked at),
/// the tally they are counted into.
#[derive(Clone, Copy)]
pub struct Removal<'a> {
    pub stage: Stage,
    pub batches: &'a [Batch<'a>],
    pub since: Option<SystemTime>,
    pub tally: &'a Tally,
    pub progress: Progress,
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
/// `Sweep::remove` counts into it.
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn every_folder_goes_or_stays_by_one_rule() {
        let d = Digest([7; 32]);
        let since = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let old = Some(Stamp { size: 10, modified: since - Duration::from_secs(1) });
        let at = Some(Stamp { size: 10, modified: since });
        let young = Some(Stamp { size: 10, modified: since + Duration::from_secs(1) });
        let (go, gone_with) = (Decision::Go { bytes: 0 }, Decision::Go { bytes: 10 });
        let leave = |k| Decision::Leave(k);
        use Folder::{History, Leftover, Link, Tag, Upload};
        use What::{IndexEntry, LayerLink, Manifest};
        // (folder, its batch, what its decisive file is, since, counted as, decision)
        type Row<'a> = (Folder<'a>, What, Option<Stamp>, Option<SystemTime>, What, Decision);
        let rows: Vec<Row> = vec![
            (Link(d), Manifest, old, Some(since), Manifest, go),
            (Link(d), Manifest, at, Some(since), Manifest, leave(Keep::Its(d))),
            (Link(d), Manifest, young, Some(since), Manifest, leave(Keep::Its(d))),
            (Link(d), Manifest, None, Some(since), Manifest, go),
            (Link(d), Manifest, young, None, Manifest, go),
            (Link(d), LayerLink, old, Some(since), LayerLink, go),
            (Link(d), LayerLink, young, Some(since), LayerLink, leave(Keep::Its(d))),
            // A tag history entry's time is never looked at.
            (Link(d), IndexEntry, young, Some(since), IndexEntry, go),
            (Link(d), IndexEntry, old, Some(since), IndexEntry, go),
            (Folder::Blob(d), What::Blob, old, Some(since), What::Blob, gone_with),
            (Folder::Blob(d), What::Blob, young, Some(since), What::Blob, leave(Keep::Its(d))),
            (Folder::Blob(d), What::Blob, None, Some(since), What::Blob, go),
            (Folder::Blob(d), What::Blob, young, None, What::Blob, gone_with),
            (Tag("t", Some(d)), What::Tag, old, Some(since), What::Tag, go),
            (Tag("t", None), What::Tag, young, Some(since), What::Tag, leave(Keep::TagsManifest)),
            (Tag("t", Some(d)), What::Tag, None, Some(since), What::Tag, go),
            (History("t"), What::Tag, young, Some(since), What::History, leave(Keep::Nothing)),
            (History("t"), What::Tag, old, Some(since), What::History, go),
            (History("t"), What::Tag, None, Some(since), What::History, go),
            // A leftover holding a link or data now, however old, is no leftover any more.
            (Leftover(d), Manifest, old, Some(since), What::Leftover, leave(Keep::Nothing)),
            (Leftover(d), What::Blob, young, None, What::Leftover, leave(Keep::Nothing)),
            (Leftover(d), What::Blob, None, Some(since), What::Leftover, go),
            (Upload("u"), What::Upload, young, Some(since), What::Upload, gone_with),
            (Upload("u"), What::Upload, None, Some(since), What::Upload, go),
        ];
        for (folder, batch, found, since, kind, decision) in rows {
            assert_eq!(folder.kind(batch), kind, "{folder:?} in a batch of {batch:?}");
            assert_eq!(decide(&folder, kind, since, found), decision, "{folder:?} as {kind:?}, {found:?} vs {since:?}");
        }
    }

    #[test]
    fn each_folder_names_the_files_that_decide_it_and_go_first() {
        let d = Digest([7; 32]);
        let hex = d.hex();
        use Folder::{Blob, History, Leftover, Link, Tag, Upload};
        // (folder, its decisive files, a file of it, whether that goes first)
        let rows: Vec<(Folder, Vec<String>, String, bool)> = vec![
            (Link(d), vec![format!("{hex}/link")], format!("{hex}/link"), true),
            (Blob(d), vec![format!("{hex}/data")], format!("{hex}/data"), true),
            (Blob(d), vec![format!("{hex}/data")], format!("{hex}/x.tmp"), false),
            (Tag("t", Some(d)), vec!["t/current/link".into()], "t/current/link".into(), true),
            (Tag("t", Some(d)), vec!["t/current/link".into()], format!("t/index/sha256/{hex}/link"), false),
            (History("t"), vec!["t/current/link".into()], format!("t/index/sha256/{hex}/link"), false),
            (Upload("u"), vec!["u/data".into()], "u/hashstates/sha256/0".into(), true),
            (Upload("u"), vec!["u/data".into()], "u/startedat".into(), false),
            (Leftover(d), vec![format!("{hex}/link"), format!("{hex}/data")], format!("{hex}/x"), false),
        ];
        for (folder, decisive, file, first) in rows {
            assert_eq!(folder.decisive(), decisive, "{folder:?}");
            assert_eq!(folder.goes_first(&file), first, "{folder:?}: {file}");
        }
    }
}
