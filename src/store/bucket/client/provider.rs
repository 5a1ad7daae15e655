//! What one kind of bucket adds to the object store underneath it ([`Provider`]), and the
//! object stores the client takes.

use anyhow::Result;
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path as Key;
use object_store::{ObjectMeta, ObjectStore};

#[cfg(doc)]
use super::retry::NoAnswer;

/// What one kind of bucket adds to the object store underneath it.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    /// Up to how many keys one batched deletion takes; 0 when the provider has none (one
    /// DELETE a key, several in flight).
    fn batch_size(&self) -> usize {
        0
    }

    /// Deletes `keys` (at most [`Provider::batch_size`]) in one request, retried as the
    /// provider needs (see [`Batched`]). A key the answer does not name as deleted is not
    /// deleted.
    async fn delete_batch(&self, _keys: &[Key]) -> Batched {
        Batched::Refused
    }

    /// When the space of deleted objects is freed, where the bucket keeps them (versioning, soft
    /// delete) and its API tells it; `None` when at once, or when it cannot tell.
    async fn freed_later(&self) -> Option<String> {
        None
    }

    /// One page of a listing, where the provider lists itself (Azure: its listing tells each
    /// blob's `Content-MD5`, which object_store's leaves out); `None`: object_store's listing.
    /// A request with no answer fails with [`NoAnswer`] in its chain.
    async fn list_page(&self, _prefix: Option<&str>, _opts: PaginatedListOptions) -> Option<Result<Page>> {
        None
    }
}

/// What became of a batched deletion.
pub enum Batched {
    /// Sent and answered: the keys it did not delete, each with why.
    Sent(Vec<(Key, String)>),
    /// Sent and failed as a whole (after its retries): no key deleted, or none said to be.
    Failed(anyhow::Error),
    /// Refused: the server takes no batch (the keys go one by one, from then on).
    Refused,
}

/// One page of a listing.
pub struct Page {
    pub objects: Vec<Listed>,
    /// The sub-folders, when listed with a delimiter.
    pub prefixes: Vec<Key>,
    /// Where the next page begins; `None` on the last.
    pub token: Option<String>,
}

/// An object as a listing shows it, with the MD5 of its content (hex) where the listing tells
/// it apart from the ETag.
pub struct Listed {
    pub meta: ObjectMeta,
    pub md5: Option<String>,
}

/// An object store that also lists one page at a time (each page one request, counted): every
/// store object_store builds.
pub trait PagedStore: ObjectStore + PaginatedListStore {}

impl<T: ObjectStore + PaginatedListStore> PagedStore for T {}
