//! Carries a [`Plan`] out in the crash-safe order of docs/DESIGN.md section 4, on any
//! [`Store`]: the journal (or, on a full disk, room for it first), then tag folders, revision
//! folders (and the tag index entries naming them), `_layers` links, blobs in rounds, uploads,
//! with the re-marks of racing pushes between them. A stage with a failed deletion stops the
//! run there, so nothing a surviving tag needs is lost; the journal stays and the next run
//! finishes the job. How a folder goes is the backend's (`store::remove` for a file system).

use std::time::SystemTime;

use anyhow::Result;

use crate::core::interrupt;
use crate::core::plan::{Action, Plan, RepoPlan};
use crate::core::policy;
use crate::core::progress::Progress;
use crate::core::tags::TagPlan;
use crate::model::digest::{Digest, DigestSet};
use crate::model::error::{ErrorKind, RunError};
use crate::model::inventory::Parsed;
use crate::model::outcome::{Outcome, What};
use crate::store::stage::{Batch, Evict, Folder, NoEvict, Parent, Relink, Removal, Removed, Stage, Tally};
use crate::store::{Store, no_room, remark};

/// Test-only (feature `test-hooks`): `REGSWEEP_TEST_STOP_AT=<point>` stops the process
/// (SIGSTOP) the first time a real run reaches that point, so that a test can push at an exact
/// moment and then let it go on (SIGCONT). Points: `plan`, `journal`, `blobs`, and
/// `delete:<stage>` (`tags`, `manifests`, `links`, `blobs`, `uploads`): on a bucket, after a
/// group's listing and before its deletions; on disk, before the stage.
#[cfg(not(feature = "test-hooks"))]
pub fn stop_point(_point: &str) {}

#[cfg(feature = "test-hooks")]
pub fn stop_point(point: &str) {
    // Once: a point that parallel groups of a stage pass stops the run at the first of them.
    static STOPPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if std::env::var("REGSWEEP_TEST_STOP_AT").is_ok_and(|p| p == point)
        && !STOPPED.swap(true, std::sync::atomic::Ordering::SeqCst)
    {
        // SAFETY: raising a signal on our own process.
        unsafe { libc::raise(libc::SIGSTOP) };
        // A signal sent while stopped is handled by any thread once continued: give it the time,
        // so that the test sees the run at this point, not a little later.
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// True when an error is a full disk ([`no_room`]).
fn disk_full(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(no_room))
}

/// Carries out the plan. The caller holds the store's lock ([`Guard::lock`](crate::store::Guard::lock)). `since` is when the scan began
/// (less the file system's timestamp slack): what was written at or after it is left.
pub fn execute(store: &dyn Store, plan: &Plan, since: SystemTime, progress: Progress) -> Result<Outcome> {
    execute_with(store, plan, since, progress, &NoEvict)
}

/// [`execute`], telling `evict` what each stage removed right after it (the registry's blob
/// cache is kept true so).
pub fn execute_with(
    store: &dyn Store,
    plan: &Plan,
    since: SystemTime,
    progress: Progress,
    evict: &dyn Evict,
) -> Result<Outcome> {
    interrupt::deleting_begins();
    let mut x = Execution {
        store,
        evict,
        plan,
        since,
        progress,
        tally: Tally::new(plan.repos.len()),
        errors: Vec::new(),
        stages_done: Stage::Journal,
        healed: Vec::new(),
        ensured: Default::default(),
    };
    let Some(freed_first) = x.journal_or_room()? else {
        return Ok(x.tally.into_outcome(x.errors));
    };
    stop_point("journal");
    // Each step runs only if the one before left nothing a later one depends on; but what the
    // run deleted before a failed deletion stopped it and a push since needs is written back.
    if x.tags() && x.manifests() {
        let _ = x.links_and_blobs(freed_first) && (freed_first || x.uploads());
    } else {
        x.heal_before_stopping();
    }
    let outcome = x.tally.into_outcome(x.errors);
    if outcome.failed.is_empty() && outcome.errors.is_empty() && !outcome.interrupted {
        store.remove_journal()?;
    }
    Ok(outcome)
}

/// One plan being carried out, step by step in the crash-safe order.
struct Execution<'a> {
    store: &'a dyn Store,
    /// Told what each stage removed.
    evict: &'a dyn Evict,
    plan: &'a Plan,
    since: SystemTime,
    progress: Progress,
    tally: Tally,
    /// What stopped the run, besides failed deletions.
    errors: Vec<RunError>,
    /// The last stage carried out: what a healing may write back.
    stages_done: Stage,
    /// Removed manifests that pushes since the scan turned out to need (by repository name):
    /// every later re-mark keeps what they need.
    healed: Vec<(String, Digest)>,
    /// The links a healing saw to (written back, or found there).
    ensured: std::collections::HashSet<LinkId>,
}

/// What identifies a link a healing writes back ([`Relink`], owning its names).
#[derive(PartialEq, Eq, Hash)]
enum LinkId {
    Revision(String, Digest),
    Layer(String, Digest),
    Tag(String, String, Digest),
}

impl From<&Relink<'_>> for LinkId {
    fn from(link: &Relink<'_>) -> LinkId {
        match *link {
            Relink::Revision(repo, d) => LinkId::Revision(repo.into(), d),
            Relink::Layer(repo, d) => LinkId::Layer(repo.into(), d),
            Relink::Tag(repo, tag, d) => LinkId::Tag(repo.into(), tag.into(), d),
        }
    }
}

impl<'a> Execution<'a> {
    /// Runs one stage; true when nothing failed and no signal came. Not at all when the run's
    /// lock is no longer its own (another run took it over): that stops the run.
    fn run(&mut self, name: Stage, batches: Vec<Batch>) -> bool {
        if !batches.is_empty()
            && let Err(e) = self.store.check_lock()
        {
            self.errors.push(RunError::new(ErrorKind::LockLost, format!("{e:#}")));
            return false;
        }
        let removal = Removal {
            stage: name,
            batches: &batches,
            since: Some(self.since),
            tally: &self.tally,
            progress: self.progress,
        };
        let done = self.store.remove(&removal);
        self.evict_removed();
        done
    }

    /// Hands what went since the last stage to the evictor, named by repository.
    fn evict_removed(&self) {
        let mut removed = Removed::default();
        for (repo, d) in self.tally.take_removed() {
            match repo {
                Some(i) => removed.links.push((self.plan.repos[i].name.clone(), d)),
                None => removed.blobs.push(d),
            }
        }
        if !removed.is_empty() {
            self.evict.removed(&removed);
        }
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
        self.run(Stage::FreeingSpace, batches);
        if let Err(e) = store.write_journal(&plan.journal, &plan.repos) {
            self.errors.push(RunError::new(
                ErrorKind::Journal,
                format!(
                    "{e:#}: the disk is full even after deleting what needs no journal; free some space and run again"
                ),
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
        let done = self.run(Stage::Tags, batches);
        self.stages_done = Stage::Tags;
        done
    }

    /// After a failed deletion in the tags or manifests stage: the re-mark and write-back of
    /// what the run deleted so far and pushes since need, as after a stage that went whole; then
    /// the run stops with the failure. Not when a signal or a lost lock stopped it (another run
    /// may hold the store now).
    fn heal_before_stopping(&mut self) {
        if self.tally.stop_requested() || !self.errors.is_empty() || self.tally.failures() == 0 {
            return;
        }
        if let Err(e) = self.remark() {
            self.errors.push(e);
        }
    }

    /// The revision folders of removed manifests (and leftover ones), and the kept tags'
    /// history entries naming them. They go in waves along the plan's edges: an index before
    /// its children, a subject before its referrers, so that one found written again since the
    /// scan (a tag pushed again onto it) keeps what it reaches, whenever in the stage that
    /// happened. The manifests of tags pushed again during the tags stage stay likewise.
    fn manifests(&mut self) -> bool {
        let plan = self.plan;
        // From the first wave on, revisions may be gone: a healing may write them back.
        self.stages_done = Stage::Manifests;
        let mut kept: Vec<DigestSet> = vec![DigestSet::default(); plan.repos.len()];
        for (i, d) in self.tally.retagged() {
            kept[i].insert(d);
        }
        let mut pending: Vec<DigestSet> = plan
            .repos
            .iter()
            .zip(&mut kept)
            .map(|(r, k)| {
                reach(k, &r.removed_edges);
                r.manifests.iter(&plan.store_blobs).filter(|d| !k.contains(d)).collect()
            })
            .collect();
        let mut first = true;
        loop {
            let waves: Vec<Vec<Digest>> =
                pending.iter().zip(&plan.repos).map(|(p, r)| wave(p, &r.removed_edges)).collect();
            if !first && waves.iter().all(Vec::is_empty) {
                break;
            }
            let batches = self.per_repo(What::Manifest, &|r| Parent::Revisions(r), &|i, r| {
                let going = waves[i].iter().copied().map(Folder::Link);
                let leftovers = r.leftover_revisions.iter().copied().map(Folder::Leftover).filter(|_| first);
                going.chain(leftovers).collect()
            });
            first = false;
            let done = self.run(Stage::Manifests, batches);
            // Those left, written again since the scan, keep what they reach.
            for (i, d) in self.tally.rewritten() {
                kept[i].insert(d);
            }
            for (i, r) in plan.repos.iter().enumerate() {
                reach(&mut kept[i], &r.removed_edges);
                // A wave is sorted: a search, not a scan (a wave can hold every removed manifest
                // of a repository: tens of thousands).
                pending[i].retain(|d| !kept[i].contains(d) && waves[i].binary_search(d).is_err());
            }
            if !done {
                return false;
            }
        }
        let rescued: DigestSet = self.tally.rewritten().into_iter().map(|(_, d)| d).collect();
        // Counted only among the manifests the plan removes: a tag pushed again onto a kept
        // manifest rescues none.
        let by_reach: Vec<(usize, Digest)> = kept
            .iter()
            .zip(&plan.repos)
            .enumerate()
            .flat_map(|(i, (k, r))| {
                let removed: DigestSet = r.manifests.iter(&plan.store_blobs).collect();
                k.iter().filter(move |d| removed.contains(d)).map(move |d| (i, *d)).collect::<Vec<_>>()
            })
            .filter(|(_, d)| !rescued.contains(d))
            .collect();
        self.tally.kept(What::Manifest, by_reach.len());
        self.tally.add_rewritten(by_reach);
        // One batch a tag (a bucket lists its index once for all of its entries).
        let mut entries = Vec::new();
        for (i, r) in plan.repos.iter().enumerate() {
            let mut by_tag: std::collections::BTreeMap<&str, Vec<Folder>> = Default::default();
            for e in r.index_entries.iter().filter(|e| !kept[i].contains(&e.digest)) {
                by_tag.entry(&e.tag).or_default().push(Folder::Link(e.digest));
            }
            entries.extend(by_tag.into_iter().map(|(tag, folders)| Batch {
                parent: Parent::TagIndex(&r.name, tag),
                repo: Some(i),
                what: What::IndexEntry,
                folders,
            }));
        }
        self.run(Stage::Manifests, entries)
    }

    /// What pushes wrote since the scan needs (with the revisions a deletion found written
    /// again, and what an earlier healing wrote back), marked again; then what this run
    /// deleted and that needs again is written back while its blob is there: revision and
    /// layer links, tags (an attachment tag whose subject a push tagged again, a tag pushed
    /// again between the listing and the deletion of its link). Until nothing more comes
    /// back. An error says the run stopped before the layer links and blobs.
    fn remark(&mut self) -> Result<remark::Rescued, RunError> {
        let stopped = |e: anyhow::Error| {
            RunError::new(
                ErrorKind::RemarkFailed,
                format!("{e:#}; stopped before the layer links and blobs: nothing a tag needs was deleted, run again"),
            )
        };
        for _ in 0..4 {
            let plan = self.plan;
            let mut extra: Vec<(String, Digest)> = self
                .tally
                .rewritten()
                .into_iter()
                .chain(self.tally.retagged())
                .map(|(i, d)| (plan.repos[i].name.clone(), d))
                .collect();
            extra.extend(self.healed.iter().cloned());
            let rescued = self.store.remark(self.since, &extra).map_err(stopped)?;
            if !self.heal(&rescued, &extra).map_err(stopped)? {
                return Ok(rescued);
            }
        }
        Err(RunError::new(
            ErrorKind::RemarkFailed,
            "pushes during the run keep needing what this run deleted; stopped before the blobs, run again",
        ))
    }

    /// Writes back what this run deleted and what pushes since the scan need (see
    /// [`Execution::remark`]); true when it wrote something or found more that must stay.
    fn heal(&mut self, rescued: &remark::Rescued, extra: &[(String, Digest)]) -> Result<bool> {
        let plan = self.plan;
        let mut changed = false;
        for (i, r) in plan.repos.iter().enumerate() {
            let roots = rescued.manifests.get(&r.name);
            let orphans: Vec<&(String, Digest)> = rescued.tags.get(&r.name).into_iter().flatten().collect();
            if roots.is_none() && orphans.is_empty() && !rescued.links.contains_key(&r.name) {
                continue;
            }
            let mut needed: DigestSet = roots.cloned().unwrap_or_default();
            let gone_tags: Vec<TagPlan> = r.tags.iter().filter(|t| t.action != Action::Keep).collect();
            let mut tags_back: Vec<(&str, Digest)> = Vec::new();
            // A tag the plan deleted, pushed again between the listing and the deletion of its
            // link: its history entry, written first, tells the digest.
            for (tag, d) in orphans {
                if gone_tags.iter().any(|t| t.name == tag) {
                    tags_back.push((tag, *d));
                    needed.insert(*d);
                }
            }
            if self.stages_done < Stage::Tags {
                tags_back.clear();
            }
            for (tag, d) in tags_back {
                changed |= self.relink(i, What::Tag, &Relink::Tag(&r.name, tag, d), Some(&d))?;
            }
            // An attachment tag whose subject is needed comes back, and then what it names is
            // needed too; but only onto a manifest still there whole (a blob round may have
            // deleted it or a blob of it: a tag onto it would not pull), and only where the tag
            // is not there again (signed anew since: what it named before is no need).
            let mut tried: Vec<&str> = Vec::new();
            loop {
                reach(&mut needed, &r.removed_edges);
                let mut more = false;
                for t in &gone_tags {
                    if let (Some(subject), Some(d)) = (policy::attachment_subject(t.name), t.digest)
                        && needed.contains(&subject)
                        && !tried.contains(&t.name)
                    {
                        tried.push(t.name);
                        let link = Relink::Tag(&r.name, t.name, d);
                        // Seen to by an earlier healing: what it wrote back is among the roots.
                        if self.stages_done < Stage::Tags
                            || self.ensured.contains(&LinkId::from(&link))
                            || !self.whole(&d)
                        {
                            continue;
                        }
                        if self.relink(i, What::Tag, &link, Some(&d))? {
                            changed = true;
                            more = needed.insert(d) || more;
                        }
                    }
                }
                if !more {
                    break;
                }
            }
            let removed: DigestSet = r.manifests.iter(&plan.store_blobs).collect();
            for d in needed.iter().filter(|d| removed.contains(d)) {
                if !extra.iter().any(|(n, h)| *n == r.name && h == d) {
                    self.healed.push((r.name.clone(), *d));
                    changed = true;
                }
                if self.stages_done >= Stage::Manifests {
                    changed |= self.relink(i, What::Manifest, &Relink::Revision(&r.name, *d), Some(d))?;
                }
            }
            if self.stages_done >= Stage::Links
                && let Some(links) = rescued.links.get(&r.name)
            {
                let planned: DigestSet = r.layer_links.iter(&plan.store_blobs).collect();
                for d in links.iter().filter(|d| planned.contains(d)) {
                    changed |= self.relink(i, What::LayerLink, &Relink::Layer(&r.name, *d), Some(d))?;
                }
            }
        }
        Ok(changed)
    }

    /// True when manifest `d` and what it references (blobs, children, recursively) are all
    /// still there: a tag written back onto it pulls.
    fn whole(&self, d: &Digest) -> bool {
        let mut seen = DigestSet::default();
        let mut todo = vec![*d];
        while let Some(d) = todo.pop() {
            if !seen.insert(d) {
                continue;
            }
            if !self.store.has_blob(&d) {
                return false;
            }
            match self.store.manifests([d].into_iter().collect()).remove(&d) {
                Some(Parsed::Ok(m)) => {
                    if !m.blobs.iter().all(|b| self.store.has_blob(b)) {
                        return false;
                    }
                    todo.extend(m.children.iter().copied());
                }
                _ => return false,
            }
        }
        true
    }

    /// Writes a link back (of repository `i` of the plan) where its blob is and no link is,
    /// counting it rescued; true when written. Each link is seen to once: none is deleted after
    /// its stage.
    fn relink(&mut self, i: usize, what: What, link: &Relink, blob: Option<&Digest>) -> Result<bool> {
        if !self.ensured.insert(LinkId::from(link)) || blob.is_some_and(|b| !self.store.has_blob(b)) {
            return Ok(false);
        }
        let written = self.store.relink(link)?;
        if written {
            self.tally.restored(i, what);
        }
        Ok(written)
    }

    /// The layer links, then the blobs in rounds, each after a re-mark of what pushes wrote
    /// since the scan; then the check that no push landed on a deleted blob.
    fn links_and_blobs(&mut self, freed_first: bool) -> bool {
        let plan = self.plan;
        let links_planned = plan.repos.iter().any(|r| !r.layer_links.is_empty() || !r.leftover_layer_links.is_empty());
        if !links_planned && plan.blobs.is_empty() && plan.leftover_blobs.is_empty() {
            // No sweep; but what the tags and manifests stages deleted may be needed again.
            let deleted =
                plan.repos.iter().any(|r| !r.manifests.is_empty() || r.tags.iter().any(|t| t.action != Action::Keep));
            if deleted && let Err(e) = self.remark() {
                self.errors.push(e);
                return false;
            }
            return true;
        }
        let rescued = match self.remark() {
            Ok(r) => r,
            Err(e) => {
                self.errors.push(e);
                return false;
            }
        };
        if !self.layer_links(&rescued) {
            return false;
        }
        self.stages_done = Stage::Links;
        let mut needed = rescued.blobs;
        needed.extend(self.tally.relinked());
        if !self.blob_rounds(needed, freed_first) {
            return false;
        }
        self.lost_to_pushes();
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
        self.run(Stage::Links, links)
    }

    /// The blobs, in rounds of prefix folders (16 on a file system), each after a re-mark: a push
    /// that needs a planned blob is missed only if it lands within one round. A failed blob holds up no
    /// other round; a signal stops them.
    fn blob_rounds(&mut self, mut needed: DigestSet, freed_first: bool) -> bool {
        let plan = self.plan;
        stop_point("blobs");
        let done_first = |i: u32| freed_first && plan.unreferenced.binary_search(&i).is_ok();
        let rounds = u32::from(self.store.blob_rounds().max(1));
        for round in 0..rounds {
            let wanted = |i: u32| u32::from(plan.blob(i).0[0]) * rounds / 256 == round && !done_first(i);
            if !plan.blobs.iter().chain(&plan.leftover_blobs).any(|i| wanted(*i)) {
                continue;
            }
            match self.remark() {
                Ok(r) => needed.extend(r.blobs),
                Err(e) => {
                    self.errors.push(e);
                    return false;
                }
            }
            let (blobs, kept) = blob_batches(plan, &wanted, &needed);
            self.tally.kept(What::Blob, kept);
            self.run(Stage::Blobs, blobs);
            if self.tally.stop_requested() || !self.errors.is_empty() {
                return false;
            }
        }
        true
    }

    /// A push that landed inside a round and needs a blob that round deleted: it cannot be
    /// undone, but it is named (the image must be pushed again). The links it needs are written
    /// back by the last re-mark, as after every other stage.
    fn lost_to_pushes(&mut self) {
        let plan = self.plan;
        let needed = match self.remark() {
            Ok(r) => r.blobs,
            Err(e) => return self.errors.push(e),
        };
        let deleted =
            |b: &Digest| plan.store_blobs.position(b).is_some_and(|i| plan.blobs.binary_search(&(i as u32)).is_ok());
        let mut lost: Vec<Digest> = needed.into_iter().filter(|b| deleted(b) && !self.store.has_blob(b)).collect();
        lost.sort();
        // One error per blob, named by its digest.
        self.errors.extend(lost.iter().map(|b| {
            RunError::at(
                ErrorKind::PushDuringRun,
                b.to_string(),
                format!("a push during the run needs a blob this run deleted ({b}): push that image again"),
            )
        }));
    }

    /// The uploads older than `--upload-age`.
    fn uploads(&mut self) -> bool {
        let batches = self.upload_batches();
        self.run(Stage::Uploads, batches)
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

/// Adds to `set` what its members reach over `edges` (from, to), recursively.
fn reach(set: &mut DigestSet, edges: &[(Digest, Digest)]) {
    loop {
        let more: Vec<Digest> =
            edges.iter().filter(|(from, to)| set.contains(from) && !set.contains(to)).map(|(_, to)| *to).collect();
        if more.is_empty() {
            return;
        }
        set.extend(more);
    }
}

/// Of `pending`, those no other pending manifest has an edge to (all of them in a cycle, where
/// no order helps), sorted.
fn wave(pending: &DigestSet, edges: &[(Digest, Digest)]) -> Vec<Digest> {
    let waiting: DigestSet =
        edges.iter().filter(|(from, to)| from != to && pending.contains(from)).map(|(_, to)| *to).collect();
    let mut w: Vec<Digest> = pending.iter().filter(|d| !waiting.contains(d)).copied().collect();
    if w.is_empty() {
        w = pending.iter().copied().collect();
    }
    w.sort();
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest([n; 32])
    }

    #[test]
    fn a_referrer_that_is_an_index_goes_after_its_subject_and_before_its_children() {
        // Subject 1, its referrer 2 (an index), 2's child 3; 4 stands alone.
        let edges = [(d(1), d(2)), (d(2), d(3))];
        let mut pending: DigestSet = [1, 2, 3, 4].map(d).into_iter().collect();
        let mut order = Vec::new();
        while !pending.is_empty() {
            let w = wave(&pending, &edges);
            pending.retain(|x| !w.contains(x));
            order.push(w);
        }
        assert_eq!(order, vec![vec![d(1), d(4)], vec![d(2)], vec![d(3)]]);
        // The subject left (tagged again): its referrer stays, and the referrer's child.
        let mut kept: DigestSet = [d(1)].into_iter().collect();
        reach(&mut kept, &edges);
        assert_eq!(kept, [1, 2, 3].map(d).into_iter().collect());
    }

    #[test]
    fn a_cycle_of_edges_goes_in_one_wave() {
        let edges = [(d(1), d(2)), (d(2), d(1))];
        let pending: DigestSet = [1, 2].map(d).into_iter().collect();
        assert_eq!(wave(&pending, &edges), vec![d(1), d(2)]);
    }
}
