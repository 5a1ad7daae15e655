//! The eviction client: a redis connection (the `redis` crate), DEL and SREM pipelined in
//! batches, told what each stage removed, and once more the whole run's keys at its end.

use std::collections::BTreeSet;
use std::sync::Mutex;

use anyhow::{Result, anyhow};

use super::{Target, blob_key, repo_blob_key, repo_set_key};
use crate::core::report::CacheReport;
use crate::store::stage::{Evict, Removed};

/// Commands a pipeline carries: large enough that the round trips cost nothing beside the
/// commands, small enough that a reply is a few hundred KiB.
const BATCH: usize = 10_000;

/// Evicts what a run deleted from a redis blob cache.
pub struct RedisEvictor {
    target: Target,
    client: redis::Client,
    conn: Mutex<Option<redis::Connection>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Everything this run removed, for the last pass.
    whole: Removed,
    /// Keys (and set members) that existed and went.
    keys_removed: u64,
    /// Pipelines that failed (each after one reconnection).
    failures: u64,
    /// Keys not confirmed evicted.
    stale: BTreeSet<String>,
    last_error: Option<String>,
}

/// One command: DEL of a key, or SREM of a member from a set.
enum Op {
    Del(String),
    Srem(String, String),
}

impl Op {
    /// The key a person would clear by hand.
    fn key(&self) -> String {
        match self {
            Op::Del(k) => k.clone(),
            Op::Srem(set, member) => format!("{set} {member}"),
        }
    }
}

/// The commands that evict what `removed` names.
fn ops(removed: &Removed) -> Vec<Op> {
    let mut ops = Vec::with_capacity(removed.blobs.len() + 2 * removed.links.len());
    ops.extend(removed.blobs.iter().map(|d| Op::Del(blob_key(d))));
    for (repo, d) in &removed.links {
        ops.push(Op::Srem(repo_set_key(repo), d.to_string()));
        ops.push(Op::Del(repo_blob_key(repo, d)));
    }
    ops
}

impl RedisEvictor {
    /// Connects (with AUTH and SELECT as configured) and sends PING: nothing is written. An
    /// error names the address and where it came from.
    pub fn connect(target: Target) -> Result<RedisEvictor> {
        let client = match &target.tls {
            Some(tls) => {
                // Both of rustls's providers are linked (object_store's, ureq's): redis's
                // `ClientConfig::builder()` needs one chosen for the process.
                let _ = rustls::crypto::ring::default_provider().install_default();
                redis::Client::build_with_tls(target.info.clone(), tls.clone())
            }
            None => redis::Client::open(target.info.clone()),
        }
        .map_err(|e| anyhow!("the registry's redis cache {} ({}): {e}", target.shown, target.from))?;
        let evictor = RedisEvictor { target, client, conn: Mutex::new(None), state: Mutex::default() };
        let conn = evictor.open().map_err(|e| {
            anyhow!(
                "cannot reach the registry's redis cache at {} ({}): {e}; nothing was deleted (the run would leave \
                 the cache listing what it deletes)",
                evictor.target.shown,
                evictor.target.from
            )
        })?;
        *evictor.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn);
        Ok(evictor)
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// A new connection, with timeouts, that answered PING.
    fn open(&self) -> redis::RedisResult<redis::Connection> {
        let t = self.target.timeout;
        let mut conn = self.client.get_connection_with_timeout(t)?;
        conn.set_read_timeout(Some(t))?;
        conn.set_write_timeout(Some(t))?;
        redis::cmd("PING").query::<()>(&mut conn)?;
        Ok(conn)
    }

    /// Sends `ops` in pipelines; the keys of those that failed (after one reconnection) are
    /// stale. After a failure the rest of this call is not tried (a server that hangs costs one
    /// timeout a call, not one a batch).
    fn send(&self, ops: &[Op], state: &mut State, stale: &mut BTreeSet<String>) {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut broken = false;
        for batch in ops.chunks(BATCH) {
            if !broken {
                let mut pipe = redis::pipe();
                for op in batch {
                    match op {
                        Op::Del(k) => pipe.del(k),
                        Op::Srem(set, member) => pipe.srem(set, member),
                    };
                }
                let attempt = |conn: &mut Option<redis::Connection>| -> redis::RedisResult<u64> {
                    if conn.is_none() {
                        *conn = Some(self.open()?);
                    }
                    let c = conn.as_mut().expect("just opened");
                    let replies: Vec<i64> = pipe.query(c).inspect_err(|_| *conn = None)?;
                    Ok(replies.iter().map(|n| *n as u64).sum())
                };
                match attempt(&mut guard).or_else(|_| attempt(&mut guard)) {
                    Ok(n) => {
                        state.keys_removed += n;
                        continue;
                    }
                    Err(e) => {
                        state.failures += 1;
                        state.last_error = Some(e.to_string());
                        broken = true;
                    }
                }
            }
            stale.extend(batch.iter().map(Op::key));
        }
    }

    /// The last pass: the whole run's keys once more (a registry that read storage right before
    /// a deletion may have written an entry after its eviction). Its outcome decides what is
    /// stale.
    pub fn finish(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.whole.is_empty() {
            return;
        }
        let whole = std::mem::take(&mut state.whole);
        let mut stale = BTreeSet::new();
        self.send(&ops(&whole), &mut state, &mut stale);
        state.stale = stale;
        state.whole = whole;
    }

    /// Removes every key the registry's cache writes (`blobs::*`, `repository::*::blobs*`), by
    /// SCAN and DEL in pipelines: where what was deleted is not known one by one (online mode,
    /// after the registry's own collector). The registry fills it again from storage.
    pub fn clear_all(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let result = (|| -> redis::RedisResult<u64> {
            if guard.is_none() {
                *guard = Some(self.open()?);
            }
            let conn = guard.as_mut().expect("just opened");
            let mut removed = 0;
            for pattern in ["blobs::*", "repository::*::blobs*"] {
                let mut cursor: u64 = 0;
                loop {
                    let (next, keys): (u64, Vec<String>) =
                        redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(BATCH).query(conn)?;
                    if !keys.is_empty() {
                        removed += redis::cmd("DEL").arg(&keys).query::<u64>(conn)?;
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
            Ok(removed)
        })();
        match result {
            Ok(n) => state.keys_removed += n,
            Err(e) => {
                *guard = None;
                state.failures += 1;
                state.last_error = Some(e.to_string());
                state.stale.extend(["blobs::*".to_string(), "repository::*::blobs*".to_string()]);
            }
        }
    }

    /// The report's figures.
    pub fn fill(&self, cache: &mut CacheReport) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        cache.keys_removed = state.keys_removed;
        cache.failures = state.failures;
        cache.stale_keys = state.stale.iter().cloned().collect();
        cache.last_error = state.last_error.clone();
    }
}

impl Evict for RedisEvictor {
    fn removed(&self, what: &Removed) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.whole.blobs.extend_from_slice(&what.blobs);
        state.whole.links.extend_from_slice(&what.links);
        let mut stale = std::mem::take(&mut state.stale);
        self.send(&ops(what), &mut state, &mut stale);
        state.stale = stale;
    }
}
