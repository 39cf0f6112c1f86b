//! Prints detection time vs. phi threshold for a member that heartbeats
//! every 200 ms and then stops.
//!
//! ```text
//! cargo run -p resilience --example phi_curve
//! ```
//!
//! Two columns: Akka's defaults (max sample size 1000, min std dev 100 ms,
//! acceptable heartbeat pause 3 s, first-heartbeat estimate 1 s) and the same
//! with no acceptable pause. The history is 1000 perfectly regular 200 ms
//! intervals, so the observed std dev is ~0 and the 100 ms floor applies.

use std::time::Duration;

use resilience::{Clock, ManualClock, PhiAccrualDetector, PhiConfig};

fn detection_time(cfg: &PhiConfig, threshold: f64) -> Duration {
    let clock = ManualClock::new();
    let mut d = PhiAccrualDetector::new(cfg.clone(), clock.shared());
    for _ in 0..1_000 {
        d.heartbeat();
        clock.advance(Duration::from_millis(200));
    }
    d.heartbeat();
    let last = clock.now_nanos();
    loop {
        clock.advance(Duration::from_millis(1));
        if d.phi() >= threshold {
            return Duration::from_nanos(clock.now_nanos() - last);
        }
    }
}

fn main() {
    let akka = PhiConfig::default();
    let no_pause = PhiConfig {
        acceptable_heartbeat_pause: Duration::ZERO,
        ..PhiConfig::default()
    };
    println!("heartbeat interval 200 ms; detection time = time from last heartbeat until phi >= threshold");
    println!("| threshold | Akka defaults (pause 3 s) | pause 0 s |");
    println!("|----------:|--------------------------:|----------:|");
    for t in 1..=12 {
        let t = f64::from(t);
        println!(
            "| {t:>9.0} | {:>25} | {:>9} |",
            format!("{} ms", detection_time(&akka, t).as_millis()),
            format!("{} ms", detection_time(&no_pause, t).as_millis()),
        );
    }
}
