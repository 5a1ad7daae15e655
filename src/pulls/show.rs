//! `regsweep pulls show`: the record as a table or as JSON.

use serde::Serialize;

use super::record::Pulls;
use super::rfc3339;
use crate::model::name::printable;

#[derive(Debug, Serialize)]
pub struct Shown {
    /// When the earliest record began (RFC 3339).
    pub since: Option<String>,
    pub last_event: Option<String>,
    pub tags: Vec<ShownTag>,
    pub digests: Vec<ShownDigest>,
}

#[derive(Debug, Serialize)]
pub struct ShownTag {
    pub repository: String,
    pub tag: String,
    /// The digest the tag named at its last pull, when known.
    pub digest: Option<String>,
    pub last_pull: String,
}

#[derive(Debug, Serialize)]
pub struct ShownDigest {
    pub repository: String,
    pub digest: String,
    pub last_pull: String,
}

/// The record, or one repository of it, sorted by repository then name.
pub fn shown(pulls: &Pulls, repo: Option<&str>) -> Shown {
    let wanted = |r: &str| repo.is_none_or(|w| w == r);
    Shown {
        since: pulls.since.map(rfc3339),
        last_event: pulls.last_event.map(rfc3339),
        tags: (pulls.tags.iter().filter(|((r, _), _)| wanted(r)))
            .map(|((r, t), p)| ShownTag {
                repository: r.clone(),
                tag: t.clone(),
                digest: p.digest.clone(),
                last_pull: rfc3339(p.at),
            })
            .collect(),
        digests: (pulls.digests.iter().filter(|((r, _), _)| wanted(r)))
            .map(|((r, d), at)| ShownDigest { repository: r.clone(), digest: d.clone(), last_pull: rfc3339(*at) })
            .collect(),
    }
}

impl std::fmt::Display for Shown {
    /// Names are printed safely (`model::name::printable`): a record written by an older
    /// listener may hold any string, and an escape sequence in one would reach the terminal.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let or_never = |t: &Option<String>| t.as_deref().map_or("never".to_string(), to_second);
        writeln!(f, "recording since {}; last pull event {}", or_never(&self.since), or_never(&self.last_event))?;
        let mut repos: Vec<&str> = self.tags.iter().map(|t| t.repository.as_str()).collect();
        repos.extend(self.digests.iter().map(|d| d.repository.as_str()));
        repos.sort_unstable();
        repos.dedup();
        for repo in repos {
            writeln!(f, "{}", printable(repo))?;
            for t in self.tags.iter().filter(|t| t.repository == repo) {
                let digest = printable(t.digest.as_deref().map_or("", short));
                writeln!(f, "  tag     {:<24} {:<19}  {}", printable(&t.tag), digest, to_second(&t.last_pull))?;
            }
            for d in self.digests.iter().filter(|d| d.repository == repo) {
                writeln!(f, "  digest  {:<44}  {}", printable(short(&d.digest)), to_second(&d.last_pull))?;
            }
        }
        Ok(())
    }
}

/// A digest as the plan prints one: the algorithm and 12 hex digits.
fn short(d: &str) -> &str {
    d.char_indices().nth(19).map_or(d, |(i, _)| &d[..i])
}

/// An RFC 3339 time to the second, for the table (`2026-12-03T07:31:09Z`).
fn to_second(t: &str) -> String {
    t.split_once('.').map_or(t.to_string(), |(s, _)| format!("{s}Z"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pulls::record::TagPull;

    #[test]
    fn names_from_the_record_reach_the_terminal_escaped() {
        let mut pulls = Pulls::default();
        let bad = "v1\x1b]0;owned\x07\x1b[2J";
        pulls
            .tags
            .insert(("team/app\u{9b}31m".into(), bad.into()), TagPull { at: 0, digest: Some("sha256:\x1b[1m".into()) });
        pulls.digests.insert(("team/app".into(), "sha256:\0\u{202e}".into()), 0);
        let text = shown(&pulls, None).to_string();
        assert!(!text.chars().any(|c| c.is_control() && c != '\n' || c == '\u{202e}'), "{text:?}");
        assert!(text.contains("team/app\\u{9b}31m") && text.contains("v1\\u{1b}]0;owned\\u{7}\\u{1b}[2J"), "{text}");
        assert!(text.contains("sha256:\\u{1b}[1m") && text.contains("sha256:\\u{0}\\u{202e}"), "{text}");
    }
}
