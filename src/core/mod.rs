//! The decisions: retention policy, the plan (graph, marking, sweep), the report, progress,
//! and the space a store's repositories use.
//! Pure: it imports only `model` and reads the store only through [`plan::StoreView`].

pub mod plan;
pub mod policy;
pub mod progress;
pub mod report;
pub mod tags;
pub mod treemap;
pub mod usage;
