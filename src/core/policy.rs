//! Retention (docs/DESIGN.md section 3, steps 1 and 2): which tags of a repository stay and why. Pure: it
//! gets the inventory and the order keys, reads nothing and writes nothing. Attachment tags
//! (`sha256-<hex>.sig`) are left for the plan, which keeps them exactly when their subject lives.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use globset::GlobSet;
use regex::Regex;
use serde::Serialize;

use rayon::prelude::*;

use crate::core::in_use::InUse;
use crate::core::pulled::{PullTimes, time_text};
use crate::model::digest::{Digest, DigestMap};
use crate::model::inventory::{Parsed, Tag};
use crate::model::manifest;
use crate::model::warning::{Warning, WarningKind};

/// The key that orders a repository's tags, newest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// The mtime of `tags/<t>/current/link`: the tag's last push.
    Push,
    /// The image config's `created` (an index: its newest child).
    Created,
    /// The tag name as a semantic version (`1.2.3`, `v1.2.3-rc.1`).
    Semver,
    /// The tag name, numbers compared as numbers (`build-10` after `build-9`).
    Name,
    /// The tag's last pull (`--pulls`); tags never pulled last, by push time among them.
    Pull,
}

/// Repository globs as given (`--repo`, `--exclude-repo`), compiled into one set.
#[derive(Clone, Debug)]
pub struct Globs {
    pub set: GlobSet,
    pub patterns: Vec<String>,
}

impl Globs {
    pub fn is_match(&self, repo: &str) -> bool {
        self.set.is_match(repo)
    }

    /// The patterns that match none of `repos`.
    pub fn unmatched<'a>(&'a self, repos: &[String]) -> Vec<&'a str> {
        let mut hit = vec![false; self.patterns.len()];
        for r in repos {
            self.set.matches(r).into_iter().for_each(|i| hit[i] = true);
        }
        self.patterns.iter().zip(hit).filter(|(_, h)| !h).map(|(p, _)| p.as_str()).collect()
    }
}

/// What the operator asked to keep.
#[derive(Clone, Debug)]
pub struct Retention {
    pub keep: usize,
    pub order: Order,
    pub keep_tags: Vec<Regex>,
    /// `--repo`: when given, only matching repositories lose tags.
    pub repos: Option<Globs>,
    /// `--exclude-repo`: matching repositories keep every tag.
    pub exclude: Option<Globs>,
    pub older_than: Option<Duration>,
    /// `--keep-pulled-within`: also keep tags last pulled this recently (by `pulls`).
    pub pulled_within: Option<Duration>,
    /// `--pulls`: the pull records, read. Pull rules only ever add to what `keep` keeps.
    pub pulls: Option<Arc<PullTimes>>,
    /// `--keep-in-use`: the images something runs; a tag named there is kept.
    pub in_use: Option<Arc<InUse>>,
}

impl Retention {
    /// A warning when `--keep-pulled-within` reaches back before the pull record began: the
    /// tags the record cannot judge are kept, not guessed at.
    pub fn pull_warnings(&self, now: SystemTime) -> Vec<Warning> {
        let (Some(within), Some(pulls)) = (self.pulled_within, &self.pulls) else { return Vec::new() };
        if pulls.covers(within, now) {
            return Vec::new();
        }
        let began = pulls.since.map_or("at an unknown time".to_string(), |s| format!("at {}", time_text(s)));
        let message = format!(
            "--keep-pulled-within {} reaches back before the pull record began ({began}): \
             every tag not pulled since is kept, not judged",
            humantime::format_duration(within)
        );
        vec![Warning::new(WarningKind::PullRecordTooShort, message)]
    }

    /// Warnings for `--repo` and `--exclude-repo` patterns that match no repository of `repos`.
    pub fn unmatched_warnings(&self, repos: &[String]) -> Vec<Warning> {
        [("--repo", &self.repos), ("--exclude-repo", &self.exclude)]
            .into_iter()
            .flat_map(|(opt, g)| g.iter().flat_map(|g| g.unmatched(repos)).map(move |p| (opt, p)))
            .map(|(opt, p)| {
                let message =
                    format!("{opt} {p:?} matches no repository (`*` stays within one path segment; `**` crosses them)");
                Warning::new(WarningKind::UnmatchedFilter, message)
            })
            .collect()
    }

    /// True when the retention rules apply to this repository at all.
    pub fn in_scope(&self, repo: &str) -> bool {
        self.repos.as_ref().is_none_or(|g| g.is_match(repo)) && !self.exclude.as_ref().is_some_and(|g| g.is_match(repo))
    }
}

/// Why a tag stays or goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// Among the newest N.
    Count { rank: u32 },
    /// Matches a `--keep-tag` pattern.
    KeepTag { pattern: Box<str> },
    /// Younger than `--older-than`.
    Younger,
    /// Pushed within the grace period.
    Grace,
    /// Its repository is left out by `--repo` / `--exclude-repo`.
    RepoFiltered,
    /// Its order key cannot be read (no `created`, not a version): never guessed at.
    NoKey,
    /// Every tag of the repository has the same push time: `push` order means nothing there.
    UniformPushTimes,
    /// The tag has no `current/link`.
    NoCurrentLink,
    /// `gc` touches no tag.
    NotPruned,
    /// An attachment tag whose subject stays.
    SubjectKept { subject: Box<Digest> },
    /// An attachment tag whose subject is not a manifest of this repository.
    SubjectElsewhere { subject: Box<Digest> },
    /// An attachment tag whose subject is a manifest of another repository of the store
    /// (`--delete-orphan-attachments` looked).
    SubjectInRepo(Box<SubjectRepo>),
    /// An attachment tag whose subject is a manifest of no repository of the store
    /// (`--delete-orphan-attachments`).
    SubjectMissing { subject: Box<Digest> },
    /// Beyond the newest N and protected by nothing.
    BeyondCount { rank: u32 },
    /// An attachment tag whose subject goes.
    SubjectGone { subject: Box<Digest> },
    /// An interrupted run was deleting it (the journal): this run finishes the job.
    Interrupted,
    /// Online: the registry cannot delete a tag alone (2.8) and its manifest must stay.
    UntagRefused,
    /// Pulled within `--keep-pulled-within`.
    PulledWithin,
    /// Not pulled since the pull record began, and `--keep-pulled-within` reaches before that:
    /// not judged, kept.
    PullRecordTooShort,
    /// Named by a `--keep-in-use` reference: something runs it.
    InUse,
}

/// Where the subject of an attachment tag lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SubjectRepo {
    pub subject: Digest,
    pub repo: Box<str>,
}

/// The decision on one tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Left to the plan: an attachment tag follows its subject, which only the plan knows.
    Undecided,
    Keep(Reason),
    Delete(Reason),
}

impl Verdict {
    /// True for [`Verdict::Keep`].
    pub fn is_keep(&self) -> bool {
        matches!(self, Verdict::Keep(_))
    }
}

/// The subject of an attachment tag (its rule lives with the other name rules).
pub use crate::model::name::attachment_subject;

/// Compares names with runs of digits compared as numbers.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, _) => return Ordering::Less,
            (_, None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let la = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let lb = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (&a[..la], &b[..lb]);
                let strip = |n: &[u8]| -> usize { n.iter().take_while(|&&c| c == b'0').count() };
                let (ta, tb) = (&na[strip(na)..], &nb[strip(nb)..]);
                let ord = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb)).then_with(|| la.cmp(&lb));
                if ord != Ordering::Equal {
                    return ord;
                }
                (a, b) = (&a[la..], &b[lb..]);
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                (a, b) = (&a[1..], &b[1..]);
            }
        }
    }
}

/// A tag name as a semantic version: `MAJOR.MINOR.PATCH[-pre]`, with an optional leading `v`.
fn semver_of(tag: &str) -> Option<semver::Version> {
    let v = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
    semver::Version::parse(v).ok()
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Time(SystemTime),
    Version(semver::Version),
    Name,
    /// The last pull (never pulled: `None`, the oldest), then the push time.
    Pull(Option<SystemTime>, SystemTime),
}

/// Decides every tag of one repository. `created` holds the `created` time of tag manifests
/// (for `--order created` and `--older-than` with it). Returns the decisions, aligned with
/// `tags`, and warnings for the operator.
pub fn decide(
    repo: &str,
    tags: &[Tag],
    r: &Retention,
    created: &DigestMap<Option<SystemTime>>,
    grace: Duration,
    now: SystemTime,
) -> (Vec<Verdict>, Vec<Warning>) {
    decide_pulled(repo, tags, r, created, &[], grace, now)
}

/// [`decide`] with each tag's last pull (aligned with `tags`; empty without `--pulls`), for
/// `--order pull` and `--keep-pulled-within`.
pub fn decide_pulled(
    repo: &str,
    tags: &[Tag],
    r: &Retention,
    created: &DigestMap<Option<SystemTime>>,
    pulled: &[Option<SystemTime>],
    grace: Duration,
    now: SystemTime,
) -> (Vec<Verdict>, Vec<Warning>) {
    let pulled_of = |i: usize| pulled.get(i).copied().flatten();
    let mut out: Vec<Verdict> = vec![Verdict::Undecided; tags.len()];
    let mut warnings = Vec::new();
    let in_scope = r.in_scope(repo);
    let created_of = |t: &Tag| t.current.and_then(|d| created.get(&d).copied().flatten());
    let mut ranked: Vec<(Key, usize)> = Vec::new();
    for (i, t) in tags.iter().enumerate() {
        let attachment = attachment_subject(&t.name).is_some();
        out[i] = if !in_scope {
            Verdict::Keep(Reason::RepoFiltered)
        } else if t.current.is_none() {
            Verdict::Keep(Reason::NoCurrentLink)
        } else if attachment {
            Verdict::Undecided
        } else {
            let key = match r.order {
                Order::Push => Some(Key::Time(t.pushed)),
                Order::Created => created_of(t).map(Key::Time),
                Order::Semver => semver_of(&t.name).map(Key::Version),
                Order::Name => Some(Key::Name),
                Order::Pull => Some(Key::Pull(pulled_of(i), t.pushed)),
            };
            match key {
                Some(k) => {
                    ranked.push((k, i));
                    continue;
                }
                None => Verdict::Keep(Reason::NoKey),
            }
        };
    }
    // Uniform: two or more tags with one push time, to the precision the file system keeps (a
    // copy that lost its mtimes). One tag alone is no evidence of anything.
    let uniform = ranked.len() >= 2 && ranked.windows(2).all(|w| w[0].0 == w[1].0);
    if r.order == Order::Push && ranked.len() > r.keep && uniform {
        let message = format!(
            "{repo}: all {} tags have the same push time (a copy that lost its mtimes?): \
                 push order means nothing here, every tag is kept; use --order created, semver or name",
            ranked.len()
        );
        warnings.push(Warning::new(WarningKind::UniformPushTimes, message).about(repo));
        for (_, i) in &ranked {
            out[*i] = Verdict::Keep(Reason::UniformPushTimes);
        }
        ranked.clear();
    }
    // Newest first; ties by tag name.
    ranked.sort_by(|(ka, ia), (kb, ib)| {
        kb.cmp(ka).then_with(|| match r.order {
            Order::Name => natural_cmp(&tags[*ib].name, &tags[*ia].name),
            _ => tags[*ia].name.cmp(&tags[*ib].name),
        })
    });
    for (rank, (_, i)) in (1u32..).zip(&ranked) {
        out[*i] = if rank as usize <= r.keep {
            Verdict::Keep(Reason::Count { rank })
        } else {
            protection(repo, &tags[*i], r, created_of(&tags[*i]), grace, now)
                .or_else(|| pull_protection(r, pulled_of(*i), now))
                .map_or(Verdict::Delete(Reason::BeyondCount { rank }), Verdict::Keep)
        };
    }
    for (i, t) in tags.iter().enumerate() {
        if out[i] == Verdict::Undecided
            && let Some(p) = protection(repo, t, r, None, grace, now)
        {
            out[i] = Verdict::Keep(p);
        }
    }
    (out, warnings)
}

/// What protects a tag beyond the count: `--keep-in-use`, a `--keep-tag` pattern, `--older-than`,
/// the grace period.
fn protection(
    repo: &str,
    t: &Tag,
    r: &Retention,
    created: Option<SystemTime>,
    grace: Duration,
    now: SystemTime,
) -> Option<Reason> {
    if r.in_use.as_ref().is_some_and(|u| u.tag(repo, &t.name)) {
        return Some(Reason::InUse);
    }
    if let Some(p) = r.keep_tags.iter().find(|p| p.is_match(&t.name)) {
        return Some(Reason::KeepTag { pattern: p.as_str().into() });
    }
    let age = |since: SystemTime| now.duration_since(since).unwrap_or_default();
    if let Some(older) = r.older_than {
        let born = if r.order == Order::Created { created.unwrap_or(t.pushed) } else { t.pushed };
        if age(born) < older {
            return Some(Reason::Younger);
        }
    }
    (age(t.pushed) < grace).then_some(Reason::Grace)
}

/// What protects a tag beyond the count by its last pull (`--keep-pulled-within`): a pull in
/// the window, or a record too short to tell (never guessed). Attachment tags follow their
/// subject instead.
fn pull_protection(r: &Retention, pulled: Option<SystemTime>, now: SystemTime) -> Option<Reason> {
    let (within, pulls) = (r.pulled_within?, r.pulls.as_ref()?);
    if pulled.is_some_and(|p| now.duration_since(p).unwrap_or_default() < within) {
        Some(Reason::PulledWithin)
    } else if !pulls.covers(within, now) {
        Some(Reason::PullRecordTooShort)
    } else {
        None
    }
}

/// The `created` time of each manifest asked for: an image's config `created`, an index's newest
/// child, a schema1 manifest's top history entry. `None` where it cannot be read. `config` reads
/// a config blob (from the store, or over the API).
pub fn created_times(
    manifests: &DigestMap<Parsed>,
    digests: &[Digest],
    config: &(dyn Fn(&Digest) -> Option<Vec<u8>> + Sync),
) -> DigestMap<Option<SystemTime>> {
    let image_created = |d: &Digest| -> Option<SystemTime> {
        let m = manifests.get(d).and_then(Parsed::manifest)?;
        let text = match (&m.created, &m.config) {
            (Some(c), _) => c.to_string(),
            (None, Some(cfg)) => manifest::parse_created(&config(cfg)?)?,
            _ => return None,
        };
        chrono::DateTime::parse_from_rfc3339(&text).ok().map(SystemTime::from)
    };
    digests
        .par_iter()
        .map(|d| {
            let t = match manifests.get(d).and_then(Parsed::manifest) {
                Some(m) if m.is_index() => m.children.iter().filter_map(&image_created).max(),
                _ => image_created(d),
            };
            (*d, t)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn at(days: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 * DAY + days * DAY)
    }

    fn tag(name: &str, digest: u8, pushed_day: u64) -> Tag {
        Tag { name: name.into(), current: Some(Digest([digest; 32])), pushed: at(pushed_day) }
    }

    fn retention(keep: usize, order: Order) -> Retention {
        Retention {
            keep,
            order,
            keep_tags: vec![],
            repos: None,
            exclude: None,
            older_than: None,
            pulled_within: None,
            pulls: None,
            in_use: None,
        }
    }

    fn kept(tags: &[Tag], r: &Retention) -> Vec<String> {
        let (d, _) = decide("r", tags, r, &DigestMap::default(), Duration::from_secs(3600), at(100));
        tags.iter().zip(d).filter(|(_, d)| d.is_keep()).map(|(t, _)| t.name.clone()).collect()
    }

    #[test]
    fn push_order_keeps_the_newest() {
        let tags = vec![tag("a", 1, 3), tag("b", 2, 1), tag("c", 3, 2), tag("d", 4, 5)];
        assert_eq!(kept(&tags, &retention(2, Order::Push)), ["a", "d"]);
    }

    #[test]
    fn uniform_push_times_keep_everything() {
        let tags = vec![tag("a", 1, 3), tag("b", 2, 3), tag("c", 3, 3)];
        let (d, w) = decide("r", &tags, &retention(1, Order::Push), &DigestMap::default(), Duration::ZERO, at(100));
        assert!(d.iter().all(|d| d == &Verdict::Keep(Reason::UniformPushTimes)));
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn keep_zero_deletes_a_single_tag_and_close_push_times_are_not_uniform() {
        let (d, w) = decide(
            "r",
            &[tag("only", 1, 3)],
            &retention(0, Order::Push),
            &DigestMap::default(),
            Duration::ZERO,
            at(100),
        );
        assert_eq!(d[0], Verdict::Delete(Reason::BeyondCount { rank: 1 }));
        assert!(w.is_empty());
        let ms = |n: u64| at(3) + Duration::from_millis(300 * n);
        let tags: Vec<Tag> = (0..3).map(|n| Tag { pushed: ms(n), ..tag(&format!("t{n}"), n as u8, 0) }).collect();
        assert_eq!(kept(&tags, &retention(1, Order::Push)), ["t2"], "0.3 s apart are three push times");
    }

    #[test]
    fn semver_and_name_orders() {
        let tags = vec![
            tag("1.2.0", 1, 1),
            tag("v1.10.0", 2, 1),
            tag("1.9.3", 3, 2),
            tag("latest", 4, 3),
            tag("2.0.0-rc.1", 5, 0),
        ];
        assert_eq!(kept(&tags, &retention(2, Order::Semver)), ["v1.10.0", "latest", "2.0.0-rc.1"]);
        let tags = vec![tag("build-9", 1, 1), tag("build-10", 2, 1), tag("build-8", 3, 1), tag("build-09", 4, 1)];
        assert_eq!(kept(&tags, &retention(2, Order::Name)), ["build-10", "build-09"]);
    }

    #[test]
    fn created_order_keeps_tags_without_created() {
        let tags = vec![tag("a", 1, 1), tag("b", 2, 2), tag("c", 3, 3)];
        let created = DigestMap::from_iter([
            (Digest([1; 32]), Some(at(9))),
            (Digest([2; 32]), Some(at(1))),
            (Digest([3; 32]), None),
        ]);
        let (d, _) = decide("r", &tags, &retention(1, Order::Created), &created, Duration::ZERO, at(100));
        assert_eq!(d[0], Verdict::Keep(Reason::Count { rank: 1 }));
        assert_eq!(d[1], Verdict::Delete(Reason::BeyondCount { rank: 2 }));
        assert_eq!(d[2], Verdict::Keep(Reason::NoKey));
    }

    #[test]
    fn filters_protect() {
        let tags = vec![tag("v1", 1, 1), tag("stable", 2, 2), tag("v3", 3, 98), tag("v4", 4, 99), tag("v5", 5, 3)];
        let mut r = retention(1, Order::Push);
        r.keep_tags = vec![Regex::new("^stable$").unwrap()];
        r.older_than = Some(Duration::from_secs(5 * DAY));
        assert_eq!(kept(&tags, &r), ["stable", "v3", "v4"]);
        let mut glob = globset::GlobSetBuilder::new();
        glob.add(globset::GlobBuilder::new("team/*").literal_separator(true).build().unwrap());
        r.exclude = Some(Globs { set: glob.build().unwrap(), patterns: vec!["team/*".into()] });
        assert!(!r.in_scope("team/app") && r.in_scope("team/app/tools") && r.in_scope("other"));
    }

    #[test]
    fn pulls_keep_beside_the_count_never_guess_and_order() {
        let tags = vec![tag("a", 1, 5), tag("b", 2, 4), tag("c", 3, 3), tag("d", 4, 2)];
        let pulled = [None, None, Some(at(95)), Some(at(80))];
        let decided = |r: &Retention| {
            let (d, _) = decide_pulled("r", &tags, r, &DigestMap::default(), &pulled, Duration::ZERO, at(100));
            d
        };
        let mut r = retention(1, Order::Push);
        r.pulled_within = Some(Duration::from_secs(10 * DAY));
        r.pulls = Some(Arc::new(PullTimes::new(Some(at(0)), Some(at(95)))));
        assert_eq!(
            decided(&r),
            [
                Verdict::Keep(Reason::Count { rank: 1 }),
                Verdict::Delete(Reason::BeyondCount { rank: 2 }),
                Verdict::Keep(Reason::PulledWithin),
                Verdict::Delete(Reason::BeyondCount { rank: 4 }),
            ]
        );
        assert!(r.pull_warnings(at(100)).is_empty());
        // A record begun 8 days ago cannot tell a 10-day window: b and d are kept, said once.
        r.pulls = Some(Arc::new(PullTimes::new(Some(at(92)), Some(at(95)))));
        assert_eq!(decided(&r)[1], Verdict::Keep(Reason::PullRecordTooShort));
        assert_eq!(decided(&r)[3], Verdict::Keep(Reason::PullRecordTooShort));
        let w = r.pull_warnings(at(100));
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].kind, WarningKind::PullRecordTooShort);
        assert!(w[0].message.contains("--keep-pulled-within 10days"), "{}", w[0].message);
        // Without a window, pulls only order: c and d were pulled, a and b never (by push).
        let mut r = retention(2, Order::Pull);
        r.pulls = Some(Arc::new(PullTimes::new(Some(at(0)), Some(at(95)))));
        assert_eq!(
            decided(&r),
            [
                Verdict::Delete(Reason::BeyondCount { rank: 3 }),
                Verdict::Delete(Reason::BeyondCount { rank: 4 }),
                Verdict::Keep(Reason::Count { rank: 1 }),
                Verdict::Keep(Reason::Count { rank: 2 }),
            ]
        );
    }

    #[test]
    fn a_tag_in_use_is_kept_beyond_the_count_in_its_repository_only() {
        use crate::core::in_use::{InUse, read};
        let tags = vec![tag("v3", 3, 3), tag("v2", 2, 2), tag("v1", 1, 1)];
        let u = InUse::new(vec![("l".into(), read("r:v1\nother:v2\n", "l").unwrap())], &[]).unwrap();
        let mut r = retention(1, Order::Push);
        r.in_use = Some(Arc::new(u));
        let (d, _) = decide("r", &tags, &r, &DigestMap::default(), Duration::ZERO, at(100));
        assert_eq!(
            d,
            [
                Verdict::Keep(Reason::Count { rank: 1 }),
                Verdict::Delete(Reason::BeyondCount { rank: 2 }),
                Verdict::Keep(Reason::InUse),
            ]
        );
    }

    #[test]
    fn attachment_tags_are_recognised() {
        let hex = "ab".repeat(32);
        assert!(attachment_subject(&format!("sha256-{hex}")).is_some());
        assert!(attachment_subject(&format!("sha256-{hex}.sig")).is_some());
        assert!(attachment_subject(&format!("sha256-{hex}.att")).is_some());
        assert!(attachment_subject(&format!("sha256-{hex}sig")).is_none());
        assert!(attachment_subject(&format!("sha256-{hex}.")).is_none());
        assert!(attachment_subject("sha256-abc.sig").is_none());
        let tags = vec![tag(&format!("sha256-{hex}.sig"), 1, 1), tag("v1", 2, 2)];
        let (d, _) = decide("r", &tags, &retention(0, Order::Push), &DigestMap::default(), Duration::ZERO, at(100));
        assert_eq!(d[0], Verdict::Undecided);
    }
}
