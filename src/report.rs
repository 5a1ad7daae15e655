//! The report of a run: one serde value behind both `--json` and the human text.

use std::fmt;

use indicatif::HumanBytes;
use serde::Serialize;

use crate::online::engine::CollectorReport;
use crate::plan::{Action, GraceKept, Plan, Tags};
use crate::policy::Reason;

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
}

/// The outcome of a run, or of a dry run the plan.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub command: String,
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
    pub grace_kept: GraceKept,
    pub repos: Vec<RepoReport>,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
    /// True after a real run that deleted blobs: a registry serving this store must restart.
    pub restart_required: bool,
    /// Online: the registry's own collector, run in its container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collector: Option<CollectorReport>,
}

impl Report {
    /// The report of a plan, before it is carried out.
    pub fn new(command: &str, root: &str, plan: Plan, dry_run: bool) -> Report {
        let with_tags = command != "gc";
        let index_entries_deleted = plan.repos.iter().map(|r| r.index_entries.len()).sum();
        let leftovers_deleted = plan.leftover_blobs.len()
            + plan.repos.iter().map(|r| r.leftover_revisions.len() + r.leftover_layer_links.len()).sum::<usize>();
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
                name: r.name,
                in_scope: r.in_scope,
            })
            .collect();
        Report {
            command: command.to_string(),
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
            grace_kept: plan.grace_kept,
            repos,
            warnings: plan.warnings,
            errors: Vec::new(),
            restart_required: !dry_run && !plan.blobs.is_empty(),
            collector: None,
        }
    }
}

/// The human text: with `--dry-run` the plan per repository, then the summary. Written as it goes:
/// the plan of a large prune has a line per tag.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run { "would delete" } else { "deleted" };
        if self.dry_run {
            writeln!(f, "Plan for {} (dry run: nothing is deleted)", self.root)?;
            for r in &self.repos {
                writeln!(
                    f,
                    "\n{}{}: {} tags kept, {} deleted; {} manifests, {} layer links, {} uploads to delete",
                    r.name,
                    if r.in_scope { "" } else { " (left out by --repo/--exclude-repo: untouched)" },
                    r.tags_kept,
                    r.tags_deleted,
                    r.manifests_deleted,
                    r.layer_links_deleted,
                    r.uploads_deleted
                )?;
                for t in r.tags.iter() {
                    let action = match t.action {
                        Action::Keep => "keep  ",
                        Action::Delete => "delete",
                        Action::Untag => "untag ",
                    };
                    let mut why = reason_text(t.reason);
                    if t.action == Action::Untag {
                        match t.shared_with {
                            Some(k) => {
                                why.push_str(&format!("; shares its digest with kept tag {k}: only the tag goes"))
                            }
                            None => why.push_str("; its manifest stays, still needed by a kept manifest"),
                        }
                    }
                    writeln!(f, "  {action} {:<24} {why}", t.name)?;
                }
            }
            writeln!(f)?;
        }
        if self.command == "online" {
            writeln!(
                f,
                "{} repositories: {verb} {} tags (kept {}), {} manifests through the API; the space comes back when the \
                 registry's garbage-collect runs (--gc-container)",
                self.repositories, self.tags_deleted, self.tags_kept, self.manifests_deleted
            )?;
            if let Some(c) = &self.collector {
                f.write_str(&c.text())?;
            }
            if !self.errors.is_empty() {
                writeln!(
                    f,
                    "{} errors (printed above): nothing kept was touched; run again to finish",
                    self.errors.len()
                )?;
            }
            return Ok(());
        }
        writeln!(
            f,
            "{} repositories: {verb} {} tags (kept {}), {} manifests, {} tag index entries, {} layer links, {} blobs, {} uploads; {} freed",
            self.repositories,
            self.tags_deleted,
            self.tags_kept,
            self.manifests_deleted,
            self.index_entries_deleted,
            self.layer_links_deleted,
            self.blobs_deleted,
            self.uploads_deleted,
            HumanBytes(self.bytes_freed)
        )?;
        let g = &self.grace_kept;
        if g.manifests + g.blobs + g.layer_links > 0 {
            writeln!(
                f,
                "kept by the grace period: {} manifests, {} layer links, {} blobs",
                g.manifests, g.layer_links, g.blobs
            )?;
        }
        if !self.errors.is_empty() {
            writeln!(f, "{} deletions failed: the store is valid; run again to finish", self.errors.len())?;
        }
        if self.restart_required {
            writeln!(
                f,
                "Restart the registry that serves this store now: its blob cache still lists the deleted blobs, \
                 and re-pushed layers would be silently missing (distribution#1803)."
            )?;
        }
        Ok(())
    }
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
        Reason::SubjectKept { subject } => format!("subject kept: {subject:?}"),
        Reason::SubjectElsewhere { subject } => {
            format!("subject {subject:?} is not in this repository: left alone")
        }
        Reason::BeyondCount { rank } => format!("count: #{rank} newest, beyond --keep"),
        Reason::SubjectGone { subject } => format!("subject deleted: {subject:?}"),
        Reason::Interrupted => "an interrupted run was deleting it (journal): finishing".into(),
        Reason::UntagRefused => "the registry cannot delete a tag alone and its manifest must stay: left".into(),
    }
}
