//! The decisions: retention policy, the plan (graph, marking, sweep), the report, progress.
//! Pure: it imports only `model` and reads the store only through [`plan::StoreView`].

pub mod plan;
pub mod policy;
pub mod progress;
pub mod report;
pub mod tags;
