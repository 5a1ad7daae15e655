//! Carries a [`Plan`] out in the crash-safe order of docs/DESIGN.md section 4, on any
//! [`Store`]: the journal (or, on a full disk, room for it first), then tag folders, revision
//! folders (and the tag index entries naming them), `_layers` links, blobs in rounds, uploads,
//! with the re-marks of racing pushes between them. A stage with a failed deletion stops the
//! run there, so nothing a surviving tag needs is lost; the journal stays and the next run
//! finishes the job. How a folder goes is the backend's (`store::remove` for a file system).

use std::time::SystemTime;

use anyhow::Result;
use rayon::prelude::*;

use crate::core::plan::{Action, Plan, RepoPlan};
use crate::core::progress::Progress;
use crate::model::digest::{Digest, DigestSet};
use crate::model::outcome::{Outcome, What};
use crate::store::stage::{Batch, Folder, Parent, Tally};
use crate::store::{Store, interrupt, remark};

/// Test-only (feature `test-hooks`): `REGSWEEP_TEST_STOP_AT=<point>` stops the process
/// (SIGSTOP) at that point of a real run, so that a test can push at an exact moment and then
/// let it go on (SIGCONT).
#[cfg(not(feature = "test-hooks"))]
pub fn stop_point(_point: &str) {}

#[cfg(feature = "test-hooks")]
pub fn stop_point(point: &str) {
    if std::env::var("REGSWEEP_TEST_STOP_AT").is_ok_and(|p| p == point) {
        // SAFETY: raising a signal on our own process.
        unsafe { libc::raise(libc::SIGSTOP) };
        // A signal sent while stopped is handled by any thread once continued: give it the time,
        // so that the test sees the run at this point, not a little later.
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// True when an error is a full disk (ENOSPC, or a quota: EDQUOT).
fn disk_full(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .is_some_and(|n| n == libc::ENOSPC || n == libc::EDQUOT)
    })
}

/// Carries out the plan. The caller holds the store's lock ([`Store::lock`]). `since` is when the scan began
/// (less the file system's timestamp slack): what was written at or after it is left.
pub fn execute(store: &dyn Store, plan: &Plan, since: SystemTime, progress: Progress) -> Result<Outcome> {
    interrupt::deleting_begins();
    let mut x = Execution { store, plan, since, progress, tally: Tally::new(plan.repos.len()), errors: Vec::new() };
    let Some(freed_first) = x.journal_or_room()? else {
        return Ok(x.tally.into_outcome(x.errors));
    };
    stop_point("journal");
    // Each step runs only if the one before left nothing a later one depends on.
    let _ = x.tags() && x.manifests() && x.links_and_blobs(freed_first) && (freed_first || x.uploads());
    let outcome = x.tally.into_outcome(x.errors);
    if outcome.failed.is_empty() && outcome.errors.is_empty() && !outcome.interrupted {
        store.remove_journal()?;
    }
    Ok(outcome)
}

/// One plan being carried out, step by step in the crash-safe order.
struct Execution<'a> {
    store: &'a dyn Store,
    plan: &'a Plan,
    since: SystemTime,
    progress: Progress,
    tally: Tally,
    /// What stopped the run, besides failed deletions.
    errors: Vec<String>,
}

impl<'a> Execution<'a> {
    /// Runs one stage; true when nothing failed and no signal came. Not at all when the run's
    /// lock is no longer its own (another run took it over): that stops the run.
    fn run(&mut self, name: &str, batches: Vec<Batch>) -> bool {
        if !batches.is_empty()
            && let Err(e) = self.store.check_lock()
        {
            self.errors.push(format!("{e:#}"));
            return false;
        }
        self.store.remove(name, &batches, Some(self.since), &self.tally, self.progress)
    }

    /// One batch per repository with folders to remove.
    fn per_repo(
        &self,
        what: What,
        parent: &dyn Fn(&'a str) -> Parent<'a>,
        folders: &dyn Fn(usize, &'a RepoPlan) -> Vec<Folder<'a>>,
    ) -> Vec<Batch<'a>> {
        self.plan
            .repos
            .iter()
            .enumerate()
            .map(|(i, r)| Batch { parent: parent(&r.name), repo: Some(i), what, folders: folders(i, r) })
            .filter(|b| !b.folders.is_empty())
            .collect()
    }

    /// Writes the journal, which names every tag deleted (or still to finish from an earlier
    /// run). On a full disk, what needs no journal goes first (blobs no manifest of the store
    /// references, old uploads, and the history folders of the tags being deleted, which the
    /// registry does not read to serve them), then the journal has room. `Some(true)` when that
    /// happened; `None` when even then it could not be written.
    fn journal_or_room(&mut self) -> Result<Option<bool>> {
        let (store, plan) = (self.store, self.plan);
        match store.write_journal(&plan.journal, &plan.repos) {
            Ok(()) => return Ok(Some(false)),
            Err(e) if !disk_full(&e) => return Err(e),
            Err(_) => {}
        }
        let rescued = store.remark(self.since, &[])?;
        let unreferenced = |i: u32| plan.unreferenced.binary_search(&i).is_ok();
        let (mut batches, kept) = blob_batches(plan, &unreferenced, &rescued.blobs);
        self.tally.kept(What::Blob, kept);
        batches.extend(self.upload_batches());
        batches.extend(self.per_repo(What::History, &|r| Parent::Tags(r), &|_, r| {
            r.tags.iter().filter(|t| t.action != Action::Keep).map(|t| Folder::History(t.name)).collect()
        }));
        self.run("freeing space", batches);
        if let Err(e) = store.write_journal(&plan.journal, &plan.repos) {
            self.errors.push(format!(
                "{e:#}: the disk is full even after deleting what needs no journal; free some space and run again"
            ));
            return Ok(None);
        }
        Ok(Some(true))
    }

    /// The tag folders of deleted tags.
    fn tags(&mut self) -> bool {
        let batches = self.per_repo(What::Tag, &|r| Parent::Tags(r), &|_, r| {
            r.tags.iter().filter(|t| t.action != Action::Keep).map(|t| Folder::Tag(t.name, t.digest)).collect()
        });
        self.run("tags", batches)
    }

    /// The revision folders of removed manifests (and leftover ones), and the kept tags'
    /// history entries naming them.
    fn manifests(&mut self) -> bool {
        let (store, plan) = (self.store, self.plan);
        // An index tagged again since the scan stays, with the children it lists; a subject
        // tagged again, with its referrers (any other manifest tagged again is left by the check
        // at its deletion).
        let retagged: Result<Vec<DigestSet>> = plan
            .repos
            .par_iter()
            .map(|r| {
                let subjects = r.removed_referrers.iter().map(|(s, _)| *s);
                let mut kept =
                    store.retagged(&r.name, &mut r.removed_indexes.iter().copied().chain(subjects), self.since)?;
                // Referrers of what stays stay, and theirs (a signature's attestation).
                loop {
                    let before = kept.len();
                    kept.extend(
                        r.removed_referrers
                            .iter()
                            .filter(|(s, _)| kept.contains(s))
                            .map(|(_, d)| *d)
                            .collect::<Vec<_>>(),
                    );
                    if kept.len() == before {
                        break Ok(kept);
                    }
                }
            })
            .collect();
        let retagged = match retagged {
            Ok(r) => r,
            Err(e) => {
                self.errors.push(format!("{e:#}; stopped before the manifests: nothing a tag needs was deleted"));
                return false;
            }
        };
        for (i, kept) in retagged.iter().enumerate() {
            self.tally.kept(What::Manifest, kept.len());
            self.tally.add_rewritten(kept.iter().map(|d| (i, *d)));
        }
        let mut batches = self.per_repo(What::Manifest, &|r| Parent::Revisions(r), &|i, r| {
            let kept = &retagged[i];
            let leftovers = r.leftover_revisions.iter().copied().map(Folder::Leftover);
            let going = r.manifests.iter(&plan.store_blobs).filter(|d| !kept.contains(d)).map(Folder::Link);
            going.chain(leftovers).collect()
        });
        for (i, r) in plan.repos.iter().enumerate() {
            for e in &r.index_entries {
                batches.push(Batch {
                    parent: Parent::TagIndex(&r.name, &e.tag),
                    repo: Some(i),
                    what: What::IndexEntry,
                    folders: vec![Folder::Link(e.digest)],
                });
            }
        }
        self.run("manifests", batches)
    }

    /// What pushes wrote since the scan (and the revisions a deletion found written again),
    /// marked again; an error says the run stopped before the layer links and blobs.
    fn remark(&self, rewritten: &[(String, Digest)]) -> Result<remark::Rescued, String> {
        self.store.remark(self.since, rewritten).map_err(|e| {
            format!("{e:#}; stopped before the layer links and blobs: nothing a tag needs was deleted, run again")
        })
    }

    /// The layer links, then the blobs in rounds, each after a re-mark of what pushes wrote
    /// since the scan; then the check that no push landed on a deleted blob.
    fn links_and_blobs(&mut self, freed_first: bool) -> bool {
        let plan = self.plan;
        let links_planned = plan.repos.iter().any(|r| !r.layer_links.is_empty() || !r.leftover_layer_links.is_empty());
        if !links_planned && plan.blobs.is_empty() && plan.leftover_blobs.is_empty() {
            return true;
        }
        let rewritten: Vec<(String, Digest)> =
            self.tally.take_rewritten().into_iter().map(|(i, d)| (plan.repos[i].name.clone(), d)).collect();
        let rescued = match self.remark(&rewritten) {
            Ok(r) => r,
            Err(e) => {
                self.errors.push(e);
                return false;
            }
        };
        if !self.layer_links(&rescued) {
            return false;
        }
        let mut needed = rescued.blobs;
        needed.extend(self.tally.relinked());
        if !self.blob_rounds(&rewritten, needed, freed_first) {
            return false;
        }
        self.lost_to_pushes(&rewritten);
        self.tally.failures() == 0 && self.errors.is_empty()
    }

    /// The layer links no live manifest of their repository needs, but those a push since the
    /// scan needs.
    fn layer_links(&mut self, rescued: &remark::Rescued) -> bool {
        let plan = self.plan;
        let links = self.per_repo(What::LayerLink, &|r| Parent::Layers(r), &|_, r| {
            let needed = rescued.links.get(&r.name);
            let mut folders: Vec<Folder> = r.layer_links.iter(&plan.store_blobs).map(Folder::Link).collect();
            folders.retain(|f| !matches!(f, Folder::Link(d) if needed.is_some_and(|n| n.contains(d))));
            folders.extend(r.leftover_layer_links.iter().copied().map(Folder::Leftover));
            folders
        });
        let kept = plan.repos.iter().map(|r| r.layer_links.len()).sum::<usize>()
            - links.iter().flat_map(|b| &b.folders).filter(|f| matches!(f, Folder::Link(_))).count();
        self.tally.kept(What::LayerLink, kept);
        self.run("links", links)
    }

    /// The blobs, in rounds of prefix folders (16 on a file system), each after a re-mark: a push
    /// that needs a planned blob is missed only if it lands within one round. A failed blob holds up no
    /// other round; a signal stops them.
    fn blob_rounds(&mut self, rewritten: &[(String, Digest)], mut needed: DigestSet, freed_first: bool) -> bool {
        let plan = self.plan;
        stop_point("blobs");
        let done_first = |i: u32| freed_first && plan.unreferenced.binary_search(&i).is_ok();
        let rounds = u32::from(self.store.blob_rounds().max(1));
        for round in 0..rounds {
            let wanted = |i: u32| u32::from(plan.blob(i).0[0]) * rounds / 256 == round && !done_first(i);
            if !plan.blobs.iter().chain(&plan.leftover_blobs).any(|i| wanted(*i)) {
                continue;
            }
            match self.remark(rewritten) {
                Ok(r) => needed.extend(r.blobs),
                Err(e) => {
                    self.errors.push(e);
                    return false;
                }
            }
            let (blobs, kept) = blob_batches(plan, &wanted, &needed);
            self.tally.kept(What::Blob, kept);
            self.run("blobs", blobs);
            if self.tally.stop_requested() || !self.errors.is_empty() {
                return false;
            }
        }
        true
    }

    /// A push that landed inside a round and needs a blob that round deleted: it cannot be
    /// undone, but it is named (the image must be pushed again).
    fn lost_to_pushes(&mut self, rewritten: &[(String, Digest)]) {
        let plan = self.plan;
        let needed = match self.remark(rewritten) {
            Ok(r) => r.blobs,
            Err(e) => return self.errors.push(e),
        };
        let deleted =
            |b: &Digest| plan.store_blobs.position(b).is_some_and(|i| plan.blobs.binary_search(&(i as u32)).is_ok());
        let mut lost: Vec<Digest> = needed.into_iter().filter(|b| deleted(b) && !self.store.has_blob(b)).collect();
        lost.sort();
        if !lost.is_empty() {
            let list: Vec<String> = lost.iter().map(|b| b.to_string()).collect();
            self.errors.push(format!(
                "a push during the run needs {} this run deleted ({}): push that image again",
                if lost.len() == 1 { "a blob" } else { "blobs" },
                list.join(", ")
            ));
        }
    }

    /// The uploads older than `--upload-age`.
    fn uploads(&mut self) -> bool {
        let batches = self.upload_batches();
        self.run("uploads", batches)
    }

    fn upload_batches(&self) -> Vec<Batch<'a>> {
        self.per_repo(What::Upload, &|r| Parent::Uploads(r), &|_, r| {
            r.uploads.iter().map(|u| Folder::Upload(&u.id)).collect()
        })
    }
}

/// The blob folders of the plan that `wanted` selects (by blob index), by prefix folder, without
/// those in `needed`; and how many `needed` kept. Leftover blob folders are selected likewise.
fn blob_batches<'p>(plan: &'p Plan, wanted: &dyn Fn(u32) -> bool, needed: &DigestSet) -> (Vec<Batch<'p>>, usize) {
    let mut by_prefix: Vec<Vec<Folder>> = vec![Vec::new(); 256];
    let mut kept = 0;
    for d in plan.blobs.iter().filter(|i| wanted(**i)).map(|i| plan.blob(*i)) {
        if needed.contains(&d) {
            kept += 1;
        } else {
            by_prefix[usize::from(d.0[0])].push(Folder::Blob(d));
        }
    }
    for d in plan.leftover_blobs.iter().filter(|i| wanted(**i)).map(|i| plan.blob(*i)) {
        by_prefix[usize::from(d.0[0])].push(Folder::Leftover(d));
    }
    let batches = by_prefix
        .into_iter()
        .filter_map(|folders| match folders.first() {
            Some(Folder::Blob(d) | Folder::Leftover(d)) => {
                Some(Batch { parent: Parent::BlobPrefix(d.0[0]), repo: None, what: What::Blob, folders })
            }
            _ => None,
        })
        .collect();
    (batches, kept)
}
