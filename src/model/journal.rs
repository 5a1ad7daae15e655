//! The intent journal's data (docs/DESIGN.md section 4): per repository, the tags a run is
//! deleting and the digests they point to. `store::journal` reads and writes it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::digest::Digest;

/// Per repository, the tags being deleted (name -> digest) by a run not yet known to be finished.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub version: u32,
    pub repos: BTreeMap<String, BTreeMap<String, Digest>>,
    /// Per repository, the removed manifests with an edge to other removed ones (an index to
    /// its children, a subject to its referrers, a referrer that is an index to its children).
    /// The manifests stage deletes them first: after a crash in between, nothing else in the
    /// store leads to what they reach (a referrer is found only by its own revision). The
    /// cascade starts from them too. Absent in journals of older versions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub manifests: BTreeMap<String, BTreeSet<Digest>>,
    /// When it was written, by the store's clock (not in the file: its mtime, or the object's
    /// LastModified). A journaled tag pushed after it was pushed again on purpose.
    #[serde(skip)]
    pub written: Option<std::time::SystemTime>,
}

/// The journal format this regsweep writes and reads.
pub const VERSION: u32 = 1;

impl Journal {
    /// True when it names nothing.
    pub fn is_empty(&self) -> bool {
        self.repos.values().all(BTreeMap::is_empty) && self.manifests.values().all(BTreeSet::is_empty)
    }

    /// The digests of a repository's journaled tags and manifests: where the cascade starts.
    pub fn digests(&self, repo: &str) -> BTreeSet<Digest> {
        let tags = self.repos.get(repo).into_iter().flat_map(|t| t.values().copied());
        tags.chain(self.manifests.get(repo).into_iter().flatten().copied()).collect()
    }

    /// True when it names anything of repository `repo`.
    pub fn names(&self, repo: &str) -> bool {
        self.repos.contains_key(repo) || self.manifests.contains_key(repo)
    }
}
