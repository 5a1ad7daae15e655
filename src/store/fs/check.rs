//! `regsweep check` on a file system: lists what the store holds and reads its manifests; the
//! verdicts, the report and `--repair` are `store::check`'s, shared with every backend.

use std::path::Path;
use std::time::SystemTime;

use anyhow::Result;
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::core::progress::Progress;
use crate::model::digest::{Digest, DigestSet};
use crate::store::MAX_MANIFEST;
use crate::store::check::{self, BlobSeen, CheckOptions, CheckReport, Entry, Judge, Link, RepoSeen, TagSeen};
use crate::store::check_pass::{self, BlobFolders, Source};
use crate::store::fs::layout::Layout;
use crate::store::fs::{self, Dir, FsStore, scan};
use crate::store::tree::{self, LINK};

/// A link file as read: `None` when there is none.
fn link(path: &Path) -> Result<Option<Link>> {
    match fs::read_link(path) {
        Ok(d) => Ok(d.map(|(d, _)| Link::To(d))),
        Err(e) if e.is::<fs::MalformedLink>() => Ok(Some(Link::Malformed(format!("{e:#}")))),
        Err(e) if e.is::<fs::NotRegular>() => Ok(Some(Link::NotAFile(format!("{e:#}")))),
        Err(e) => Err(e),
    }
}

/// A folder whose own file is a `link`.
fn entry(dir: &Path, old: &dyn Fn(&Path) -> bool) -> Result<Entry> {
    Ok(match link(&dir.join(LINK))? {
        Some(l) => Entry::Link(l),
        None if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none()) => Entry::Empty { old: old(dir) },
        None => Entry::Partial,
    })
}

/// What one repository holds.
fn list_repo(layout: &Layout, name: &str, old: &dyn Fn(&Path) -> bool) -> Result<RepoSeen> {
    let folders = |base: &Path| -> Result<Vec<(Digest, Entry)>> {
        fs::digest_folders(base)?.into_iter().map(|d| Ok((d, entry(&base.join(d.hex()), old)?))).collect()
    };
    let mut tags = Vec::new();
    for e in fs::list(&layout.tags(name))?.into_iter().filter(|e| e.is_dir) {
        let history = fs::digest_folders(&layout.tag_index(name, &e.name))?
            .into_iter()
            .map(|d| Ok((d, link(&layout.tag_index_entry(name, &e.name, &d).join(LINK))?)))
            .collect::<Result<_>>()?;
        let current = link(&layout.tag_current(name, &e.name))?;
        tags.push(TagSeen { name: e.name, current, history });
    }
    Ok(RepoSeen {
        name: name.to_string(),
        layers: folders(&layout.layers(name))?,
        revisions: folders(&layout.revisions(name))?,
        tags,
    })
}

/// Every file under `dir` (not inside a blob's folder), to the judge, which finds `*.tmp` files.
fn files(layout: &Layout, dir: &Path, judge: &Judge) -> Result<()> {
    let entries = fs::list(dir)?;
    // The folders in a prefix folder are blobs, which [`present`] looks into (the registry
    // moves a blob's data there from its upload, and writes nothing else there).
    let blob_prefix = dir.parent().is_some_and(|p| p.ends_with(tree::BLOBS));
    entries.par_iter().try_for_each(|e| {
        let path = dir.join(&e.name);
        if e.is_dir {
            if blob_prefix { Ok(()) } else { files(layout, &path, judge) }
        } else {
            if let Some(rel) = path.strip_prefix(layout.v2()).ok().and_then(|r| r.to_str()) {
                judge.file(rel);
            }
            Ok(())
        }
    })
}

/// Hashes every blob present (`bytes` in all, for the progress bar); returns those whose
/// content does not hash to their name.
fn verify(layout: &Layout, blobs: &[Digest], bytes: u64, judge: &Judge, progress: Progress) -> Result<DigestSet> {
    let bar = progress.bar("verifying", bytes);
    let corrupt = blobs
        .par_iter()
        .filter_map(|b| -> Option<Result<Digest>> {
            let path = layout.blob_data(b);
            let mut f = fs::open_nofollow(&path).ok()?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = match std::io::Read::read(&mut f, &mut buf) {
                    Ok(n) => n,
                    Err(e) => return Some(Err(anyhow::anyhow!("cannot read {}: {e}", path.display()))),
                };
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                bar.inc(n as u64);
            }
            if Digest(h.finalize().into()) == *b {
                return None;
            }
            judge.corrupt(b);
            Some(Ok(*b))
        })
        .collect::<Result<DigestSet>>()?;
    bar.finish_and_clear();
    Ok(corrupt)
}

/// The blobs whose `data` is a regular file, and their bytes in all; every blob folder judged.
fn present(layout: &Layout, blobs: Vec<Digest>, judge: &Judge) -> Result<(Vec<Digest>, u64)> {
    let Some(dir) = Dir::open(&layout.blobs())? else { return Ok((Vec::new(), 0)) };
    let size = |b: &Digest| -> Result<Option<u64>> {
        let (seen, size) = match dir.stat_file(&tree::blob_data_in_blobs(b)) {
            Ok(Some(st)) => (BlobSeen::Data, Some(st.size)),
            Ok(None) => (BlobSeen::NoData, None),
            Err(e) if e.is::<fs::NotRegular>() => (BlobSeen::NotAFile(format!("{e:#}")), None),
            Err(e) => return Err(e),
        };
        judge.blob(b, &seen);
        Ok(size)
    };
    let sizes: Vec<Option<u64>> = blobs.par_iter().map(size).collect::<Result<_>>()?;
    let bytes = sizes.iter().flatten().sum();
    Ok((blobs.into_iter().zip(sizes).filter(|(_, s)| s.is_some()).map(|(b, _)| b).collect(), bytes))
}

impl Source for FsStore {
    fn at(&self, rel: &str) -> String {
        self.layout.v2().join(rel).display().to_string()
    }

    fn blob_folders(&self, judge: &Judge) -> Result<BlobFolders> {
        let all: Vec<Digest> = scan::scan_blobs(&self.layout)?.iter().copied().collect();
        let count = all.len();
        let (present, bytes) = present(&self.layout, all, judge)?;
        Ok(BlobFolders { present, bytes, count })
    }

    fn verify(&self, present: &[Digest], bytes: u64, judge: &Judge, progress: Progress) -> Result<DigestSet> {
        verify(&self.layout, present, bytes, judge, progress)
    }

    fn manifest_blob(&self, d: &Digest) -> Result<Option<Vec<u8>>> {
        // Where the blob folders were listed (by path): a first push may have made them since
        // the store was opened.
        let late = self.blobs_made_since()?;
        match self.blobs.as_ref().or(late.as_ref()) {
            Some(dir) => dir.read(&tree::blob_data_in_blobs(d), MAX_MANIFEST).map(|r| r.map(|(b, _)| b)),
            None => Ok(None),
        }
    }

    fn repository_seen(&self, name: &str, _: &Judge, old: &(dyn Fn(SystemTime) -> bool + Sync)) -> Result<RepoSeen> {
        let old = |dir: &Path| fs::stat(dir).ok().flatten().is_some_and(|(_, t)| old(t));
        list_repo(&self.layout, name, &old)
    }

    fn other_files(&self, judge: &Judge) -> Result<()> {
        for dir in [self.layout.repositories(), self.layout.blobs()] {
            files(&self.layout, &dir, judge)?;
        }
        Ok(())
    }

    fn has_journal(&self) -> Result<bool> {
        Ok(self.layout.journal_file().exists())
    }
}

/// Checks the store under `root`; with `repair`, removes the links that point to nothing
/// (`store::check::run`).
pub fn check(root: &Path, opts: CheckOptions, progress: Progress) -> Result<CheckReport> {
    let store = FsStore::open(root)?;
    let mut report = check::run(&store, opts, progress, &|o| check_pass::pass(&store, o, progress))?;
    report.root = root.display().to_string();
    Ok(report)
}
