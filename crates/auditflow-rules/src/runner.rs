//! The offline runner behind `auditflow rules test`.

use std::io::BufRead;

use auditflow_core::window::InMemoryWindowState;
use auditflow_core::{Alert, Event};
use serde::Serialize;

use crate::{AlertContext, RuleSet};

/// Events analyzed per window-state call.
const CHUNK: usize = 1024;

/// One line of the input that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// The outcome of [`test_events`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct TestReport {
    /// Events read and evaluated.
    pub events: usize,
    /// Alerts raised, in input order.
    pub alerts: Vec<Alert>,
    /// For each alert of `alerts` (same index), the line of the event that raised it.
    pub alert_lines: Vec<usize>,
    /// Lines that could not be parsed as events (or read), in input order.
    pub errors: Vec<LineError>,
}

impl TestReport {
    /// Alerts with the line numbers of their events.
    pub fn alerts_with_lines(&self) -> impl Iterator<Item = (usize, &Alert)> + '_ {
        self.alert_lines.iter().copied().zip(self.alerts.iter())
    }

    /// Alerts raised per rule id, in rule-id order.
    pub fn counts_by_rule(&self) -> std::collections::BTreeMap<&str, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for alert in &self.alerts {
            *counts
                .entry(alert.analysis_rule.rule_id.as_str())
                .or_insert(0) += 1;
        }
        counts
    }
}

/// Offline runner for `auditflow rules test --rules FILE --events FILE.ndjson`:
/// reads NDJSON events (skipping blank lines; an invalid line is reported
/// with its line number and skipped), evaluates them in file order with a
/// fresh [`InMemoryWindowState`], and returns the alerts plus per-line errors.
/// A read error ends the input and is reported on the line it happened.
pub async fn test_events(rules: &RuleSet, ndjson: impl BufRead, ctx: &AlertContext) -> TestReport {
    let windows = InMemoryWindowState::default();
    let mut report = TestReport::default();
    let mut batch: Vec<Event> = Vec::with_capacity(CHUNK);
    let mut lines: Vec<usize> = Vec::with_capacity(CHUNK);
    for (i, line) in ndjson.lines().enumerate() {
        let number = i + 1;
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                report.errors.push(LineError {
                    line: number,
                    message: format!("cannot read: {e}"),
                });
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match Event::from_slice(line.as_bytes()) {
            Ok(parsed) => {
                batch.push(parsed.event);
                lines.push(number);
            }
            Err(e) => report.errors.push(LineError {
                line: number,
                message: e.to_string(),
            }),
        }
        if batch.len() >= CHUNK {
            flush(rules, &windows, ctx, &mut batch, &mut lines, &mut report).await;
        }
    }
    flush(rules, &windows, ctx, &mut batch, &mut lines, &mut report).await;
    report
}

async fn flush(
    rules: &RuleSet,
    windows: &InMemoryWindowState,
    ctx: &AlertContext,
    batch: &mut Vec<Event>,
    lines: &mut Vec<usize>,
    report: &mut TestReport,
) {
    if batch.is_empty() {
        return;
    }
    report.events += batch.len();
    match rules.analyze(batch, windows, ctx).await {
        Ok(per_event) => {
            for (alerts, &line) in per_event.into_iter().zip(lines.iter()) {
                for alert in alerts {
                    report.alerts.push(alert);
                    report.alert_lines.push(line);
                }
            }
        }
        // The in-memory state fails only if its lock was poisoned; report it
        // against the batch's first line rather than panicking.
        Err(e) => report.errors.push(LineError {
            line: lines.first().copied().unwrap_or(0),
            message: format!("window state: {e}"),
        }),
    }
    batch.clear();
    lines.clear();
}
