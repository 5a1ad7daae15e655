//! The object-storage backend: a store in a bucket as the registry's s3, azure or gcs driver
//! writes it (docs/DESIGN.md section 5), over any object store ([`client`]; what each provider
//! adds is one file: [`s3`], [`azure`], [`gcs`], [`memory`] for the tests). The same tree as on
//! disk, with no folders: a folder is a common prefix. Read fast: every key under
//! `repositories/` and `blobs/` is listed flat, ranges in parallel, once; a link's content is
//! known from the MD5 the listing tells (S3's and GCS's ETag, Azure's `Content-MD5`: the MD5 of
//! `sha256:<hex>`) among the repository's digests, read
//! only when it is none of them; each manifest is read once. Deleted in the same crash-safe
//! order as on disk, in the provider's batches.

#[cfg(feature = "azure")]
pub mod azure;
pub mod cache;
pub mod check;
pub mod client;
mod gate;
#[cfg(feature = "gcs")]
pub mod gcs;
mod lock;
pub mod memory;
mod remove;
pub mod s3;
mod xml;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use md5::Digest as _;
use rayon::prelude::*;

use crate::core::plan::{Object, RepoPlan, StoreView};
use crate::core::progress::Progress;
use crate::model::blobs::BlobList;
use crate::model::digest::{Digest, DigestMap, DigestSet};
use crate::model::inventory::{Parsed, Repo, Revision, Tag, Upload};
use crate::model::journal::Journal;
use crate::model::manifest;
use crate::model::outcome::RequestCounts;
use crate::store::MalformedLink;
use crate::store::remark::{self, Rescued, Young};
use crate::store::stage::{Relink, Removal};
use crate::store::tree::{self, Inside, JOURNAL, LOCK, inside, split_repo_key};
use crate::store::{Guard, Held, Scan, Sweep, journal};
use crate::store::{MAX_CONFIG, MAX_MANIFEST};
use client::{Bucket, Obj};

/// Keys in one range of the re-mark's listing: a few pages, one range after the other.
const RANGE_KEYS: usize = 5_000;

/// A store in a bucket.
pub struct BucketStore {
    bucket: Arc<Bucket>,
    /// The scan's listing of `repositories/`, by repository: keys relative to the repository's
    /// folder, sorted.
    repos: RwLock<BTreeMap<String, Arc<Vec<Obj>>>>,
    /// The scan's listing of `blobs/`: each blob's size and time.
    blobs: RwLock<DigestMap<(u64, SystemTime)>>,
    /// This run's lock, once taken.
    claim: Mutex<Option<Arc<lock::Claim>>>,
    /// Manifests read by earlier runs.
    cache: cache::Cache,
    /// Manifests this run read (a re-mark reads those pushes wrote, several times over).
    read: Mutex<DigestMap<manifest::Manifest>>,
}

/// The MD5 of a link's content, as the store tells it ([`client::Obj::md5`]).
fn link_md5(d: &Digest) -> String {
    hex::encode(md5::Md5::digest(d.to_string().as_bytes()))
}

/// Keys listed under `repositories/`, by repository: keys relative to the repository's folder,
/// sorted; keys of no repository are left out.
fn by_repository(lists: Vec<Vec<Obj>>) -> BTreeMap<String, Vec<Obj>> {
    let mut repos: BTreeMap<String, Vec<Obj>> = BTreeMap::new();
    for mut o in lists.into_iter().flatten() {
        let Some(rel) = o.key.strip_prefix(&format!("{}/", tree::REPOSITORIES)) else { continue };
        let Some((repo, inside)) = split_repo_key(rel) else { continue };
        let (repo, inside) = (repo.to_string(), inside.to_string());
        o.key = inside;
        repos.entry(repo).or_default().push(o);
    }
    for objs in repos.values_mut() {
        objs.sort_by(|a, b| a.key.cmp(&b.key));
    }
    repos
}

/// The digests named by the folders under `prefix` (which ends with `/`) in `objs`, sorted.
fn digest_folders(objs: &[Obj], prefix: &str) -> Vec<Digest> {
    let found: BTreeSet<Digest> = under(objs, prefix)
        .iter()
        .filter_map(|o| o.key[prefix.len()..].split('/').next().and_then(Digest::from_hex))
        .collect();
    found.into_iter().collect()
}

/// The blob keys whose digest begins with hex digit `d` (prefix folders `<d>0` to `<d>f`): one
/// range of the blob listing, flat.
fn list_blob_range(bucket: &Bucket, d: u8) -> Result<Vec<Obj>> {
    bucket.list_beginning(tree::BLOBS, &format!("{d:x}"))
}

/// The objects of `objs` (sorted by key) under `prefix` (which ends with `/`).
fn under<'a>(objs: &'a [Obj], prefix: &str) -> &'a [Obj] {
    let start = objs.partition_point(|o| o.key.as_str() < prefix);
    let end = start + objs[start..].partition_point(|o| o.key.starts_with(prefix));
    &objs[start..end]
}

impl BucketStore {
    /// Opens the store in a bucket, refusing a bucket or rootdirectory that holds none.
    pub fn open(bucket: Bucket) -> Result<BucketStore> {
        let store = BucketStore::open_empty(bucket)?;
        let (folders, objects) = store.bucket.folders("")?;
        if folders.is_empty() && objects.is_empty() {
            let top = store.bucket.top_folders().unwrap_or_default();
            let seen = if top.is_empty() {
                "the bucket is empty".to_string()
            } else {
                format!("the bucket's top-level folders: {}", top.join(", "))
            };
            bail!(
                "{} is not a registry store: nothing under {}/ ({seen}); is the rootdirectory right?",
                store.bucket.shown,
                store.bucket.shown_v2()
            );
        }
        Ok(store)
    }

    /// Opens a bucket that may hold no store yet (`gen`). A missing bucket or bad credentials
    /// fail here, before anything else.
    pub fn open_empty(bucket: Bucket) -> Result<BucketStore> {
        bucket.folders("")?;
        Ok(BucketStore {
            bucket: Arc::new(bucket),
            repos: RwLock::default(),
            blobs: RwLock::default(),
            claim: Mutex::default(),
            cache: cache::Cache::from_env(&|k| std::env::var(k).ok()),
            read: Mutex::default(),
        })
    }

    /// Uploads a store written on disk (`v2`: its `docker/registry/v2`) into the bucket, every
    /// file in parallel (`regsweep gen` into a bucket); refuses a bucket that holds a store.
    /// Returns how many objects it wrote.
    pub fn upload(&self, v2: &std::path::Path, progress: Progress) -> Result<u64> {
        if !self.bucket.folders("")?.0.is_empty() {
            bail!("{} already holds a store: gen writes new stores only", self.bucket.shown_v2());
        }
        let files: Vec<(std::path::PathBuf, String)> = walkdir::WalkDir::new(v2)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .filter_map(|e| {
                let rel = e.path().strip_prefix(v2).ok()?.to_str()?.to_string();
                Some((e.path().to_path_buf(), rel))
            })
            .collect();
        let bar = progress.bar("uploading", files.len() as u64);
        files.par_iter().try_for_each(|(path, rel)| {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            self.bucket.put(rel, bytes)?;
            bar.inc(1);
            Ok::<_, anyhow::Error>(())
        })?;
        bar.finish_and_clear();
        Ok(files.len() as u64)
    }

    /// How the store is named: `s3://bucket/rootdirectory`.
    pub fn shown(&self) -> &str {
        &self.bucket.shown
    }

    /// Every key under `repositories/`, by repository: two levels of folders listed, then each
    /// second-level folder flat, in parallel.
    fn list_repositories(&self) -> Result<BTreeMap<String, Vec<Obj>>> {
        let (top, _) = self.bucket.folders(tree::REPOSITORIES)?;
        let second: Vec<Vec<String>> = top
            .par_iter()
            .map(|t| Ok(self.bucket.folders(&tree::repo(t))?.0.into_iter().map(|s| format!("{t}/{s}")).collect()))
            .collect::<Result<_>>()?;
        let prefixes: Vec<String> = second.into_iter().flatten().collect();
        let lists: Vec<Vec<Obj>> =
            prefixes.par_iter().map(|p| self.bucket.list(&tree::repo(p))).collect::<Result<_>>()?;
        Ok(by_repository(lists))
    }

    /// Every key under `repositories/` again, by repository (the re-mark): listed flat in
    /// ranges of about [`RANGE_KEYS`] keys by the scan's count, in parallel, so that it costs
    /// about one request per 1,000 keys however many repositories there are. The ranges cover
    /// every key: a repository created since the scan is listed too.
    fn relist_repositories(&self) -> Result<BTreeMap<String, Vec<Obj>>> {
        let mut bounds: Vec<String> = Vec::new();
        let mut keys = 0;
        for (name, objs) in self.repos.read().unwrap_or_else(|p| p.into_inner()).iter() {
            if keys >= RANGE_KEYS {
                bounds.push(name.clone());
                keys = 0;
            }
            keys += objs.len();
        }
        // Any sorted bounds part the keys: those of `a/b` may fall after bound `a/b-c`, and
        // ranges are only about as long as planned.
        let starts = std::iter::once(String::new()).chain(bounds.iter().cloned());
        let ends = bounds.iter().cloned().map(Some).chain(std::iter::once(None));
        let ranges: Vec<(String, Option<String>)> = starts.zip(ends).collect();
        let lists: Vec<Vec<Obj>> = ranges
            .par_iter()
            .map(|(after, until)| self.bucket.list_range(tree::REPOSITORIES, after, until.as_deref()))
            .collect::<Result<_>>()?;
        Ok(by_repository(lists))
    }

    /// Every blob of the store, listed flat; with the keys under `blobs/sha256/` that are no
    /// blob's `data` (what `check` looks at).
    fn list_blobs(&self) -> Result<(BlobList, Vec<String>)> {
        // Sixteen ranges by the first hex digit, listed flat in parallel: one request each for a
        // small store, 16 chains of pages for a large one.
        let ranges: Vec<Vec<Obj>> =
            (0..16u8).into_par_iter().map(|d| list_blob_range(&self.bucket, d)).collect::<Result<_>>()?;
        let mut lists: Vec<Vec<Obj>> = vec![Vec::new(); 256];
        for o in ranges.into_iter().flatten() {
            let p = o
                .key
                .strip_prefix(&format!("{}/", tree::BLOBS))
                .and_then(|k| k.get(..2))
                // The registry's prefix folder, lowercase as the disk scan takes it: `aB/` is
                // none (its blob would be listed twice beside `ab/`'s, and one of the two taken
                // for unused).
                .and_then(|p| u8::from_str_radix(p, 16).ok().filter(|b| format!("{b:02x}") == p));
            if let Some(p) = p {
                lists[usize::from(p)].push(o);
            }
        }
        let mut meta = DigestMap::default();
        let mut others = Vec::new();
        let buckets: Vec<Vec<Digest>> = lists
            .into_iter()
            .enumerate()
            .map(|(b, objs)| {
                let mut found = Vec::new();
                for o in objs {
                    // blobs/sha256/<xx>/<hex>/data, in its own prefix: anything else is not the registry's.
                    let mut parts = o.key.split('/').skip(2);
                    let (Some(_), Some(hex), Some(tree::DATA), None) =
                        (parts.next(), parts.next(), parts.next(), parts.next())
                    else {
                        others.push(o.key);
                        continue;
                    };
                    match Digest::from_hex(hex).filter(|d| usize::from(d.0[0]) == b) {
                        Some(d) => {
                            meta.insert(d, (o.size, o.modified));
                            found.push(d);
                        }
                        None => others.push(o.key),
                    }
                }
                found
            })
            .collect();
        if buckets.iter().any(|b| !b.is_empty()) && self.repos.read().unwrap_or_else(|p| p.into_inner()).is_empty() {
            let (top, _) = self.bucket.folders(tree::REPOSITORIES)?;
            if top.is_empty() {
                let v2 = self.bucket.shown_v2();
                return Err(crate::store::blobs_without_repositories(
                    &format!("{v2}/{}", tree::REPOSITORIES),
                    &format!("{v2}/blobs"),
                ));
            }
        }
        *self.blobs.write().unwrap_or_else(|p| p.into_inner()) = meta;
        Ok((BlobList::from_buckets(buckets), others))
    }

    /// A repository's keys as the scan listed them.
    fn repo_objs(&self, name: &str) -> Arc<Vec<Obj>> {
        self.repos.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned().unwrap_or_default()
    }

    /// The digest a link holds: one of `candidates` (by the MD5 of its content) when the store
    /// tells that MD5, else read.
    fn link(&self, key: &str, o: &Obj, candidates: &HashMap<String, Digest>) -> Result<Option<Digest>> {
        if let Some(d) = o.md5.as_ref().and_then(|e| candidates.get(e)) {
            return Ok(Some(*d));
        }
        let Some((bytes, _)) = self.bucket.get(key, 1024)? else { return Ok(None) };
        match std::str::from_utf8(&bytes).ok().and_then(Digest::parse) {
            Some(d) => Ok(Some(d)),
            None => Err(MalformedLink(format!(
                "malformed link {}: {}; a link holds exactly sha256:<64 hex digits>",
                self.bucket.url(key),
                crate::store::malformed_content(&bytes)
            ))
            .into()),
        }
    }

    /// A manifest for the re-mark: read once a run (its content never changes), not through
    /// the cache (a manifest pushed during the run may be gone from the bucket).
    fn load_manifest(&self, d: &Digest) -> Parsed {
        if let Some(m) = self.read.lock().unwrap_or_else(|p| p.into_inner()).get(d) {
            return Parsed::Ok(m.clone());
        }
        let parsed = self.read_manifest(d, false);
        if let Parsed::Ok(m) = &parsed {
            self.read.lock().unwrap_or_else(|p| p.into_inner()).insert(*d, m.clone());
        }
        parsed
    }

    /// Reads and parses a manifest; with `listed` (the run's listing shows its blob), from the
    /// cache when there, into it when read.
    fn read_manifest(&self, d: &Digest, listed: bool) -> Parsed {
        let key = tree::blob_data(d);
        let read = match self.cache.get(d).filter(|_| listed) {
            Some(bytes) => Ok(Some(bytes)),
            None => self.bucket.get(&key, MAX_MANIFEST).map(|got| {
                got.map(|(bytes, _)| {
                    if listed {
                        self.cache.put(d, &bytes);
                    }
                    bytes
                })
            }),
        };
        crate::store::parse_manifest(d, read, &|| self.bucket.url(&key))
    }
}

impl StoreView for BucketStore {
    fn stat(&self, object: Object) -> Result<Option<(u64, SystemTime)>> {
        let newest = |repo: &str, prefix: String| {
            let objs = self.repo_objs(repo);
            Ok(under(&objs, &prefix).iter().map(|o| o.modified).max().map(|t| (0, t)))
        };
        match object {
            Object::BlobData(d) | Object::BlobFolder(d) => {
                Ok(self.blobs.read().unwrap_or_else(|p| p.into_inner()).get(&d).copied())
            }
            Object::LayerLink(repo, d) => {
                let key = inside::layer_link(&d);
                let objs = self.repo_objs(repo);
                Ok(objs.binary_search_by(|o| o.key.as_str().cmp(&key)).ok().map(|i| (objs[i].size, objs[i].modified)))
            }
            Object::LayerFolder(repo, d) => newest(repo, format!("{}/", inside::layer_dir(&d))),
            Object::RevisionFolder(repo, d) => newest(repo, format!("{}/", inside::revision_dir(&d))),
        }
    }

    fn tag_index(&self, repo: &str, tag: &str) -> Result<Vec<Digest>> {
        Ok(digest_folders(&self.repo_objs(repo), &format!("{}/", inside::tag_index(tag))))
    }
}

impl Scan for BucketStore {
    fn repositories(&self) -> Result<Vec<String>> {
        let repos = self.list_repositories()?;
        let names: Vec<String> = repos.keys().cloned().collect();
        *self.repos.write().unwrap_or_else(|p| p.into_inner()) =
            repos.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        Ok(names)
    }

    fn blobs(&self) -> Result<BlobList> {
        self.list_blobs().map(|(blobs, _)| blobs)
    }

    fn repository(&self, name: String, tag_links: bool) -> Result<Repo> {
        let objs = self.repo_objs(&name);
        let base = format!("{}/", tree::repo(&name));
        let mut current: BTreeMap<&str, &Obj> = BTreeMap::new();
        let mut tag_names: BTreeSet<&str> = BTreeSet::new();
        let mut rev_links: Vec<(Digest, &Obj)> = Vec::new();
        let mut rev_folders: BTreeSet<Digest> = BTreeSet::new();
        let mut layers: BTreeSet<Digest> = BTreeSet::new();
        let mut uploads: BTreeMap<&str, (Option<&Obj>, u64)> = BTreeMap::new();
        for o in objs.iter() {
            match Inside::of(&o.key) {
                Inside::TagCurrent(tag) => {
                    current.insert(tag, o);
                    tag_names.insert(tag);
                }
                Inside::TagHistory(tag, _) | Inside::TagOther(tag) => {
                    tag_names.insert(tag);
                }
                Inside::RevisionLink(d) => {
                    rev_folders.insert(d);
                    rev_links.push((d, o));
                }
                Inside::RevisionOther(d) => {
                    rev_folders.insert(d);
                }
                Inside::LayerLink(d) | Inside::LayerOther(d) => {
                    layers.insert(d);
                }
                Inside::Upload(id, file) => {
                    let u = uploads.entry(id).or_default();
                    match file {
                        tree::STARTED => u.0 = Some(o),
                        tree::DATA => u.1 = o.size,
                        _ => {}
                    }
                }
                Inside::Other => {}
            }
        }
        // The content of every link is one of the repository's revision digests, known from the
        // MD5 the listing tells; a link that is none of them is read.
        let candidates: HashMap<String, Digest> = rev_folders.iter().map(|d| (link_md5(d), *d)).collect();
        let mut revisions: Vec<Revision> = rev_links
            .par_iter()
            .map(|(d, o)| {
                let target = self.link(&format!("{base}{}", o.key), o, &candidates)?.unwrap_or(*d);
                Ok(Revision { digest: *d, target, modified: o.modified })
            })
            .collect::<Result<_>>()?;
        let tags_not_read = if tag_links { 0 } else { tag_names.len() };
        let tags: Vec<Tag> = if tag_links {
            tag_names
                .par_iter()
                .map(|t| {
                    let (current, pushed) = match current.get(t) {
                        Some(o) => (self.link(&format!("{base}{}", o.key), o, &candidates)?, o.modified),
                        None => (None, SystemTime::UNIX_EPOCH),
                    };
                    Ok(Tag { name: t.to_string(), current, pushed })
                })
                .collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        // A tag naming a manifest of which the listing shows no revision link: a listing that
        // lags or errs must not make a kept image look foreign (its blobs would go), when one
        // HEAD tells.
        let listed: BTreeSet<Digest> = revisions.iter().map(|r| r.digest).collect();
        let unlisted: BTreeSet<Digest> =
            tags.iter().filter_map(|t| t.current).filter(|d| !listed.contains(d)).collect();
        for d in unlisted {
            let key = format!("{base}{}", inside::revision_link(&d));
            if let Some(o) = self.bucket.head(&key)? {
                let own = HashMap::from([(link_md5(&d), d)]);
                let target = self.link(&key, &o, &own)?.unwrap_or(d);
                revisions.push(Revision { digest: d, target, modified: o.modified });
            }
        }
        revisions.sort_by_key(|r| r.digest);
        let linked: BTreeSet<Digest> = revisions.iter().map(|r| r.digest).collect();
        let incomplete_revisions = rev_folders.difference(&linked).copied().collect();
        let uploads = uploads
            .into_iter()
            .map(|(id, (started, size))| {
                // Unreadable or unparsable: never purged, as the registry does.
                let started = started
                    .and_then(|_| {
                        self.bucket.get(&format!("{base}{}", inside::upload_started(id)), 1024).ok().flatten()
                    })
                    .and_then(|(b, _)| crate::store::started_at(&b));
                Upload { id: id.to_string(), started, size }
            })
            .collect();
        Ok(Repo {
            name,
            tags,
            tags_not_read,
            revisions,
            incomplete_revisions,
            layers: layers.into_iter().collect(),
            uploads,
        })
    }

    fn revision_digests(&self, repo: &str) -> Result<Vec<Digest>> {
        Ok(digest_folders(&self.repo_objs(repo), &format!("{}/", inside::REVISIONS)))
    }

    fn manifests(&self, digests: DigestSet) -> DigestMap<Parsed> {
        let listed = self.blobs.read().unwrap_or_else(|p| p.into_inner());
        let known = !listed.is_empty();
        let wanted: Vec<(Digest, bool)> = digests.into_iter().map(|d| (d, known && listed.contains_key(&d))).collect();
        drop(listed);
        // One the listing does not show is read all the same: a listing that lags or errs must
        // not make a kept image look gone (its blobs would go), when one GET tells.
        wanted.into_par_iter().map(|(d, listed)| (d, self.read_manifest(&d, listed))).collect()
    }

    fn config(&self, d: &Digest) -> Option<Vec<u8>> {
        self.bucket.get(&tree::blob_data(d), MAX_CONFIG).ok()?.map(|(b, _)| b)
    }

    fn has_blob(&self, d: &Digest) -> bool {
        // Unsure is present: the check that names lost blobs names none it cannot confirm.
        self.bucket.head(&tree::blob_data(d)).map_or(true, |o| o.is_some())
    }
}

impl Guard for BucketStore {
    fn journal(&self) -> Result<Option<Journal>> {
        match self.bucket.get(JOURNAL, journal::MAX_SIZE)? {
            None => Ok(None),
            Some((bytes, obj)) => {
                let mut j = journal::decode(&bytes, &self.bucket.url(JOURNAL))?;
                j.written = Some(obj.modified);
                Ok(Some(j))
            }
        }
    }

    fn lock(&self) -> Result<Box<dyn Held>> {
        let held = lock::Lock::acquire(self.bucket.clone(), LOCK)?;
        *self.claim.lock().unwrap_or_else(|p| p.into_inner()) = Some(held.claim.clone());
        Ok(Box::new(held))
    }

    fn check_lock(&self) -> Result<()> {
        match &*self.claim.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(c) => c.check(),
            None => Ok(()),
        }
    }

    fn write_journal(&self, earlier: &Journal, repos: &[RepoPlan]) -> Result<()> {
        match journal::encode(earlier, repos) {
            Some(bytes) => self.bucket.put(JOURNAL, bytes),
            None => Ok(()),
        }
    }

    fn remove_journal(&self) -> Result<()> {
        self.bucket.delete(JOURNAL)
    }

    fn store_clock(&self, local: SystemTime) -> SystemTime {
        // The bucket's clock, which stamps what pushes write, to its second: the lock's time,
        // a second earlier for its truncation.
        match &*self.claim.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(c) => (c.written - Duration::from_secs(1)).min(local),
            None => local,
        }
    }
}

impl Sweep for BucketStore {
    fn remove(&self, removal: &Removal) -> bool {
        remove::stage(&self.bucket, removal)
    }

    fn remark(&self, since: SystemTime, extra: &[(String, Digest)]) -> Result<Rescued> {
        let repos = self.relist_repositories()?;
        let per_repo: Vec<Young> = repos
            .into_par_iter()
            .map(|(name, objs)| {
                let mut young = Young { repo: name, ..Young::default() };
                young.manifests = extra.iter().filter(|(r, _)| *r == young.repo).map(|(_, d)| *d).collect();
                let base = format!("{}/", tree::repo(&young.repo));
                let mut tags_written: Vec<(&str, &Obj)> = Vec::new();
                // Per tag, its youngest history entry written since: a tag pushed twice comes
                // back onto the last push, not onto the entry that sorts first (to the second
                // of the bucket's clock: two pushes within one second cannot be told apart).
                let mut entries_written: BTreeMap<&str, (SystemTime, Digest)> = BTreeMap::new();
                for o in objs.iter().filter(|o| o.modified >= since) {
                    match Inside::of(&o.key) {
                        Inside::RevisionLink(d) => {
                            let own = HashMap::from([(link_md5(&d), d)]);
                            young.manifests.extend(self.link(&format!("{base}{}", o.key), o, &own)?);
                        }
                        // A layer link counts by the digest in its path: its content is not read.
                        Inside::LayerLink(d) => {
                            young.links.insert(d);
                        }
                        // A tag pushed since: its manifest's revision link may have gone between
                        // the listing and the deletion of revisions.
                        Inside::TagCurrent(tag) => tags_written.push((tag, o)),
                        Inside::TagHistory(tag, d) => {
                            let e = entries_written.entry(tag).or_insert((o.modified, d));
                            if o.modified > e.0 {
                                *e = (o.modified, d);
                            }
                        }
                        _ => {}
                    }
                }
                if !tags_written.is_empty() {
                    let candidates: HashMap<String, Digest> = digest_folders(&objs, &format!("{}/", inside::REVISIONS))
                        .iter()
                        .map(|d| (link_md5(d), *d))
                        .collect();
                    for (_, o) in &tags_written {
                        young.manifests.extend(self.link(&format!("{base}{}", o.key), o, &candidates)?);
                    }
                }
                for (tag, (_, d)) in entries_written {
                    let current = inside::tag_current(tag);
                    if objs.binary_search_by(|o| o.key.as_str().cmp(&current)).is_err() {
                        young.tags.push((tag.to_string(), d));
                    }
                }
                Ok(young)
            })
            .collect::<Result<_>>()?;
        remark::rescue(per_repo, &|d| self.load_manifest(d))
    }

    fn relink(&self, link: &Relink) -> Result<bool> {
        let (key, d) = match *link {
            Relink::Revision(repo, d) => (tree::in_repo(repo, &inside::revision_link(&d)), d),
            Relink::Layer(repo, d) => (tree::in_repo(repo, &inside::layer_link(&d)), d),
            Relink::Tag(repo, tag, d) => {
                let current = tree::in_repo(repo, &inside::tag_current(tag));
                // Not where the tag is there again (pushed since, perhaps onto another
                // manifest): no history entry for what it does not name.
                if self.bucket.head(&current)?.is_some() {
                    return Ok(false);
                }
                let entry = tree::in_repo(repo, &inside::tag_index_link(tag, &d));
                self.bucket.create(&entry, d.to_string().into_bytes())?;
                (current, d)
            }
        };
        self.bucket.create(&key, d.to_string().into_bytes())
    }

    fn blob_rounds(&self) -> u8 {
        4
    }

    fn requests(&self) -> Option<RequestCounts> {
        Some(self.bucket.requests.snapshot())
    }

    fn freed_later(&self) -> Option<String> {
        self.bucket.freed_later()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_md5_is_the_md5_of_its_content() {
        let d = Digest::parse("sha256:80108610a7cd2ca22809d9a68462a343851728f8c08feec59e1f49efa2940c05").unwrap();
        // As moto listed it for the link the registry wrote.
        assert_eq!(link_md5(&d), "a8364443d4f1ee15cc33b38ef7af2702");
    }
}
