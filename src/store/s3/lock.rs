//! The lock of a store in a bucket: an object created only if there is none (`If-None-Match:
//! *`), naming the host and process that hold it, written again every minute while the run
//! lasts and deleted at its end. A lock whose process is gone (same host) or that was not
//! written again for ten minutes (a run killed elsewhere) is stale and taken over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::store::s3::bucket::Bucket;

/// How often a held lock is written again.
const REFRESH: Duration = Duration::from_secs(60);
/// A lock not written again for this long belongs to no running process.
const STALE: Duration = Duration::from_secs(600);

#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    host: String,
    pid: u32,
    /// Tells this run's lock from another's with the same host and pid.
    nonce: String,
}

/// A held lock: refreshed by a thread of its own, deleted when dropped.
pub struct Lock {
    bucket: Arc<Bucket>,
    key: &'static str,
    /// When it was written, by the bucket's clock.
    pub written: SystemTime,
    stop: Arc<AtomicBool>,
    refresher: Option<JoinHandle<()>>,
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 sends nothing; it asks whether the process exists.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

impl Lock {
    pub fn acquire(bucket: Arc<Bucket>, key: &'static str) -> Result<Lock> {
        let nonce = format!(
            "{:x}",
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos()
                ^ u128::from(std::process::id())
        );
        let me = Holder { host: host(), pid: std::process::id(), nonce };
        let content = serde_json::to_vec(&me)?;
        for _ in 0..2 {
            if bucket.create(key, content.clone())? {
                // A server that ignores If-None-Match lets a second run overwrite: read it back.
                let Some((bytes, obj)) = bucket.get(key, 4096)? else { continue };
                if bytes != content {
                    break;
                }
                let stop = Arc::new(AtomicBool::new(false));
                let refresher = {
                    let (bucket, stop, content) = (bucket.clone(), stop.clone(), content.clone());
                    std::thread::spawn(move || refresh(&bucket, key, &stop, content))
                };
                return Ok(Lock { bucket, key, written: obj.modified, stop, refresher: Some(refresher) });
            }
            let Some((bytes, obj)) = bucket.get(key, 4096)? else { continue };
            let holder: Option<Holder> = serde_json::from_slice(&bytes).ok();
            let age = SystemTime::now().duration_since(obj.modified).unwrap_or_default();
            let gone = holder.as_ref().is_some_and(|h| h.host == me.host && !alive(h.pid));
            if gone || age > STALE {
                // Stale: deleted, then created again (only one of two racing runs creates it).
                bucket.delete(key)?;
                continue;
            }
            let who = holder.map_or("an unknown process".to_string(), |h| format!("process {} on {}", h.pid, h.host));
            bail!(
                "another run holds the lock {} ({who}, written {}s ago): wait for it to finish; a lock \
                 not written again for {} minutes is taken over",
                bucket.url(key),
                age.as_secs(),
                STALE.as_secs() / 60
            );
        }
        bail!("cannot take the lock {}: another run took it at the same moment", bucket.url(key))
    }
}

fn refresh(bucket: &Bucket, key: &str, stop: &AtomicBool, content: Vec<u8>) {
    let mut waited = Duration::ZERO;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        waited += Duration::from_millis(100);
        if waited >= REFRESH {
            waited = Duration::ZERO;
            let _ = bucket.put(key, content.clone());
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        let _ = self.bucket.delete(self.key);
    }
}
