//! `regsweep gen`: writes a realistic synthetic store directly, in parallel and deterministically
//! for a seed: blobs whose sha256 is their name, 71-byte links, tag push times spread over time,
//! base layers shared across repositories, multi-arch indexes, cosign-style signature tags, OCI
//! referrers and untagged manifests. The real registry serves what it writes.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::core::progress::Progress;
use crate::model::digest::Digest;
use crate::model::manifest::{OCI_INDEX, OCI_MANIFEST};
use crate::store::fs::layout::Layout;
use crate::store::tree::LINK;

const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Pushes start here (2025-01-01) and go on one hour per tag.
const EPOCH: u64 = 1_735_689_600;
/// How many sets of base layers the repositories share.
const BASE_SETS: u64 = 16;

/// The shape of the store to write.
#[derive(Clone, Debug)]
pub struct GenOptions {
    pub repos: usize,
    pub tags: usize,
    /// Layers per image.
    pub layers: usize,
    /// Of those, how many come from base layers shared across repositories.
    pub shared: usize,
    /// Every K-th tag is a multi-arch index of two images (0: none).
    pub multiarch_every: usize,
    /// Every K-th tag has a signature tag and an SBOM referrer (0: none).
    pub signed_every: usize,
    /// Untagged manifests per repository (earlier pushes of a tag).
    pub untagged: usize,
    pub seed: u64,
}

/// What was written.
#[derive(Debug, Default, Serialize)]
pub struct GenReport {
    pub repositories: usize,
    pub tags: u64,
    pub manifests: u64,
    pub blobs: u64,
    pub files: u64,
}

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

struct Counts {
    tags: AtomicU64,
    manifests: AtomicU64,
    blobs: AtomicU64,
    files: AtomicU64,
}

/// Writes into one store.
struct Writer<'a> {
    layout: &'a Layout,
    counts: Counts,
}

/// A descriptor of something written: digest and size.
#[derive(Clone, Copy)]
struct Desc {
    digest: Digest,
    size: usize,
}

impl Writer<'_> {
    /// Writes a new file; `Ok(false)` when it exists already (a blob another repository wrote).
    fn file(&self, path: &Path, content: &[u8], mtime: SystemTime) -> Result<bool> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let f = match fs::OpenOptions::new().write(true).create_new(true).open(path) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            other => other.with_context(|| format!("cannot write {}", path.display()))?,
        };
        std::io::Write::write_all(&mut &f, content).with_context(|| format!("cannot write {}", path.display()))?;
        f.set_modified(mtime).with_context(|| format!("cannot set the mtime of {}", path.display()))?;
        self.counts.files.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    fn blob(&self, content: &[u8], mtime: SystemTime) -> Result<Desc> {
        let digest = Digest(Sha256::digest(content).into());
        if self.file(&self.layout.blob_data(&digest), content, mtime)? {
            self.counts.blobs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Desc { digest, size: content.len() })
    }

    fn link(&self, path: &Path, d: &Digest, mtime: SystemTime) -> Result<()> {
        self.file(path, d.to_string().as_bytes(), mtime).map(drop)
    }

    /// A manifest blob and its revision link in `repo`.
    fn manifest(&self, repo: &str, value: &serde_json::Value, mtime: SystemTime) -> Result<Desc> {
        let d = self.blob(&serde_json::to_vec(value)?, mtime)?;
        self.link(&self.layout.revision_dir(repo, &d.digest).join(LINK), &d.digest, mtime)?;
        self.counts.manifests.fetch_add(1, Ordering::Relaxed);
        Ok(d)
    }

    /// A blob that `repo` may serve: the blob and its `_layers` link.
    fn layer(&self, repo: &str, content: &[u8], mtime: SystemTime) -> Result<Desc> {
        let d = self.blob(content, mtime)?;
        self.link(&self.layout.layer_dir(repo, &d.digest).join(LINK), &d.digest, mtime)?;
        Ok(d)
    }

    fn tag(&self, repo: &str, tag: &str, d: &Digest, pushed: SystemTime) -> Result<()> {
        self.link(&self.layout.tag_index_entry(repo, tag, d).join(LINK), d, pushed)?;
        self.link(&self.layout.tag_current(repo, tag), d, pushed)?;
        self.counts.tags.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn descriptor(media_type: &str, d: Desc) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": d.digest.to_string(), "size": d.size})
}

/// The first push time: the mtime of what several repositories share.
fn epoch() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH)
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One repository's writing.
struct RepoGen<'a> {
    w: &'a Writer<'a>,
    o: &'a GenOptions,
    name: String,
    rng: Rng,
}

impl RepoGen<'_> {
    /// An image manifest: its shared base layers, its own layers, a config.
    fn image(&mut self, arch: &str, created: SystemTime) -> Result<Desc> {
        let base = self.rng.next() % BASE_SETS;
        let mut layers = Vec::new();
        for i in 0..self.o.shared.min(self.o.layers) {
            // Base layers: the same bytes wherever they are used, and (whichever repository
            // writes them first) the same mtime.
            let content = format!("base layer {i} of set {base} for {arch}, seed {}", self.o.seed).repeat(8);
            layers.push(self.w.layer(&self.name, content.as_bytes(), epoch())?);
        }
        while layers.len() < self.o.layers {
            let n = 64 + (self.rng.next() % 448) as usize;
            let content = self.rng.bytes(n);
            layers.push(self.w.layer(&self.name, &content, created)?);
        }
        let config = json!({
            "created": rfc3339(created), "architecture": arch, "os": "linux",
            "config": {"Labels": {"regsweep.gen": format!("{} {}", self.name, self.rng.next())}},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>()},
        });
        let config = self.w.layer(&self.name, &serde_json::to_vec(&config)?, created)?;
        let manifest = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor(CONFIG, config),
            "layers": layers.iter().map(|l| descriptor(LAYER, *l)).collect::<Vec<_>>(),
        });
        self.w.manifest(&self.name, &manifest, created)
    }

    /// A two-platform index over two images.
    fn index(&mut self, created: SystemTime) -> Result<Desc> {
        let mut children = Vec::new();
        for arch in ["amd64", "arm64"] {
            let d = self.image(arch, created)?;
            let mut desc = descriptor(OCI_MANIFEST, d);
            desc["platform"] = json!({"architecture": arch, "os": "linux"});
            children.push(desc);
        }
        self.w.manifest(
            &self.name,
            &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}),
            created,
        )
    }

    /// A small artifact: an empty config and one layer, with a subject or not.
    fn artifact(&mut self, subject: Option<Desc>, artifact_type: &str, when: SystemTime) -> Result<Desc> {
        let config = self.w.layer(&self.name, b"{}", epoch())?;
        let payload = self.rng.bytes(96);
        let layer = self.w.layer(&self.name, &payload, when)?;
        let mut m = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.oci.empty.v1+json", config),
            "layers": [descriptor(artifact_type, layer)],
        });
        if let Some(s) = subject {
            m["artifactType"] = json!(artifact_type);
            m["subject"] = descriptor(OCI_MANIFEST, s);
        }
        self.w.manifest(&self.name, &m, when)
    }

    fn write(&mut self, offset_hours: u64) -> Result<()> {
        let mut newest = None;
        for t in 0..self.o.tags {
            let hours = offset_hours + t as u64 * 6;
            let pushed = epoch() + Duration::from_secs(hours * 3600 + self.rng.next() % 1800);
            let tag = format!("1.{t}.0");
            let every = |k: usize| k > 0 && t % k == k - 1;
            if t < self.o.untagged {
                // An earlier push of this tag: untagged now, still in the tag's history.
                let earlier = pushed - Duration::from_secs(1800);
                let old = self.image("amd64", earlier)?;
                self.w.link(
                    &self.w.layout.tag_index_entry(&self.name, &tag, &old.digest).join(LINK),
                    &old.digest,
                    earlier,
                )?;
            }
            let d = if every(self.o.multiarch_every) { self.index(pushed)? } else { self.image("amd64", pushed)? };
            self.w.tag(&self.name, &tag, &d.digest, pushed)?;
            if every(self.o.signed_every) {
                let later = pushed + Duration::from_secs(60);
                let sig = self.artifact(None, "application/vnd.dev.cosign.simplesigning.v1+json", later)?;
                self.w.tag(&self.name, &format!("sha256-{}.sig", d.digest.hex()), &sig.digest, later)?;
                self.artifact(Some(d), "application/spdx+json", later)?;
            }
            newest = Some((d, pushed));
        }
        if let Some((d, pushed)) = newest {
            self.w.tag(&self.name, "latest", &d.digest, pushed + Duration::from_secs(1))?;
        }
        fs::create_dir_all(self.w.layout.uploads(&self.name))?;
        Ok(())
    }
}

/// The name of repository `r`: two levels, and every tenth one nested inside the one before.
fn repo_name(r: usize) -> String {
    if r % 10 == 9 { format!("{}/tools", repo_name(r - 1)) } else { format!("ns{:02}/app{r:05}", r % 40) }
}

/// Writes a new store under `root`.
pub fn generate(root: &Path, o: &GenOptions, progress: Progress) -> Result<GenReport> {
    let layout = Layout::at(root.join("docker/registry/v2"));
    if layout.v2().exists() {
        bail!("{} already holds a store: gen writes new stores only", layout.v2().display());
    }
    fs::create_dir_all(layout.repositories()).with_context(|| format!("cannot create {}", layout.v2().display()))?;
    fs::create_dir_all(layout.blobs())?;
    let w = Writer {
        layout: &layout,
        counts: Counts { tags: 0.into(), manifests: 0.into(), blobs: 0.into(), files: 0.into() },
    };
    let bar = progress.bar("writing", o.repos as u64);
    (0..o.repos).into_par_iter().try_for_each(|r| {
        let mut g =
            RepoGen { w: &w, o, name: repo_name(r), rng: Rng(o.seed ^ (r as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)) };
        let res = g.write((r % 97) as u64);
        bar.inc(1);
        res
    })?;
    bar.finish_and_clear();
    let c = &w.counts;
    Ok(GenReport {
        repositories: o.repos,
        tags: c.tags.load(Ordering::Relaxed),
        manifests: c.manifests.load(Ordering::Relaxed),
        blobs: c.blobs.load(Ordering::Relaxed),
        files: c.files.load(Ordering::Relaxed),
    })
}
