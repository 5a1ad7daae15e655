//! One pass of `regsweep check` over a whole store, written once: what a backend lists and
//! reads comes through `Source`, the verdicts are `Judge`'s.

use std::time::SystemTime;

use anyhow::Result;
use rayon::prelude::*;

use crate::core::progress::Progress;
use crate::model::digest::{Digest, DigestSet};
use crate::store::Scan;
use crate::store::check::{self, Blobs, CheckOptions, CheckReport, Judge, RepoSeen};

/// The blob folders of a store, each judged as it was listed.
pub(crate) struct BlobFolders {
    /// The blobs whose data is there.
    pub(crate) present: Vec<Digest>,
    /// Their bytes in all, where the listing tells them cheaply (for the progress bar).
    pub(crate) bytes: u64,
    /// How many blob folders there are, with data or not.
    pub(crate) count: usize,
}

/// What a backend shows `check` of its store.
pub(crate) trait Source: Scan + Sync {
    /// A path relative to `docker/registry/v2/` as the operator knows it (a path on disk, an
    /// `s3://` URL).
    fn at(&self, rel: &str) -> String;
    /// Every blob folder, each given to the judge.
    fn blob_folders(&self, judge: &Judge) -> Result<BlobFolders>;
    /// Hashes the blobs `present` (`bytes` in all) and returns those whose content does not
    /// hash to their name, each given to the judge.
    fn verify(&self, present: &[Digest], bytes: u64, judge: &Judge, progress: Progress) -> Result<DigestSet>;
    /// A manifest blob's bytes (`None`: the store lacks it).
    fn manifest_blob(&self, d: &Digest) -> Result<Option<Vec<u8>>>;
    /// What one repository holds; `old` tells whether a folder written at a time is past the
    /// grace period. Its files may be given to the judge here (which finds `*.tmp` files).
    fn repository_seen(&self, name: &str, judge: &Judge, old: &(dyn Fn(SystemTime) -> bool + Sync))
    -> Result<RepoSeen>;
    /// Every file not given to the judge yet, outside a blob's folder.
    fn other_files(&self, judge: &Judge) -> Result<()>;
    /// True when an interrupted run's journal is there.
    fn has_journal(&self) -> Result<bool>;
}

/// One pass over the store: listed, judged.
pub(crate) fn pass(source: &dyn Source, opts: CheckOptions, progress: Progress) -> Result<check::Pass> {
    let at = |rel: &str| source.at(rel);
    let judge = Judge::new(&at);
    let names = source.repositories()?;
    let listed = source.blob_folders(&judge)?;
    // Hashed first: a corrupt blob breaks the tags that need it, and they are named.
    let corrupt = if opts.verify_digests {
        source.verify(&listed.present, listed.bytes, &judge, progress)?
    } else {
        DigestSet::default()
    };
    let blobs_verified = if opts.verify_digests { listed.present.len() } else { 0 };
    let blobs = Blobs { present: listed.present.into_iter().collect(), corrupt };
    let now = SystemTime::now();
    let old = |t: SystemTime| now.duration_since(t).unwrap_or_default() >= opts.grace;
    let load = |d: &Digest| source.manifest_blob(d);
    let bar = progress.bar("checking", names.len() as u64);
    let repos: Vec<check::Judged> = names
        .par_iter()
        .map(|n| {
            let seen = source.repository_seen(n, &judge, &old)?;
            bar.inc(1);
            Ok(judge.repository(&seen, &blobs, &load))
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    source.other_files(&judge)?;
    if source.has_journal()? {
        judge.journal();
    }
    let report = CheckReport {
        root: String::new(),
        repositories: names.len(),
        tags: repos.iter().map(|r| r.tags).sum(),
        manifests: repos.iter().map(|r| r.manifests).sum(),
        blobs: listed.count,
        blobs_verified,
        repaired: 0,
        problems: judge.problems(),
        failed: Vec::new(),
        warnings: Vec::new(),
    };
    Ok((report, repos.into_iter().flat_map(|r| r.repairs).collect()))
}
