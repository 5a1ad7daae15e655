//! `regsweep check`: what is wrong with a store, per repository, and which tags would fail a
//! pull. Every verdict is decided here, once, for every backend: a backend lists what it holds
//! (`RepoSeen`, its blob folders, its files) and loads manifests, then the `Judge` pushes the
//! [`Problem`]s, each at a path relative to `docker/registry/v2/` that the backend shows as its
//! own (a path on disk, an `s3://` URL). Read-only, except `--repair` (`run`), which removes
//! links that point to nothing (never a blob) through the backend's
//! [`Sweep::remove`](crate::store::Sweep::remove), in the crash-safe order of a prune and under
//! the store's lock.

use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::Result;
use rayon::prelude::*;
use serde::Serialize;

use crate::core::progress::Progress;
use crate::model::digest::{Digest, DigestMap, DigestSet};
use crate::model::error::{self, ErrorKind};
use crate::model::manifest::{self, Manifest, refused_by_v3};
use crate::model::outcome::{Failure, What};
use crate::model::warning::{Warning, WarningKind};
use crate::store::Store;
use crate::store::stage::{Batch, Folder, Parent, Removal, Stage, Tally};
use crate::store::tree::{self, JOURNAL, inside};

/// What kind of problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A tag that a pull would fail on; the detail says why.
    TagBroken,
    /// A link that is empty, has a newline, or holds anything but `sha256:<64 hex>`.
    MalformedLink,
    /// A FIFO, folder, device or symbolic link where the registry writes a file (a link, a
    /// blob's `data`): no run reads, follows or deletes it.
    NotAFile,
    /// A revision link whose manifest blob is gone.
    RevisionWithoutBlob,
    /// A manifest that cannot be parsed.
    ManifestUnreadable,
    /// A manifest needs a blob the store does not hold.
    MissingBlob,
    /// A manifest needs a blob this repository has no `_layers` link for.
    MissingLayerLink,
    /// An index lists a manifest this repository does not hold.
    MissingChild,
    /// A `_layers` link to a blob the store does not hold.
    DanglingLayerLink,
    /// A tag history entry naming a manifest this repository no longer holds.
    DanglingIndexEntry,
    /// A tag folder without `current/link`, a revision folder without `link`, a blob folder
    /// without `data`: what an interrupted write or delete leaves.
    Incomplete,
    /// A `*.tmp` file left by an interrupted write (registry v3.1+).
    TmpFile,
    /// An empty revision or `_layers` folder: the registry's own API delete removes the link
    /// and leaves its folder. Removed by `--repair` and the next run, once older than the grace.
    RegistryLeftover,
    /// A blob whose sha256 is not its name (`--verify-digests`).
    DigestMismatch,
    /// A tag that registry 3.x will not serve, though 2.8 does: its manifest, or a child of its
    /// index, is a Docker schema 1 manifest (3.x answers HTTP 500); or an untagged schema 1
    /// manifest, which 3.x answers 500 by digest and on which its `garbage-collect` stops. Not
    /// a broken pull on the registry the store may be served by now: no exit status of its own.
    V3Unservable,
}

impl Kind {
    /// Its name, as the JSON report spells it (`tag_broken`, `tmp_file`).
    pub fn name(self) -> String {
        serde_json::to_value(self).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
    }
}

/// One problem found.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    pub kind: Kind,
    pub repo: Option<String>,
    pub path: String,
    pub detail: String,
    /// Some tag fails to pull because of it (or a blob's content is wrong).
    pub breaks_pull: bool,
    /// `--repair` removes it.
    pub repairable: bool,
}

/// The outcome of a check.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckReport {
    pub root: String,
    pub repositories: usize,
    pub tags: usize,
    pub manifests: usize,
    pub blobs: usize,
    pub blobs_verified: usize,
    /// Links `--repair` removed (the problems below are those of the store after repair).
    pub repaired: usize,
    pub problems: Vec<Problem>,
    /// Deletions of `--repair` that failed, with their paths (exit 3: the store is as valid as
    /// before; run the repair again to finish).
    pub failed: Vec<Failure>,
    /// What `--repair` tells without failing: what it left as written since the check began
    /// (`repair_left_young`).
    pub warnings: Vec<Warning>,
}

impl CheckReport {
    /// Judged as registry 3.x serves the store (`--for-registry 3`): what it will not serve
    /// breaks a pull.
    pub fn as_served_by_v3(&mut self) {
        for p in self.problems.iter_mut().filter(|p| p.kind == Kind::V3Unservable) {
            p.breaks_pull = true;
        }
    }

    /// True when some tag would fail a pull or some blob is corrupt.
    pub fn broken(&self) -> bool {
        self.problems.iter().any(|p| p.breaks_pull)
    }

    /// The human text.
    pub fn text(&self) -> String {
        let mut s = format!(
            "{}: {} repositories, {} tags, {} manifests, {} blobs{}\n",
            self.root,
            self.repositories,
            self.tags,
            self.manifests,
            self.blobs,
            if self.blobs_verified > 0 { format!(", {} blobs verified", self.blobs_verified) } else { String::new() }
        );
        if self.repaired > 0 {
            s.push_str(&format!("repaired: removed {} links that pointed to nothing\n", self.repaired));
        }
        for p in &self.problems {
            let mark = if p.breaks_pull {
                "BROKEN"
            } else if p.kind == Kind::V3Unservable {
                "not on v3"
            } else if p.repairable {
                "repairable"
            } else {
                "leftover"
            };
            let repo = p.repo.as_deref().map(|r| format!("{r}: ")).unwrap_or_default();
            s.push_str(&format!("{mark:>10} {} {repo}{} ({})\n", p.kind.name(), p.detail, p.path));
        }
        let v3 = self.problems.iter().filter(|p| p.kind == Kind::V3Unservable).count();
        if v3 > 0 {
            s.push_str(&format!(
                "{v3} tags or manifests registry 3.x will not serve (Docker schema 1): re-push those images as \
                 schema 2 / OCI, or delete them, before moving to registry:3\n"
            ));
        }
        s.push_str(&if self.problems.is_empty() {
            "clean\n".to_string()
        } else if self.broken() {
            format!("{} problems; some tags would fail a pull\n", self.problems.len())
        } else {
            format!("{} problems; every tag pulls\n", self.problems.len())
        });
        for f in &self.failed {
            s.push_str(&format!("    FAILED cannot delete {}: {}\n", f.path, f.error));
        }
        if !self.failed.is_empty() {
            s.push_str(&format!(
                "{} of the repair failed (listed above): the store is as valid as before; run check --repair \
                 again to finish\n",
                if self.failed.len() == 1 {
                    "1 deletion".to_string()
                } else {
                    format!("{} deletions", self.failed.len())
                }
            ));
        }
        for w in &self.warnings {
            s.push_str(&format!("{w}\n"));
        }
        s
    }

    /// The exit status: 3 when a deletion of `--repair` failed, else 4 when some tag would
    /// fail a pull (or some blob is corrupt), else 0 ([`error::exit_code`] of those kinds).
    pub fn exit_code(&self) -> u8 {
        let failed = self.failed.iter().map(|_| ErrorKind::DeleteFailed);
        error::exit_code(failed.chain(self.broken().then_some(ErrorKind::BrokenPull)))
    }
}

/// What to do besides reading.
#[derive(Clone, Copy, Debug, Default)]
pub struct CheckOptions {
    pub verify_digests: bool,
    pub repair: bool,
    /// Leftovers younger than this may be a write under way: `--repair` leaves them.
    pub grace: std::time::Duration,
}

/// A link as a backend read it.
#[derive(Clone, Debug)]
pub(crate) enum Link {
    /// It holds this digest.
    To(Digest),
    /// It holds anything but `sha256:<64 hex>`: the backend's error, naming it.
    Malformed(String),
    /// Something other than a regular file in its place (a file system's only): the backend's
    /// error, naming it.
    NotAFile(String),
}

/// A folder named by a digest whose own file is a `link` (a revision, a `_layers` link), as a
/// backend listed it.
#[derive(Clone, Debug)]
pub(crate) enum Entry {
    /// Its link.
    Link(Link),
    /// No link, and nothing else (a file system's only: a bucket has no empty folders); `old`
    /// when older than the grace period.
    Empty { old: bool },
    /// No link, but other files: what an interrupted write leaves.
    Partial,
}

/// A tag folder, as a backend listed it.
#[derive(Clone, Debug)]
pub(crate) struct TagSeen {
    pub(crate) name: String,
    /// Its `current/link`; `None` when it has none.
    pub(crate) current: Option<Link>,
    /// Its history entries (`index/sha256/<hex>/`), each with its link when it has one.
    pub(crate) history: Vec<(Digest, Option<Link>)>,
}

/// What a backend listed of one repository, for [`Judge::repository`].
#[derive(Clone, Debug, Default)]
pub(crate) struct RepoSeen {
    pub(crate) name: String,
    /// Its `_layers/sha256/<hex>/` folders.
    pub(crate) layers: Vec<(Digest, Entry)>,
    /// Its `_manifests/revisions/sha256/<hex>/` folders.
    pub(crate) revisions: Vec<(Digest, Entry)>,
    pub(crate) tags: Vec<TagSeen>,
}

/// A blob folder, as a backend listed it.
#[derive(Clone, Debug)]
pub(crate) enum BlobSeen {
    /// Its `data` is there: the registry can serve it.
    Data,
    /// No `data` in it.
    NoData,
    /// Something other than a regular file as its `data`: the backend's error, naming it.
    NotAFile(String),
}

/// What the check knows of the store's blobs.
#[derive(Default)]
pub(crate) struct Blobs {
    /// Blobs whose `data` the registry can serve.
    pub(crate) present: DigestSet,
    /// With `--verify-digests`: blobs whose content does not hash to their name.
    pub(crate) corrupt: DigestSet,
}

/// What `--repair` removes (repository first), in the crash-safe order of deletion: tags, then
/// revisions and history entries, then layer links.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Repair {
    /// A tag folder whose manifest is gone.
    Tag(String, String),
    /// A revision folder whose manifest blob is gone.
    Revision(String, Digest),
    /// An empty revision folder older than the grace period.
    RevisionLeftover(String, Digest),
    /// A tag history entry naming a manifest the repository no longer holds.
    IndexEntry(String, String, Digest),
    /// A `_layers` link to a blob that is gone.
    LayerLink(String, Digest),
    /// An empty `_layers` folder older than the grace period.
    LayerLeftover(String, Digest),
}

/// One repository judged: its tags and manifests counted, and what `--repair` removes.
#[derive(Default)]
pub(crate) struct Judged {
    pub(crate) tags: usize,
    pub(crate) manifests: usize,
    pub(crate) repairs: Vec<Repair>,
}

/// Decides every verdict of a check, from what a backend listed; collects the problems of
/// parallel workers. `at` shows a path relative to `docker/registry/v2/` as the backend names
/// it (a path on disk, an `s3://` URL).
pub(crate) struct Judge<'a> {
    at: &'a (dyn Fn(&str) -> String + Sync),
    found: Mutex<Vec<Problem>>,
}

/// The `_layers/sha256/<hex>` folder of a repository, relative to `docker/registry/v2/`.
fn layer_dir(repo: &str, d: &Digest) -> String {
    tree::in_repo(repo, &inside::layer_dir(d))
}

fn revision_dir(repo: &str, d: &Digest) -> String {
    tree::in_repo(repo, &inside::revision_dir(d))
}

fn tag_dir(repo: &str, tag: &str) -> String {
    tree::in_repo(repo, &inside::tag_dir(tag))
}

/// What to do about a tag registry 3.x will not serve.
const V3_ADVICE: &str = "re-push it as schema 2 / OCI, or delete it, before moving to registry:3";

/// Why a manifest of a repository cannot be pulled.
struct Trouble {
    text: String,
    /// Its revision names a manifest blob the store lacks: the tags on it point to nothing,
    /// and `--repair` removes them.
    blob_gone: bool,
}

impl Trouble {
    fn new(text: String) -> Trouble {
        Trouble { text, blob_gone: false }
    }
}

/// What a problem means: whether a pull fails on it, and whether `--repair` removes it.
#[derive(Clone, Copy)]
struct Stakes {
    breaks_pull: bool,
    repairable: bool,
}

impl Stakes {
    /// Breaks no pull, and `--repair` leaves it.
    const NONE: Stakes = Stakes { breaks_pull: false, repairable: false };
    /// A pull fails on it; `--repair` leaves it.
    const BREAKS_PULL: Stakes = Stakes { breaks_pull: true, repairable: false };

    /// Breaks no pull; repairable when `--repair` removes every problem of its kind.
    fn of(kind: Kind) -> Stakes {
        let repairable = matches!(kind, Kind::RevisionWithoutBlob | Kind::DanglingLayerLink | Kind::DanglingIndexEntry);
        Stakes { breaks_pull: false, repairable }
    }
}

impl<'a> Judge<'a> {
    pub(crate) fn new(at: &'a (dyn Fn(&str) -> String + Sync)) -> Judge<'a> {
        Judge { at, found: Mutex::default() }
    }

    /// A problem at `rel` that breaks no pull; repairable by its kind.
    fn add(&self, kind: Kind, repo: Option<&str>, rel: &str, detail: String) {
        self.push(kind, repo, rel, detail, Stakes::of(kind));
    }

    fn push(&self, kind: Kind, repo: Option<&str>, rel: &str, detail: String, stakes: Stakes) {
        let path = (self.at)(rel);
        let Stakes { breaks_pull, repairable } = stakes;
        let p = Problem { kind, repo: repo.map(String::from), path, detail, breaks_pull, repairable };
        self.found.lock().unwrap_or_else(|e| e.into_inner()).push(p);
    }

    /// Every problem, sorted by repository, path and kind.
    pub(crate) fn problems(self) -> Vec<Problem> {
        let mut problems = self.found.into_inner().unwrap_or_else(|e| e.into_inner());
        problems.sort_by(|a, b| (&a.repo, &a.path, a.kind as u8).cmp(&(&b.repo, &b.path, b.kind as u8)));
        problems
    }

    /// A blob folder; true when the registry can serve it.
    pub(crate) fn blob(&self, d: &Digest, seen: &BlobSeen) -> bool {
        match seen {
            BlobSeen::Data => return true,
            BlobSeen::NoData => {
                self.add(Kind::Incomplete, None, &tree::blob_dir(d), "a blob folder without data".into())
            }
            BlobSeen::NotAFile(e) => self.add(Kind::NotAFile, None, &tree::blob_data(d), e.clone()),
        }
        false
    }

    /// A blob whose content does not hash to its name (`--verify-digests`).
    pub(crate) fn corrupt(&self, d: &Digest) {
        let detail = format!("the content of {d} does not hash to its name");
        self.push(Kind::DigestMismatch, None, &tree::blob_data(d), detail, Stakes::BREAKS_PULL);
    }

    /// A file of the store outside a blob's folder (`rel`): a `*.tmp` file is an interrupted
    /// write's (registry v3.1+).
    pub(crate) fn file(&self, rel: &str) {
        if rel.ends_with(".tmp") {
            self.add(Kind::TmpFile, None, rel, "left by an interrupted write".into());
        }
    }

    /// The journal of an interrupted run is there.
    pub(crate) fn journal(&self) {
        let detail = "an interrupted regsweep run: run gc or prune to finish it".to_string();
        self.add(Kind::Incomplete, None, JOURNAL, detail);
    }

    /// A link's problem, if any (`stakes`: what it means where it is); its digest when it holds one.
    fn link(&self, repo: &str, rel: &str, link: &Link, stakes: Stakes) -> Option<Digest> {
        match link {
            Link::To(d) => return Some(*d),
            Link::Malformed(e) => self.push(Kind::MalformedLink, Some(repo), rel, e.clone(), stakes),
            Link::NotAFile(e) => self.push(Kind::NotAFile, Some(repo), rel, e.clone(), stakes),
        }
        None
    }

    /// A folder without its link (`dir`): the registry's empty folder, repaired when old
    /// enough, or an interrupted write's; true when `--repair` removes it.
    fn no_link(&self, repo: &str, dir: &str, what: &str, entry: &Entry) -> bool {
        match entry {
            Entry::Empty { old } => {
                let detail = format!(
                    "an empty {what} folder: the registry's API delete leaves these{}",
                    if *old { "" } else { " (younger than the grace period: left)" }
                );
                self.push(
                    Kind::RegistryLeftover,
                    Some(repo),
                    dir,
                    detail,
                    Stakes { breaks_pull: false, repairable: *old },
                );
                *old
            }
            Entry::Partial => {
                let detail = format!("a {what} folder without its link");
                self.add(Kind::Incomplete, Some(repo), &format!("{dir}/link"), detail);
                false
            }
            Entry::Link(_) => false,
        }
    }

    /// One repository, from what the backend listed of it; `load` reads a manifest blob through
    /// the backend (`None`: the store lacks it), called in parallel. Each step reads what the
    /// ones before it learnt: the layer links, the revisions' manifests, their children, the tags.
    pub(crate) fn repository(
        &self,
        seen: &RepoSeen,
        blobs: &Blobs,
        load: &(dyn Fn(&Digest) -> Result<Option<Vec<u8>>> + Sync),
    ) -> Judged {
        let mut j = Judging {
            judge: self,
            name: &seen.name,
            blobs,
            out: Judged { tags: seen.tags.len(), ..Judged::default() },
            linked: DigestSet::default(),
            manifests: DigestMap::default(),
            own_problem: DigestMap::default(),
        };
        j.layer_links(&seen.layers);
        let targets = j.revision_links(&seen.revisions);
        j.manifests(targets, load);
        j.children();
        for t in &seen.tags {
            j.tag(t);
        }
        self.untagged_v3_unservable(j.name, seen, &j.manifests);
        j.out
    }

    /// Schema 1 manifests no tag reaches: registry 3.x answers 500 to them by digest, and its
    /// `garbage-collect` stops on each it marks (every one, without `--delete-untagged`).
    fn untagged_v3_unservable(&self, name: &str, seen: &RepoSeen, manifests: &DigestMap<Option<Manifest>>) {
        let mut reached = DigestSet::default();
        let mut todo: Vec<Digest> = seen
            .tags
            .iter()
            .filter_map(|t| match &t.current {
                Some(Link::To(d)) => Some(*d),
                _ => None,
            })
            .collect();
        while let Some(x) = todo.pop() {
            if reached.insert(x)
                && let Some(Some(m)) = manifests.get(&x)
            {
                todo.extend(m.children.iter().copied());
            }
        }
        for (d, m) in manifests {
            if m.as_ref().is_some_and(|m| !m.served_by_v3()) && !reached.contains(d) {
                let detail = format!(
                    "manifest {d} is an untagged Docker schema 1 manifest: registry 3.x answers HTTP 500 to it, \
                     and its garbage-collect stops on it unless --delete-untagged (2.8 serves it); delete it \
                     (regsweep gc --delete-untagged) before moving to registry:3"
                );
                let rel = format!("{}/link", revision_dir(name, d));
                self.push(Kind::V3Unservable, Some(name), &rel, detail, Stakes::NONE);
            }
        }
    }
}

/// One repository being judged ([`Judge::repository`]): what each step learns, for the next.
struct Judging<'j, 'a> {
    judge: &'j Judge<'a>,
    name: &'j str,
    blobs: &'j Blobs,
    out: Judged,
    /// Layer links that name a blob the store holds.
    linked: DigestSet,
    /// Each manifest read and parsed.
    manifests: DigestMap<Option<Manifest>>,
    /// Each manifest's own reason a pull fails on it.
    own_problem: DigestMap<Trouble>,
}

impl Judging<'_, '_> {
    /// A problem of this repository at `rel` that breaks no pull; repairable by its kind.
    fn add(&self, kind: Kind, rel: &str, detail: String) {
        self.judge.add(kind, Some(self.name), rel, detail);
    }

    /// Layer links, by folder: their content must name a blob.
    fn layer_links(&mut self, layers: &[(Digest, Entry)]) {
        let name = self.name;
        for (d, entry) in layers {
            let dir = layer_dir(name, d);
            let Entry::Link(link) = entry else {
                if self.judge.no_link(name, &dir, "layer link", entry) {
                    self.out.repairs.push(Repair::LayerLeftover(name.into(), *d));
                }
                continue;
            };
            let rel = format!("{dir}/link");
            match self.judge.link(name, &rel, link, Stakes::NONE) {
                Some(target) if !self.blobs.present.contains(&target) => {
                    self.add(Kind::DanglingLayerLink, &rel, format!("links {target}, which is not in the store"));
                    self.out.repairs.push(Repair::LayerLink(name.into(), *d));
                }
                Some(_) => {
                    self.linked.insert(*d);
                }
                None => {}
            }
        }
    }

    /// Revision folders: each with the manifest its link names, if it names one.
    fn revision_links(&mut self, revisions: &[(Digest, Entry)]) -> Vec<(Digest, Option<Digest>)> {
        let name = self.name;
        let mut targets = Vec::with_capacity(revisions.len());
        for (d, entry) in revisions {
            let dir = revision_dir(name, d);
            let target = match entry {
                Entry::Link(link) => self.judge.link(name, &format!("{dir}/link"), link, Stakes::NONE),
                _ => {
                    if self.judge.no_link(name, &dir, "revision", entry) {
                        self.out.repairs.push(Repair::RevisionLeftover(name.into(), *d));
                    }
                    None
                }
            };
            targets.push((*d, target));
        }
        targets
    }

    /// The revisions' manifests, read in parallel, then each judged.
    fn manifests(
        &mut self,
        targets: Vec<(Digest, Option<Digest>)>,
        load: &(dyn Fn(&Digest) -> Result<Option<Vec<u8>>> + Sync),
    ) {
        // Each revision, with the manifest its link names and that manifest's content.
        type Read = (Digest, Option<(Digest, Result<Option<Vec<u8>>>)>);
        let read: Vec<Read> = targets.into_par_iter().map(|(d, t)| (d, t.map(|t| (t, load(&t))))).collect();
        for (d, target) in read {
            let Some((target, bytes)) = target else {
                self.own_problem.insert(d, Trouble::new("its revision link is malformed or missing".into()));
                continue;
            };
            self.out.manifests += 1;
            self.manifest(d, target, bytes);
        }
    }

    /// Revision `d`, whose link names `target`, with what reading that manifest blob gave.
    fn manifest(&mut self, d: Digest, target: Digest, bytes: Result<Option<Vec<u8>>>) {
        let rel = format!("{}/link", revision_dir(self.name, &d));
        match bytes {
            Ok(None) => {
                self.add(Kind::RevisionWithoutBlob, &rel, format!("manifest {target} has no blob"));
                self.out.repairs.push(Repair::Revision(self.name.into(), d));
                let text = format!("its manifest blob {target} is missing");
                self.own_problem.insert(d, Trouble { text, blob_gone: true });
            }
            Ok(Some(_)) if self.blobs.corrupt.contains(&target) => {
                let text = format!("its manifest blob {target} is corrupt (its content does not hash to its name)");
                self.own_problem.insert(d, Trouble::new(text));
            }
            Ok(Some(bytes)) => match manifest::parse(&bytes) {
                Ok(m) => {
                    self.blobs_of(d, &rel, &m, &bytes);
                    self.manifests.insert(d, Some(m));
                }
                Err(e) => {
                    self.add(Kind::ManifestUnreadable, &rel, format!("manifest {d}: {e:#}"));
                    self.own_problem.insert(d, Trouble::new("its manifest cannot be parsed".into()));
                }
            },
            Err(e) => {
                self.add(Kind::ManifestUnreadable, &rel, format!("{e:#}"));
                self.own_problem.insert(d, Trouble::new("its manifest cannot be read".into()));
            }
        }
    }

    /// The blobs manifest `d` (`bytes`, parsed as `m`) needs, but its foreign layers: each held,
    /// sound and linked in this repository.
    fn blobs_of(&mut self, d: Digest, rel: &str, m: &Manifest, bytes: &[u8]) {
        let foreign = manifest::foreign_layers(bytes);
        for b in m.blobs.iter().filter(|b| !foreign.contains(b)) {
            let trouble = if !self.blobs.present.contains(b) {
                self.add(Kind::MissingBlob, rel, format!("manifest {d} needs blob {b}"));
                format!("blob {b} is missing")
            } else if self.blobs.corrupt.contains(b) {
                format!("blob {b} is corrupt (its content does not hash to its name)")
            } else if !self.linked.contains(b) {
                self.add(Kind::MissingLayerLink, rel, format!("manifest {d} needs blob {b}, not linked here"));
                format!("blob {b} is not linked in this repository")
            } else {
                continue;
            };
            self.own_problem.insert(d, Trouble::new(trouble));
        }
    }

    /// Children: an index whose child is missing or broken is broken.
    fn children(&mut self) {
        for (d, m) in &self.manifests {
            for c in m.iter().flat_map(|m| m.children.iter()) {
                if !self.manifests.contains_key(c) {
                    let detail = format!("index {d} lists {c}, not held here");
                    self.add(Kind::MissingChild, &revision_dir(self.name, d), detail);
                    self.own_problem.entry(*d).or_insert_with(|| Trouble::new(format!("its child {c} is missing")));
                }
            }
        }
    }

    /// Whether this repository holds manifest `d` (read or not).
    fn held(&self, d: &Digest) -> bool {
        self.manifests.contains_key(d) || self.own_problem.contains_key(d)
    }

    /// A tag: its current link, then its history.
    fn tag(&mut self, t: &TagSeen) {
        let (name, tag) = (self.name, t.name.as_str());
        let current = tree::in_repo(name, &inside::tag_current(tag));
        match t.current.as_ref().map(|l| self.judge.link(name, &current, l, Stakes::BREAKS_PULL)) {
            None => self.add(Kind::Incomplete, &tag_dir(name, tag), format!("tag {tag} has no current link")),
            Some(None) => {}
            Some(Some(d)) if !self.held(&d) => {
                let detail = format!("points to {d}, which this repository does not hold");
                let stakes = Stakes { breaks_pull: true, repairable: true };
                self.judge.push(Kind::TagBroken, Some(name), &current, detail, stakes);
                self.out.repairs.push(Repair::Tag(name.into(), tag.into()));
            }
            Some(Some(d)) => self.tag_on(tag, &current, d),
        }
        self.history(t);
    }

    /// Tag `tag`, whose current link (`current`) names `d`, a manifest this repository holds:
    /// broken when a pull of it fails, or one registry 3.x will not serve.
    fn tag_on(&mut self, tag: &str, current: &str, d: Digest) {
        let name = self.name;
        if let Some((why, blob_gone)) = why_broken(&d, &self.own_problem, &self.manifests) {
            // A tag on a manifest whose blob is gone points to nothing: --repair removes it.
            let detail = if blob_gone { format!("points to {d}: {why}") } else { format!("{tag} ({d}): {why}") };
            let stakes = Stakes { breaks_pull: true, repairable: blob_gone };
            self.judge.push(Kind::TagBroken, Some(name), current, detail, stakes);
            if blob_gone {
                self.out.repairs.push(Repair::Tag(name.into(), tag.into()));
            }
        } else if let Some(x) = refused_by_v3(&d, |d| self.manifests.get(d).and_then(Option::as_ref)) {
            let what = if x == d {
                format!("{tag} ({d}) is a Docker schema 1 manifest: registry 3.x answers HTTP 500 to it")
            } else {
                format!(
                    "{tag} ({d}): its child {x} is a Docker schema 1 manifest: registry 3.x answers HTTP 500 to it, \
                     and a pull of that platform fails"
                )
            };
            let detail = format!("{what} (2.8 serves it); {V3_ADVICE}");
            self.judge.push(Kind::V3Unservable, Some(name), current, detail, Stakes::NONE);
        }
    }

    /// A tag's history entries: each must name a manifest this repository holds.
    fn history(&mut self, t: &TagSeen) {
        let (name, tag) = (self.name, t.name.as_str());
        let dir = tag_dir(name, tag);
        for (d, link) in &t.history {
            let rel = format!("{dir}/index/sha256/{}/link", d.hex());
            if let Some(link) = link {
                self.judge.link(name, &rel, link, Stakes::NONE);
            }
            if !self.held(d) {
                self.add(Kind::DanglingIndexEntry, &rel, format!("tag {tag} history names {d}, no longer held"));
                self.out.repairs.push(Repair::IndexEntry(name.into(), tag.into(), *d));
            }
        }
    }
}

/// Why a tag on `d` fails a pull (its own trouble, or a child's, recursively), and whether that
/// is its own manifest blob being gone.
fn why_broken(
    d: &Digest,
    own_problem: &DigestMap<Trouble>,
    manifests: &DigestMap<Option<Manifest>>,
) -> Option<(String, bool)> {
    let mut todo = vec![*d];
    let mut seen = DigestSet::default();
    while let Some(x) = todo.pop() {
        if !seen.insert(x) {
            continue;
        }
        if let Some(p) = own_problem.get(&x) {
            return Some(if x == *d {
                (p.text.clone(), p.blob_gone)
            } else {
                (format!("its child {x}: {}", p.text), false)
            });
        }
        if let Some(Some(m)) = manifests.get(&x) {
            todo.extend(m.children.iter().copied());
        }
    }
    None
}

/// One pass of a backend's check over the whole store: its report (`root` and `repaired` left
/// to [`run`]) and what `--repair` removes.
pub(crate) type Pass = (CheckReport, Vec<Repair>);

/// Checks a store by its backend's `pass`; with `--repair`, under the store's lock, removes what
/// the pass found pointing to nothing through [`Sweep::remove`](crate::store::Sweep::remove),
/// stage by stage in the crash-safe order of a prune (tags, revisions and history entries, layer
/// links; the lock checked before each), then checks again. What was written since the check
/// began is left, as in a prune.
pub(crate) fn run(
    store: &dyn Store,
    opts: CheckOptions,
    progress: Progress,
    pass: &dyn Fn(CheckOptions) -> Result<Pass>,
) -> Result<CheckReport> {
    if !opts.repair {
        return Ok(pass(opts)?.0);
    }
    let held = store.lock()?;
    let began = SystemTime::now();
    let (mut report, mut repairs) = pass(opts)?;
    if !repairs.is_empty() {
        // The repair's plan is made: the test point a prune has here too.
        crate::store::apply::stop_point("plan");
        repairs.sort();
        repairs.dedup();
        let done = repair(store, &repairs, store.store_clock(began), progress)?;
        (report, _) = pass(CheckOptions { repair: false, ..opts })?;
        report.repaired = done.gone;
        // What it left as young and is still to remove (not what a push made whole since).
        let still = report.problems.iter().filter(|p| p.repairable).count().saturating_sub(done.failed.len());
        let left = done.left_young.min(still);
        if left > 0 {
            report.warnings.push(left_young(left));
        }
        report.failed = done.failed;
    }
    held.release()?;
    Ok(report)
}

/// The warning for `n` problems `--repair` left because they were written since the check
/// began: a write may be under way, and on a bucket "since" is to the bucket clock's whole
/// second, so damage written in the second the repair began is left too (issue 35).
fn left_young(n: usize) -> Warning {
    let (what, them) = if n == 1 { ("1 link".to_string(), "it") } else { (format!("{n} links"), "them") };
    Warning::new(
        WarningKind::RepairLeftYoung,
        format!(
            "--repair left {what} pointing to nothing: written since the check began (a write may be under way; a \
             bucket's clock counts whole seconds, so what was written in the second the repair began counts as \
             such); run check --repair again in a second or two to remove {them}"
        ),
    )
}

/// What a repair did.
struct Repaired {
    /// Folders gone.
    gone: usize,
    /// Folders left because they were written since the check began.
    left_young: usize,
    /// Deletions that failed.
    failed: Vec<Failure>,
}

/// The parent folder of what `--repair` removes, by repository (and tag). Their order is the
/// order of the batches: by stage, then by parent.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Group<'a> {
    /// A repository's tags (stage 0).
    Tags(&'a str),
    /// A repository's revisions (stage 1).
    Revisions(&'a str),
    /// A tag's history entries (stage 1).
    TagIndex(&'a str, &'a str),
    /// A repository's `_layers` links (stage 2).
    Layers(&'a str),
}

impl<'a> Group<'a> {
    /// Which stage removes its folders: tags, then revisions and history entries, then links.
    fn stage(self) -> usize {
        match self {
            Group::Tags(_) => 0,
            Group::Revisions(_) | Group::TagIndex(..) => 1,
            Group::Layers(_) => 2,
        }
    }

    /// The folder it is, and what its folders are.
    fn parent(self) -> (Parent<'a>, What) {
        match self {
            Group::Tags(repo) => (Parent::Tags(repo), What::Tag),
            Group::Revisions(repo) => (Parent::Revisions(repo), What::Manifest),
            Group::TagIndex(repo, tag) => (Parent::TagIndex(repo, tag), What::IndexEntry),
            Group::Layers(repo) => (Parent::Layers(repo), What::LayerLink),
        }
    }
}

/// Removes what `repairs` names, stage by stage (a stage with a failed deletion stops the
/// repair there, as in a prune).
fn repair(store: &dyn Store, repairs: &[Repair], since: SystemTime, progress: Progress) -> Result<Repaired> {
    let mut groups: std::collections::BTreeMap<Group, Vec<Folder>> = Default::default();
    for r in repairs {
        let (group, folder) = match r {
            Repair::Tag(repo, tag) => (Group::Tags(repo), Folder::Tag(tag, None)),
            Repair::Revision(repo, d) => (Group::Revisions(repo), Folder::Link(*d)),
            Repair::RevisionLeftover(repo, d) => (Group::Revisions(repo), Folder::Leftover(*d)),
            Repair::IndexEntry(repo, tag, d) => (Group::TagIndex(repo, tag), Folder::Link(*d)),
            Repair::LayerLink(repo, d) => (Group::Layers(repo), Folder::Link(*d)),
            Repair::LayerLeftover(repo, d) => (Group::Layers(repo), Folder::Leftover(*d)),
        };
        groups.entry(group).or_default().push(folder);
    }
    let mut stages: [Vec<Batch>; 3] = Default::default();
    for (group, folders) in groups {
        let (parent, what) = group.parent();
        stages[group.stage()].push(Batch { parent, repo: None, what, folders });
    }
    let tally = Tally::new(0);
    for (name, batches) in [Stage::Tags, Stage::Manifests, Stage::Links].into_iter().zip(&stages) {
        if batches.is_empty() {
            continue;
        }
        store.check_lock()?;
        if !store.remove(&Removal { stage: name, batches, since: Some(since), tally: &tally, progress }) {
            break;
        }
    }
    let outcome = tally.into_outcome(Vec::new());
    if outcome.interrupted {
        anyhow::bail!("repair interrupted: run it again to finish");
    }
    Ok(Repaired {
        gone: outcome.gone.iter().flatten().sum(),
        left_young: outcome.rescued.iter().sum(),
        failed: outcome.failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest([n; 32])
    }

    fn judged(seen: &RepoSeen, blobs: &Blobs) -> (Judged, Vec<Problem>) {
        let at = |rel: &str| format!("store:/{rel}");
        let judge = Judge::new(&at);
        let out = judge.repository(seen, blobs, &|_| Ok(None));
        (out, judge.problems())
    }

    #[test]
    fn the_text_names_kinds_as_the_json_does() {
        let p = Problem {
            kind: Kind::TmpFile,
            repo: Some("team/app".into()),
            path: "/s/link.x.tmp".into(),
            detail: "left by an interrupted write".into(),
            breaks_pull: false,
            repairable: false,
        };
        let text = CheckReport { problems: vec![p], ..CheckReport::default() }.text();
        assert!(text.contains("leftover tmp_file team/app: left by"), "{text}");
        assert_eq!(Kind::V3Unservable.name(), "v3_unservable");
    }

    #[test]
    fn links_to_nothing_are_repaired_and_named_where_the_backend_shows_them() {
        // Revision 1 has no blob, tag v points to it, tag g to a manifest not held; layer link 3
        // names a blob that is gone.
        let seen = RepoSeen {
            name: "a/b".into(),
            layers: vec![(d(3), Entry::Link(Link::To(d(3))))],
            revisions: vec![(d(1), Entry::Link(Link::To(d(1))))],
            tags: vec![
                TagSeen { name: "v".into(), current: Some(Link::To(d(1))), history: vec![(d(1), None)] },
                TagSeen { name: "g".into(), current: Some(Link::To(d(2))), history: vec![] },
            ],
        };
        let (out, problems) = judged(&seen, &Blobs::default());
        assert_eq!((out.tags, out.manifests), (2, 1));
        let mut repairs = out.repairs;
        repairs.sort();
        assert_eq!(
            repairs,
            [
                Repair::Tag("a/b".into(), "g".into()),
                Repair::Tag("a/b".into(), "v".into()),
                Repair::Revision("a/b".into(), d(1)),
                Repair::LayerLink("a/b".into(), d(3)),
            ]
        );
        let named: Vec<(Kind, &str, bool)> = problems.iter().map(|p| (p.kind, p.path.as_str(), p.repairable)).collect();
        let rev = format!("store:/repositories/a/b/_manifests/revisions/sha256/{}/link", d(1).hex());
        let layer = format!("store:/repositories/a/b/_layers/sha256/{}/link", d(3).hex());
        assert_eq!(
            named,
            [
                (Kind::DanglingLayerLink, layer.as_str(), true),
                (Kind::RevisionWithoutBlob, rev.as_str(), true),
                (Kind::TagBroken, "store:/repositories/a/b/_manifests/tags/g/current/link", true),
                (Kind::TagBroken, "store:/repositories/a/b/_manifests/tags/v/current/link", true),
            ]
        );
    }

    #[test]
    fn what_registry_3_will_not_serve_is_named_and_breaks_no_pull() {
        // 1 schema 1, tagged s1; 2 an index over image 3 and schema 1 child 1, tagged multi;
        // 3 an image, tagged img; 4 schema 1 untagged; 5 schema 1 needing a blob the store
        // lacks, tagged gone (broken: that verdict only).
        let s1 = |layer: u8| format!(r#"{{"schemaVersion":1,"fsLayers":[{{"blobSum":"{}"}}]}}"#, d(layer));
        let docs: DigestMap<String> = [
            (d(1), s1(10)),
            (d(2), format!(r#"{{"schemaVersion":2,"manifests":[{{"digest":"{}"}},{{"digest":"{}"}}]}}"#, d(3), d(1))),
            (d(3), format!(r#"{{"schemaVersion":2,"config":{{"digest":"{}"}},"layers":[]}}"#, d(10))),
            (d(4), s1(10)),
            (d(5), s1(11)),
        ]
        .into_iter()
        .collect();
        let tag = |name: &str, n: u8| TagSeen { name: name.into(), current: Some(Link::To(d(n))), history: vec![] };
        let seen = RepoSeen {
            name: "r".into(),
            layers: [10, 11].map(|n| (d(n), Entry::Link(Link::To(d(n))))).to_vec(),
            revisions: (1..=5).map(|n| (d(n), Entry::Link(Link::To(d(n))))).collect(),
            tags: vec![tag("s1", 1), tag("multi", 2), tag("img", 3), tag("gone", 5)],
        };
        let blobs = Blobs { present: [d(10)].into_iter().collect(), ..Blobs::default() };
        let at = |rel: &str| rel.to_string();
        let judge = Judge::new(&at);
        judge.repository(&seen, &blobs, &|x| Ok(docs.get(x).map(|j| j.clone().into_bytes())));
        let problems = judge.problems();
        let v3: Vec<&str> = problems.iter().filter(|p| p.kind == Kind::V3Unservable).map(|p| p.path.as_str()).collect();
        let revision4 = format!("repositories/r/_manifests/revisions/sha256/{}/link", d(4).hex());
        assert_eq!(
            v3,
            [
                revision4.as_str(),
                "repositories/r/_manifests/tags/multi/current/link",
                "repositories/r/_manifests/tags/s1/current/link",
            ]
        );
        assert!(problems.iter().filter(|p| p.kind == Kind::V3Unservable).all(|p| !p.breaks_pull && !p.repairable));
        let multi = problems.iter().find(|p| p.path.contains("/multi/")).unwrap();
        assert!(
            multi.detail.contains(&format!("its child {} is a Docker schema 1 manifest", d(1))),
            "{}",
            multi.detail
        );
        let broken: Vec<&str> = problems.iter().filter(|p| p.breaks_pull).map(|p| p.path.as_str()).collect();
        assert_eq!(broken, ["repositories/r/_manifests/tags/gone/current/link"]);
        // Alone, they make no broken store: a store 2.8 serves whole exits 0; judged as 3.x
        // serves it, they break a pull.
        let problems = problems.into_iter().filter(|p| p.kind == Kind::V3Unservable).collect();
        let mut report = CheckReport { problems, ..CheckReport::default() };
        assert!(!report.broken());
        assert!(report.text().contains("3 tags or manifests registry 3.x will not serve"), "{}", report.text());
        report.as_served_by_v3();
        assert!(report.broken() && report.problems.iter().all(|p| p.breaks_pull));
    }

    #[test]
    fn folders_without_their_link_are_leftovers_or_interrupted_writes() {
        let seen = RepoSeen {
            name: "r".into(),
            layers: vec![(d(1), Entry::Empty { old: true }), (d(2), Entry::Empty { old: false })],
            revisions: vec![(d(3), Entry::Partial)],
            tags: vec![TagSeen { name: "t".into(), current: Some(Link::To(d(3))), history: vec![] }],
        };
        let (out, problems) = judged(&seen, &Blobs::default());
        assert_eq!(out.repairs, [Repair::LayerLeftover("r".into(), d(1))]);
        let kinds: Vec<(Kind, bool)> = problems.iter().map(|p| (p.kind, p.repairable)).collect();
        assert_eq!(
            kinds,
            [
                (Kind::RegistryLeftover, true),
                (Kind::RegistryLeftover, false),
                (Kind::Incomplete, false),
                (Kind::TagBroken, false),
            ]
        );
        assert!(problems[2].path.ends_with(&format!("{}/link", d(3).hex())));
        assert!(problems[3].detail.ends_with("its revision link is malformed or missing"), "{}", problems[3].detail);
    }
}
