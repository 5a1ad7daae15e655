//! `du --url`: where the space goes, through the API. Every manifest the tags reach is fetched;
//! blob sizes come from the descriptors that name them (a HEAD of the blob where none gives one:
//! schema1 layers). The same planner as `prune` then says what a prune with the policy would
//! leave to the registry's collector, and the same usage code adds it up.
//!
//! What the API cannot show is not counted: manifests no tag reaches, blobs no manifest
//! references, uploads. So `bytes_total` is what the tags reach, `bytes_unreferenced` and
//! `bytes_uploads` are 0, and reclaimable is what the collector frees once the deleted manifests
//! are gone, provided no untagged manifest still needs it.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use rayon::prelude::*;

use super::{Reader, check_order, plan_options, read_registry, with_pool};
use crate::core::plan::{self, Object, StoreView};
use crate::core::policy::Retention;
use crate::core::progress::Progress;
use crate::core::usage::{Reach, Usage, usage};
use crate::model::digest::{Digest, DigestMap};
use crate::model::warning::Warning;
use client::{Client, Method, repo_scope};

use super::client;

/// Blob sizes as the only thing the planner can ask of the registry: every blob is old enough.
struct Sizes<'a>(&'a DigestMap<u64>);

impl StoreView for Sizes<'_> {
    fn stat(&self, object: Object) -> Result<Option<(u64, SystemTime)>> {
        Ok(match object {
            Object::BlobData(d) => self.0.get(&d).map(|s| (*s, UNIX_EPOCH)),
            _ => None,
        })
    }

    fn tag_index(&self, _: &str, _: &str) -> Result<Vec<Digest>> {
        Ok(Vec::new())
    }
}

/// A blob's size by HEAD, `None` when the registry does not have it.
fn head_blob(client: &Client, repo: &str, d: &Digest) -> Result<Option<u64>> {
    let r = client.send(Method::Head, &format!("/v2/{repo}/blobs/{d}"), &repo_scope(repo, "pull"), None)?;
    match r.status {
        200 => Ok(r.header("Content-Length").and_then(|l| l.parse().ok())),
        404 => Ok(None),
        s => bail!("HEAD {repo}@{d}: {s} {}", r.error_codes()),
    }
}

/// Where the space of the registry goes, with what a prune with `retention` would free.
pub fn du(
    client: &Client,
    retention: Option<&Retention>,
    concurrency: usize,
    progress: Progress,
) -> Result<(Usage, Vec<Warning>)> {
    if let Some(r) = retention {
        check_order(r)?;
    }
    with_pool(client, concurrency, || {
        let reader = Reader::new(client, retention, true);
        let mut registry = read_registry(client, &reader, retention, &|_| true, progress)?;
        let mut sizes = reader.sizes.map(|s| s.into_inner().unwrap()).unwrap_or_default();
        // Blobs no descriptor gave a size (schema1 layers): asked of a repository that has them.
        let mut no_size: Vec<(&str, Digest)> = Vec::new();
        for repo in &registry.inv.repos {
            for r in &repo.revisions {
                let Some(m) = registry.inv.manifests.get(&r.target).and_then(|p| p.manifest()) else { continue };
                no_size.extend(m.blobs.iter().filter(|b| !sizes.contains_key(*b)).map(|b| (repo.name.as_str(), *b)));
            }
        }
        no_size.sort_by_key(|(_, d)| *d);
        no_size.dedup_by_key(|(_, d)| *d);
        let heads: Vec<(Digest, Option<u64>)> =
            no_size.par_iter().map(|(repo, d)| Ok((*d, head_blob(client, repo, d)?))).collect::<Result<_>>()?;
        sizes.extend(heads.into_iter().filter_map(|(d, s)| Some((d, s?))));

        let decisions = registry.decide(retention);
        registry.inv.blobs = sizes.keys().copied().collect();
        let in_scope = |n: &str| retention.is_none_or(|r| r.in_scope(n));
        let plan = plan::build(&registry.inv, &decisions, &in_scope, &plan_options(None, false), &Sizes(&sizes))?;
        let reach: Vec<Reach> =
            registry.inv.repos.par_iter().map(|r| Reach::of(r, &registry.inv.manifests, &plan.store_blobs)).collect();
        let blob_sizes: Vec<u64> = plan.store_blobs.iter().map(|d| sizes.get(d).copied().unwrap_or(0)).collect();
        let mut warnings = registry.warnings;
        warnings.extend(plan.warnings.iter().cloned());
        Ok((usage(&client.base, reach, &blob_sizes, &plan), warnings))
    })
}
