//! The storage of a registry: the [`Store`] interface a run goes through, asking about
//! repositories and digests rather than paths, and its filesystem backend ([`FsStore`]: the
//! layout, file access with all the unsafe code, the scan into an inventory, the execution of a
//! plan with its journal and lock, the re-mark of racing pushes), with `check`, the generator
//! and the registry's config.

pub mod apply;
pub mod check;
pub mod config;
pub mod fs;
pub mod generate;
pub mod interrupt;
pub mod journal;
pub mod layout;
pub mod remark;
pub mod remove;
pub mod s3;
pub mod scan;
pub mod stage;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Result;

use crate::core::plan::{Object, RepoPlan, StoreView};
use crate::core::progress::Progress;
use crate::model::blobs::BlobList;
use crate::model::digest::{Digest, DigestMap, DigestSet};
use crate::model::inventory::{Parsed, Repo};
use crate::model::journal::Journal;
use crate::model::outcome::RequestCounts;
use crate::store::fs::Dir;
use crate::store::layout::Layout;
use crate::store::remark::Rescued;
use crate::store::s3::S3Store;
use crate::store::s3::location::S3Location;
use crate::store::stage::{Batch, Relink, Tally};

/// A registry's storage as a run sees it, asked about repositories and digests rather than
/// paths. Listings run in parallel inside; everything a plan needs beyond them comes through
/// [`StoreView`]. The filesystem backend is [`FsStore`]; an object-storage backend implements
/// the same.
pub trait Store: StoreView {
    /// The names of every repository, sorted.
    fn repositories(&self) -> Result<Vec<String>>;
    /// Every blob of the store.
    fn blobs(&self) -> Result<BlobList>;
    /// One repository: its tags (read, or only counted without `tag_links`), revisions, layer
    /// links and uploads.
    fn repository(&self, name: String, tag_links: bool) -> Result<Repo>;
    /// The digests of a repository's revisions (for `--delete-orphan-attachments`).
    fn revision_digests(&self, repo: &str) -> Result<Vec<Digest>>;
    /// The manifests named, read and parsed, in parallel.
    fn manifests(&self, digests: DigestSet) -> DigestMap<Parsed>;
    /// A config blob (for `--order created`), when it can be read.
    fn config(&self, d: &Digest) -> Option<Vec<u8>>;
    /// The journal an interrupted run left.
    fn journal(&self) -> Result<Option<Journal>>;
    /// Takes the store's lock, held until released (or dropped, on the way out of a failed run).
    fn lock(&self) -> Result<Box<dyn Held>>;
    /// Fails when this run's lock is no longer its own (a bucket's, taken over by a run that
    /// thought this one dead): checked before each deletion stage.
    fn check_lock(&self) -> Result<()> {
        Ok(())
    }
    /// Writes the journal of a plan atomically (a full disk is an `ENOSPC` I/O error).
    fn write_journal(&self, earlier: &Journal, repos: &[RepoPlan]) -> Result<()>;
    /// Removes the journal once its run has finished.
    fn remove_journal(&self) -> Result<()>;
    /// What pushes wrote since `since`, and the revisions in `extra`, need (the re-mark).
    fn remark(&self, since: SystemTime, extra: &[(String, Digest)]) -> Result<Rescued>;
    /// Writes back a link this run deleted that a push since needs, where there is none; true
    /// when written.
    fn relink(&self, link: &Relink) -> Result<bool>;
    /// True while a blob has its data.
    fn has_blob(&self, d: &Digest) -> bool;
    /// Removes one stage's folders, in parallel, each left when written at or after `since`,
    /// counting into `tally`; true when none failed and no signal came.
    fn remove(
        &self,
        stage: &str,
        batches: &[Batch],
        since: Option<SystemTime>,
        tally: &Tally,
        progress: Progress,
    ) -> bool;
    /// When the scan began by the store's own clock, which stamps what pushes write, given the
    /// local time it began.
    fn scan_began(&self, local: SystemTime) -> SystemTime {
        local
    }
    /// In how many rounds the blobs go, each after a re-mark of what pushes wrote.
    fn blob_rounds(&self) -> u8 {
        16
    }
    /// The requests sent so far, by kind (a bucket).
    fn requests(&self) -> Option<RequestCounts> {
        None
    }
}

/// A store's lock, held by a run.
pub trait Held {
    /// Lets the lock go; an error when it could not (a bucket's then stays until it is stale,
    /// and the run must say so).
    fn release(self: Box<Self>) -> Result<()>;
}

/// Where a store is: a folder, or a bucket.
#[derive(Clone, Debug)]
pub enum Location {
    /// The registry's `rootdirectory` on a file system.
    Fs(PathBuf),
    S3(S3Location),
}

impl Location {
    /// `--root`: a folder, or `s3://BUCKET/ROOTDIRECTORY` with the AWS environment.
    pub fn from_root(root: &Path) -> Result<Location> {
        match root.to_str().filter(|r| r.starts_with("s3://")) {
            Some(url) => Ok(Location::S3(S3Location::from_url(url, &|k| std::env::var(k).ok())?)),
            None => Ok(Location::Fs(root.to_path_buf())),
        }
    }

    /// How the operator names it.
    pub fn shown(&self) -> String {
        match self {
            Location::Fs(p) => p.display().to_string(),
            Location::S3(s) => s.shown(),
        }
    }

    /// Opens the store, refusing anything that is not one.
    pub fn open(&self) -> Result<Box<dyn Store>> {
        Ok(match self {
            Location::Fs(p) => Box::new(FsStore::open(p)?),
            Location::S3(s) => Box::new(S3Store::open(s)?),
        })
    }
}

/// A store on a file system, under a registry's `rootdirectory`.
pub struct FsStore {
    layout: Layout,
    /// `blobs/sha256/`, open (`None` when the store has no blobs).
    blobs: Option<Dir>,
}

impl FsStore {
    /// Opens the store under `root`, refusing anything that is not one.
    pub fn open(root: &Path) -> Result<FsStore> {
        let layout = Layout::open(root)?;
        let blobs = Dir::open(&layout.blobs())?;
        Ok(FsStore { layout, blobs })
    }
}

impl StoreView for FsStore {
    fn stat(&self, object: Object) -> Result<Option<(u64, SystemTime)>> {
        let l = &self.layout;
        // A link or `data` that is no regular file refuses the plan that would delete it.
        match object {
            Object::BlobData(d) => fs::stat_file(&l.blob_data(&d)),
            Object::LayerLink(repo, d) => fs::stat_file(&l.layer_dir(repo, &d).join("link")),
            Object::BlobFolder(d) => fs::stat(&l.blob_dir(&d)),
            Object::LayerFolder(repo, d) => fs::stat(&l.layer_dir(repo, &d)),
            Object::RevisionFolder(repo, d) => fs::stat(&l.revision_dir(repo, &d)),
        }
    }

    fn tag_index(&self, repo: &str, tag: &str) -> Result<Vec<Digest>> {
        fs::digest_folders(&self.layout.tag_index(repo, tag))
    }
}

impl Store for FsStore {
    fn repositories(&self) -> Result<Vec<String>> {
        scan::repositories(&self.layout)
    }

    fn blobs(&self) -> Result<BlobList> {
        scan::scan_blobs(&self.layout)
    }

    fn repository(&self, name: String, tag_links: bool) -> Result<Repo> {
        scan::scan_repo(&self.layout, name, tag_links)
    }

    fn revision_digests(&self, repo: &str) -> Result<Vec<Digest>> {
        fs::digest_folders(&self.layout.revisions(repo))
    }

    fn manifests(&self, digests: DigestSet) -> DigestMap<Parsed> {
        scan::read_manifests(&self.layout, self.blobs.as_ref(), digests)
    }

    fn config(&self, d: &Digest) -> Option<Vec<u8>> {
        scan::read_config(&self.layout, d)
    }

    fn journal(&self) -> Result<Option<Journal>> {
        journal::read(&self.layout)
    }

    fn lock(&self) -> Result<Box<dyn Held>> {
        Ok(Box::new(fs::Lock::acquire(&self.layout)?))
    }

    fn write_journal(&self, earlier: &Journal, repos: &[RepoPlan]) -> Result<()> {
        journal::write(&self.layout, earlier, repos)
    }

    fn remove_journal(&self) -> Result<()> {
        journal::remove(&self.layout)
    }

    fn remark(&self, since: SystemTime, extra: &[(String, Digest)]) -> Result<Rescued> {
        remark::remark(&self.layout, since, extra)
    }

    fn relink(&self, link: &Relink) -> Result<bool> {
        remark::relink(&self.layout, link)
    }

    fn has_blob(&self, d: &Digest) -> bool {
        self.layout.blob_data(d).exists()
    }

    fn remove(
        &self,
        stage: &str,
        batches: &[Batch],
        since: Option<SystemTime>,
        tally: &Tally,
        progress: Progress,
    ) -> bool {
        remove::stage(&self.layout, progress, stage, batches, since, tally)
    }
}
