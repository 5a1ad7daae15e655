//! The filesystem backend: a store in a folder, under a registry's `rootdirectory` (the layout,
//! file access with all its unsafe code, the scan into an inventory, the removal of folders,
//! the journal's file and the lock, the re-mark of racing pushes by folder times, `check`).

pub mod check;
pub mod file;
pub mod journal;
pub mod layout;
pub mod remark;
pub mod remove;
pub mod scan;

// The file access, by its short name inside the crate; outside it is `store::fs::file` alone.
pub(crate) use file::*;

use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};

use crate::core::plan::{Object, RepoPlan, StoreView};
use crate::model::blobs::BlobList;
use crate::model::digest::{Digest, DigestMap, DigestSet};
use crate::model::inventory::{Parsed, Repo};
use crate::model::journal::Journal;
use crate::store::remark::Rescued;
use crate::store::stage::{Relink, Removal};
use crate::store::tree::{self, inside};
use crate::store::{Guard, Held, Scan, Sweep};
use layout::Layout;

/// A store on a file system, under a registry's `rootdirectory`.
pub struct FsStore {
    layout: Layout,
    /// `docker/registry/v2/`, open: the plan's `stat`s are made relative to it, sparing the
    /// kernel the walk of the root's path for each of hundreds of thousands.
    v2: Dir,
    /// `blobs/sha256/`, open (`None` when the store has no blobs).
    blobs: Option<Dir>,
    /// The revision folders the scan found without a link (the registry's API delete leaves
    /// them): a push writing its link into one changes no time of their parent's, which the
    /// re-mark looks at, so the re-mark looks into each.
    incomplete: std::sync::Mutex<Vec<(String, Digest)>>,
}

impl FsStore {
    /// Opens the store under `root`, refusing anything that is not one.
    pub fn open(root: &Path) -> Result<FsStore> {
        let layout = Layout::open(root)?;
        let v2 = Dir::open(layout.v2())?.with_context(|| format!("{} is gone", layout.v2().display()))?;
        let blobs = Dir::open(&layout.blobs())?;
        Ok(FsStore { layout, v2, blobs, incomplete: Default::default() })
    }

    /// `blobs/sha256/`, opened now where the store had none when it was opened (a first push
    /// since has made it); `None` where it was open already, or is still missing.
    fn blobs_made_since(&self) -> Result<Option<Dir>> {
        if self.blobs.is_some() { Ok(None) } else { Dir::open(&self.layout.blobs()) }
    }
}

impl StoreView for FsStore {
    fn stat(&self, object: Object) -> Result<Option<(u64, SystemTime)>> {
        // A link or `data` that is no regular file refuses the plan that would delete it.
        let (rel, file) = match object {
            Object::BlobData(d) => (tree::blob_data(&d), true),
            Object::LayerLink(repo, d) => (tree::in_repo(repo, &inside::layer_link(&d)), true),
            Object::BlobFolder(d) => (tree::blob_dir(&d), false),
            Object::LayerFolder(repo, d) => (tree::in_repo(repo, &inside::layer_dir(&d)), false),
            Object::RevisionFolder(repo, d) => (tree::in_repo(repo, &inside::revision_dir(&d)), false),
        };
        let st = if file { self.v2.stat_file(&rel)? } else { self.v2.stat_at(&rel)? };
        Ok(st.map(|st| (st.size, st.modified)))
    }

    fn tag_index(&self, repo: &str, tag: &str) -> Result<Vec<Digest>> {
        file::digest_folders(&self.layout.tag_index(repo, tag))
    }
}

impl Scan for FsStore {
    fn repositories(&self) -> Result<Vec<String>> {
        scan::repositories(&self.layout)
    }

    fn blobs(&self) -> Result<BlobList> {
        scan::scan_blobs(&self.layout)
    }

    fn repository(&self, name: String, tag_links: bool) -> Result<Repo> {
        let repo = scan::scan_repo(&self.layout, name, tag_links)?;
        if !repo.incomplete_revisions.is_empty() {
            let mut incomplete = self.incomplete.lock().unwrap_or_else(|p| p.into_inner());
            incomplete.extend(repo.incomplete_revisions.iter().map(|d| (repo.name.clone(), *d)));
        }
        Ok(repo)
    }

    fn revision_digests(&self, repo: &str) -> Result<Vec<Digest>> {
        file::digest_folders(&self.layout.revisions(repo))
    }

    fn manifests(&self, digests: DigestSet) -> DigestMap<Parsed> {
        let late = self.blobs_made_since().ok().flatten();
        scan::read_manifests(&self.layout, self.blobs.as_ref().or(late.as_ref()), digests)
    }

    fn config(&self, d: &Digest) -> Option<Vec<u8>> {
        scan::read_config(&self.layout, d)
    }

    fn has_blob(&self, d: &Digest) -> bool {
        self.layout.blob_data(d).exists()
    }
}

impl Guard for FsStore {
    fn journal(&self) -> Result<Option<Journal>> {
        journal::read(&self.layout)
    }

    fn lock(&self) -> Result<Box<dyn Held>> {
        Ok(Box::new(file::Lock::acquire(&self.layout)?))
    }

    fn write_journal(&self, earlier: &Journal, repos: &[RepoPlan]) -> Result<()> {
        journal::write(&self.layout, earlier, repos)
    }

    fn remove_journal(&self) -> Result<()> {
        journal::remove(&self.layout)
    }
}

impl Sweep for FsStore {
    fn remove(&self, removal: &Removal) -> bool {
        remove::stage(&self.layout, removal)
    }

    fn remark(&self, since: SystemTime, extra: &[(String, Digest)]) -> Result<Rescued> {
        let incomplete = self.incomplete.lock().unwrap_or_else(|p| p.into_inner()).clone();
        remark::remark(&self.layout, since, extra, &incomplete)
    }

    fn relink(&self, link: &Relink) -> Result<bool> {
        remark::relink(&self.layout, link)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_pushed_after_the_store_was_opened_without_blobs_are_read() {
        let root = tempfile::tempdir().unwrap();
        let v2 = root.path().join("docker/registry/v2");
        std::fs::create_dir_all(v2.join("repositories/app/_manifests")).unwrap();
        let store = FsStore::open(root.path()).unwrap();
        // The first push: its manifest is the store's first blob.
        let bytes = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
        use sha2::Digest as _;
        let d = Digest(sha2::Sha256::digest(bytes).into());
        let data = v2.join(tree::blob_data(&d));
        std::fs::create_dir_all(data.parent().unwrap()).unwrap();
        std::fs::write(&data, bytes).unwrap();
        let read = store.manifests([d].into_iter().collect());
        assert!(!matches!(read.get(&d), Some(Parsed::Missing) | None), "{:?}", read.get(&d));
    }
}
