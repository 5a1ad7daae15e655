//! The sweep: what goes of the candidates once every repository is marked. Layer links and
//! leftover folders per repository, then every unmarked blob of the store, each checked against
//! the grace period.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Result, bail};
use rayon::prelude::*;

use super::{Object, Plan, Planner, RepoDraft};
use crate::model::inventory::Repo;

impl Planner<'_> {
    /// Unneeded layer links: a young one is a push under way, and its blob stays too, even if
    /// the blob is old (a layer pushed again, or mounted from another repository, before its
    /// manifest). Folders without their link, old enough, are leftovers.
    pub(super) fn leftovers_and_links(&self, repo: &Repo, draft: &mut RepoDraft) -> Result<()> {
        let plan = &mut draft.plan;
        for l in std::mem::take(&mut draft.layer_candidates) {
            match self.store.stat(Object::LayerLink(&repo.name, l))? {
                Some((_, t)) if !self.young(t) => plan.layer_links.push(&self.marks.blobs, l),
                Some(_) => {
                    draft.grace_kept_links += 1;
                    self.marks.mark(&l);
                }
                None if self.old(Object::LayerFolder(&repo.name, l))? => plan.leftover_layer_links.push(l),
                None => {}
            }
        }
        plan.layer_links.shrink_to_fit();
        for r in &repo.incomplete_revisions {
            if self.old(Object::RevisionFolder(&repo.name, *r))? {
                plan.leftover_revisions.push(*r);
            }
        }
        Ok(())
    }

    /// The plan, once every repository is planned: unmarked blobs go when their data is older
    /// than the grace period; a folder without data is no blob of the registry's, only a
    /// leftover of an interrupted write or deletion.
    pub fn finish(self, mut drafts: Vec<RepoDraft>) -> Result<Plan> {
        let errors: Vec<&String> = drafts.iter().flat_map(|d| &d.errors).collect();
        if !errors.is_empty() {
            let list: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
            bail!("cannot plan: {} problem(s), nothing was deleted:\n{}", errors.len(), list.join("\n"));
        }
        let mut plan = Plan { journal: self.journal.cloned().unwrap_or_default(), ..Plan::default() };
        let facts: Vec<_> = drafts.iter_mut().map(|d| std::mem::take(&mut d.tagless)).collect();
        plan.tagless = super::tagless::find(&facts);
        drop(facts);
        for mut d in drafts {
            plan.warnings.append(&mut d.warnings);
            plan.grace_kept.manifests += d.young_manifests;
            plan.grace_kept.layer_links += d.grace_kept_links;
            plan.repos.push(d.plan);
        }
        // One byte per blob rather than lists grown per thread and appended: at 2.5M blobs
        // those cost more than the marks themselves.
        #[derive(Clone, Copy, PartialEq)]
        enum Fate {
            Live,
            Delete,
            Young,
            Leftover,
        }
        let marks = &self.marks;
        let bytes = AtomicU64::new(0);
        let mut fates = vec![Fate::Live; marks.blobs.len()];
        fates.par_iter_mut().enumerate().filter(|(i, _)| !marks.is_marked(*i)).try_for_each(
            |(i, fate)| -> Result<()> {
                let b = marks.blobs.get(i);
                *fate = match self.store.stat(Object::BlobData(b))? {
                    Some((size, mtime)) if !self.young(mtime) => {
                        bytes.fetch_add(size, Ordering::Relaxed);
                        Fate::Delete
                    }
                    Some(_) => Fate::Young,
                    None if self.old(Object::BlobFolder(b))? => Fate::Leftover,
                    None => Fate::Live,
                };
                Ok(())
            },
        )?;
        let count = |fate: Fate| fates.iter().filter(|f| **f == fate).count();
        let indexes = |fate: Fate| -> Vec<u32> {
            let mut v = Vec::with_capacity(count(fate));
            v.extend(fates.iter().zip(0u32..).filter(|(f, _)| **f == fate).map(|(_, i)| i));
            v
        };
        plan.blobs = indexes(Fate::Delete);
        plan.unreferenced = plan.blobs.iter().copied().filter(|i| !marks.is_referenced(*i as usize)).collect();
        plan.blob_bytes = bytes.into_inner();
        plan.grace_kept.blobs = count(Fate::Young);
        plan.leftover_blobs = indexes(Fate::Leftover);
        plan.store_blobs = self.marks.blobs;
        Ok(plan)
    }
}
