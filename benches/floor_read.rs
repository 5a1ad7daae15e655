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
//! With `--prune`, also the reads a `prune --dry-run` adds to those, for every object rather
//! than only the candidates the plan picks (so a little above that floor): every tag's
//! `current/link`, read relative to the open tags folder, and a `stat` of every layer link and
//! every blob's `data`, relative to the open `v2` folder, as regsweep makes them.
//!
//! With `--du`, the gc floor's reads and a `stat` of every blob's `data` (the sizes `du` adds).
//!
//! With `--one-pass`, the same reads in regsweep's order: the blob folders listed while the
//! repositories are found, and each repository's manifests read right after its links (rather
//! than every repository's links first, then every distinct manifest once, then the blob
//! folders; with `--prune` or `--du` the blobs' `stat`s go with their listing): what that
//! order costs a cold run on a large store.
//!
//!     cargo bench --bench floor_read -- ROOT [-j N] [--prune | --du] [--one-pass]
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
static STATS: AtomicUsize = AtomicUsize::new(0);

/// `fstatat` of a path relative to an open folder, not following a link, as regsweep stats.
fn stat_at(dir: &OwnedFd, rel: &str) {
    let Ok(c) = CString::new(rel) else { return };
    // SAFETY: `stat` is plain data, filled in by the call.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor, a NUL-terminated relative path and a `stat` to fill.
    if unsafe { libc::fstatat(dir.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } == 0 {
        STATS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where the reads a prune adds are made from: the open `v2` folder, and the repository's
/// path relative to it.
struct Prune<'a> {
    v2: &'a OwnedFd,
    rel: &'a str,
}

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

/// Reads the manifest `blobs/sha256/xx/<hex>/data` relative to the open blob folder.
fn read_manifest(blobs: &OwnedFd, hex: &[u8; 64], buf: &mut Vec<u8>) {
    let hex = std::str::from_utf8(hex).unwrap_or("");
    read_at(blobs, &format!("{}/{hex}/data", hex.get(..2).unwrap_or("")), buf);
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

/// One repository's reads; the manifests its revisions name are read at once from `blobs`
/// when given (one pass), else go into `manifests`.
fn repository(repo: &Path, manifests: &Mutex<HashSet<[u8; 64]>>, prune: Option<Prune>, blobs: Option<&OwnedFd>) {
    let tags = list(&repo.join("_manifests/tags"));
    if prune.is_some()
        && let Some(dir) = open_dir(&repo.join("_manifests/tags"))
    {
        tags.par_iter().for_each_init(Vec::new, |buf, (tag, _)| {
            read_at(&dir, &format!("{tag}/current/link"), buf);
        });
    }
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
    let layers = list(&repo.join("_layers/sha256"));
    if let Some(p) = prune {
        layers.par_iter().for_each(|(hex, _)| stat_at(p.v2, &format!("{}/_layers/sha256/{hex}/link", p.rel)));
    }
    list(&repo.join("_uploads"));
    match blobs {
        // Each repository's manifests right after its links, as regsweep's one pass reads them.
        Some(dir) => named.par_iter().for_each_init(Vec::new, |buf, hex| read_manifest(dir, hex, buf)),
        None => manifests.lock().unwrap().extend(named),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let mut root = None;
    let mut jobs = 128;
    let (mut prune, mut du, mut one_pass) = (false, false, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-j" => jobs = it.next().and_then(|n| n.parse().ok()).unwrap_or(jobs),
            "--prune" => prune = true,
            "--du" => du = true,
            "--one-pass" => one_pass = true,
            _ => root = Some(PathBuf::from(a)),
        }
    }
    let Some(root) = root else {
        eprintln!("usage: floor_read ROOT [-j N] [--prune | --du] [--one-pass]");
        std::process::exit(2);
    };
    rayon::ThreadPoolBuilder::new().num_threads(jobs).build_global().expect("threads");
    let t = Instant::now();
    let v2 = root.join("docker/registry/v2");
    let blobs = v2.join("blobs/sha256");
    let (Some(v2_dir), Some(blobs_dir)) = (open_dir(&v2), open_dir(&blobs)) else {
        eprintln!("no {}", blobs.display());
        std::process::exit(1);
    };
    let list_blobs = || -> usize {
        (0..=255u8)
            .into_par_iter()
            .map(|b| {
                let listed = list(&blobs.join(format!("{b:02x}")));
                if prune || du {
                    listed
                        .par_iter()
                        .for_each(|(hex, _)| stat_at(&v2_dir, &format!("blobs/sha256/{b:02x}/{hex}/data")));
                }
                listed.len()
            })
            .sum()
    };
    let find_repos = || {
        let found = Mutex::new(Vec::new());
        discover(&v2.join("repositories"), &found);
        found.into_inner().unwrap()
    };
    // One pass, as regsweep reads: the blob folders listed while the repositories are found,
    // each repository's manifests read right after its links. Otherwise: the links of every
    // repository, then every distinct manifest once, then the blob folders.
    let (repos, early_blobs) =
        if one_pass { rayon::join(find_repos, || Some(list_blobs())) } else { (find_repos(), None) };
    let manifests = Mutex::new(HashSet::new());
    repos.par_iter().for_each(|r| {
        let rel = r.strip_prefix(&v2).ok().and_then(|p| p.to_str()).unwrap_or("");
        repository(r, &manifests, prune.then_some(Prune { v2: &v2_dir, rel }), one_pass.then_some(&blobs_dir))
    });
    let manifests: Vec<[u8; 64]> = manifests.into_inner().unwrap().into_iter().collect();
    manifests.par_iter().for_each_init(Vec::new, |buf, hex| read_manifest(&blobs_dir, hex, buf));
    let blob_folders = early_blobs.unwrap_or_else(list_blobs);
    eprintln!(
        "floor: {} repositories, {} blob folders; {} files read ({} bytes), {} folders listed, {} stats; {:.3} s",
        repos.len(),
        blob_folders,
        FILES.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
        LISTINGS.load(Ordering::Relaxed),
        STATS.load(Ordering::Relaxed),
        t.elapsed().as_secs_f64()
    );
}
