//! The decisions: retention policy, the intent journal's rules, the plan (graph, marking,
//! sweep), the report, progress, the space a store's repositories use, and a run's figures for
//! monitoring.
//! Pure: it imports only `model` and reads the store only through [`plan::StoreView`] (but
//! [`interrupt`], the process's one flag that a signal asked a run to end).

pub mod in_use;
pub mod interrupt;
pub mod journal_rules;
pub mod metrics;
pub mod plan;
pub mod policy;
pub mod progress;
pub mod pulled;
pub mod report;
pub mod tags;
pub mod treemap;
pub mod usage;
