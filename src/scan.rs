//! The parallel read of a store into an [`Inventory`]: repositories, tags, revisions, layer links,
//! uploads, the names of all blobs, and every manifest a revision names, parsed. It reads only;
//! it lists just what the decisions need (blob names, not blob files) and never follows a link.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use rayon::prelude::*;

use crate::digest::Digest;
use crate::journal::Journal;
use crate::layout::{Layout, REPO_INTERNALS};
use crate::manifest::{self, Manifest};
use crate::progress::Progress;

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
    pub manifests: HashMap<Digest, Parsed>,
    /// Every blob folder under `blobs/sha256/`.
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
    pub revisions: Vec<Revision>,
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
    /// The digests of `index/sha256/`.
    pub index: Vec<Digest>,
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
struct Entry {
    name: String,
    is_dir: bool,
}

/// Lists a folder; a missing folder is empty. Symbolic links and non-UTF-8 names are errors.
fn list(dir: &Path) -> Result<Vec<Entry>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let ft = entry.file_type().with_context(|| format!("cannot stat {}", entry.path().display()))?;
        if ft.is_symlink() {
            bail!("{} is a symbolic link: regsweep never follows links inside a store", entry.path().display());
        }
        let Ok(name) = entry.file_name().into_string() else {
            bail!("{} has a name that is not UTF-8: the registry never writes one", entry.path().display());
        };
        out.push(Entry { name, is_dir: ft.is_dir() });
    }
    Ok(out)
}

/// Opens a regular file without following a final symbolic link.
fn open_nofollow(path: &Path) -> std::io::Result<File> {
    fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// Reads a whole file of at most `max` bytes; `Ok(None)` when it does not exist.
pub fn read_file(path: &Path, max: u64) -> Result<Option<(Vec<u8>, fs::Metadata)>> {
    let mut f = match open_nofollow(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let meta = f.metadata().with_context(|| format!("cannot stat {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    if meta.len() > max {
        bail!("{} is {} bytes, more than the {max} regsweep reads", path.display(), meta.len());
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Some((buf, meta)))
}

/// Reads a link file: exactly `sha256:<64 hex>`, nothing else. `Ok(None)` when it does not exist.
pub fn read_link(path: &Path) -> Result<Option<(Digest, SystemTime)>> {
    let Some((bytes, meta)) = read_file(path, 1024)? else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&bytes).unwrap_or("");
    let Some(d) = Digest::parse(text) else {
        let what = match bytes.len() {
            0 => "empty".to_string(),
            _ if text.trim_end() != text => "followed by white space".to_string(),
            _ => format!("{:?}", String::from_utf8_lossy(&bytes[..bytes.len().min(100)])),
        };
        bail!("malformed link {}: {what}; a link holds exactly sha256:<64 hex digits>", path.display());
    };
    let modified = meta.modified().with_context(|| format!("cannot stat {}", path.display()))?;
    Ok(Some((d, modified)))
}

/// Digests named by the folders in `dir` (64-hex names; others are not the registry's).
fn digest_folders(dir: &Path) -> Result<Vec<Digest>> {
    Ok(list(dir)?.into_iter().filter(|e| e.is_dir).filter_map(|e| Digest::from_hex(&e.name)).collect())
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

fn scan_tag(layout: &Layout, repo: &str, name: String) -> Result<Tag> {
    let (current, pushed) = match read_link(&layout.tag_current(repo, &name))? {
        Some((d, t)) => (Some(d), t),
        None => (None, SystemTime::UNIX_EPOCH),
    };
    let index = digest_folders(&layout.tag_index(repo, &name))?;
    Ok(Tag { name, current, pushed, index })
}

fn scan_upload(layout: &Layout, repo: &str, id: String) -> Result<Upload> {
    let dir = layout.upload_dir(repo, &id);
    let started = read_file(&dir.join("startedat"), 1024)
        .ok()
        .flatten()
        .and_then(|(b, _)| chrono::DateTime::parse_from_rfc3339(String::from_utf8_lossy(&b).trim()).ok())
        .map(SystemTime::from);
    let size = fs::symlink_metadata(dir.join("data")).map(|m| m.len()).unwrap_or(0);
    Ok(Upload { id, started, size })
}

fn scan_repo(layout: &Layout, name: String) -> Result<Repo> {
    let tag_names: Vec<String> = list(&layout.tags(&name))?.into_iter().filter(|e| e.is_dir).map(|e| e.name).collect();
    let mut tags = tag_names.into_par_iter().map(|t| scan_tag(layout, &name, t)).collect::<Result<Vec<_>>>()?;
    tags.sort_by(|a, b| a.name.cmp(&b.name));
    let revs = digest_folders(&layout.revisions(&name))?;
    let mut revisions = revs
        .into_par_iter()
        .filter_map(|d| {
            let path = layout.revision_dir(&name, &d).join("link");
            match read_link(&path) {
                Ok(Some((target, modified))) => Some(Ok(Revision { digest: d, target, modified })),
                Ok(None) => None, // a folder without a link is no revision (a crashed write)
                Err(e) => Some(Err(e)),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    revisions.sort_by_key(|r| r.digest);
    let mut layers = digest_folders(&layout.layers(&name))?;
    layers.sort_unstable();
    let upload_ids: Vec<String> =
        list(&layout.uploads(&name))?.into_iter().filter(|e| e.is_dir).map(|e| e.name).collect();
    let uploads = upload_ids.into_iter().map(|id| scan_upload(layout, &name, id)).collect::<Result<Vec<_>>>()?;
    Ok(Repo { name, tags, revisions, layers, uploads })
}

/// Lists the blob folders: one listing per prefix folder, no stat of any blob.
fn scan_blobs(layout: &Layout) -> Result<Vec<Digest>> {
    let prefixes: Vec<String> = list(&layout.blobs())?
        .into_iter()
        .filter(|e| {
            e.is_dir && e.name.len() == 2 && e.name.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        })
        .map(|e| e.name)
        .collect();
    let lists = prefixes
        .par_iter()
        .map(|p| {
            let found = digest_folders(&layout.blobs().join(p))?;
            Ok(found.into_iter().filter(|d| d.hex().starts_with(p.as_str())).collect::<Vec<_>>())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(lists.into_iter().flatten().collect())
}

/// Reads and parses one manifest blob.
pub fn load_manifest(layout: &Layout, d: &Digest) -> Parsed {
    let path = layout.blob_data(d);
    match read_file(&path, MAX_MANIFEST) {
        Ok(None) => Parsed::Missing,
        Ok(Some((bytes, _))) => match manifest::parse(&bytes) {
            Ok(m) => Parsed::Ok(m),
            Err(e) => Parsed::Broken(format!("manifest {d} at {}: {e:#}", path.display())),
        },
        Err(e) => Parsed::Broken(format!("manifest {d}: {e:#}")),
    }
}

/// Reads the whole store.
pub fn scan(layout: &Layout, progress: Progress) -> Result<Inventory> {
    let journal = Journal::read(layout)?;
    let repos_dir = layout.repositories();
    let found = Mutex::new(Vec::new());
    if repos_dir.exists() {
        discover(&repos_dir, "", &found)?;
    }
    let mut names = found.into_inner().unwrap_or_else(|p| p.into_inner());
    names.sort();
    let bar = progress.bar("scanning", names.len() as u64);
    let repos = names
        .into_par_iter()
        .map(|n| {
            let r = scan_repo(layout, n);
            bar.inc(1);
            r
        })
        .collect::<Result<Vec<_>>>()?;
    bar.finish_and_clear();
    let blobs = scan_blobs(layout)?;

    let mut wanted: HashSet<Digest> = repos.iter().flat_map(|r| r.revisions.iter().map(|v| v.target)).collect();
    wanted.extend(journal.iter().flat_map(|j| j.repos.values().flat_map(|t| t.values().copied())));
    let bar = progress.bar("manifests", wanted.len() as u64);
    let manifests = wanted
        .into_par_iter()
        .map(|d| {
            let p = load_manifest(layout, &d);
            bar.inc(1);
            (d, p)
        })
        .collect();
    bar.finish_and_clear();
    Ok(Inventory { repos, manifests, blobs, journal })
}

/// The `created` time of each manifest asked for: an image's config `created`, an index's newest
/// child, a schema1 manifest's top history entry. `None` where it cannot be read.
pub fn created_times(layout: &Layout, inv: &Inventory, digests: &[Digest]) -> HashMap<Digest, Option<SystemTime>> {
    let image_created = |d: &Digest| -> Option<SystemTime> {
        let m = inv.manifests.get(d).and_then(Parsed::manifest)?;
        let text = match (&m.created, &m.config) {
            (Some(c), _) => c.clone(),
            (None, Some(cfg)) => manifest::parse_created(&read_file(&layout.blob_data(cfg), MAX_CONFIG).ok()??.0)?,
            _ => return None,
        };
        chrono::DateTime::parse_from_rfc3339(&text).ok().map(SystemTime::from)
    };
    digests
        .par_iter()
        .map(|d| {
            let t = match inv.manifests.get(d).and_then(Parsed::manifest) {
                Some(m) if m.is_index() => m.children.iter().filter_map(&image_created).max(),
                _ => image_created(d),
            };
            (*d, t)
        })
        .collect()
}

/// The size and mtime of a file, without following a link; `None` when it does not exist.
pub fn stat(path: &Path) -> Result<Option<(u64, SystemTime)>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some((m.len(), m.modified().with_context(|| format!("cannot stat {}", path.display()))?))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot stat {}", path.display())),
    }
}
