//! Behavioural tests: phi-accrual detection, deadline propagation, retry
//! timing under paused tokio time, and the composed policy.

use std::error::Error as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilience::{
    timeout, BreakerState, CallOutcome, Clock, Deadline, Error, ErrorClass, GiveUpReason, Jitter,
    KeyedRateLimiter, ManualClock, MemberStatus, PhiAccrualDetector, PhiConfig, PhiRegistry,
    Policy, PolicyConfig, PolicyError, PolicyObserver, RateLimitConfig, RejectReason, Retry,
    RetryConfig, StateTransition, TokioClock,
};

const HB: Duration = Duration::from_millis(200);

fn warmed_detector(cfg: PhiConfig, clock: &ManualClock, beats: usize) -> PhiAccrualDetector {
    let mut d = PhiAccrualDetector::new(cfg, clock.shared());
    for _ in 0..beats {
        d.heartbeat();
        clock.advance(HB);
    }
    clock.set(clock.now() - HB); // stand exactly at the last heartbeat
    d
}

#[test]
fn phi_stopped_heartbeat_detected_dead_within_2s() {
    let clock = ManualClock::new();
    let cfg = PhiConfig {
        threshold: 8.0,
        acceptable_heartbeat_pause: Duration::ZERO,
        ..PhiConfig::default()
    };
    let mut d = warmed_detector(cfg, &clock, 500);
    assert_eq!(d.evaluate(), None, "healthy while heartbeats flow");
    let mut dead_after = None;
    for ms in (10..=2_000).step_by(10) {
        clock.advance(Duration::from_millis(10));
        if let Some(change) = d.evaluate() {
            if change.to == MemberStatus::Dead {
                dead_after = Some(ms);
                break;
            }
        }
    }
    let ms = dead_after.expect("declared dead within 2 s");
    assert!(ms > 200, "not before one missed interval: {ms} ms");
    println!("dead after {ms} ms");
}

#[test]
fn phi_single_long_pause_within_acceptable_pause_never_dead() {
    let clock = ManualClock::new();
    let cfg = PhiConfig {
        threshold: 8.0,
        acceptable_heartbeat_pause: Duration::from_secs(2),
        ..PhiConfig::default()
    };
    let mut d = warmed_detector(cfg, &clock, 500);
    // 1.5 s pause, observed every 10 ms.
    for _ in 0..150 {
        clock.advance(Duration::from_millis(10));
        assert_ne!(d.status(), MemberStatus::Dead, "phi {}", d.phi());
        assert!(d.evaluate().map(|c| c.to) != Some(MemberStatus::Dead));
    }
    // Heartbeats resume; still never dead.
    for _ in 0..50 {
        d.heartbeat();
        for _ in 0..20 {
            clock.advance(Duration::from_millis(10));
            assert_ne!(d.status(), MemberStatus::Dead);
        }
    }
}

#[test]
fn phi_heartbeat_record_is_o1_and_window_bounded() {
    let clock = ManualClock::new();
    let cfg = PhiConfig {
        max_sample_size: 10,
        ..PhiConfig::default()
    };
    let mut d = PhiAccrualDetector::new(cfg, clock.shared());
    for _ in 0..1_000 {
        d.heartbeat();
        clock.advance(HB);
    }
    // Only the last 10 intervals (all 200 ms) remain: the first-heartbeat
    // seed samples are gone.
    assert!((d.mean_nanos() - 200e6).abs() < 1.0);
    assert!(d.std_dev_nanos() < 1.0);
}

#[test]
fn phi_registry_reports_transitions() {
    let clock = ManualClock::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    let reg = PhiRegistry::new(
        PhiConfig {
            acceptable_heartbeat_pause: Duration::ZERO,
            ..PhiConfig::default()
        },
        clock.shared(),
    )
    .with_listener(move |member: &String, c| {
        if let Ok(mut v) = ev.lock() {
            v.push((member.clone(), c.from, c.to));
        }
    });
    let a = "node-a".to_string();
    let b = "node-b".to_string();
    for _ in 0..50 {
        reg.heartbeat(&a);
        reg.heartbeat(&b);
        clock.advance(HB);
    }
    for _ in 0..300 {
        reg.heartbeat(&a); // b goes silent
        clock.advance(Duration::from_millis(10));
        if clock.now_nanos().is_multiple_of(200_000_000) {
            reg.evaluate();
        }
    }
    reg.evaluate();
    assert_eq!(reg.status(&b), Some(MemberStatus::Dead));
    assert_eq!(reg.status(&a), Some(MemberStatus::Healthy));
    reg.heartbeat(&b);
    let seen: Vec<_> = events.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(
        seen,
        vec![
            (b.clone(), MemberStatus::Healthy, MemberStatus::Suspect),
            (b.clone(), MemberStatus::Suspect, MemberStatus::Dead),
            (b.clone(), MemberStatus::Dead, MemberStatus::Healthy),
        ]
    );
    assert!(reg.remove(&b));
    assert_eq!(reg.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn deadline_propagates_into_inner_calls() {
    let clock = TokioClock::shared();
    let outer = Deadline::after(clock.clone(), Duration::from_millis(300));
    let res = timeout(outer, async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Inner call asks for 1 s but the caller has only ~200 ms left.
        let inner = Deadline::current()
            .expect("propagated")
            .child(Duration::from_secs(1));
        assert_eq!(inner.remaining(), Duration::from_millis(200));
        timeout(inner, tokio::time::sleep(Duration::from_secs(1))).await
    })
    .await;
    assert_eq!(
        res,
        Ok(Err(Error::Timeout {
            after: Duration::from_millis(200)
        }))
    );
    assert!(Deadline::current().is_none(), "scope ends with the future");

    // Policy attempts see min(per_attempt, caller's remaining deadline).
    let mut cfg = PolicyConfig::default();
    cfg.timeout.per_attempt = Duration::from_secs(2);
    let policy = Policy::builder(cfg)
        .clock(clock.clone())
        .build()
        .expect("policy");
    let outer = Deadline::after(clock.clone(), Duration::from_millis(500));
    let seen =
        outer
            .scope(policy.call(|| async {
                Ok::<_, std::io::Error>(Deadline::current().map(|d| d.remaining()))
            }))
            .await
            .expect("ok");
    assert_eq!(seen, Some(Duration::from_millis(500)));
}

#[tokio::test(start_paused = true)]
async fn retry_backs_off_in_paused_time() {
    let clock = TokioClock::shared();
    let retry = Retry::new(
        RetryConfig {
            max_attempts: 4,
            jitter: Jitter::None,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(250),
            max_elapsed: Duration::from_secs(10),
            ..RetryConfig::default()
        },
        clock.clone(),
    );
    let start = tokio::time::Instant::now();
    let attempts = Mutex::new(Vec::new());
    let res: Result<(), _> = retry
        .call(
            |n| {
                if let Ok(mut v) = attempts.lock() {
                    v.push((n, start.elapsed()));
                }
                async { Err::<(), _>("down") }
            },
            |_| ErrorClass::Transient,
        )
        .await;
    let err = res.expect_err("always fails");
    assert_eq!(err.reason(), GiveUpReason::MaxAttempts);
    let seen = attempts.lock().map(|v| v.clone()).unwrap_or_default();
    let ms = |m| Duration::from_millis(m);
    // delays 100, 200, 250 (capped)
    assert_eq!(
        seen,
        vec![(1, ms(0)), (2, ms(100)), (3, ms(300)), (4, ms(550))]
    );
}

#[derive(Debug, thiserror::Error)]
#[error("store said no: {0}")]
struct StoreError(&'static str);

#[derive(Default)]
struct Recorder {
    outcomes: Mutex<Vec<(String, &'static str)>>,
    retries: AtomicU32,
    budget_exhausted: AtomicU32,
    rejections: Mutex<Vec<RejectReason>>,
    transitions: Mutex<Vec<(BreakerState, BreakerState)>>,
}

impl PolicyObserver for Recorder {
    fn on_call(&self, policy: &str, outcome: CallOutcome, _elapsed: Duration) {
        if let Ok(mut v) = self.outcomes.lock() {
            v.push((policy.to_owned(), outcome.as_str()));
        }
    }
    fn on_rejected(&self, _policy: &str, reason: RejectReason) {
        if let Ok(mut v) = self.rejections.lock() {
            v.push(reason);
        }
    }
    fn on_retry(&self, _policy: &str, _attempt: u32, _delay: Duration) {
        self.retries.fetch_add(1, Ordering::SeqCst);
    }
    fn on_budget_exhausted(&self, _policy: &str) {
        self.budget_exhausted.fetch_add(1, Ordering::SeqCst);
    }
    fn on_breaker_transition(&self, _policy: &str, t: &StateTransition) {
        if let Ok(mut v) = self.transitions.lock() {
            v.push((t.from, t.to));
        }
    }
}

fn test_config() -> PolicyConfig {
    let mut cfg = PolicyConfig {
        name: "store".into(),
        ..PolicyConfig::default()
    };
    cfg.retry.initial_backoff = Duration::from_millis(10);
    cfg.retry.jitter = Jitter::None;
    cfg
}

#[tokio::test(start_paused = true)]
async fn policy_preserves_error_cause() {
    let rec = Arc::new(Recorder::default());
    let policy = Policy::builder(test_config())
        .clock(TokioClock::shared())
        .observer(rec.clone())
        .build()
        .expect("policy");
    let calls = AtomicU32::new(0);
    let res: Result<(), PolicyError<StoreError>> = policy
        .call(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(StoreError("disk full")) }
        })
        .await;
    let err = res.expect_err("fails");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "max_attempts");
    let cause = err.source().expect("cause kept");
    assert_eq!(cause.to_string(), "store said no: disk full");
    assert!(cause.downcast_ref::<StoreError>().is_some());
    assert!(matches!(err, PolicyError::Inner(StoreError("disk full"))));
    assert_eq!(rec.retries.load(Ordering::SeqCst), 2);
    let outcomes = rec.outcomes.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(outcomes, vec![("store".to_string(), "failure")]);
}

#[tokio::test(start_paused = true)]
async fn policy_budget_exhaustion_keeps_last_error() {
    let rec = Arc::new(Recorder::default());
    let mut cfg = test_config();
    cfg.retry_budget.ratio = 0.0;
    cfg.retry_budget.min_retries_per_sec = 1;
    cfg.breaker.enabled = false;
    let policy = Policy::builder(cfg)
        .clock(TokioClock::shared())
        .observer(rec.clone())
        .build()
        .expect("policy");
    let n = AtomicU32::new(0);
    let res: Result<(), _> = policy
        .call(|| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            async move { Err(StoreError(if i == 0 { "first" } else { "second" })) }
        })
        .await;
    // One floor token: one retry, then the budget refuses the next.
    let err = res.expect_err("fails");
    assert_eq!(n.load(Ordering::SeqCst), 2);
    assert!(matches!(
        err,
        PolicyError::BudgetExhausted(StoreError("second"))
    ));
    assert_eq!(
        err.source().map(|s| s.to_string()),
        Some("store said no: second".into())
    );
    assert_eq!(rec.budget_exhausted.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn policy_timeouts_trip_breaker_then_reject() {
    let rec = Arc::new(Recorder::default());
    let mut cfg = test_config();
    cfg.timeout.per_attempt = Duration::from_millis(100);
    cfg.retry.max_attempts = 1;
    cfg.breaker.window_size = 4;
    cfg.breaker.minimum_calls = 4;
    let policy = Policy::builder(cfg)
        .clock(TokioClock::shared())
        .observer(rec.clone())
        .build()
        .expect("policy");
    for _ in 0..4 {
        let r: Result<(), PolicyError<StoreError>> = policy
            .call(|| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok(())
            })
            .await;
        assert!(
            matches!(r, Err(PolicyError::Timeout { after }) if after == Duration::from_millis(100))
        );
    }
    assert_eq!(
        policy.breaker().map(|b| b.state()),
        Some(BreakerState::Open)
    );
    let r: Result<(), PolicyError<StoreError>> = policy.call(|| async { Ok(()) }).await;
    match r {
        Err(PolicyError::CircuitOpen { retry_after }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(30)))
        }
        other => panic!("expected CircuitOpen, got {other:?}"),
    }
    assert_eq!(
        rec.transitions
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default(),
        vec![(BreakerState::Closed, BreakerState::Open)]
    );
    assert_eq!(
        rec.rejections.lock().map(|v| v.clone()).unwrap_or_default(),
        vec![RejectReason::CircuitOpen]
    );
    // After the open duration, probes close it again.
    tokio::time::advance(Duration::from_secs(30)).await;
    for _ in 0..5 {
        let r: Result<(), PolicyError<StoreError>> = policy.call(|| async { Ok(()) }).await;
        assert!(r.is_ok());
    }
    assert_eq!(
        policy.breaker().map(|b| b.state()),
        Some(BreakerState::Closed)
    );
}

#[tokio::test(start_paused = true)]
async fn policy_rate_limit_and_bulkhead_reject() {
    let mut cfg = test_config();
    cfg.rate_limit = RateLimitConfig {
        enabled: true,
        rate: 2,
        per: Duration::from_secs(1),
        burst: 2,
    };
    cfg.bulkhead.max_concurrent = 1;
    let policy = Policy::builder(cfg)
        .clock(TokioClock::shared())
        .build()
        .expect("policy");
    let release = Arc::new(tokio::sync::Notify::new());
    let p2 = policy.clone();
    let r2 = release.clone();
    let holder = tokio::spawn(async move {
        p2.call(|| {
            let r = r2.clone();
            async move {
                r.notified().await;
                Ok::<_, StoreError>(())
            }
        })
        .await
    });
    tokio::task::yield_now().await;
    let r = policy.call(|| async { Ok::<_, StoreError>(()) }).await;
    assert!(matches!(r, Err(PolicyError::BulkheadFull)));
    let r = policy.call(|| async { Ok::<_, StoreError>(()) }).await;
    match r {
        Err(e @ PolicyError::RateLimited { .. }) => {
            assert_eq!(e.retry_after(), Some(Duration::from_millis(500)));
            assert!(e.is_rejection());
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    release.notify_one();
    assert!(holder.await.expect("join").is_ok());
    assert_eq!(policy.bulkhead().map(|b| b.rejected()), Some(1));
}

#[test]
fn keyed_rate_limiter_returns_retry_after_per_key() {
    let clock = ManualClock::new();
    let rl = KeyedRateLimiter::new(
        &RateLimitConfig {
            enabled: true,
            rate: 10,
            per: Duration::from_secs(1),
            burst: 2,
        },
        clock.shared(),
    );
    let ip = "192.0.2.1";
    assert!(rl.check(&ip).is_ok());
    assert!(rl.check(&ip).is_ok());
    assert_eq!(rl.check(&ip), Err(Duration::from_millis(100)));
    clock.advance(Duration::from_millis(40));
    assert_eq!(rl.check(&ip), Err(Duration::from_millis(60)));
    assert!(rl.check(&"192.0.2.2").is_ok());
    assert_eq!(rl.len(), 2);
}

#[test]
fn policy_config_round_trips_toml_with_humantime() {
    let cfg = PolicyConfig::default();
    let text = toml::to_string(&cfg).expect("serialize");
    assert!(text.contains("per_attempt = \"2s\""), "{text}");
    let back: PolicyConfig = toml::from_str(&text).expect("parse");
    assert_eq!(back, cfg);
    let empty: PolicyConfig = toml::from_str("").expect("all defaults");
    assert_eq!(empty, cfg);
    assert!(
        toml::from_str::<PolicyConfig>("bogus = 1").is_err(),
        "unknown keys rejected"
    );
    let mut bad = cfg;
    bad.breaker.failure_rate_threshold = 1.5;
    assert!(Policy::new(bad).is_err());
}

#[test]
fn metric_labels_are_stable() {
    assert_eq!(
        CallOutcome::Rejected(RejectReason::BulkheadFull).as_str(),
        "rejected"
    );
    assert_eq!(RejectReason::BulkheadFull.as_str(), "bulkhead_full");
    assert_eq!(BreakerState::HalfOpen.as_str(), "half_open");
}
