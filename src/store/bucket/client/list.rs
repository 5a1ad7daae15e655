//! The bucket's listings: flat by prefix, page by page (each page a request, counted), a range
//! of one, or one level of folders.

use anyhow::{Context, Result, anyhow, bail};
use object_store::list::PaginatedListOptions;
use object_store::path::Path as Key;

use super::provider::{Listed, Page};
use super::watch::{Requests, explain};
use super::{Bucket, Obj};

/// The most keys a page of a listing holds by default (S3's and GCS's; Azure's 5,000).
const FULL_PAGE: usize = 1000;

impl Bucket {
    /// One listing, page by page (each page a request): the objects whose keys begin with
    /// `prefix` (the whole bucket for none) and sort after `offset` and before `until` (full
    /// keys), sorted, and with `folders` the sub-folders, one level. A store that takes no
    /// offset (Azure's) lists from the start of the prefix, and what sorts before is left out
    /// here.
    async fn listing(
        &self,
        prefix: Option<String>,
        offset: Option<String>,
        until: Option<&str>,
        folders: bool,
    ) -> Result<(Vec<Listed>, Vec<Key>)> {
        let (mut objects, mut prefixes) = (Vec::new(), Vec::new());
        let mut token = None;
        // Set to the last key of a last page as full as a page goes: the next request asks for
        // what comes after it, to make sure the listing ended.
        let mut check: Option<String> = None;
        loop {
            let sent = token.take();
            let opts = PaginatedListOptions {
                offset: check.clone().or_else(|| offset.clone()),
                delimiter: folders.then(|| "/".into()),
                page_token: sent.clone(),
                ..PaginatedListOptions::default()
            };
            let pass = self.lists.enter().await.map_err(|why| anyhow!("not sent: {why}"))?;
            Requests::add(&self.requests.list);
            let page = match self.provider.list_page(prefix.as_deref(), opts.clone()).await {
                Some(page) => page,
                None => self.store.list_paginated(prefix.as_deref(), opts).await.map_err(explain).map(|page| {
                    let objects = page.result.objects.into_iter().map(|meta| Listed { meta, md5: None }).collect();
                    Page { objects, prefixes: page.result.common_prefixes, token: page.page_token }
                }),
            };
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    let shown =
                        || format!("a listing of {}", self.url(self.rel(prefix.as_deref().unwrap_or_default())));
                    Self::failed(pass, shown, &e);
                    return Err(e);
                }
            };
            drop(pass);
            let shown = || self.url(self.rel(prefix.as_deref().unwrap_or_default()));
            if let Some(last) = &check {
                let after = |k: &str| k > last.as_str();
                if page.objects.iter().any(|l| after(l.meta.location.as_ref()))
                    || page.prefixes.iter().any(|p| after(p.as_ref()))
                {
                    bail!(
                        "the listing of {} ended after {} keys with more after them: the server does not page \
                         its listings as asked (S3's ListObjectsV2, list-type=2), or they were written just then \
                         (run again)",
                        shown(),
                        objects.len() + prefixes.len()
                    );
                }
                break;
            }
            let full = page.objects.len() + page.prefixes.len() >= FULL_PAGE;
            let last =
                [page.objects.last().map(|l| l.meta.location.to_string()), page.prefixes.last().map(|p| p.to_string())]
                    .into_iter()
                    .flatten()
                    .max();
            objects.extend(page.objects);
            prefixes.extend(page.prefixes);
            let past = until.is_some_and(|u| objects.last().is_some_and(|l: &Listed| l.meta.location.as_ref() >= u));
            match page.token {
                // A server that answers a page with the token it was sent would be asked forever.
                Some(t) if Some(&t) == sent.as_ref() => bail!(
                    "the server answered a page of the listing of {} with the token it was sent ({t}): it lists in \
                     a circle",
                    shown()
                ),
                Some(t) if !past => token = Some(t),
                // A last page as full as a page goes, from a server that may say "truncated" in
                // a way object_store does not read (ListObjects v1's IsTruncated, no token).
                None if !past && full => check = last,
                _ => break,
            }
        }
        // A key a server lists twice (pages that overlap) is one key.
        objects.sort_by(|a, b| a.meta.location.cmp(&b.meta.location));
        objects.dedup_by(|a, b| a.meta.location == b.meta.location);
        prefixes.sort();
        prefixes.dedup();
        if let Some(u) = until {
            objects.retain(|l| l.meta.location.as_ref() < u);
        }
        if let Some(o) = &offset {
            objects.retain(|l| l.meta.location.as_ref() > o.as_str());
        }
        Ok((objects, prefixes))
    }

    /// Every object under `prefix` (a folder of the store, relative to `docker/registry/v2/`),
    /// flat, sorted by key.
    pub fn list(&self, prefix: &str) -> Result<Vec<Obj>> {
        let key = self.key(prefix)?;
        let (found, _) = self
            .block_on(async { self.listing(Some(format!("{key}/")), None, None, false).await })
            .with_context(|| format!("cannot list {}", self.url(prefix)))?;
        Ok(found.into_iter().map(|l| self.listed(l)).collect())
    }

    /// Every object under the folder `prefix` whose name there begins with `start` (a range
    /// of a listing split for parallel requests, by a prefix every store takes).
    pub fn list_beginning(&self, prefix: &str, start: &str) -> Result<Vec<Obj>> {
        let key = self.key(prefix)?;
        let (found, _) = self
            .block_on(async { self.listing(Some(format!("{key}/{start}")), None, None, false).await })
            .with_context(|| format!("cannot list {}", self.url(&format!("{prefix}/{start}"))))?;
        Ok(found.into_iter().map(|l| self.listed(l)).collect())
    }

    /// The objects under `prefix` whose keys sort after `prefix/after` and before `prefix/until`
    /// (to the end without it): one range of a listing split for parallel requests.
    pub fn list_range(&self, prefix: &str, after: &str, until: Option<&str>) -> Result<Vec<Obj>> {
        let (key, offset) = (self.key(prefix)?, self.key(&format!("{prefix}/{after}"))?);
        let end = until.map(|u| format!("{}/{u}", key.as_ref()));
        let (found, _) = self
            .block_on(async {
                let offset = Some(offset.as_ref().to_string());
                self.listing(Some(format!("{key}/")), offset, end.as_deref(), false).await
            })
            .with_context(|| format!("cannot list {}", self.url(prefix)))?;
        Ok(found.into_iter().map(|l| self.listed(l)).collect())
    }

    /// The sub-folders of `prefix` (their names) and the objects right in it: one level.
    pub fn folders(&self, prefix: &str) -> Result<(Vec<String>, Vec<Obj>)> {
        let key = self.key(prefix)?;
        let (objects, prefixes) = self
            .block_on(async { self.listing(Some(format!("{key}/")), None, None, true).await })
            .with_context(|| format!("cannot list {}", self.url(prefix)))?;
        let names = prefixes.iter().filter_map(|p| p.filename().map(String::from)).collect();
        Ok((names, objects.into_iter().map(|l| self.listed(l)).collect()))
    }

    /// The folders at the top of the bucket, outside the store (for an error message).
    pub fn top_folders(&self) -> Result<Vec<String>> {
        let (_, prefixes) = self.block_on(async { self.listing(None, None, None, true).await })?;
        Ok(prefixes.iter().map(|p| format!("{}/", p.as_ref())).collect())
    }
}
