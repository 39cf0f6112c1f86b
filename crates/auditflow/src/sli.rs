//! Service level indicators: cumulative good/total counts of what the SLOs
//! promise, kept next to the Prometheus metrics they mirror.
//!
//! The in-process SLO evaluator ([`crate::slo`]) reads these counters; the
//! shipped Prometheus rules (`deploy/prometheus/`) compute the same ratios
//! from the exported metrics, with the same classification:
//!
//! | SLI | total | bad |
//! | --- | --- | --- |
//! | ingest availability | `POST /v1/events` requests | answered 5xx |
//! | read availability | `GET` requests to any route but `/livez`, `/readyz`, `/healthz`, `/metrics` and unmatched paths | answered 5xx |
//! | analysis latency | events analysed that carry ingest's timestamp | analysed later than the threshold after ingest accepted them |
//! | analysis errors | events handled by analyze | not `ok` (dead-lettered) |
//!
//! 4xx answers are the client's doing (bad input, over its rate limit, queue
//! full is 429 too but is a capacity signal the queue-depth alerts cover) and
//! do not spend the budget.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the analysis latency histogram
/// (`auditflow_event_analysis_latency_seconds`). A latency SLO's threshold
/// must be one of them, so Prometheus (which only sees buckets) and the
/// in-process evaluator count exactly the same events as good.
pub const ANALYSIS_LATENCY_BOUNDS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Which availability SLI an HTTP request counts towards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpSli {
    /// `POST /v1/events`.
    Ingest,
    /// Reads: the read API, the legacy `/alerts` API, the dashboard.
    Read,
}

/// Routes that are operations, not service: probes and scrapes.
pub const OPERATIONS_ROUTES: [&str; 4] = ["/livez", "/readyz", "/healthz", "/metrics"];

/// The route label of requests no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";

impl HttpSli {
    /// Classifies a request by method and matched route template.
    pub fn of(method: &str, route: &str) -> Option<HttpSli> {
        match method {
            "POST" if route == "/v1/events" => Some(HttpSli::Ingest),
            "GET" if route != UNMATCHED_ROUTE && !OPERATIONS_ROUTES.contains(&route) => {
                Some(HttpSli::Read)
            }
            _ => None,
        }
    }
}

/// A good/total pair of cumulative counters.
#[derive(Debug, Default)]
pub struct Ratio {
    total: AtomicU64,
    bad: AtomicU64,
}

impl Ratio {
    /// Counts `total` events of which `bad` failed.
    pub fn add(&self, total: u64, bad: u64) {
        self.total.fetch_add(total, Ordering::Relaxed);
        if bad > 0 {
            self.bad.fetch_add(bad, Ordering::Relaxed);
        }
    }

    /// `(good, total)` so far.
    pub fn read(&self) -> (u64, u64) {
        // Bad first: a concurrent add may then make total larger but never
        // good negative.
        let bad = self.bad.load(Ordering::Relaxed);
        let total = self.total.load(Ordering::Relaxed);
        (total.saturating_sub(bad), total)
    }
}

/// Every SLI's cumulative counters.
#[derive(Debug, Default)]
pub struct Sli {
    /// Ingest requests.
    pub ingest: Ratio,
    /// Read requests.
    pub read: Ratio,
    /// Events handled by analyze: bad = not `ok`.
    pub analysis: Ratio,
    /// Events analysed per latency bucket (not cumulative: bucket `i` holds
    /// latencies in `(bound[i-1], bound[i]]`, the last slot those above
    /// every bound).
    latency: [AtomicU64; ANALYSIS_LATENCY_BOUNDS.len() + 1],
}

impl Sli {
    /// Counts one HTTP answer.
    pub fn observe_http(&self, method: &str, route: &str, code: u16) {
        let bad = u64::from(code >= 500);
        match HttpSli::of(method, route) {
            Some(HttpSli::Ingest) => self.ingest.add(1, bad),
            Some(HttpSli::Read) => self.read.add(1, bad),
            None => {}
        }
    }

    /// Counts analysed events by their ingest-to-analysed latency (seconds).
    pub fn observe_analysis_latencies(&self, latencies: impl IntoIterator<Item = f64>) {
        let mut counts = [0u64; ANALYSIS_LATENCY_BOUNDS.len() + 1];
        for latency in latencies {
            counts[latency_slot(latency)] += 1;
        }
        for (slot, count) in self.latency.iter().zip(counts) {
            if count > 0 {
                slot.fetch_add(count, Ordering::Relaxed);
            }
        }
    }

    /// `(good, total)` of analysed events with a latency of at most
    /// `threshold` seconds (which must be one of [`ANALYSIS_LATENCY_BOUNDS`];
    /// otherwise the next lower bound counts, erring on the strict side).
    pub fn analysis_latency(&self, threshold: f64) -> (u64, u64) {
        let within = ANALYSIS_LATENCY_BOUNDS
            .iter()
            .take_while(|bound| **bound <= threshold)
            .count();
        let mut good = 0;
        let mut total = 0;
        for (index, slot) in self.latency.iter().enumerate() {
            let count = slot.load(Ordering::Relaxed);
            total += count;
            if index < within {
                good += count;
            }
        }
        (good, total)
    }
}

/// The slot of `latency`: the first bound at or above it (Prometheus `le`).
fn latency_slot(latency: f64) -> usize {
    ANALYSIS_LATENCY_BOUNDS
        .iter()
        .position(|bound| latency <= *bound)
        .unwrap_or(ANALYSIS_LATENCY_BOUNDS.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_requests_like_the_prometheus_rules() {
        assert_eq!(HttpSli::of("POST", "/v1/events"), Some(HttpSli::Ingest));
        assert_eq!(HttpSli::of("GET", "/v1/events"), Some(HttpSli::Read));
        assert_eq!(HttpSli::of("GET", "/v1/alerts/{id}"), Some(HttpSli::Read));
        assert_eq!(HttpSli::of("GET", "/metrics"), None);
        assert_eq!(HttpSli::of("GET", "unmatched"), None);
        assert_eq!(
            HttpSli::of("POST", "/v1/dead-letters/{queue}/{id}/redrive"),
            None
        );
    }

    #[test]
    fn latency_counts_match_prometheus_le_buckets() {
        let sli = Sli::default();
        // Exactly on the bound counts as within it (le = less or equal).
        sli.observe_analysis_latencies([0.0001, 0.5, 0.5000001, 2.0, 100.0]);
        assert_eq!(sli.analysis_latency(0.5), (2, 5));
        assert_eq!(sli.analysis_latency(60.0), (4, 5));
        // A threshold between bounds counts only up to the lower bound.
        assert_eq!(sli.analysis_latency(0.7), (2, 5));
    }

    #[test]
    fn only_5xx_spends_availability() {
        let sli = Sli::default();
        for code in [202, 400, 429, 503, 500] {
            sli.observe_http("POST", "/v1/events", code);
        }
        assert_eq!(sli.ingest.read(), (3, 5));
        assert_eq!(sli.read.read(), (0, 0));
    }
}
