//! The final report of a load run: counts, rates and request latencies.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Why the run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `--count` events were sent.
    Count,
    /// `--duration` elapsed.
    Duration,
    /// The cancellation token was cancelled (Ctrl-C, `auditflow up` shutting down).
    Cancelled,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopReason::Count => "count reached",
            StopReason::Duration => "duration elapsed",
            StopReason::Cancelled => "cancelled",
        })
    }
}

/// Round-trip latencies of HTTP requests (every attempt), in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Number of requests measured.
    pub samples: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// Records latencies in microseconds, from 1 µs to 10 min, 3 significant digits.
#[derive(Debug, Clone)]
pub(crate) struct LatencyRecorder {
    histogram: Option<Histogram<u64>>,
}

const MAX_LATENCY_MICROS: u64 = 600_000_000;

impl LatencyRecorder {
    pub(crate) fn new() -> Self {
        LatencyRecorder {
            histogram: Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3).ok(),
        }
    }

    pub(crate) fn record(&mut self, latency: Duration) {
        if let Some(h) = self.histogram.as_mut() {
            let micros = u64::try_from(latency.as_micros()).unwrap_or(MAX_LATENCY_MICROS);
            h.saturating_record(micros.clamp(1, MAX_LATENCY_MICROS));
        }
    }

    pub(crate) fn summary(&self) -> Latency {
        let Some(h) = self.histogram.as_ref().filter(|h| !h.is_empty()) else {
            return Latency::default();
        };
        let ms = |micros: u64| micros as f64 / 1000.0;
        Latency {
            samples: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// The outcome of a load run. Counts are in events (items), not requests;
/// a batch's events share its request's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The ingest endpoint (`{url}/v1/events`).
    pub endpoint: String,
    /// The RNG seed (pass it as `--seed` to replay the same events).
    pub seed: u64,
    /// Why the run stopped.
    pub stopped_by: StopReason,
    /// Wall time from start to the last response, in seconds.
    pub elapsed_secs: f64,
    /// Target rate in events per second (0 = unpaced).
    pub target_rate: f64,
    /// Events sent (`acknowledged + rejected + failed`).
    pub sent: u64,
    /// Events in requests answered 2xx (202 Accepted).
    pub acknowledged: u64,
    /// Events in requests answered 4xx (expected for malformed items).
    pub rejected: u64,
    /// Events whose request failed (network error or 5xx/429 after the last attempt, or cancelled).
    pub failed: u64,
    /// Malformed items among the sent events.
    pub malformed_sent: u64,
    /// Failed-login bursts generated.
    pub bursts: u64,
    /// HTTP requests made, retries included.
    pub requests: u64,
    /// Attempts that were retried (429, 5xx, network errors).
    pub retries: u64,
    /// Events sent per second of wall time.
    pub achieved_rate: f64,
    /// Request round-trip latencies.
    pub latency: Latency,
    /// Responses by HTTP status code.
    pub status_counts: BTreeMap<u16, u64>,
    /// The last network error or unexpected answer, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Ids of the acknowledged events (only with `record_acked`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub acked_ids: Vec<String>,
}

impl Report {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        // A Report holds only strings, numbers and maps with integer keys;
        // serde_json cannot fail on it.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The report as JSON (`json`) or as a table.
    pub fn render(&self, json: bool) -> String {
        if json {
            self.to_json()
        } else {
            self.to_string()
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = if self.target_rate > 0.0 {
            format!(
                "{:.1}/s (target {:.1}/s)",
                self.achieved_rate, self.target_rate
            )
        } else {
            format!("{:.1}/s (unpaced)", self.achieved_rate)
        };
        let statuses = if self.status_counts.is_empty() {
            "-".to_string()
        } else {
            self.status_counts
                .iter()
                .map(|(code, n)| format!("{code}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let rows: Vec<(&str, String)> = vec![
            ("endpoint", self.endpoint.clone()),
            ("seed", self.seed.to_string()),
            ("stopped by", self.stopped_by.to_string()),
            ("elapsed", format!("{:.2} s", self.elapsed_secs)),
            ("sent", self.sent.to_string()),
            ("  acknowledged", self.acknowledged.to_string()),
            ("  rejected", self.rejected.to_string()),
            ("  failed", self.failed.to_string()),
            ("malformed sent", self.malformed_sent.to_string()),
            ("bursts", self.bursts.to_string()),
            ("requests", self.requests.to_string()),
            ("retries", self.retries.to_string()),
            ("rate", rate),
            (
                "latency p50/p90/p99",
                format!(
                    "{:.2} / {:.2} / {:.2} ms",
                    self.latency.p50_ms, self.latency.p90_ms, self.latency.p99_ms
                ),
            ),
            ("latency max", format!("{:.2} ms", self.latency.max_ms)),
            ("status codes", statuses),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (key, value) in rows {
            writeln!(f, "{key:<width$}  {value}")?;
        }
        if let Some(err) = &self.last_error {
            writeln!(f, "{:<width$}  {err}", "last error")?;
        }
        if !self.acked_ids.is_empty() {
            writeln!(f, "{:<width$}  {}", "acked ids", self.acked_ids.len())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let mut recorder = LatencyRecorder::new();
        for ms in 1..=100 {
            recorder.record(Duration::from_millis(ms));
        }
        Report {
            endpoint: "http://127.0.0.1:8080/v1/events".into(),
            seed: 7,
            stopped_by: StopReason::Count,
            elapsed_secs: 1.5,
            target_rate: 100.0,
            sent: 150,
            acknowledged: 140,
            rejected: 9,
            failed: 1,
            malformed_sent: 9,
            bursts: 2,
            requests: 152,
            retries: 2,
            achieved_rate: 100.0,
            latency: recorder.summary(),
            status_counts: BTreeMap::from([(202, 140), (400, 9), (429, 2)]),
            last_error: None,
            acked_ids: Vec::new(),
        }
    }

    #[test]
    fn latency_percentiles_come_from_the_histogram() {
        let latency = report().latency;
        assert_eq!(latency.samples, 100);
        assert!((latency.p50_ms - 50.0).abs() < 0.5, "{latency:?}");
        assert!((latency.p90_ms - 90.0).abs() < 0.5, "{latency:?}");
        assert!((latency.p99_ms - 99.0).abs() < 0.5, "{latency:?}");
        assert!((latency.max_ms - 100.0).abs() < 0.5, "{latency:?}");
        assert_eq!(LatencyRecorder::new().summary(), Latency::default());
    }

    #[test]
    fn renders_as_table_and_json() {
        let report = report();
        let table = report.render(false);
        assert!(table.contains("acknowledged"), "{table}");
        assert!(table.contains("202: 140, 400: 9, 429: 2"), "{table}");
        let json: serde_json::Value = serde_json::from_str(&report.render(true)).unwrap();
        assert_eq!(json["sent"], 150);
        assert_eq!(json["stopped_by"], "count");
        assert_eq!(json["status_counts"]["429"], 2);
        assert!(json.get("acked_ids").is_none());
    }
}
