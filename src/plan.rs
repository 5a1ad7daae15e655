//! Roots, edges, liveness and marking (SPEC section 4, steps 3 to 5): from an inventory and the
//! retention decisions to a [`Plan`] of every deletion. It deletes nothing; its only I/O is the
//! `stat` it is handed, for the grace period and sizes of deletion candidates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Result, bail};
use rayon::prelude::*;
use serde::Serialize;

use crate::digest::{Digest, DigestMap, DigestSet};
use crate::journal::Journal;
use crate::layout::Layout;
use crate::manifest::Manifest;
use crate::policy::{Decision, Reason, attachment_subject};
use crate::scan::{Inventory, Parsed, Repo};

/// How the collection behaves, whatever the retention.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Untagged manifests are not roots.
    pub delete_untagged: bool,
    /// Nothing younger than this is removed.
    pub grace: Duration,
    /// Uploads started longer ago than this are removed.
    pub upload_age: Duration,
    /// The time the plan is made for.
    pub now: SystemTime,
}

/// What happens to a tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Keep,
    /// The tag folder goes and so does its manifest, unless something live still needs it.
    Delete,
    /// The tag folder goes, its manifest stays: something live still needs it.
    Untag,
}

/// One tag in the plan.
#[derive(Clone, Debug, Serialize)]
pub struct TagPlan {
    pub name: String,
    pub digest: Option<Digest>,
    pub action: Action,
    pub reason: Reason,
    /// For an untagged tag: a kept tag with the same digest, if one is why the manifest stays.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_with: Option<String>,
}

/// A `tags/<tag>/index/sha256/<hex>` entry of a kept tag, naming a removed manifest.
#[derive(Clone, Debug, Serialize)]
pub struct IndexEntry {
    pub tag: String,
    pub digest: Digest,
}

/// An upload to remove.
#[derive(Clone, Debug, Serialize)]
pub struct UploadPlan {
    pub id: String,
    pub size: u64,
}

/// A blob to remove.
#[derive(Clone, Debug, Serialize)]
pub struct BlobPlan {
    pub digest: Digest,
    pub size: u64,
}

/// Everything that happens to one repository.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepoPlan {
    pub name: String,
    /// False when `--repo` / `--exclude-repo` leave it out: then nothing of it is touched.
    pub in_scope: bool,
    pub tags: Vec<TagPlan>,
    /// Manifests whose revision folder goes.
    pub manifests: Vec<Digest>,
    pub index_entries: Vec<IndexEntry>,
    pub layer_links: Vec<Digest>,
    pub uploads: Vec<UploadPlan>,
    /// Revision folders without their link (an interrupted write or deletion), older than the
    /// grace period: nothing to the registry, removed with the revisions.
    pub leftover_revisions: Vec<Digest>,
    /// `_layers` folders without their link, likewise.
    pub leftover_layer_links: Vec<Digest>,
}

/// What the grace period saved.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GraceKept {
    pub manifests: usize,
    pub layer_links: usize,
    pub blobs: usize,
}

/// Every deletion of a run, decided before the first one happens.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    pub repos: Vec<RepoPlan>,
    pub blobs: Vec<BlobPlan>,
    /// Blob folders without their data, older than the grace period.
    pub leftover_blobs: Vec<Digest>,
    pub grace_kept: GraceKept,
    pub warnings: Vec<String>,
    /// The journal to write before the first deletion.
    #[serde(skip)]
    pub journal: Journal,
}

/// What the plan reads from disk beyond the inventory: only for candidates and kept tags.
pub trait Disk: Sync {
    /// A file's size and mtime, `None` when it does not exist.
    fn stat(&self, path: &Path) -> Result<Option<(u64, SystemTime)>>;
    /// The digests of a tag's history (`tags/<tag>/index/sha256/`).
    fn tag_index(&self, repo: &str, tag: &str) -> Result<Vec<Digest>>;
}

/// One mark bit per blob of the store: the mark phase of mark-and-sweep, shared by all threads.
struct Marks<'a> {
    /// The blobs, sorted.
    blobs: &'a [Digest],
    bits: Vec<AtomicU64>,
}

impl<'a> Marks<'a> {
    fn new(blobs: &'a [Digest]) -> Marks<'a> {
        debug_assert!(blobs.is_sorted());
        Marks { blobs, bits: (0..blobs.len().div_ceil(64)).map(|_| AtomicU64::new(0)).collect() }
    }

    /// Marks a blob (a digest that is no blob of the store is nothing to keep).
    fn mark(&self, d: &Digest) {
        if let Ok(i) = self.blobs.binary_search(d) {
            self.bits[i / 64].fetch_or(1 << (i % 64), Ordering::Relaxed);
        }
    }

    fn is_marked(&self, i: usize) -> bool {
        self.bits[i / 64].load(Ordering::Relaxed) & (1 << (i % 64)) != 0
    }
}

/// The manifests of one repository and the edges between them.
struct Graph<'a> {
    inv: &'a Inventory,
    /// Revision path digest -> content digest.
    revs: DigestMap<Digest>,
    /// Subject -> its referrers.
    referrers: DigestMap<Vec<Digest>>,
}

impl<'a> Graph<'a> {
    fn new(inv: &'a Inventory, repo: &Repo) -> Graph<'a> {
        let revs: DigestMap<Digest> = repo.revisions.iter().map(|r| (r.digest, r.target)).collect();
        let mut referrers: DigestMap<Vec<Digest>> = DigestMap::default();
        for r in &repo.revisions {
            if let Some(s) = inv.manifests.get(&r.target).and_then(Parsed::manifest).and_then(|m| m.subject) {
                referrers.entry(s).or_default().push(r.digest);
            }
        }
        Graph { inv, revs, referrers }
    }

    fn parsed(&self, d: &Digest) -> Option<&'a Parsed> {
        self.inv.manifests.get(self.revs.get(d).unwrap_or(d))
    }

    fn manifest(&self, d: &Digest) -> Option<&'a Manifest> {
        self.parsed(d).and_then(Parsed::manifest)
    }

    /// Everything reachable from `starts`: an index's children, a subject's referrers.
    fn closure(&self, starts: impl IntoIterator<Item = Digest>) -> DigestSet {
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

/// What planning one repository gives, before the grace checks that need a `stat`.
struct RepoDraft {
    plan: RepoPlan,
    layer_candidates: Vec<Digest>,
    incomplete_revisions: Vec<Digest>,
    young_manifests: usize,
    warnings: Vec<String>,
    errors: Vec<String>,
    deleted_tags: BTreeMap<String, Digest>,
}

fn plan_repo(
    inv: &Inventory,
    repo: &Repo,
    decisions: &[Decision],
    in_scope: bool,
    opts: &Options,
    disk: &dyn Disk,
    marks: &Marks,
) -> RepoDraft {
    let g = Graph::new(inv, repo);
    let young = |t: SystemTime| opts.now.duration_since(t).unwrap_or_default() < opts.grace;
    let journaled: BTreeSet<Digest> = inv.journal.as_ref().map(|j| j.digests(&repo.name)).unwrap_or_default();
    let tagged: DigestSet = repo.tags.iter().filter_map(|t| t.current).collect();
    let mut warnings = Vec::new();

    // Attachment tags not decided by policy follow their subject; one outside this
    // repository is not ours to judge.
    let mut decided: Vec<Option<(bool, Reason)>> = decisions.to_vec();
    for (t, d) in repo.tags.iter().zip(decided.iter_mut()) {
        if d.is_none()
            && let Some(s) = attachment_subject(&t.name).filter(|s| !g.revs.contains_key(s))
        {
            *d = Some((true, Reason::SubjectElsewhere { subject: s }));
        }
    }
    let young_revs: Vec<Digest> = repo.revisions.iter().filter(|r| young(r.modified)).map(|r| r.digest).collect();
    // Live manifests for the current decisions, with or without the grace period's roots.
    let liveness = |decided: &[Decision], with_young: bool| -> DigestSet {
        let is_kept = |d: &Decision| d.as_ref().is_some_and(|d| d.0);
        let kept = repo.tags.iter().zip(decided).filter(|(_, d)| is_kept(d)).filter_map(|(t, _)| t.current);
        let deleted = repo.tags.iter().zip(decided).filter(|(_, d)| !is_kept(d)).filter_map(|(t, _)| t.current);
        let cascade = g.closure(deleted.chain(journaled.iter().copied()));
        let mut roots: Vec<Digest> = kept.collect();
        if with_young {
            roots.extend(young_revs.iter().copied());
        }
        if !in_scope {
            roots.extend(g.revs.keys().copied());
        } else if !opts.delete_untagged {
            roots.extend(
                repo.revisions.iter().map(|r| r.digest).filter(|d| !tagged.contains(d) && !cascade.contains(d)),
            );
        }
        g.closure(roots)
    };
    // Attachment tags whose subject is live stay; their manifests may make more subjects live.
    let live = loop {
        let live = liveness(&decided, true);
        let mut changed = false;
        for (t, d) in repo.tags.iter().zip(decided.iter_mut()) {
            if d.is_none()
                && let Some(s) = attachment_subject(&t.name).filter(|s| live.contains(s))
            {
                *d = Some((true, Reason::SubjectKept { subject: s }));
                changed = true;
            }
        }
        if !changed {
            break live;
        }
    };
    let young_manifests = if young_revs.is_empty() { 0 } else { live.len() - liveness(&decided, false).len() };

    let mut plan = RepoPlan { name: repo.name.clone(), in_scope, ..RepoPlan::default() };
    let mut deleted_tags = BTreeMap::new();
    for (t, d) in repo.tags.iter().zip(decided) {
        let (keep, reason) = d.unwrap_or_else(|| {
            let subject = attachment_subject(&t.name).unwrap_or(Digest([0; 32]));
            (false, Reason::SubjectGone { subject })
        });
        let action = match (keep, t.current) {
            (true, _) => Action::Keep,
            (false, Some(c)) if live.contains(&c) => Action::Untag,
            (false, _) => Action::Delete,
        };
        if keep {
            if let Some(c) = t.current {
                match g.parsed(&c) {
                    Some(Parsed::Missing) => warnings
                        .push(format!("{}:{}: its manifest {c} has no blob: it cannot be pulled", repo.name, t.name)),
                    None if !g.revs.contains_key(&c) => warnings.push(format!(
                        "{}:{}: points to {c}, which is no manifest of this repository",
                        repo.name, t.name
                    )),
                    _ => {}
                }
            }
        } else if let Some(c) = t.current {
            deleted_tags.insert(t.name.clone(), c);
        }
        plan.tags.push(TagPlan { name: t.name.clone(), digest: t.current, action, reason, shared_with: None });
    }
    let kept_by_digest: DigestMap<&str> = plan
        .tags
        .iter()
        .filter(|t| t.action == Action::Keep)
        .filter_map(|t| Some((t.digest?, t.name.as_str())))
        .collect();
    let shared: Vec<Option<String>> = plan
        .tags
        .iter()
        .map(|t| {
            if t.action == Action::Untag {
                t.digest.and_then(|d| kept_by_digest.get(&d).map(|s| s.to_string()))
            } else {
                None
            }
        })
        .collect();
    for (t, s) in plan.tags.iter_mut().zip(shared) {
        t.shared_with = s;
    }

    let mut errors = Vec::new();
    let mut needed_layers = DigestSet::default();
    for d in &live {
        marks.mark(d);
        let Some(target) = g.revs.get(d) else {
            continue;
        };
        marks.mark(target);
        needed_layers.insert(*d);
        needed_layers.insert(*target);
        match g.parsed(d) {
            Some(Parsed::Ok(m)) => {
                m.blobs.iter().chain(&m.children).for_each(|b| marks.mark(b));
                needed_layers.extend(m.blobs.iter().copied());
            }
            Some(Parsed::Broken(e)) => errors.push(format!("{}: a manifest that must be kept: {e}", repo.name)),
            _ => {}
        }
    }
    plan.manifests = repo.revisions.iter().map(|r| r.digest).filter(|d| !live.contains(d)).collect();
    // A kept tag's history entries for manifests that are gone or going (a crash between the
    // two can leave the first kind, hence the journal's repositories too). Listed only here.
    if in_scope && (!plan.manifests.is_empty() || !journaled.is_empty()) {
        for tp in plan.tags.iter().filter(|t| t.action == Action::Keep) {
            match disk.tag_index(&repo.name, &tp.name) {
                Ok(index) => plan.index_entries.extend(
                    index
                        .into_iter()
                        .filter(|d| !live.contains(d))
                        .map(|digest| IndexEntry { tag: tp.name.clone(), digest }),
                ),
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
    }
    let (layer_candidates, incomplete_revisions) = if in_scope {
        (
            repo.layers.iter().copied().filter(|d| !needed_layers.contains(d)).collect(),
            repo.incomplete_revisions.clone(),
        )
    } else {
        Default::default()
    };
    if in_scope {
        plan.uploads = repo
            .uploads
            .iter()
            .filter(|u| u.started.is_some_and(|s| opts.now.duration_since(s).unwrap_or_default() > opts.upload_age))
            .map(|u| UploadPlan { id: u.id.clone(), size: u.size })
            .collect();
    }
    RepoDraft { plan, layer_candidates, incomplete_revisions, young_manifests, warnings, errors, deleted_tags }
}

/// Plans a run. `decisions` is aligned with `inv.repos` and their tags; `in_scope` says which
/// repositories the run may touch beyond the blob sweep.
pub fn build(
    layout: &Layout,
    inv: &Inventory,
    decisions: &[Vec<Decision>],
    in_scope: &(dyn Fn(&str) -> bool + Sync),
    opts: &Options,
    disk: &dyn Disk,
) -> Result<Plan> {
    let marks = Marks::new(&inv.blobs);
    let young = |t: SystemTime| opts.now.duration_since(t).unwrap_or_default() < opts.grace;
    let old = |path: &Path| -> Result<bool> { Ok(disk.stat(path)?.is_some_and(|(_, t)| !young(t))) };
    let drafts: Vec<RepoDraft> = inv
        .repos
        .par_iter()
        .zip(decisions.par_iter())
        .map(|(r, d)| plan_repo(inv, r, d, in_scope(&r.name), opts, disk, &marks))
        .collect();
    let errors: Vec<&String> = drafts.iter().flat_map(|d| &d.errors).collect();
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        bail!("cannot plan: {} problem(s), nothing was deleted:\n{}", errors.len(), list.join("\n"));
    }

    let mut plan = Plan { journal: inv.journal.clone().unwrap_or_default(), ..Plan::default() };
    for mut d in drafts {
        plan.warnings.append(&mut d.warnings);
        plan.grace_kept.manifests += d.young_manifests;
        if !d.deleted_tags.is_empty() {
            plan.journal.repos.entry(d.plan.name.clone()).or_default().extend(d.deleted_tags);
        }
        let name = d.plan.name.clone();
        // A young link is a push under way: its blob stays too, even if the blob is old (a
        // layer pushed again, or mounted from another repository, before its manifest).
        let links: Vec<Result<(Digest, Option<bool>, bool)>> = d
            .layer_candidates
            .par_iter()
            .map(|l| {
                let dir = layout.layer_dir(&name, l);
                match disk.stat(&dir.join("link"))? {
                    Some((_, t)) => Ok((*l, Some(!young(t)), false)),
                    None => Ok((*l, None, old(&dir)?)),
                }
            })
            .collect();
        for l in links {
            match l? {
                (l, Some(true), _) => d.plan.layer_links.push(l),
                (l, Some(false), _) => {
                    plan.grace_kept.layer_links += 1;
                    marks.mark(&l);
                }
                (l, None, true) => d.plan.leftover_layer_links.push(l),
                (_, None, false) => {}
            }
        }
        for r in d.incomplete_revisions {
            if old(&layout.revision_dir(&name, &r))? {
                d.plan.leftover_revisions.push(r);
            }
        }
        plan.repos.push(d.plan);
    }
    // Unmarked blobs go when their data is older than the grace period; a folder without data
    // is no blob of the registry's, only a leftover of an interrupted write or deletion.
    let unmarked = inv.blobs.par_iter().enumerate().filter(|(i, _)| !marks.is_marked(*i)).map(|(_, b)| {
        let data = disk.stat(&layout.blob_data(b))?;
        let leftover = data.is_none() && old(&layout.blob_dir(b))?;
        Ok((*b, data, leftover))
    });
    for u in unmarked.collect::<Result<Vec<_>>>()? {
        match u {
            (digest, Some((size, mtime)), _) if !young(mtime) => plan.blobs.push(BlobPlan { digest, size }),
            (_, Some(_), _) => plan.grace_kept.blobs += 1,
            (digest, None, true) => plan.leftover_blobs.push(digest),
            (_, None, false) => {}
        }
    }
    plan.blobs.sort_by_key(|b| b.digest);
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Kind;
    use crate::scan::{Revision, Tag};

    const DAY: Duration = Duration::from_secs(86_400);

    /// Every file is old, but those whose path contains one of the strings given; no tag has
    /// history.
    struct FakeDisk(Vec<String>);

    impl Disk for FakeDisk {
        fn stat(&self, path: &Path) -> Result<Option<(u64, SystemTime)>> {
            let young = self.0.iter().any(|s| path.to_string_lossy().contains(s.as_str()));
            Ok(Some((10, if young { now() } else { old() })))
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
        /// Paths containing one of these are young.
        young: Vec<String>,
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
            let decisions: Vec<Vec<Decision>> = self
                .inv
                .repos
                .iter()
                .map(|r| {
                    r.tags
                        .iter()
                        .map(|t| {
                            if attachment_subject(&t.name).is_some() {
                                None
                            } else if keep.contains(&t.name.as_str()) {
                                Some((true, Reason::Count { rank: 1 }))
                            } else {
                                Some((false, Reason::BeyondCount { rank: 2 }))
                            }
                        })
                        .collect()
                })
                .collect();
            let opts = Options { delete_untagged, grace: Duration::from_secs(3600), upload_age: 7 * DAY, now: now() };
            build(
                &Layout::at("/nonexistent".into()),
                &self.inv,
                &decisions,
                &|_| true,
                &opts,
                &FakeDisk(self.young.clone()),
            )
        }
    }

    fn removed(plan: &Plan, repo: &str) -> Vec<Digest> {
        let mut m = plan.repos.iter().find(|r| r.name == repo).unwrap().manifests.clone();
        m.sort();
        m
    }

    fn actions(plan: &Plan, repo: &str) -> Vec<(String, Action)> {
        plan.repos.iter().find(|r| r.name == repo).unwrap().tags.iter().map(|t| (t.name.clone(), t.action)).collect()
    }

    fn blobs(plan: &Plan) -> Vec<Digest> {
        plan.blobs.iter().map(|b| b.digest).collect()
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
        assert_eq!(p.repos[0].tags[1].shared_with.as_deref(), Some("latest"));
        assert!(!blobs(&p).contains(&d(100)) && blobs(&p).contains(&d(102)));
        let mut journaled: Vec<_> = p.journal.repos["r"].keys().cloned().collect();
        journaled.sort();
        assert_eq!(journaled, ["v1", "v2"]);
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
        assert_eq!(p.repos[1].layer_links, [d(101)]);
    }

    #[test]
    fn a_young_layer_link_keeps_its_blob_even_when_the_blob_is_old() {
        // A layer pushed again (or mounted) for a manifest not written yet.
        let mut s = Store::new(vec![(10, image(&[100], None))]).repo("r", &[("t", 10)], &[10]);
        s.inv.repos[0].layers = vec![d(100), d(200), d(201)];
        s.young = vec![d(200).hex()];
        let p = s.plan(&["t"], false).unwrap();
        assert_eq!(p.repos[0].layer_links, [d(201)]);
        assert_eq!(p.grace_kept.layer_links, 1);
        assert!(!blobs(&p).contains(&d(200)) && blobs(&p).contains(&d(201)));
    }
}
