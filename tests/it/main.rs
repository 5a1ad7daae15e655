//! The integration tests, one binary (the shared helpers of `common` compile once): each module
//! is one area, against the real parts (the registry, skopeo, podman, S3 servers).

mod common;

mod buckets;
mod cache;
mod check;
mod config;
mod container;
mod du;
mod emulators;
mod gc;
mod generate;
mod hostile;
mod in_use;
mod kubernetes;
mod layers;
mod memory;
mod online;
mod operate;
mod prune;
mod pulls;
mod race;
mod s3;
mod s3race;
mod safety;
mod tagless;
mod trust;
