//! The intent journal's rules (docs/DESIGN.md section 4): what a run does with the journal an
//! interrupted run left. Its tags are deleted whatever this run's policy, unless pushed again
//! since; its manifests written again since start no cascade; and the journal this run writes
//! drops both. Pure: the journal's data is `model::journal`, its encoding `store::journal`, and
//! where these rules are applied (per repository, then once over the plan) is `lib.rs`'s order.

use crate::core::in_use::InUse;
use crate::core::policy::{Reason, Verdict};
use crate::model::digest::{Digest, DigestSet};
use crate::model::inventory::Repo;
use crate::model::journal::Journal;

/// Of one repository, the journal entries an interrupted run left that are void now: its
/// journaled tags pushed again since, and its journaled manifests written again since.
#[derive(Debug, Default)]
pub struct Void {
    pub tags: Vec<String>,
    pub manifests: Vec<Digest>,
}

/// The journal's rules on one repository: `decisions` (aligned with its tags) delete the tags
/// the interrupted run was deleting, unless void; returns what is void.
pub fn finish(repo: &Repo, journal: &Journal, in_use: Option<&InUse>, decisions: &mut [Verdict]) -> Void {
    Void { tags: finish_journaled_tags(repo, journal, in_use, decisions), manifests: pushed_again(repo, journal) }
}

/// The journaled manifests of a repository written again since the journal (pushed again
/// after the crash, or written back by the interrupted run for a push): no cascade from them.
pub fn pushed_again(repo: &Repo, journal: &Journal) -> Vec<Digest> {
    let (Some(written), Some(manifests)) = (journal.written, journal.manifests.get(&repo.name)) else {
        return Vec::new();
    };
    // A tag's digest cascades as before (a tag pushed again keeps it by being kept).
    let tags: DigestSet = journal.repos.get(&repo.name).into_iter().flat_map(|t| t.values().copied()).collect();
    repo.revisions
        .iter()
        .filter(|r| r.modified > written && manifests.contains(&r.digest) && !tags.contains(&r.digest))
        .map(|r| r.digest)
        .collect()
}

/// The tags an interrupted run was deleting are deleted, whatever this run's policy, unless
/// they were pushed again since the journal was written (then they point elsewhere, or their
/// link is younger than the journal), or this run's `--keep-in-use` names them (something runs
/// them now): those are returned, their journal entries void.
fn finish_journaled_tags(
    repo: &Repo,
    journal: &Journal,
    in_use: Option<&InUse>,
    decisions: &mut [Verdict],
) -> Vec<String> {
    let Some(tags) = journal.repos.get(&repo.name) else {
        return Vec::new();
    };
    let mut void = Vec::new();
    for (t, d) in repo.tags.iter().zip(decisions.iter_mut()) {
        let Some(j) = tags.get(&t.name) else { continue };
        let untouched = match t.current {
            None => true,
            Some(c) => {
                c == *j
                    && journal.written.is_none_or(|w| t.pushed <= w)
                    && !in_use.is_some_and(|u| u.tag(&repo.name, &t.name))
            }
        };
        if untouched {
            *d = Verdict::Delete(Reason::Interrupted);
        } else {
            void.push(t.name.clone());
        }
    }
    void
}

/// The journal this run writes (`journal`, the plan's) drops the void entries of each
/// repository: after another crash, the next run must not take them for this run's.
pub fn drop_void(journal: &mut Journal, void: impl IntoIterator<Item = (String, Void)>) {
    for (repo, void) in void {
        if let Some(entries) = journal.repos.get_mut(&repo) {
            entries.retain(|t, _| !void.tags.contains(t));
        }
        if let Some(entries) = journal.manifests.get_mut(&repo) {
            entries.retain(|d| !void.manifests.contains(d));
        }
    }
    journal.repos.retain(|_, tags| !tags.is_empty());
    journal.manifests.retain(|_, manifests| !manifests.is_empty());
}
