//! `check` on a bucket: lists what the store holds (links known from the MD5 the listing tells, read only
//! when they name none of the repository's digests) and reads its manifests; the verdicts, the
//! report and `--repair` are `store::check`'s, shared with every backend, each problem named by
//! its `s3://` URL. `--verify-digests` reads and hashes every blob.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::SystemTime;

use anyhow::Result;
use rayon::prelude::*;

use crate::core::progress::Progress;
use crate::model::digest::{Digest, DigestSet};
use crate::store::MAX_MANIFEST;
use crate::store::bucket::client::Obj;
use crate::store::bucket::{BucketStore, link_md5};
use crate::store::check::{self, BlobSeen, CheckOptions, CheckReport, Entry, Judge, Link, RepoSeen, TagSeen};
use crate::store::check_pass::{self, BlobFolders, Source};
use crate::store::tree::{self, Inside, JOURNAL};

/// Checks the store in a bucket; with `repair`, removes the links that point to nothing
/// (`store::check::run`), by the bucket's own deletions.
pub fn check(store: &BucketStore, opts: CheckOptions, progress: Progress) -> Result<CheckReport> {
    let mut report = check::run(store, opts, progress, &|o| check_pass::pass(store, o, progress))?;
    report.root = store.shown().to_string();
    Ok(report)
}

impl Source for BucketStore {
    fn at(&self, rel: &str) -> String {
        self.bucket.url(rel)
    }

    fn blob_folders(&self, judge: &Judge) -> Result<BlobFolders> {
        let (listed, others) = self.list_blobs()?;
        let present: DigestSet = listed.iter().copied().collect();
        // Keys in the blob tree that are no blob's data: a blob folder without its data, or a
        // file beside the blob folders (the folders themselves the file system's check does not
        // enter).
        let mut without_data = BTreeSet::new();
        for key in &others {
            let rel = key.strip_prefix(&format!("{}/", tree::BLOBS)).unwrap_or(key);
            match rel.split('/').collect::<Vec<_>>().as_slice() {
                [_, _] => judge.file(key),
                [_, hex, _, ..] => {
                    if let Some(d) = Digest::from_hex(hex).filter(|d| !present.contains(d)) {
                        without_data.insert(d);
                    }
                }
                _ => {}
            }
        }
        for d in &without_data {
            judge.blob(d, &BlobSeen::NoData);
        }
        let present: Vec<Digest> = listed.iter().copied().collect();
        Ok(BlobFolders { count: present.len() + without_data.len(), present, bytes: 0 })
    }

    fn verify(&self, present: &[Digest], _: u64, judge: &Judge, progress: Progress) -> Result<DigestSet> {
        verify(self, present, judge, progress)
    }

    fn manifest_blob(&self, d: &Digest) -> Result<Option<Vec<u8>>> {
        self.bucket.get(&tree::blob_data(d), MAX_MANIFEST).map(|r| r.map(|(b, _)| b))
    }

    fn repository_seen(&self, name: &str, judge: &Judge, _: &(dyn Fn(SystemTime) -> bool + Sync)) -> Result<RepoSeen> {
        list_repo(self, name, judge)
    }

    fn other_files(&self, _: &Judge) -> Result<()> {
        Ok(()) // given to the judge as they were listed
    }

    fn has_journal(&self) -> Result<bool> {
        Ok(self.bucket.head(JOURNAL)?.is_some())
    }
}

/// Reads and hashes every blob; returns those whose content does not hash to their name.
fn verify(store: &BucketStore, blobs: &[Digest], judge: &Judge, progress: Progress) -> Result<DigestSet> {
    let bar = progress.bar("verifying", blobs.len() as u64);
    let corrupt = blobs
        .par_iter()
        .map(|b| {
            let ok = match store.bucket.sha256(&tree::blob_data(b))? {
                Some(hash) => Digest(hash) == *b,
                None => true, // gone since the listing: a deletion, not a corruption
            };
            bar.inc(1);
            if !ok {
                judge.corrupt(b);
            }
            Ok((!ok).then_some(*b))
        })
        .collect::<Result<Vec<_>>>()?;
    bar.finish_and_clear();
    Ok(corrupt.into_iter().flatten().collect())
}

/// What one repository holds, from the scan's listing; its files given to the judge (which finds
/// `*.tmp` files).
fn list_repo(store: &BucketStore, name: &str, judge: &Judge) -> Result<RepoSeen> {
    let objs = store.repo_objs(name);
    let base = format!("{}/", tree::repo(name));
    // Folders by digest, with their link when there is one.
    let mut layers: BTreeMap<Digest, Option<&Obj>> = BTreeMap::new();
    let mut revisions: BTreeMap<Digest, Option<&Obj>> = BTreeMap::new();
    // Per tag: its current link, its history entries' links.
    type Keys<'a> = (Option<&'a Obj>, Vec<(Digest, &'a Obj)>);
    let mut tags: BTreeMap<&str, Keys> = BTreeMap::new();
    for o in objs.iter() {
        judge.file(&format!("{base}{}", o.key));
        match Inside::of(&o.key) {
            Inside::LayerLink(d) => {
                layers.insert(d, Some(o));
            }
            Inside::LayerOther(d) => {
                layers.entry(d).or_default();
            }
            Inside::RevisionLink(d) => {
                revisions.insert(d, Some(o));
            }
            Inside::RevisionOther(d) => {
                revisions.entry(d).or_default();
            }
            Inside::TagCurrent(tag) => tags.entry(tag).or_default().0 = Some(o),
            Inside::TagHistory(tag, d) => tags.entry(tag).or_default().1.push((d, o)),
            Inside::TagOther(tag) => {
                tags.entry(tag).or_default();
            }
            Inside::Upload(..) | Inside::Other => {}
        }
    }
    // A link's content is the digest its own folder names, or a revision's: known from its MD5.
    let digests = layers.keys().chain(revisions.keys()).chain(tags.values().flat_map(|t| t.1.iter().map(|h| &h.0)));
    let candidates: HashMap<String, Digest> = digests.map(|d| (link_md5(d), *d)).collect();
    // A link as read; `None` when it is gone since the listing.
    let read = |o: &Obj| -> Result<Option<Link>> {
        match store.link(&format!("{base}{}", o.key), o, &candidates) {
            Ok(d) => Ok(d.map(Link::To)),
            Err(e) if e.is::<crate::store::MalformedLink>() => Ok(Some(Link::Malformed(format!("{e:#}")))),
            Err(e) => Err(e),
        }
    };
    let folders = |m: BTreeMap<Digest, Option<&Obj>>| -> Result<Vec<(Digest, Entry)>> {
        let read: Vec<Option<(Digest, Entry)>> = m
            .into_par_iter()
            .map(|(d, o)| match o {
                Some(o) => Ok(read(o)?.map(|l| (d, Entry::Link(l)))),
                None => Ok(Some((d, Entry::Partial))),
            })
            .collect::<Result<_>>()?;
        Ok(read.into_iter().flatten().collect())
    };
    let tags = tags
        .into_par_iter()
        .map(|(tag, (current, history))| {
            let history = history.into_iter().map(|(d, o)| Ok((d, read(o)?))).collect::<Result<_>>()?;
            let current = match current {
                Some(o) => read(o)?,
                None => None,
            };
            Ok(TagSeen { name: tag.to_string(), current, history })
        })
        .collect::<Result<_>>()?;
    Ok(RepoSeen { name: name.to_string(), layers: folders(layers)?, revisions: folders(revisions)?, tags })
}
