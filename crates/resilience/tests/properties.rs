//! Property tests of the state machines against simple reference models.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use resilience::{
    BreakerConfig, BreakerState, BudgetConfig, Bulkhead, BulkheadConfig, CircuitBreaker,
    ErrorClass, GiveUpReason, Jitter, ManualClock, Permit, Policy, PolicyConfig, PolicyError,
    RetryBudget, RetryConfig, RetryDecision, RetryState, TokioClock, WindowKind,
};

// ---------------------------------------------------------------- breaker

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Acquire,
    Success(usize, bool),
    Failure(usize, bool),
    Drop(usize),
    ForceOpen,
    Reset,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..4_000).prop_map(Op::Advance),
        6 => Just(Op::Acquire),
        4 => (any::<usize>(), prop::bool::weighted(0.2)).prop_map(|(i, s)| Op::Success(i, s)),
        4 => (any::<usize>(), prop::bool::weighted(0.2)).prop_map(|(i, s)| Op::Failure(i, s)),
        1 => any::<usize>().prop_map(Op::Drop),
        1 => prop_oneof![Just(Op::ForceOpen), Just(Op::Reset)],
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum MState {
    Closed,
    Open,
    HalfOpen,
    ForcedOpen,
}

/// Straightforward reference model of the breaker.
struct Model {
    cfg: BreakerConfig,
    state: MState,
    gen: u64,
    window: VecDeque<(u64, bool, bool)>,
    consecutive_opens: u32,
    open_until: u64,
    probes_left: u32,
    probe_successes: u32,
}

const SEC: u64 = 1_000_000_000;

impl Model {
    fn new(cfg: BreakerConfig) -> Self {
        Model {
            cfg,
            state: MState::Closed,
            gen: 0,
            window: VecDeque::new(),
            consecutive_opens: 0,
            open_until: 0,
            probes_left: 0,
            probe_successes: 0,
        }
    }

    fn go(&mut self, to: MState, now: u64) {
        self.gen += 1;
        self.window.clear();
        match to {
            MState::Open => {
                self.consecutive_opens += 1;
                // base 1s, multiplier 2, max 5s
                let d = (SEC << (self.consecutive_opens - 1).min(10)).min(5 * SEC);
                self.open_until = now + d;
            }
            MState::HalfOpen => {
                self.probes_left = self.cfg.half_open_probes;
                self.probe_successes = 0;
            }
            MState::Closed => self.consecutive_opens = 0,
            MState::ForcedOpen => {}
        }
        self.state = to;
    }

    /// Some((gen, was_half_open)) if admitted.
    fn acquire(&mut self, now: u64) -> Option<(u64, bool)> {
        if self.state == MState::Open && now >= self.open_until {
            self.go(MState::HalfOpen, now);
        }
        match self.state {
            MState::Closed => Some((self.gen, false)),
            MState::HalfOpen if self.probes_left > 0 => {
                self.probes_left -= 1;
                Some((self.gen, true))
            }
            _ => None,
        }
    }

    fn snapshot(&self, now: u64) -> (u64, u64, u64) {
        let entries: Vec<_> = match self.cfg.window {
            WindowKind::Count => self.window.iter().copied().collect(),
            WindowKind::Time => {
                let bucket = self.cfg.window_duration.as_nanos() as u64 / 10;
                let cur = now / bucket + 1;
                self.window
                    .iter()
                    .copied()
                    .filter(|(t, _, _)| {
                        let e = t / bucket + 1;
                        e + 9 >= cur && e <= cur
                    })
                    .collect()
            }
        };
        let calls = entries.len() as u64;
        let fails = entries.iter().filter(|e| e.1).count() as u64;
        let slow = entries.iter().filter(|e| e.2).count() as u64;
        (calls, fails, slow)
    }

    fn outcome(&mut self, permit: (u64, bool), failed: bool, slow: bool, now: u64) {
        if permit.0 != self.gen {
            return;
        }
        match self.state {
            MState::Closed => {
                self.window.push_back((now, failed, slow));
                if self.cfg.window == WindowKind::Count
                    && self.window.len() > self.cfg.window_size as usize
                {
                    self.window.pop_front();
                }
                let (calls, fails, slows) = self.snapshot(now);
                if calls >= u64::from(self.cfg.minimum_calls)
                    && (fails as f64 / calls as f64 >= self.cfg.failure_rate_threshold
                        || slows as f64 / calls as f64 >= self.cfg.slow_call_rate_threshold)
                {
                    self.go(MState::Open, now);
                }
            }
            MState::HalfOpen => {
                if failed || slow {
                    self.go(MState::Open, now);
                } else {
                    self.probe_successes += 1;
                    if self.probe_successes >= self.cfg.half_open_successes {
                        self.go(MState::Closed, now);
                    }
                }
            }
            _ => {}
        }
    }

    fn dropped(&mut self, permit: (u64, bool)) {
        if permit.1 && permit.0 == self.gen && self.state == MState::HalfOpen {
            self.probes_left += 1;
        }
    }
}

fn to_model(s: BreakerState) -> MState {
    match s {
        BreakerState::Closed => MState::Closed,
        BreakerState::Open => MState::Open,
        BreakerState::HalfOpen => MState::HalfOpen,
        BreakerState::ForcedOpen => MState::ForcedOpen,
        BreakerState::Disabled => panic!("not generated"),
    }
}

fn breaker_cfg() -> impl Strategy<Value = BreakerConfig> {
    (
        prop_oneof![Just(WindowKind::Count), Just(WindowKind::Time)],
        1u32..12,
        1u32..10,
        prop_oneof![Just(0.25), Just(0.5), Just(1.0)],
        prop_oneof![Just(0.5), Just(1.0), Just(2.0)],
        1u32..5,
        1u32..5,
    )
        .prop_map(
            |(window, size, min_calls, fr, sr, probes, succ)| BreakerConfig {
                window,
                window_size: size,
                window_duration: Duration::from_secs(10),
                minimum_calls: min_calls,
                failure_rate_threshold: fr,
                slow_call_rate_threshold: sr,
                slow_call_duration: Duration::from_secs(1),
                open_duration: Duration::from_secs(1),
                open_duration_multiplier: 2.0,
                max_open_duration: Duration::from_secs(5),
                half_open_probes: probes,
                half_open_successes: succ.min(probes),
                ..BreakerConfig::default()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The breaker agrees with the reference model on every admission
    /// decision and state, and never has more than `half_open_probes`
    /// probes outstanding.
    #[test]
    fn breaker_matches_model(cfg in breaker_cfg(), ops in prop::collection::vec(op(), 1..300)) {
        let clock = ManualClock::new();
        let breaker = CircuitBreaker::new("prop", cfg.clone(), clock.shared());
        let mut model = Model::new(cfg.clone());
        let mut held: Vec<(Permit<'_>, (u64, bool))> = Vec::new();
        for op in ops {
            let now = clock.now_nanos_for_test();
            match op {
                Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                Op::Acquire => {
                    let real = breaker.try_acquire();
                    let expected = model.acquire(now);
                    prop_assert_eq!(real.is_ok(), expected.is_some(), "admission differs");
                    if let (Ok(p), Some(m)) = (real, expected) {
                        prop_assert_eq!(p.is_probe(), m.1);
                        held.push((p, m));
                    }
                }
                Op::Success(i, slow) | Op::Failure(i, slow) if !held.is_empty() => {
                    let failed = matches!(op, Op::Failure(..));
                    let (p, m) = held.swap_remove(i % held.len());
                    let d = if slow { Duration::from_secs(2) } else { Duration::from_millis(5) };
                    if failed { p.record_failure(d) } else { p.record_success(d) }
                    model.outcome(m, failed, slow, now);
                }
                Op::Drop(i) if !held.is_empty() => {
                    let (p, m) = held.swap_remove(i % held.len());
                    drop(p);
                    model.dropped(m);
                }
                Op::ForceOpen => {
                    breaker.force_open();
                    model.go(MState::ForcedOpen, now);
                }
                Op::Reset => {
                    breaker.reset();
                    model.go(MState::Closed, now);
                }
                _ => {}
            }
            prop_assert_eq!(to_model(breaker.state()), model.state);
            let probes_out = held.iter().filter(|(_, m)| m.1 && m.0 == model.gen).count();
            prop_assert!(probes_out <= cfg.half_open_probes as usize);
            if model.state == MState::Closed {
                let snap = breaker.metrics().window;
                let (c, f, s) = model.snapshot(clock.now_nanos_for_test());
                prop_assert_eq!((snap.calls, snap.failures, snap.slow), (c, f, s));
            }
        }
    }
}

trait NowForTest {
    fn now_nanos_for_test(&self) -> u64;
}

impl NowForTest for ManualClock {
    fn now_nanos_for_test(&self) -> u64 {
        use resilience::Clock;
        self.now_nanos()
    }
}

/// Many threads racing for half-open probes never hold more than allowed.
#[test]
fn half_open_probes_bounded_under_contention() {
    let clock = ManualClock::new();
    let probes = 3;
    let breaker = Arc::new(CircuitBreaker::new(
        "race",
        BreakerConfig {
            half_open_probes: probes,
            half_open_successes: probes,
            open_duration: Duration::from_secs(1),
            ..BreakerConfig::default()
        },
        clock.shared(),
    ));
    for _round in 0..50 {
        breaker.trip();
        clock.advance(Duration::from_secs(1000));
        let holding = Arc::new(AtomicU32::new(0));
        let max_seen = Arc::new(AtomicU32::new(0));
        let admitted = Arc::new(AtomicU32::new(0));
        std::thread::scope(|s| {
            for _ in 0..4 {
                let (b, h, m, a) = (&breaker, &holding, &max_seen, &admitted);
                s.spawn(move || {
                    for _ in 0..200 {
                        if let Ok(p) = b.try_acquire() {
                            a.fetch_add(1, Ordering::SeqCst);
                            let now = h.fetch_add(1, Ordering::SeqCst) + 1;
                            m.fetch_max(now, Ordering::SeqCst);
                            std::hint::spin_loop();
                            h.fetch_sub(1, Ordering::SeqCst);
                            drop(p); // returned unrecorded
                        }
                    }
                });
            }
        });
        assert!(max_seen.load(Ordering::SeqCst) <= probes);
        assert!(admitted.load(Ordering::SeqCst) >= 1);
    }
}

// ---------------------------------------------------------------- retry

fn retry_cfg() -> impl Strategy<Value = RetryConfig> {
    (
        1u32..8,
        0u64..3_000,
        1u64..200,
        prop_oneof![
            Just(Jitter::None),
            Just(Jitter::Full),
            Just(Jitter::Decorrelated)
        ],
    )
        .prop_map(|(attempts, elapsed_ms, base_ms, jitter)| RetryConfig {
            enabled: true,
            max_attempts: attempts,
            max_elapsed: Duration::from_millis(elapsed_ms),
            initial_backoff: Duration::from_millis(base_ms),
            max_backoff: Duration::from_millis(base_ms * 8),
            multiplier: 2.0,
            jitter,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Over many logical calls sharing a budget: attempts never exceed
    /// max_attempts, no attempt starts at/after max_elapsed, a permanent
    /// error is never retried, and total retries stay within the budget.
    #[test]
    fn retries_respect_limits_and_budget(
        cfg in retry_cfg(),
        ratio in prop_oneof![Just(0.0), Just(0.1), Just(0.2), Just(0.5)],
        floor in 0u32..3,
        calls in prop::collection::vec((prop::collection::vec((0u64..400, prop::bool::weighted(0.9)), 1..10), 0u64..2_000), 1..60),
        seed in any::<u64>(),
    ) {
        let clock = ManualClock::new();
        let budget = RetryBudget::new(
            BudgetConfig { enabled: true, ratio, min_retries_per_sec: floor, max_tokens: 1_000 },
            clock.shared(),
        );
        let mut total_retries = 0u64;
        for (i, (attempts, gap_ms)) in calls.iter().enumerate() {
            clock.advance(Duration::from_millis(*gap_ms));
            budget.deposit();
            let start = clock.now_nanos_for_test();
            let mut st = RetryState::new(&cfg, start, seed ^ i as u64);
            let mut made = 1u32;
            for (took_ms, retryable) in attempts {
                clock.advance(Duration::from_millis(*took_ms));
                let now = clock.now_nanos_for_test();
                match st.on_failure(now, *retryable, Some(&budget)) {
                    RetryDecision::Retry { delay, attempt } => {
                        prop_assert!(*retryable, "permanent error retried");
                        made += 1;
                        prop_assert_eq!(attempt, made);
                        prop_assert!(made <= cfg.max_attempts);
                        prop_assert!(delay <= cfg.max_backoff);
                        clock.advance(delay);
                        let attempt_start = clock.now_nanos_for_test();
                        prop_assert!(attempt_start - start < cfg.max_elapsed.as_nanos() as u64);
                        total_retries += 1;
                    }
                    RetryDecision::GiveUp(reason) => {
                        if !*retryable {
                            prop_assert_eq!(reason, GiveUpReason::NotRetryable);
                        }
                        if reason == GiveUpReason::MaxAttempts {
                            prop_assert_eq!(made, cfg.max_attempts);
                        }
                        break;
                    }
                }
            }
        }
        let elapsed = Duration::from_nanos(clock.now_nanos_for_test());
        let bound = budget.max_retries_for(calls.len() as u64, elapsed);
        prop_assert!(total_retries as f64 <= bound + 1e-9, "{} retries > bound {}", total_retries, bound);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Through the composed policy (paused tokio time): permanent errors are
    /// tried exactly once; transient ones at most max_attempts times.
    #[test]
    fn policy_never_retries_permanent(permanent_at in 0usize..5, max_attempts in 1u32..6) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("rt");
        rt.block_on(async {
            let mut cfg = PolicyConfig::default();
            cfg.retry.max_attempts = max_attempts;
            cfg.retry.initial_backoff = Duration::from_millis(10);
            cfg.retry_budget.enabled = false;
            cfg.breaker.enabled = false;
            let policy = Policy::builder(cfg).clock(TokioClock::shared()).build().expect("policy");
            let calls = AtomicUsize::new(0);
            let res: Result<(), PolicyError<std::io::Error>> = policy
                .call_classified(
                    || {
                        let n = calls.fetch_add(1, Ordering::SeqCst);
                        let kind = if n == permanent_at { std::io::ErrorKind::InvalidData } else { std::io::ErrorKind::TimedOut };
                        async move { Err(std::io::Error::from(kind)) }
                    },
                    |e| if e.kind() == std::io::ErrorKind::InvalidData { ErrorClass::Permanent } else { ErrorClass::Transient },
                )
                .await;
            let n = calls.load(Ordering::SeqCst);
            prop_assert!(n <= max_attempts as usize);
            if permanent_at < max_attempts as usize {
                prop_assert_eq!(n, permanent_at + 1, "stopped at the permanent error");
                let is_permanent = matches!(&res, Err(PolicyError::Inner(e)) if e.kind() == std::io::ErrorKind::InvalidData);
                prop_assert!(is_permanent);
            } else {
                prop_assert_eq!(n, max_attempts as usize);
            }
            Ok(())
        })?;
    }
}

// ---------------------------------------------------------------- bulkhead

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Concurrent tasks never exceed the bulkhead limit; every task is either
    /// admitted or counted as rejected.
    #[test]
    fn bulkhead_never_exceeds_limit(limit in 1u32..6, tasks in 1usize..40, wait_ms in 0u64..30, hold in prop::collection::vec(0u64..20, 40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("rt");
        let (admitted, rejected, max_seen) = rt.block_on(async {
            let bh = Arc::new(Bulkhead::new(BulkheadConfig { enabled: true, max_concurrent: limit, max_wait: Duration::from_millis(wait_ms) }));
            let in_flight = Arc::new(AtomicU32::new(0));
            let max_seen = Arc::new(AtomicU32::new(0));
            let admitted = Arc::new(AtomicU32::new(0));
            let mut handles = Vec::new();
            for i in 0..tasks {
                let (bh, f, m, a) = (bh.clone(), in_flight.clone(), max_seen.clone(), admitted.clone());
                let hold = Duration::from_millis(hold[i % hold.len()]);
                handles.push(tokio::spawn(async move {
                    if let Ok(_slot) = bh.acquire().await {
                        a.fetch_add(1, Ordering::SeqCst);
                        let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                        m.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(hold).await;
                        tokio::task::yield_now().await;
                        f.fetch_sub(1, Ordering::SeqCst);
                    }
                }));
            }
            for h in handles {
                h.await.expect("task");
            }
            (admitted.load(Ordering::SeqCst), bh.rejected(), max_seen.load(Ordering::SeqCst))
        });
        prop_assert!(max_seen <= limit);
        prop_assert_eq!(u64::from(admitted) + rejected, tasks as u64);
    }
}

/// Same invariant on a multi-threaded runtime with real parallelism.
#[test]
fn bulkhead_limit_holds_multithreaded() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("rt");
    rt.block_on(async {
        let limit = 4;
        let bh = Arc::new(Bulkhead::new(BulkheadConfig {
            enabled: true,
            max_concurrent: limit,
            max_wait: Duration::from_secs(5),
        }));
        let in_flight = Arc::new(AtomicU32::new(0));
        let max_seen = Arc::new(AtomicU32::new(0));
        let mut handles = Vec::new();
        for _ in 0..64 {
            let (bh, f, m) = (bh.clone(), in_flight.clone(), max_seen.clone());
            handles.push(tokio::spawn(async move {
                let _slot = bh.acquire().await.expect("waits for a slot");
                let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                for _ in 0..10 {
                    tokio::task::yield_now().await;
                }
                f.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for h in handles {
            h.await.expect("task");
        }
        assert!(max_seen.load(Ordering::SeqCst) <= limit);
        assert_eq!(max_seen.load(Ordering::SeqCst), limit, "limit was reached");
        assert_eq!(bh.rejected(), 0);
    });
}
