//! AuditFlow's SLOs: declared in `[slo.<name>]`, fed from the process's own
//! SLI counters ([`crate::sli`]), evaluated every 10 s by
//! [`auditflow_slo::SloTracker`], exported as `auditflow_slo_*` metrics and
//! served on `GET /v1/slo`.
//!
//! Each process evaluates what it measures: in `auditflow up` that is every
//! SLO; in the distributed mode the ingest process sees the ingest SLO, the
//! analyze processes the analysis SLOs, and the shipped Prometheus rules
//! (`deploy/prometheus/`) aggregate across processes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use auditflow_slo::{Counts, SloReport, SloSpec, SloTracker};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::metrics::{Metrics, SloAlertLabels, SloLabel, SloWindowLabels};
use crate::sli::{Sli, ANALYSIS_LATENCY_BOUNDS};

/// How often the SLOs are evaluated (and their metrics refreshed); also the
/// resolution of the shortest windows.
pub const EVALUATION_INTERVAL: Duration = Duration::from_secs(10);

/// What an SLO measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SliKind {
    /// `POST /v1/events` answered without a 5xx.
    IngestAvailability,
    /// Events analysed within `threshold` of ingest accepting them.
    AnalysisLatency,
    /// Events analysed without an error (not dead-lettered).
    AnalysisErrors,
    /// Reads (read API, legacy API, dashboard) answered without a 5xx.
    ReadAvailability,
}

/// One `[slo.<name>]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    /// What is measured.
    pub sli: SliKind,
    /// Target good ratio, e.g. 0.999.
    pub objective: f64,
    /// The error budget's period.
    #[serde(with = "humantime_serde", default = "default_period")]
    pub period: Duration,
    /// For `analysis_latency`: the latency an event must meet; one of the
    /// histogram bounds (1ms, 2.5ms, 5ms, 10ms, 25ms, 50ms, 100ms, 250ms,
    /// 500ms, 1s, 2.5s, 5s, 10s, 30s, 60s).
    #[serde(
        with = "humantime_serde::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub threshold: Option<Duration>,
    /// Set to false to drop a default SLO.
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn default_period() -> Duration {
    Duration::from_secs(30 * 86_400)
}

fn enabled() -> bool {
    true
}

/// The default SLOs: ingest availability 99.9 %, 99 % of events analysed
/// within 500 ms, analysis errors under 0.05 %, read availability 99.9 %.
pub fn default_slos() -> BTreeMap<String, SloConfig> {
    let slo = |sli, objective, threshold| SloConfig {
        sli,
        objective,
        period: default_period(),
        threshold,
        enabled: true,
    };
    BTreeMap::from([
        (
            "ingest_availability".into(),
            slo(SliKind::IngestAvailability, 0.999, None),
        ),
        (
            "analysis_latency".into(),
            slo(
                SliKind::AnalysisLatency,
                0.99,
                Some(Duration::from_millis(500)),
            ),
        ),
        (
            "analysis_errors".into(),
            slo(SliKind::AnalysisErrors, 0.9995, None),
        ),
        (
            "read_availability".into(),
            slo(SliKind::ReadAvailability, 0.999, None),
        ),
    ])
}

/// Checks every SLO: objective, period, and a latency threshold on a bound.
pub fn validate(slos: &BTreeMap<String, SloConfig>) -> Result<(), String> {
    for (name, config) in slos {
        SloSpec::new(name.clone(), config.objective, config.period)
            .validate()
            .map_err(|e| e.to_string())?;
        match (config.sli, config.threshold) {
            (SliKind::AnalysisLatency, None) => {
                return Err(format!("SLO '{name}': analysis_latency needs a threshold"))
            }
            (SliKind::AnalysisLatency, Some(threshold)) => {
                let secs = threshold.as_secs_f64();
                if !ANALYSIS_LATENCY_BOUNDS
                    .iter()
                    .any(|b| (b - secs).abs() < 1e-9)
                {
                    return Err(format!(
                        "SLO '{name}': threshold {threshold:?} is not a bucket bound of \
                         auditflow_event_analysis_latency_seconds ({ANALYSIS_LATENCY_BOUNDS:?} s)"
                    ));
                }
            }
            (_, Some(_)) => {
                return Err(format!(
                    "SLO '{name}': only analysis_latency takes a threshold"
                ))
            }
            (_, None) => {}
        }
    }
    Ok(())
}

struct Entry {
    sli: SliKind,
    threshold_secs: f64,
    tracker: SloTracker,
    /// Cumulative counts at the previous evaluation.
    seen: Counts,
}

impl Entry {
    fn cumulative(&self, sli: &Sli) -> Counts {
        let (good, total) = match self.sli {
            SliKind::IngestAvailability => sli.ingest.read(),
            SliKind::ReadAvailability => sli.read.read(),
            SliKind::AnalysisErrors => sli.analysis.read(),
            SliKind::AnalysisLatency => sli.analysis_latency(self.threshold_secs),
        };
        Counts { good, total }
    }
}

/// The process's SLOs and their latest reports.
pub struct SloBoard {
    entries: Mutex<Vec<Entry>>,
    latest: RwLock<Vec<SloReport>>,
}

impl std::fmt::Debug for SloBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SloBoard").finish_non_exhaustive()
    }
}

impl SloBoard {
    /// Trackers for every enabled SLO, reading time from `clock`.
    pub fn new(
        slos: &BTreeMap<String, SloConfig>,
        clock: resilience::SharedClock,
    ) -> anyhow::Result<SloBoard> {
        let mut entries = Vec::new();
        for (name, config) in slos.iter().filter(|(_, c)| c.enabled) {
            let spec = SloSpec::new(name.clone(), config.objective, config.period);
            entries.push(Entry {
                sli: config.sli,
                threshold_secs: config.threshold.map_or(0.0, |t| t.as_secs_f64()),
                tracker: SloTracker::new(spec, Arc::clone(&clock))?,
                seen: Counts::default(),
            });
        }
        Ok(SloBoard {
            entries: Mutex::new(entries),
            latest: RwLock::new(Vec::new()),
        })
    }

    /// Records what the SLI counters gained since the last call, evaluates
    /// every SLO, refreshes the `auditflow_slo_*` gauges and returns the
    /// reports.
    pub fn evaluate(&self, metrics: &Metrics) -> Vec<SloReport> {
        let reports: Vec<SloReport> = {
            let Ok(mut entries) = self.entries.lock() else {
                return Vec::new();
            };
            entries
                .iter_mut()
                .map(|entry| {
                    let now = entry.cumulative(&metrics.sli);
                    let total = now.total.saturating_sub(entry.seen.total);
                    let good = now.good.saturating_sub(entry.seen.good);
                    entry.seen = now;
                    entry.tracker.record(good, total);
                    entry.tracker.report()
                })
                .collect()
        };
        for report in &reports {
            export(metrics, report);
        }
        if let Ok(mut latest) = self.latest.write() {
            latest.clone_from(&reports);
        }
        reports
    }

    /// The reports of the last evaluation.
    pub fn latest(&self) -> Vec<SloReport> {
        self.latest.read().map(|r| r.clone()).unwrap_or_default()
    }
}

fn window_label(window: Duration) -> String {
    humantime::format_duration(window).to_string()
}

fn export(metrics: &Metrics, report: &SloReport) {
    let slo = SloLabel {
        slo: report.name.clone(),
    };
    let m = &metrics.slo;
    m.objective.get_or_create(&slo).set(report.objective);
    m.sli.get_or_create(&slo).set(report.sli);
    m.error_budget_remaining
        .get_or_create(&slo)
        .set(report.error_budget_remaining);
    for alert in &report.alerts {
        for burn in [&alert.long, &alert.short] {
            m.burn_rate
                .get_or_create(&SloWindowLabels {
                    slo: report.name.clone(),
                    window: window_label(burn.window),
                })
                .set(burn.burn_rate);
        }
        m.alert_firing
            .get_or_create(&SloAlertLabels {
                slo: report.name.clone(),
                alert: alert.name.clone(),
                severity: alert.severity.as_str(),
            })
            .set(i64::from(alert.firing));
    }
}

/// Evaluates the SLOs every [`EVALUATION_INTERVAL`] until shutdown.
pub async fn run_evaluator(
    board: Arc<SloBoard>,
    metrics: Arc<Metrics>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(EVALUATION_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                for report in board.evaluate(&metrics) {
                    for alert in report.firing() {
                        tracing::debug!(slo = report.name, alert = alert.name, long_burn = alert.long.burn_rate, short_burn = alert.short.burn_rate, "SLO burn-rate alert firing");
                    }
                }
            }
        }
    }
}

/// `GET /v1/slo`: every SLO's budget, burn rates and alerts as of the last
/// evaluation.
pub fn router(board: Arc<SloBoard>) -> Router {
    Router::new()
        .route("/v1/slo", get(slo_report))
        .with_state(board)
}

async fn slo_report(State(board): State<Arc<SloBoard>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "evaluation_interval": humantime::format_duration(EVALUATION_INTERVAL).to_string(),
        "slos": board.latest(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn load(toml: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("auditflow.toml");
        std::fs::write(&path, toml).map_err(|e| e.to_string())?;
        Config::load(Some(&path), &toml::Table::new()).map_err(|e| e.to_string())
    }

    #[test]
    fn a_file_changes_one_key_of_a_default_slo_and_keeps_the_others() {
        let config = load("[slo.analysis_latency]\nobjective = 0.995\n").unwrap();
        let latency = &config.slo["analysis_latency"];
        assert_eq!(latency.objective, 0.995);
        assert_eq!(latency.threshold, Some(Duration::from_millis(500)));
        assert_eq!(config.slo.len(), 4);
        let config = load("[slo.read_availability]\nenabled = false\n").unwrap();
        let board = SloBoard::new(&config.slo, Arc::new(resilience::SystemClock)).unwrap();
        let metrics = Metrics::new();
        let names: Vec<String> = board
            .evaluate(&metrics)
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(
            names,
            ["analysis_errors", "analysis_latency", "ingest_availability"]
        );
    }

    #[test]
    fn a_latency_threshold_off_the_histogram_bounds_is_refused() {
        let err = load("[slo.analysis_latency]\nthreshold = \"700ms\"\n").unwrap_err();
        assert!(err.contains("slo") && err.contains("bucket bound"), "{err}");
        let err = load("[slo.ingest_availability]\nobjective = 1.5\n").unwrap_err();
        assert!(err.contains("objective"), "{err}");
        let err = load("[slo.mine]\nsli = \"analysis_latency\"\nobjective = 0.9\n").unwrap_err();
        assert!(err.contains("needs a threshold"), "{err}");
    }

    #[test]
    fn the_board_records_what_the_counters_gained_since_the_last_evaluation() {
        let clock = resilience::ManualClock::new();
        let board = SloBoard::new(&default_slos(), clock.shared()).unwrap();
        let metrics = Metrics::new();
        metrics.sli.observe_http("POST", "/v1/events", 202);
        metrics.sli.observe_http("POST", "/v1/events", 503);
        let report = |reports: Vec<SloReport>| {
            reports
                .into_iter()
                .find(|r| r.name == "ingest_availability")
                .unwrap()
        };
        let first = report(board.evaluate(&metrics));
        assert_eq!(first.period_counts, Counts { good: 1, total: 2 });
        // 1 bad of 2 against a 0.1 % budget: 500x, every alert fires.
        assert!(first.alerts.iter().all(|a| a.firing));
        clock.advance(Duration::from_secs(10));
        metrics.sli.observe_http("POST", "/v1/events", 202);
        let second = report(board.evaluate(&metrics));
        assert_eq!(second.period_counts, Counts { good: 2, total: 3 });
        let text = metrics.render();
        assert!(
            text.contains(r#"auditflow_slo_alert_firing{slo="ingest_availability",alert="page_1h",severity="page"} 1"#),
            "{text}"
        );
        assert_eq!(
            report(board.latest()),
            second,
            "/v1/slo serves the last evaluation"
        );
    }
}
