//! Roots, edges, liveness and marking (docs/DESIGN.md section 3, steps 3 to 5): from an inventory and the
//! retention decisions to a [`Plan`] of every deletion. It deletes nothing; its only I/O is the
//! `stat` it is handed, for the grace period and sizes of deletion candidates.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use rayon::prelude::*;
use serde::Serialize;

use crate::core::in_use::{InUse, InUseSummary};
use crate::core::journal_rules;
use crate::core::policy::{Reason, SubjectRepo, Verdict, attachment_subject};
mod graph;
mod sweep;
pub mod tagless;

use graph::{Graph, Marks};

pub use crate::core::tags::{Action, Pushed, TagPlan, Tags};
use crate::model::blobs::{BlobList, Digests};
use crate::model::digest::{Digest, DigestMap, DigestSet};
use crate::model::inventory::{Inventory, Parsed, Repo};
use crate::model::journal::Journal;
use crate::model::manifest::refused_by_v3;
use crate::model::warning::{Warning, WarningKind};

/// How the collection behaves, whatever the retention.
#[derive(Clone, Debug)]
pub struct Options {
    /// Untagged manifests are not roots.
    pub delete_untagged: bool,
    /// Nothing younger than this is removed.
    pub grace: Duration,
    /// `--delete-untagged` runs on a store whose tags seem to live elsewhere ([`tagless`]),
    /// with a warning, instead of being refused.
    pub allow_tagless: bool,
    /// Uploads started longer ago than this are removed.
    pub upload_age: Duration,
    /// The time the plan is made for.
    pub now: SystemTime,
    /// Kept tags are listed in the plan one by one (for the report of `prune`), not only counted.
    pub list_kept_tags: bool,
    /// An attachment tag whose subject is a manifest of no repository of the store goes
    /// (`--delete-orphan-attachments`; the planner is given [`Holders`]).
    pub orphan_attachments: bool,
    /// The report says how many blob bytes the store holds after the run (a stat of every
    /// blob: for `--metrics-file`).
    pub bytes_left: bool,
    /// `--keep-in-use`: a manifest named by digest there is a root, tagged or not.
    pub in_use: Option<Arc<InUse>>,
    /// A collector that deletes every manifest no tag names runs after this plan (online's
    /// `--gc-delete-untagged`): a tag whose manifest only `--keep-in-use` keeps live stays
    /// instead of being untagged, and [`RepoPlan::in_use_untagged`] names the in-use manifests
    /// no kept tag reaches even so.
    pub untagged_collected: bool,
}

/// Which repository holds each manifest of the store (a revision folder), for
/// `--delete-orphan-attachments`: an attachment tag whose subject is in no repository goes.
#[derive(Debug, Default)]
pub struct Holders {
    names: Vec<String>,
    by_digest: DigestMap<u32>,
}

impl Holders {
    /// From each repository's name and the digests of its revision folders.
    pub fn new(repos: Vec<(String, Vec<Digest>)>) -> Holders {
        let mut h = Holders::default();
        for (i, (name, digests)) in (0u32..).zip(repos) {
            h.names.push(name);
            for d in digests {
                h.by_digest.entry(d).or_insert(i);
            }
        }
        h
    }

    /// The first repository (by name) holding manifest `d`.
    pub fn holder(&self, d: &Digest) -> Option<&str> {
        self.by_digest.get(d).map(|i| self.names[*i as usize].as_str())
    }
}

/// A `tags/<tag>/index/sha256/<hex>` entry of a kept tag, naming a removed manifest.
#[derive(Clone, Debug, Serialize)]
pub struct IndexEntry {
    pub tag: Box<str>,
    pub digest: Digest,
}

/// An upload to remove.
#[derive(Clone, Debug, Serialize)]
pub struct UploadPlan {
    pub id: String,
    pub size: u64,
}

/// Everything that happens to one repository.
#[derive(Clone, Debug, Default)]
pub struct RepoPlan {
    pub name: String,
    /// False when `--repo` / `--exclude-repo` leave it out: then nothing of it is touched.
    pub in_scope: bool,
    /// Every tag, or with [`Options::list_kept_tags`] off only those that go.
    pub tags: Tags,
    /// Kept tags not listed in `tags`.
    pub tags_kept: usize,
    /// Manifests whose revision folder goes (as indexes into [`Plan::store_blobs`] where they
    /// can be).
    pub manifests: Digests,
    pub index_entries: Vec<IndexEntry>,
    /// `_layers` links that go (as indexes into [`Plan::store_blobs`] where they can be).
    pub layer_links: Digests,
    pub uploads: Vec<UploadPlan>,
    /// Revision folders without their link (an interrupted write or deletion), older than the
    /// grace period: nothing to the registry, removed with the revisions.
    pub leftover_revisions: Vec<Digest>,
    /// `_layers` folders without their link, likewise.
    pub leftover_layer_links: Vec<Digest>,
    /// The edges among `manifests`, as (from, to): an index and a child it lists, a subject and
    /// a referrer (OCI `subject`). If `from` is tagged again during the run, `to` must stay
    /// too; so `to` goes only after `from` went.
    pub removed_edges: Vec<(Digest, Digest)>,
    /// Its manifests named by digest by `--keep-in-use`: roots, kept.
    pub in_use: Vec<Digest>,
    /// The `--keep-in-use` references its tags and revisions name
    /// ([`crate::core::in_use::InUse::found`]).
    pub in_use_found: Vec<usize>,
    /// With [`Options::untagged_collected`]: its manifests in use that no kept tag names, nor
    /// an index a kept tag names lists (the collector would delete them).
    pub in_use_untagged: Vec<Digest>,
}

/// What the grace period saved.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GraceKept {
    pub manifests: usize,
    pub layer_links: usize,
    pub blobs: usize,
}

impl Plan {
    /// The digest of a blob index of [`Plan::blobs`] or [`Plan::leftover_blobs`].
    pub fn blob(&self, i: u32) -> Digest {
        self.store_blobs.get(i as usize)
    }
}

/// Every deletion of a run, decided before the first one happens.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub repos: Vec<RepoPlan>,
    /// Blobs to remove, as indexes into `store_blobs` (4 bytes each rather than 32).
    pub blobs: Vec<u32>,
    /// Their size.
    pub blob_bytes: u64,
    /// Blob folders without their data, older than the grace period (indexes likewise).
    pub leftover_blobs: Vec<u32>,
    /// Of `blobs`, those no manifest of the store references at all, sorted: their deletion
    /// needs no journal (what a plain `gc` frees whatever the policy), so on a full disk they
    /// go first, to make room for it.
    pub unreferenced: Vec<u32>,
    /// Every blob folder of the store.
    pub store_blobs: BlobList,
    pub grace_kept: GraceKept,
    pub warnings: Vec<Warning>,
    /// The journal of an interrupted run this one finishes: written again, with this run's
    /// deleted tags, before the first deletion.
    pub journal: Journal,
    /// The store's tags seem to live elsewhere: what `--delete-untagged` refuses
    /// ([`tagless::guard`]).
    pub tagless: Option<tagless::Tagless>,
    /// With `--keep-in-use`: what it read and named ([`Plan::note_in_use`]).
    pub in_use: Option<InUseSummary>,
}

impl Plan {
    /// With `--keep-in-use`: a warning for each reference no repository named (and `also`,
    /// references looked for elsewhere, named all the same), and the summary.
    pub fn note_in_use(&mut self, in_use: &InUse, also: Vec<usize>) {
        let found = self.repos.iter().flat_map(|r| r.in_use_found.iter().copied()).chain(also);
        let (mut warnings, summary) = in_use.finish(found);
        self.warnings.append(&mut warnings);
        self.in_use = Some(summary);
    }
}

/// One thing of a store the plan asks the size or age of, named by repository and digest, not
/// by path: each backend knows where it keeps it.
#[derive(Clone, Copy, Debug)]
pub enum Object<'a> {
    /// A blob's content (`blobs/sha256/<xx>/<hex>/data`).
    BlobData(Digest),
    /// A blob's folder, whatever it holds.
    BlobFolder(Digest),
    /// A repository's `_layers` link to a blob.
    LayerLink(&'a str, Digest),
    /// The folder of that link.
    LayerFolder(&'a str, Digest),
    /// A repository's revision folder of a manifest.
    RevisionFolder(&'a str, Digest),
}

/// What the plan reads of a store beyond the inventory: only for deletion candidates and kept
/// tags. Both backends (a folder, a bucket) implement it; online mode, which deletes through the
/// API, has [`NoStore`] (and `du --url` the sizes the API gives).
pub trait StoreView: Sync {
    /// The size and mtime of an object, `None` when it does not exist.
    fn stat(&self, object: Object) -> Result<Option<(u64, SystemTime)>>;
    /// The digests of a tag's history (`tags/<tag>/index/sha256/`).
    fn tag_index(&self, repo: &str, tag: &str) -> Result<Vec<Digest>>;
}

/// A store with nothing to ask: every candidate is absent, no tag has history.
pub struct NoStore;

impl StoreView for NoStore {
    fn stat(&self, _: Object) -> Result<Option<(u64, SystemTime)>> {
        Ok(None)
    }

    fn tag_index(&self, _: &str, _: &str) -> Result<Vec<Digest>> {
        Ok(Vec::new())
    }
}

/// What planning one repository gives; [`Planner::finish`] turns them into the [`Plan`].
pub struct RepoDraft {
    plan: RepoPlan,
    /// Layer links nothing live needs, before the grace period's check.
    layer_candidates: Vec<Digest>,
    young_manifests: usize,
    grace_kept_links: usize,
    warnings: Vec<Warning>,
    errors: Vec<String>,
    tagless: tagless::Facts,
}

impl RepoDraft {
    /// Notes each listed tag's last pull (`--pulls`): `pulled` is aligned with `tags`, the
    /// repository's tags as scanned.
    pub fn note_pulls(&mut self, tags: &[crate::model::inventory::Tag], pulled: &[Option<SystemTime>]) {
        self.plan.note_pulls(tags, pulled);
    }
}

impl RepoPlan {
    /// Notes each listed tag's last pull (`--pulls`), by name: `pulled` is aligned with `tags`.
    pub fn note_pulls(&mut self, tags: &[crate::model::inventory::Tag], pulled: &[Option<SystemTime>]) {
        let by_name: std::collections::HashMap<&str, Pushed> =
            tags.iter().zip(pulled).filter_map(|(t, p)| Some((t.name.as_str(), Pushed::new((*p)?)?))).collect();
        self.tags.set_pulled(|name| by_name.get(name).copied());
    }
}

/// Plans a run one repository at a time, in any order and in parallel, marking the blobs each
/// needs; then sweeps the unmarked ones. Only the repository being planned is in memory.
pub struct Planner<'a> {
    opts: &'a Options,
    /// The store being planned (a folder or a bucket): its objects' times, its tags' histories.
    store: &'a dyn StoreView,
    journal: Option<&'a Journal>,
    marks: Marks,
    holders: Option<&'a Holders>,
}

impl<'a> Planner<'a> {
    /// Every blob folder of the store, as the planner was given it.
    pub fn blobs(&self) -> &BlobList {
        &self.marks.blobs
    }

    /// `blobs` is every blob folder of the store.
    pub fn new(
        blobs: BlobList,
        journal: Option<&'a Journal>,
        opts: &'a Options,
        store: &'a dyn StoreView,
    ) -> Planner<'a> {
        Planner { opts, store, journal, marks: Marks::new(blobs), holders: None }
    }

    /// With `--delete-orphan-attachments`: where every manifest of the store is.
    pub fn with_holders(self, holders: Option<&'a Holders>) -> Planner<'a> {
        Planner { holders, ..self }
    }

    fn young(&self, t: SystemTime) -> bool {
        self.opts.now.duration_since(t).unwrap_or_default() < self.opts.grace
    }

    /// True when the object exists and is older than the grace period.
    fn old(&self, object: Object) -> Result<bool> {
        Ok(self.store.stat(object)?.is_some_and(|(_, t)| !self.young(t)))
    }

    /// Plans one repository: `manifests` holds (at least) those its revisions and its journaled
    /// tags name; `decisions` is aligned with its tags.
    pub fn repo(&self, repo: &Repo, manifests: &DigestMap<Parsed>, decisions: &[Verdict], in_scope: bool) -> RepoDraft {
        let mut draft = self.draft(repo, manifests, decisions, in_scope);
        if in_scope && let Err(e) = self.leftovers_and_links(repo, &mut draft) {
            draft.errors.push(format!("{e:#}"));
        }
        draft
    }

    /// Plans one repository, as the algorithm reads: settle the attachment tags whose subject
    /// lives elsewhere; find what is live (attachments following live subjects); count what the
    /// grace period kept; give every tag its action; mark what the live manifests need and what
    /// any manifest references; list the removed manifests, the kept tags' history entries
    /// naming them, and the candidates (layer links, uploads) the sweep will check.
    fn draft(&self, repo: &Repo, manifests: &DigestMap<Parsed>, decisions: &[Verdict], in_scope: bool) -> RepoDraft {
        let cx = RepoCx::new(self, repo, manifests, in_scope);
        let mut verdicts = decisions.to_vec();
        self.judge_attachments_elsewhere(&cx, &mut verdicts);
        let live = cx.live_with_attachments(&mut verdicts);
        cx.judge_attachments_of_removed(&live, &mut verdicts);
        let young_manifests =
            if cx.young_revs.is_empty() { 0 } else { live.len() - cx.liveness(&verdicts, false).len() };
        let mut plan = RepoPlan { name: repo.name.clone(), in_scope, in_use: cx.in_use.clone(), ..RepoPlan::default() };
        plan.in_use_found = self.opts.in_use.as_ref().map(|u| u.found(repo)).unwrap_or_default();
        if self.opts.untagged_collected {
            plan.in_use_untagged = cx.keep_tags_of_in_use(&live, &mut verdicts);
        }
        let mut warnings = Vec::new();
        let mut errors = Vec::new();
        plan.tags = cx.tag_actions(verdicts, &live, &mut warnings, &mut errors);
        let needed_layers = self.mark_live(&cx, &live, &mut errors);
        self.mark_referenced(&cx, &live);
        let removed = |d: &Digest| cx.g.revs.contains_key(d) && !live.contains(d);
        for r in repo.revisions.iter().filter(|r| !live.contains(&r.digest)) {
            plan.manifests.push(&self.marks.blobs, r.digest);
            let Some(m) = cx.g.manifest(&r.digest) else { continue };
            plan.removed_edges.extend(m.children.iter().filter(|c| removed(c)).map(|c| (r.digest, *c)));
            if let Some(subject) = m.subject.filter(removed) {
                plan.removed_edges.push((subject, r.digest));
            }
        }
        self.kept_history(&cx, &live, &mut plan, &mut errors);
        let layer_candidates = if in_scope { self.candidates(&cx, &needed_layers, &mut plan) } else { Vec::new() };
        plan.tags_kept = repo.tags_not_read;
        if !self.opts.list_kept_tags {
            plan.tags_kept += plan.tags.count(Action::Keep);
            plan.tags = plan.tags.without(Action::Keep);
        }
        // Drafts outlive their repository's scan: no spare capacity (a thousand repositories of
        // a few kilobytes each add up).
        plan.tags.shrink_to_fit();
        plan.manifests.shrink_to_fit();
        let tagless = self.tagless_facts(&cx);
        RepoDraft { plan, layer_candidates, young_manifests, grace_kept_links: 0, warnings, errors, tagless }
    }

    /// Attachment tags not decided by policy follow their subject; one outside this repository
    /// is not ours to judge, unless asked to look for it in the whole store (cosign's
    /// COSIGN_REPOSITORY) and it is nowhere.
    fn judge_attachments_elsewhere(&self, cx: &RepoCx, verdicts: &mut [Verdict]) {
        for (t, v) in cx.repo.tags.iter().zip(verdicts.iter_mut()) {
            if *v == Verdict::Undecided
                && let Some(subject) = attachment_subject(&t.name).filter(|s| !cx.g.revs.contains_key(s))
            {
                *v = match self.holders.map(|h| h.holder(&subject)) {
                    None => Verdict::Keep(Reason::SubjectElsewhere { subject: subject.into() }),
                    Some(Some(repo)) => {
                        Verdict::Keep(Reason::SubjectInRepo(Box::new(SubjectRepo { subject, repo: repo.into() })))
                    }
                    Some(None) if self.young(t.pushed) => Verdict::Keep(Reason::Grace),
                    Some(None) => Verdict::Delete(Reason::SubjectMissing { subject: subject.into() }),
                };
            }
        }
    }

    /// Marks every blob a live manifest needs; returns the digests this repository's layer
    /// links must still serve. A live manifest that cannot be parsed is an error.
    fn mark_live(&self, cx: &RepoCx, live: &DigestSet, errors: &mut Vec<String>) -> DigestSet {
        let marks = &self.marks;
        let mut needed_layers = DigestSet::default();
        for d in live {
            marks.mark(d);
            let Some(target) = cx.g.revs.get(d) else {
                continue;
            };
            marks.mark(target);
            needed_layers.insert(*d);
            needed_layers.insert(*target);
            match cx.g.parsed(d) {
                Some(Parsed::Ok(m)) => {
                    m.blobs.iter().chain(&m.children).for_each(|b| marks.mark(b));
                    needed_layers.extend(m.blobs.iter().copied());
                }
                Some(Parsed::Broken(e)) => errors.push(format!("{}: a manifest that must be kept: {e}", cx.repo.name)),
                _ => {}
            }
        }
        needed_layers
    }

    /// Marks every blob a manifest of the repository that is not live references (the live
    /// ones set both bits): what is left unreferenced needs no journal to go (a full disk frees
    /// it first).
    fn mark_referenced(&self, cx: &RepoCx, live: &DigestSet) {
        for r in cx.repo.revisions.iter().filter(|r| !live.contains(&r.digest)) {
            let m = cx.g.manifest(&r.digest);
            let needs = [r.digest, r.target]
                .into_iter()
                .chain(m.into_iter().flat_map(|m| m.blobs.iter().chain(&m.children).copied()));
            needs.for_each(|b| self.marks.reference(&b));
        }
    }

    /// A kept tag's history entries for manifests that are gone or going (a crash between the
    /// two can leave the first kind, hence the journal's repositories too; and, with
    /// `delete_untagged`, every repository: a run that deletes untagged manifests and no tag
    /// writes no journal, so its rerun cannot tell where it stopped). Listed only here.
    fn kept_history(&self, cx: &RepoCx, live: &DigestSet, plan: &mut RepoPlan, errors: &mut Vec<String>) {
        let nothing_going = plan.manifests.is_empty() && cx.journaled.is_empty() && !self.opts.delete_untagged;
        if !cx.in_scope || nothing_going {
            return;
        }
        for tp in plan.tags.iter().filter(|t| t.action == Action::Keep) {
            match self.store.tag_index(&cx.repo.name, tp.name) {
                Ok(index) => plan.index_entries.extend(
                    index
                        .into_iter()
                        .filter(|d| !live.contains(d))
                        .map(|digest| IndexEntry { tag: tp.name.into(), digest }),
                ),
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
    }

    /// The uploads to remove, and the layer links nothing live needs (the sweep checks their
    /// age).
    fn candidates(&self, cx: &RepoCx, needed_layers: &DigestSet, plan: &mut RepoPlan) -> Vec<Digest> {
        let opts = self.opts;
        plan.uploads = cx
            .repo
            .uploads
            .iter()
            .filter(|u| u.started.is_some_and(|s| opts.now.duration_since(s).unwrap_or_default() > opts.upload_age))
            .map(|u| UploadPlan { id: u.id.clone(), size: u.size })
            .collect();
        cx.repo.layers.iter().copied().filter(|d| !needed_layers.contains(d)).collect()
    }
}

/// One repository being planned: what every phase of [`Planner::draft`] reads.
struct RepoCx<'a> {
    repo: &'a Repo,
    g: Graph<'a>,
    opts: &'a Options,
    in_scope: bool,
    /// The digests of this repository's tags an interrupted run was deleting.
    journaled: BTreeSet<Digest>,
    tagged: DigestSet,
    /// Revisions younger than the grace period: roots.
    young_revs: Vec<Digest>,
    /// Revisions named by digest by `--keep-in-use`: roots (sorted).
    in_use: Vec<Digest>,
}

impl<'a> RepoCx<'a> {
    fn new(planner: &Planner<'a>, repo: &'a Repo, manifests: &'a DigestMap<Parsed>, in_scope: bool) -> RepoCx<'a> {
        RepoCx {
            repo,
            g: Graph::new(manifests, repo),
            opts: planner.opts,
            in_scope,
            journaled: planner
                .journal
                .map(|j| {
                    let mut digests = j.digests(&repo.name);
                    for d in journal_rules::pushed_again(repo, j) {
                        digests.remove(&d);
                    }
                    digests
                })
                .unwrap_or_default(),
            tagged: repo.tags.iter().filter_map(|t| t.current).collect(),
            young_revs: repo.revisions.iter().filter(|r| planner.young(r.modified)).map(|r| r.digest).collect(),
            in_use: {
                let revs: DigestSet = repo.revisions.iter().map(|r| r.digest).collect();
                let mut d: Vec<Digest> = planner
                    .opts
                    .in_use
                    .iter()
                    .flat_map(|u| u.digests(&repo.name))
                    .filter(|d| revs.contains(d))
                    .collect();
                d.sort();
                d
            },
        }
    }

    /// The live manifests for these verdicts (docs/DESIGN.md section 3, steps 3 and 4), with or
    /// without the grace period's roots.
    fn liveness(&self, verdicts: &[Verdict], with_young: bool) -> DigestSet {
        let (repo, g) = (self.repo, &self.g);
        let kept = repo.tags.iter().zip(verdicts).filter(|(_, v)| v.is_keep()).filter_map(|(t, _)| t.current);
        let deleted = repo.tags.iter().zip(verdicts).filter(|(_, v)| !v.is_keep()).filter_map(|(t, _)| t.current);
        let cascade = g.closure(deleted.chain(self.journaled.iter().copied()));
        let mut roots: Vec<Digest> = kept.chain(self.in_use.iter().copied()).collect();
        if with_young {
            roots.extend(self.young_revs.iter().copied());
        }
        if !self.in_scope {
            roots.extend(g.revs.keys().copied());
        } else if !self.opts.delete_untagged {
            roots.extend(
                repo.revisions.iter().map(|r| r.digest).filter(|d| !self.tagged.contains(d) && !cascade.contains(d)),
            );
        }
        g.closure(roots)
    }

    /// With a collector after the run that deletes every manifest no tag names (online's
    /// `--gc-delete-untagged`, which knows nothing of `--keep-in-use`): a tag going whose
    /// manifest is in use (or reached from one in use) and that no kept tag reaches stays, as
    /// in use; an untag would hand the manifest to that collector. Returns the in-use manifests
    /// no kept tag reaches even then (untagged already, or the child of an index that goes).
    /// Reached means named, or listed by a named index: that collector deletes referrers.
    fn keep_tags_of_in_use(&self, live: &DigestSet, verdicts: &mut [Verdict]) -> Vec<Digest> {
        if self.in_use.is_empty() {
            return Vec::new();
        }
        let in_use = self.g.closure(self.in_use.iter().copied());
        let by_tags = self.named_by_kept_tags(verdicts);
        for (t, v) in self.repo.tags.iter().zip(verdicts.iter_mut()) {
            if matches!(v, Verdict::Delete(_))
                && let Some(c) = t.current
                && live.contains(&c)
                && in_use.contains(&c)
                && !by_tags.contains(&c)
            {
                *v = Verdict::Keep(Reason::InUse);
            }
        }
        let by_tags = self.named_by_kept_tags(verdicts);
        self.in_use.iter().copied().filter(|d| !by_tags.contains(d)).collect()
    }

    /// The manifests kept tags name, with the children of those that are indexes.
    fn named_by_kept_tags(&self, verdicts: &[Verdict]) -> DigestSet {
        let mut seen = DigestSet::default();
        let mut todo: Vec<Digest> =
            self.repo.tags.iter().zip(verdicts).filter(|(_, v)| v.is_keep()).filter_map(|(t, _)| t.current).collect();
        while let Some(d) = todo.pop() {
            if seen.insert(d)
                && let Some(m) = self.g.manifest(&d)
            {
                todo.extend(m.children.iter().copied());
            }
        }
        seen
    }

    /// What is live once attachment tags whose subject is live stay (their manifests may make
    /// more subjects live).
    fn live_with_attachments(&self, verdicts: &mut [Verdict]) -> DigestSet {
        loop {
            let live = self.liveness(verdicts, true);
            let mut changed = false;
            for (t, v) in self.repo.tags.iter().zip(verdicts.iter_mut()) {
                if *v == Verdict::Undecided
                    && let Some(s) = attachment_subject(&t.name).filter(|s| live.contains(s))
                {
                    *v = Verdict::Keep(Reason::SubjectKept { subject: s.into() });
                    changed = true;
                }
            }
            if !changed {
                return live;
            }
        }
    }

    /// Attachment tags whose subject is a manifest of this repository that is not live: they go
    /// with it. Said here, by this rule, so that what no rule decided stays undecided.
    fn judge_attachments_of_removed(&self, live: &DigestSet, verdicts: &mut [Verdict]) {
        for (t, v) in self.repo.tags.iter().zip(verdicts.iter_mut()) {
            if *v == Verdict::Undecided
                && let Some(subject) =
                    attachment_subject(&t.name).filter(|s| self.g.revs.contains_key(s) && !live.contains(s))
            {
                *v = Verdict::Delete(Reason::SubjectGone { subject: subject.into() });
            }
        }
    }

    /// Every tag's action: kept, untagged (its manifest stays live) or deleted; warnings for
    /// kept tags that cannot be pulled. A tag still [`Verdict::Undecided`] (attachment or not)
    /// is an error, which stops the run before any deletion: never a deletion by default.
    fn tag_actions(
        &self,
        verdicts: Vec<Verdict>,
        live: &DigestSet,
        warnings: &mut Vec<Warning>,
        errors: &mut Vec<String>,
    ) -> Tags {
        let (repo, g) = (self.repo, &self.g);
        let mut tags = Tags::with_capacity(repo.tags.len());
        let mut not_on_v3: Vec<&str> = Vec::new();
        for (t, v) in repo.tags.iter().zip(verdicts) {
            let (keep, reason) = match v {
                Verdict::Keep(r) => (true, r),
                Verdict::Delete(r) => (false, r),
                // Nothing decided it: never a deletion by default. The run stops before any.
                Verdict::Undecided => {
                    errors.push(format!(
                        "{}:{}: no rule decided this tag (a bug): nothing is deleted",
                        repo.name, t.name
                    ));
                    (true, Reason::NoKey)
                }
            };
            let action = match (keep, t.current) {
                (true, _) => Action::Keep,
                (false, Some(c)) if live.contains(&c) => Action::Untag,
                (false, _) => Action::Delete,
            };
            if keep && let Some(c) = t.current {
                match g.parsed(&c) {
                    Some(Parsed::Missing) => warnings.push(
                        Warning::new(
                            WarningKind::ManifestMissing,
                            format!("{}:{}: its manifest {c} has no blob: it cannot be pulled", repo.name, t.name),
                        )
                        .about(&repo.name),
                    ),
                    None if !g.revs.contains_key(&c) => warnings.push(
                        Warning::new(
                            WarningKind::ForeignManifest,
                            format!("{}:{}: points to {c}, which is no manifest of this repository", repo.name, t.name),
                        )
                        .about(&repo.name),
                    ),
                    _ if refused_by_v3(&c, |d| g.manifest(d)).is_some() => not_on_v3.push(&t.name),
                    _ => {}
                }
            }
            tags.push_at(&t.name, t.current, Pushed::new(t.pushed), action, reason);
        }
        if let Some(w) = v3_unservable(&repo.name, &not_on_v3) {
            warnings.push(w);
        }
        tags.link_shared();
        tags
    }
}

/// One warning for a repository's kept tags that registry 3.x will not serve (Docker schema 1,
/// or an index reaching one: `manifest::refused_by_v3`), naming the first few.
fn v3_unservable(repo: &str, tags: &[&str]) -> Option<Warning> {
    const NAMED: usize = 5;
    if tags.is_empty() {
        return None;
    }
    let more = tags.len().saturating_sub(NAMED);
    let mut names = tags.iter().take(NAMED).map(|t| format!("{repo}:{t}")).collect::<Vec<_>>().join(", ");
    if more > 0 {
        names.push_str(&format!(" and {more} more"));
    }
    let (n, it) = if tags.len() == 1 { ("tag", "it") } else { ("tags", "them") };
    Some(
        Warning::new(
            WarningKind::V3Unservable,
            format!(
                "{repo}: {} kept {n} registry 3.x will not serve (Docker schema 1; 2.8 serves {it}): {names}; \
             re-push {it} as schema 2 / OCI, or delete {it}, before moving to registry:3",
                tags.len()
            ),
        )
        .about(repo),
    )
}

/// Plans a run on an inventory read whole. `decisions` is aligned with `inv.repos` and their
/// tags; `in_scope` says which repositories the run may touch beyond the blob sweep.
pub fn build(
    inv: &Inventory,
    decisions: &[Vec<Verdict>],
    in_scope: &(dyn Fn(&str) -> bool + Sync),
    opts: &Options,
    store: &dyn StoreView,
) -> Result<Plan> {
    let planner = Planner::new(BlobList::new(inv.blobs.iter().copied()), inv.journal.as_ref(), opts, store);
    let drafts = inv
        .repos
        .par_iter()
        .zip(decisions.par_iter())
        .map(|(r, d)| planner.repo(r, &inv.manifests, d, in_scope(&r.name)))
        .collect();
    planner.finish(drafts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::inventory::{Revision, Tag};
    use crate::model::manifest::{Kind, Manifest};

    const DAY: Duration = Duration::from_secs(86_400);

    /// Every file is old, but those whose path contains one of the strings given; no tag has
    /// history.
    struct FakeStore(Vec<Digest>);

    impl StoreView for FakeStore {
        fn stat(&self, object: Object) -> Result<Option<(u64, SystemTime)>> {
            let d = match object {
                Object::BlobData(d) | Object::BlobFolder(d) => d,
                Object::LayerLink(_, d) | Object::LayerFolder(_, d) | Object::RevisionFolder(_, d) => d,
            };
            Ok(Some((10, if self.0.contains(&d) { now() } else { old() })))
        }

        fn tag_index(&self, _: &str, _: &str) -> Result<Vec<Digest>> {
            Ok(vec![])
        }
    }

    fn d(n: u8) -> Digest {
        Digest([n; 32])
    }

    fn old() -> SystemTime {
        SystemTime::UNIX_EPOCH + 1000 * DAY
    }

    fn now() -> SystemTime {
        old() + 100 * DAY
    }

    fn image(blobs: &[u8], subject: Option<u8>) -> Parsed {
        Parsed::Ok(Manifest {
            kind: Kind::OciManifest,
            config: blobs.first().map(|b| d(*b)),
            blobs: blobs.iter().map(|b| d(*b)).collect(),
            children: Box::new([]),
            subject: subject.map(d),
            created: None,
        })
    }

    fn index(children: &[u8]) -> Parsed {
        Parsed::Ok(Manifest {
            kind: Kind::OciIndex,
            config: None,
            blobs: Box::new([]),
            children: children.iter().map(|c| d(*c)).collect(),
            subject: None,
            created: None,
        })
    }

    /// A store: (repo, tags (name, digest), revisions) and the manifests; blobs 1..=250 exist.
    struct Store {
        inv: Inventory,
        /// Objects of these digests are young.
        young: Vec<Digest>,
    }

    impl Store {
        fn new(manifests: Vec<(u8, Parsed)>) -> Store {
            let inv = Inventory {
                manifests: manifests.into_iter().map(|(n, p)| (d(n), p)).collect(),
                blobs: (1..=250).map(d).collect(),
                ..Inventory::default()
            };
            Store { inv, young: Vec::new() }
        }

        fn repo(mut self, name: &str, tags: &[(&str, u8)], revisions: &[u8]) -> Store {
            let tags =
                tags.iter().map(|(t, m)| Tag { name: t.to_string(), current: Some(d(*m)), pushed: old() }).collect();
            let revisions =
                revisions.iter().map(|r| Revision { digest: d(*r), target: d(*r), modified: old() }).collect();
            self.inv.repos.push(Repo { name: name.into(), tags, revisions, ..Repo::default() });
            self
        }

        /// Plans with `keep` naming the tags kept by policy in every repository.
        fn plan(&self, keep: &[&str], delete_untagged: bool) -> Result<Plan> {
            let decisions: Vec<Vec<Verdict>> = self
                .inv
                .repos
                .iter()
                .map(|r| {
                    r.tags
                        .iter()
                        .map(|t| {
                            if attachment_subject(&t.name).is_some() {
                                Verdict::Undecided
                            } else if keep.contains(&t.name.as_str()) {
                                Verdict::Keep(Reason::Count { rank: 1 })
                            } else {
                                Verdict::Delete(Reason::BeyondCount { rank: 2 })
                            }
                        })
                        .collect()
                })
                .collect();
            build(&self.inv, &decisions, &|_| true, &options(delete_untagged), &FakeStore(self.young.clone()))
        }
    }

    /// The tests' options: an hour's grace, uploads a week, kept tags listed.
    fn options(delete_untagged: bool) -> Options {
        Options {
            delete_untagged,
            grace: Duration::from_secs(3600),
            allow_tagless: false,
            upload_age: 7 * DAY,
            now: now(),
            list_kept_tags: true,
            orphan_attachments: false,
            bytes_left: false,
            in_use: None,
            untagged_collected: false,
        }
    }

    fn removed(plan: &Plan, repo: &str) -> Vec<Digest> {
        let mut m: Vec<Digest> =
            plan.repos.iter().find(|r| r.name == repo).unwrap().manifests.iter(&plan.store_blobs).collect();
        m.sort();
        m
    }

    fn actions(plan: &Plan, repo: &str) -> Vec<(String, Action)> {
        plan.repos
            .iter()
            .find(|r| r.name == repo)
            .unwrap()
            .tags
            .iter()
            .map(|t| (t.name.to_string(), t.action))
            .collect()
    }

    fn blobs(plan: &Plan) -> Vec<Digest> {
        plan.blobs.iter().map(|i| plan.blob(*i)).collect()
    }

    #[test]
    fn shared_digest_tag_is_untagged_and_its_manifest_kept() {
        let s = Store::new(vec![(10, image(&[100, 101], None)), (11, image(&[102], None))]).repo(
            "r",
            &[("latest", 10), ("v2", 10), ("v1", 11)],
            &[10, 11],
        );
        let p = s.plan(&["latest"], false).unwrap();
        assert_eq!(
            actions(&p, "r"),
            [("latest".into(), Action::Keep), ("v2".into(), Action::Untag), ("v1".into(), Action::Delete)]
        );
        assert_eq!(removed(&p, "r"), [d(11)]);
        assert_eq!(p.repos[0].tags.get(1).shared_with, Some("latest"));
        assert!(!blobs(&p).contains(&d(100)) && blobs(&p).contains(&d(102)));
        let journaled: Vec<_> = p.repos[0].tags.iter().filter(|t| t.action != Action::Keep).map(|t| t.name).collect();
        assert_eq!(journaled, ["v2", "v1"], "both go into the journal");
    }

    #[test]
    fn children_go_with_their_index_unless_a_kept_index_lists_them() {
        let s = Store::new(vec![
            (20, index(&[21, 22])),
            (30, index(&[22, 23])),
            (21, image(&[110], None)),
            (22, image(&[111], None)),
            (23, image(&[112], None)),
        ])
        .repo("r", &[("new", 30), ("old", 20)], &[20, 21, 22, 23, 30]);
        let p = s.plan(&["new"], false).unwrap();
        assert_eq!(removed(&p, "r"), [d(20), d(21)]);
        assert!(blobs(&p).contains(&d(110)) && !blobs(&p).contains(&d(111)) && !blobs(&p).contains(&d(112)));
    }

    #[test]
    fn referrers_live_and_die_with_their_subject() {
        let s = Store::new(vec![
            (10, image(&[100], None)),
            (11, image(&[101], None)),
            (40, image(&[120], Some(10))),
            (41, image(&[121], Some(11))),
            (42, image(&[122], Some(41))),
        ])
        .repo("r", &[("keep", 10), ("drop", 11)], &[10, 11, 40, 41, 42]);
        for delete_untagged in [false, true] {
            let p = s.plan(&["keep"], delete_untagged).unwrap();
            assert_eq!(removed(&p, "r"), [d(11), d(41), d(42)], "a referrer of a referrer goes too");
        }
    }

    #[test]
    fn untagged_manifests_stay_unless_delete_untagged() {
        let s = Store::new(vec![
            (10, image(&[100], None)),
            (50, image(&[130], None)),
            (20, index(&[21])),
            (21, image(&[131], None)),
        ])
        .repo("r", &[("t", 10), ("multi", 20)], &[10, 50, 20, 21]);
        assert_eq!(removed(&s.plan(&["t", "multi"], false).unwrap(), "r"), []);
        // The untagged child of a tagged index stays even so (distribution#3178).
        assert_eq!(removed(&s.plan(&["t", "multi"], true).unwrap(), "r"), [d(50)]);
    }

    #[test]
    fn a_digest_in_use_is_a_root_tagged_or_not_with_its_children_and_referrers() {
        use crate::core::in_use::{InUse, read};
        // r: `old` (index 20 over 21, 22) and `drop` (11, with a referrer 40) go by policy; 50 is
        // untagged; 12 is kept by `keep`.
        let s = Store::new(vec![
            (20, index(&[21, 22])),
            (21, image(&[110], None)),
            (22, image(&[111], None)),
            (11, image(&[101], None)),
            (40, image(&[120], Some(11))),
            (50, image(&[130], None)),
            (12, image(&[102], None)),
        ])
        .repo("r", &[("keep", 12), ("old", 20), ("drop", 11)], &[20, 21, 22, 11, 40, 50, 12]);
        let without = s.plan(&["keep"], true).unwrap();
        assert_eq!(removed(&without, "r"), [d(11), d(20), d(21), d(22), d(40), d(50)]);
        let list = format!("r@{}\nr@{}\nr@{}\n", d(20), d(11), d(50));
        let u = InUse::new(vec![("list".into(), read(&list, "list").unwrap())], &[]).unwrap();
        let opts = Options { in_use: Some(Arc::new(u)), ..options(true) };
        let decisions: Vec<Verdict> = ["keep", "old", "drop"]
            .iter()
            .map(|t| {
                if *t == "keep" {
                    Verdict::Keep(Reason::Count { rank: 1 })
                } else {
                    Verdict::Delete(Reason::BeyondCount { rank: 2 })
                }
            })
            .collect();
        let p = build(&s.inv, &[decisions], &|_| true, &opts, &FakeStore(vec![])).unwrap();
        assert_eq!(removed(&p, "r"), [], "the index's children and the subject's referrer stay with them");
        assert_eq!(actions(&p, "r")[1], ("old".into(), Action::Untag));
        assert_eq!(p.repos[0].in_use, [d(11), d(20), d(50)]);
        assert!(!blobs(&p).contains(&d(110)) && !blobs(&p).contains(&d(120)) && !blobs(&p).contains(&d(130)));
    }

    /// Review finding 1: with a collector after the run that deletes what no tag names
    /// (online's `--gc-delete-untagged`), a tag going whose manifest only `--keep-in-use` keeps
    /// stays; the in-use manifests no kept tag reaches even then are listed (the untagged one,
    /// the child of an index that goes), not those a kept index lists.
    #[test]
    fn with_a_collector_of_untagged_manifests_tags_of_what_is_in_use_stay() {
        use crate::core::in_use::{InUse, read};
        // `old` (index 20 over 21, 22) goes and 22 is in use; `kept` (index 30 over 31) stays and
        // 31 is in use; `drop` (11) goes and is in use; 50 is in use and untagged.
        let s = Store::new(vec![
            (20, index(&[21, 22])),
            (21, image(&[110], None)),
            (22, image(&[111], None)),
            (30, index(&[31])),
            (31, image(&[112], None)),
            (11, image(&[101], None)),
            (50, image(&[130], None)),
        ])
        .repo("r", &[("kept", 30), ("old", 20), ("drop", 11)], &[20, 21, 22, 30, 31, 11, 50]);
        let list = format!("r@{}\nr@{}\nr@{}\nr@{}\n", d(22), d(31), d(11), d(50));
        let u = Arc::new(InUse::new(vec![("list".into(), read(&list, "list").unwrap())], &[]).unwrap());
        let decisions: Vec<Verdict> = ["kept", "old", "drop"]
            .iter()
            .map(|t| {
                if *t == "kept" {
                    Verdict::Keep(Reason::Count { rank: 1 })
                } else {
                    Verdict::Delete(Reason::BeyondCount { rank: 2 })
                }
            })
            .collect();
        for collected in [false, true] {
            let opts = Options { in_use: Some(u.clone()), untagged_collected: collected, ..options(false) };
            let p = build(&s.inv, std::slice::from_ref(&decisions), &|_| true, &opts, &FakeStore(vec![])).unwrap();
            let drop = actions(&p, "r").into_iter().find(|(t, _)| t == "drop").unwrap().1;
            let old = actions(&p, "r").into_iter().find(|(t, _)| t == "old").unwrap().1;
            if collected {
                assert_eq!((drop, old), (Action::Keep, Action::Delete), "11 is in use: its tag stays");
                assert_eq!(p.repos[0].in_use_untagged, [d(22), d(50)]);
            } else {
                assert_eq!((drop, old), (Action::Untag, Action::Delete));
                assert!(p.repos[0].in_use_untagged.is_empty());
            }
        }
    }

    #[test]
    fn a_tag_no_rule_decided_is_an_error_never_a_deletion() {
        let s = Store::new(vec![(10, image(&[100], None))]).repo("r", &[("a", 10)], &[10]);
        let opts = options(false);
        let e = build(&s.inv, &[vec![Verdict::Undecided]], &|_| true, &opts, &FakeStore(s.young.clone())).unwrap_err();
        assert!(format!("{e:#}").contains("r:a: no rule decided this tag"), "{e:#}");
    }

    #[test]
    fn an_attachment_tag_still_undecided_when_actions_are_given_is_an_error_never_a_deletion() {
        // The attachment rules settle every attachment tag before tag_actions (subject
        // elsewhere, live, or removed here: deleted by rule); one that reaches it undecided
        // (a rule missed it) is an error like any other undecided tag, not SubjectGone.
        let sig = format!("sha256-{}.sig", d(10).hex());
        let s = Store::new(vec![(10, image(&[100], None)), (60, image(&[140], None))]).repo(
            "r",
            &[("a", 10), (&sig, 60)],
            &[10, 60],
        );
        let opts = options(false);
        let store = FakeStore(s.young.clone());
        let planner = Planner::new(BlobList::new(s.inv.blobs.iter().copied()), None, &opts, &store);
        let cx = RepoCx::new(&planner, &s.inv.repos[0], &s.inv.manifests, true);
        let verdicts = vec![Verdict::Delete(Reason::BeyondCount { rank: 1 }), Verdict::Undecided];
        let (mut warnings, mut errors) = (Vec::new(), Vec::new());
        let tags = cx.tag_actions(verdicts, &DigestSet::default(), &mut warnings, &mut errors);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains(&format!("r:{sig}: no rule decided this tag")), "{errors:?}");
        let t = tags.iter().find(|t| t.name == sig).unwrap();
        assert_eq!(t.action, Action::Keep, "never a deletion by default");
        // Through the planner, the rule decides it: its subject is removed here, so it goes.
        let p = s.plan(&[], false).unwrap();
        assert_eq!(actions(&p, "r")[1], (sig, Action::Delete));
    }

    fn schema1(blobs: &[u8]) -> Parsed {
        Parsed::Ok(Manifest { kind: Kind::Schema1, ..image(blobs, None).manifest().unwrap().clone() })
    }

    #[test]
    fn kept_tags_registry_3_will_not_serve_warn_once_per_repository() {
        // r: two kept schema 1 tags, one kept index over a schema 1 child, one deleted schema 1
        // tag, one kept image; q: only images.
        let s = Store::new(vec![
            (10, schema1(&[100])),
            (11, schema1(&[101])),
            (12, schema1(&[102])),
            (13, index(&[14, 10])),
            (14, image(&[103], None)),
            (15, image(&[104], None)),
        ])
        .repo("r", &[("a", 10), ("b", 11), ("old", 12), ("multi", 13), ("img", 14)], &[10, 11, 12, 13, 14])
        .repo("q", &[("a", 15)], &[15]);
        let p = s.plan(&["a", "b", "multi", "img"], false).unwrap();
        let v3: Vec<&Warning> = p.warnings.iter().filter(|w| w.kind == WarningKind::V3Unservable).collect();
        assert_eq!(v3.len(), 1, "{:?}", p.warnings);
        assert!(v3[0].message.starts_with("r: 3 kept tags registry 3.x will not serve"), "{}", v3[0].message);
        assert!(v3[0].message.contains("r:a, r:b, r:multi;"), "{}", v3[0].message);
        // More than five are counted, not listed.
        let names: Vec<String> = (0..7).map(|i| format!("t{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let w = v3_unservable("r", &names).unwrap();
        assert!(w.message.contains("r:t4 and 2 more;"), "{}", w.message);
        assert!(v3_unservable("r", &[]).is_none());
    }

    #[test]
    fn young_manifests_are_roots() {
        let mut s = Store::new(vec![(10, image(&[100], None)), (11, image(&[101], None))]).repo(
            "r",
            &[("a", 10), ("b", 11)],
            &[10, 11],
        );
        s.inv.repos[0].revisions[1].modified = now() - Duration::from_secs(60);
        let p = s.plan(&["a"], true).unwrap();
        assert_eq!(removed(&p, "r"), []);
        assert_eq!(actions(&p, "r")[1].1, Action::Untag);
        assert_eq!(p.grace_kept.manifests, 1);
    }

    #[test]
    fn a_broken_manifest_is_fatal_only_when_it_must_stay() {
        let s = Store::new(vec![(10, Parsed::Broken("bad".into())), (11, image(&[101], None))]).repo(
            "r",
            &[("a", 10), ("b", 11)],
            &[10, 11],
        );
        assert!(s.plan(&["a"], false).is_err());
        assert_eq!(removed(&s.plan(&["b"], false).unwrap(), "r"), [d(10)]);
    }

    #[test]
    fn attachment_tags_follow_their_subject() {
        let sig = |n: u8| format!("sha256-{}.sig", d(n).hex());
        let (s10, s11, s99) = (sig(10), sig(11), sig(99));
        let s = Store::new(vec![
            (10, image(&[100], None)),
            (11, image(&[101], None)),
            (60, image(&[140], None)),
            (61, image(&[141], None)),
            (62, image(&[142], None)),
        ])
        .repo("r", &[("a", 10), ("b", 11), (&s10, 60), (&s11, 61), (&s99, 62)], &[10, 11, 60, 61, 62]);
        let p = s.plan(&["a"], false).unwrap();
        let acts = actions(&p, "r");
        assert_eq!(acts[2], (s10, Action::Keep));
        assert_eq!(acts[3], (s11, Action::Delete));
        assert_eq!(acts[4], (s99, Action::Keep), "a subject outside this repository is not ours to judge");
        assert_eq!(removed(&p, "r"), [d(11), d(61)]);
    }

    #[test]
    fn journaled_digests_cascade_on_a_rerun() {
        // After a crash, tag `old` is gone: its index looks untagged. The journal says otherwise.
        let mut s = Store::new(vec![(20, index(&[21])), (21, image(&[110], None)), (10, image(&[100], None))]).repo(
            "r",
            &[("new", 10)],
            &[10, 20, 21],
        );
        assert_eq!(removed(&s.plan(&["new"], false).unwrap(), "r"), []);
        let mut j = Journal::default();
        j.repos.entry("r".into()).or_default().insert("old".into(), d(20));
        s.inv.journal = Some(j);
        assert_eq!(removed(&s.plan(&["new"], false).unwrap(), "r"), [d(20), d(21)]);
    }

    #[test]
    fn blobs_stay_while_any_repository_needs_them_and_layer_links_go_per_repository() {
        let mut s = Store::new(vec![(10, image(&[100, 101], None)), (11, image(&[100, 102], None))])
            .repo("a", &[("t", 10)], &[10])
            .repo("b", &[("t", 11), ("u", 10)], &[10, 11]);
        s.inv.repos[1].layers = vec![d(100), d(101), d(102)];
        let p = s.plan(&["t"], false).unwrap();
        // In b, manifest 10 goes with `u`; in a, `t` keeps it, so its blobs 100 and 101 stay.
        assert_eq!(removed(&p, "a"), []);
        assert_eq!(removed(&p, "b"), [d(10)]);
        let bl = blobs(&p);
        assert!(!bl.contains(&d(100)) && !bl.contains(&d(101)) && !bl.contains(&d(102)));
        // But b no longer needs 101: its link goes.
        assert_eq!(p.repos[1].layer_links.iter(&p.store_blobs).collect::<Vec<_>>(), [d(101)]);
    }

    #[test]
    fn a_young_layer_link_keeps_its_blob_even_when_the_blob_is_old() {
        // A layer pushed again (or mounted) for a manifest not written yet.
        let mut s = Store::new(vec![(10, image(&[100], None))]).repo("r", &[("t", 10)], &[10]);
        s.inv.repos[0].layers = vec![d(100), d(200), d(201)];
        s.young = vec![d(200)];
        let p = s.plan(&["t"], false).unwrap();
        assert_eq!(p.repos[0].layer_links.iter(&p.store_blobs).collect::<Vec<_>>(), [d(201)]);
        assert_eq!(p.grace_kept.layer_links, 1);
        assert!(!blobs(&p).contains(&d(200)) && blobs(&p).contains(&d(201)));
    }
}
