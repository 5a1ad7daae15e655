//! What went wrong in a run, typed: each error has a kind that a script branches on and that
//! the exit status derives from ([`exit_code`], the one place that maps them), the path it is
//! about where there is one, and the message a person reads. Nothing decides on the message.

use std::fmt;

use serde::Serialize;

use crate::model::{ContainerStep, InUseUntagged, Interrupted, LockHeld, TaglessStore, UsageError};

/// What an error is about. In the JSON report snake_case (`delete_failed`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A deletion failed (a folder made immutable, no permission, a FIFO put there since the
    /// plan, a key the bucket did not confirm deleted; online: a `DELETE` answered with an
    /// error). The store is valid: run again to finish. Exit 3.
    DeleteFailed,
    /// Online: after some deletes went, the registry refused every further one (405: deletes
    /// are off, 401, 403); the run stopped there. Exit 3.
    DeleteRefused,
    /// The journal could not be written, even after deleting what needs none (a full disk):
    /// the deletions that need it did not run. Exit 3.
    Journal,
    /// The run's lock was found no longer its own (taken over, deleted), or could not be read,
    /// before a deletion stage (the run stopped there) or at its end. Exit 3.
    LockLost,
    /// The run's lock could not be released: it blocks other runs until it goes stale. Exit 3.
    LockRelease,
    /// Another run holds the store's lock: nothing was done, try again later. Exit 1.
    LockHeld,
    /// The re-mark of what pushes wrote during the run failed (a manifest it could not read), or
    /// pushes kept needing what the run deleted: stopped before the layer links and blobs,
    /// nothing a tag needs was deleted. Exit 3.
    RemarkFailed,
    /// A push during the run needs a blob that the run deleted (`path`: the blob's digest): it
    /// cannot be undone, push that image again. Exit 3.
    PushDuringRun,
    /// The registry's redis blob cache could not be evicted (unreachable mid-run): `path` its
    /// address; the report's `cache.stale_keys` lists what may be stale. The storage deletions
    /// stand; restart the registry or delete those keys. Exit 3.
    CacheStale,
    /// A container step failed: online's collector (or, in a dry run, would fail), or
    /// `--stop-container`'s stop or start. Exit 5.
    ContainerStep,
    /// SIGINT or SIGTERM ended the run. Exit 130.
    Interrupted,
    /// A usage error: a bad pattern, an option that cannot apply. Exit 2.
    Usage,
    /// `--delete-untagged` refused before anything was done: no repository of the store has a
    /// tag, or untagged manifests were pushed after its newest tag (a registry that keeps its
    /// tags elsewhere, as Harbor 2.15 does): it would delete the newest images, or all of them.
    /// `--allow-tagless` runs it anyway. Exit 1.
    TaglessStore,
    /// Online `--gc-delete-untagged` refused before anything was done: a manifest named by
    /// `--keep-in-use` that the registry has is reached by no kept tag (the message names them,
    /// `repository@digest`), so the registry's collector would delete it. Exit 1.
    InUseUntagged,
    /// `check`'s finding, not an error of a run (no report lists it): some tag would fail a pull
    /// (with `--for-registry 3`, on registry 3.x), or some blob is corrupt. Exit 4.
    BrokenPull,
    /// Any other error that ended the run before its report: a bad store, a lock held, an
    /// unreadable manifest that must be kept, ... Before the deletions nothing changed. Exit 1.
    Fatal,
}

impl ErrorKind {
    /// The kind of an error that ended a run before its report.
    pub fn of(e: &anyhow::Error) -> ErrorKind {
        if e.is::<Interrupted>() {
            ErrorKind::Interrupted
        } else if e.is::<UsageError>() {
            ErrorKind::Usage
        } else if e.is::<ContainerStep>() {
            ErrorKind::ContainerStep
        } else if e.is::<LockHeld>() {
            ErrorKind::LockHeld
        } else if e.is::<TaglessStore>() {
            ErrorKind::TaglessStore
        } else if e.is::<InUseUntagged>() {
            ErrorKind::InUseUntagged
        } else {
            ErrorKind::Fatal
        }
    }

    /// Its exit status (docs/GUIDE.md, "Exit status").
    pub const fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Fatal | ErrorKind::LockHeld | ErrorKind::TaglessStore | ErrorKind::InUseUntagged => 1,
            ErrorKind::Usage => 2,
            ErrorKind::DeleteFailed
            | ErrorKind::DeleteRefused
            | ErrorKind::Journal
            | ErrorKind::LockLost
            | ErrorKind::LockRelease
            | ErrorKind::RemarkFailed
            | ErrorKind::PushDuringRun
            | ErrorKind::CacheStale => 3,
            ErrorKind::BrokenPull => 4,
            ErrorKind::ContainerStep => 5,
            ErrorKind::Interrupted => 130,
        }
    }

    /// Which kind's status a run with several shows: a registry that may be down (5) first,
    /// then an interruption (130: the journal says what is left), then the rest; `check`'s
    /// finding last (a failed deletion of `--repair` is 3).
    fn precedence(self) -> u8 {
        match self {
            ErrorKind::ContainerStep => 5,
            ErrorKind::Interrupted => 4,
            ErrorKind::Usage => 3,
            ErrorKind::Fatal | ErrorKind::LockHeld | ErrorKind::TaglessStore | ErrorKind::InUseUntagged => 2,
            ErrorKind::BrokenPull => 0,
            _ => 1,
        }
    }
}

/// The exit status of a run that ended with errors of these kinds: 0 for none, else that of
/// the kind that takes precedence (see [`ErrorKind::exit_code`]).
pub fn exit_code(kinds: impl IntoIterator<Item = ErrorKind>) -> u8 {
    kinds.into_iter().max_by_key(|k| k.precedence()).map_or(0, ErrorKind::exit_code)
}

/// One error of a run: in the JSON report `{"kind": ..., "path": ..., "message": ...}` (`path`
/// null when it is about no one path); on stderr its message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunError {
    pub kind: ErrorKind,
    /// What it is about: a file's path or an object's URL, a digest, `repository@digest`.
    pub path: Option<String>,
    pub message: String,
}

impl RunError {
    /// An error about no one path.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> RunError {
        RunError { kind, path: None, message: message.into() }
    }

    /// An error about `path`.
    pub fn at(kind: ErrorKind, path: impl Into<String>, message: impl Into<String>) -> RunError {
        RunError { kind, path: Some(path.into()), message: message.into() }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_keeps_the_exit_status_readme_documents() {
        use ErrorKind::*;
        let codes: Vec<(ErrorKind, u8)> =
            [DeleteFailed, DeleteRefused, Journal, LockLost, LockRelease, RemarkFailed, PushDuringRun, CacheStale]
                .into_iter()
                .map(|k| (k, 3))
                .chain([
                    (Fatal, 1),
                    (LockHeld, 1),
                    (TaglessStore, 1),
                    (Usage, 2),
                    (BrokenPull, 4),
                    (ContainerStep, 5),
                    (Interrupted, 130),
                ])
                .collect();
        for (kind, code) in codes {
            assert_eq!(kind.exit_code(), code, "{kind:?}");
            assert_eq!(exit_code([kind]), code, "{kind:?}");
        }
        assert_eq!(exit_code([]), 0);
    }

    #[test]
    fn a_container_down_outranks_an_interruption_which_outranks_failed_deletions() {
        use ErrorKind::*;
        assert_eq!(exit_code([DeleteFailed, Interrupted, DeleteFailed]), 130);
        assert_eq!(exit_code([DeleteFailed, ContainerStep, Interrupted]), 5);
        assert_eq!(exit_code([PushDuringRun, LockRelease]), 3);
        assert_eq!(exit_code([DeleteFailed, BrokenPull]), 3);
        assert_eq!(exit_code([BrokenPull, DeleteFailed]), 3);
    }

    #[test]
    fn the_kind_of_an_error_is_its_type_not_its_text() {
        let e = anyhow::Error::new(UsageError("bad --repo glob".into())).context("while parsing");
        assert_eq!(ErrorKind::of(&e), ErrorKind::Usage);
        assert_eq!(ErrorKind::of(&Interrupted("x".into()).into()), ErrorKind::Interrupted);
        assert_eq!(ErrorKind::of(&ContainerStep("x".into()).into()), ErrorKind::ContainerStep);
        assert_eq!(ErrorKind::of(&LockHeld("x".into()).into()), ErrorKind::LockHeld);
        let refused = anyhow::Error::new(TaglessStore("x".into())).context("planning");
        assert_eq!(ErrorKind::of(&refused), ErrorKind::TaglessStore);
        assert_eq!(serde_json::to_value(ErrorKind::TaglessStore).unwrap(), "tagless_store");
        // A message that names another kind is still what its type says.
        assert_eq!(ErrorKind::of(&anyhow::anyhow!("interrupted: usage error")), ErrorKind::Fatal);
    }

    #[test]
    fn json_has_kind_path_and_message() {
        let e = RunError::at(ErrorKind::DeleteFailed, "/r/x", "cannot delete /r/x: denied");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"kind": "delete_failed", "path": "/r/x", "message": "cannot delete /r/x: denied"})
        );
        let e = RunError::new(ErrorKind::LockRelease, "lock stays");
        assert_eq!(serde_json::to_value(&e).unwrap()["path"], serde_json::Value::Null);
    }
}
