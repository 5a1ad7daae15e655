//! SIGINT and SIGTERM: before the first deletion a run just ends (nothing changed); during the
//! deletions it stops between two folders, reports what it did, and leaves the journal so that
//! a rerun finishes the job. A second signal ends it at once (every deletion is crash-safe).
//! With [`install_deferred`] (a run that must start the registry's container again), a signal
//! before the deletions does not end the process: the run sees [`requested`] and ends itself.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::model::error::ErrorKind;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static DELETING: AtomicBool = AtomicBool::new(false);
static DEFERRED: AtomicBool = AtomicBool::new(false);

/// The status a signal ends the process with: an interruption's, computed before any signal.
const EXIT_INTERRUPTED: libc::c_int = ErrorKind::Interrupted.exit_code() as libc::c_int;

extern "C" fn on_signal(_: libc::c_int) {
    let deleting = DELETING.load(Ordering::SeqCst);
    if (deleting || DEFERRED.load(Ordering::SeqCst)) && !REQUESTED.swap(true, Ordering::SeqCst) {
        if !deleting {
            let msg: &[u8] = b"regsweep: interrupted: stopping before any deletion (a second signal ends it at once)\n";
            // SAFETY: write(2) is async-signal-safe.
            unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
        }
        return;
    }
    let msg: &[u8] = if DELETING.load(Ordering::SeqCst) {
        b"regsweep: interrupted again: stopped at once; the store is valid, run again to finish\n"
    } else {
        b"regsweep: interrupted before anything was deleted: nothing changed\n"
    };
    // SAFETY: write(2) and _exit(2) are async-signal-safe.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(EXIT_INTERRUPTED);
    }
}

/// Installs the handler for SIGINT and SIGTERM.
pub fn install() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only touches atomics and calls async-signal-safe functions.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Installs the handler so that the first signal before the deletions only asks the run to end
/// (it checks [`requested`] between repositories and before deleting), for work to do after it.
pub fn install_deferred() {
    DEFERRED.store(true, Ordering::SeqCst);
    install();
}

/// True once a signal asked the deletions to stop.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// From now on the run has deleted, or is about to delete: a signal stops it between two
/// folders instead of ending it.
pub fn deleting_begins() {
    DELETING.store(true, Ordering::SeqCst);
}
