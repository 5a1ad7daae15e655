//! `regsweep check`: what is wrong with a store, per repository, and which tags would fail a
//! pull; what every backend's check shares (the kinds of problem, the report, why a tag
//! fails). Read-only, except `--repair`, which removes links that point to nothing (never a
//! blob).

use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

use crate::model::digest::{Digest, DigestMap, DigestSet};
use crate::model::manifest::Manifest;

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
}

impl CheckReport {
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
            } else if p.repairable {
                "repairable"
            } else {
                "leftover"
            };
            let repo = p.repo.as_deref().map(|r| format!("{r}: ")).unwrap_or_default();
            s.push_str(&format!("{mark:>10} {:?} {repo}{} ({})\n", p.kind, p.detail, p.path));
        }
        s.push_str(&if self.problems.is_empty() {
            "clean\n".to_string()
        } else if self.broken() {
            format!("{} problems; some tags would fail a pull\n", self.problems.len())
        } else {
            format!("{} problems; every tag pulls\n", self.problems.len())
        });
        s
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

/// Collects problems from parallel workers.
#[derive(Default)]
pub(crate) struct Found(Mutex<Vec<Problem>>);

impl Found {
    pub(crate) fn add(&self, kind: Kind, repo: Option<&str>, path: &Path, detail: String, breaks_pull: bool) {
        let repairable = matches!(kind, Kind::RevisionWithoutBlob | Kind::DanglingLayerLink | Kind::DanglingIndexEntry);
        self.push(kind, repo, &path.display(), detail, breaks_pull, repairable);
    }

    /// A problem at `path` (a file's path, an object's URL).
    pub(crate) fn push(
        &self,
        kind: Kind,
        repo: Option<&str>,
        path: &dyn std::fmt::Display,
        detail: String,
        breaks_pull: bool,
        repairable: bool,
    ) {
        let p = Problem { kind, repo: repo.map(String::from), path: path.to_string(), detail, breaks_pull, repairable };
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(p);
    }

    /// Every problem, sorted by repository, path and kind.
    pub(crate) fn sorted(self) -> Vec<Problem> {
        let mut problems = self.0.into_inner().unwrap_or_else(|e| e.into_inner());
        problems.sort_by(|a, b| (&a.repo, &a.path, a.kind as u8).cmp(&(&b.repo, &b.path, b.kind as u8)));
        problems
    }
}

/// Why a manifest of a repository cannot be pulled.
pub(crate) struct Trouble {
    pub(crate) text: String,
    /// Its revision names a manifest blob the store lacks: the tags on it point to nothing,
    /// and `--repair` removes them.
    pub(crate) blob_gone: bool,
}

impl Trouble {
    pub(crate) fn new(text: String) -> Trouble {
        Trouble { text, blob_gone: false }
    }
}

/// Why a tag on `d` fails a pull (its own trouble, or a child's, recursively), and whether that
/// is its own manifest blob being gone.
pub(crate) fn why_broken(
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
