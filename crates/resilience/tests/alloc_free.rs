//! The composed call path performs no heap allocation per call.
//!
//! Allocations are counted per thread, and only on threads that opted in:
//! each measured path runs entirely on its test's thread (current-thread
//! runtime), while libtest's main thread and the other tests allocate
//! concurrently (libtest registers the running test in a `HashMap` after
//! spawning it, which under load lands inside a measured window).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use resilience::{
    BreakerConfig, BreakerState, CircuitBreaker, Policy, PolicyConfig, PolicyError,
    RateLimitConfig, SystemClock,
};

struct Counting;

thread_local! {
    /// Set on a measuring thread. Const-initialised without destructors, so
    /// touching these from the allocator never allocates.
    static COUNT_THIS_THREAD: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    if COUNT_THIS_THREAD.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
    }
}

/// Allocations counted on this thread so far.
fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn composed_policy_call_does_not_allocate() {
    let cfg = PolicyConfig {
        rate_limit: RateLimitConfig {
            enabled: true,
            rate: 1_000_000_000,
            per: Duration::from_secs(1),
            burst: 1_000_000_000,
        },
        ..PolicyConfig::default()
    };
    let policy = Policy::new(cfg).expect("policy"); // every layer enabled
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("rt");
    COUNT_THIS_THREAD.with(|c| c.set(true));
    let (before, after, n) = rt.block_on(async {
        // Warm up lazily initialised state (clock origin, timer wheel, ...).
        for _ in 0..100 {
            let r: Result<u64, PolicyError<std::io::Error>> = policy.call(|| async { Ok(1) }).await;
            assert!(r.is_ok());
        }
        // Sanity: the counter does see allocations.
        let probe_before = allocs();
        let boxed = std::hint::black_box(Box::new(42u64));
        assert!(allocs() > probe_before && *boxed == 42);
        drop(boxed);
        let n = 10_000u64;
        let before = allocs();
        let mut sum = 0;
        for _ in 0..n {
            let r: Result<u64, PolicyError<std::io::Error>> = policy.call(|| async { Ok(1) }).await;
            sum += r.unwrap_or(0);
        }
        let after = allocs();
        assert_eq!(sum, n);
        (before, after, n)
    });
    assert_eq!(
        after - before,
        0,
        "{} allocations over {n} calls",
        after - before
    );
}

#[test]
fn open_breaker_rejection_does_not_allocate() {
    let breaker = CircuitBreaker::new("alloc", BreakerConfig::default(), SystemClock::shared());
    breaker.trip(); // open for 30 s
    COUNT_THIS_THREAD.with(|c| c.set(true));
    // Warm up: clock origin, this thread's counter slot.
    for _ in 0..100 {
        assert!(breaker.try_acquire().is_err());
    }
    let n = 10_000u64;
    let before = allocs();
    for _ in 0..n {
        let rejected = breaker.try_acquire().map(|_| ()).unwrap_err();
        assert_eq!(rejected.state, BreakerState::Open);
    }
    let after = allocs();
    assert_eq!(
        after - before,
        0,
        "{} allocations over {n} rejections",
        after - before
    );
    assert_eq!(breaker.metrics().rejected, n + 100);
}
