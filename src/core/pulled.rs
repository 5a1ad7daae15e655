//! Retention by last pull (issue 25): the pull record's times as plain data, and the last pull
//! of a tag as retention counts it. The record itself (`src/pulls/`) is read at the top
//! (`lib.rs`) and handed down in this form, so that `core` imports nothing but `model`.
//!
//! The last pull of a tag is the latest of: a pull by its name; a pull of the manifest it
//! points to now (by digest, or by any tag naming that digest: a tag pulled by digest counts
//! for every tag of that digest); for an index, a pull of any of its children (a client that
//! resolved the index elsewhere, or pinned one platform, pulls only the child). Nothing here
//! ever guesses a pull: a tag the record has nothing on is "not pulled since the record
//! began", and a window reaching before that beginning cannot be judged (see
//! [`PullTimes::covers`]).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::model::digest::{Digest, DigestMap};
use crate::model::inventory::{Parsed, Tag};
use crate::model::name::attachment_subject;

/// The last pulls of one repository.
#[derive(Clone, Debug, Default)]
pub struct RepoPulls {
    /// By tag name.
    pub tags: HashMap<String, SystemTime>,
    /// By manifest digest (pulled by digest, or by a tag that named it).
    pub digests: DigestMap<SystemTime>,
    /// The latest of them all.
    pub last: Option<SystemTime>,
}

/// One or more pull records read together: the latest pull of each tag and digest.
#[derive(Clone, Debug, Default)]
pub struct PullTimes {
    repos: HashMap<String, RepoPulls>,
    /// When the record began (the earliest of the records read): before it, "not pulled"
    /// means "not known".
    pub since: Option<SystemTime>,
    /// The newest pull event the records hold.
    pub last_event: Option<SystemTime>,
    /// `--count-referrers`: a pull of a referrer (a signature, an SBOM: a manifest whose
    /// `subject` is the tag's manifest, or an attachment tag `sha256-<hex>.sig` naming it) counts
    /// as a pull of the tag.
    pub count_referrers: bool,
}

fn raise(slot: &mut Option<SystemTime>, at: SystemTime) {
    *slot = Some(slot.map_or(at, |s| s.max(at)));
}

impl PullTimes {
    pub fn new(since: Option<SystemTime>, last_event: Option<SystemTime>) -> PullTimes {
        PullTimes { repos: HashMap::new(), since, last_event, count_referrers: false }
    }

    /// A pull of `tag` at `at` (the latest one counts).
    pub fn add_tag(&mut self, repo: &str, tag: &str, at: SystemTime) {
        let r = self.repos.entry(repo.to_string()).or_default();
        let t = r.tags.entry(tag.to_string()).or_insert(at);
        *t = (*t).max(at);
        raise(&mut r.last, at);
    }

    /// A pull of the manifest `digest` at `at`.
    pub fn add_digest(&mut self, repo: &str, digest: Digest, at: SystemTime) {
        let r = self.repos.entry(repo.to_string()).or_default();
        let d = r.digests.entry(digest).or_insert(at);
        *d = (*d).max(at);
        raise(&mut r.last, at);
    }

    pub fn repo(&self, name: &str) -> Option<&RepoPulls> {
        self.repos.get(name)
    }

    /// The last pull of anything of a repository.
    pub fn last_pull(&self, repo: &str) -> Option<SystemTime> {
        self.repo(repo).and_then(|r| r.last)
    }

    /// True when the record reaches back `window` from `now`: a tag it has no pull of in that
    /// window was not pulled in it. False when the record began later (or when unknown).
    pub fn covers(&self, window: Duration, now: SystemTime) -> bool {
        match (self.since, now.checked_sub(window)) {
            (Some(since), Some(start)) => since <= start,
            _ => false,
        }
    }

    /// The last pull of each tag of a repository (aligned with `tags`), as retention counts it
    /// (see the module's text). `manifests` holds the repository's manifests, for the children
    /// of an index.
    pub fn of_tags(&self, repo: &str, tags: &[Tag], manifests: &DigestMap<Parsed>) -> Vec<Option<SystemTime>> {
        let Some(r) = self.repo(repo) else { return vec![None; tags.len()] };
        let digest = |d: &Digest| r.digests.get(d).copied();
        let referred = if self.count_referrers { referrer_pulls(r, tags, manifests) } else { DigestMap::default() };
        tags.iter()
            .map(|t| {
                let by_name = r.tags.get(&t.name).copied();
                let by_digest = t.current.and_then(|c| {
                    let children = manifests.get(&c).and_then(Parsed::manifest).map(|m| &m.children[..]);
                    let by_referrer = referred.get(&c).copied();
                    children.unwrap_or_default().iter().filter_map(digest).chain(digest(&c)).chain(by_referrer).max()
                });
                by_name.max(by_digest)
            })
            .collect()
    }

    /// What a report says of the record.
    pub fn summary(&self, now: SystemTime) -> PullSummary {
        PullSummary { since: self.since, last_event: self.last_event, now }
    }
}

/// Per subject manifest, the last pull of any of its referrers: a manifest whose `subject` it
/// is (by digest, or by a tag naming it), and an attachment tag naming it (by that tag's name).
fn referrer_pulls(r: &RepoPulls, tags: &[Tag], manifests: &DigestMap<Parsed>) -> DigestMap<SystemTime> {
    let mut last: DigestMap<SystemTime> = DigestMap::default();
    let mut note = |subject: Digest, at: Option<SystemTime>| {
        if let Some(at) = at {
            let e = last.entry(subject).or_insert(at);
            *e = (*e).max(at);
        }
    };
    for (d, p) in manifests {
        if let Some(subject) = p.manifest().and_then(|m| m.subject) {
            note(subject, r.digests.get(d).copied());
        }
    }
    for t in tags {
        if let Some(subject) = attachment_subject(&t.name) {
            let by_digest = t.current.and_then(|c| r.digests.get(&c).copied());
            note(subject, r.tags.get(&t.name).copied().max(by_digest));
        }
    }
    last
}

/// The record a run read, as its report says: `pulls` in JSON, only when `--pulls` was given.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct PullSummary {
    /// When the record began (RFC 3339, to the second).
    #[serde(serialize_with = "rfc3339")]
    pub since: Option<SystemTime>,
    /// Its newest pull event.
    #[serde(serialize_with = "rfc3339")]
    pub last_event: Option<SystemTime>,
    /// The time the plan was made for: what "3 d ago" counts from.
    #[serde(skip)]
    pub now: SystemTime,
}

impl PullSummary {
    /// How a plan line tells a tag's last pull: `pulled 3 d ago`, or `not pulled since the
    /// record began (2026-12-03)`.
    pub fn text(&self, pulled: Option<SystemTime>) -> String {
        match pulled {
            Some(p) => format!("pulled {}", ago(self.now.duration_since(p).unwrap_or_default())),
            None => match self.since {
                Some(s) => format!("not pulled since the record began ({})", &time_text(s)[..10]),
                None => "not pulled".into(),
            },
        }
    }
}

/// `2026-12-03T07:31:09Z`.
pub fn time_text(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn rfc3339<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&time_text(*t)),
        None => s.serialize_none(),
    }
}

/// `40 s ago`, `12 min ago`, `5 h ago`, `3 d ago`.
pub fn ago(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s} s ago"),
        120..7_200 => format!("{} min ago", s / 60),
        7_200..172_800 => format!("{} h ago", s / 3_600),
        _ => format!("{} d ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::{Kind, Manifest};

    const H: u64 = 3_600;

    fn at(hours: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 * H + hours * H)
    }

    fn tag(name: &str, digest: u8) -> Tag {
        Tag { name: name.into(), current: Some(Digest([digest; 32])), pushed: at(0) }
    }

    #[test]
    fn a_tag_counts_its_name_its_digest_and_its_index_children() {
        let mut p = PullTimes::new(Some(at(0)), Some(at(9)));
        p.add_tag("r", "v1", at(3));
        p.add_digest("r", Digest([1; 32]), at(5));
        p.add_digest("r", Digest([9; 32]), at(7));
        p.add_tag("other", "v2", at(9));
        let index = Manifest {
            kind: Kind::OciIndex,
            config: None,
            blobs: Box::new([]),
            children: Box::new([Digest([9; 32]), Digest([8; 32])]),
            subject: None,
            created: None,
        };
        let manifests = DigestMap::from_iter([(Digest([3; 32]), Parsed::Ok(index))]);
        let tags = [tag("v1", 1), tag("latest", 1), tag("multi", 3), tag("v2", 2)];
        assert_eq!(p.of_tags("r", &tags, &manifests), [Some(at(5)), Some(at(5)), Some(at(7)), None]);
        assert_eq!(p.of_tags("none", &tags, &manifests), [None; 4]);
        assert_eq!(p.last_pull("r"), Some(at(7)));
        assert!(p.covers(Duration::from_secs(5 * H), at(6)));
        assert!(!p.covers(Duration::from_secs(7 * H), at(6)), "the window reaches before the record");
        assert!(!PullTimes::default().covers(Duration::ZERO, at(6)), "no beginning known: nothing covered");
    }

    #[test]
    fn a_referrer_pulled_counts_for_its_subject_only_with_count_referrers() {
        let mut p = PullTimes::new(Some(at(0)), Some(at(9)));
        // A signature referrer (subject: 1) pulled by digest; a cosign tag naming 2 pulled by name.
        p.add_digest("r", Digest([5; 32]), at(6));
        p.add_tag("r", &format!("sha256-{}.sig", hex::encode([2u8; 32])), at(4));
        let image = |subject: Option<Digest>| Manifest {
            kind: Kind::OciManifest,
            config: None,
            blobs: Box::new([]),
            children: Box::new([]),
            subject,
            created: None,
        };
        let manifests = DigestMap::from_iter([
            (Digest([1; 32]), Parsed::Ok(image(None))),
            (Digest([5; 32]), Parsed::Ok(image(Some(Digest([1; 32]))))),
        ]);
        let sig = Tag {
            name: format!("sha256-{}.sig", hex::encode([2u8; 32])),
            current: Some(Digest([7; 32])),
            pushed: at(0),
        };
        let tags = [tag("v1", 1), tag("v2", 2), tag("v3", 3), sig];
        assert_eq!(p.of_tags("r", &tags, &manifests), [None, None, None, Some(at(4))], "off: as before");
        p.count_referrers = true;
        assert_eq!(p.of_tags("r", &tags, &manifests), [Some(at(6)), Some(at(4)), None, Some(at(4))]);
    }

    #[test]
    fn plan_lines_tell_the_last_pull() {
        let s = PullTimes::new(Some(at(0)), None).summary(at(80));
        assert_eq!(s.text(Some(at(8))), "pulled 3 d ago");
        assert_eq!(s.text(None), "not pulled since the record began (2084-01-29)");
        assert_eq!(ago(Duration::from_secs(90)), "90 s ago");
        assert_eq!(ago(Duration::from_secs(600)), "10 min ago");
        assert_eq!(ago(Duration::from_secs(5 * H)), "5 h ago");
    }
}
