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
        self.repos.values().all(BTreeMap::is_empty)
    }

    /// The digests of a repository's journaled tags: where the cascade starts.
    pub fn digests(&self, repo: &str) -> BTreeSet<Digest> {
        self.repos.get(repo).map(|t| t.values().copied().collect()).unwrap_or_default()
    }
}
