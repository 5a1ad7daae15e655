//! The bucket's deletions: one key, or many in the provider's batches, tried again and looked
//! at before they are reported failed.

use std::cell::RefCell;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result, anyhow};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as Key;

use super::Bucket;
use super::provider::Batched;
use super::retry::SAID;
use super::watch::{Requests, explain};

impl Bucket {
    /// Deletes one object; none there is fine.
    pub fn delete(&self, rel: &str) -> Result<()> {
        let key = self.key(rel)?;
        self.block_on(self.delete_one(&key))
            .map_err(|e| anyhow!(e))
            .with_context(|| format!("cannot delete {}", self.url(rel)))
    }

    /// Deletes one key, in a call of its own: why it failed.
    async fn delete_one(&self, key: &Key) -> Result<(), String> {
        SAID.scope(RefCell::new(None), async {
            let pass = self.deletions.enter().await.map_err(|why| format!("not sent: {why}"))?;
            Requests::add(&self.requests.delete);
            match self.store.delete(key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => {
                    let e = explain(e);
                    Self::failed(pass, || format!("the deletion of {}", self.url(self.rel(key.as_ref()))), &e);
                    Err(format!("{e:#}"))
                }
            }
        })
        .await
    }

    /// Deletes keys, in the provider's batches (several in flight) or one by one; the keys not
    /// deleted (or not said to be) are tried again twice, then looked at: one a batch's answer
    /// named as failed, or did not name, that is gone was deleted all the same (a server's answer
    /// may say a key failed that it deleted, issue 35); the rest are returned with why.
    pub fn delete_many(&self, rels: &[String]) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        let mut todo: Vec<(Key, &String)> = Vec::new();
        for r in rels {
            match self.key(r) {
                Ok(k) => todo.push((k, r)),
                Err(e) => failed.push((r.clone(), format!("{e:#}"))),
            }
        }
        let mut left: Vec<(Key, &String, NotDeleted)> = Vec::new();
        for _ in 0..3 {
            if todo.is_empty() {
                break;
            }
            let keys: Vec<Key> = todo.iter().map(|(k, _)| k.clone()).collect();
            let not: std::collections::HashMap<Key, NotDeleted> =
                self.block_on(self.delete_round(&keys)).into_iter().collect();
            left = todo.into_iter().filter_map(|(k, r)| not.get(&k).map(|why| (k.clone(), r, why.clone()))).collect();
            todo = left.iter().map(|(k, r, _)| (k.clone(), *r)).collect();
        }
        let gone = self.block_on(self.gone_all_the_same(&left));
        failed.extend(left.into_iter().filter(|(k, _, _)| !gone.contains(k)).map(|(_, r, why)| (r.clone(), why.why)));
        failed
    }

    /// Of keys a batch's answer named as not deleted (or did not name), those a HEAD finds
    /// gone. A key whose HEAD fails stays failed, as does one a whole request failed for (a
    /// server that did not answer is not asked again, key by key).
    async fn gone_all_the_same(&self, left: &[(Key, &String, NotDeleted)]) -> std::collections::HashSet<Key> {
        let heads = left.iter().filter(|(_, _, why)| why.named).map(|(k, _, _)| async move {
            Requests::add(&self.requests.head);
            matches!(self.store.head(k).await, Err(object_store::Error::NotFound { .. })).then(|| k.clone())
        });
        futures::stream::iter(heads).buffer_unordered(32).filter_map(futures::future::ready).collect().await
    }

    /// One round of deletions: the keys not deleted, with why.
    async fn delete_round(&self, keys: &[Key]) -> Vec<(Key, NotDeleted)> {
        let batch = self.provider.batch_size();
        if batch == 0 || !self.batches.load(Ordering::Relaxed) {
            return self.delete_each(keys).await;
        }
        let batches = keys.chunks(batch).map(|c| async move {
            let all = |why: &str| c.iter().map(|k| (k.clone(), NotDeleted::whole(why))).collect();
            let pass = match self.deletions.enter().await {
                Ok(pass) => pass,
                Err(why) => return all(&format!("not sent: {why}")),
            };
            let batched = self.provider.delete_batch(c).await;
            Requests::add(&self.requests.delete_objects);
            match batched {
                Batched::Sent(failed) => {
                    failed.into_iter().map(|(k, why)| (k, NotDeleted { why, named: true })).collect()
                }
                Batched::Failed(e) => {
                    Self::failed(pass, || format!("a batched deletion of {} keys", c.len()), &e);
                    all(&format!("{e:#}"))
                }
                Batched::Refused => {
                    drop(pass);
                    self.batches.store(false, Ordering::Relaxed);
                    self.delete_each(c).await
                }
            }
        });
        futures::stream::iter(batches).buffer_unordered(8).flat_map(futures::stream::iter).collect().await
    }

    /// Deletes keys one DELETE each, several in flight: the keys not deleted, with why.
    async fn delete_each(&self, keys: &[Key]) -> Vec<(Key, NotDeleted)> {
        let each = keys
            .iter()
            .map(|k| async move { self.delete_one(k).await.err().map(|why| (k.clone(), NotDeleted::whole(&why))) });
        futures::stream::iter(each).buffer_unordered(32).filter_map(futures::future::ready).collect().await
    }
}

/// Why a key was not deleted, and whether a batch's answer said so of that key alone (named it
/// failed, or left it out): then the server answered, and the key is looked at before it is
/// reported ([`Bucket::delete_many`]).
#[derive(Clone)]
struct NotDeleted {
    why: String,
    named: bool,
}

impl NotDeleted {
    /// A key whose whole request failed (or was not sent, or was a DELETE of its own).
    fn whole(why: &str) -> NotDeleted {
        NotDeleted { why: why.to_string(), named: false }
    }
}
