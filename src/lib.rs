//! regsweep: retention and garbage collection for the filesystem store of a CNCF Distribution
//! registry. Data flows one way: scan -> policy -> plan -> apply -> report.

pub mod apply;
pub mod check;
pub mod config;
pub mod digest;
pub mod generate;
pub mod journal;
pub mod layout;
pub mod manifest;
pub mod online;
pub mod plan;
pub mod policy;
pub mod progress;
pub mod report;
pub mod scan;

use std::path::Path;

use anyhow::Result;
use rayon::prelude::*;

use crate::layout::Layout;
use crate::plan::Options;
use crate::policy::{Decision, Order, Reason, Retention};
use crate::progress::Progress;
use crate::report::Report;

/// What a run does besides collecting: `prune` applies a retention policy first, `gc` does not.
#[derive(Clone, Debug)]
pub enum Mode {
    Prune(Retention),
    Gc,
}

/// Plans a run on the store under `root` and, unless `dry_run`, carries it out.
pub fn run(root: &Path, mode: &Mode, opts: &Options, dry_run: bool, progress: Progress) -> Result<Report> {
    let layout = Layout::open(root)?;
    // A dry run writes nothing, not even a lock (restic's --no-lock, allowed only there).
    let _lock = if dry_run { None } else { Some(apply::Lock::acquire(&layout)?) };
    let inv = scan::scan(&layout, progress)?;
    let (mut decisions, mut warnings) = decide(&layout, &inv, mode, opts);
    if let Some(j) = &inv.journal {
        finish_journaled_tags(&inv, j, &mut decisions);
    }
    let in_scope = |name: &str| match mode {
        Mode::Prune(r) => r.in_scope(name),
        Mode::Gc => true,
    };
    let bar = progress.bar("marking", 0);
    let plan = plan::build(&layout, &inv, &decisions, &in_scope, opts, &scan::Disk(&layout))?;
    bar.finish_and_clear();
    let command = if matches!(mode, Mode::Gc) { "gc" } else { "prune" };
    drop(inv);
    let errors = if dry_run { Vec::new() } else { apply::execute(&layout, &plan, progress)?.errors };
    let mut report = Report::new(command, &root.display().to_string(), plan, dry_run);
    warnings.append(&mut report.warnings);
    report.warnings = warnings;
    report.errors = errors;
    Ok(report)
}

/// The decision on every tag (aligned with the inventory) and the policy's warnings.
fn decide(layout: &Layout, inv: &scan::Inventory, mode: &Mode, opts: &Options) -> (Vec<Vec<Decision>>, Vec<String>) {
    let ret = match mode {
        Mode::Gc => {
            let keep_all = inv.repos.iter().map(|r| vec![Some((true, Reason::NotPruned)); r.tags.len()]).collect();
            return (keep_all, Vec::new());
        }
        Mode::Prune(ret) => ret,
    };
    let created = if ret.order == Order::Created {
        let digests: Vec<_> = inv.repos.iter().flat_map(|r| r.tags.iter().filter_map(|t| t.current)).collect();
        scan::created_times(&inv.manifests, &digests, &|d| scan::read_config(layout, d))
    } else {
        Default::default()
    };
    let (decisions, warnings): (Vec<_>, Vec<Vec<String>>) =
        inv.repos.par_iter().map(|r| policy::decide(&r.name, &r.tags, ret, &created, opts.grace, opts.now)).unzip();
    (decisions, warnings.into_iter().flatten().collect())
}

/// The tags an interrupted run was deleting are deleted, whatever this run's policy, unless
/// they were pushed again since (then they point elsewhere).
fn finish_journaled_tags(inv: &scan::Inventory, journal: &journal::Journal, decisions: &mut [Vec<Decision>]) {
    for (repo, decided) in inv.repos.iter().zip(decisions.iter_mut()) {
        let Some(tags) = journal.repos.get(&repo.name) else {
            continue;
        };
        for (t, d) in repo.tags.iter().zip(decided.iter_mut()) {
            if tags.get(&t.name).is_some_and(|j| t.current.is_none_or(|c| c == *j)) {
                *d = Some((false, Reason::Interrupted));
            }
        }
    }
}
