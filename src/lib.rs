//! regsweep: retention and garbage collection for the store of a CNCF Distribution registry.
//! Data flows one way (a store's scan -> policy -> plan -> its execution -> report), and so do
//! the imports: `model` below `core` below `store` and `online`, this file on top
//! (tests/it/layers.rs checks it; docs/DESIGN.md has the semantics and the safety order).
//! `pulls`, the pull record that the registry's notifications fill, stands apart: it imports
//! nothing of the crate.

pub mod blobcache;
pub mod core;
pub mod generate;
pub mod model;
pub mod online;
pub mod pulls;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Result;
use rayon::prelude::*;

use crate::core::plan::{Options, Planner, RepoDraft};
use crate::core::policy::{Order, Reason, Retention, Verdict};
use crate::core::progress::Progress;
use crate::core::pulled::PullTimes;
use crate::core::report::Report;
use crate::core::usage::{Reach, Usage, usage};
use crate::core::{interrupt, journal_rules, plan, policy, report};
use crate::model::blobs::BlobList;
use crate::model::digest::{Digest, DigestMap, DigestSet};
use crate::model::error::{ErrorKind, RunError};
use crate::model::inventory::{Parsed, Repo};
use crate::model::warning::Warning;
use crate::model::{Interrupted, LockLost};
use crate::store::location::Location;
use crate::store::{Scan, Store, apply};

/// How far before the scan a write still counts as made during the run: more than the
/// granularity of any file system clock (ext4's is a jiffy, at most 10 ms).
const TIMESTAMP_SLACK: std::time::Duration = std::time::Duration::from_secs(2);

/// How far behind the local clock a store's may be before ages are taken on the store's.
const CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(5);

/// What a run does besides collecting: `prune` applies a retention policy first, `gc` does not.
#[derive(Clone, Debug)]
pub enum Mode {
    Prune(Box<Retention>),
    Gc,
}

/// Plans a run on the store under `root` and, unless `dry_run`, carries it out.
pub fn run(root: &Path, mode: &Mode, opts: &Options, dry_run: bool, progress: Progress) -> Result<Report> {
    run_at(&Location::Fs(root.to_path_buf()), mode, opts, dry_run, progress)
}

/// Plans a run on the store at `at` (a folder or a bucket) and, unless `dry_run`, carries it out.
pub fn run_at(at: &Location, mode: &Mode, opts: &Options, dry_run: bool, progress: Progress) -> Result<Report> {
    let store = at.open()?;
    run_on(store.as_ref(), &at.shown(), mode, opts, dry_run, progress)
}

/// [`run_at`], keeping the registry's blob cache true: `cache` is told what each stage removed,
/// and its part of the report filled in.
pub fn run_at_kept(
    at: &Location,
    mode: &Mode,
    opts: &Options,
    dry_run: bool,
    progress: Progress,
    cache: &blobcache::Keeper,
) -> Result<Report> {
    let store = at.open()?;
    let mut report = run_on_with(store.as_ref(), &at.shown(), mode, opts, dry_run, progress, cache.evict())?;
    cache.finish(&mut report);
    Ok(report)
}

/// Plans a run on a store and, unless `dry_run`, carries it out.
pub fn run_on(
    store: &dyn Store,
    shown_as: &str,
    mode: &Mode,
    opts: &Options,
    dry_run: bool,
    progress: Progress,
) -> Result<Report> {
    run_on_with(store, shown_as, mode, opts, dry_run, progress, &store::stage::NoEvict)
}

/// [`run_on`], telling `evict` what each deletion stage removed.
pub fn run_on_with(
    store: &dyn Store,
    shown_as: &str,
    mode: &Mode,
    opts: &Options,
    dry_run: bool,
    progress: Progress,
    evict: &dyn store::stage::Evict,
) -> Result<Report> {
    // A dry run writes nothing, not even a lock (restic's --no-lock, allowed only there).
    let lock = if dry_run { None } else { Some(store.lock()?) };
    // Ages on the store's clock, which stamps what pushes write, where it is behind the local
    // one (a bucket's, read at the lock): a local clock minutes fast would make a push in
    // progress look past its grace period. A clock ahead only makes things look younger.
    let store_now = store.store_clock(opts.now);
    let opts = &Options {
        now: if opts.now.duration_since(store_now).unwrap_or_default() > CLOCK_SKEW { store_now } else { opts.now },
        ..opts.clone()
    };
    let (plan, mut warnings, _) = plan_on(store, mode, opts, progress, &|_, _, _| ())?;
    // A store whose tags live elsewhere: --delete-untagged is refused here, before anything.
    let ranks_tags = matches!(mode, Mode::Prune(_));
    warnings.extend(crate::core::plan::tagless::guard(
        plan.tagless.as_ref(),
        opts.delete_untagged,
        ranks_tags,
        opts.allow_tagless,
    )?);
    let command = if matches!(mode, Mode::Gc) { report::Command::Gc } else { report::Command::Prune };
    // What was written at or after `since` was not scanned: the deletions leave it. The file
    // system's clock is coarse (a jiffy behind the real one), so a little before the scan began.
    let since = store.store_clock(opts.now) - opts.grace.min(TIMESTAMP_SLACK);
    let bytes_before =
        if opts.bytes_left { Some(blob_sizes(store, &plan.store_blobs)?.iter().sum::<u64>()) } else { None };
    let planned_blob_bytes = plan.blob_bytes;
    let outcome = if dry_run {
        None
    } else {
        apply::stop_point("plan");
        stop_if_interrupted()?;
        Some(apply::execute_with(store, &plan, since, progress, evict)?)
    };
    let mut report = Report::new(command, shown_as, plan, dry_run);
    if let Mode::Prune(r) = mode {
        report.pulls = r.pulls.as_ref().map(|p| p.summary(opts.now));
    }
    warnings.append(&mut report.warnings);
    report.warnings = warnings;
    let blob_bytes_freed = outcome.as_ref().map_or(planned_blob_bytes, |o| o.blob_bytes_freed);
    report.bytes_left = bytes_before.map(|b| b.saturating_sub(blob_bytes_freed));
    if let Some(outcome) = outcome {
        report.record(outcome);
    }
    // A lock that stays blocks the next runs: said, not only dropped (a failed run's goes with
    // it, as it can).
    if let Some(Err(e)) = lock.map(|l| l.release()) {
        // Found no longer its own at the end, or its deletion failed.
        let kind = if e.is::<LockLost>() { ErrorKind::LockLost } else { ErrorKind::LockRelease };
        report.errors.push(RunError::new(kind, format!("{e:#}")));
    }
    report.freed_later = store.freed_later();
    report.requests = store.requests();
    Ok(report)
}

/// `du`: where the space of the store at `at` goes, with what a prune (`mode`) would free.
pub fn du_at(at: &Location, mode: &Mode, opts: &Options, progress: Progress) -> Result<(Usage, Vec<Warning>)> {
    let store = at.open()?;
    let store = store.as_ref();
    let (plan, mut warnings, reach) = plan_on(store, mode, opts, progress, &Reach::of)?;
    // It deletes nothing: what a run would refuse is said.
    let ranks_tags = matches!(mode, Mode::Prune(_));
    warnings.extend(crate::core::plan::tagless::said(plan.tagless.as_ref(), opts.delete_untagged, ranks_tags));
    let sizes = blob_sizes(store, &plan.store_blobs)?;
    Ok((usage(&at.shown(), reach, &sizes, &plan), warnings))
}

/// The size of each blob of a list (0: gone since).
fn blob_sizes(store: &dyn Scan, blobs: &BlobList) -> Result<Vec<u64>> {
    // Filled in place: a collected `Result<Vec>` would hold every size twice at the peak.
    let mut sizes = vec![0u64; blobs.len()];
    sizes.par_iter_mut().enumerate().try_for_each(|(i, size)| -> Result<()> {
        *size = store.stat(plan::Object::BlobData(blobs.get(i)))?.map_or(0, |(s, _)| s);
        Ok(())
    })?;
    Ok(sizes)
}

/// What planning takes of one repository's scan.
struct Scanned<T> {
    draft: RepoDraft,
    warnings: Vec<Warning>,
    extra: T,
    /// The repository, and its journal entries void now ([`journal_rules::Void`]).
    void: (String, journal_rules::Void),
}

/// Reads a store and plans a run on it: each repository is read, decided and planned in one
/// pass, in parallel with the others; only the blob list, its mark bits and the plan outlive
/// it, with what `per_repo` takes of each repository as it goes (the plan's order).
pub fn plan_on<T: Send>(
    store: &dyn Store,
    mode: &Mode,
    opts: &Options,
    progress: Progress,
    per_repo: &(dyn Fn(&Repo, &DigestMap<Parsed>, &BlobList) -> T + Sync),
) -> Result<(plan::Plan, Vec<Warning>, Vec<T>)> {
    let journal = store.journal()?;
    let (names, blobs) = rayon::join(|| store.repositories(), || store.blobs());
    let (names, blobs) = (names?, blobs?);
    // An attachment tag's subject may be in any repository: where each manifest is, first.
    let holders = if opts.orphan_attachments {
        let revisions = names.par_iter().map(|n| Ok((n.clone(), store.revision_digests(n)?)));
        Some(plan::Holders::new(revisions.collect::<Result<_>>()?))
    } else {
        None
    };
    let planner = Planner::new(blobs, journal.as_ref(), opts, store).with_holders(holders.as_ref());
    let mut warnings = match mode {
        Mode::Prune(r) => {
            let mut w = r.unmatched_warnings(&names);
            w.extend(r.pull_warnings(opts.now));
            w
        }
        Mode::Gc => Vec::new(),
    };
    let bar = progress.bar("scanning", names.len() as u64);
    let repos: Vec<Scanned<T>> = names
        .into_par_iter()
        .map(|name| {
            stop_if_interrupted()?;
            // Tags matter to a prune, to --delete-untagged (tagged manifests are the roots) and
            // to finishing an interrupted run, and to telling which `--keep-in-use` references
            // name nothing; a plain gc keeps every revision anyway.
            let tag_links = !matches!(mode, Mode::Gc)
                || opts.delete_untagged
                || opts.in_use.is_some()
                || journal.as_ref().is_some_and(|j| j.names(&name));
            let repo = store.repository(name, tag_links)?;
            let journaled = journal.iter().flat_map(|j| j.digests(&repo.name));
            let wanted: DigestSet = repo.revisions.iter().map(|r| r.target).chain(journaled).collect();
            let manifests = store.manifests(wanted);
            let pulled = match mode {
                Mode::Prune(r) => r.pulls.as_ref().map(|p| p.of_tags(&repo.name, &repo.tags, &manifests)),
                Mode::Gc => None,
            };
            let (mut decisions, warnings) = decide(store, &repo, &manifests, mode, opts, pulled.as_deref());
            let void = match &journal {
                Some(j) => journal_rules::finish(&repo, j, opts.in_use.as_deref(), &mut decisions),
                None => journal_rules::Void::default(),
            };
            let in_scope = match mode {
                Mode::Prune(r) => r.in_scope(&repo.name),
                Mode::Gc => true,
            };
            let mut draft = planner.repo(&repo, &manifests, &decisions, in_scope);
            if let Some(pulled) = &pulled {
                draft.note_pulls(&repo.tags, pulled);
            }
            let extra = per_repo(&repo, &manifests, planner.blobs());
            bar.inc(1);
            Ok(Scanned { draft, warnings, extra, void: (repo.name, void) })
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    let mut drafts = Vec::with_capacity(repos.len());
    let mut extras = Vec::with_capacity(repos.len());
    let mut void = Vec::new();
    for r in repos {
        drafts.push(r.draft);
        warnings.extend(r.warnings);
        extras.push(r.extra);
        void.push(r.void);
    }
    let bar = progress.bar("sweeping", 0);
    let mut plan = planner.finish(drafts)?;
    bar.finish_and_clear();
    if let Some(u) = &opts.in_use {
        plan.note_in_use(u, Vec::new());
    }
    journal_rules::drop_void(&mut plan.journal, void);
    Ok((plan, warnings, extras))
}

/// Ends a run that a signal asked to end before its deletions ([`interrupt::install_deferred`]).
fn stop_if_interrupted() -> Result<()> {
    if interrupt::requested() {
        return Err(Interrupted("interrupted before anything was deleted: nothing changed".into()).into());
    }
    Ok(())
}

/// The decision on every tag of a repository (aligned with its tags) and the policy's warnings;
/// `pulled`: each tag's last pull, with `--pulls`.
fn decide(
    store: &dyn Scan,
    repo: &Repo,
    manifests: &DigestMap<Parsed>,
    mode: &Mode,
    opts: &Options,
    pulled: Option<&[Option<SystemTime>]>,
) -> (Vec<Verdict>, Vec<Warning>) {
    let ret = match mode {
        Mode::Gc => return (vec![Verdict::Keep(Reason::NotPruned); repo.tags.len()], Vec::new()),
        Mode::Prune(ret) => ret,
    };
    let created = if ret.order == Order::Created {
        let digests: Vec<_> = repo.tags.iter().filter_map(|t| t.current).collect();
        policy::created_times(manifests, &digests, &|d| store.config(d))
    } else {
        Default::default()
    };
    policy::decide_pulled(&repo.name, &repo.tags, ret, &created, pulled.unwrap_or_default(), opts.grace, opts.now)
}

/// Reads the pull records of `--pulls` into the plain times retention reads; `None` when none
/// is given. Several records give the latest pull of each tag and digest, and begin when the
/// latest of them began: each is a listener of its own (a replica's), and a window is judged
/// only where every one of them covers it. A record that is not there is an error: a typo
/// must not make every tag look unpulled. `count_referrers`: a referrer's pull counts for its
/// subject's tags (`--count-referrers`, see `PullTimes::count_referrers`).
pub fn read_pulls(paths: &[PathBuf], count_referrers: bool) -> Result<Option<Arc<PullTimes>>> {
    use pulls::record::Row;
    let mut times: Option<PullTimes> = None;
    for (n, path) in paths.iter().enumerate() {
        let t = times.get_or_insert_with(|| {
            let mut t = PullTimes::default();
            t.count_referrers = count_referrers;
            t
        });
        // Streamed: a record of many tags is not held twice.
        let span = pulls::record::stream(path, |row| match row {
            Row::Tag { repository, tag, last } => t.add_tag(repository, tag, pulls::time(last)),
            // Digests of another algorithm than sha256 name no manifest regsweep reads.
            Row::Digest { repository, digest, last } => {
                if let Some(d) = Digest::parse(digest) {
                    t.add_digest(repository, d, pulls::time(last));
                }
            }
        })?;
        let began = span.since.map(pulls::time);
        t.since = if n == 0 { began } else { t.since.zip(began).map(|(a, b)| a.max(b)) };
        t.last_event = t.last_event.max(span.last_event.map(pulls::time));
    }
    Ok(times.map(Arc::new))
}

/// Reads the files of `--keep-in-use` (`-`: stdin) with this registry's `hosts`. A file that
/// cannot be read, or that is not what it looks like, is an error naming it: a typo must not
/// leave what runs unprotected.
pub fn read_in_use(paths: &[PathBuf], hosts: &[String]) -> Result<Arc<core::in_use::InUse>> {
    use anyhow::Context;
    let mut files = Vec::new();
    for path in paths {
        let shown = path.display().to_string();
        let text = if shown == "-" {
            std::io::read_to_string(std::io::stdin()).context("--keep-in-use -: cannot read stdin")?
        } else {
            std::fs::read_to_string(path).with_context(|| format!("--keep-in-use: cannot read {shown}"))?
        };
        let read = core::in_use::read(&text, &shown)?;
        files.push((shown, read));
    }
    Ok(Arc::new(core::in_use::InUse::new(files, hosts)?))
}
