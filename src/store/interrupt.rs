//! SIGINT and SIGTERM: before the first deletion a run just ends (nothing changed); during the
//! deletions it stops between two folders, reports what it did, and leaves the journal so that
//! a rerun finishes the job. A second signal ends it at once (every deletion is crash-safe).

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);
static DELETING: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    if DELETING.load(Ordering::SeqCst) && !REQUESTED.swap(true, Ordering::SeqCst) {
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
        libc::_exit(130);
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

/// True once a signal asked the deletions to stop.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// From now on the run has deleted, or is about to delete: a signal stops it between two
/// folders instead of ending it.
pub fn deleting_begins() {
    DELETING.store(true, Ordering::SeqCst);
}
