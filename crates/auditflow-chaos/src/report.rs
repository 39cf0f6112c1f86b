//! The suite's report: one record per scenario, written as JSON (for tools)
//! and Markdown (for docs/fault-tolerance.md and reviewers).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::deployment::Mode;
use crate::invariants::{Invariant, Violation};

/// One fault action, at a time since the run started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultRecord {
    pub at_s: f64,
    pub action: String,
}

/// Everything measured in one scenario.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ScenarioReport {
    pub name: String,
    pub mode: Option<Mode>,
    pub description: String,
    /// Replays the workload: `--seed SEED`.
    pub seed: u64,
    /// Negative control: the invariant the sabotage must make fail.
    pub expect_violation: Option<Invariant>,
    pub passed: bool,
    pub duration_s: f64,
    pub requests: usize,
    pub events_sent: usize,
    pub events_acked: usize,
    pub events_stored: usize,
    pub attempts: u64,
    pub retries: u64,
    /// Answers by HTTP status (`0`: no answer).
    pub statuses: BTreeMap<u16, u64>,
    pub alerts_expected: usize,
    pub alerts_stored: usize,
    pub alerts_duplicated: usize,
    /// Deliveries seen per channel.
    pub deliveries: BTreeMap<String, usize>,
    pub faults: Vec<FaultRecord>,
    /// From the fault's start to the first readiness report of trouble.
    pub detect_s: Option<f64>,
    /// From the fault's end until every process reports ready again.
    pub ready_s: Option<f64>,
    /// From the fault's end until a probe event sent then has its alert
    /// stored (ingest, broker, analyze, notify and store all working).
    pub rto_s: Option<f64>,
    /// Acknowledged events not stored at the end.
    pub rpo_events_lost: usize,
    /// Peak resident memory per process, MiB.
    pub peak_rss_mib: BTreeMap<String, f64>,
    pub notes: Vec<String>,
    pub violations: Vec<Violation>,
    /// A failure to run the scenario at all (setup, not an invariant).
    pub error: Option<String>,
}

impl ScenarioReport {
    /// Whether the scenario did what it should: no violation, or (negative
    /// controls) exactly the expected invariant caught.
    pub fn judge(&mut self) {
        self.passed = self.error.is_none()
            && match self.expect_violation {
                None => self.violations.is_empty(),
                Some(expected) => {
                    !self.violations.is_empty()
                        && self.violations.iter().all(|v| v.invariant == expected)
                }
            };
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteReport {
    pub started_at: String,
    pub command: String,
    pub git_commit: Option<String>,
    pub build_profile: String,
    pub machine: String,
    pub scenarios: Vec<ScenarioReport>,
}

/// `text` cut to `max` characters (on a char boundary), with an ellipsis.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}…")
}

fn secs(v: Option<f64>) -> String {
    v.map_or("–".to_string(), |s| format!("{s:.1} s"))
}

/// The report as Markdown: a summary table, then one section per scenario.
pub fn markdown(suite: &SuiteReport) -> String {
    let mut md = String::new();
    let passed = suite.scenarios.iter().filter(|s| s.passed).count();
    let _ = writeln!(md, "# AuditFlow chaos suite report\n");
    let _ = writeln!(
        md,
        "- started: {}\n- command: `{}`\n- commit: {}\n- build: {}\n- machine: {}\n- result: **{passed} of {} scenarios passed**\n",
        suite.started_at,
        suite.command,
        suite.git_commit.as_deref().unwrap_or("unknown"),
        suite.build_profile,
        suite.machine,
        suite.scenarios.len()
    );
    let _ = writeln!(
        md,
        "| scenario | mode | result | acked / stored | alerts expected / stored / dup | detect | ready | RTO | RPO (lost) | seed |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    for s in &suite.scenarios {
        let result = match (s.passed, s.expect_violation) {
            (true, None) => "pass".to_string(),
            (true, Some(i)) => format!("pass (caught: {i})"),
            (false, _) => "**FAIL**".to_string(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {result} | {} / {} | {} / {} / {} | {} | {} | {} | {} | {} |",
            s.name,
            s.mode.map_or("–".to_string(), |m| m.to_string()),
            s.events_acked,
            s.events_stored,
            s.alerts_expected,
            s.alerts_stored,
            s.alerts_duplicated,
            secs(s.detect_s),
            secs(s.ready_s),
            secs(s.rto_s),
            s.rpo_events_lost,
            s.seed
        );
    }
    for s in &suite.scenarios {
        let _ = writeln!(md, "\n## {}\n\n{}\n", s.name, s.description);
        let _ = writeln!(
            md,
            "- {} requests, {} events sent, {} acknowledged, {} stored; {} attempts ({} retries); answers by status: {:?}",
            s.requests, s.events_sent, s.events_acked, s.events_stored, s.attempts, s.retries, s.statuses
        );
        let _ = writeln!(
            md,
            "- alerts: {} expected, {} stored, {} duplicated; deliveries: {:?}",
            s.alerts_expected, s.alerts_stored, s.alerts_duplicated, s.deliveries
        );
        if !s.peak_rss_mib.is_empty() {
            let rss: Vec<String> = s
                .peak_rss_mib
                .iter()
                .map(|(p, m)| format!("{p} {m:.1} MiB"))
                .collect();
            let _ = writeln!(md, "- peak RSS: {}", rss.join(", "));
        }
        let _ = writeln!(md, "- duration: {:.1} s", s.duration_s);
        for f in &s.faults {
            let _ = writeln!(md, "- t={:.1} s: {}", f.at_s, f.action);
        }
        for n in &s.notes {
            let _ = writeln!(md, "- {n}");
        }
        if let Some(e) = &s.error {
            let _ = writeln!(md, "- **error**: {}", clip(e, 2000));
        }
        for v in &s.violations {
            let _ = writeln!(
                md,
                "- violation ({}): {}",
                v.invariant,
                clip(&v.detail, 1000)
            );
        }
    }
    md
}

/// The markers between which [`update_doc`] writes the measured table.
pub const DOC_BEGIN: &str =
    "<!-- chaos-report:begin (generated by `auditflow-chaos doc`; do not edit) -->";
pub const DOC_END: &str = "<!-- chaos-report:end -->";

/// The measured table of the fault-tolerance document: one row per
/// scenario of the report (negative controls apart).
pub fn doc_table(suite: &SuiteReport) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Measured by `{}` at commit {} ({} build, {}), started {}.\n",
        suite.command,
        suite.git_commit.as_deref().unwrap_or("unknown"),
        suite.build_profile,
        suite.machine,
        suite.started_at
    );
    let _ = writeln!(
        md,
        "| scenario | mode | fault | events acked / stored | alerts expected / stored | time to detect | time to ready | RTO | RPO | invariants |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    for s in suite
        .scenarios
        .iter()
        .filter(|s| s.expect_violation.is_none())
    {
        let fault = s
            .faults
            .first()
            .map_or("none (load only)".to_string(), |f| f.action.clone());
        let verdict = if s.passed {
            "all held".to_string()
        } else if let Some(e) = &s.error {
            format!("did not run: {}", clip(e, 80))
        } else {
            let broken: std::collections::BTreeSet<String> = s
                .violations
                .iter()
                .map(|v| v.invariant.to_string())
                .collect();
            format!(
                "**violated: {}**",
                broken.into_iter().collect::<Vec<_>>().join(", ")
            )
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} / {} | {} / {} | {} | {} | {} | {} events lost | {verdict} |",
            s.name,
            s.mode.map_or("–".to_string(), |m| m.to_string()),
            clip(&fault, 90),
            s.events_acked,
            s.events_stored,
            s.alerts_expected,
            s.alerts_stored,
            secs(s.detect_s),
            secs(s.ready_s),
            secs(s.rto_s),
            s.rpo_events_lost
        );
    }
    let controls: Vec<&ScenarioReport> = suite
        .scenarios
        .iter()
        .filter(|s| s.expect_violation.is_some())
        .collect();
    if !controls.is_empty() {
        let _ = writeln!(md, "\nNegative controls (the system broken on purpose):\n");
        for c in controls {
            let _ = writeln!(
                md,
                "- {}: {}",
                c.name,
                if c.passed {
                    format!(
                        "caught by \"{}\"",
                        c.expect_violation
                            .map(|i| i.to_string())
                            .unwrap_or_default()
                    )
                } else {
                    "**NOT caught**".to_string()
                }
            );
        }
    }
    md
}

/// `doc` with the text between [`DOC_BEGIN`] and [`DOC_END`] replaced by
/// `table`; `None` when the markers are missing.
pub fn update_doc(doc: &str, table: &str) -> Option<String> {
    let begin = doc.find(DOC_BEGIN)? + DOC_BEGIN.len();
    let end = doc[begin..].find(DOC_END)? + begin;
    Some(format!(
        "{}\n{}\n{}",
        &doc[..begin],
        table.trim_end(),
        &doc[end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_negative_control_passes_only_when_its_invariant_is_caught() {
        let mut r = ScenarioReport {
            expect_violation: Some(Invariant::AlertsMatchOracle),
            ..Default::default()
        };
        r.judge();
        assert!(!r.passed, "nothing caught: the checker missed the sabotage");
        r.violations = vec![Violation::new(Invariant::AlertsMatchOracle, "1 missing")];
        r.judge();
        assert!(r.passed);
        r.violations
            .push(Violation::new(Invariant::HealthyAgain, "collateral"));
        r.judge();
        assert!(!r.passed, "another invariant broke too");
    }

    #[test]
    fn markdown_lists_every_scenario_and_violation() {
        let mut ok = ScenarioReport {
            name: "kill9".into(),
            ..Default::default()
        };
        ok.judge();
        let mut bad = ScenarioReport {
            name: "broken".into(),
            violations: vec![Violation::new(Invariant::AckedStoredOnce, "3 lost")],
            ..Default::default()
        };
        bad.judge();
        let md = markdown(&SuiteReport {
            started_at: "now".into(),
            command: "x".into(),
            git_commit: None,
            build_profile: "dev".into(),
            machine: "m".into(),
            scenarios: vec![ok, bad],
        });
        assert!(md.contains("1 of 2 scenarios passed"));
        assert!(md.contains("| kill9 |"));
        assert!(md.contains("**FAIL**"));
        assert!(md.contains("3 lost"));
    }

    #[test]
    fn the_doc_table_goes_between_the_markers_only() {
        let doc = format!("# T\n\nbefore\n{DOC_BEGIN}\nold table\n{DOC_END}\nafter\n");
        let updated = update_doc(&doc, "| new |\n").expect("markers");
        assert!(updated.contains("before") && updated.contains("after"));
        assert!(updated.contains("| new |"));
        assert!(!updated.contains("old table"));
        assert_eq!(
            update_doc(&updated, "| newer |").map(|d| d.matches(DOC_BEGIN).count()),
            Some(1)
        );
        assert_eq!(update_doc("no markers", "x"), None);
    }

    #[test]
    fn clip_cuts_on_char_boundaries() {
        assert_eq!(clip("ééé", 2), "éé…");
        assert_eq!(clip("ab", 2), "ab");
    }
}
