//! The storage of a registry: the [`Store`] interface a run goes through (its parts [`Scan`],
//! [`Guard`] and [`Sweep`]), asking about repositories and digests rather than paths, and what every backend shares (the execution
//! of a plan in the crash-safe order, its stages, the journal's encoding, the re-mark's
//! closure, check's verdicts). The backends sit in folders of their own and never import
//! each other: [`fs`] (a folder: the layout, file access with all its unsafe code, the scan)
//! and [`bucket`] (a bucket the registry's s3 driver writes). [`location`] opens either.

pub mod apply;
pub mod bucket;
pub mod check;
pub mod check_pass;
pub mod config;
pub mod fs;
pub mod journal;
pub mod location;
pub mod remark;
pub mod section;
pub mod stage;
pub mod tree;

use std::time::SystemTime;

use anyhow::Result;

use crate::core::plan::{RepoPlan, StoreView};
use crate::model::blobs::BlobList;
use crate::model::digest::{Digest, DigestMap, DigestSet};
use crate::model::inventory::{Parsed, Repo};
use crate::model::journal::Journal;
use crate::model::outcome::RequestCounts;
use crate::store::remark::Rescued;
use crate::store::stage::{Relink, Removal};

/// A registry's storage as a run sees it, asked about repositories and digests rather than
/// paths, by what each part is for: [`Scan`] reads it, [`Guard`] keeps a run safe on it (its
/// lock, its journal, its clock), [`Sweep`] removes and writes back. Every backend has all three
/// ([`fs::FsStore`], [`bucket::BucketStore`]); a caller asks for the part it uses.
pub trait Store: Scan + Guard + Sweep {}

impl<T: Scan + Guard + Sweep + ?Sized> Store for T {}

/// Reading a store: what a scan, a plan and a check ask of it. Listings run in parallel
/// inside; everything a plan needs beyond them comes through [`StoreView`].
pub trait Scan: StoreView {
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
    /// True while a blob has its data.
    fn has_blob(&self, d: &Digest) -> bool;
}

/// Guarding a run: the store's lock, the journal of what a run deletes, and the store's clock,
/// which tells what was written since the scan.
pub trait Guard {
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
    /// The local time `local` by the store's own clock, which stamps what pushes write (a
    /// bucket's is its provider's, known from the lock it took; a folder's is this machine's).
    fn store_clock(&self, local: SystemTime) -> SystemTime {
        local
    }
}

/// Sweeping: a stage's removals, the re-mark of what pushes since the scan need and the
/// write-back of what they need that went, and what the run reports of its requests.
pub trait Sweep {
    /// Removes one stage's folders, in parallel, each as [`stage::decide`] says of it (what
    /// was written at or after its `since` stays), counting into its tally; true when none
    /// failed and no signal came.
    fn remove(&self, removal: &Removal) -> bool;
    /// What pushes wrote since `since`, and the revisions in `extra`, need (the re-mark).
    fn remark(&self, since: SystemTime, extra: &[(String, Digest)]) -> Result<Rescued>;
    /// Writes back a link this run deleted that a push since needs, where there is none; true
    /// when written.
    fn relink(&self, link: &Relink) -> Result<bool>;
    /// In how many rounds the blobs go, each after a re-mark of what pushes wrote.
    fn blob_rounds(&self) -> u8 {
        16
    }
    /// The requests sent so far, by kind (a bucket).
    fn requests(&self) -> Option<RequestCounts> {
        None
    }
    /// When the space of what is deleted is freed, where not at once (a versioned bucket, soft
    /// delete), as the provider's API tells it.
    fn freed_later(&self) -> Option<String> {
        None
    }
}

/// A store's lock, held by a run.
pub trait Held {
    /// Lets the lock go; an error when it could not (a bucket's then stays until it is stale,
    /// and the run must say so).
    fn release(self: Box<Self>) -> Result<()>;
}

/// Manifests larger than this are refused (the registry itself caps manifests at 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;
/// Image configs larger than this are not read for `created`.
pub const MAX_CONFIG: u64 = 64 << 20;

crate::model::message_error!(
    /// A link that does not hold exactly `sha256:<64 hex>`: the one read error `check` reports
    /// rather than stops on.
    MalformedLink
);

/// What is wrong with a link's content (`bytes`, which are no `sha256:<64 hex>`), in the words
/// every backend's malformed-link error uses.
pub(crate) fn malformed_content(bytes: &[u8]) -> String {
    let text = std::str::from_utf8(bytes).unwrap_or("");
    match bytes.len() {
        0 => "empty".to_string(),
        _ if text.trim_end() != text => "followed by white space".to_string(),
        _ => format!("{:?}", String::from_utf8_lossy(&bytes[..bytes.len().min(100)])),
    }
}

/// True when an error says the file system is full: no free block or inode (ENOSPC), or a
/// quota (EDQUOT). [`Guard::write_journal`] fails so when it has no room.
pub(crate) fn no_room(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// When an upload began, from its `startedat` (an RFC 3339 time, as the registry writes it);
/// `None` when unparsable: such an upload is never purged, as the registry does.
pub(crate) fn started_at(bytes: &[u8]) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(String::from_utf8_lossy(bytes).trim()).ok().map(SystemTime::from)
}

/// The refusal of a store whose `repositories/` is missing (or, in a bucket, holds nothing)
/// while `blobs/` holds blobs: every blob would look unreferenced, and this is more likely a
/// missing mount or a wrong rootdirectory than an empty registry (the reference collector
/// aborts here too, distribution#3200). `repositories` and `blobs` as the operator sees them.
pub(crate) fn blobs_without_repositories(repositories: &str, blobs: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{repositories} does not exist or holds nothing but {blobs} holds blobs: refusing to treat every blob as \
         garbage (is the store mounted, and the rootdirectory right?)"
    )
}

/// A manifest as its blob was read (`read`: its bytes, none when the blob is gone, or why it
/// could not be read), parsed; `at` names where it lives, for the message.
pub(crate) fn parse_manifest(d: &Digest, read: Result<Option<Vec<u8>>>, at: &dyn Fn() -> String) -> Parsed {
    match read {
        Ok(None) => Parsed::Missing,
        Ok(Some(bytes)) => match crate::model::manifest::parse(&bytes) {
            Ok(m) => Parsed::Ok(m),
            Err(e) => Parsed::Broken(format!("manifest {d} at {}: {e:#}", at())),
        },
        Err(e) => Parsed::Broken(format!("manifest {d}: {e:#}")),
    }
}
