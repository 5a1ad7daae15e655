//! The guard of `--delete-untagged` (issue 35, docs/DESIGN.md section 3): a store whose tags
//! live elsewhere. Harbor 2.15 and later keep tags only in their database (goharbor/harbor#22507):
//! everything pushed since the upgrade has a revision and layer links but no tag in storage, so
//! `--delete-untagged` would delete every image pushed since, and on a store with no tag at all,
//! everything. Found while planning, from what the plan reads anyway; decided once, here.
//!
//! The signature, over the whole store: (a) no repository has a tag, and some manifest would
//! go; or (b) at least [`MIN_NEWER`] manifests that no tag names and no other manifest of their
//! repository reaches (not an index's child, not a referrer of one there), older than the grace
//! period, were written after the newest tag of the whole store (by more than [`NEWER_BY`]). A
//! store that tags what it pushes has its newest tag after its newest images; an untagged
//! manifest there is an earlier push of a tag, older than the tag. One such manifest alone is no
//! pattern (a copy by digest into another repository, the newest tag deleted through the API):
//! two are. Online mode sees only (a), as [`Tagless::NoTagsListed`].

use std::time::{Duration, SystemTime};

use super::{Planner, RepoCx};
use crate::core::pulled::time_text;
use crate::model::TaglessStore;
use crate::model::digest::DigestSet;
use crate::model::warning::{Warning, WarningKind};

/// How many untagged, unreferenced manifests written after the store's newest tag make the
/// signature (b).
pub const MIN_NEWER: usize = 2;

/// How much newer than the store's newest tag a manifest must be to count for (b): a store
/// copied or uploaded in one go carries the times of the copy, a few seconds apart in any
/// order (a bucket's to the second); pushes after tagging stopped are hours and days later.
pub const NEWER_BY: Duration = Duration::from_secs(10);

/// How many repositories a message names.
const NAMED: usize = 3;

/// What one repository shows the guard.
#[derive(Debug, Default)]
pub(super) struct Facts {
    name: String,
    /// It has a tag: one read with its `current` link, one counted but not read, or one an
    /// interrupted run was deleting (its journal).
    tagged: bool,
    /// The newest push of its tags (their `current/link`'s time; for the journal's tags, the
    /// journal's); `None` also when its tags were not read.
    newest_tag: Option<SystemTime>,
    /// Its tags were counted, not read: their times are unknown.
    tags_not_read: bool,
    /// In scope, the times of its manifests no tag names and no manifest of it reaches, older
    /// than the grace period: what `--delete-untagged` deletes first.
    loose: Vec<SystemTime>,
    /// In scope, its manifests older than the grace period.
    old: usize,
}

impl Planner<'_> {
    /// What the repository of `cx` shows the guard.
    pub(super) fn tagless_facts(&self, cx: &RepoCx) -> Facts {
        let repo = cx.repo;
        let journaled_tags = self.journal.and_then(|j| j.repos.get(&repo.name)).is_some_and(|t| !t.is_empty());
        let mut newest_tag = repo.tags.iter().filter(|t| t.current.is_some()).map(|t| t.pushed).max();
        if journaled_tags {
            newest_tag = newest_tag.max(self.journal.and_then(|j| j.written));
        }
        let mut facts = Facts {
            name: repo.name.clone(),
            tagged: newest_tag.is_some() || journaled_tags || repo.tags_not_read > 0,
            newest_tag,
            tags_not_read: repo.tags_not_read > 0,
            ..Facts::default()
        };
        if !cx.in_scope {
            return facts;
        }
        let mut reached = DigestSet::default();
        for r in &repo.revisions {
            if let Some(m) = cx.g.manifest(&r.digest) {
                reached.extend(m.children.iter().copied());
                if m.subject.is_some_and(|s| cx.g.revs.contains_key(&s)) {
                    reached.insert(r.digest);
                }
            }
        }
        for r in repo.revisions.iter().filter(|r| !self.young(r.modified)) {
            facts.old += 1;
            if !cx.tagged.contains(&r.digest) && !cx.journaled.contains(&r.digest) && !reached.contains(&r.digest) {
                facts.loose.push(r.modified);
            }
        }
        facts
    }
}

/// A store whose tags seem to live elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tagless {
    /// (a) No repository has a tag: `manifests` (older than the grace period) in `repositories`
    /// would all go.
    NoTags { manifests: usize, repositories: usize, named: Vec<String> },
    /// (b) `manifests` untagged and unreferenced, in `repositories`, were written after the
    /// store's newest tag (`newest_tag`).
    NewerThanTags { manifests: usize, repositories: usize, named: Vec<String>, newest_tag: SystemTime },
    /// Online, (a) as the API shows it: none of the `repositories` it lists has a tag. It
    /// lists no untagged manifest, so (b) cannot be seen there; the registry's collector with
    /// `--gc-delete-untagged` would delete every manifest of them.
    NoTagsListed { repositories: usize, named: Vec<String> },
}

/// Online: what the API shows of the signature, from the plan of what it read
/// ([`Tagless::NoTagsListed`]).
pub fn listed(plan: &super::Plan) -> Option<Tagless> {
    let tags: usize = plan.repos.iter().map(|r| r.tags.len() + r.tags_kept).sum();
    let repositories = plan.repos.len();
    let named = plan.repos.iter().take(NAMED).map(|r| r.name.clone()).collect();
    (repositories > 0 && tags == 0).then_some(Tagless::NoTagsListed { repositories, named })
}

/// The signature of the store, from each repository's facts.
pub(super) fn find(facts: &[Facts]) -> Option<Tagless> {
    let names = |it: &mut dyn Iterator<Item = &Facts>| -> (usize, Vec<String>) {
        let all: Vec<&Facts> = it.collect();
        (all.len(), all.iter().take(NAMED).map(|f| f.name.clone()).collect())
    };
    if !facts.iter().any(|f| f.tagged) {
        let manifests = facts.iter().map(|f| f.old).sum();
        let (repositories, named) = names(&mut facts.iter().filter(|f| f.old > 0));
        return (manifests > 0).then_some(Tagless::NoTags { manifests, repositories, named });
    }
    if facts.iter().any(|f| f.tags_not_read) {
        return None;
    }
    let newest_tag = facts.iter().filter_map(|f| f.newest_tag).max()?;
    let newer = |f: &Facts| f.loose.iter().filter(|t| t.duration_since(newest_tag).is_ok_and(|d| d > NEWER_BY)).count();
    let manifests: usize = facts.iter().map(newer).sum();
    let (repositories, named) = names(&mut facts.iter().filter(|f| newer(f) > 0));
    (manifests >= MIN_NEWER).then_some(Tagless::NewerThanTags { manifests, repositories, named, newest_tag })
}

impl Tagless {
    /// Why the store looks so, in words.
    fn why(&self) -> String {
        let repos = |n: usize, named: &[String]| {
            let more = if n > named.len() { format!(", ... ({n} repositories)") } else { String::new() };
            format!("{}{more}", named.join(", "))
        };
        match self {
            Tagless::NoTags { manifests, repositories, named } => format!(
                "no repository of this store has a tag, and {manifests} manifest(s) are there ({})",
                repos(*repositories, named)
            ),
            Tagless::NewerThanTags { manifests, repositories, named, newest_tag } => format!(
                "{manifests} manifest(s) that no tag names were pushed after the store's newest tag ({}), in {}",
                time_text(*newest_tag),
                repos(*repositories, named)
            ),
            Tagless::NoTagsListed { repositories, named } => {
                format!("none of the repositories the API lists has a tag ({})", repos(*repositories, named))
            }
        }
    }

    /// The option refused: online passes it to the registry's collector.
    fn flag(&self) -> &'static str {
        match self {
            Tagless::NoTagsListed { .. } => "--gc-delete-untagged",
            _ => "--delete-untagged",
        }
    }

    /// The one line of the refusal: why, and the flag that overrides it.
    pub fn refusal(&self) -> String {
        let what = match self {
            Tagless::NoTags { .. } | Tagless::NoTagsListed { .. } => "every manifest",
            Tagless::NewerThanTags { .. } => "the newest images",
        };
        format!(
            "refusing {}: {}: its tags seem to live elsewhere (Harbor 2.15 and later keep them in its \
             database), and it would delete {what}; nothing was done. --allow-tagless runs it anyway",
            self.flag(),
            self.why()
        )
    }

    /// The warning where the run goes ahead.
    pub fn warning(&self, delete_untagged: bool) -> Warning {
        let tail = if delete_untagged {
            format!("{} runs anyway (--allow-tagless)", self.flag())
        } else {
            "the tags this run ranks may be stale (Harbor 2.15 and later keep tags in its database); with \
             --delete-untagged it would be refused"
                .to_string()
        };
        Warning::new(WarningKind::TagsElsewhere, format!("{}: its tags seem to live elsewhere; {tail}", self.why()))
    }

    /// What a run that deletes nothing (`du`) says where a run with `--delete-untagged` would
    /// be refused: a warning that says so, and names the override.
    pub fn would_refuse(&self) -> Warning {
        let tail = format!("a run with {} would be refused (--allow-tagless overrides)", self.flag());
        Warning::new(WarningKind::TagsElsewhere, format!("{}: its tags seem to live elsewhere; {tail}", self.why()))
    }

    /// What a run does about it: with `--delete-untagged`, refused (a [`TaglessStore`] error)
    /// unless `allow`, then a warning; without it, a warning where the run ranks tags (`prune`)
    /// and the store has some (b), since nothing untagged goes there; else nothing.
    pub fn guard(&self, delete_untagged: bool, ranks_tags: bool, allow: bool) -> anyhow::Result<Option<Warning>> {
        match (delete_untagged, self) {
            (true, _) if !allow => Err(TaglessStore(self.refusal()).into()),
            (true, _) => Ok(Some(self.warning(true))),
            (false, Tagless::NewerThanTags { .. }) if ranks_tags => Ok(Some(self.warning(false))),
            (false, _) => Ok(None),
        }
    }
}

/// [`Tagless::guard`] of a plan's finding, if it has one.
pub fn guard(
    found: Option<&Tagless>,
    delete_untagged: bool,
    ranks_tags: bool,
    allow: bool,
) -> anyhow::Result<Option<Warning>> {
    found.map_or(Ok(None), |t| t.guard(delete_untagged, ranks_tags, allow))
}

/// [`guard`] for a run that deletes nothing (`du`): what a real run would refuse is a warning
/// ([`Tagless::would_refuse`]), never an error.
pub fn said(found: Option<&Tagless>, delete_untagged: bool, ranks_tags: bool) -> Option<Warning> {
    let t = found?;
    match t.guard(delete_untagged, ranks_tags, false) {
        Ok(w) => w,
        Err(_) => Some(t.would_refuse()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + h * 3600)
    }

    fn repo(name: &str, newest_tag: Option<u64>, loose: &[u64], old: usize) -> Facts {
        Facts {
            name: name.into(),
            tagged: newest_tag.is_some(),
            newest_tag: newest_tag.map(at),
            loose: loose.iter().map(|h| at(*h)).collect(),
            old,
            ..Facts::default()
        }
    }

    #[test]
    fn no_tag_anywhere_with_manifests_is_a_and_without_them_nothing() {
        let found = find(&[repo("a", None, &[1, 2], 3), repo("b", None, &[], 0)]);
        assert_eq!(found, Some(Tagless::NoTags { manifests: 3, repositories: 1, named: vec!["a".into()] }));
        assert_eq!(find(&[repo("a", None, &[], 0)]), None, "an empty store, or one of young pushes only");
        assert_eq!(find(&[]), None);
    }

    #[test]
    fn untagged_pushes_after_the_newest_tag_of_the_store_are_b_from_two_on() {
        // Tags up to hour 10, then pushes by digest in two repositories.
        let harbor = [repo("a", Some(10), &[3, 11, 12], 6), repo("b", Some(9), &[13], 2), repo("c", Some(5), &[1], 4)];
        let Some(Tagless::NewerThanTags { manifests, repositories, named, newest_tag }) = find(&harbor) else {
            panic!("{:?}", find(&harbor))
        };
        assert_eq!((manifests, repositories, newest_tag), (3, 2, at(10)));
        assert_eq!(named, ["a", "b"]);
        // Within seconds of the newest tag: a copy's times, not pushes after tagging stopped.
        let copied = |h: u64| at(10) + Duration::from_secs(h);
        let mut copy = repo("a", Some(10), &[], 6);
        copy.loose = vec![copied(3), copied(10)];
        assert_eq!(find(&[copy]), None);
        // One alone is no pattern; older untagged manifests (earlier pushes of a tag) none at all.
        assert_eq!(find(&[repo("a", Some(10), &[3, 11], 6), repo("b", Some(9), &[1], 2)]), None);
        assert_eq!(find(&[repo("a", Some(10), &[3, 4, 9], 6), repo("b", Some(9), &[1, 8], 2)]), None);
        // The newest tag of the store counts, wherever it is: pushes since into a repository
        // whose own tags are older are not newer than the store's tags.
        assert_eq!(find(&[repo("a", Some(10), &[], 6), repo("b", Some(2), &[3, 4, 5], 4)]), None);
        // A store's tags unread (a plain gc): its times are unknown.
        let mut unread = repo("c", None, &[20, 21], 2);
        (unread.tagged, unread.tags_not_read) = (true, true);
        assert_eq!(find(&[repo("a", Some(10), &[], 1), unread]), None);
    }

    #[test]
    fn the_guard_refuses_delete_untagged_warns_prune_and_says_the_flag() {
        let a = Tagless::NoTags { manifests: 145, repositories: 3, named: vec!["team/app".into()] };
        let b = Tagless::NewerThanTags { manifests: 2, repositories: 1, named: vec!["x".into()], newest_tag: at(0) };
        for t in [&a, &b] {
            let e = t.guard(true, false, false).unwrap_err();
            assert!(e.is::<TaglessStore>());
            let line = format!("{e}");
            assert!(!line.contains('\n') && line.contains("--allow-tagless"), "{line}");
            assert_eq!(t.guard(true, true, true).unwrap().unwrap().kind, WarningKind::TagsElsewhere);
            assert!(t.guard(false, false, false).unwrap().is_none(), "a plain gc deletes nothing untagged");
        }
        assert!(a.guard(false, true, false).unwrap().is_none(), "a prune of a store without tags deletes no tag");
        assert_eq!(b.guard(false, true, false).unwrap().unwrap().kind, WarningKind::TagsElsewhere);
        assert!(format!("{}", a.guard(true, false, false).unwrap_err()).contains("145 manifest(s)"));
        let online = Tagless::NoTagsListed { repositories: 1, named: vec!["x".into()] };
        assert!(
            format!("{}", online.guard(true, false, false).unwrap_err()).starts_with("refusing --gc-delete-untagged")
        );
    }
}
