//! The parallel read of a store into an [`Inventory`]: repositories, tags, revisions, layer links,
//! uploads, the names of all blobs, and every manifest a revision names, parsed. It reads only;
//! it lists just what the decisions need (blob names, not blob files) and never follows a link.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use rayon::prelude::*;

use crate::blobs::BlobList;
use crate::digest::{Digest, DigestMap, DigestSet};
use crate::journal::Journal;
use crate::layout::{Layout, REPO_INTERNALS};
use crate::manifest::{self, Manifest};

/// Manifests larger than this are refused (the registry itself caps manifests at 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;
/// Image configs larger than this are not read for `created`.
const MAX_CONFIG: u64 = 64 << 20;

/// Everything regsweep knows of a store before it decides anything.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Repositories, sorted by name.
    pub repos: Vec<Repo>,
    /// Every manifest named by a revision link (or by the journal), by content digest.
    pub manifests: DigestMap<Parsed>,
    /// Every blob folder under `blobs/sha256/`, sorted.
    pub blobs: Vec<Digest>,
    /// The journal of an unfinished earlier run.
    pub journal: Option<Journal>,
}

/// One manifest as read from its blob.
#[derive(Debug)]
pub enum Parsed {
    Ok(Manifest),
    /// The blob is gone (the registry skips such revisions silently).
    Missing,
    /// Unreadable or unparsable: fatal only if the plan needs it.
    Broken(String),
}

impl Parsed {
    /// The manifest, when it could be read.
    pub fn manifest(&self) -> Option<&Manifest> {
        match self {
            Parsed::Ok(m) => Some(m),
            _ => None,
        }
    }
}

/// One repository.
#[derive(Debug, Default)]
pub struct Repo {
    pub name: String,
    pub tags: Vec<Tag>,
    /// Tags counted but not read (kept whatever they point to).
    pub tags_not_read: usize,
    pub revisions: Vec<Revision>,
    /// Revision folders without their link.
    pub incomplete_revisions: Vec<Digest>,
    /// `_layers` link folders, by the digest in their path.
    pub layers: Vec<Digest>,
    pub uploads: Vec<Upload>,
}

/// One tag.
#[derive(Debug, Clone)]
pub struct Tag {
    pub name: String,
    /// The digest of `current/link`; `None` when the tag has no current link.
    pub current: Option<Digest>,
    /// The mtime of `current/link`: when the tag was last pushed.
    pub pushed: SystemTime,
}

/// One revision link.
#[derive(Debug, Clone)]
pub struct Revision {
    /// The digest in its path.
    pub digest: Digest,
    /// The digest in its content (normally the same).
    pub target: Digest,
    pub modified: SystemTime,
}

/// One upload in progress.
#[derive(Debug, Clone)]
pub struct Upload {
    pub id: String,
    /// `startedat`; `None` when missing or unreadable (the registry never purges those).
    pub started: Option<SystemTime>,
    pub size: u64,
}

/// One folder entry.
pub(crate) struct Entry {
    pub name: String,
    pub is_dir: bool,
}

/// Calls `f` with the name of each entry of a folder and whether it is a folder; a missing
/// folder is empty. Symbolic links and non-UTF-8 names are errors.
fn each_entry(dir: &Path, mut f: impl FnMut(&str, bool)) -> Result<()> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    for entry in rd {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let ft = entry.file_type().with_context(|| format!("cannot stat {}", entry.path().display()))?;
        if ft.is_symlink() {
            bail!("{} is a symbolic link: regsweep never follows links inside a store", entry.path().display());
        }
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            bail!("{} has a name that is not UTF-8: the registry never writes one", entry.path().display());
        };
        f(name, ft.is_dir());
    }
    Ok(())
}

/// Lists a folder, as [`each_entry`] reads it.
pub(crate) fn list(dir: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    each_entry(dir, |name, is_dir| out.push(Entry { name: name.to_string(), is_dir }))?;
    Ok(out)
}

/// Opens a file without following a final symbolic link and without blocking: a FIFO where a
/// link or `data` should be would otherwise hang the run for ever (and hold the lock).
pub(crate) fn open_nofollow(path: &Path) -> std::io::Result<File> {
    fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)
}

/// An open folder. Files inside it are opened relative to it: that spares the kernel the walk of
/// a long absolute path for each of the store's hundreds of thousands of small files.
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Opens a folder (not through a symbolic link); `Ok(None)` when it does not exist.
    pub fn open(path: &Path) -> Result<Option<Dir>> {
        let c = CString::new(path.as_os_str().as_bytes()).with_context(|| format!("bad path {}", path.display()))?;
        // SAFETY: a valid NUL-terminated path; the descriptor is owned below.
        let fd =
            unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::NotFound {
                return Ok(None);
            }
            return Err(e).with_context(|| format!("cannot open folder {}", path.display()));
        }
        // SAFETY: `fd` is a descriptor we just opened and nobody else owns.
        Ok(Some(Dir { fd: unsafe { OwnedFd::from_raw_fd(fd) }, path: path.to_path_buf() }))
    }

    /// Opens `rel` inside this folder, refusing a symbolic link in any of its components
    /// (`openat2` with `RESOLVE_NO_SYMLINKS`; on kernels before 5.6, the last one only).
    fn open_beneath(&self, rel: &str, flags: i32) -> std::io::Result<OwnedFd> {
        let c = CString::new(rel).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: `open_how` is plain data; zeroed is its documented default.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = flags as u64;
        how.resolve = libc::RESOLVE_NO_SYMLINKS;
        // SAFETY: a valid descriptor, NUL-terminated relative path and `open_how` of its size.
        let mut fd = unsafe {
            libc::syscall(libc::SYS_openat2, self.fd.as_raw_fd(), c.as_ptr(), &how, size_of::<libc::open_how>())
        } as i32;
        if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
            // SAFETY: as above.
            fd = unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags) };
        }
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ELOOP) {
                return Err(std::io::Error::other("a symbolic link: regsweep never follows links inside a store"));
            }
            return Err(e);
        }
        // SAFETY: `fd` is a descriptor we just opened and nobody else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Opens a file without blocking (a FIFO opens at once, and is then refused as no regular
    /// file).
    fn open_file(&self, rel: &str) -> std::io::Result<File> {
        Ok(File::from(self.open_beneath(rel, libc::O_RDONLY | libc::O_NONBLOCK)?))
    }

    /// The size, mtime and whether it is a regular file of `rel` inside this folder, without
    /// following a symbolic link; `None` when it does not exist.
    pub fn stat(&self, rel: &str) -> std::io::Result<Option<FileStat>> {
        let c = CString::new(rel).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: `stat` is plain data, filled in by the call.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid descriptor, NUL-terminated relative path and a `stat` to fill.
        if unsafe { libc::fstatat(self.fd.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } < 0 {
            let e = std::io::Error::last_os_error();
            return if e.kind() == std::io::ErrorKind::NotFound { Ok(None) } else { Err(e) };
        }
        let modified = SystemTime::UNIX_EPOCH
            + std::time::Duration::new(st.st_mtime.max(0) as u64, st.st_mtime_nsec.clamp(0, 999_999_999) as u32);
        Ok(Some(FileStat {
            size: st.st_size.max(0) as u64,
            modified,
            regular: st.st_mode & libc::S_IFMT == libc::S_IFREG,
        }))
    }

    /// Opens the folder `rel` inside this one, through no symbolic link.
    pub fn open_dir(&self, rel: &str) -> std::io::Result<Dir> {
        let fd = self.open_beneath(rel, libc::O_RDONLY | libc::O_DIRECTORY)?;
        Ok(Dir { fd, path: self.path.join(rel) })
    }

    /// The folder's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file (or, with `folder`, the empty folder) `rel` inside this folder; never
    /// follows a symbolic link (`unlinkat` removes the link itself).
    pub fn remove(&self, rel: &str, folder: bool) -> std::io::Result<()> {
        let c = CString::new(rel).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        let flags = if folder { libc::AT_REMOVEDIR } else { 0 };
        // SAFETY: a valid descriptor and NUL-terminated relative path.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), flags) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads `rel` inside this folder, as [`read_file`] does.
    pub fn read(&self, rel: &str, max: u64) -> Result<Option<(Vec<u8>, fs::Metadata)>> {
        read_opened(self.open_file(rel), &|| self.path.join(rel), max)
    }

    /// Reads the link `rel` inside this folder, as [`read_link`] does.
    pub fn read_link(&self, rel: &str) -> Result<Option<(Digest, SystemTime)>> {
        link_of(self.read(rel, 1024)?, &|| self.path.join(rel))
    }
}

/// What [`Dir::stat`] tells of a file.
#[derive(Clone, Copy, Debug)]
pub struct FileStat {
    pub size: u64,
    pub modified: SystemTime,
    /// False for a folder, a FIFO, a device, a socket.
    pub regular: bool,
}

/// Reads a whole file of at most `max` bytes; `Ok(None)` when it does not exist.
pub fn read_file(path: &Path, max: u64) -> Result<Option<(Vec<u8>, fs::Metadata)>> {
    read_opened(open_nofollow(path), &|| path.to_path_buf(), max)
}

fn read_opened(
    opened: std::io::Result<File>,
    path: &dyn Fn() -> PathBuf,
    max: u64,
) -> Result<Option<(Vec<u8>, fs::Metadata)>> {
    let mut f = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path().display())),
    };
    let meta = f.metadata().with_context(|| format!("cannot stat {}", path().display()))?;
    if !meta.is_file() {
        return Err(NotRegular(format!("{} is not a regular file ({})", path().display(), kind_of(&meta))).into());
    }
    if meta.len() > max {
        bail!("{} is {} bytes, more than the {max} regsweep reads", path().display(), meta.len());
    }
    // One read of the size fstat gave: files here are written whole, never appended to.
    let mut buf = vec![0; meta.len() as usize];
    f.read_exact(&mut buf).with_context(|| format!("cannot read {}", path().display()))?;
    Ok(Some((buf, meta)))
}

/// Reads a link file: exactly `sha256:<64 hex>`, nothing else. `Ok(None)` when it does not exist.
pub fn read_link(path: &Path) -> Result<Option<(Digest, SystemTime)>> {
    link_of(read_file(path, 1024)?, &|| path.to_path_buf())
}

/// A file the registry writes as a regular file is something else (a folder, a FIFO, a device):
/// refused, never opened for reading in a way that could block.
#[derive(Debug)]
pub struct NotRegular(pub String);

impl std::fmt::Display for NotRegular {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotRegular {}

/// What a file that is no regular file is, in words.
fn kind_of(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a file"
    }
}

/// A link that does not hold exactly `sha256:<64 hex>`: the one read error `check` reports
/// rather than stops on.
#[derive(Debug)]
pub struct MalformedLink(pub String);

impl std::fmt::Display for MalformedLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MalformedLink {}

fn link_of(read: Option<(Vec<u8>, fs::Metadata)>, path: &dyn Fn() -> PathBuf) -> Result<Option<(Digest, SystemTime)>> {
    let Some((bytes, meta)) = read else { return Ok(None) };
    let text = std::str::from_utf8(&bytes).unwrap_or("");
    let Some(d) = Digest::parse(text) else {
        let what = match bytes.len() {
            0 => "empty".to_string(),
            _ if text.trim_end() != text => "followed by white space".to_string(),
            _ => format!("{:?}", String::from_utf8_lossy(&bytes[..bytes.len().min(100)])),
        };
        let msg = format!("malformed link {}: {what}; a link holds exactly sha256:<64 hex digits>", path().display());
        return Err(MalformedLink(msg).into());
    };
    let modified = meta.modified().with_context(|| format!("cannot stat {}", path().display()))?;
    Ok(Some((d, modified)))
}

/// Digests named by the folders in `dir` (64-hex names; others are not the registry's).
pub(crate) fn digest_folders(dir: &Path) -> Result<Vec<Digest>> {
    let mut out = Vec::new();
    each_entry(dir, |name, is_dir| out.extend(Digest::from_hex(name).filter(|_| is_dir)))?;
    Ok(out)
}

/// Finds every repository: a folder holding `_manifests`, `_layers` or `_uploads`.
fn discover(dir: &Path, name: &str, found: &Mutex<Vec<String>>) -> Result<()> {
    let entries = list(dir)?;
    if !name.is_empty() && entries.iter().any(|e| e.is_dir && REPO_INTERNALS.contains(&e.name.as_str())) {
        found.lock().unwrap_or_else(|p| p.into_inner()).push(name.to_string());
    }
    entries.par_iter().filter(|e| e.is_dir && !e.name.starts_with('_')).try_for_each(|e| {
        let child = if name.is_empty() { e.name.clone() } else { format!("{name}/{}", e.name) };
        discover(&dir.join(&e.name), &child, found)
    })
}

/// The names of every repository of the store, sorted.
pub fn repositories(layout: &Layout) -> Result<Vec<String>> {
    let repos_dir = layout.repositories();
    let found = Mutex::new(Vec::new());
    if repos_dir.exists() {
        discover(&repos_dir, "", &found)?;
    } else if !list(&layout.blobs())?.is_empty() {
        // Every blob would look unreferenced: more likely a missing mount than an empty
        // registry (the reference collector aborts here too, distribution#3200).
        bail!(
            "{} does not exist but {} holds blobs: refusing to treat every blob as garbage",
            repos_dir.display(),
            layout.blobs().display()
        );
    }
    let mut names = found.into_inner().unwrap_or_else(|p| p.into_inner());
    names.sort();
    Ok(names)
}

fn scan_tag(tags: &Dir, name: String) -> Result<Tag> {
    let (current, pushed) = match tags.read_link(&Layout::tag_current_in_tags(&name))? {
        Some((d, t)) => (Some(d), t),
        None => (None, SystemTime::UNIX_EPOCH),
    };
    Ok(Tag { name, current, pushed })
}

fn scan_upload(layout: &Layout, repo: &str, id: String) -> Result<Upload> {
    let dir = layout.upload_dir(repo, &id);
    // Unreadable or unparsable: never purged, as the registry does. Not a regular file: refused.
    let started = match read_file(&dir.join("startedat"), 1024) {
        Err(e) if e.is::<NotRegular>() => return Err(e),
        read => read.ok().flatten(),
    }
    .and_then(|(b, _)| chrono::DateTime::parse_from_rfc3339(String::from_utf8_lossy(&b).trim()).ok())
    .map(SystemTime::from);
    let size = fs::symlink_metadata(dir.join("data")).map(|m| m.len()).unwrap_or(0);
    Ok(Upload { id, started, size })
}

/// Reads one repository: its tags, revisions, layer links and uploads. Without `tag_links`
/// its tags are only counted (`Repo::tags_not_read`): a collection that keeps every tag and
/// every revision needs nothing more of them, as the reference collector reads nothing of them.
pub fn scan_repo(layout: &Layout, name: String, tag_links: bool) -> Result<Repo> {
    let tag_names: Vec<String> = list(&layout.tags(&name))?.into_iter().filter(|e| e.is_dir).map(|e| e.name).collect();
    let tags_not_read = if tag_links { 0 } else { tag_names.len() };
    let mut tags = match Dir::open(&layout.tags(&name))? {
        Some(dir) if tag_links => tag_names.into_par_iter().map(|t| scan_tag(&dir, t)).collect::<Result<Vec<_>>>()?,
        _ => Vec::new(),
    };
    tags.sort_by(|a, b| a.name.cmp(&b.name));
    let revs = digest_folders(&layout.revisions(&name))?;
    let revs_dir = if revs.is_empty() { None } else { Dir::open(&layout.revisions(&name))? };
    let read: Vec<(Digest, Option<(Digest, SystemTime)>)> = revs
        .into_par_iter()
        .filter_map(|d| revs_dir.as_ref().map(|dir| Ok((d, dir.read_link(&Layout::revision_link_in_revisions(&d))?))))
        .collect::<Result<_>>()?;
    // A folder without a link is no revision: an interrupted write or deletion left it.
    let (mut revisions, mut incomplete_revisions): (Vec<Revision>, Vec<Digest>) = (Vec::new(), Vec::new());
    for (digest, link) in read {
        match link {
            Some((target, modified)) => revisions.push(Revision { digest, target, modified }),
            None => incomplete_revisions.push(digest),
        }
    }
    revisions.sort_by_key(|r| r.digest);
    let mut layers = digest_folders(&layout.layers(&name))?;
    layers.sort_unstable();
    let upload_ids: Vec<String> =
        list(&layout.uploads(&name))?.into_iter().filter(|e| e.is_dir).map(|e| e.name).collect();
    let uploads = upload_ids.into_iter().map(|id| scan_upload(layout, &name, id)).collect::<Result<Vec<_>>>()?;
    Ok(Repo { name, tags, tags_not_read, revisions, incomplete_revisions, layers, uploads })
}

/// Lists the blob folders: one listing per prefix folder, no stat of any blob.
pub(crate) fn scan_blobs(layout: &Layout) -> Result<BlobList> {
    // Listed first: a symbolic link among the prefix folders is refused, never read through.
    let mut prefixes = [false; 256];
    each_entry(&layout.blobs(), |name, is_dir| {
        if let (true, 2, Ok(b)) = (is_dir, name.len(), u8::from_str_radix(name, 16))
            && name == format!("{b:02x}")
        {
            prefixes[usize::from(b)] = true;
        }
    })?;
    let lists = (0..=255u8)
        .into_par_iter()
        .map(|b| {
            if !prefixes[usize::from(b)] {
                return Ok(Vec::new());
            }
            let mut found = digest_folders(&layout.blobs().join(format!("{b:02x}")))?;
            found.retain(|d| d.0[0] == b); // a folder in the wrong prefix is no blob of the registry's
            Ok(found)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(BlobList::from_buckets(lists))
}

/// Reads and parses one manifest blob; `blobs` is `blobs/sha256/`, opened.
pub(crate) fn load_manifest(layout: &Layout, blobs: &Dir, d: &Digest) -> Parsed {
    match blobs.read(&Layout::blob_data_in_blobs(d), MAX_MANIFEST) {
        Ok(None) => Parsed::Missing,
        Ok(Some((bytes, _))) => match manifest::parse(&bytes) {
            Ok(m) => Parsed::Ok(m),
            Err(e) => Parsed::Broken(format!("manifest {d} at {}: {e:#}", layout.blob_data(d).display())),
        },
        Err(e) => Parsed::Broken(format!("manifest {d}: {e:#}")),
    }
}

/// Reads and parses the manifests named, in parallel; `blobs` is `blobs/sha256/`, opened
/// (`None` when the store has none).
pub fn read_manifests(layout: &Layout, blobs: Option<&Dir>, digests: DigestSet) -> DigestMap<Parsed> {
    digests
        .into_par_iter()
        .map(|d| {
            let p = match blobs {
                Some(dir) => load_manifest(layout, dir, &d),
                None => Parsed::Missing,
            };
            (d, p)
        })
        .collect()
}

/// The `created` time of each manifest asked for: an image's config `created`, an index's newest
/// child, a schema1 manifest's top history entry. `None` where it cannot be read. `config` reads
/// a config blob (from the store, or over the API).
pub fn created_times(
    manifests: &DigestMap<Parsed>,
    digests: &[Digest],
    config: &(dyn Fn(&Digest) -> Option<Vec<u8>> + Sync),
) -> DigestMap<Option<SystemTime>> {
    let image_created = |d: &Digest| -> Option<SystemTime> {
        let m = manifests.get(d).and_then(Parsed::manifest)?;
        let text = match (&m.created, &m.config) {
            (Some(c), _) => c.to_string(),
            (None, Some(cfg)) => manifest::parse_created(&config(cfg)?)?,
            _ => return None,
        };
        chrono::DateTime::parse_from_rfc3339(&text).ok().map(SystemTime::from)
    };
    digests
        .par_iter()
        .map(|d| {
            let t = match manifests.get(d).and_then(Parsed::manifest) {
                Some(m) if m.is_index() => m.children.iter().filter_map(&image_created).max(),
                _ => image_created(d),
            };
            (*d, t)
        })
        .collect()
}

/// Reads a config blob of the store (for [`created_times`]).
pub fn read_config(layout: &Layout, d: &Digest) -> Option<Vec<u8>> {
    read_file(&layout.blob_data(d), MAX_CONFIG).ok()?.map(|(b, _)| b)
}

/// The store as the plan reads it for the few facts it needs beyond the inventory.
pub struct Disk<'a>(pub &'a Layout);

impl crate::plan::StoreView for Disk<'_> {
    fn stat(&self, object: crate::plan::Object) -> Result<Option<(u64, SystemTime)>> {
        use crate::plan::Object;
        let l = self.0;
        stat(&match object {
            Object::BlobData(d) => l.blob_data(&d),
            Object::BlobFolder(d) => l.blob_dir(&d),
            Object::LayerLink(repo, d) => l.layer_dir(repo, &d).join("link"),
            Object::LayerFolder(repo, d) => l.layer_dir(repo, &d),
            Object::RevisionFolder(repo, d) => l.revision_dir(repo, &d),
        })
    }

    fn tag_index(&self, repo: &str, tag: &str) -> Result<Vec<Digest>> {
        digest_folders(&self.0.tag_index(repo, tag))
    }
}

/// The size and mtime of a file, without following a link; `None` when it does not exist.
pub fn stat(path: &Path) -> Result<Option<(u64, SystemTime)>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some((m.len(), m.modified().with_context(|| format!("cannot stat {}", path.display()))?))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot stat {}", path.display())),
    }
}
