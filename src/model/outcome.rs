//! What a real run did, as counted while it deleted: the report says what is gone, not what was
//! planned.

use serde::Serialize;

use crate::model::error::RunError;

/// What a folder removed is, for the count of what a run did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    Tag,
    Manifest,
    IndexEntry,
    LayerLink,
    Blob,
    Upload,
    /// A folder without its link or data: what an interrupted write or deletion left.
    Leftover,
    /// The history (`index/`) of a tag being deleted, removed ahead of the tag on a full disk:
    /// the registry serves a tag by its `current/link` alone. Not reported.
    History,
}

/// How many kinds of [`What`].
pub const WHATS: usize = 8;

/// One deletion that failed.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub path: String,
    pub error: String,
    /// The plan's index of the repository it is in (`None`: a blob, or not known); not in the
    /// JSON, whose path says it.
    #[serde(skip)]
    pub repo: Option<usize>,
}

/// What a real run did, counted as it went: the report says what is gone, not what was planned.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Per repository of the plan, then one entry for the store's blobs: what is gone, by [`What`].
    pub gone: Vec<[usize; WHATS]>,
    /// Bytes of the blobs and uploads gone.
    pub bytes_freed: u64,
    /// Of those, the blobs'.
    pub blob_bytes_freed: u64,
    /// Left at the moment of deletion, by [`What`]: written again, or needed by what a push wrote,
    /// since the scan.
    pub rescued: [usize; WHATS],
    /// Deletions that failed, with their paths.
    pub failed: Vec<Failure>,
    /// Errors that stopped the run (a lock no longer its own, a re-mark that could not read a
    /// manifest, no room for the journal) or that it found at its end (a push that needs a
    /// deleted blob); failed deletions are in `failed`.
    pub errors: Vec<RunError>,
    /// Stopped by SIGINT or SIGTERM between two deletions.
    pub interrupted: bool,
}

impl Outcome {
    /// How many of `what` are gone from repository `repo` (the plan's index; `None`: the store's).
    pub fn gone(&self, repo: Option<usize>, what: What) -> usize {
        let i = repo.unwrap_or(self.gone.len().saturating_sub(1));
        self.gone.get(i).map_or(0, |g| g[what as usize])
    }

    /// How many of `what` are gone in all.
    pub fn total(&self, what: What) -> usize {
        self.gone.iter().map(|g| g[what as usize]).sum()
    }
}

/// Requests sent by a run on a bucket, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RequestCounts {
    pub list: u64,
    pub get: u64,
    pub head: u64,
    pub put: u64,
    pub delete_objects: u64,
    pub delete: u64,
    /// Answers asking to slow down (429, 503), each retried.
    pub throttled: u64,
    /// Tries with no answer within the request timeout, each retried once.
    pub timed_out: u64,
}

impl RequestCounts {
    pub fn total(&self) -> u64 {
        self.list + self.get + self.head + self.put + self.delete_objects + self.delete
    }
}
