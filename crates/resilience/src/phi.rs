//! Phi-accrual failure detection (Hayashibara et al., 2004), following
//! Akka's `PhiAccrualFailureDetector`.
//!
//! `phi = -log10(1 - F(t))`, where `t` is the time since the last heartbeat
//! and `F` is the CDF of a normal distribution whose mean and standard
//! deviation are those of the recent heartbeat intervals, with
//! `acceptable_heartbeat_pause` added to the mean and the deviation floored
//! at `min_std_dev`.
//!
//! * **CDF**: Akka's logistic approximation of the normal CDF,
//!   `F(y) ≈ 1 / (1 + exp(-y (1.5976 + 0.070566 y²)))` (max error ≈ 1.4e-4),
//!   evaluated in the numerically safe form Akka uses for each tail.
//! * **O(1) per heartbeat**: intervals live in a fixed ring buffer
//!   (allocated once, `max_sample_size` long) with running integer sums of
//!   intervals and squared intervals (`u128`, exact, no floating drift).
//! * As in Akka, the first heartbeat seeds the history with
//!   `first_heartbeat_estimate ± estimate/4`, and an interval arriving while
//!   the member is already considered dead (phi ≥ threshold) is not recorded.
//!
//! Defaults are Akka's: threshold 8.0, max sample size 1000, min std dev
//! 100 ms, acceptable pause 3 s, first heartbeat estimate 1 s; plus a
//! suspect threshold of 5.0.
//!
//! ```
//! use resilience::{ManualClock, MemberStatus, PhiAccrualDetector, PhiConfig};
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let cfg = PhiConfig { acceptable_heartbeat_pause: Duration::ZERO, ..PhiConfig::default() };
//! let mut d = PhiAccrualDetector::new(cfg, clock.shared());
//! for _ in 0..100 {
//!     d.heartbeat();
//!     clock.advance(Duration::from_millis(200));
//! }
//! assert_eq!(d.status(), MemberStatus::Healthy);
//! clock.advance(Duration::from_secs(2));
//! assert_eq!(d.status(), MemberStatus::Dead);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{duration_nanos, SharedClock};

/// Phi-accrual detector configuration (defaults = Akka's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhiConfig {
    /// Phi at or above which a member is [`MemberStatus::Dead`]. Default `8.0`.
    pub threshold: f64,
    /// Phi at or above which a member is [`MemberStatus::Suspect`]. Default `5.0`.
    pub suspect_threshold: f64,
    /// Heartbeat intervals kept. Default `1000`.
    pub max_sample_size: u32,
    /// Floor on the interval standard deviation. Default `100ms`.
    #[serde(with = "humantime_serde")]
    pub min_std_dev: Duration,
    /// Added to the mean interval (tolerated GC pauses, network blips).
    /// Default `3s`.
    #[serde(with = "humantime_serde")]
    pub acceptable_heartbeat_pause: Duration,
    /// Assumed interval before real ones are known. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub first_heartbeat_estimate: Duration,
}

impl Default for PhiConfig {
    fn default() -> Self {
        PhiConfig {
            threshold: 8.0,
            suspect_threshold: 5.0,
            max_sample_size: 1000,
            min_std_dev: Duration::from_millis(100),
            acceptable_heartbeat_pause: Duration::from_secs(3),
            first_heartbeat_estimate: Duration::from_secs(1),
        }
    }
}

/// Health of a monitored member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberStatus {
    /// phi below the suspect threshold (or no heartbeat yet).
    Healthy,
    /// suspect threshold ≤ phi < threshold.
    Suspect,
    /// phi ≥ threshold.
    Dead,
}

impl MemberStatus {
    /// Stable lower-case label.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Healthy => "healthy",
            MemberStatus::Suspect => "suspect",
            MemberStatus::Dead => "dead",
        }
    }
}

/// A change of [`MemberStatus`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatusChange {
    /// Previous status.
    pub from: MemberStatus,
    /// New status.
    pub to: MemberStatus,
    /// Phi when the change was observed (0 for a heartbeat-driven recovery).
    pub phi: f64,
    /// Clock time of the change, in nanoseconds.
    pub at_nanos: u64,
}

/// Phi for `elapsed` given the (adjusted) mean and std dev, using Akka's
/// logistic approximation of the normal CDF.
#[inline]
pub fn phi_of(elapsed: f64, mean: f64, std_dev: f64) -> f64 {
    let y = (elapsed - mean) / std_dev;
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    if elapsed > mean {
        -(e / (1.0 + e)).log10()
    } else {
        -(1.0 - 1.0 / (1.0 + e)).log10()
    }
}

/// One member's detector. Not internally synchronised (`&mut self` to
/// record); see [`PhiRegistry`] for a shared, keyed set.
pub struct PhiAccrualDetector {
    config: PhiConfig,
    clock: SharedClock,
    ring: Box<[u64]>,
    head: usize,
    len: usize,
    sum: u128,
    sum_sq: u128,
    last: Option<u64>,
    status: MemberStatus,
    min_std: f64,
    pause: f64,
}

impl fmt::Debug for PhiAccrualDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhiAccrualDetector")
            .field("samples", &self.len)
            .field("mean_nanos", &self.mean_nanos())
            .field("std_dev_nanos", &self.std_dev_nanos())
            .field("status", &self.status)
            .finish()
    }
}

impl PhiAccrualDetector {
    /// A detector with no heartbeats yet.
    pub fn new(config: PhiConfig, clock: SharedClock) -> Self {
        let cap = config.max_sample_size.max(2) as usize;
        PhiAccrualDetector {
            min_std: duration_nanos(config.min_std_dev).max(1) as f64,
            pause: duration_nanos(config.acceptable_heartbeat_pause) as f64,
            config,
            clock,
            ring: vec![0; cap].into_boxed_slice(),
            head: 0,
            len: 0,
            sum: 0,
            sum_sq: 0,
            last: None,
            status: MemberStatus::Healthy,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PhiConfig {
        &self.config
    }

    fn push(&mut self, interval: u64) {
        if self.len == self.ring.len() {
            let old = u128::from(self.ring[self.head]);
            self.sum -= old;
            self.sum_sq -= old * old;
        } else {
            self.len += 1;
        }
        self.ring[self.head] = interval;
        self.head = (self.head + 1) % self.ring.len();
        let v = u128::from(interval);
        self.sum += v;
        self.sum_sq += v * v;
    }

    /// Mean of the recorded intervals in nanoseconds (without the pause).
    pub fn mean_nanos(&self) -> f64 {
        if self.len == 0 {
            0.0
        } else {
            self.sum as f64 / self.len as f64
        }
    }

    /// Standard deviation of the recorded intervals in nanoseconds
    /// (population, before the `min_std_dev` floor).
    pub fn std_dev_nanos(&self) -> f64 {
        if self.len == 0 {
            return 0.0;
        }
        let n = self.len as u128;
        // n·Σx² − (Σx)² is exact in u128 for intervals up to ~10^13 ns with
        // 1000 samples; fall back to f64 beyond that.
        let var = match (n.checked_mul(self.sum_sq), self.sum.checked_mul(self.sum)) {
            (Some(a), Some(b)) => a.saturating_sub(b) as f64 / (n * n) as f64,
            _ => {
                let mean = self.sum as f64 / n as f64;
                (self.sum_sq as f64 / n as f64 - mean * mean).max(0.0)
            }
        };
        var.sqrt()
    }

    /// Akka's `isAvailable` check for an arriving heartbeat: is phi for this
    /// interval below the threshold? Fast path: an interval no longer than
    /// the adjusted mean has phi ≤ log10(2), so no `exp`/`log10` is needed.
    #[inline]
    fn accepts_interval(&self, interval: u64) -> bool {
        let elapsed = interval as f64;
        let mean = self.mean_nanos() + self.pause;
        if elapsed <= mean && self.config.threshold > std::f64::consts::LOG10_2 {
            return true;
        }
        phi_of(elapsed, mean, self.std_dev_nanos().max(self.min_std)) < self.config.threshold
    }

    /// Records a heartbeat now.
    #[inline]
    pub fn heartbeat(&mut self) -> Option<StatusChange> {
        let now = self.clock.now_nanos();
        self.heartbeat_at(now)
    }

    /// Records a heartbeat at clock time `now_nanos`. Returns a change if the
    /// member was Suspect/Dead and is now Healthy.
    pub fn heartbeat_at(&mut self, now_nanos: u64) -> Option<StatusChange> {
        match self.last {
            None => {
                let est = duration_nanos(self.config.first_heartbeat_estimate);
                let sd = est / 4;
                self.push(est - sd);
                self.push(est + sd);
            }
            Some(last) => {
                let interval = now_nanos.saturating_sub(last);
                if self.accepts_interval(interval) {
                    self.push(interval);
                }
            }
        }
        self.last = Some(now_nanos);
        let from = self.status;
        self.status = MemberStatus::Healthy;
        (from != MemberStatus::Healthy).then_some(StatusChange {
            from,
            to: MemberStatus::Healthy,
            phi: 0.0,
            at_nanos: now_nanos,
        })
    }

    /// Phi now.
    pub fn phi(&self) -> f64 {
        self.phi_at(self.clock.now_nanos())
    }

    /// Phi at clock time `now_nanos` (0 before the first heartbeat).
    #[inline]
    pub fn phi_at(&self, now_nanos: u64) -> f64 {
        let Some(last) = self.last else { return 0.0 };
        let elapsed = now_nanos.saturating_sub(last) as f64;
        let mean = self.mean_nanos() + self.pause;
        let std = self.std_dev_nanos().max(self.min_std);
        phi_of(elapsed, mean, std)
    }

    /// Status for a given phi under this detector's thresholds.
    pub fn status_for(&self, phi: f64) -> MemberStatus {
        if phi >= self.config.threshold {
            MemberStatus::Dead
        } else if phi >= self.config.suspect_threshold {
            MemberStatus::Suspect
        } else {
            MemberStatus::Healthy
        }
    }

    /// Status now (does not record a transition; see [`evaluate`](Self::evaluate)).
    pub fn status(&self) -> MemberStatus {
        self.status_for(self.phi())
    }

    /// Whether phi is below the (dead) threshold now.
    pub fn is_available(&self) -> bool {
        self.phi() < self.config.threshold
    }

    /// Recomputes the status now, remembering it, and returns the change if
    /// any. Call periodically from the monitor.
    pub fn evaluate(&mut self) -> Option<StatusChange> {
        let now = self.clock.now_nanos();
        self.evaluate_at(now)
    }

    /// [`evaluate`](Self::evaluate) at clock time `now_nanos`.
    pub fn evaluate_at(&mut self, now_nanos: u64) -> Option<StatusChange> {
        let phi = self.phi_at(now_nanos);
        let to = self.status_for(phi);
        let from = self.status;
        self.status = to;
        (from != to).then_some(StatusChange {
            from,
            to,
            phi,
            at_nanos: now_nanos,
        })
    }

    /// Status as of the last [`evaluate`](Self::evaluate) or heartbeat.
    pub fn last_status(&self) -> MemberStatus {
        self.status
    }
}

/// Listener for registry status changes: `(member, change)`.
pub type StatusListener<K> = Arc<dyn Fn(&K, &StatusChange) + Send + Sync>;

/// Phi-accrual detectors for a set of members (the monitor role), keyed by
/// member name.
pub struct PhiRegistry<K> {
    config: PhiConfig,
    clock: SharedClock,
    members: Mutex<HashMap<K, PhiAccrualDetector>>,
    listener: Option<StatusListener<K>>,
}

impl<K: fmt::Debug> fmt::Debug for PhiRegistry<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhiRegistry")
            .field("config", &self.config)
            .finish()
    }
}

impl<K: Hash + Eq + Clone> PhiRegistry<K> {
    /// An empty registry; members appear on their first heartbeat.
    pub fn new(config: PhiConfig, clock: SharedClock) -> Self {
        PhiRegistry {
            config,
            clock,
            members: Mutex::new(HashMap::new()),
            listener: None,
        }
    }

    /// Sets a listener for status changes (from heartbeats and evaluation).
    pub fn with_listener(mut self, l: impl Fn(&K, &StatusChange) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(l));
        self
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, PhiAccrualDetector>> {
        match self.members.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Records a heartbeat from `member`, registering it if new.
    pub fn heartbeat(&self, member: &K) {
        let now = self.clock.now_nanos();
        let change = {
            let mut map = self.lock();
            match map.get_mut(member) {
                Some(d) => d.heartbeat_at(now),
                None => {
                    let mut d = PhiAccrualDetector::new(self.config.clone(), self.clock.clone());
                    let c = d.heartbeat_at(now);
                    map.insert(member.clone(), d);
                    c
                }
            }
        };
        if let (Some(c), Some(l)) = (change, &self.listener) {
            l(member, &c);
        }
    }

    /// Phi of `member` now, if known.
    pub fn phi(&self, member: &K) -> Option<f64> {
        let now = self.clock.now_nanos();
        self.lock().get(member).map(|d| d.phi_at(now))
    }

    /// Status of `member` now, if known.
    pub fn status(&self, member: &K) -> Option<MemberStatus> {
        let now = self.clock.now_nanos();
        self.lock().get(member).map(|d| d.status_for(d.phi_at(now)))
    }

    /// Re-evaluates every member, notifies the listener of changes and
    /// returns them.
    pub fn evaluate(&self) -> Vec<(K, StatusChange)> {
        let now = self.clock.now_nanos();
        let changes: Vec<(K, StatusChange)> = self
            .lock()
            .iter_mut()
            .filter_map(|(k, d)| d.evaluate_at(now).map(|c| (k.clone(), c)))
            .collect();
        if let Some(l) = &self.listener {
            for (k, c) in &changes {
                l(k, c);
            }
        }
        changes
    }

    /// `(member, phi)` for every member now (e.g. to export gauges).
    pub fn phis(&self) -> Vec<(K, f64)> {
        let now = self.clock.now_nanos();
        self.lock()
            .iter()
            .map(|(k, d)| (k.clone(), d.phi_at(now)))
            .collect()
    }

    /// Stops monitoring `member`; returns whether it was known.
    pub fn remove(&self, member: &K) -> bool {
        self.lock().remove(member).is_some()
    }

    /// Number of monitored members.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no member is monitored.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

impl<K: Hash + Eq + Clone + AsRef<str>> PhiRegistry<K> {
    /// Re-evaluates every member and reports phi values and status changes
    /// to `observer` (call from the monitor's tick).
    pub fn report(&self, observer: &dyn crate::observer::PolicyObserver) -> Vec<(K, StatusChange)> {
        let changes = self.evaluate();
        for (k, phi) in self.phis() {
            observer.on_phi(k.as_ref(), phi);
        }
        for (k, c) in &changes {
            observer.on_member_status(k.as_ref(), c);
        }
        changes
    }
}
