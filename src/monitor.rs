//! What a cron job's monitoring sees of a run: its exit status, and with `--metrics-file` its
//! figures in a file node_exporter reads.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result};

use crate::cli::MetricsArgs;
use regsweep::core::metrics::{self, RunFigures};
use regsweep::core::report::Report;
use regsweep::model::error::ErrorKind;

/// How a run of `prune`, `gc` or `online` ended: its exit status and, when it got as far, its
/// report (for `--metrics-file`).
pub type Ended = (u8, Option<Report>);

/// The exit status of an error: its kind's ([`ErrorKind::of`]: 2 for a usage error, 5 for a
/// container step, 130 for an interruption, else 1), but 0 for output cut short (piped into
/// `head`).
pub fn exit_status(e: &anyhow::Error) -> u8 {
    let broken_pipe = |c: &(dyn std::error::Error + 'static)| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    };
    if e.chain().any(broken_pipe) { 0 } else { ErrorKind::of(e).exit_code() }
}

/// Runs `work` and, with `--metrics-file`, writes its figures, whatever the outcome. A metrics
/// file that cannot be written makes a successful run exit 1: monitoring would go blind.
pub fn monitored(
    metrics: &MetricsArgs,
    command: &str,
    store: &str,
    work: impl FnOnce() -> Result<Ended>,
) -> Result<ExitCode> {
    let (started, clock) = (SystemTime::now(), Instant::now());
    let result = work();
    let Some(path) = &metrics.metrics_file else {
        return result.map(|(code, _)| ExitCode::from(code));
    };
    let exit_code = match &result {
        Ok((code, _)) => *code,
        Err(e) => exit_status(e),
    };
    let report = result.as_ref().ok().and_then(|(_, r)| r.as_ref());
    let figures = RunFigures { command, store, started, duration: clock.elapsed(), exit_code, report };
    let written = write_metrics(path, &figures);
    match (result, written) {
        (Ok((0, _)), Err(e)) => Err(e),
        (result, Err(e)) => {
            eprintln!("error: {e:#}");
            result.map(|(code, _)| ExitCode::from(code))
        }
        (result, Ok(())) => result.map(|(code, _)| ExitCode::from(code)),
    }
}

/// Replaces the metrics file at once (a temporary file beside it, renamed), readable by the
/// collector, carrying over the last success a failed run does not renew.
fn write_metrics(path: &std::path::Path, figures: &RunFigures) -> Result<()> {
    let previous = std::fs::read_to_string(path).ok();
    let text = metrics::render(figures, previous.as_deref().and_then(metrics::last_success));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let context = || format!("cannot write the metrics file {}", path.display());
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(context)?;
    tmp.write_all(text.as_bytes()).with_context(context)?;
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o644)).with_context(context)?;
    tmp.persist(path).map_err(|e| e.error).with_context(context)?;
    Ok(())
}
