//! The pull record: when each tag and each manifest digest of a repository was last pulled, as
//! the registry's notifications (`listen`) or its access log (`import`) tell. The registry keeps
//! no pull times in its storage; this is what retention by last pull will read (issue 25).
//!
//! It stands apart from the scan-plan-apply layers: it imports nothing of the crate but
//! `model` (the registry's name grammar, the usage error), and what reads it later gets plain
//! times per (repository, tag) and (repository, digest).

pub mod events;
pub mod listen;
pub mod log;
pub mod record;
pub mod show;
pub mod tls;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One manifest pull: by tag (then `tag` is set, and `digest` is what it resolved to when known)
/// or by digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pull {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
    /// Nanoseconds since the Unix epoch (the registry's clock).
    pub at: i64,
}

/// Nanoseconds since the epoch of a system time (0 before it; saturating far after).
pub fn nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The system time of nanoseconds since the epoch.
pub fn time(nanos: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

/// RFC 3339 in UTC, with the fraction of a second the registry gave
/// (`2026-12-03T07:31:09.18377956Z`).
pub fn rfc3339(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Nanoseconds since the epoch of an RFC 3339 time, as the registry writes it.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s).ok()?.timestamp_nanos_opt()
}

pub use crate::model::name::is_digest;

impl Pull {
    /// Why the registry would never have sent this pull (a name its grammar refuses:
    /// `model::name`), or `None` for a pull to store. The reason prints the name safely.
    pub fn fault(&self) -> Option<String> {
        use crate::model::name::{is_repository, is_tag, printable};
        if !is_repository(&self.repository) {
            return Some(format!("repository \"{}\" is not a repository name", printable(&self.repository)));
        }
        if let Some(t) = self.tag.as_deref().filter(|t| !is_tag(t)) {
            return Some(format!("tag \"{}\" is not a tag name", printable(t)));
        }
        if let Some(d) = self.digest.as_deref().filter(|d| !is_digest(d)) {
            return Some(format!("digest \"{}\" is not a digest", printable(d)));
        }
        None
    }
}
