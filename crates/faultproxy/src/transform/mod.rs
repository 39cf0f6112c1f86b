//! The per-chunk transforms of each fault, as small pure pieces the pipe uses.

pub(crate) mod bandwidth;
pub(crate) mod latency;
pub(crate) mod limit;
pub(crate) mod slicer;
