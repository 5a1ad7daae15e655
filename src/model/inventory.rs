//! What regsweep knows of a store before it decides anything: repositories, tags, revisions,
//! layer links, uploads, blobs and the manifests revisions name. Plain data: the filesystem scan
//! and online mode's API reader both produce it; policy and plan read it.

use std::time::SystemTime;

use crate::model::digest::{Digest, DigestMap};
use crate::model::journal::Journal;
use crate::model::manifest::Manifest;

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
