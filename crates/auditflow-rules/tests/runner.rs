//! The offline `rules test` runner.

mod common;

use std::path::PathBuf;

use auditflow_rules::{test_events, RuleSet};
use common::*;

fn sample_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/sample-events.ndjson")
}

#[tokio::test]
async fn the_shipped_sample_raises_the_documented_alerts() {
    let file = std::fs::File::open(sample_path()).unwrap();
    let report = test_events(&RuleSet::builtin(), std::io::BufReader::new(file), &ctx()).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.events, 10);
    let got: Vec<(usize, &str, &str)> = report
        .alerts_with_lines()
        .map(|(line, a)| {
            (
                line,
                a.analysis_rule.rule_id.as_str(),
                a.impacted_resource.resource_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (4, "ANLY-SEC-001", "prod-web-01"),
            (8, "ANLY-SEC-002", "/etc/passwd"),
            (9, "ANLY-SEC-002", "/etc/sudoers"),
        ]
    );
    assert_eq!(report.alerts[2].triggered_by.client_ip, "203.0.113.9");
    let counts = report.counts_by_rule();
    assert_eq!(counts.get("ANLY-SEC-001"), Some(&1));
    assert_eq!(counts.get("ANLY-SEC-002"), Some(&2));
}

#[tokio::test]
async fn invalid_lines_are_reported_with_their_number_and_skipped() {
    let sample = std::fs::read_to_string(sample_path()).unwrap();
    let mut lines: Vec<&str> = sample.lines().collect();
    lines.insert(1, "{not json");
    lines.insert(3, r#"{"event_id":"x"}"#);
    lines.insert(4, "   ");
    let input = lines.join("\n");
    let report = test_events(&RuleSet::builtin(), input.as_bytes(), &ctx()).await;
    assert_eq!(report.events, 10);
    assert_eq!(report.errors.len(), 2, "{:?}", report.errors);
    assert_eq!(report.errors[0].line, 2);
    assert!(report.errors[0].message.contains("invalid JSON"));
    assert_eq!(report.errors[1].line, 4);
    assert!(
        report.errors[1]
            .to_string()
            .starts_with("line 4: field `event_id`"),
        "{}",
        report.errors[1]
    );
    // The alerts are unaffected; line numbers shift by the three inserted lines.
    let lines: Vec<usize> = report.alerts_with_lines().map(|(l, _)| l).collect();
    assert_eq!(lines, [7, 11, 12]);
}

#[tokio::test]
async fn empty_input_gives_an_empty_report() {
    let report = test_events(&RuleSet::builtin(), &b"\n\n"[..], &ctx()).await;
    assert_eq!(report.events, 0);
    assert!(report.alerts.is_empty() && report.errors.is_empty());
}

#[tokio::test]
async fn large_inputs_are_processed_in_order_across_chunks() {
    // 3,000 failed logins one second apart for one group: with a 60 s window
    // and 60 s cooldown the rule fires on the 3rd, then every 60 s
    // (once a full minute has passed since the last alert).
    let mut input = String::new();
    for n in 0..3_000u128 {
        let e = failed_login(n, "bob", "h", n as i64 * 1_000_000);
        input.push_str(&serde_json::to_string(&e).unwrap());
        input.push('\n');
    }
    let report = test_events(&RuleSet::builtin(), input.as_bytes(), &ctx()).await;
    assert_eq!(report.events, 3_000);
    let lines: Vec<usize> = report.alerts_with_lines().map(|(l, _)| l).collect();
    let expected: Vec<usize> = (0..)
        .map(|k| 3 + 60 * k)
        .take_while(|l| *l <= 3_000)
        .collect();
    assert_eq!(lines, expected);
}
