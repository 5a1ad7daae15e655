//! The registry's notification envelopes (`application/vnd.docker.distribution.events.v1+json`,
//! `{"events": [...]}`; DESIGN section 6) and which of their events are manifest pulls.

use regex::RegexSet;
use serde::Deserialize;

use super::{Pull, parse_rfc3339};
use crate::model::name::printable;

#[derive(Debug, Deserialize)]
struct Envelope {
    events: Vec<serde_json::Value>,
}

/// The fields of an event that matter here; every other one is ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Event {
    action: String,
    timestamp: String,
    target: Target,
    request: Request,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Target {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    repository: String,
    tag: Option<String>,
    url: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Request {
    method: String,
    useragent: String,
}

/// Which pulls count.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// HEAD requests count too (tools that only check that a tag exists send them).
    pub count_head: bool,
    /// Requests from these user agents do not count.
    pub ignore_agents: Option<RegexSet>,
}

impl Filter {
    /// True when a request with this method and user agent counts as a pull.
    pub fn counts(&self, method: &str, agent: &str) -> bool {
        let method_counts =
            method.eq_ignore_ascii_case("GET") || (self.count_head && method.eq_ignore_ascii_case("HEAD"));
        method_counts && !self.ignore_agents.as_ref().is_some_and(|s| s.is_match(agent))
    }
}

/// The manifest media types the registry serves (schema 1 and 2, OCI image manifest and index).
const MANIFEST_TYPES: [&str; 7] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/json",
];

/// A manifest pull, not a blob's: the event's URL names `/manifests/` (2.8 sends blob pulls as
/// `application/octet-stream` with a `/blobs/` URL); without a URL, its media type decides.
fn is_manifest(t: &Target) -> bool {
    let path = t.url.split(['?', '#']).next().unwrap_or("");
    if path.contains("/manifests/") {
        return true;
    }
    if path.contains("/blobs/") {
        return false;
    }
    t.url.is_empty() && MANIFEST_TYPES.contains(&t.media_type.as_str())
}

/// What one envelope holds: the pulls that count, and a line for each event skipped because it
/// could not be read (the others still count).
#[derive(Debug, Default)]
pub struct Batch {
    pub pulls: Vec<Pull>,
    pub events: usize,
    pub unreadable: Vec<String>,
}

/// Reads an envelope; `Err` when the body is not one (not JSON, or no `events` list).
///
/// An event that is not a pull, not a manifest's, or not counted by the filter is skipped;
/// one that claims to be a manifest pull but lacks a repository, a time or a digest is skipped
/// and reported. Not refused: the registry retries a refused batch for ever, and the events
/// queued behind it would wait with it.
pub fn parse(body: &[u8], filter: &Filter) -> Result<Batch, String> {
    let env: Envelope = serde_json::from_slice(body).map_err(|e| format!("not an event envelope: {e}"))?;
    let mut batch = Batch { events: env.events.len(), ..Batch::default() };
    for (i, raw) in env.events.into_iter().enumerate() {
        let e: Event = match serde_json::from_value(raw) {
            Ok(e) => e,
            Err(err) => {
                batch.unreadable.push(format!("event {i}: {err}"));
                continue;
            }
        };
        if e.action != "pull" || !is_manifest(&e.target) || !filter.counts(&e.request.method, &e.request.useragent) {
            continue;
        }
        let t = e.target;
        let at = parse_rfc3339(&e.timestamp);
        let tag = t.tag.filter(|t| !t.is_empty());
        let Some(at) = at.filter(|_| !t.repository.is_empty() && !t.digest.is_empty()) else {
            batch.unreadable.push(format!(
                "event {i}: a manifest pull without a repository, a digest or a time (repository \"{}\", digest \"{}\", timestamp \"{}\")",
                printable(&t.repository),
                printable(&t.digest),
                printable(&e.timestamp)
            ));
            continue;
        };
        let pull = Pull { repository: t.repository, tag, digest: Some(t.digest), at };
        // Names the registry's grammar refuses: it never sends them, so whoever did is not it
        // (the record would keep them, and a terminal would print them).
        match pull.fault() {
            Some(why) => batch.unreadable.push(format!("event {i}: {why}")),
            None => batch.pulls.push(pull),
        }
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:80108610a7cd2ca22809d9a68462a343851728f8c08feec59e1f49efa2940c05";

    fn event(method: &str, media: &str, url_part: &str, tag: Option<&str>) -> serde_json::Value {
        let mut target = serde_json::json!({"mediaType": media, "digest": D, "repository": "team/app",
            "url": format!("http://r/v2/team/app/{url_part}/{D}")});
        if let Some(t) = tag {
            target["tag"] = t.into();
        }
        serde_json::json!({"action": "pull", "timestamp": "2026-12-03T07:31:09.18377956Z", "target": target,
            "request": {"method": method, "useragent": "skopeo/1.9.3"}})
    }

    #[test]
    fn manifest_gets_count_blobs_and_heads_do_not() {
        let oci = "application/vnd.oci.image.manifest.v1+json";
        let events = vec![
            event("GET", oci, "manifests", Some("v1")),
            event("GET", "application/octet-stream", "blobs", None),
            event("HEAD", oci, "manifests", Some("v2")),
            serde_json::json!({"action": "push", "target": {"repository": "x"}}),
        ];
        let body = serde_json::to_vec(&serde_json::json!({ "events": events })).unwrap();
        let b = parse(&body, &Filter::default()).unwrap();
        assert_eq!(b.pulls.len(), 1);
        assert_eq!(b.pulls[0].tag.as_deref(), Some("v1"));
        assert_eq!(b.pulls[0].at, 1_796_283_069_183_779_560);
        let with_head = parse(&body, &Filter { count_head: true, ..Filter::default() }).unwrap();
        assert_eq!(with_head.pulls.len(), 2);
        let ignored = Filter { ignore_agents: Some(RegexSet::new(["^skopeo/"]).unwrap()), ..Filter::default() };
        assert!(parse(&body, &ignored).unwrap().pulls.is_empty());
    }

    #[test]
    fn not_an_envelope() {
        assert!(parse(b"{\"event\": []}", &Filter::default()).is_err());
        assert!(parse(b"[1,2]", &Filter::default()).is_err());
        assert!(parse(b"\x00\xff", &Filter::default()).is_err());
        let bad = br#"{"events": [{"action": "pull", "target": {"url": "/v2/a/manifests/x"}, "request": {"method": "GET"}}]}"#;
        let b = parse(bad, &Filter::default()).unwrap();
        assert!(b.pulls.is_empty() && b.unreadable.len() == 1);
    }
}
