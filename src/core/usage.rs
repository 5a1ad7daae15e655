//! `regsweep du`: where the space goes. Per repository: the bytes its manifests reach
//! (referenced), those no other repository's manifests reach (unique: what deleting it and
//! collecting would free), the rest (shared), and what a prune with the given policy would free
//! (reclaimable). For the store: every blob, those no manifest reaches (unreferenced), uploads,
//! and the reclaimable total, which is exactly what `prune --dry-run` reports as freed.

use std::fmt;

use indicatif::HumanBytes;
use serde::Serialize;

use crate::core::plan::Plan;
use crate::model::digest::{Digest, DigestMap};
use crate::model::inventory::{Parsed, Repo};

/// What a scan takes of one repository for `du`.
#[derive(Debug)]
pub struct Reach {
    pub tags: usize,
    pub manifests: usize,
    /// Every blob its manifests reach (manifest blobs, configs, layers, children's), sorted.
    pub blobs: Vec<Digest>,
    /// The bytes of its uploads in progress.
    pub upload_bytes: u64,
}

impl Reach {
    /// What a repository's manifests (read, by content digest) reach.
    pub fn of(repo: &Repo, manifests: &DigestMap<Parsed>) -> Reach {
        let mut blobs = Vec::new();
        let mut todo: Vec<Digest> = repo.revisions.iter().map(|r| r.target).collect();
        let mut seen = crate::model::digest::DigestSet::default();
        while let Some(d) = todo.pop() {
            if !seen.insert(d) {
                continue;
            }
            if let Some(Parsed::Ok(m)) = manifests.get(&d) {
                blobs.push(d);
                blobs.extend(m.blobs.iter().copied());
                todo.extend(m.children.iter().copied());
            }
        }
        blobs.sort_unstable();
        blobs.dedup();
        Reach {
            tags: repo.tags.len() + repo.tags_not_read,
            manifests: repo.revisions.len(),
            blobs,
            upload_bytes: repo.uploads.iter().map(|u| u.size).sum(),
        }
    }
}

/// One repository's share of the store.
#[derive(Clone, Debug, Serialize)]
pub struct RepoUsage {
    pub name: String,
    pub tags: usize,
    pub manifests: usize,
    pub bytes_referenced: u64,
    pub bytes_unique: u64,
    pub bytes_shared: u64,
    pub bytes_reclaimable: u64,
}

/// Where a store's space goes.
#[derive(Clone, Debug, Serialize)]
pub struct Usage {
    pub root: String,
    pub repositories: usize,
    /// Every blob.
    pub bytes_total: u64,
    /// Blobs no manifest of any repository reaches: what `gc` frees (once older than the grace).
    pub bytes_unreferenced: u64,
    /// Uploads in progress.
    pub bytes_uploads: u64,
    /// What `prune` with the same options frees: its `bytes_freed`.
    pub bytes_reclaimable: u64,
    pub repos: Vec<RepoUsage>,
}

/// How the table and the JSON list the repositories.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortBy {
    #[default]
    Unique,
    Referenced,
    Reclaimable,
    Name,
}

/// Adds up a store's usage. `names` and `reach` are aligned with the plan's repositories;
/// `sizes` holds every blob's size. A blob the plan frees counts as reclaimable in the first
/// repository (by name) whose manifests reach it; an upload the plan removes, in its own.
pub fn usage(root: &str, reach: Vec<Reach>, sizes: &DigestMap<u64>, plan: &Plan) -> Usage {
    let size = |d: &Digest| sizes.get(d).copied().unwrap_or(0);
    // How many repositories reach each blob, and the first of them.
    let mut holders: DigestMap<(u32, u32)> = DigestMap::default();
    for (i, r) in reach.iter().enumerate() {
        for b in r.blobs.iter().filter(|b| sizes.contains_key(b)) {
            holders.entry(*b).and_modify(|h| h.0 += 1).or_insert((1, i as u32));
        }
    }
    let mut reclaimable = vec![0u64; reach.len()];
    for d in plan.blobs.iter().map(|i| plan.blob(*i)) {
        if let Some((_, first)) = holders.get(&d) {
            reclaimable[*first as usize] += size(&d);
        }
    }
    for (i, r) in plan.repos.iter().enumerate() {
        reclaimable[i] += r.uploads.iter().map(|u| u.size).sum::<u64>();
    }
    let repos: Vec<RepoUsage> = plan
        .repos
        .iter()
        .zip(&reach)
        .zip(reclaimable)
        .map(|((p, r), bytes_reclaimable)| {
            let present = r.blobs.iter().filter(|b| sizes.contains_key(b));
            let (referenced, unique) = present.fold((0, 0), |(all, own), b| {
                let only = holders.get(b).is_some_and(|h| h.0 == 1);
                (all + size(b), own + if only { size(b) } else { 0 })
            });
            RepoUsage {
                name: p.name.clone(),
                tags: r.tags,
                manifests: r.manifests,
                bytes_referenced: referenced,
                bytes_unique: unique,
                bytes_shared: referenced - unique,
                bytes_reclaimable,
            }
        })
        .collect();
    let upload_bytes: u64 = plan.repos.iter().flat_map(|r| &r.uploads).map(|u| u.size).sum();
    Usage {
        root: root.to_string(),
        repositories: repos.len(),
        bytes_total: sizes.values().sum(),
        bytes_unreferenced: sizes.iter().filter(|(d, _)| !holders.contains_key(*d)).map(|(_, s)| s).sum(),
        bytes_uploads: reach.iter().map(|r| r.upload_bytes).sum(),
        bytes_reclaimable: plan.blob_bytes + upload_bytes,
        repos,
    }
}

impl Usage {
    /// Sorts the repositories (largest first; by name A to Z) and keeps the first `top`.
    pub fn sort(&mut self, by: SortBy, top: Option<usize>) {
        let key = |r: &RepoUsage| match by {
            SortBy::Unique => r.bytes_unique,
            SortBy::Referenced => r.bytes_referenced,
            SortBy::Reclaimable => r.bytes_reclaimable,
            SortBy::Name => 0,
        };
        self.repos.sort_by(|a, b| key(b).cmp(&key(a)).then_with(|| a.name.cmp(&b.name)));
        if let Some(k) = top {
            self.repos.truncate(k);
        }
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.repos.iter().map(|r| r.name.len()).max().unwrap_or(10).max(10);
        writeln!(
            f,
            "{:<width$}  {:>6}  {:>9}  {:>11}  {:>11}  {:>11}  {:>11}",
            "REPOSITORY", "TAGS", "MANIFESTS", "REFERENCED", "UNIQUE", "SHARED", "RECLAIMABLE"
        )?;
        for r in &self.repos {
            writeln!(
                f,
                "{:<width$}  {:>6}  {:>9}  {:>11}  {:>11}  {:>11}  {:>11}",
                r.name,
                r.tags,
                r.manifests,
                HumanBytes(r.bytes_referenced).to_string(),
                HumanBytes(r.bytes_unique).to_string(),
                HumanBytes(r.bytes_shared).to_string(),
                HumanBytes(r.bytes_reclaimable).to_string(),
            )?;
        }
        write!(
            f,
            "\n{}: {} repositories, {} in blobs, {} referenced by no manifest, {} in uploads; {} reclaimable",
            self.root,
            self.repositories,
            HumanBytes(self.bytes_total),
            HumanBytes(self.bytes_unreferenced),
            HumanBytes(self.bytes_uploads),
            HumanBytes(self.bytes_reclaimable)
        )
    }
}
