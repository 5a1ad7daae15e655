//! `regsweep du`: where the space goes. Per repository: the bytes its manifests reach
//! (referenced), those no other repository's manifests reach (unique: what deleting it and
//! collecting would free), the rest (shared), and what a prune with the given policy would free
//! (reclaimable). For the store: every blob, those no manifest reaches (unreferenced), uploads,
//! and the reclaimable total, which is exactly what `prune --dry-run` reports as freed.

use std::fmt;

use indicatif::HumanBytes;
use serde::Serialize;

use crate::core::plan::{Plan, Pushed};
use crate::core::pulled::{PullSummary, PullTimes};
use crate::model::blobs::BlobList;
use crate::model::digest::{Digest, DigestMap, DigestSet};
use crate::model::inventory::{Parsed, Repo};

/// What a scan takes of one repository for `du`.
#[derive(Debug)]
pub struct Reach {
    pub tags: usize,
    pub manifests: usize,
    /// Every blob of the store its manifests reach (manifest blobs, configs, layers, children's),
    /// as indexes into the store's blob list, sorted.
    pub blobs: Vec<u32>,
    /// The bytes of its uploads in progress.
    pub upload_bytes: u64,
}

impl Reach {
    /// What a repository's manifests (read, by content digest) reach among `store_blobs`.
    pub fn of(repo: &Repo, manifests: &DigestMap<Parsed>, store_blobs: &BlobList) -> Reach {
        let mut blobs = Vec::new();
        let mut todo: Vec<Digest> = repo.revisions.iter().map(|r| r.target).collect();
        let mut seen = DigestSet::default();
        let mut add = |d: &Digest| blobs.extend(store_blobs.position(d).map(|i| i as u32));
        while let Some(d) = todo.pop() {
            if !seen.insert(d) {
                continue;
            }
            if let Some(Parsed::Ok(m)) = manifests.get(&d) {
                add(&d);
                m.blobs.iter().for_each(&mut add);
                todo.extend(m.children.iter().copied());
            }
        }
        blobs.sort_unstable();
        blobs.dedup();
        Reach {
            tags: repo.tags.len() + repo.tags_not_read,
            manifests: repo.revisions.len(),
            blobs,
            upload_bytes: repo.uploads.iter().map(|u| u.size).sum(),
        }
    }
}

/// One repository's share of the store.
#[derive(Clone, Debug, Serialize)]
pub struct RepoUsage {
    pub name: String,
    pub tags: usize,
    pub manifests: usize,
    pub bytes_referenced: u64,
    pub bytes_unique: u64,
    pub bytes_shared: u64,
    pub bytes_reclaimable: u64,
    /// With `--pulls`: the last pull of any of its tags or manifests (`null`: none since the
    /// record began).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_pull: Option<Option<Pushed>>,
}

/// Where a store's space goes.
#[derive(Clone, Debug, Serialize)]
pub struct Usage {
    pub root: String,
    pub repositories: usize,
    /// Every blob.
    pub bytes_total: u64,
    /// Blobs no manifest of any repository reaches: what `gc` frees (once older than the grace).
    pub bytes_unreferenced: u64,
    /// Uploads in progress.
    pub bytes_uploads: u64,
    /// What `prune` with the same options frees: its `bytes_freed`.
    pub bytes_reclaimable: u64,
    pub repos: Vec<RepoUsage>,
    /// With `--pulls`: the pull record read (when it began, its last event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pulls: Option<PullSummary>,
}

/// How the table and the JSON list the repositories.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortBy {
    #[default]
    Unique,
    Referenced,
    Reclaimable,
    Name,
}

/// Adds up a store's usage. `reach` is aligned with the plan's repositories; `sizes` with the
/// store's blob list (0: gone since the listing). A blob the plan frees counts as
/// reclaimable in the first repository (by name) whose manifests reach it; an upload the plan
/// removes, in its own.
pub fn usage(root: &str, reach: Vec<Reach>, sizes: &[u64], plan: &Plan) -> Usage {
    let size = |i: u32| sizes.get(i as usize).copied().unwrap_or(0);
    // How many repositories reach each blob, and the first of them (by blob index).
    let mut holders: Vec<(u32, u32)> = vec![(0, 0); sizes.len()];
    for (r, reached) in reach.iter().enumerate() {
        for b in &reached.blobs {
            let h = &mut holders[*b as usize];
            if h.0 == 0 {
                h.1 = r as u32;
            }
            h.0 += 1;
        }
    }
    let mut reclaimable = vec![0u64; reach.len()];
    for b in &plan.blobs {
        let (count, first) = holders[*b as usize];
        if count > 0 {
            reclaimable[first as usize] += size(*b);
        }
    }
    for (i, r) in plan.repos.iter().enumerate() {
        reclaimable[i] += r.uploads.iter().map(|u| u.size).sum::<u64>();
    }
    let repos: Vec<RepoUsage> = plan
        .repos
        .iter()
        .zip(&reach)
        .zip(reclaimable)
        .map(|((p, r), bytes_reclaimable)| {
            let (referenced, unique) = r.blobs.iter().fold((0, 0), |(all, own), b| {
                let only = holders[*b as usize].0 == 1;
                (all + size(*b), own + if only { size(*b) } else { 0 })
            });
            RepoUsage {
                name: p.name.clone(),
                tags: r.tags,
                manifests: r.manifests,
                bytes_referenced: referenced,
                bytes_unique: unique,
                bytes_shared: referenced - unique,
                bytes_reclaimable,
                last_pull: None,
            }
        })
        .collect();
    let upload_bytes: u64 = plan.repos.iter().flat_map(|r| &r.uploads).map(|u| u.size).sum();
    Usage {
        root: root.to_string(),
        repositories: repos.len(),
        bytes_total: sizes.iter().sum(),
        bytes_unreferenced: (0..sizes.len() as u32).filter(|i| holders[*i as usize].0 == 0).map(size).sum(),
        bytes_uploads: reach.iter().map(|r| r.upload_bytes).sum(),
        bytes_reclaimable: plan.blob_bytes + upload_bytes,
        repos,
        pulls: None,
    }
}

impl Usage {
    /// With `--pulls`: each repository's last pull, and the record read.
    pub fn note_pulls(&mut self, pulls: &PullTimes, now: std::time::SystemTime) {
        for r in &mut self.repos {
            r.last_pull = Some(pulls.last_pull(&r.name).and_then(Pushed::new));
        }
        self.pulls = Some(pulls.summary(now));
    }

    /// Sorts the repositories (largest first; by name A to Z) and keeps the first `top`.
    pub fn sort(&mut self, by: SortBy, top: Option<usize>) {
        let key = |r: &RepoUsage| match by {
            SortBy::Unique => r.bytes_unique,
            SortBy::Referenced => r.bytes_referenced,
            SortBy::Reclaimable => r.bytes_reclaimable,
            SortBy::Name => 0,
        };
        self.repos.sort_by(|a, b| key(b).cmp(&key(a)).then_with(|| a.name.cmp(&b.name)));
        if let Some(k) = top {
            self.repos.truncate(k);
        }
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.repos.iter().map(|r| r.name.len()).max().unwrap_or(10).max(10);
        // The last pull's column only with --pulls.
        let last_pull = |p: Option<Option<Pushed>>| last_pull_text(p).map_or(String::new(), |t| format!("  {t:<16}"));
        writeln!(
            f,
            "{:<width$}  {:>6}  {:>9}  {:>11}  {:>11}  {:>11}  {:>11}{}",
            "REPOSITORY",
            "TAGS",
            "MANIFESTS",
            "REFERENCED",
            "UNIQUE",
            "SHARED",
            "RECLAIMABLE",
            if self.pulls.is_some() { format!("  {:<16}", "LAST PULL") } else { String::new() }
        )?;
        for r in &self.repos {
            writeln!(
                f,
                "{:<width$}  {:>6}  {:>9}  {:>11}  {:>11}  {:>11}  {:>11}{}",
                r.name,
                r.tags,
                r.manifests,
                HumanBytes(r.bytes_referenced).to_string(),
                HumanBytes(r.bytes_unique).to_string(),
                HumanBytes(r.bytes_shared).to_string(),
                HumanBytes(r.bytes_reclaimable).to_string(),
                last_pull(r.last_pull),
            )?;
        }
        write!(
            f,
            "\n{}: {} repositories, {} in blobs, {} referenced by no manifest, {} in uploads; {} reclaimable",
            self.root,
            self.repositories,
            HumanBytes(self.bytes_total),
            HumanBytes(self.bytes_unreferenced),
            HumanBytes(self.bytes_uploads),
            HumanBytes(self.bytes_reclaimable)
        )?;
        if let Some(p) = &self.pulls {
            let at = |t: Option<std::time::SystemTime>| {
                t.map_or("none".to_string(), |t| crate::core::pulled::time_text(t).replace('T', " "))
            };
            write!(
                f,
                "\npull record: since {}, last event {} (LAST PULL: of any tag or manifest; none: not \
                 pulled since the record began)",
                at(p.since),
                at(p.last_event)
            )?;
        }
        Ok(())
    }
}

/// What a treemap's areas show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Area {
    #[default]
    Referenced,
    Unique,
}

/// A repository's last pull as the table, the page and the treemap show it (`2026-12-03 07:31`,
/// UTC; `none`: not pulled since the record began); `None` without `--pulls`.
fn last_pull_text(p: Option<Option<Pushed>>) -> Option<String> {
    p.map(|p| p.map_or("none".to_string(), |p| p.rfc3339().replace('T', " ")[..16].to_string()))
}

/// Text for XML and HTML.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The share of a repository's referenced bytes a prune would free, as a colour: green (none)
/// to red (all).
fn colour(r: &RepoUsage) -> String {
    let share = if r.bytes_referenced == 0 { 0.0 } else { r.bytes_reclaimable as f64 / r.bytes_referenced as f64 };
    format!("hsl({:.0}, 65%, 55%)", 120.0 * (1.0 - share.clamp(0.0, 1.0)))
}

impl Usage {
    /// The treemap alone, an SVG document: one rectangle per repository, its area the bytes
    /// `area` says, its colour the share reclaimable, its name and figures in a tooltip.
    pub fn svg(&self, area: Area, width: u32, height: u32) -> String {
        let values: Vec<u64> = self
            .repos
            .iter()
            .map(|r| match area {
                Area::Referenced => r.bytes_referenced,
                Area::Unique => r.bytes_unique,
            })
            .collect();
        let rects = crate::core::treemap::layout(&values, (0.0, 0.0, f64::from(width), f64::from(height)));
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"treemap\" width=\"{width}\" height=\"{height}\" \
             viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n"
        );
        for (r, (x, y, w, h)) in self.repos.iter().zip(rects) {
            if w <= 0.0 || h <= 0.0 {
                continue;
            }
            let mut tip = format!(
                "{}: {} referenced, {} unique, {} shared, {} reclaimable",
                r.name,
                HumanBytes(r.bytes_referenced),
                HumanBytes(r.bytes_unique),
                HumanBytes(r.bytes_shared),
                HumanBytes(r.bytes_reclaimable)
            );
            if let Some(t) = last_pull_text(r.last_pull) {
                tip += &if t == "none" {
                    "; not pulled since the pull record began".to_string()
                } else {
                    format!("; last pull {t} UTC")
                };
            }
            svg += &format!(
                "<g><title>{}</title><rect class=\"repo\" data-name=\"{}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" \
                 height=\"{h:.1}\" fill=\"{}\" stroke=\"#fff\" stroke-width=\"1\"/>",
                escape(&tip),
                escape(&r.name),
                colour(r)
            );
            // A label where it fits (about 7 pixels a character).
            if w > 40.0 && h > 18.0 {
                let fit = ((w - 8.0) / 7.0) as usize;
                let label: String = if r.name.chars().count() > fit {
                    r.name.chars().take(fit.saturating_sub(1)).chain(std::iter::once('…')).collect()
                } else {
                    r.name.clone()
                };
                svg += &format!(
                    "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#000\">{}</text>",
                    x + 4.0,
                    y + 14.0,
                    escape(&label)
                );
            }
            svg += "</g>\n";
        }
        svg + "</svg>\n"
    }

    /// One self-contained page (no script, font or image from elsewhere): the totals, the
    /// treemap and a table sortable by any column.
    pub fn html(&self, area: Area) -> String {
        let mut rows = String::new();
        for r in &self.repos {
            // With --pulls, the last pull's column: sorted newest first, `none` last.
            let pulled = last_pull_text(r.last_pull).map_or(String::new(), |t| {
                let secs = r
                    .last_pull
                    .flatten()
                    .and_then(|p| p.time().duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                format!("<td data-v=\"{secs}\">{t}</td>")
            });
            rows += &format!(
                "<tr><td>{}</td><td data-v=\"{}\">{}</td><td data-v=\"{}\">{}</td><td data-v=\"{}\">{}</td>\
                 <td data-v=\"{}\">{}</td><td data-v=\"{}\">{}</td><td data-v=\"{}\">{}</td>{pulled}</tr>\n",
                escape(&r.name),
                r.tags,
                r.tags,
                r.manifests,
                r.manifests,
                r.bytes_referenced,
                HumanBytes(r.bytes_referenced),
                r.bytes_unique,
                HumanBytes(r.bytes_unique),
                r.bytes_shared,
                HumanBytes(r.bytes_shared),
                r.bytes_reclaimable,
                HumanBytes(r.bytes_reclaimable)
            );
        }
        let what = match area {
            Area::Referenced => "bytes referenced",
            Area::Unique => "bytes unique",
        };
        let (pull_head, pull_legend) = match &self.pulls {
            None => (String::new(), String::new()),
            Some(p) => {
                let at = |t: Option<std::time::SystemTime>| {
                    t.map_or("none".to_string(), |t| crate::core::pulled::time_text(t).replace('T', " "))
                };
                (
                    "<th>last pull</th>".to_string(),
                    format!(
                        " Last pull (UTC): of any tag or manifest, by the pull record (since {}, last event {}); \
                         none: not pulled since the record began.",
                        at(p.since),
                        at(p.last_event)
                    ),
                )
            }
        };
        format!(
            r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>regsweep du: {root}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; }}
h1 {{ font-size: 20px; }} .totals span {{ margin-right: 24px; }}
table {{ border-collapse: collapse; margin-top: 16px; }}
th, td {{ padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
th {{ cursor: pointer; background: #f4f4f4; }}
.legend {{ font-size: 13px; color: #555; margin: 8px 0; }}
</style></head><body>
<h1>regsweep du: {root}</h1>
<p class="totals"><span>{repositories} repositories</span><span>{total} in blobs</span><span>{unreferenced} referenced by no manifest</span><span>{uploads} in uploads</span><span><b>{reclaimable} reclaimable</b></span></p>
<p class="legend">Area: {what}. Colour: the share a prune with the options given would free, green (none) to red (all). Hover for figures.{pull_legend}</p>
{svg}<table id="repos"><thead><tr><th>repository</th><th>tags</th><th>manifests</th><th>referenced</th><th>unique</th><th>shared</th><th>reclaimable</th>{pull_head}</tr></thead>
<tbody>
{rows}</tbody></table>
<script>
document.querySelectorAll('#repos th').forEach((th, col) => {{
  th.addEventListener('click', () => {{
    const body = document.querySelector('#repos tbody');
    const key = tr => col === 0 ? tr.cells[0].textContent : -Number(tr.cells[col].dataset.v);
    const rows = Array.from(body.rows).sort((a, b) => key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);
    rows.forEach(tr => body.appendChild(tr));
  }});
}});
</script>
</body></html>
"#,
            root = escape(&self.root),
            repositories = self.repositories,
            total = HumanBytes(self.bytes_total),
            unreferenced = HumanBytes(self.bytes_unreferenced),
            uploads = HumanBytes(self.bytes_uploads),
            reclaimable = HumanBytes(self.bytes_reclaimable),
            svg = self.svg(area, 1000, 560),
        )
    }
}
