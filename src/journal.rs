//! The intent journal (SPEC section 5): before the first deletion, the tags being deleted and the
//! digests they point to are written into the store. A rerun after a crash, of any kind, deletes
//! the journaled tags still there and cascades from their digests exactly as the interrupted run
//! did, instead of keeping their manifests as "untagged on purpose".

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::layout::Layout;

/// Per repository, the tags being deleted (name -> digest) by a run not yet known to be finished.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub version: u32,
    pub repos: BTreeMap<String, BTreeMap<String, Digest>>,
}

const VERSION: u32 = 1;
const MAX_SIZE: u64 = 256 << 20;

impl Journal {
    /// Reads the journal an unfinished run left, if any.
    pub fn read(layout: &Layout) -> Result<Option<Journal>> {
        let path = layout.journal_file();
        let bytes = match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read journal {}", path.display()));
            }
            Ok(m) if !m.is_file() || m.len() > MAX_SIZE => {
                bail!("{} is not a regsweep journal", path.display())
            }
            Ok(_) => fs::read(&path).with_context(|| format!("cannot read journal {}", path.display()))?,
        };
        let j: Journal = serde_json::from_slice(&bytes).with_context(|| {
            format!("corrupt journal {} (move it away only if you know the run it belongs to finished)", path.display())
        })?;
        if j.version != VERSION {
            bail!("journal {} has version {}, this regsweep reads {VERSION}", path.display(), j.version);
        }
        Ok(Some(j))
    }

    /// True when it names nothing.
    pub fn is_empty(&self) -> bool {
        self.repos.values().all(BTreeMap::is_empty)
    }

    /// The digests of a repository's journaled tags: where the cascade starts.
    pub fn digests(&self, repo: &str) -> BTreeSet<Digest> {
        self.repos.get(repo).map(|t| t.values().copied().collect()).unwrap_or_default()
    }

    /// Writes it atomically: a temporary file, fsync, rename, fsync of the folder.
    pub fn write(&self, layout: &Layout) -> Result<()> {
        let path = layout.journal_file();
        let tmp = path.with_extension("json.tmp");
        let mut j = self.clone();
        j.version = VERSION;
        let bytes = serde_json::to_vec_pretty(&j)?;
        let mut f = fs::File::create(&tmp).with_context(|| format!("cannot write journal {}", tmp.display()))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write journal {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("cannot write journal {}", path.display()))?;
        fs::File::open(layout.v2())
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync {}", layout.v2().display()))?;
        Ok(())
    }

    /// Removes the journal once its run has finished.
    pub fn remove(layout: &Layout) -> Result<()> {
        let path = layout.journal_file();
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove journal {}", path.display()))
            }
            _ => Ok(()),
        }
    }
}
