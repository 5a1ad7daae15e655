//! The lock of a store in a bucket: an object created only if there is none (`If-None-Match:
//! *`), naming the host and process that hold it, written again every minute while the run
//! lasts and deleted at its end. A lock whose process is gone (same host) or that was not
//! written again for ten minutes by the bucket's clock (a run killed elsewhere) is stale and
//! taken over: replaced only if it is still the one read (`If-Match` on its ETag), so that of
//! two runs taking it over one wins. A run checks the lock is still its own before each
//! deletion stage, and its refresher never writes over another run's.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::{Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::model::{LockHeld, LockLost};
use crate::store::Held;
use crate::store::bucket::client::Bucket;

/// How often a held lock is written again.
const REFRESH: Duration = Duration::from_secs(60);
/// A lock not written again for this long belongs to no running process.
const STALE: Duration = Duration::from_secs(600);
/// A probe written to read the bucket's clock, beside the lock (its name, and a run's nonce).
const CLOCK: &str = ".regsweep.clock";

#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    host: String,
    pid: u32,
    /// Tells this run's lock from another's with the same host and pid.
    nonce: String,
    /// The process's pid namespace (`/proc/self/ns/pid`): containers on one host (pods with the
    /// host's network, hence its name) each have their own, where a pid says nothing of another's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pid_ns: Option<String>,
}

impl Holder {
    fn of(bytes: &[u8]) -> String {
        serde_json::from_slice::<Holder>(bytes)
            .map_or("an unknown process".to_string(), |h| format!("process {} on {}", h.pid, h.host))
    }
}

/// This run's claim on the lock: what it wrote, shared by the run, its refresher and the store.
pub struct Claim {
    bucket: Arc<Bucket>,
    key: &'static str,
    content: Vec<u8>,
    /// The ETag of the lock's last write, as the bucket gave it: the condition of the next.
    etag: std::sync::Mutex<object_store::UpdateVersion>,
    /// When it was written, by the bucket's clock.
    pub written: SystemTime,
    /// Set once the lock was found to be another run's, or gone.
    lost: AtomicBool,
}

impl Claim {
    /// Why the lock is no longer this run's, if it is not: another run took it over (this one
    /// was thought dead), or it was deleted.
    fn lost_to(&self) -> Result<Option<String>> {
        let why = match self.bucket.get(self.key, 4096)? {
            Some((bytes, _)) if bytes == self.content && !self.lost.load(Ordering::SeqCst) => return Ok(None),
            Some((bytes, _)) if bytes != self.content => format!("now held by {}", Holder::of(&bytes)),
            Some(_) => "written over by another run meanwhile".to_string(),
            None => "deleted".to_string(),
        };
        self.lost.store(true, Ordering::SeqCst);
        Ok(Some(why))
    }

    /// Fails when the lock is no longer this run's (before a deletion stage).
    pub fn check(&self) -> Result<()> {
        let Some(why) = self.lost_to()? else { return Ok(()) };
        Err(LockLost(format!(
            "the lock {} is no longer this run's ({why}): another run may be deleting in the same store, so \
             this one stopped before deleting more; make sure one run at a time uses the store (a run that \
             cannot write its lock for {} minutes loses it), then run again to finish",
            self.bucket.url(self.key),
            STALE.as_secs() / 60
        ))
        .into())
    }

    /// Writes the lock again, only while it is this run's (read first, for a server that
    /// ignores `If-Match`); a failed request is tried again at the next refresh.
    fn refresh(&self) {
        match self.bucket.get(self.key, 4096) {
            Ok(Some((bytes, _))) if bytes == self.content => {
                let mut etag = self.etag.lock().unwrap_or_else(|e| e.into_inner());
                match self.bucket.replace(self.key, self.content.clone(), &etag) {
                    Ok(Some(new)) => *etag = new,
                    // Refused: written over, or written by a try whose answer was lost (a 5xx,
                    // a reset) and refused when sent again, which leaves this run's content.
                    Ok(None) => match self.bucket.get(self.key, 4096) {
                        Ok(Some((bytes, obj))) if bytes == self.content => *etag = obj.version,
                        Ok(_) => self.lost.store(true, Ordering::SeqCst),
                        Err(_) => {}
                    },
                    Err(_) => {}
                }
            }
            Ok(_) => self.lost.store(true, Ordering::SeqCst),
            Err(_) => {}
        }
    }
}

/// A held lock: refreshed by a thread of its own, deleted when released (or, on the way out of
/// a failed run, dropped).
pub struct Lock {
    pub claim: Arc<Claim>,
    stop: Arc<AtomicBool>,
    refresher: Option<JoinHandle<()>>,
    released: bool,
}

fn pid_namespace() -> Option<String> {
    std::fs::read_link("/proc/self/ns/pid").ok().map(|p| p.to_string_lossy().into_owned())
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 sends nothing; it asks whether the process exists.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// The bucket's clock now: the `LastModified` of a probe written for it, named for this run
/// (`nonce`: two runs probing at once each read and delete their own). The local clock may be
/// minutes off the bucket's, which stamps the lock.
fn bucket_now(bucket: &Bucket, nonce: &str) -> Result<SystemTime> {
    let key = format!("{CLOCK}.{nonce}");
    bucket.put(&key, Vec::new())?;
    let probe = bucket.head(&key)?.ok_or_else(|| anyhow!("{} vanished as it was written", bucket.url(&key)))?;
    let _ = bucket.delete(&key);
    Ok(probe.modified)
}

impl Lock {
    pub fn acquire(bucket: Arc<Bucket>, key: &'static str) -> Result<Lock> {
        let nonce = format!(
            "{:x}",
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos()
                ^ u128::from(std::process::id())
        );
        let me = Holder { host: host(), pid: std::process::id(), nonce, pid_ns: pid_namespace() };
        let content = serde_json::to_vec(&me)?;
        'tries: for _ in 0..3 {
            let written = bucket.create(key, content.clone())?
                || 'ours: {
                    let Some((bytes, obj)) = bucket.get(key, 4096)? else { continue 'tries };
                    // This run's own, written by a try whose answer was lost (a 5xx, a reset) and
                    // refused when sent again: no other run writes this content (its nonce).
                    if bytes == content {
                        break 'ours true;
                    }
                    let holder: Option<Holder> = serde_json::from_slice(&bytes).ok();
                    // Its process is known gone only where its pid means what it means here: the
                    // same host and pid namespace (a lock written before namespaces were kept: the
                    // host alone); elsewhere the lock goes stale.
                    let gone = holder.as_ref().is_some_and(|h| {
                        h.host == me.host
                            && h.pid_ns.as_ref().is_none_or(|n| Some(n) == me.pid_ns.as_ref())
                            && !alive(h.pid)
                    });
                    // Its age by the bucket's clock, which wrote its LastModified.
                    let age = if gone {
                        Duration::ZERO
                    } else {
                        bucket_now(&bucket, &me.nonce)?.duration_since(obj.modified).unwrap_or_default()
                    };
                    if !gone && age <= STALE {
                        return Err(LockHeld(format!(
                            "another run holds the lock {} ({}, written {}s ago): wait for it to finish; a lock not \
                         written again for {} minutes is taken over",
                            bucket.url(key),
                            Holder::of(&bytes),
                            age.as_secs(),
                            STALE.as_secs() / 60
                        ))
                        .into());
                    }
                    // Stale: replaced only if it is still the one read, never after another run
                    // took it over (of two runs taking it over, one wins).
                    bucket.replace(key, content.clone(), &obj.version)?.is_some()
                };
            if !written {
                continue;
            }
            // A server that ignores If-None-Match or If-Match lets a second run write over it:
            // read it back (and checked again before each deletion stage).
            let Some((bytes, obj)) = bucket.get(key, 4096)? else { continue };
            if bytes != content {
                break;
            }
            if obj.version.e_tag.is_none() && obj.version.version.is_none() {
                bail!("{} has no ETag: its lock cannot be kept", bucket.url(key));
            }
            let etag = obj.version.into();
            let claim =
                Arc::new(Claim { bucket, key, content, etag, written: obj.modified, lost: AtomicBool::new(false) });
            let stop = Arc::new(AtomicBool::new(false));
            let refresher = {
                let (claim, stop) = (claim.clone(), stop.clone());
                std::thread::spawn(move || refresh(&claim, &stop))
            };
            return Ok(Lock { claim, stop, refresher: Some(refresher), released: false });
        }
        Err(LockHeld(format!("cannot take the lock {}: another run took it at the same moment", bucket.url(key)))
            .into())
    }

    fn stop_refreshing(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
    }
}

fn refresh(claim: &Claim, stop: &AtomicBool) {
    let mut waited = Duration::ZERO;
    while !stop.load(Ordering::SeqCst) && !claim.lost.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        waited += Duration::from_millis(100);
        if waited >= REFRESH {
            waited = Duration::ZERO;
            claim.refresh();
        }
    }
}

impl Held for Lock {
    /// Deletes the lock if it is still this run's, tried three times (a DELETE is not retried
    /// by the client after a reset connection); an error says it stays, and for how long.
    fn release(mut self: Box<Self>) -> Result<()> {
        self.stop_refreshing();
        self.released = true;
        let c = &self.claim;
        let url = c.bucket.url(c.key);
        if let Some(why) = c.lost_to()? {
            return Err(LockLost(format!(
                "the lock {url} was no longer this run's at its end ({why}): another run may have deleted in the \
                 same store meanwhile; make sure one run at a time uses the store (a run that cannot write its \
                 lock for {} minutes loses it)",
                STALE.as_secs() / 60
            ))
            .into());
        }
        let mut last = None;
        for attempt in 0..3 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_secs(attempt));
            }
            match c.bucket.delete(c.key) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        let e = last.map(|e| format!("{e:#}")).unwrap_or_default();
        bail!(
            "{e}: the lock {url} stays, and stops every run on this store for {} minutes; once no run is \
             going, delete it (aws s3 rm {url}) to run again sooner",
            STALE.as_secs() / 60
        )
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // A failed run: its lock goes as best it can (if it stays, it is stale in ten minutes).
        self.stop_refreshing();
        if let Ok(None) = self.claim.lost_to() {
            let _ = self.claim.bucket.delete(self.claim.key);
        }
    }
}
