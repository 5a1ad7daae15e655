//! The filesystem store: its layout, file access (all the unsafe code), the scan into an
//! inventory, the execution of a plan with its journal and lock, the re-mark of racing pushes,
//! `check`, the generator, the registry's config.

pub mod apply;
pub mod check;
pub mod config;
pub mod fs;
pub mod generate;
pub mod interrupt;
pub mod journal;
pub mod layout;
pub mod remark;
pub mod scan;
