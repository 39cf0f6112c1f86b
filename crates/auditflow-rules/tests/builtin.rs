//! The built-in rules, and compatibility with the earlier platform's alerts.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use auditflow_core::window::InMemoryWindowState;
use auditflow_core::{alert_id_for, Alert, Event, Severity};
use auditflow_rules::{RuleKind, RuleSet, BUILTIN_RULES_TOML};
use common::*;
use serde_json::Value;

async fn analyze(rules: &RuleSet, events: &[Event]) -> Vec<Vec<Alert>> {
    let windows = InMemoryWindowState::default();
    rules.analyze(events, &windows, &ctx()).await.unwrap()
}

fn flat(alerts: Vec<Vec<Alert>>) -> Vec<Alert> {
    alerts.into_iter().flatten().collect()
}

#[test]
fn builtin_loads_with_both_rules_as_specified() {
    let rules = RuleSet::builtin();
    assert_eq!(rules.rules().len(), 2);
    let burst = &rules.rules()[0];
    assert_eq!(burst.id(), "ANLY-SEC-001");
    assert_eq!(burst.name(), "Failed Login Burst Detection");
    assert_eq!(
        burst.description(),
        "Detects 3 failed logins within 60 seconds."
    );
    assert_eq!(burst.kind(), RuleKind::Threshold);
    assert_eq!(burst.alert_severity(), Severity::Critical);
    let t = burst.threshold().unwrap();
    assert_eq!(t.count(), 3);
    assert_eq!(t.window(), Duration::from_secs(60));
    assert_eq!(t.cooldown(), Duration::from_secs(60));
    assert_eq!(t.group_by(), ["user_id", "server_hostname"]);
    let files = &rules.rules()[1];
    assert_eq!(files.id(), "ANLY-SEC-002");
    assert_eq!(files.name(), "Sensitive File Modification Detection");
    assert_eq!(files.kind(), RuleKind::Match);
    assert!(files.threshold().is_none());
    // The embedded text is the shipped file.
    let on_disk = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules/default.toml"),
    )
    .unwrap();
    assert_eq!(on_disk, BUILTIN_RULES_TOML);
    assert_eq!(
        RuleSet::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules/default.toml"))
            .unwrap()
            .rules()
            .len(),
        2
    );
}

#[tokio::test]
async fn three_failures_within_60s_fire_once() {
    let rules = RuleSet::builtin();
    let events: Vec<Event> = (0..6)
        .map(|n| failed_login(n, "attacker_bob", "prod-web-01", n as i64 * 5_000_000))
        .collect();
    let alerts = analyze(&rules, &events).await;
    let fired: Vec<usize> = alerts
        .iter()
        .enumerate()
        .filter(|(_, a)| !a.is_empty())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(fired, vec![2], "fires on the third event only (cooldown)");
    let alert = &alerts[2][0];
    assert_eq!(alert.alert_id, alert_id_for("ANLY-SEC-001", id(2)));
    assert_eq!(alert.alert_name, "Multiple Failed Login Attempts");
    assert_eq!(
        alert.description,
        "3 or more failed login attempts for user 'attacker_bob' on 'prod-web-01' within 60 seconds."
    );
    assert_eq!(alert.impacted_resource.resource_type, "SERVER");
    assert_eq!(alert.impacted_resource.resource_id, "prod-web-01");
    assert_eq!(alert.action_observed, "LOGIN_FAILURE");
    assert_eq!(alert.severity, Severity::Critical);
    assert_eq!(
        alert.metadata.tags,
        ["brute-force", "authentication", "critical"]
    );
}

#[tokio::test]
async fn two_failures_do_not_fire_nor_do_successes_or_spread_out_failures() {
    let rules = RuleSet::builtin();
    let two = [
        failed_login(1, "bob", "h1", 0),
        failed_login(2, "bob", "h1", 1_000_000),
    ];
    assert!(flat(analyze(&rules, &two).await).is_empty());

    let mut success = failed_login(3, "bob", "h1", 2_000_000);
    success.action_result = "SUCCESS".into();
    let with_success = [two[0].clone(), two[1].clone(), success];
    assert!(flat(analyze(&rules, &with_success).await).is_empty());

    let spread = [
        failed_login(1, "bob", "h1", 0),
        failed_login(2, "bob", "h1", 40_000_000),
        failed_login(3, "bob", "h1", 80_000_000),
    ];
    assert!(flat(analyze(&rules, &spread).await).is_empty());
}

#[tokio::test]
async fn different_host_or_user_is_a_different_group() {
    let rules = RuleSet::builtin();
    let events = [
        failed_login(1, "bob", "h1", 0),
        failed_login(2, "bob", "h1", 1_000_000),
        failed_login(3, "bob", "h2", 2_000_000),
        failed_login(4, "alice", "h1", 3_000_000),
    ];
    assert!(flat(analyze(&rules, &events).await).is_empty());
    let events = [
        failed_login(1, "bob", "h1", 0),
        failed_login(2, "bob", "h2", 1_000_000),
        failed_login(3, "bob", "h1", 2_000_000),
        failed_login(4, "bob", "h2", 3_000_000),
        failed_login(5, "bob", "h1", 4_000_000),
        failed_login(6, "bob", "h2", 5_000_000),
    ];
    let alerts = analyze(&rules, &events).await;
    assert!(alerts[..4].iter().all(Vec::is_empty));
    assert_eq!(alerts[4][0].impacted_resource.resource_id, "h1");
    assert_eq!(alerts[5][0].impacted_resource.resource_id, "h2");
}

#[tokio::test]
async fn group_keys_join_user_and_host() {
    let rules = RuleSet::builtin();
    let eval = rules.evaluate(&failed_login(1, "bob", "prod-web-01", 0));
    assert!(eval.matched.is_empty());
    let [(0, obs)] = eval.observations.as_slice() else {
        panic!("{eval:?}")
    };
    assert_eq!(obs.rule_id, "ANLY-SEC-001");
    assert_eq!(obs.group_key, "bob\u{1f}prod-web-01");
    assert_eq!(obs.event_id, id(1));
    assert_eq!(obs.event_time, base_time());
    assert_eq!(obs.spec.threshold, 3);
}

#[tokio::test]
async fn sensitive_file_rule_reads_details_or_top_level_resource() {
    let rules = RuleSet::builtin();
    let events = [
        file_modified(1, "/etc/passwd", true),
        file_modified(2, "/etc/shadow", false),
        file_modified(3, "/etc/sudoers", true),
        file_modified(4, "/root/.ssh/authorized_keys", false),
        file_modified(5, "/etc/hosts", true),
        file_modified(6, "/tmp/etc/passwd", false),
    ];
    let alerts = analyze(&rules, &events).await;
    for (i, want) in [true, true, true, true, false, false].iter().enumerate() {
        assert_eq!(!alerts[i].is_empty(), *want, "event {i}");
    }
    let a = &alerts[0][0];
    assert_eq!(a.alert_id, alert_id_for("ANLY-SEC-002", id(1)));
    assert_eq!(a.analysis_rule.rule_id, "ANLY-SEC-002");
    assert_eq!(a.alert_name, "Sensitive File Modified");
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(a.impacted_resource.resource_type, "FILE");
    assert_eq!(a.impacted_resource.resource_id, "/etc/passwd");
    assert_eq!(a.impacted_resource.server_hostname, "prod-db-02");
    assert_eq!(a.action_observed, "FILE_MODIFIED");
    assert_eq!(a.triggered_by.client_ip, "N/A");
    assert_eq!(
        a.description,
        "Sensitive file '/etc/passwd' was modified by user 'devops_admin' on 'prod-db-02'."
    );
    assert_eq!(alerts[1][0].impacted_resource.resource_id, "/etc/shadow");

    // Wrong type or result: no alert.
    let mut read = file_modified(7, "/etc/passwd", true);
    read.action_result = "READ".into();
    let mut other = file_modified(8, "/etc/passwd", true);
    other.event_type = "file_read".into();
    assert!(flat(analyze(&rules, &[read, other]).await).is_empty());
}

#[tokio::test]
async fn the_legacy_file_event_fires_anly_sec_002() {
    let raw = std::fs::read(compat_dir().join("event-file-modified.json")).unwrap();
    let event = Event::from_slice(&raw).unwrap().event;
    let alerts = flat(analyze(&RuleSet::builtin(), &[event]).await);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].impacted_resource.resource_id, "/etc/passwd");
}

fn compat_dir() -> PathBuf {
    // The workspace root's sibling `shared/compat` (as in CI's checkout).
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/compat")
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

#[tokio::test]
async fn legacy_login_event_three_times_yields_the_legacy_alert_shape() {
    let dir = compat_dir();
    let raw: Value = serde_json::from_slice(
        &std::fs::read(dir.join("event-user-login-failure.json")).expect("compat event"),
    )
    .unwrap();
    let legacy: Value = serde_json::from_slice(
        &std::fs::read(dir.join("alert-failed-login-burst.json")).expect("compat alert"),
    )
    .unwrap();
    let ids = [
        "0e9c7f9f-5b1d-4d0e-9a51-2f1f9d6f4c01",
        "0e9c7f9f-5b1d-4d0e-9a51-2f1f9d6f4c02",
        "0e9c7f9f-5b1d-4d0e-9a51-2f1f9d6f4c11",
    ];
    let events: Vec<Event> = ids
        .iter()
        .map(|id| {
            let mut v = raw.clone();
            v["event_id"] = Value::String(id.to_string());
            Event::from_value(v).unwrap().event
        })
        .collect();
    let mut context = ctx();
    context.environment = "DEVELOPMENT".into();
    let windows = InMemoryWindowState::default();
    let alerts = RuleSet::builtin()
        .analyze(&events, &windows, &context)
        .await
        .unwrap();
    assert!(alerts[0].is_empty() && alerts[1].is_empty());
    let [alert] = alerts[2].as_slice() else {
        panic!("{alerts:?}")
    };
    let ours = serde_json::to_value(alert).unwrap();

    // Same keys, at the top and in every nested object.
    assert_eq!(keys(&ours), keys(&legacy));
    for nested in [
        "analysis_rule",
        "triggered_by",
        "impacted_resource",
        "metadata",
        "raw_event_data",
    ] {
        assert_eq!(keys(&ours[nested]), keys(&legacy[nested]), "{nested}");
    }
    // Same values where they do not depend on time or ids.
    for key in [
        "alert_name",
        "alert_type",
        "severity",
        "description",
        "source_service_name",
        "analysis_rule",
        "impacted_resource",
        "action_observed",
        "correlation_id",
        "raw_event_data",
        "metadata",
    ] {
        assert_eq!(ours[key], legacy[key], "{key}");
    }
    assert_eq!(
        ours["triggered_by"]["actor_type"],
        legacy["triggered_by"]["actor_type"]
    );
    assert_eq!(
        ours["triggered_by"]["actor_id"],
        legacy["triggered_by"]["actor_id"]
    );
    // Deliberate difference: the legacy service ignored `details.ip_address`
    // and wrote "N/A"; we report the event's effective client address.
    assert_eq!(ours["triggered_by"]["client_ip"], "192.168.1.150");
    assert_eq!(
        alert.alert_id,
        alert_id_for("ANLY-SEC-001", events[2].event_id)
    );
    // And the legacy alert parses as ours does.
    let reparsed = Alert::from_slice(&serde_json::to_vec(&legacy).unwrap()).unwrap();
    assert_eq!(reparsed.analysis_rule, alert.analysis_rule);
    assert_eq!(reparsed.metadata, alert.metadata);
}
