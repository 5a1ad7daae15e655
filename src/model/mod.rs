//! The data every layer shares: digests, the blob list, manifests, the inventory of a store, the
//! journal's data, a run's outcome. Nothing here reads or writes a store; nothing here imports
//! another layer.

pub mod blobs;
pub mod digest;
pub mod error;
pub mod inventory;
pub mod journal;
pub mod manifest;
pub mod name;
pub mod outcome;
pub mod reference;
pub mod warning;

/// Declares an error that is a message, told apart from others by its type (callers decide
/// on it with `anyhow::Error::is`).
macro_rules! message_error {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name(pub String);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::error::Error for $name {}
    };
}
pub(crate) use message_error;

message_error!(
    /// An error in what the operator asked (a bad pattern, an option that cannot apply): exit 2.
    UsageError
);

message_error!(
    /// A signal ended the run before anything was deleted (see `store::interrupt`): exit 130.
    Interrupted
);

message_error!(
    /// `--stop-container`'s container could not be stopped, or started again: exit 5.
    ContainerStep
);

message_error!(
    /// Another run holds the store's lock: nothing was done (exit 1); try again later.
    LockHeld
);

message_error!(
    /// The run's lock was found no longer its own (taken over, or deleted).
    LockLost
);

message_error!(
    /// `--delete-untagged` refused before anything was done: the store's tags seem to live
    /// elsewhere (`core::plan::tagless`), so it would delete the images the registry serves
    /// (exit 1); `--allow-tagless` overrides it.
    TaglessStore
);

message_error!(
    /// Online `--gc-delete-untagged` refused before anything was done: a manifest named by
    /// `--keep-in-use` exists that no kept tag reaches, and the registry's collector, which knows
    /// nothing of `--keep-in-use`, would delete it (exit 1).
    InUseUntagged
);
