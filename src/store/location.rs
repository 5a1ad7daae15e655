//! Where a store is, and opening it: the one place that knows every backend.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::core::progress::Progress;
use crate::store::Store;
use crate::store::bucket::BucketStore;
#[cfg(feature = "azure")]
use crate::store::bucket::azure::{self, AzureLocation};
use crate::store::bucket::client::Bucket;
#[cfg(feature = "gcs")]
use crate::store::bucket::gcs::{self, GcsLocation};
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
    #[cfg(feature = "azure")]
    Azure(AzureLocation),
    #[cfg(feature = "gcs")]
    Gcs(GcsLocation),
    /// A bucket in memory, and the `rootdirectory` in it (the tests' fast tier).
    Memory(Memory, String),
}

impl Location {
    /// `--root`: a folder, or `s3://BUCKET/ROOTDIRECTORY` with the AWS environment,
    /// `azure://CONTAINER/ROOTDIRECTORY` or `gs://BUCKET/ROOTDIRECTORY` with theirs.
    pub fn from_root(root: &Path) -> Result<Location> {
        let Some(url) = root.to_str().filter(|r| r.contains("://")) else {
            return Ok(Location::Fs(root.to_path_buf()));
        };
        let scheme = url.split("://").next().unwrap_or_default();
        Ok(match scheme {
            "s3" => Location::S3(S3Location::from_url(url, &|k| std::env::var(k).ok())?),
            #[cfg(feature = "azure")]
            "azure" => Location::Azure(AzureLocation::from_url(url)?),
            #[cfg(feature = "gcs")]
            "gs" => Location::Gcs(GcsLocation::from_url(url)?),
            #[cfg(not(all(feature = "azure", feature = "gcs")))]
            "azure" | "gs" => bail!("{url}: this regsweep was built without its {scheme} feature"),
            _ => Location::Fs(root.to_path_buf()),
        })
    }

    /// How the operator names it.
    pub fn shown(&self) -> String {
        match self {
            Location::Fs(p) => p.display().to_string(),
            Location::S3(s) => s.shown(),
            #[cfg(feature = "azure")]
            Location::Azure(a) => a.shown(),
            #[cfg(feature = "gcs")]
            Location::Gcs(g) => g.shown(),
            Location::Memory(_, root) => format!("memory://{root}"),
        }
    }

    /// The bucket a store is in, opened; `None` for a folder.
    fn bucket(&self) -> Result<Option<Bucket>> {
        Ok(Some(match self {
            Location::Fs(_) => return Ok(None),
            Location::S3(s) => s3::open(s)?,
            #[cfg(feature = "azure")]
            Location::Azure(a) => azure::open(a)?,
            #[cfg(feature = "gcs")]
            Location::Gcs(g) => gcs::open(g)?,
            Location::Memory(m, root) => m.bucket(root)?,
        }))
    }

    /// Opens the store, refusing anything that is not one.
    pub fn open(&self) -> Result<Box<dyn Store>> {
        Ok(match (self, self.bucket()?) {
            (_, Some(b)) => Box::new(BucketStore::open(b)?),
            (Location::Fs(p), None) => Box::new(FsStore::open(p)?),
            (_, None) => bail!("{} is no store", self.shown()),
        })
    }

    /// The bucket a store is in, which may hold no store yet (`gen`); `None` for a folder.
    pub fn empty_bucket(&self) -> Result<Option<BucketStore>> {
        self.bucket()?.map(BucketStore::open_empty).transpose()
    }

    /// `check`: what is wrong with the store, by its backend.
    pub fn check(&self, opts: CheckOptions, progress: Progress) -> Result<CheckReport> {
        match (self, self.bucket()?) {
            (_, Some(b)) => crate::store::bucket::check::check(&BucketStore::open(b)?, opts, progress),
            (Location::Fs(p), None) => crate::store::fs::check::check(p, opts, progress),
            (_, None) => bail!("{} is no store", self.shown()),
        }
    }
}
