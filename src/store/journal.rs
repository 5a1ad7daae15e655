//! The intent journal's encoding (docs/DESIGN.md section 4): before the first deletion, the tags
//! being deleted and the digests they point to are written into the store. A rerun after a crash, of any kind, deletes
//! the journaled tags still there and cascades from their digests exactly as the interrupted run
//! did, instead of keeping their manifests as "untagged on purpose".

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

use crate::core::plan::{Action, RepoPlan};
use crate::model::digest::Digest;
use crate::model::journal::{Journal, VERSION};

/// A journal larger than this is no regsweep journal.
pub(crate) const MAX_SIZE: u64 = 256 << 20;

/// Parses a journal's content; `shown` names where it was read.
pub fn decode(bytes: &[u8], shown: &str) -> Result<Journal> {
    let j: Journal = serde_json::from_slice(bytes).with_context(|| {
        format!("corrupt journal {shown} (move it away only if you know the run it belongs to finished)")
    })?;
    if j.version != VERSION {
        bail!("journal {shown} has version {}, this regsweep reads {VERSION}", j.version);
    }
    Ok(j)
}

/// The journal of a run about to carry out a plan: the earlier run's tags and the plan's deleted
/// ones, serialized straight from the plan (no second copy of every tag name in memory).
struct Planned<'a> {
    earlier: &'a Journal,
    repos: &'a [RepoPlan],
}

impl Planned<'_> {
    /// The tags of one planned repository to journal.
    fn tags<'b>(&'b self, r: &'b RepoPlan) -> BTreeMap<&'b str, Digest> {
        let earlier = self.earlier.repos.get(&r.name).into_iter().flatten().map(|(t, d)| (t.as_str(), *d));
        let deleted = r.tags.iter().filter(|t| t.action != Action::Keep).filter_map(|t| Some((t.name, t.digest?)));
        earlier.chain(deleted).collect()
    }

    /// The manifests of one planned repository to journal: those with an edge to other removed
    /// ones (the manifests stage deletes them before what they reach).
    fn manifests<'b>(&'b self, r: &'b RepoPlan) -> BTreeSet<Digest> {
        let earlier = self.earlier.manifests.get(&r.name).into_iter().flatten().copied();
        earlier.chain(r.removed_edges.iter().map(|(from, _)| *from)).collect()
    }

    fn is_empty(&self) -> bool {
        self.earlier.is_empty() && self.repos.iter().all(|r| self.tags(r).is_empty() && r.removed_edges.is_empty())
    }

    /// True when every tag the plan deletes is in the earlier journal already: the journal on
    /// disk says it all (a gc finishing an interrupted run writes nothing, even on a full disk).
    fn adds_nothing(&self) -> bool {
        self.repos.iter().all(|r| {
            let earlier = self.earlier.repos.get(&r.name);
            let manifests = self.earlier.manifests.get(&r.name);
            r.tags
                .iter()
                .filter(|t| t.action != Action::Keep)
                .all(|t| t.digest.is_none_or(|d| earlier.and_then(|e| e.get(t.name)) == Some(&d)))
                && r.removed_edges.iter().all(|(from, _)| manifests.is_some_and(|m| m.contains(from)))
        })
    }
}

impl Serialize for Planned<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Repos<'a>(&'a Planned<'a>);
        impl Serialize for Repos<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let planned: BTreeSet<&str> = self.0.repos.iter().map(|r| r.name.as_str()).collect();
                let mut m = s.serialize_map(None)?;
                for r in self.0.repos {
                    let tags = self.0.tags(r);
                    if !tags.is_empty() {
                        m.serialize_entry(&r.name, &tags)?;
                    }
                }
                for (name, tags) in self.0.earlier.repos.iter().filter(|(n, _)| !planned.contains(n.as_str())) {
                    m.serialize_entry(name, tags)?;
                }
                m.end()
            }
        }
        struct Manifests<'a>(&'a Planned<'a>);
        impl Serialize for Manifests<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let planned: BTreeSet<&str> = self.0.repos.iter().map(|r| r.name.as_str()).collect();
                let mut m = s.serialize_map(None)?;
                for r in self.0.repos {
                    let manifests = self.0.manifests(r);
                    if !manifests.is_empty() {
                        m.serialize_entry(&r.name, &manifests)?;
                    }
                }
                for (name, manifests) in self.0.earlier.manifests.iter().filter(|(n, _)| !planned.contains(n.as_str()))
                {
                    m.serialize_entry(name, manifests)?;
                }
                m.end()
            }
        }
        let mut st = s.serialize_struct("Journal", 3)?;
        st.serialize_field("version", &VERSION)?;
        st.serialize_field("repos", &Repos(self))?;
        // Only when there are any: a journal without them reads as before.
        if !self.earlier.manifests.is_empty() || self.repos.iter().any(|r| !r.removed_edges.is_empty()) {
            st.serialize_field("manifests", &Manifests(self))?;
        }
        st.end()
    }
}

/// The journal of a run about to carry out a plan, as written: `None` when no tag is deleted
/// and no earlier run is unfinished, or when the earlier journal says it all already.
pub fn encode(earlier: &Journal, repos: &[RepoPlan]) -> Option<Vec<u8>> {
    let planned = Planned { earlier, repos };
    if planned.is_empty() || (!earlier.is_empty() && planned.adds_nothing()) {
        return None;
    }
    serde_json::to_vec(&planned).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::Tags;
    use crate::core::policy::Reason;

    #[test]
    fn the_written_journal_is_the_earlier_one_and_the_deleted_tags() {
        let d = |n: u8| Digest([n; 32]);
        let mut earlier = Journal::default();
        earlier.repos.entry("a".into()).or_default().insert("old".into(), d(1));
        earlier.repos.entry("gone".into()).or_default().insert("t".into(), d(2));
        let tags = |list: &[(&str, Action, Option<Digest>)]| {
            let mut tags = Tags::default();
            list.iter().for_each(|(name, action, digest)| tags.push(name, *digest, *action, Reason::Interrupted));
            tags
        };
        let repos = vec![
            RepoPlan {
                name: "a".into(),
                tags: tags(&[
                    ("old", Action::Delete, Some(d(1))),
                    ("x", Action::Untag, Some(d(3))),
                    ("k", Action::Keep, Some(d(4))),
                ]),
                ..RepoPlan::default()
            },
            RepoPlan { name: "b".into(), tags: tags(&[("k", Action::Keep, Some(d(5)))]), ..RepoPlan::default() },
        ];
        let planned = Planned { earlier: &earlier, repos: &repos };
        let written: Journal = serde_json::from_value(serde_json::to_value(&planned).unwrap()).unwrap();
        let mut expected = earlier.clone();
        expected.version = VERSION;
        expected.repos.get_mut("a").unwrap().insert("x".into(), d(3));
        assert_eq!(written, expected);
        assert!(Planned { earlier: &Journal::default(), repos: &repos[1..] }.is_empty());
    }

    #[test]
    fn the_journal_names_the_removed_manifests_that_reach_others() {
        let d = |n: u8| Digest([n; 32]);
        // A subject 1 (a deleted tag's), its referrer 2, an index listing 3.
        let repos =
            vec![RepoPlan { name: "a".into(), removed_edges: vec![(d(1), d(2)), (d(2), d(3))], ..RepoPlan::default() }];
        let planned = Planned { earlier: &Journal::default(), repos: &repos };
        assert!(!planned.is_empty(), "a plan with edges among removed manifests has something to journal");
        let written = decode(&encode(&Journal::default(), &repos).unwrap(), "test").unwrap();
        assert_eq!(written.manifests["a"], [d(1), d(2)].into_iter().collect());
        assert_eq!(written.digests("a"), [d(1), d(2)].into_iter().collect(), "the cascade starts from them");
        // Written again by a rerun that plans the same: nothing new.
        assert!(encode(&written, &repos).is_none());
        // A journal of an older version, without them, reads as before.
        let old = decode(br#"{"version":1,"repos":{"a":{"v1":"sha256:0101010101010101010101010101010101010101010101010101010101010101"}}}"#, "old").unwrap();
        assert!(old.manifests.is_empty() && old.digests("a") == [d(1)].into_iter().collect());
    }
}
