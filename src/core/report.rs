//! The report of a run: one serde value behind both `--json` and the human text.

use std::fmt;
use std::fmt::Write as _;

use indicatif::HumanBytes;
use serde::Serialize;

use crate::core::in_use::InUseSummary;
use crate::core::plan::{Action, GraceKept, Plan, TagPlan, Tags};
use crate::core::policy::{Reason, attachment_subject};
use crate::core::pulled::PullSummary;
use crate::model::error::{self, ErrorKind, RunError};
use crate::model::outcome::{Failure, Outcome, RequestCounts, What};
use crate::model::warning::Warning;

/// What the collector did.
#[derive(Clone, Debug, Serialize)]
pub struct CollectorReport {
    pub container: String,
    pub engine: String,
    pub command: Vec<String>,
    pub exit_code: i64,
    /// Its stdout and stderr (the last 64 KiB).
    pub output: String,
    pub restarted: bool,
    /// `garbage-collect`'s own count of blobs it deleted, when it printed one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blobs_deleted: Option<u64>,
}

impl CollectorReport {
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "garbage-collect in container {} ({}): exit {}{}{}",
            self.container,
            self.engine,
            self.exit_code,
            self.blobs_deleted.map(|n| format!(", {n} blobs deleted")).unwrap_or_default(),
            if self.restarted { "; restarted, /v2/ answers" } else { "" }
        );
        // Its last lines (the JSON report has the whole output).
        let lines: Vec<&str> = self.output.lines().collect();
        for l in &lines[lines.len().saturating_sub(5)..] {
            let _ = writeln!(s, "  | {l}");
        }
        s
    }
}

/// Which blob-descriptor cache the registry serving the store uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheKind {
    /// `storage.cache.blobdescriptor: redis`: evicted by the run.
    Redis,
    /// `inmemory`: only a restart clears it.
    Inmemory,
    /// No cache.
    None,
    /// Not known: neither `--config` nor `--redis-cache` given.
    #[default]
    Unknown,
}

/// What the run did to the registry's blob cache.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CacheReport {
    pub kind: CacheKind,
    /// Redis: where (`redis://host:port/db`, `rediss://` with TLS), without credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Redis: keys and set members that existed and went.
    pub keys_removed: u64,
    /// Redis: pipelines that failed, each after one reconnection.
    pub failures: u64,
    /// Redis: keys that may still list what the run deleted (`<set> <member>` for a set's
    /// member); empty when the last pass reached every one.
    pub stale_keys: Vec<String>,
    /// Redis: the last error it answered, or the connection's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The registry was stopped around the run and started again (--stop-container): an
    /// in-memory cache began empty.
    pub restarted: bool,
}

impl CacheReport {
    /// Its line in the text report.
    fn text(&self, dry_run: bool, deleted: bool) -> Option<String> {
        let at = self.address.as_deref().unwrap_or("");
        Some(match self.kind {
            CacheKind::Redis if dry_run => format!("blob cache: redis at {at} answers; a real run evicts what it deletes"),
            CacheKind::Redis if self.stale_keys.is_empty() => format!(
                "blob cache: redis at {at}: {} removed, nothing stale: no restart needed",
                count(self.keys_removed as usize, "key", "keys")
            ),
            CacheKind::Redis => format!(
                "blob cache: redis at {at}: {} removed, {} may be stale ({} failed)",
                count(self.keys_removed as usize, "key", "keys"),
                count(self.stale_keys.len(), "key", "keys"),
                count(self.failures as usize, "pipeline", "pipelines")
            ),
            CacheKind::Inmemory if self.restarted => {
                "blob cache: in memory; the registry was stopped around the run and started again: it began empty".into()
            }
            CacheKind::Inmemory if deleted || dry_run => "blob cache: in memory (storage.cache.blobdescriptor: inmemory):                  nothing outside the registry can clear it; restart the registry after the run, or run with                  --stop-container NAME, which stops it around the run and starts it again"
                .to_string(),
            CacheKind::None => "blob cache: none (no storage.cache in the registry's config): nothing to keep".into(),
            _ => return None,
        })
    }
}

/// Which command a report is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    Prune,
    Gc,
    Online,
}

/// What one repository loses and keeps.
#[derive(Clone, Debug, Serialize)]
pub struct RepoReport {
    pub name: String,
    pub in_scope: bool,
    pub tags_kept: usize,
    pub tags_deleted: usize,
    pub manifests_deleted: usize,
    pub layer_links_deleted: usize,
    pub uploads_deleted: usize,
    /// Every tag with its action and the reason (empty for `gc`).
    pub tags: Tags,
    /// Its manifests kept because `--keep-in-use` names them by digest.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub manifests_in_use: Vec<crate::model::digest::Digest>,
}

/// What the deletions left because a push wrote, or needed, it since the scan.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Rescued {
    pub tags: usize,
    pub manifests: usize,
    pub layer_links: usize,
    pub blobs: usize,
}

/// The outcome of a run, or of a dry run the plan.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub command: Command,
    pub dry_run: bool,
    pub root: String,
    pub repositories: usize,
    pub tags_kept: usize,
    pub tags_deleted: usize,
    pub manifests_deleted: usize,
    pub index_entries_deleted: usize,
    pub layer_links_deleted: usize,
    pub blobs_deleted: usize,
    pub uploads_deleted: usize,
    /// Empty folders an interrupted write or deletion left (no link, no data).
    pub leftovers_deleted: usize,
    pub bytes_freed: u64,
    /// The bytes of blobs the store holds after the run (as of the scan: what was pushed
    /// since is not counted), with `--metrics-file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_left: Option<u64>,
    pub grace_kept: GraceKept,
    pub repos: Vec<RepoReport>,
    pub warnings: Vec<Warning>,
    /// What went wrong, each with its kind (the exit status derives from them) and path; a
    /// failed deletion is one too (`delete_failed`), besides its entry in `failed`.
    pub errors: Vec<RunError>,
    /// Deletions that failed, with their paths (a real run; the counts above are what is gone).
    pub failed: Vec<Failure>,
    /// Left at the moment of deletion because a push wrote or needed them since the scan.
    pub rescued: Rescued,
    /// Stopped by SIGINT or SIGTERM: the counts say what was done; a rerun finishes the job.
    pub interrupted: bool,
    /// True after a real run that deleted blobs: a registry serving this store must restart.
    pub restart_required: bool,
    /// Online: the registry's own collector, run in its container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collector: Option<CollectorReport>,
    /// On a bucket: the requests sent, by kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<RequestCounts>,
    /// On a bucket that keeps what is deleted (versioning, soft delete): when its provider frees
    /// the space (`bytes_freed` is what was deleted all the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freed_later: Option<String>,
    /// With `--pulls`: the pull record read (when it began, its last event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pulls: Option<PullSummary>,
    /// The registry's blob cache: which one, and what the run evicted from it.
    pub cache: Option<CacheReport>,
    /// With `--keep-in-use`: the references read, and what they named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_use: Option<InUseSummary>,
}

impl Report {
    /// The report of a plan, before it is carried out.
    pub fn new(command: Command, root: &str, plan: Plan, dry_run: bool) -> Report {
        // gc lists no tags: it keeps every one.
        let with_tags = command != Command::Gc;
        let index_entries_deleted = plan.repos.iter().map(|r| r.index_entries.len()).sum();
        let leftovers_deleted = plan.leftover_blobs.len()
            + plan.repos.iter().map(|r| r.leftover_revisions.len() + r.leftover_layer_links.len()).sum::<usize>();
        let in_use = plan.in_use;
        let upload_bytes: u64 = plan.repos.iter().flat_map(|r| &r.uploads).map(|u| u.size).sum();
        let repos: Vec<RepoReport> = plan
            .repos
            .into_iter()
            .map(|r| RepoReport {
                tags_kept: r.tags_kept + r.tags.count(Action::Keep),
                tags_deleted: r.tags.len() - r.tags.count(Action::Keep),
                manifests_deleted: r.manifests.len(),
                layer_links_deleted: r.layer_links.len(),
                uploads_deleted: r.uploads.len(),
                tags: if with_tags { r.tags } else { Tags::default() },
                manifests_in_use: r.in_use,
                name: r.name,
                in_scope: r.in_scope,
            })
            .collect();
        Report {
            command,
            dry_run,
            root: root.to_string(),
            repositories: repos.len(),
            tags_kept: repos.iter().map(|r| r.tags_kept).sum(),
            tags_deleted: repos.iter().map(|r| r.tags_deleted).sum(),
            manifests_deleted: repos.iter().map(|r| r.manifests_deleted).sum(),
            index_entries_deleted,
            layer_links_deleted: repos.iter().map(|r| r.layer_links_deleted).sum(),
            blobs_deleted: plan.blobs.len(),
            uploads_deleted: repos.iter().map(|r| r.uploads_deleted).sum(),
            leftovers_deleted,
            bytes_freed: plan.blob_bytes + upload_bytes,
            bytes_left: None,
            grace_kept: plan.grace_kept,
            repos,
            warnings: plan.warnings,
            errors: Vec::new(),
            failed: Vec::new(),
            rescued: Rescued::default(),
            interrupted: false,
            restart_required: !dry_run && !plan.blobs.is_empty(),
            collector: None,
            requests: None,
            freed_later: None,
            pulls: None,
            cache: None,
            in_use,
        }
    }

    /// The exit status the run's errors and interruption give (0 for none; see
    /// [`error::exit_code`]).
    pub fn exit_code(&self) -> u8 {
        let interrupted = self.interrupted.then_some(ErrorKind::Interrupted);
        error::exit_code(self.errors.iter().map(|e| e.kind).chain(interrupted))
    }

    /// What a real run did: the counts become what is gone, not what was planned.
    pub fn record(&mut self, outcome: Outcome) {
        for (i, r) in self.repos.iter_mut().enumerate() {
            let gone = |what| outcome.gone(Some(i), what);
            r.tags_kept += r.tags_deleted - gone(What::Tag);
            (r.tags_deleted, r.manifests_deleted) = (gone(What::Tag), gone(What::Manifest));
            (r.layer_links_deleted, r.uploads_deleted) = (gone(What::LayerLink), gone(What::Upload));
        }
        self.tags_kept = self.repos.iter().map(|r| r.tags_kept).sum();
        self.tags_deleted = outcome.total(What::Tag);
        self.manifests_deleted = outcome.total(What::Manifest);
        self.index_entries_deleted = outcome.total(What::IndexEntry);
        self.layer_links_deleted = outcome.total(What::LayerLink);
        self.blobs_deleted = outcome.total(What::Blob);
        self.uploads_deleted = outcome.total(What::Upload);
        self.leftovers_deleted = outcome.total(What::Leftover);
        self.bytes_freed = outcome.bytes_freed;
        let r = outcome.rescued;
        self.rescued = Rescued {
            tags: r[What::Tag as usize],
            manifests: r[What::Manifest as usize],
            layer_links: r[What::LayerLink as usize],
            blobs: r[What::Blob as usize],
        };
        self.errors.extend(
            outcome.failed.iter().map(|f| {
                RunError::at(ErrorKind::DeleteFailed, &f.path, format!("cannot delete {}: {}", f.path, f.error))
            }),
        );
        self.errors.extend(outcome.errors);
        self.failed = outcome.failed;
        self.interrupted = outcome.interrupted;
        self.restart_required = self.blobs_deleted > 0;
    }
}

/// `1 tag`, `2 tags`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A digest as the plan shows it: `sha256:` and its first 12 hex digits.
fn short(d: &crate::model::digest::Digest) -> String {
    format!("sha256:{}", &d.hex()[..12])
}

/// An attachment tag's name with its digest shortened (`sha256-1c01….sig`); others as they are.
fn short_tag(name: &str) -> std::borrow::Cow<'_, str> {
    match attachment_subject(name) {
        Some(_) => format!("sha256-{}…{}", &name[7..11], &name[71..]).into(),
        None => name.into(),
    }
}

/// A tag's rank among the newest, where the policy ranked it.
fn rank(t: &TagPlan) -> Option<u32> {
    match t.reason {
        Reason::Count { rank } | Reason::BeyondCount { rank } => Some(*rank),
        _ => None,
    }
}

/// The human text of a report ([`Report::text`]).
pub struct Text<'a> {
    report: &'a Report,
    verbose: bool,
}

/// The human text, every repository listed (as `--verbose`).
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.text(true).fmt(f)
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.report.write_text(f, self.verbose)
    }
}

impl Report {
    /// The human text: the repositories where something happens (with `--dry-run`: would
    /// happen), each with its tags, then the summary; `verbose`, every repository. Written as
    /// it goes: the plan of a large prune has a line per tag.
    pub fn text(&self, verbose: bool) -> Text<'_> {
        Text { report: self, verbose }
    }

    /// True when something happens to repository `r` (or would, in a dry run): something is
    /// deleted, a deletion in it failed, or a warning is about it.
    fn eventful(&self, i: usize, r: &RepoReport) -> bool {
        r.tags_deleted + r.manifests_deleted + r.layer_links_deleted + r.uploads_deleted > 0
            || r.tags.iter().any(|t| t.action != Action::Keep)
            || self.failed.iter().any(|f| f.repo == Some(i))
            || self.warnings.iter().any(|w| w.repo.as_deref() == Some(r.name.as_str()))
    }

    fn write_text(&self, f: &mut fmt::Formatter<'_>, verbose: bool) -> fmt::Result {
        self.repos_text(f, verbose)?;
        writeln!(f)?;
        if self.command == Command::Online {
            return self.online_totals_text(f);
        }
        self.totals_text(f)?;
        self.kept_text(f)?;
        self.ending_text(f)
    }

    /// The heading, then each repository's block (only those something happens to, unless
    /// `verbose`).
    fn repos_text(&self, f: &mut fmt::Formatter<'_>, verbose: bool) -> fmt::Result {
        if self.dry_run {
            writeln!(f, "Plan for {} (dry run: nothing is deleted)", self.root)?;
        } else {
            writeln!(f, "Deleted from {}", self.root)?;
        }
        let mut quiet = 0;
        for (i, r) in self.repos.iter().enumerate() {
            if verbose || self.eventful(i, r) {
                self.repo_text(f, r)?;
            } else {
                quiet += 1;
            }
        }
        if quiet > 0 {
            writeln!(
                f,
                "\n{} where nothing {} not listed (--verbose lists every one)",
                count(quiet, "repository", "repositories"),
                if self.dry_run { "would happen" } else { "happened" }
            )?;
        }
        Ok(())
    }

    /// Online: what was deleted through the API, what runs, the collector's and the cache's lines.
    fn online_totals_text(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run { "would delete" } else { "deleted" };
        writeln!(
            f,
            "{}: {verb} {} (kept {}), {} through the API; the space comes back when the \
             registry's garbage-collect runs (--gc-container)",
            count(self.repositories, "repository", "repositories"),
            count(self.tags_deleted, "tag", "tags"),
            self.tags_kept,
            count(self.manifests_deleted, "manifest", "manifests"),
        )?;
        if let Some(u) = &self.in_use {
            writeln!(f, "{}", in_use_text(u))?;
        }
        if let Some(c) = &self.collector {
            f.write_str(&c.text())?;
        }
        if let Some(line) = self.cache.as_ref().and_then(|c| c.text(self.dry_run, true)) {
            writeln!(f, "{line}")?;
        }
        if !self.errors.is_empty() {
            writeln!(
                f,
                "{} (printed above): nothing kept was touched; run again to finish",
                count(self.errors.len(), "error", "errors")
            )?;
        }
        Ok(())
    }

    /// What was deleted and freed.
    fn totals_text(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run { "would delete" } else { "deleted" };
        write!(
            f,
            "{}: {verb} {} (kept {}), {}, {}, {}, {}, {}",
            count(self.repositories, "repository", "repositories"),
            count(self.tags_deleted, "tag", "tags"),
            self.tags_kept,
            count(self.manifests_deleted, "manifest", "manifests"),
            count(self.index_entries_deleted, "tag index entry", "tag index entries"),
            count(self.layer_links_deleted, "layer link", "layer links"),
            count(self.blobs_deleted, "blob", "blobs"),
            count(self.uploads_deleted, "upload", "uploads"),
        )?;
        if self.leftovers_deleted > 0 {
            write!(f, ", {}", count(self.leftovers_deleted, "leftover folder", "leftover folders"))?;
        }
        writeln!(f, "; {} freed", HumanBytes(self.bytes_freed))?;
        if let Some(later) = &self.freed_later {
            writeln!(f, "the space is not free yet: {later}")?;
        }
        Ok(())
    }

    /// What stayed although the plan did not need it: by the grace period, in use, for a push.
    fn kept_text(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.grace_kept;
        if g.manifests + g.blobs + g.layer_links > 0 {
            writeln!(
                f,
                "kept by the grace period: {}, {}, {}",
                count(g.manifests, "manifest", "manifests"),
                count(g.layer_links, "layer link", "layer links"),
                count(g.blobs, "blob", "blobs")
            )?;
        }
        if let Some(u) = &self.in_use {
            writeln!(f, "{}", in_use_text(u))?;
        }
        let r = &self.rescued;
        if r.tags + r.manifests + r.layer_links + r.blobs > 0 {
            writeln!(
                f,
                "left because a push wrote or needed them during the run: {}, {}, {}, {}",
                count(r.tags, "tag", "tags"),
                count(r.manifests, "manifest", "manifests"),
                count(r.layer_links, "layer link", "layer links"),
                count(r.blobs, "blob", "blobs")
            )?;
        }
        Ok(())
    }

    /// How the run ended (interrupted, errors), then the registry's blob cache.
    fn ending_text(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.interrupted {
            writeln!(
                f,
                "interrupted: the counts above are what was done; run again to finish (the journal says what is left)"
            )?;
        } else if !self.errors.is_empty() {
            let deletions = self.errors.iter().filter(|e| e.kind == ErrorKind::DeleteFailed).count();
            let others = self.errors.len() - deletions;
            let what = match (deletions, others) {
                (d, 0) => format!("{} failed", count(d, "deletion", "deletions")),
                (0, o) => count(o, "error", "errors"),
                (d, o) => {
                    format!("{} failed, {}", count(d, "deletion", "deletions"), count(o, "other error", "other errors"))
                }
            };
            writeln!(f, "{what} (printed above): the store is valid; run again to finish")?;
        }
        if let Some(line) = self.cache.as_ref().and_then(|c| c.text(self.dry_run, self.blobs_deleted > 0)) {
            writeln!(f, "{line}")?;
        }
        if self.restart_required && self.cache.as_ref().is_some_and(|c| c.kind == CacheKind::Redis) {
            writeln!(
                f,
                "The registry's redis cache may still list what was deleted: delete the keys the JSON report lists \
                 (cache.stale_keys) once redis answers, or FLUSHDB its database (a restart of the registry does not \
                 clear redis); until then re-pushed layers may be silently missing (distribution#1803)."
            )?;
        } else if self.restart_required {
            writeln!(
                f,
                "Restart the registry that serves this store now: its blob cache still lists the deleted blobs, \
                 and re-pushed layers would be silently missing (distribution#1803)."
            )?;
        }
        Ok(())
    }

    /// One repository's block: its counts, then its tags newest first by rank (unranked tags
    /// after, by name), each with its digest, push time and reason.
    fn repo_text(&self, f: &mut fmt::Formatter<'_>, r: &RepoReport) -> fmt::Result {
        let to = if self.dry_run { " to delete" } else { " deleted" };
        writeln!(
            f,
            "\n{}{}: {} kept, {} deleted; {}, {}, {}{to}",
            r.name,
            if r.in_scope { "" } else { " (left out by --repo/--exclude-repo: untouched)" },
            count(r.tags_kept, "tag", "tags"),
            r.tags_deleted,
            count(r.manifests_deleted, "manifest", "manifests"),
            count(r.layer_links_deleted, "layer link", "layer links"),
            count(r.uploads_deleted, "upload", "uploads"),
        )?;
        let mut tags: Vec<TagPlan> = r.tags.iter().collect();
        tags.sort_by(|a, b| (rank(a).unwrap_or(u32::MAX), a.name).cmp(&(rank(b).unwrap_or(u32::MAX), b.name)));
        for t in tags {
            let action = match t.action {
                Action::Keep => "keep  ",
                Action::Delete => "delete",
                Action::Untag => "untag ",
            };
            let mut why = reason_text(t.reason);
            if t.action == Action::Untag {
                match t.shared_with {
                    Some(k) => why.push_str(&format!("; shares its digest with kept tag {k}: only the tag goes")),
                    None if t.digest.is_some_and(|d| r.manifests_in_use.contains(&d)) => {
                        why.push_str("; its manifest stays, in use by digest (--keep-in-use)")
                    }
                    None => why.push_str("; its manifest stays, still needed by a kept manifest"),
                }
            }
            // With --pulls, an ordinary tag's last pull (attachment tags follow their subject).
            if let Some(p) = self.pulls.as_ref().filter(|_| attachment_subject(t.name).is_none()) {
                why = format!("{why}; {}", p.text(t.pulled.map(|p| p.time())));
            }
            let digest = t.digest.as_ref().map(short).unwrap_or_default();
            let pushed = t.pushed.map(|p| p.rfc3339().replace('T', " ")[..16].to_string()).unwrap_or_default();
            writeln!(f, "  {action} {:<24} {digest:<19} {pushed:<16}  {why}", short_tag(t.name))?;
        }
        for d in &r.manifests_in_use {
            writeln!(
                f,
                "  keep   {:<24} {:<19} {:<16}  in use: named by digest by --keep-in-use",
                "(manifest)",
                short(d),
                ""
            )?;
        }
        Ok(())
    }
}

/// The line of `--keep-in-use`.
fn in_use_text(u: &InUseSummary) -> String {
    let mut s = format!(
        "in use (--keep-in-use, {}): {} to this registry, {} to other registries ignored",
        count(u.files.len(), "file", "files"),
        count(u.references, "reference", "references"),
        u.other_hosts
    );
    if u.not_found > 0 {
        s.push_str(&format!("; {} name nothing in the store (warnings above)", u.not_found));
    }
    if u.invalid > 0 {
        s.push_str(&format!("; {} no image reference (warnings above)", count(u.invalid, "value is", "values are")));
    }
    s
}

fn reason_text(r: &Reason) -> String {
    match r {
        Reason::Count { rank } => format!("count: #{rank} newest"),
        Reason::KeepTag { pattern } => format!("filter: matches --keep-tag {pattern}"),
        Reason::Younger => "filter: younger than --older-than".into(),
        Reason::Grace => "grace: pushed within the grace period".into(),
        Reason::RepoFiltered => "filter: repository left out".into(),
        Reason::NoKey => "no key: its order key cannot be read, never guessed".into(),
        Reason::UniformPushTimes => "uniform push times: push order means nothing here".into(),
        Reason::NoCurrentLink => "no current link: left alone".into(),
        Reason::NotPruned => "gc keeps every tag".into(),
        Reason::SubjectKept { subject } => format!("subject kept: {}", short(subject)),
        Reason::SubjectElsewhere { subject } => {
            format!("subject {} is not in this repository: left alone", short(subject))
        }
        Reason::SubjectInRepo(s) => format!("subject {} is in repository {}: kept", short(&s.subject), s.repo),
        Reason::SubjectMissing { subject } => {
            format!("subject {} is in no repository of the store (--delete-orphan-attachments)", short(subject))
        }
        Reason::BeyondCount { rank } => format!("count: #{rank} newest, beyond --keep"),
        Reason::SubjectGone { subject } => format!("subject deleted: {}", short(subject)),
        Reason::Interrupted => "an interrupted run was deleting it (journal): finishing".into(),
        Reason::UntagRefused => "the registry cannot delete a tag alone and its manifest must stay: left".into(),
        Reason::PulledWithin => "pulls: within --keep-pulled-within".into(),
        Reason::PullRecordTooShort => "pulls: --keep-pulled-within reaches before the record began, not judged".into(),
        Reason::InUse => "in use: named by --keep-in-use".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with(outcome: Outcome) -> Report {
        let mut report = Report::new(Command::Prune, "/r", Plan::default(), false);
        report.record(outcome);
        report
    }

    fn repo(name: &str, deleted: usize) -> RepoReport {
        RepoReport {
            name: name.into(),
            in_scope: true,
            tags_kept: 2,
            tags_deleted: 0,
            manifests_deleted: deleted,
            layer_links_deleted: 0,
            uploads_deleted: 0,
            tags: Tags::default(),
            manifests_in_use: Vec::new(),
        }
    }

    /// Issue 35, 5: the text lists the repositories where something happens (deleted, failed,
    /// warned about), then a line counting the others; verbose lists every one.
    #[test]
    fn the_text_lists_only_repositories_where_something_happens() {
        let mut report = Report::new(Command::Gc, "/r", Plan::default(), false);
        report.repos = ["quiet/a", "deleted", "quiet/b", "failed", "warned"].iter().map(|n| repo(n, 0)).collect();
        report.repos[1].manifests_deleted = 3;
        report.failed = vec![Failure { path: "/r/x".into(), error: "denied".into(), repo: Some(3) }];
        report.warnings = vec![Warning::new(crate::model::warning::WarningKind::UniformPushTimes, "w").about("warned")];
        let listed = |text: &str| -> Vec<String> {
            text.lines().filter_map(|l| l.split_once(": 2 tags kept").map(|(n, _)| n.to_string())).collect()
        };
        let text = report.text(false).to_string();
        assert_eq!(listed(&text), ["deleted", "failed", "warned"], "{text}");
        assert!(
            text.contains("\n2 repositories where nothing happened not listed (--verbose lists every one)\n"),
            "{text}"
        );
        let all = report.text(true).to_string();
        assert_eq!(listed(&all), ["quiet/a", "deleted", "quiet/b", "failed", "warned"], "{all}");
        assert!(!all.contains("not listed"), "{all}");
        assert_eq!(report.to_string(), all);
        // Nothing quiet: no such line.
        report.repos.retain(|r| !r.name.starts_with("quiet"));
        report.failed[0].repo = Some(1);
        assert!(!report.text(false).to_string().contains("not listed"));
    }

    #[test]
    fn a_failed_deletion_is_a_delete_failed_error_naming_its_path_and_exit_3() {
        let failed = vec![Failure { path: "/r/x".into(), error: "denied".into(), repo: Some(0) }];
        let report = run_with(Outcome { failed, ..Outcome::default() });
        assert_eq!(report.errors, [RunError::at(ErrorKind::DeleteFailed, "/r/x", "cannot delete /r/x: denied")]);
        assert_eq!(report.exit_code(), 3);
        assert!(report.to_string().contains("1 deletion failed (printed above)"), "{report}");
    }

    #[test]
    fn the_exit_status_is_the_kinds_not_whether_there_are_errors() {
        assert_eq!(run_with(Outcome::default()).exit_code(), 0);
        let lost = RunError::at(ErrorKind::PushDuringRun, "sha256:ab", "push that image again");
        let report = run_with(Outcome { errors: vec![lost], interrupted: true, ..Outcome::default() });
        assert_eq!(report.exit_code(), 130, "interrupted: the journal says what is left");
        let mut report = run_with(Outcome::default());
        report.errors.push(RunError::at(ErrorKind::ContainerStep, "registry", "cannot start it"));
        assert_eq!(report.exit_code(), 5);
        assert!(report.to_string().contains("1 error (printed above)"), "{report}");
    }
}
