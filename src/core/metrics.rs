//! A run's figures in the Prometheus text format, for node_exporter's textfile collector: one
//! file per job, rewritten by every run, failed runs included. The time of the last successful
//! run is carried over from the file a failed run replaces, so that an alert on it ("no
//! successful run in 48 h") keeps working through failures.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::core::report::Report;

/// What one run leaves for monitoring.
#[derive(Debug)]
pub struct RunFigures<'a> {
    /// `prune`, `gc`, `online`.
    pub command: &'a str,
    /// The store or registry, as the operator named it.
    pub store: &'a str,
    pub started: SystemTime,
    pub duration: Duration,
    pub exit_code: u8,
    /// The report, when the run got as far as one.
    pub report: Option<&'a Report>,
}

const LAST_SUCCESS: &str = "regsweep_last_success_timestamp_seconds";

/// A label value, escaped as the text format wants it.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

/// The time of the last successful run that an earlier metrics file recorded.
pub fn last_success(previous: &str) -> Option<f64> {
    previous.lines().find_map(|l| l.strip_prefix(LAST_SUCCESS)?.rsplit(' ').next()?.parse().ok())
}

/// The file's text. `previous_success`: what the file being replaced recorded.
pub fn render(f: &RunFigures, previous_success: Option<f64>) -> String {
    let labels = format!("command=\"{}\",store=\"{}\"", label(f.command), label(f.store));
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{labels}}} {value}\n");
    };
    let succeeded = f.exit_code == 0;
    gauge("regsweep_last_run_timestamp_seconds", "When the last run started.", seconds(f.started));
    let success = if succeeded { Some(seconds(f.started)) } else { previous_success };
    if let Some(t) = success {
        gauge(LAST_SUCCESS, "When the last run that exited 0 started.", t);
    }
    gauge("regsweep_run_duration_seconds", "How long the last run took.", f.duration.as_secs_f64());
    gauge(
        "regsweep_exit_code",
        "The last run's exit status (0 done, 1 error before any deletion, 2 usage, 3 some deletions failed, \
         5 container step failed, 130 interrupted).",
        f64::from(f.exit_code),
    );
    let Some(r) = f.report else { return out };
    gauge("regsweep_dry_run", "1 when the last run was a dry run (the figures are its plan).", f64::from(r.dry_run));
    gauge("regsweep_repositories", "Repositories the last run read.", r.repositories as f64);
    gauge("regsweep_tags_kept", "Tags the last run kept.", r.tags_kept as f64);
    gauge("regsweep_tags_deleted", "Tags the last run deleted.", r.tags_deleted as f64);
    gauge("regsweep_manifests_deleted", "Manifests the last run deleted.", r.manifests_deleted as f64);
    gauge("regsweep_layer_links_deleted", "Layer links the last run deleted.", r.layer_links_deleted as f64);
    gauge("regsweep_blobs_deleted", "Blobs the last run deleted.", r.blobs_deleted as f64);
    gauge("regsweep_uploads_deleted", "Abandoned uploads the last run deleted.", r.uploads_deleted as f64);
    gauge("regsweep_freed_bytes", "Bytes the last run freed (blobs and uploads).", r.bytes_freed as f64);
    if let Some(left) = r.bytes_left {
        gauge("regsweep_left_bytes", "Bytes of blobs the store held after the last run.", left as f64);
    }
    gauge("regsweep_errors", "Errors of the last run (failed deletions included).", r.errors.len() as f64);
    gauge("regsweep_warnings", "Warnings of the last run.", r.warnings.len() as f64);
    // The registry's redis blob cache: a stale key breaks a push of what it names.
    if let Some(c) = r.cache.as_ref().filter(|c| c.kind == crate::core::report::CacheKind::Redis) {
        gauge(
            "regsweep_cache_keys_removed",
            "Keys the last run removed from the registry's redis cache.",
            c.keys_removed as f64,
        );
        gauge(
            "regsweep_cache_stale_keys",
            "Keys of the registry's redis cache the last run could not evict (may list deleted blobs).",
            c.stale_keys.len() as f64,
        );
    }
    // With --pulls: is the listener still fed? (RegsweepNoPullEvents)
    if let Some(p) = &r.pulls {
        if let Some(since) = p.since {
            gauge("regsweep_pulls_since_timestamp_seconds", "When the pull record read began.", seconds(since));
        }
        if let Some(last) = p.last_event.or(p.since) {
            gauge(
                "regsweep_pulls_last_event_timestamp_seconds",
                "The newest pull event of the record read (its beginning when it holds none).",
                seconds(last),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_keeps_the_last_success() {
        let started = UNIX_EPOCH + Duration::from_secs(1_000);
        let mut f = RunFigures {
            command: "prune",
            store: "/var/lib/\"registry\"",
            started,
            duration: Duration::from_millis(1500),
            exit_code: 0,
            report: None,
        };
        let ok = render(&f, Some(10.0));
        assert!(
            ok.contains(
                "regsweep_last_success_timestamp_seconds{command=\"prune\",store=\"/var/lib/\\\"registry\\\"\"} 1000\n"
            ),
            "{ok}"
        );
        assert_eq!(last_success(&ok), Some(1000.0));
        f.exit_code = 1;
        f.started = started + Duration::from_secs(86_400);
        let failed = render(&f, last_success(&ok));
        assert_eq!(last_success(&failed), Some(1000.0));
        assert!(failed.contains("regsweep_exit_code{command=\"prune\",store=\"/var/lib/\\\"registry\\\"\"} 1\n"));
        assert_eq!(last_success(&render(&f, None)), None);
    }

    #[test]
    fn a_redis_cache_gives_its_removed_and_stale_keys() {
        use crate::core::report::{CacheKind, CacheReport, Command};
        let mut report = Report::new(Command::Prune, "/r", Default::default(), false);
        let figures = |r: &Report| {
            render(
                &RunFigures {
                    command: "prune",
                    store: "/r",
                    started: UNIX_EPOCH,
                    duration: Duration::ZERO,
                    exit_code: 3,
                    report: Some(r),
                },
                None,
            )
        };
        assert!(!figures(&report).contains("regsweep_cache_"), "no cache, no figures");
        let stale = vec!["blobs::sha256:ab".to_string(); 2];
        report.cache =
            Some(CacheReport { kind: CacheKind::Redis, keys_removed: 7, stale_keys: stale, ..Default::default() });
        let out = figures(&report);
        assert!(out.contains("regsweep_cache_keys_removed{command=\"prune\",store=\"/r\"} 7\n"), "{out}");
        assert!(out.contains("regsweep_cache_stale_keys{command=\"prune\",store=\"/r\"} 2\n"), "{out}");
    }
}
