//! Online mode: the retention of `prune` through the Registry HTTP API v2, for registries whose
//! disk is out of reach. It reads what the API shows (catalog, tags, manifests by HEAD and GET,
//! referrers where offered) into the same [`Inventory`] the store scan gives, decides with the
//! same [`crate::core::policy`] and plans with the same [`crate::core::plan`]; then it deletes
//! by digest only what nothing kept needs, and deletes a tag alone where the registry can (v3).
//! The space comes back when the registry's own collector runs: see [`engine`].

pub mod client;
pub mod du;
pub mod engine;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::core::in_use::InUse;
use crate::core::plan::{self, Action, Plan};
use crate::core::policy::{self, Order, Reason, Retention, Verdict};
use crate::core::progress::Progress;
use crate::core::report::{Command, Report};
use crate::model::digest::{Digest, DigestMap, DigestSet};
use crate::model::error::{ErrorKind, RunError};
use crate::model::inventory::{Inventory, Parsed, Repo, Revision, Tag};
use crate::model::manifest::{self, Kind, Manifest};
use crate::model::name::{is_repository, is_tag, printable};
use crate::model::warning::{Warning, WarningKind};
use crate::model::{InUseUntagged, UsageError};
use client::{CATALOG_SCOPE, Client, Method, repo_scope};

/// Every manifest media type, for `Accept`: without it the registry converts or refuses.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.v1+prettyjws, \
    application/vnd.docker.distribution.manifest.v1+json, \
    application/vnd.oci.artifact.manifest.v1+json";

/// What the operator asked for.
#[derive(Clone, Debug)]
pub struct OnlineOptions {
    pub retention: Retention,
    pub dry_run: bool,
    /// Requests in flight.
    pub concurrency: usize,
    /// The registry's collector runs after with `--delete-untagged`: refused before any delete
    /// where no repository the API lists has a tag (`plan::tagless::listed`), unless
    /// `allow_tagless`.
    pub gc_delete_untagged: bool,
    pub allow_tagless: bool,
}

#[derive(Deserialize)]
struct Catalog {
    #[serde(default)]
    repositories: Vec<String>,
}

#[derive(Deserialize)]
struct TagList {
    tags: Option<Vec<String>>,
}

/// Does the registry offer the OCI referrers API? Unknown until the first answer.
const REFERRERS_UNKNOWN: u8 = 0;
const REFERRERS_YES: u8 = 1;
const REFERRERS_NO: u8 = 2;

/// What the API shows of one repository.
struct Found {
    name: String,
    tags: Vec<(String, Digest)>,
    manifests: DigestMap<Parsed>,
    warnings: Vec<Warning>,
}

struct Reader<'a> {
    client: &'a Client,
    referrers: AtomicU8,
    /// Fetch every manifest and config: `created` is needed.
    need_created: bool,
    /// For `du`: fetch every manifest, and keep the size of each blob and manifest seen.
    sizes: Option<Mutex<DigestMap<u64>>>,
}

impl<'a> Reader<'a> {
    /// A reader for a run with `retention` (`created` read where it orders or ages tags) that,
    /// with `need_sizes`, keeps the sizes for `du`.
    fn new(client: &'a Client, retention: Option<&Retention>, need_sizes: bool) -> Reader<'a> {
        Reader {
            client,
            referrers: AtomicU8::new(REFERRERS_UNKNOWN),
            need_created: retention.is_some_and(|r| r.order == Order::Created || r.older_than.is_some()),
            sizes: need_sizes.then(Mutex::default),
        }
    }

    /// The digest and media type of a tag, by HEAD; `None` when the tag vanished meanwhile.
    fn head(&self, repo: &str, tag: &str) -> Result<Option<(Digest, String)>> {
        let r = self.client.send(
            Method::Head,
            &format!("/v2/{repo}/manifests/{tag}"),
            &repo_scope(repo, "pull"),
            Some(ACCEPT),
        )?;
        match r.status {
            200 => {}
            404 => return Ok(None),
            // Registry 3.x answers so for every schema 1 manifest, which it no longer serves.
            500 => bail!(
                "HEAD {repo}:{tag}: 500: the registry failed to serve this tag (see its log; registry 3.x answers so \
                 for every Docker schema 1 manifest, which it no longer serves: `regsweep check` on its store names \
                 them, as v3_unservable)"
            ),
            s => bail!("HEAD {repo}:{tag}: {s}"),
        }
        let d = r
            .header("Docker-Content-Digest")
            .and_then(Digest::parse)
            .with_context(|| format!("HEAD {repo}:{tag}: no valid Docker-Content-Digest header"))?;
        Ok(Some((d, r.header("Content-Type").unwrap_or_default().to_string())))
    }

    /// A manifest by digest, checked against its digest and parsed.
    fn manifest(&self, repo: &str, d: &Digest) -> Result<Parsed> {
        let r = self.client.send(
            Method::Get,
            &format!("/v2/{repo}/manifests/{d}"),
            &repo_scope(repo, "pull"),
            Some(ACCEPT),
        )?;
        match r.status {
            200 => {}
            404 => return Ok(Parsed::Missing),
            s => bail!("GET {repo}@{d:?}: {s} {}", r.error_codes()),
        }
        let is = |bytes: &[u8]| Sha256::digest(bytes).as_slice() == d.0;
        // A schema1 manifest is signed as it is served: its digest is that of the payload.
        let body = match r.body {
            body if is(&body) => body,
            body => match manifest::schema1_payload(&body).filter(|p| is(p)) {
                Some(payload) => payload,
                None => {
                    return Ok(Parsed::Broken(format!("{repo}@{d:?}: the registry sent content of another digest")));
                }
            },
        };
        if let Some(sizes) = &self.sizes {
            let mut sizes = sizes.lock().unwrap();
            sizes.insert(*d, body.len() as u64);
            sizes.extend(manifest::descriptor_sizes(&body));
        }
        Ok(match manifest::parse(&body) {
            Ok(m) => Parsed::Ok(m),
            Err(e) => Parsed::Broken(format!("{repo}@{d:?}: {e:#}")),
        })
    }

    /// The referrers of a manifest, where the registry offers the API.
    fn referrers(&self, repo: &str, d: &Digest) -> Result<Vec<Digest>> {
        #[derive(Deserialize)]
        struct Index {
            manifests: Vec<Descriptor>,
        }
        #[derive(Deserialize)]
        struct Descriptor {
            digest: String,
        }
        if self.referrers.load(Ordering::Relaxed) == REFERRERS_NO {
            return Ok(Vec::new());
        }
        let r = self.client.send(Method::Get, &format!("/v2/{repo}/referrers/{d}"), &repo_scope(repo, "pull"), None)?;
        let index = (r.status == 200).then(|| serde_json::from_slice::<Index>(&r.body).ok()).flatten();
        let Some(index) = index else {
            self.referrers.store(REFERRERS_NO, Ordering::Relaxed);
            return Ok(Vec::new());
        };
        self.referrers.store(REFERRERS_YES, Ordering::Relaxed);
        Ok(index.manifests.iter().filter_map(|m| Digest::parse(&m.digest)).collect())
    }

    /// True when the registry answers 200 to a HEAD of a manifest by digest. Anything else (404,
    /// a repository the credentials may not pull, no answer) is "not found": a warning, never an
    /// error (online deletes no manifest no tag reaches either way).
    fn exists(&self, repo: &str, d: &Digest) -> bool {
        let path = format!("/v2/{repo}/manifests/{d}");
        self.client.send(Method::Head, &path, &repo_scope(repo, "pull"), Some(ACCEPT)).is_ok_and(|r| r.status == 200)
    }

    /// A config blob, for `created`.
    fn config(&self, repo: &str, d: &Digest) -> Option<Vec<u8>> {
        let r =
            self.client.send(Method::Get, &format!("/v2/{repo}/blobs/{d}"), &repo_scope(repo, "pull"), None).ok()?;
        (r.status == 200).then_some(r.body)
    }

    /// Tags, their digests and every manifest they reach (children, referrers).
    fn repository(&self, name: &str, bar: &indicatif::ProgressBar) -> Result<Found> {
        let mut warnings = Vec::new();
        let scope = repo_scope(name, "pull");
        // A repository deleted since the catalog was read has no tags (404): nothing to do.
        let pages = self.client.pages::<TagList>(&format!("/v2/{name}/tags/list"), &scope, true)?;
        let mut names: Vec<String> = pages.into_iter().flat_map(|p| p.tags.unwrap_or_default()).collect();
        names.sort();
        names.dedup();
        names.retain(|t| {
            let ok = is_tag(t);
            if !ok {
                let message = format!("{name}: tag \"{}\" is not a valid tag name: left alone", printable(t));
                warnings.push(Warning::new(WarningKind::InvalidName, message));
            }
            ok
        });
        let heads: Vec<Option<(Digest, String)>> =
            names.par_iter().map(|t| self.head(name, t)).collect::<Result<_>>()?;
        bar.inc(names.len() as u64);
        let mut tags = Vec::new();
        let mut manifests: DigestMap<Parsed> = DigestMap::default();
        for (t, h) in names.into_iter().zip(heads) {
            let Some((d, media_type)) = h else { continue };
            tags.push((t, d));
            // A Docker image manifest or schema1 has no children and no subject: no GET unless
            // its `created` or its blobs are wanted.
            let plain = match media_type.as_str() {
                manifest::DOCKER_V2 => Some(Kind::DockerV2),
                manifest::DOCKER_V1 | manifest::DOCKER_V1_SIGNED => Some(Kind::Schema1),
                _ => None,
            };
            if let Some(kind) = plain.filter(|_| !self.need_created && self.sizes.is_none()) {
                manifests.entry(d).or_insert_with(|| {
                    Parsed::Ok(Manifest {
                        kind,
                        config: None,
                        blobs: Box::new([]),
                        children: Box::new([]),
                        subject: None,
                        created: None,
                    })
                });
            }
        }
        // Every manifest reached: tags' manifests, children, referrers. Each is fetched unless
        // its HEAD told enough, and asked for its referrers.
        let mut todo: Vec<Digest> = tags.iter().map(|(_, d)| *d).collect();
        let mut asked: DigestSet = DigestSet::default();
        while !todo.is_empty() {
            todo.retain(|d| asked.insert(*d));
            let fetched: Vec<(Digest, Option<Parsed>, Vec<Digest>)> = todo
                .par_iter()
                .map(|d| {
                    let p = if manifests.contains_key(d) { None } else { Some(self.manifest(name, d)?) };
                    Ok((*d, p, self.referrers(name, d)?))
                })
                .collect::<Result<_>>()?;
            todo.clear();
            for (d, p, refs) in fetched {
                if let Some(m) = p.as_ref().and_then(Parsed::manifest) {
                    todo.extend(m.children.iter().copied());
                }
                todo.extend(refs);
                if let Some(p) = p {
                    manifests.insert(d, p);
                }
            }
        }
        Ok(Found { name: name.to_string(), tags, manifests, warnings })
    }
}

/// The plan reads nothing from disk online: there are no layer links or blobs to stat.
/// One manifest to delete by digest, in stage order.
struct Deletion {
    stage: DeleteStage,
    repo: String,
    digest: Digest,
}

/// When a manifest is deleted by digest, in order, so that an interruption leaves nothing kept
/// broken: referrers first (nothing needs them), then the tags' own manifests, then the children
/// of deleted indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum DeleteStage {
    Referrers,
    Manifests,
    Children,
}

impl DeleteStage {
    /// Every stage, in order.
    const ALL: [DeleteStage; 3] = [DeleteStage::Referrers, DeleteStage::Manifests, DeleteStage::Children];
}

/// What the API shows of a registry: the repositories `wanted` lets in (valid names only), with
/// the `created` time of tagged manifests where `need_created`, and the warnings.
struct Registry {
    inv: Inventory,
    created: DigestMap<Option<SystemTime>>,
    warnings: Vec<Warning>,
}

/// Reads the catalog, then every repository `wanted` lets in, in parallel.
fn read_registry(
    client: &Client,
    reader: &Reader,
    retention: Option<&Retention>,
    wanted: &(dyn Fn(&str) -> bool + Sync),
    progress: Progress,
) -> Result<Registry> {
    let mut warnings = Vec::new();
    let mut names: Vec<String> = client
        .pages::<Catalog>("/v2/_catalog", CATALOG_SCOPE, false)
        .context("cannot list the repositories (GET /v2/_catalog)")?
        .into_iter()
        .flat_map(|c| c.repositories)
        .collect();
    names.sort();
    names.dedup();
    if let Some(r) = retention {
        warnings.extend(r.unmatched_warnings(&names));
        warnings.extend(r.pull_warnings(SystemTime::now()));
    }
    names.retain(|n| {
        if !is_repository(n) {
            let message = format!("repository \"{}\" is not a valid repository name: left alone", printable(n));
            warnings.push(Warning::new(WarningKind::InvalidName, message));
        }
        is_repository(n) && wanted(n)
    });
    let bar = progress.bar("tags", 0);
    let found: Vec<Found> = names.par_iter().map(|n| reader.repository(n, &bar)).collect::<Result<_>>()?;
    bar.finish_and_clear();

    let now = SystemTime::now();
    let mut inv = Inventory::default();
    for f in &found {
        warnings.extend(f.warnings.iter().cloned());
    }
    let created: DigestMap<Option<SystemTime>> = if reader.need_created {
        found
            .par_iter()
            .flat_map(|f| {
                let digests: Vec<Digest> = f.tags.iter().map(|(_, d)| *d).collect();
                policy::created_times(&f.manifests, &digests, &|c| reader.config(&f.name, c))
            })
            .collect()
    } else {
        DigestMap::default()
    };
    for f in found {
        let tags = f
            .tags
            .iter()
            .map(|(t, d)| Tag {
                name: t.clone(),
                current: Some(*d),
                // The API has no push time: `--older-than` goes by `created`, and a tag without
                // one counts as young, never guessed old.
                pushed: created.get(d).copied().flatten().unwrap_or(now),
            })
            .collect();
        let revisions =
            f.manifests.keys().map(|d| Revision { digest: *d, target: *d, modified: SystemTime::UNIX_EPOCH }).collect();
        inv.repos.push(Repo { name: f.name, tags, revisions, ..Repo::default() });
        inv.manifests.extend(f.manifests);
    }
    Ok(Registry { inv, created, warnings })
}

impl Registry {
    /// The decision on every tag (`None`: no policy, every tag kept).
    fn decide(&mut self, retention: Option<&Retention>) -> Vec<Vec<Verdict>> {
        let now = SystemTime::now();
        let warnings = &mut self.warnings;
        self.inv
            .repos
            .iter()
            .map(|repo| {
                let Some(r) = retention else { return vec![Verdict::Keep(Reason::NotPruned); repo.tags.len()] };
                let pulled = r.pulls.as_ref().map(|p| p.of_tags(&repo.name, &repo.tags, &self.inv.manifests));
                let pulled = pulled.as_deref().unwrap_or_default();
                let (d, mut w) =
                    policy::decide_pulled(&repo.name, &repo.tags, r, &self.created, pulled, Duration::ZERO, now);
                warnings.append(&mut w);
                d
            })
            .collect()
    }
}

/// How online plans: no grace (the API has no times), no untagged manifests to see.
fn plan_options(in_use: Option<std::sync::Arc<InUse>>, untagged_collected: bool) -> plan::Options {
    plan::Options {
        delete_untagged: false,
        grace: Duration::ZERO,
        allow_tagless: false,
        upload_age: Duration::MAX,
        now: SystemTime::now(),
        list_kept_tags: true,
        orphan_attachments: false,
        bytes_left: false,
        in_use,
        untagged_collected,
    }
}

/// Fails for `--order push`: the API has no push times.
fn check_order(r: &Retention) -> Result<()> {
    if r.order == Order::Push {
        return Err(UsageError(
            "--order push does not exist over the API (it has no push times): use created, semver or name".into(),
        )
        .into());
    }
    Ok(())
}

/// Runs `work` with `concurrency` requests in flight, once the registry answers.
fn with_pool<T: Send>(client: &Client, concurrency: usize, work: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(concurrency.max(1))
        .build()
        .context("cannot start request threads")?;
    pool.install(|| {
        client.ping()?;
        work()
    })
}

/// A manifest of a repository: (repository, digest).
type RepoDigest = (String, Digest);

/// What [`plan_online`] found.
struct Planned {
    plan: Plan,
    deletions: Vec<Deletion>,
    warnings: Vec<Warning>,
    /// The in-use manifests the registry has that no kept tag reaches.
    in_use_untagged: Vec<RepoDigest>,
}

/// With `--gc-delete-untagged`: fails (an [`InUseUntagged`] error) when a manifest in use that
/// the registry has is reached by no kept tag: the registry's collector would delete it.
fn refuse_in_use_untagged(found: &[RepoDigest]) -> Result<()> {
    const NAMED: usize = 5;
    let Some(((repo, d), rest)) = found.split_first() else { return Ok(()) };
    let mut named = format!("{}@{d}", printable(repo));
    for (repo, d) in rest.iter().take(NAMED - 1) {
        named.push_str(&format!(", {}@{d}", printable(repo)));
    }
    if found.len() > NAMED {
        named.push_str(&format!(" and {} more", found.len() - NAMED));
    }
    Err(InUseUntagged(format!(
        "refusing --gc-delete-untagged: {named} in use by --keep-in-use, no kept tag reaches it, and the \
         registry's collector deletes every manifest no tag names; nothing was deleted. Tag it (or run without \
         --gc-delete-untagged)"
    ))
    .into())
}

/// Reads the registry and plans the deletions, exactly as `prune --dry-run` would on its store;
/// with the in-use manifests no kept tag reaches (for [`refuse_in_use_untagged`]).
fn plan_online(client: &Client, opts: &OnlineOptions, progress: Progress) -> Result<Planned> {
    let r = &opts.retention;
    let reader = Reader::new(client, Some(r), false);
    let mut registry = read_registry(client, &reader, Some(r), &|n| r.in_scope(n), progress)?;
    let decisions = registry.decide(Some(r));
    let Registry { inv, mut warnings, .. } = registry;
    let options = plan_options(r.in_use.clone(), opts.gc_delete_untagged);
    let mut plan = plan::build(&inv, &decisions, &|_| true, &options, &plan::NoStore)?;
    let mut in_use_untagged: Vec<RepoDigest> =
        plan.repos.iter().flat_map(|rp| rp.in_use_untagged.iter().map(|d| (rp.name.clone(), *d))).collect();
    if let Some(u) = &r.in_use {
        let (also, existing) = in_use_elsewhere(&reader, u, &inv, r);
        in_use_untagged.extend(existing);
        plan.note_in_use(u, also);
    }
    if let Some(pulls) = &r.pulls {
        let repos: std::collections::HashMap<&str, &Repo> = inv.repos.iter().map(|r| (r.name.as_str(), r)).collect();
        for rp in &mut plan.repos {
            if let Some(repo) = repos.get(rp.name.as_str()) {
                rp.note_pulls(&repo.tags, &pulls.of_tags(&repo.name, &repo.tags, &inv.manifests));
            }
        }
    }
    // Children and referrers that only a deleted manifest reached are named by digest; order
    // the deletions so that an interruption leaves nothing kept broken: referrers first (nothing
    // needs them), then the tags' own manifests, then the children of deleted indexes.
    let mut deletions = Vec::new();
    for rp in &plan.repos {
        let parsed = |d: &Digest| inv.manifests.get(d).and_then(Parsed::manifest);
        let removed: Vec<Digest> = rp.manifests.iter(&plan.store_blobs).collect();
        let children: DigestSet = removed.iter().filter_map(parsed).flat_map(|m| m.children.iter().copied()).collect();
        for d in &removed {
            let stage = match parsed(d) {
                Some(m) if m.subject.is_some() => DeleteStage::Referrers,
                _ if children.contains(d) => DeleteStage::Children,
                _ => DeleteStage::Manifests,
            };
            deletions.push(Deletion { stage, repo: rp.name.clone(), digest: *d });
        }
    }
    deletions.sort_by(|a, b| (a.stage, &a.repo, a.digest).cmp(&(b.stage, &b.repo, b.digest)));
    warnings.append(&mut plan.warnings);
    Ok(Planned { plan, deletions, warnings, in_use_untagged })
}

/// The `--keep-in-use` references that name something the inventory does not show: those of
/// repositories the retention leaves out (not read), and digests no tag reaches that the
/// registry has (the API lists no untagged manifest: asked by HEAD). Nothing deletes either,
/// but the registry's collector with `--delete-untagged` would delete the second kind: they are
/// returned too, as (repository, digest).
fn in_use_elsewhere(reader: &Reader, u: &InUse, inv: &Inventory, r: &Retention) -> (Vec<usize>, Vec<RepoDigest>) {
    let mut also = u.of_repos(|repo| !r.in_scope(repo));
    let found: Vec<usize> = inv.repos.iter().flat_map(|repo| u.found(repo)).collect();
    let unmatched: Vec<(usize, String, Digest)> =
        u.unmatched_digests(&found).into_iter().filter(|(_, repo, _)| r.in_scope(repo)).collect();
    let exists: Vec<bool> = unmatched.par_iter().map(|(_, repo, d)| reader.exists(repo, d)).collect();
    let existing: Vec<&(usize, String, Digest)> =
        unmatched.iter().zip(exists).filter(|(_, e)| *e).map(|(u, _)| u).collect();
    also.extend(existing.iter().map(|(i, _, _)| *i));
    (also, existing.into_iter().map(|(_, repo, d)| (repo.clone(), *d)).collect())
}

/// What the deletions gave.
struct Outcome {
    errors: Vec<RunError>,
    warnings: Vec<Warning>,
    /// Tags the registry could not delete alone (2.8): they stay.
    untag_refused: Vec<(String, String)>,
}

/// Deletes by digest, stage by stage, then tags alone. A 405 stops everything: deletes are off.
fn execute(client: &Client, plan: &Plan, deletions: &[Deletion], progress: Progress) -> Result<Outcome> {
    // The first refusal that every further delete would meet too (405, 401, 403) stops the run.
    let stop: Mutex<Option<String>> = Mutex::new(None);
    let deleted = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    let bar = progress.bar("deleting", deletions.len() as u64);
    let delete = |repo: &str, reference: &str| -> Option<u16> {
        if stop.lock().unwrap().is_some() {
            return None;
        }
        let by_digest = reference.starts_with("sha256:");
        let r = client.send(
            Method::Delete,
            &format!("/v2/{repo}/manifests/{reference}"),
            &repo_scope(repo, "delete"),
            None,
        );
        match r {
            Ok(r) if r.status == 405 && by_digest => {
                *stop.lock().unwrap() = Some(format!(
                    "the registry refuses deletes (405 {}): set storage.delete.enabled: true in its config.yml \
                     (or REGISTRY_STORAGE_DELETE_ENABLED=true) and restart it",
                    r.error_codes()
                ));
                None
            }
            Ok(r) if matches!(r.status, 200 | 202 | 404) => {
                deleted.fetch_add(usize::from(r.status != 404), Ordering::Relaxed);
                Some(r.status)
            }
            Ok(r) if !by_digest => Some(r.status),
            Ok(r) => {
                let message = format!("DELETE {repo}@{reference}: {} {}", r.status, r.error_codes());
                errors.lock().unwrap().push(RunError::at(
                    ErrorKind::DeleteFailed,
                    format!("{repo}@{reference}"),
                    message,
                ));
                None
            }
            Err(e) if client::is_refusal(&e) => {
                *stop.lock().unwrap() = Some(format!("{e:#}"));
                None
            }
            Err(e) => {
                let path = format!("{repo}@{reference}");
                errors.lock().unwrap().push(RunError::at(ErrorKind::DeleteFailed, path, format!("{e:#}")));
                None
            }
        }
    };
    for stage in DeleteStage::ALL {
        deletions.par_iter().filter(|d| d.stage == stage).for_each(|d| {
            delete(&d.repo, &d.digest.to_string());
            bar.inc(1);
        });
    }
    bar.finish_and_clear();
    if let Some(reason) = stop.lock().unwrap().take() {
        if deleted.load(Ordering::Relaxed) == 0 {
            bail!("{reason}; nothing was deleted");
        }
        let mut errors = std::mem::take(&mut *errors.lock().unwrap());
        errors.push(RunError::new(ErrorKind::DeleteRefused, reason));
        return Ok(Outcome { errors, warnings: Vec::new(), untag_refused: Vec::new() });
    }
    let mut untag_refused = Vec::new();
    let mut warnings = Vec::new();
    let untags: Vec<(&str, &str)> = plan
        .repos
        .iter()
        .flat_map(|r| r.tags.iter().filter(|t| t.action == Action::Untag).map(move |t| (r.name.as_str(), t.name)))
        .collect();
    let results: Vec<Option<u16>> = untags.par_iter().map(|(repo, tag)| delete(repo, tag)).collect();
    for ((repo, tag), status) in untags.into_iter().zip(results) {
        match status {
            Some(200 | 202 | 404) | None => {}
            Some(s) => {
                let message = format!(
                    "{repo}:{tag}: the registry refused to delete the tag alone ({s}: distribution 2.8 cannot, and a \
                     registry with deletes off answers 405); its manifest is still needed, so the tag stays"
                );
                warnings.push(Warning::new(WarningKind::UntagRefused, message));
                untag_refused.push((repo.to_string(), tag.to_string()));
            }
        }
    }
    Ok(Outcome { errors: errors.into_inner().unwrap(), warnings, untag_refused })
}

/// Plans and, unless `dry_run`, carries out a retention run through the API.
pub fn run(client: &Client, opts: &OnlineOptions, progress: Progress) -> Result<Report> {
    check_order(&opts.retention)?;
    with_pool(client, opts.concurrency, || {
        let Planned { mut plan, deletions, mut warnings, in_use_untagged } = plan_online(client, opts, progress)?;
        if opts.gc_delete_untagged {
            let found = plan::tagless::listed(&plan);
            warnings.extend(plan::tagless::guard(found.as_ref(), true, false, opts.allow_tagless)?);
            refuse_in_use_untagged(&in_use_untagged)?;
        }
        let mut errors = Vec::new();
        if !opts.dry_run {
            let mut out = execute(client, &plan, &deletions, progress)?;
            for (repo, tag) in &out.untag_refused {
                if let Some(r) = plan.repos.iter_mut().find(|r| &r.name == repo) {
                    r.tags.set(tag, Action::Keep, Reason::UntagRefused);
                }
            }
            warnings.append(&mut out.warnings);
            errors = out.errors;
        }
        let mut report = Report::new(Command::Online, &client.base, plan, opts.dry_run);
        report.pulls = opts.retention.pulls.as_ref().map(|p| p.summary(SystemTime::now()));
        warnings.append(&mut report.warnings);
        report.warnings = warnings;
        report.errors = errors;
        Ok(report)
    })
}
