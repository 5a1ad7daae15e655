//! Where a store is, and opening it: the one place that knows every backend.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::core::progress::Progress;
use crate::store::Store;
use crate::store::bucket::BucketStore;
use crate::store::bucket::memory::Memory;
use crate::store::bucket::s3::{self, S3Location};
use crate::store::check::{CheckOptions, CheckReport};
use crate::store::fs::FsStore;

/// Where a store is: a folder, or a bucket.
#[derive(Clone, Debug)]
pub enum Location {
    /// The registry's `rootdirectory` on a file system.
    Fs(PathBuf),
    S3(S3Location),
    /// A bucket in memory, and the `rootdirectory` in it (the tests' fast tier).
    Memory(Memory, String),
}

impl Location {
    /// `--root`: a folder, or `s3://BUCKET/ROOTDIRECTORY` with the AWS environment.
    pub fn from_root(root: &Path) -> Result<Location> {
        match root.to_str().filter(|r| r.starts_with("s3://")) {
            Some(url) => Ok(Location::S3(S3Location::from_url(url, &|k| std::env::var(k).ok())?)),
            None => Ok(Location::Fs(root.to_path_buf())),
        }
    }

    /// How the operator names it.
    pub fn shown(&self) -> String {
        match self {
            Location::Fs(p) => p.display().to_string(),
            Location::S3(s) => s.shown(),
            Location::Memory(_, root) => format!("memory://{root}"),
        }
    }

    /// Opens the store, refusing anything that is not one.
    pub fn open(&self) -> Result<Box<dyn Store>> {
        Ok(match self {
            Location::Fs(p) => Box::new(FsStore::open(p)?),
            Location::S3(s) => Box::new(BucketStore::open(s3::open(s)?)?),
            Location::Memory(m, root) => Box::new(BucketStore::open(m.bucket(root)?)?),
        })
    }

    /// The bucket a store is in, which may hold no store yet (`gen`); `None` for a folder.
    pub fn empty_bucket(&self) -> Result<Option<BucketStore>> {
        Ok(match self {
            Location::Fs(_) => None,
            Location::S3(s) => Some(BucketStore::open_empty(s3::open(s)?)?),
            Location::Memory(m, root) => Some(BucketStore::open_empty(m.bucket(root)?)?),
        })
    }

    /// `check`: what is wrong with the store, by its backend.
    pub fn check(&self, opts: CheckOptions, progress: Progress) -> Result<CheckReport> {
        match self {
            Location::Fs(p) => crate::store::fs::check::check(p, opts, progress),
            Location::S3(s) => crate::store::bucket::check::check(&BucketStore::open(s3::open(s)?)?, opts, progress),
            Location::Memory(m, root) => {
                crate::store::bucket::check::check(&BucketStore::open(m.bucket(root)?)?, opts, progress)
            }
        }
    }
}
