//! Tuning of mimalloc, the process's global allocator (set in `main.rs`).
//!
//! Two options change what a role keeps resident; both are set once, before
//! the first allocation, by [`tune_before_first_allocation`]. The option
//! indexes are those of `mi_option_e` in the mimalloc v3 sources that
//! `libmimalloc-sys` builds by default (it names the neighbours of these
//! two but not these); the tests check them against mimalloc's defaults.

use libmimalloc_sys::{mi_option_set, mi_option_t};

/// `mi_option_arena_eager_commit`: commit arena memory up front (default 2,
/// "on overcommit systems", which Linux is).
pub const MI_OPTION_ARENA_EAGER_COMMIT: mi_option_t = 4;

/// `mi_option_purge_delay`: how long freed pages stay committed before they
/// are returned to the OS, in milliseconds (v3 default 1000; arenas wait
/// `arena_purge_mult` = 10 times as long).
pub const MI_OPTION_PURGE_DELAY: mi_option_t = 15;

/// Sets the allocator options AuditFlow runs with:
///
/// - arena memory is committed on demand, not up front: an idle role's
///   resident set goes from ~35 MB to ~23 MB;
/// - freed pages go back to the OS at once rather than after 1 s (10 s for
///   arena memory). A role's memory under load is mostly short-lived
///   batches (request bodies, a batch of deliveries, its statements); with
///   the delay, the pages of one batch were still resident when the next
///   batch allocated new ones, so the peak counted several batches. Measured
///   with `scripts/bench.py` (2026-12-03): embedded peak RSS 141-161 MB ->
///   123-125 MB, distributed analyze 61 -> 52 MB, with no throughput loss
///   outside the run-to-run noise.
///
/// Both options are read when mimalloc first needs memory, and the Rust
/// runtime allocates before `main`; so `main.rs` calls this from an ELF
/// constructor (the same as `MIMALLOC_ARENA_EAGER_COMMIT=0
/// MIMALLOC_PURGE_DELAY=0` in the environment).
pub fn tune_before_first_allocation() {
    // SAFETY: sets process-wide allocator options; called from a
    // constructor, while the process is still single-threaded.
    unsafe {
        mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libmimalloc_sys::mi_option_get;

    // This test binary does not call `tune_before_first_allocation`, so the
    // options hold mimalloc's defaults: a wrong index would read another
    // option's default (none of the neighbours defaults to 2 or 1000).
    #[test]
    fn the_option_indexes_name_the_options_we_mean() {
        // SAFETY: reads process-wide allocator options.
        unsafe {
            assert_eq!(mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT), 2);
            assert_eq!(mi_option_get(MI_OPTION_PURGE_DELAY), 1000);
        }
    }
}
