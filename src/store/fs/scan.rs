//! The parallel read of a store into an [`Inventory`](crate::model::inventory::Inventory): repositories, tags, revisions, layer links,
//! uploads, the names of all blobs, and every manifest a revision names, parsed. It reads only;
//! it lists just what the decisions need (blob names, not blob files) and never follows a link.

use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::Result;
use rayon::prelude::*;

use crate::model::blobs::BlobList;
use crate::model::digest::{Digest, DigestMap, DigestSet};
use crate::model::inventory::{Parsed, Repo, Revision, Tag, Upload};
use crate::store::fs::layout::Layout;
use crate::store::fs::{Dir, NotRegular, digest_folders, each_entry, list, read_file, stat_file};
use crate::store::tree::{self, REPO_INTERNALS, inside};
use crate::store::{MAX_CONFIG, MAX_MANIFEST};

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
        let shown = |p: std::path::PathBuf| p.display().to_string();
        return Err(crate::store::blobs_without_repositories(&shown(repos_dir), &shown(layout.blobs())));
    }
    let mut names = found.into_inner().unwrap_or_else(|p| p.into_inner());
    names.sort();
    Ok(names)
}

fn scan_tag(tags: &Dir, name: String) -> Result<Tag> {
    let (current, pushed) = match tags.read_link(&inside::tag_current_in_tags(&name))? {
        Some((d, t)) => (Some(d), t),
        None => (None, SystemTime::UNIX_EPOCH),
    };
    Ok(Tag { name, current, pushed })
}

fn scan_upload(layout: &Layout, repo: &str, id: String) -> Result<Upload> {
    let dir = layout.upload_dir(repo, &id);
    // Unreadable or unparsable: never purged, as the registry does. Not a regular file: refused.
    let started = match read_file(&dir.join(tree::STARTED), 1024) {
        Err(e) if e.is::<NotRegular>() => return Err(e),
        read => read.ok().flatten(),
    }
    .and_then(|(b, _)| crate::store::started_at(&b));
    let size = match stat_file(&dir.join(tree::DATA)) {
        Err(e) if e.is::<NotRegular>() => return Err(e),
        st => st.ok().flatten().map_or(0, |(size, _)| size),
    };
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
        .filter_map(|d| revs_dir.as_ref().map(|dir| Ok((d, dir.read_link(&inside::revision_link_in_revisions(&d))?))))
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
            let mut found = digest_folders(&layout.blob_prefix(b))?;
            found.retain(|d| d.0[0] == b); // a folder in the wrong prefix is no blob of the registry's
            Ok(found)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(BlobList::from_buckets(lists))
}

/// Reads and parses one manifest blob; `blobs` is `blobs/sha256/`, opened.
pub(crate) fn load_manifest(layout: &Layout, blobs: &Dir, d: &Digest) -> Parsed {
    let read = blobs.read(&tree::blob_data_in_blobs(d), MAX_MANIFEST).map(|r| r.map(|(bytes, _)| bytes));
    crate::store::parse_manifest(d, read, &|| layout.blob_data(d).display().to_string())
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

/// Reads a config blob of the store (for [`created_times`](crate::core::policy::created_times)).
pub fn read_config(layout: &Layout, d: &Digest) -> Option<Vec<u8>> {
    read_file(&layout.blob_data(d), MAX_CONFIG).ok()?.map(|(b, _)| b)
}
