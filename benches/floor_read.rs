//! The floor of a collection's reads: a bare parallel reader that makes the system calls
//! `regsweep gc --dry-run` makes on a store on disk, and nothing else: nothing parsed beyond
//! the digest a link names, nothing decided, nothing kept but the set of manifests to read.
//!
//! It finds the repositories (a folder holding `_manifests`, `_layers` or `_uploads`), and in
//! each lists the tags (names only), lists the revisions and reads every revision's `link`
//! relative to the open folder, lists `_layers/sha256` and `_uploads`; then reads each distinct
//! manifest a revision names (`blobs/sha256/xx/<hex>/data`, relative to the open blob folder),
//! and lists the 256 blob prefix folders. `benches/floor_read.sh` runs it beside regsweep.
//!
//!     cargo bench --bench floor_read -- ROOT [-j N]
//!
//! Prints the counts it read and its wall time on stderr; exits 1 on an unreadable store.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rayon::prelude::*;

static FILES: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);
static LISTINGS: AtomicUsize = AtomicUsize::new(0);

fn open_dir(p: &Path) -> Option<OwnedFd> {
    let c = CString::new(p.as_os_str().as_bytes()).ok()?;
    // SAFETY: a NUL-terminated path; the descriptor is owned at once.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    // SAFETY: a descriptor just opened, owned here.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads a small file relative to an open folder into `buf` (open, fstat, one read of its size,
/// close: the system calls regsweep makes); its length, or None.
fn read_at(dir: &OwnedFd, rel: &str, buf: &mut Vec<u8>) -> Option<usize> {
    let c = CString::new(rel).ok()?;
    // SAFETY: a valid descriptor and NUL-terminated relative path.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: just opened, owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `stat` is plain data, filled in by the call.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a `stat` to fill.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return None;
    }
    // One read of the size fstat gave, as regsweep reads.
    buf.clear();
    buf.resize(st.st_size.max(0) as usize, 0);
    // SAFETY: reads at most the buffer's length into it.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    buf.truncate(n.max(0) as usize);
    FILES.fetch_add(1, Ordering::Relaxed);
    BYTES.fetch_add(buf.len(), Ordering::Relaxed);
    Some(buf.len())
}

/// The names of a folder's entries, with whether each is a folder.
fn list(p: &Path) -> Vec<(String, bool)> {
    let Ok(rd) = fs::read_dir(p) else { return Vec::new() };
    LISTINGS.fetch_add(1, Ordering::Relaxed);
    rd.filter_map(|e| e.ok())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.file_type().is_ok_and(|t| t.is_dir())))
        .collect()
}

fn discover(dir: &Path, found: &Mutex<Vec<PathBuf>>) {
    let entries = list(dir);
    if entries.iter().any(|(n, d)| *d && matches!(n.as_str(), "_manifests" | "_layers" | "_uploads")) {
        found.lock().unwrap().push(dir.to_path_buf());
    }
    entries.par_iter().filter(|(n, d)| *d && !n.starts_with('_')).for_each(|(n, _)| discover(&dir.join(n), found));
}

/// One repository's reads; the manifests its revisions name go into `manifests`.
fn repository(repo: &Path, manifests: &Mutex<HashSet<[u8; 64]>>) {
    list(&repo.join("_manifests/tags"));
    let revs = repo.join("_manifests/revisions/sha256");
    let names = list(&revs);
    let named: Vec<[u8; 64]> = match open_dir(&revs) {
        Some(dir) => names
            .par_iter()
            .map_init(Vec::new, |buf, (hex, _)| {
                let n = read_at(&dir, &format!("{hex}/link"), buf)?;
                let d = buf.get(..n)?.strip_prefix(b"sha256:")?;
                d.try_into().ok()
            })
            .flatten()
            .collect(),
        None => Vec::new(),
    };
    list(&repo.join("_layers/sha256"));
    list(&repo.join("_uploads"));
    manifests.lock().unwrap().extend(named);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let mut root = None;
    let mut jobs = 128;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-j" => jobs = it.next().and_then(|n| n.parse().ok()).unwrap_or(jobs),
            _ => root = Some(PathBuf::from(a)),
        }
    }
    let Some(root) = root else {
        eprintln!("usage: floor_read ROOT [-j N]");
        std::process::exit(2);
    };
    rayon::ThreadPoolBuilder::new().num_threads(jobs).build_global().expect("threads");
    let t = Instant::now();
    let v2 = root.join("docker/registry/v2");
    let found = Mutex::new(Vec::new());
    discover(&v2.join("repositories"), &found);
    let repos = found.into_inner().unwrap();
    let manifests = Mutex::new(HashSet::new());
    repos.par_iter().for_each(|r| repository(r, &manifests));
    let manifests: Vec<[u8; 64]> = manifests.into_inner().unwrap().into_iter().collect();
    let blobs = v2.join("blobs/sha256");
    let Some(dir) = open_dir(&blobs) else {
        eprintln!("no {}", blobs.display());
        std::process::exit(1);
    };
    manifests.par_iter().for_each_init(Vec::new, |buf, hex| {
        let hex = std::str::from_utf8(hex).unwrap_or("");
        read_at(&dir, &format!("{}/{hex}/data", hex.get(..2).unwrap_or("")), buf);
    });
    let blob_folders: usize = (0..=255u8).into_par_iter().map(|b| list(&blobs.join(format!("{b:02x}"))).len()).sum();
    eprintln!(
        "floor: {} repositories, {} manifests, {} blob folders; {} files read ({} bytes), {} folders listed; {:.3} s",
        repos.len(),
        manifests.len(),
        blob_folders,
        FILES.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
        LISTINGS.load(Ordering::Relaxed),
        t.elapsed().as_secs_f64()
    );
}
