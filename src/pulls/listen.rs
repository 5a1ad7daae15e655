//! `regsweep listen`: the HTTP endpoint the registry's `notifications.endpoints` post to.
//!
//! tiny_http (small, synchronous, no async runtime; it parses requests, chunked bodies
//! included, which a hand-written parser would have to get right). Requests are served one at
//! a time: the registry posts one batch per endpoint at a time, and each answer waits for its
//! transaction, so a 200 always means the batch is on disk; anything else (or no answer: a
//! crash) makes the registry post it again, and storing it twice changes nothing.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Result, anyhow};
use tiny_http::{Request, Response, Server};

use super::events::{self, Filter};
use super::record::Record;
use super::tls::{self, Peers, Tls};
use crate::model::UsageError;
use crate::model::name::printable;

/// How the listener runs.
#[derive(Debug)]
pub struct ListenOptions {
    pub pulls: PathBuf,
    pub addr: String,
    /// The `Authorization` header required: `Bearer TOKEN`, or TOKEN itself as the whole value.
    pub token: Option<String>,
    pub filter: Filter,
    pub max_body: u64,
    /// Sync the record at every commit (a 200 then survives a crash of the machine), not only
    /// at checkpoints (a 200 survives a crash of the listener).
    pub sync_every_commit: bool,
    /// TLS: the certificate (PEM, the chain) and key files, read again on SIGHUP.
    pub tls: Option<(PathBuf, PathBuf)>,
}

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(signal: libc::c_int) {
    if signal == libc::SIGHUP {
        RELOAD.store(true, Ordering::SeqCst);
    } else {
        STOP.store(true, Ordering::SeqCst);
    }
}

/// Refuses an address off loopback without a token: anyone who reaches it could write pull
/// times (and keep every tag alive, or let them go). `0.0.0.0` and a name that resolves to any
/// address off loopback count as off loopback.
pub fn refuse_open(addr: &str, token: Option<&str>) -> Result<(), String> {
    if token.is_some() {
        return Ok(());
    }
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(|e| format!("--addr {addr}: {e}"))?.collect();
    match addrs.iter().find(|a| !a.ip().is_loopback()) {
        Some(open) => Err(format!(
            "--addr {addr} ({}) is off loopback: give --token or --token-file, or anyone who reaches it writes the pull record",
            open.ip()
        )),
        None => Ok(()),
    }
}

/// Serves until SIGINT or SIGTERM, then returns (between two requests: a batch being stored is
/// finished and answered first). SIGHUP reads the TLS certificate and key again.
pub fn listen(opts: &ListenOptions) -> Result<()> {
    refuse_open(&opts.addr, opts.token.as_deref()).map_err(UsageError)?;
    let tls = opts.tls.as_ref().map(|(cert, key)| Tls::load(cert, key).map(Arc::new)).transpose()?;
    let mut record = Record::open(&opts.pulls, super::nanos(std::time::SystemTime::now()))?;
    record.sync_every_commit(opts.sync_every_commit)?;
    // With TLS, tiny_http serves a loopback port of its own, behind the TLS front.
    let (server, peers, shown) = match &tls {
        None => {
            let server = Server::http(&opts.addr).map_err(|e| anyhow!("cannot listen on {}: {e}", opts.addr))?;
            let shown = server.server_addr().to_ip().map_or(opts.addr.clone(), |a| a.to_string());
            (server, None, format!("http://{shown}"))
        }
        Some(tls) => {
            let public = TcpListener::bind(&opts.addr).map_err(|e| anyhow!("cannot listen on {}: {e}", opts.addr))?;
            let shown = public.local_addr().map_or(opts.addr.clone(), |a| a.to_string());
            let server = Server::http("127.0.0.1:0").map_err(|e| anyhow!("cannot listen on 127.0.0.1: {e}"))?;
            let inner = server.server_addr().to_ip().ok_or_else(|| anyhow!("the inner listener has no address"))?;
            let peers = Peers::default();
            tls::front(public, inner, tls.clone(), peers.clone());
            // The inner port shows in `ss -ltn`: said, so that nobody wonders what it is.
            (server, Some(peers), format!("https://{shown} (relayed to {inner}, which answers only the relay)"))
        }
    };
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGHUP, handler);
    }
    eprintln!("regsweep listen: on {shown}, recording pulls into {}", opts.pulls.display());
    while !STOP.load(Ordering::SeqCst) {
        if RELOAD.swap(false, Ordering::SeqCst) {
            reload(tls.as_deref());
        }
        let request = match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                eprintln!("regsweep listen: {e}");
                continue;
            }
        };
        serve(request, &mut record, opts, peers.as_ref());
    }
    eprintln!("regsweep listen: stopped");
    Ok(())
}

/// SIGHUP: the certificate and key read again, or the old pair kept, with a line saying which.
fn reload(tls: Option<&Tls>) {
    match tls {
        None => eprintln!("regsweep listen: SIGHUP: no --tls-cert to read again"),
        Some(tls) => match tls.reload() {
            Ok(()) => eprintln!("regsweep listen: SIGHUP: read {} again: new connections get it", tls.cert().display()),
            Err(e) => eprintln!("regsweep listen: SIGHUP: kept the certificate it had: {e:#}"),
        },
    }
}

/// One request: 200 once stored; 401, 403, 405, 413, 400 refused (logged, nothing stored); 500
/// when the record cannot be written (the registry retries). Behind TLS, `peers` says who sent it.
fn serve(mut request: Request, record: &mut Record, opts: &ListenOptions, peers: Option<&Peers>) {
    let remote = request.remote_addr().copied();
    let behind = match (peers, remote) {
        (Some(p), Some(r)) => Some(p.behind(r)),
        (Some(_), None) => Some(None),
        (None, _) => None,
    };
    // Behind the relay, the peer it relays; else (or not relayed) who connected.
    let from = behind.flatten().or(remote).map_or("?".to_string(), |a| a.to_string());
    let result = match behind {
        // The inner port, reached without TLS (another local user).
        Some(None) => Err((403, "not through TLS".to_string())),
        _ => handle(&mut request, record, opts),
    };
    let (status, refusal) = match result {
        Ok(()) => (200, None),
        Err((status, why)) => (status, Some(why)),
    };
    if let Some(why) = refusal {
        let method = request.method().to_string();
        eprintln!("regsweep listen: {status} to {from} ({} {}): {why}", printable(&method), printable(request.url()));
    }
    let _ = request.respond(Response::empty(status));
}

fn handle(request: &mut Request, record: &mut Record, opts: &ListenOptions) -> Result<(), (u16, String)> {
    if let Some(token) = &opts.token {
        let given = request.headers().iter().find(|h| h.field.equiv("Authorization")).map(|h| h.value.as_str());
        match given {
            None => return Err((401, "no Authorization header".into())),
            Some(v) if !same(v, &format!("Bearer {token}")) && !same(v, token) => {
                return Err((401, "wrong Authorization header".into()));
            }
            Some(_) => {}
        }
    }
    if *request.method() != tiny_http::Method::Post {
        return Err((405, "only POST".into()));
    }
    if request.body_length().is_some_and(|n| n as u64 > opts.max_body) {
        return Err((
            413,
            format!("a body of {} bytes, over --max-body {}", request.body_length().unwrap_or(0), opts.max_body),
        ));
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(opts.max_body + 1)
        .read_to_end(&mut body)
        .map_err(|e| (400, format!("cannot read the body: {e}")))?;
    if body.len() as u64 > opts.max_body {
        return Err((413, format!("a body over --max-body {}", opts.max_body)));
    }
    let batch = events::parse(&body, &opts.filter).map_err(|e| (400, e))?;
    for why in &batch.unreadable {
        eprintln!("regsweep listen: skipped {why}");
    }
    if !batch.pulls.is_empty() {
        crash_point("store");
    }
    record.store(&batch.pulls).map_err(|e| (500, format!("{e:#}")))?;
    if !batch.pulls.is_empty() {
        crash_point("answer");
    }
    Ok(())
}

/// Test-only (feature `test-hooks`): `REGSWEEP_TEST_LISTEN_CRASH=store` kills the listener
/// (SIGKILL) when a batch holding a pull is about to be stored, `answer` once it is stored and
/// before the 200: what a crash at either point costs (nothing: the registry posts it again).
#[cfg(not(feature = "test-hooks"))]
fn crash_point(_point: &str) {}

#[cfg(feature = "test-hooks")]
fn crash_point(point: &str) {
    if std::env::var("REGSWEEP_TEST_LISTEN_CRASH").is_ok_and(|p| p == point) {
        // SAFETY: raising a signal on our own process.
        unsafe { libc::raise(libc::SIGKILL) };
    }
}

/// Compares two header values in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
