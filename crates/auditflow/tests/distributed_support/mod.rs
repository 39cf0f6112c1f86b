//! Helpers of `tests/distributed.rs`.

pub mod workload;
