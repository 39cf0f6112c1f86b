//! Micro-benchmarks. Run: `cargo bench -p resilience --bench resilience`.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use resilience::{
    BreakerConfig, CircuitBreaker, ManualClock, PhiAccrualDetector, PhiConfig, Policy,
    PolicyConfig, PolicyError, RateLimitConfig, SystemClock,
};

fn breaker(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker");
    let clock = ManualClock::new();
    let closed = CircuitBreaker::new("bench", BreakerConfig::default(), SystemClock::shared());
    g.bench_function("closed_try_acquire", |b| {
        b.iter(|| black_box(closed.try_acquire().is_ok()))
    });
    g.bench_function("closed_acquire_and_record", |b| {
        b.iter(|| {
            if let Ok(p) = closed.try_acquire() {
                p.record_success(black_box(Duration::from_micros(50)));
            }
        })
    });
    let open_manual = CircuitBreaker::new("bench", BreakerConfig::default(), clock.shared());
    open_manual.trip();
    g.bench_function("open_reject_manual_clock", |b| {
        b.iter(|| black_box(open_manual.try_acquire().is_err()))
    });
    let open_sys = CircuitBreaker::new("bench", BreakerConfig::default(), SystemClock::shared());
    open_sys.trip();
    g.bench_function("open_reject_system_clock", |b| {
        b.iter(|| black_box(open_sys.try_acquire().is_err()))
    });
    let forced = CircuitBreaker::new("bench", BreakerConfig::default(), SystemClock::shared());
    forced.force_open();
    g.bench_function("forced_open_reject", |b| {
        b.iter(|| black_box(forced.try_acquire().is_err()))
    });
    g.finish();
}

fn phi(c: &mut Criterion) {
    let mut g = c.benchmark_group("phi");
    let clock = ManualClock::new();
    let mut d = PhiAccrualDetector::new(PhiConfig::default(), clock.shared());
    let mut now = 0u64;
    for _ in 0..2_000 {
        now += 200_000_000;
        d.heartbeat_at(now);
    }
    g.bench_function("heartbeat_record", |b| {
        b.iter(|| {
            now += 200_000_000;
            black_box(d.heartbeat_at(black_box(now)))
        })
    });
    let at = now + 150_000_000;
    g.bench_function("phi_compute", |b| {
        b.iter(|| black_box(d.phi_at(black_box(at))))
    });
    g.finish();
}

fn composed(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let cfg = PolicyConfig {
        rate_limit: RateLimitConfig {
            enabled: true,
            rate: 1_000_000_000,
            per: Duration::from_secs(1),
            burst: 1_000_000_000,
        },
        ..PolicyConfig::default()
    };
    let policy = Policy::new(cfg).expect("policy");
    let mut cx = Context::from_waker(Waker::noop());
    g.bench_function("composed_noop_call", |b| {
        b.iter(|| {
            let fut = pin!(policy.call(|| async { Ok::<u64, std::io::Error>(1) }));
            match fut.poll(&mut cx) {
                Poll::Ready(r) => black_box(r.is_ok()),
                Poll::Pending => unreachable!("no-op call completes on first poll"),
            }
        })
    });
    let bare = Policy::new(PolicyConfig {
        breaker: BreakerConfig {
            enabled: false,
            ..BreakerConfig::default()
        },
        ..PolicyConfig::default()
    })
    .expect("policy");
    g.bench_function("composed_noop_call_block_on", |b| {
        b.iter(|| {
            let r: Result<u64, PolicyError<std::io::Error>> =
                rt.block_on(bare.call(|| async { Ok(1) }));
            black_box(r.is_ok())
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = breaker, phi, composed
}
criterion_main!(benches);
