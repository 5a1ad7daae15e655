//! The registry's storage tree on a file system: the places `store::tree` names, joined to the
//! store's `docker/registry/v2` folder; no I/O here but the check, at opening, that a folder
//! really is a registry store.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::model::digest::Digest;
use crate::store::tree::{self, inside};

/// The storage tree of one registry, rooted at `<rootdirectory>/docker/registry/v2`.
#[derive(Clone, Debug)]
pub struct Layout {
    v2: PathBuf,
}

impl Layout {
    /// Opens the store under the registry's `rootdirectory`, refusing anything that is not one.
    pub fn open(root: &Path) -> Result<Layout> {
        let canonical = root.canonicalize().with_context(|| format!("cannot open storage root {}", root.display()))?;
        if !canonical.is_dir() {
            bail!(
                "{} is a file, not a folder: --root is the registry's rootdirectory, the folder that holds \
                 docker/registry/v2",
                root.display()
            );
        }
        // A folder of the tree itself given for the root: name the one to give instead.
        for (tail, up) in [("docker/registry/v2", 3), ("docker/registry", 2), ("docker", 1)] {
            if canonical.ends_with(tail) && !canonical.join("docker/registry/v2").is_dir() {
                let top: PathBuf = canonical.ancestors().nth(up).unwrap_or(&canonical).to_path_buf();
                if top.join("docker/registry/v2").is_dir() {
                    bail!(
                        "{} is the store's {tail} folder, not its root: give --root {} (the registry's \
                         rootdirectory, the folder that holds docker/registry/v2)",
                        root.display(),
                        top.display()
                    );
                }
            }
        }
        let mut v2 = canonical.clone();
        for part in ["docker", "registry", "v2"] {
            v2.push(part);
            match std::fs::symlink_metadata(&v2) {
                Ok(m) if m.file_type().is_symlink() => {
                    bail!("{} is a symbolic link: regsweep does not follow links inside a store", v2.display())
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => bail!("{} is not a folder", v2.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                    "{} is not a registry store: {} does not exist (--root is the registry's \
                     rootdirectory, the folder that holds docker/registry/v2)",
                    root.display(),
                    v2.display()
                ),
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", v2.display())),
            }
        }
        Ok(Layout { v2 })
    }

    /// A layout for a folder that need not exist yet (the generator, tests).
    pub fn at(v2: PathBuf) -> Layout {
        Layout { v2 }
    }

    /// `docker/registry/v2` itself.
    pub fn v2(&self) -> &Path {
        &self.v2
    }

    /// `repositories/`.
    pub fn repositories(&self) -> PathBuf {
        self.v2.join(tree::REPOSITORIES)
    }

    /// `blobs/sha256/`: its 256 two-hex-digit prefix folders hold the blob folders.
    pub fn blobs(&self) -> PathBuf {
        self.v2.join(tree::BLOBS)
    }

    /// `blobs/sha256/<xx>/`: the prefix folder of the blobs whose digest's first byte is `b`.
    pub fn blob_prefix(&self, b: u8) -> PathBuf {
        self.v2.join(tree::blob_prefix(b))
    }

    /// `blobs/sha256/<xx>/<hex>/`: everything the registry keeps of one blob.
    pub fn blob_dir(&self, d: &Digest) -> PathBuf {
        self.v2.join(tree::blob_dir(d))
    }

    /// `blobs/sha256/<xx>/<hex>/data`: the content.
    pub fn blob_data(&self, d: &Digest) -> PathBuf {
        self.v2.join(tree::blob_data(d))
    }

    /// `repositories/<name>/`.
    pub fn repo(&self, name: &str) -> PathBuf {
        self.v2.join(tree::repo(name))
    }

    /// `repositories/<name>/_layers/sha256/`.
    pub fn layers(&self, repo: &str) -> PathBuf {
        self.repo(repo).join(inside::LAYERS)
    }

    /// `_layers/sha256/<hex>/`: the link folder that lets `repo` serve blob `d`.
    pub fn layer_dir(&self, repo: &str, d: &Digest) -> PathBuf {
        self.repo(repo).join(inside::layer_dir(d))
    }

    /// `_layers/sha256/<hex>/link`.
    pub fn layer_link(&self, repo: &str, d: &Digest) -> PathBuf {
        self.repo(repo).join(inside::layer_link(d))
    }

    /// `_manifests/revisions/sha256/`.
    pub fn revisions(&self, repo: &str) -> PathBuf {
        self.repo(repo).join(inside::REVISIONS)
    }

    /// `_manifests/revisions/sha256/<hex>/`: "manifest `d` exists in this repository".
    pub fn revision_dir(&self, repo: &str, d: &Digest) -> PathBuf {
        self.repo(repo).join(inside::revision_dir(d))
    }

    /// `_manifests/revisions/sha256/<hex>/link`.
    pub fn revision_link(&self, repo: &str, d: &Digest) -> PathBuf {
        self.repo(repo).join(inside::revision_link(d))
    }

    /// `_manifests/tags/`.
    pub fn tags(&self, repo: &str) -> PathBuf {
        self.repo(repo).join(inside::TAGS)
    }

    /// `_manifests/tags/<tag>/`: removing it is deleting the tag.
    pub fn tag_dir(&self, repo: &str, tag: &str) -> PathBuf {
        self.repo(repo).join(inside::tag_dir(tag))
    }

    /// `_manifests/tags/<tag>/current/link`: the digest the tag points to now.
    pub fn tag_current(&self, repo: &str, tag: &str) -> PathBuf {
        self.repo(repo).join(inside::tag_current(tag))
    }

    /// `_manifests/tags/<tag>/index/sha256/`: every digest the tag ever pointed to.
    pub fn tag_index(&self, repo: &str, tag: &str) -> PathBuf {
        self.repo(repo).join(inside::tag_index(tag))
    }

    /// `_manifests/tags/<tag>/index/sha256/<hex>/`.
    pub fn tag_index_entry(&self, repo: &str, tag: &str, d: &Digest) -> PathBuf {
        self.repo(repo).join(inside::tag_index_entry(tag, d))
    }

    /// `_manifests/tags/<tag>/index/sha256/<hex>/link`.
    pub fn tag_index_link(&self, repo: &str, tag: &str, d: &Digest) -> PathBuf {
        self.repo(repo).join(inside::tag_index_link(tag, d))
    }

    /// `_uploads/`.
    pub fn uploads(&self, repo: &str) -> PathBuf {
        self.repo(repo).join(inside::UPLOADS)
    }

    /// `_uploads/<id>/`: one upload in progress.
    pub fn upload_dir(&self, repo: &str, id: &str) -> PathBuf {
        self.repo(repo).join(inside::upload_dir(id))
    }

    /// The lock that keeps two real runs off one store.
    pub fn lock_file(&self) -> PathBuf {
        self.v2.join(tree::LOCK)
    }

    /// The intent journal of an unfinished run (docs/DESIGN.md section 4).
    pub fn journal_file(&self) -> PathBuf {
        self.v2.join(tree::JOURNAL)
    }

    /// True when `path` is inside `repositories/` or `blobs/`: the only places regsweep deletes in.
    pub fn may_delete(&self, path: &Path) -> bool {
        let inside = |base: PathBuf| path.starts_with(&base) && path != base;
        (inside(self.repositories()) || inside(self.blobs()))
            && path.components().all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::RootDir))
    }
}
