//! TLS for `regsweep listen` (`--tls-cert`, `--tls-key`): registries in another container, pod
//! or host post their events over the network.
//!
//! tiny_http speaks TLS only through an older rustls than the one regsweep carries, and reads
//! its certificate once. So the listener keeps tiny_http on a loopback port of its own and this
//! module fronts it: each connection to the public address is a TLS session (rustls, ring, the
//! crate's one rustls), relayed as plain bytes to that port. The certificate is read again on
//! SIGHUP ([`Tls::reload`]): new connections get the new one, those open keep theirs; a pair that
//! does not load (a missing file, a key that is not the certificate's) leaves the old one
//! serving. The relay notes which of its connections to the inner port (by local address and
//! port) carries which remote peer ([`Peers`]): the listener logs the real address, and answers
//! 403 to a connection to its inner port that did not come through TLS (another local user).

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A handshake not done in this long, from the connection's first moment, is dropped: a client
/// sending a byte now and then holds no thread past it.
const HANDSHAKE: Duration = Duration::from_secs(30);

/// A relayed connection that carries no byte either way for this long is closed (the registry
/// opens a new one when it has events again).
const IDLE: Duration = Duration::from_secs(60);

/// Relays at once at most; a connection beyond is closed at once, with a line. Each holds a
/// thread and two descriptors: an unauthenticated client opening hundreds would otherwise take
/// every descriptor (1024), and the registry's events would be refused.
const MAX_RELAYS: usize = 64;

/// The handshake deadline and the idle timeout: [`HANDSHAKE`] and [`IDLE`], or, test-only
/// (feature `test-hooks`), both `REGSWEEP_TEST_TLS_TIMEOUT_MS` milliseconds.
fn timeouts() -> (Duration, Duration) {
    #[cfg(feature = "test-hooks")]
    if let Some(ms) = std::env::var("REGSWEEP_TEST_TLS_TIMEOUT_MS").ok().and_then(|v| v.parse().ok()) {
        return (Duration::from_millis(ms), Duration::from_millis(ms));
    }
    (HANDSHAKE, IDLE)
}

/// The certificate and key files, and the configuration made of them that new connections get.
#[derive(Debug)]
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Reads the pair; an error names the file that failed and why.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls> {
        let config = config(cert, key)?;
        Ok(Tls { cert: cert.to_path_buf(), key: key.to_path_buf(), current: RwLock::new(config) })
    }

    /// Reads the pair again: new connections get it. On an error the old one keeps serving.
    pub fn reload(&self) -> Result<()> {
        let config = config(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = config;
        Ok(())
    }

    pub fn cert(&self) -> &Path {
        &self.cert
    }

    fn current(&self) -> Arc<ServerConfig> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// A server configuration of a PEM certificate chain and its PEM private key.
fn config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect)
        .map_err(|e| anyhow!("cannot read the certificate {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(anyhow!("{}: no PEM certificate in it", cert.display()));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| anyhow!("cannot read the key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("rustls: no protocol version")?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| anyhow!("the key {} does not serve the certificate {}: {e}", key.display(), cert.display()))?;
    Ok(Arc::new(config))
}

/// Which remote peer each relayed connection to the inner port carries, by the relay's local
/// address on it: address and port, since another local user may bind the same port on another
/// loopback address (127.0.0.2) and would otherwise pass for the relay.
#[derive(Clone, Debug, Default)]
pub struct Peers(Arc<Mutex<HashMap<SocketAddr, SocketAddr>>>);

impl Peers {
    /// The remote peer behind a connection to the inner port from `from`; `None` when that
    /// connection did not come through the TLS front.
    pub fn behind(&self, from: SocketAddr) -> Option<SocketAddr> {
        if !from.ip().is_loopback() {
            return None;
        }
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&from).copied()
    }

    fn set(&self, local: SocketAddr, peer: Option<SocketAddr>) {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match peer {
            Some(p) => map.insert(local, p),
            None => map.remove(&local),
        };
    }
}

/// Accepts connections on `public` for as long as the process runs; each is a TLS session
/// relayed to `inner` on a thread of its own, 64 at most (`MAX_RELAYS`).
pub fn front(public: TcpListener, inner: SocketAddr, tls: Arc<Tls>, peers: Peers) {
    std::thread::spawn(move || {
        let relays = Arc::new(AtomicUsize::new(0));
        for conn in public.incoming() {
            let tcp = match conn {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("regsweep listen: cannot accept a connection: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            let Some(slot) = Slot::take(&relays) else {
                let from = tcp.peer_addr().map_or("?".to_string(), |p| p.to_string());
                eprintln!("regsweep listen: {MAX_RELAYS} TLS connections open already: closed the one from {from}");
                continue;
            };
            let (config, peers) = (tls.current(), peers.clone());
            let spawned = std::thread::Builder::new().name("tls relay".into()).spawn(move || {
                let _slot = slot;
                let peer = tcp.peer_addr().ok();
                if let Err(e) = relay(tcp, inner, config, &peers).map_err(|e| e.downcast::<std::io::Error>()) {
                    let e = match e {
                        // A peer gone mid-way (the registry closing an idle connection) is no news.
                        Ok(io) if matches!(io.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => return,
                        Ok(io) => anyhow::Error::from(io),
                        Err(e) => e,
                    };
                    let from = peer.map_or("?".to_string(), |p| p.to_string());
                    eprintln!("regsweep listen: TLS connection from {from}: {e:#}");
                }
            });
            // No thread to be had (a pids limit): the connection (moved into the closure) is
            // closed with it; the listener goes on.
            if let Err(e) = spawned {
                eprintln!("regsweep listen: cannot start a thread for a TLS connection: {e}");
            }
        }
    });
}

/// One of the [`MAX_RELAYS`] places, given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(count: &Arc<AtomicUsize>) -> Option<Slot> {
        count.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < MAX_RELAYS).then_some(n + 1)).ok()?;
        Some(Slot(count.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One TLS session: the handshake, then bytes both ways until either side closes.
fn relay(mut tcp: TcpStream, inner: SocketAddr, config: Arc<ServerConfig>, peers: &Peers) -> Result<()> {
    let mut tls = rustls::ServerConnection::new(config).context("rustls")?;
    let (handshake, idle) = timeouts();
    let deadline = Instant::now() + handshake;
    // Writes wait at most this long for a client that reads nothing.
    tcp.set_write_timeout(Some(idle))?;
    let late = || anyhow!("handshake not done in {} s: closed", handshake.as_secs_f32());
    // By hand, not `complete_io`: that reads until the handshake is done, each read with its
    // own timeout, so a byte now and then would hold it for ever.
    while tls.is_handshaking() {
        while tls.wants_write() {
            tls.write_tls(&mut tcp)?;
        }
        // One deadline for the whole handshake, not one for each read.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(late());
        }
        tcp.set_read_timeout(Some(left))?;
        match tls.read_tls(&mut tcp) {
            // A client gone before a word (a port check) is no news; a refused certificate is.
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => {
                return match e.kind() {
                    ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => Ok(()),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut => Err(late()),
                    _ => Err(anyhow!("handshake: {e}")),
                };
            }
        }
        if let Err(e) = tls.process_new_packets() {
            let _ = tls.write_tls(&mut tcp);
            return Err(anyhow!("handshake: {e}"));
        }
    }
    tcp.set_read_timeout(None)?;
    let mut plain = TcpStream::connect(inner).context("cannot reach the listener's inner port")?;
    let local = plain.local_addr()?;
    peers.set(local, tcp.peer_addr().ok());
    let done = pump(&mut tcp, &mut plain, &mut tls, idle);
    peers.set(local, None);
    done
}

/// Moves bytes between the TLS side and the plain side, waiting on both with poll(2); `idle`
/// without a byte either way closes it.
fn pump(tcp: &mut TcpStream, plain: &mut TcpStream, tls: &mut rustls::ServerConnection, idle: Duration) -> Result<()> {
    let idle_ms = libc::c_int::try_from(idle.as_millis()).unwrap_or(libc::c_int::MAX);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // What rustls has decrypted already: the handshake's last read may have carried the
        // request with it, and then the socket has nothing more to wake poll with.
        loop {
            match tls.reader().read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => plain.write_all(&buf[..n])?,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        while tls.wants_write() {
            tls.write_tls(tcp)?;
        }
        let mut fds = [
            libc::pollfd { fd: tcp.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: plain.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: two valid pollfd entries that live across the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, idle_ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        if n == 0 {
            // Idle: closed as a server closes a keep-alive connection.
            tls.send_close_notify();
            let _ = tls.write_tls(tcp);
            return Ok(());
        }
        let ready = |r: libc::c_short| r & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
        if ready(fds[0].revents) {
            if tls.read_tls(tcp)? == 0 {
                return Ok(());
            }
            if let Err(e) = tls.process_new_packets() {
                let _ = tls.write_tls(tcp);
                return Err(anyhow!("{e}"));
            }
        }
        if ready(fds[1].revents) {
            let n = plain.read(&mut buf)?;
            if n == 0 {
                tls.send_close_notify();
                while tls.wants_write() {
                    tls.write_tls(tcp)?;
                }
                return Ok(());
            }
            tls.writer().write_all(&buf[..n])?;
        }
    }
}
