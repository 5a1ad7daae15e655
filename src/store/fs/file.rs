//! Access to the files of a store: folder listings, reads of small files relative to open
//! folders, `stat`, removal; every one without following a symbolic link and without blocking
//! on a FIFO. All the unsafe code of file access is here (signals and process checks keep
//! theirs beside them).

use std::ffi::CString;
use std::fs::{self, File};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

use crate::model::digest::Digest;
use crate::model::{LockHeld, message_error};
use crate::store::fs::layout::Layout;

/// One folder entry.
pub(crate) struct Entry {
    pub name: String,
    pub is_dir: bool,
}

/// Calls `f` with the name of each entry of a folder and whether it is a folder; a missing
/// folder is empty. Symbolic links and non-UTF-8 names are errors.
pub(crate) fn each_entry(dir: &Path, mut f: impl FnMut(&str, bool)) -> Result<()> {
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

/// A relative path as the kernel takes it (NUL-terminated), on the stack where it is short (a
/// store's are: `<xx>/<hex>/data` is 70 bytes), sparing an allocation per file of the scan.
enum CPath {
    Short([u8; 160]),
    Long(CString),
}

impl CPath {
    fn new(rel: &str) -> std::io::Result<CPath> {
        let bytes = rel.as_bytes();
        if bytes.contains(&0) {
            return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
        }
        if bytes.len() < 160 {
            let mut buf = [0u8; 160];
            buf[..bytes.len()].copy_from_slice(bytes);
            return Ok(CPath::Short(buf));
        }
        CString::new(rel).map(CPath::Long).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    }

    fn as_ptr(&self) -> *const libc::c_char {
        match self {
            CPath::Short(buf) => buf.as_ptr().cast(),
            CPath::Long(c) => c.as_ptr(),
        }
    }
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
        let c = CPath::new(rel)?;
        let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: `open_how` is plain data; zeroed is its documented default.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = flags as u64;
        // A file created gets the registry's mode (0666 less the umask); openat2 takes a mode
        // only with O_CREAT.
        let mode: libc::mode_t = if flags & libc::O_CREAT != 0 { 0o666 } else { 0 };
        how.mode = u64::from(mode);
        how.resolve = libc::RESOLVE_NO_SYMLINKS;
        // SAFETY: a valid descriptor, NUL-terminated relative path and `open_how` of its size.
        let mut fd = unsafe {
            libc::syscall(libc::SYS_openat2, self.fd.as_raw_fd(), c.as_ptr(), &how, size_of::<libc::open_how>())
        } as i32;
        // Kernels before 5.6 answer ENOSYS; older seccomp profiles (Docker's before 20.10, some
        // CI sandboxes) answer EPERM for a syscall they do not know. A real refusal comes again
        // from openat (EACCES, EPERM).
        if fd < 0 && matches!(std::io::Error::last_os_error().raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) {
            // SAFETY: as above.
            fd = unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags, libc::c_uint::from(mode)) };
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
        let c = CPath::new(rel)?;
        // SAFETY: `stat` is plain data, filled in by the call.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid descriptor, NUL-terminated relative path and a `stat` to fill.
        if unsafe { libc::fstatat(self.fd.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } < 0 {
            let e = std::io::Error::last_os_error();
            return if e.kind() == std::io::ErrorKind::NotFound { Ok(None) } else { Err(e) };
        }
        let modified = SystemTime::UNIX_EPOCH
            + std::time::Duration::new(st.st_mtime.max(0) as u64, st.st_mtime_nsec.clamp(0, 999_999_999) as u32);
        Ok(Some(FileStat { size: st.st_size.max(0) as u64, modified, mode: st.st_mode }))
    }

    /// [`Dir::stat`] of a file the registry writes as a regular file (a link, a `data`, a
    /// `startedat`): anything else there is a [`NotRegular`] error naming it.
    pub fn stat_file(&self, rel: &str) -> Result<Option<FileStat>> {
        match self.stat_at(rel)? {
            Some(st) if !st.regular() => Err(not_regular(&self.path.join(rel), st.mode)),
            st => Ok(st),
        }
    }

    /// [`Dir::stat`] with an error naming the path.
    pub fn stat_at(&self, rel: &str) -> Result<Option<FileStat>> {
        self.stat(rel).with_context(|| format!("cannot stat {}", self.path.join(rel).display()))
    }

    /// Opens the folder `rel` inside this one, through no symbolic link.
    pub fn open_dir(&self, rel: &str) -> std::io::Result<Dir> {
        let fd = self.open_beneath(rel, libc::O_RDONLY | libc::O_DIRECTORY)?;
        Ok(Dir { fd, path: self.path.join(rel) })
    }

    /// Opens the folder `rel` (a path of plain names) inside this one, creating each missing
    /// folder on the way as the registry does (mode 0777 less the umask); each is opened
    /// through no symbolic link before the next is made inside it, so a link planted anywhere
    /// on the way is refused, never followed.
    pub fn create_dirs(&self, rel: &Path) -> Result<Dir> {
        let mut at: Option<Dir> = None;
        for part in rel.components() {
            let std::path::Component::Normal(name) = part else {
                bail!("{} is not a path inside {}", rel.display(), self.path.display());
            };
            let name = name.to_str().with_context(|| format!("{} is not UTF-8", rel.display()))?;
            let parent = at.as_ref().unwrap_or(self);
            let c = CString::new(name).with_context(|| format!("bad name {name:?}"))?;
            // SAFETY: a valid descriptor and NUL-terminated name.
            if unsafe { libc::mkdirat(parent.fd.as_raw_fd(), c.as_ptr(), 0o777) } < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::AlreadyExists {
                    return Err(e).with_context(|| format!("cannot create {}", parent.path.join(name).display()));
                }
            }
            let path = || parent.path.join(name);
            let opened = match parent.open_dir(name) {
                Ok(dir) => dir,
                // O_DIRECTORY refuses a symbolic link before O_NOFOLLOW does: say which it is.
                Err(_)
                    if parent.stat(name).ok().flatten().is_some_and(|st| st.mode & libc::S_IFMT == libc::S_IFLNK) =>
                {
                    bail!("{} is a symbolic link: regsweep never follows links inside a store", path().display())
                }
                Err(e) => return Err(e).with_context(|| format!("cannot open folder {}", path().display())),
            };
            at = Some(opened);
        }
        at.map_or_else(|| Dir::open(&self.path)?.with_context(|| format!("{} is gone", self.path.display())), Ok)
    }

    /// Writes `bytes` as the file `name` of this folder where there is none: written to a
    /// temporary file beside it (`tmp`), synced, then linked into place (`linkat`, which fails
    /// where a file exists), all relative to this folder and through no symbolic link. False
    /// when a file was there.
    ///
    /// The temporary file is a new one (`O_EXCL`, `O_NONBLOCK`): whatever was at `tmp` (a FIFO
    /// that would block the open for ever, a hard link to a store file that would be truncated,
    /// a crashed run's leftover) is unlinked, once, and the open tried again.
    pub fn write_new(&self, name: &str, tmp: &str, bytes: &[u8]) -> Result<bool> {
        use std::io::Write as _;
        let c = |n: &str| CString::new(n).with_context(|| format!("bad name {n:?}"));
        let (cname, ctmp) = (c(name)?, c(tmp)?);
        let create = || self.open_beneath(tmp, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NONBLOCK);
        let fd = match create() {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => self.remove(tmp, false).and_then(|()| create()),
            other => other,
        }
        .with_context(|| format!("cannot write {}", self.path.join(tmp).display()))?;
        let mut f = File::from(fd);
        let written = f.write_all(bytes).and_then(|()| f.sync_all());
        drop(f);
        let linked = written.and_then(|()| {
            // SAFETY: a valid descriptor and NUL-terminated names, both relative to it; flags 0
            // follows no symbolic link.
            if unsafe { libc::linkat(self.fd.as_raw_fd(), ctmp.as_ptr(), self.fd.as_raw_fd(), cname.as_ptr(), 0) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
        let _ = self.remove(tmp, false);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot write {}", self.path.join(name).display())),
        }
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
        link_of(&|| self.read(rel, 1024), &|| self.path.join(rel))
    }
}

/// What [`Dir::stat`] tells of a file.
#[derive(Clone, Copy, Debug)]
pub struct FileStat {
    pub size: u64,
    pub modified: SystemTime,
    mode: libc::mode_t,
}

impl FileStat {
    /// False for a folder, a FIFO, a device, a socket, a symbolic link.
    pub fn regular(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }
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
        // O_NOFOLLOW refused the file itself: a symbolic link.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(not_regular(&path(), libc::S_IFLNK)),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path().display())),
    };
    let meta = f.metadata().with_context(|| format!("cannot stat {}", path().display()))?;
    if !meta.is_file() {
        return Err(not_regular(&path(), std::os::unix::fs::MetadataExt::mode(&meta)));
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
    link_of(&|| read_file(path, 1024), &|| path.to_path_buf())
}

message_error!(
    /// A file the registry writes as a regular file (a link, a `data`, a `startedat`) is
    /// something else (a folder, a FIFO, a device, a symbolic link): never read, followed nor
    /// deleted (docs/safety.md).
    NotRegular
);

/// The error naming `path`, which is no regular file but of this mode.
fn not_regular(path: &Path, mode: libc::mode_t) -> anyhow::Error {
    let kind = match mode & libc::S_IFMT {
        libc::S_IFDIR => "a folder",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFSOCK => "a socket",
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFBLK | libc::S_IFCHR => "a device",
        _ => "not a file",
    };
    NotRegular(format!(
        "{} is not a regular file ({kind}): regsweep never reads, follows or deletes it; look at it and remove it by hand",
        path.display()
    ))
    .into()
}

message_error!(
    /// A link that does not hold exactly `sha256:<64 hex>`: the one read error `check` reports
    /// rather than stops on.
    MalformedLink
);

/// A link file, read by `read`. The registry (2.8) writes a link in place, truncating it first:
/// a link shorter than a digest and written a moment ago is a push under way, read again a few
/// times before it is called malformed.
fn link_of(
    read: &dyn Fn() -> Result<Option<(Vec<u8>, fs::Metadata)>>,
    path: &dyn Fn() -> PathBuf,
) -> Result<Option<(Digest, SystemTime)>> {
    const LINK_LEN: usize = 71;
    let mut tries = 0;
    let (bytes, meta) = loop {
        let Some((bytes, meta)) = read()? else { return Ok(None) };
        let being_written = bytes.len() < LINK_LEN
            && meta.modified().is_ok_and(|t| t.elapsed().unwrap_or_default() < std::time::Duration::from_secs(5));
        if !being_written || tries == 10 {
            break (bytes, meta);
        }
        tries += 1;
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let text = std::str::from_utf8(&bytes).unwrap_or("");
    let Some(d) = Digest::parse(text) else {
        let what = crate::store::malformed_content(&bytes);
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

/// The size and mtime of a file or folder, without following a link; `None` when it does not
/// exist.
pub fn stat(path: &Path) -> Result<Option<(u64, SystemTime)>> {
    stat_as(path, false)
}

/// [`stat`] of a file the registry writes as a regular file: anything else there is a
/// [`NotRegular`] error naming it.
pub fn stat_file(path: &Path) -> Result<Option<(u64, SystemTime)>> {
    stat_as(path, true)
}

fn stat_as(path: &Path, file: bool) -> Result<Option<(u64, SystemTime)>> {
    match fs::symlink_metadata(path) {
        Ok(m) if file && !m.is_file() => Err(not_regular(path, std::os::unix::fs::MetadataExt::mode(&m))),
        Ok(m) => Ok(Some((m.len(), m.modified().with_context(|| format!("cannot stat {}", path.display()))?))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot stat {}", path.display())),
    }
}

/// The exclusive lock of one store, held until dropped.
#[derive(Debug)]
pub struct Lock {
    _folder: File,
    _file: Option<File>,
}

impl Lock {
    /// Takes the store's lock, or says who holds it: an `flock` on the folder
    /// `docker/registry/v2` itself, which needs no free inode (a full disk must be cleanable),
    /// and on the file `.regsweep.lock`, which older versions lock alone. When a full disk
    /// leaves no room to create that file, the folder's lock suffices: no older version could
    /// create the file either.
    pub fn acquire(layout: &Layout) -> Result<Lock> {
        let folder = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(layout.v2())
            .with_context(|| format!("cannot open {} to lock it", layout.v2().display()))?;
        take(&folder, layout.v2())?;
        let path = layout.lock_file();
        // Not through a symbolic link, and without blocking on a FIFO put in its place.
        let file = match fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(file) => Some(file),
            Err(e) if crate::store::no_room(&e) => None,
            Err(e) => return Err(e).with_context(|| format!("cannot create lock file {}", path.display())),
        };
        if let Some(file) = &file {
            take(file, &path)?;
        }
        Ok(Lock { _folder: folder, _file: file })
    }
}

/// An `flock` on an open file or folder, without waiting.
fn take(file: &File, path: &Path) -> Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(fs::TryLockError::WouldBlock) => {
            Err(LockHeld(format!("another regsweep run holds the lock {} on this store", path.display())).into())
        }
        Err(fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

impl crate::store::Held for Lock {
    /// The file's lock goes with the file, closed: that cannot fail.
    fn release(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;
    use std::process::Command;

    use super::*;

    const LINK: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn fifo(path: &Path) {
        assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
    }

    #[test]
    fn reads_go_through_open_folders_and_never_through_a_symbolic_link() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("a/b")).unwrap();
        fs::write(t.path().join("a/b/link"), LINK).unwrap();
        symlink(t.path().join("a"), t.path().join("via")).unwrap();
        let dir = Dir::open(t.path()).unwrap().unwrap();
        assert_eq!(dir.read_link("a/b/link").unwrap().unwrap().0, Digest::parse(LINK).unwrap());
        assert!(dir.read_link("a/b/none").unwrap().is_none(), "missing is None, not an error");
        let e = dir.read_link("via/b/link").unwrap_err();
        assert!(format!("{e:#}").contains("symbolic link"), "{e:#}");
        assert!(dir.open_dir("via").is_err());
        assert!(Dir::open(&t.path().join("via")).is_err(), "a folder opened through a link");
        assert!(Dir::open(&t.path().join("nothing")).unwrap().is_none());
    }

    /// Review finding 5: what is planted at the temporary name (a FIFO, a hard link to a store
    /// file) neither blocks the write nor is written through.
    #[test]
    fn write_new_makes_a_new_temporary_file_whatever_was_planted_at_its_name() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("victim"), LINK).unwrap();
        fifo(&t.path().join("a.tmp"));
        fs::hard_link(t.path().join("victim"), t.path().join("b.tmp")).unwrap();
        let dir = std::sync::Arc::new(Dir::open(t.path()).unwrap().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let d = dir.clone();
        // A blocked open would hang the test: waited for on a thread of its own.
        std::thread::spawn(move || tx.send(d.write_new("a", "a.tmp", b"one").map_err(|e| format!("{e:#}"))));
        let wrote = rx.recv_timeout(std::time::Duration::from_secs(5)).expect("write_new blocked on a FIFO");
        assert_eq!(wrote, Ok(true));
        assert!(dir.write_new("b", "b.tmp", b"two").unwrap());
        assert_eq!(fs::read_to_string(t.path().join("victim")).unwrap(), LINK, "written through a hard link");
        assert_eq!(fs::read_to_string(t.path().join("a")).unwrap(), "one");
        assert_eq!(fs::read_to_string(t.path().join("b")).unwrap(), "two");
        assert!(!t.path().join("a.tmp").exists() && !t.path().join("b.tmp").exists());
    }

    /// Review finding 7: a seccomp profile that answers EPERM for openat2 (older Docker
    /// profiles) leaves reads working, through openat. The filter is installed on a thread of
    /// its own (a seccomp filter without TSYNC binds that thread only).
    #[test]
    fn reads_work_where_seccomp_refuses_openat2_with_eperm() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("a/b")).unwrap();
        fs::write(t.path().join("a/b/link"), LINK).unwrap();
        let dir = Dir::open(t.path()).unwrap().unwrap();
        let read = std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: plain data for prctl; the filter binds this thread only.
                unsafe {
                    let ld = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
                    let jeq = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
                    let ret = (libc::BPF_RET | libc::BPF_K) as u16;
                    let mut prog = [
                        libc::sock_filter { code: ld, jt: 0, jf: 0, k: 0 },
                        libc::sock_filter { code: jeq, jt: 0, jf: 1, k: libc::SYS_openat2 as u32 },
                        libc::sock_filter { code: ret, jt: 0, jf: 0, k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32 },
                        libc::sock_filter { code: ret, jt: 0, jf: 0, k: libc::SECCOMP_RET_ALLOW },
                    ];
                    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_mut_ptr() };
                    assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
                    let mode = libc::c_ulong::from(libc::SECCOMP_MODE_FILTER);
                    assert_eq!(libc::prctl(libc::PR_SET_SECCOMP, mode, &fprog as *const libc::sock_fprog), 0);
                }
                dir.read_link("a/b/link").map_err(|e| format!("{e:#}"))
            })
            .join()
            .unwrap()
        });
        assert_eq!(read.unwrap().unwrap().0, Digest::parse(LINK).unwrap());
    }

    #[test]
    fn a_fifo_is_refused_at_once_as_no_regular_file() {
        let t = tempfile::tempdir().unwrap();
        fifo(&t.path().join("link"));
        let dir = Dir::open(t.path()).unwrap().unwrap();
        // Without O_NONBLOCK these would wait for a writer for ever.
        let e = dir.read_link("link").unwrap_err();
        assert!(e.is::<NotRegular>() && format!("{e}").contains("a FIFO"), "{e:#}");
        assert!(read_file(&t.path().join("link"), 10).unwrap_err().is::<NotRegular>());
        let st = dir.stat("link").unwrap().unwrap();
        assert!(!st.regular());
    }

    #[test]
    fn links_hold_exactly_a_digest() {
        let t = tempfile::tempdir().unwrap();
        for (name, text) in [("empty", String::new()), ("newline", format!("{LINK}\n")), ("other", "md5:x".into())] {
            fs::write(t.path().join(name), text).unwrap();
            let e = read_link(&t.path().join(name)).unwrap_err();
            assert!(e.is::<MalformedLink>(), "{name}: {e:#}");
        }
    }

    #[test]
    fn a_link_being_written_is_read_again_not_called_malformed() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("link");
        fs::write(&path, "").unwrap();
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(50));
                fs::write(path, LINK).unwrap();
            })
        };
        assert_eq!(read_link(&path).unwrap().unwrap().0, Digest::parse(LINK).unwrap());
        writer.join().unwrap();
    }

    #[test]
    fn stat_remove_and_listings() {
        let t = tempfile::tempdir().unwrap();
        let hex = "b".repeat(64);
        fs::create_dir_all(t.path().join(&hex)).unwrap();
        fs::create_dir_all(t.path().join("not-a-digest")).unwrap();
        fs::write(t.path().join(&hex).join("data"), b"12345").unwrap();
        assert_eq!(digest_folders(t.path()).unwrap(), [Digest::from_hex(&hex).unwrap()]);
        let dir = Dir::open(t.path()).unwrap().unwrap();
        let st = dir.stat(&format!("{hex}/data")).unwrap().unwrap();
        assert!(st.regular() && st.size == 5);
        assert_eq!(stat(&t.path().join(&hex).join("data")).unwrap().unwrap().0, 5);
        assert!(dir.remove(&hex, true).is_err(), "a folder that is not empty stays");
        dir.remove(&format!("{hex}/data"), false).unwrap();
        dir.remove(&hex, true).unwrap();
        assert!(dir.stat(&hex).unwrap().is_none());
        symlink("/", t.path().join("escape")).unwrap();
        assert!(list(t.path()).is_err(), "a symbolic link in a listing is an error");
        assert!(list(&t.path().join("gone")).unwrap().is_empty(), "a missing folder is empty");
    }
}
