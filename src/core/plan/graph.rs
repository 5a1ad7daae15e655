//! The mark phase's data: one repository's manifests and the edges between them (an index's
//! children, a subject's referrers), and the store-wide mark bits, shared by all threads.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::blobs::BlobList;
use crate::model::digest::{Digest, DigestMap, DigestSet};
use crate::model::inventory::{Parsed, Repo};
use crate::model::manifest::Manifest;

/// Two bits per blob of the store, shared by all threads: live (the mark phase of
/// mark-and-sweep), and referenced by any manifest at all, live or not.
pub(super) struct Marks {
    pub(super) blobs: BlobList,
    live: Vec<AtomicU64>,
    referenced: Vec<AtomicU64>,
}

impl Marks {
    pub(super) fn new(blobs: BlobList) -> Marks {
        let bits = || (0..blobs.len().div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        Marks { live: bits(), referenced: bits(), blobs }
    }

    fn set(bits: &[AtomicU64], list: &BlobList, d: &Digest) {
        // A digest that is no blob of the store is nothing to keep.
        if let Some(i) = list.position(d) {
            bits[i / 64].fetch_or(1 << (i % 64), Ordering::Relaxed);
        }
    }

    fn get(bits: &[AtomicU64], i: usize) -> bool {
        bits[i / 64].load(Ordering::Relaxed) & (1 << (i % 64)) != 0
    }

    /// Marks a blob live (and so referenced): one lookup for both bits.
    pub(super) fn mark(&self, d: &Digest) {
        if let Some(i) = self.blobs.position(d) {
            self.live[i / 64].fetch_or(1 << (i % 64), Ordering::Relaxed);
            self.referenced[i / 64].fetch_or(1 << (i % 64), Ordering::Relaxed);
        }
    }

    /// Marks a blob as referenced by some manifest of the store.
    pub(super) fn reference(&self, d: &Digest) {
        Marks::set(&self.referenced, &self.blobs, d);
    }

    pub(super) fn is_marked(&self, i: usize) -> bool {
        Marks::get(&self.live, i)
    }

    pub(super) fn is_referenced(&self, i: usize) -> bool {
        Marks::get(&self.referenced, i)
    }
}

/// The manifests of one repository and the edges between them.
pub(super) struct Graph<'a> {
    manifests: &'a DigestMap<Parsed>,
    /// Revision path digest -> content digest.
    pub(super) revs: DigestMap<Digest>,
    /// Subject -> its referrers.
    referrers: DigestMap<Vec<Digest>>,
}

impl<'a> Graph<'a> {
    pub(super) fn new(manifests: &'a DigestMap<Parsed>, repo: &Repo) -> Graph<'a> {
        let revs: DigestMap<Digest> = repo.revisions.iter().map(|r| (r.digest, r.target)).collect();
        let mut referrers: DigestMap<Vec<Digest>> = DigestMap::default();
        for r in &repo.revisions {
            if let Some(s) = manifests.get(&r.target).and_then(Parsed::manifest).and_then(|m| m.subject) {
                referrers.entry(s).or_default().push(r.digest);
            }
        }
        Graph { manifests, revs, referrers }
    }

    pub(super) fn parsed(&self, d: &Digest) -> Option<&'a Parsed> {
        self.manifests.get(self.revs.get(d).unwrap_or(d))
    }

    pub(super) fn manifest(&self, d: &Digest) -> Option<&'a Manifest> {
        self.parsed(d).and_then(Parsed::manifest)
    }

    /// Everything reachable from `starts`: an index's children, a subject's referrers.
    pub(super) fn closure(&self, starts: impl IntoIterator<Item = Digest>) -> DigestSet {
        let mut seen = DigestSet::default();
        let mut todo: Vec<Digest> = starts.into_iter().collect();
        while let Some(d) = todo.pop() {
            if !seen.insert(d) {
                continue;
            }
            if let Some(m) = self.manifest(&d) {
                todo.extend(m.children.iter().copied());
            }
            if let Some(rs) = self.referrers.get(&d) {
                todo.extend(rs.iter().copied());
            }
        }
        seen
    }
}
