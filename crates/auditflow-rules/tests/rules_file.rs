//! Loading, validation, operators and templates of rules files.

mod common;

use auditflow_core::window::InMemoryWindowState;
use auditflow_core::Severity;
use auditflow_rules::{OpKind, RuleKind, RuleSet, RulesError};
use common::*;
use serde_json::json;

/// A match rule with the given `when` array (TOML inline) and alert description.
fn match_rule(id: &str, when: &str) -> String {
    format!(
        r#"
[[rule]]
id = "{id}"
name = "Test {id}"
description = "test rule"
kind = "match"
when = {when}
[rule.alert]
alert_name = "Hit {{user_id}}"
severity = "WARNING"
description = "{{user_id}} did {{event_type}}"
action_observed = "{{action_result}}"
"#
    )
}

fn sample() -> auditflow_core::Event {
    event(json!({
        "event_id": "0e9c7f9f-5b1d-4d0e-9a51-2f1f9d6f4c11",
        "timestamp": "2026-11-22T21:46:30Z",
        "source_service": "audit-event-generator",
        "server_hostname": "prod-web-01",
        "event_type": "sudo_command",
        "severity": "ERROR",
        "user_id": "attacker_bob",
        "action_result": "FAILURE",
        "details": {"command": "cat /etc/shadow", "port": 22, "ip_address": "10.1.2.3", "nested": {"k": "v"}},
        "resource": "/etc/shadow",
        "tenant": "acme"
    }))
}

/// Whether a one-rule file with `when` matches `sample()`.
fn holds(when: &str) -> bool {
    let rules =
        RuleSet::from_toml_str(&match_rule("R", when)).unwrap_or_else(|e| panic!("{when}: {e}"));
    let eval = rules.evaluate(&sample());
    assert!(eval.observations.is_empty());
    !eval.matched.is_empty()
}

#[test]
fn equals_operator() {
    assert!(holds(
        r#"[{ field = "event_type", equals = "sudo_command" }]"#
    ));
    assert!(!holds(
        r#"[{ field = "event_type", equals = "SUDO_COMMAND" }]"#
    ));
    assert!(holds(
        r#"[{ field = "event_type", equals = "SUDO_command", case_insensitive = true }]"#
    ));
    assert!(!holds(
        r#"[{ field = "event_type", equals = "sudo", case_insensitive = true }]"#
    ));
    assert!(holds(r#"[{ field = "severity", equals = "ERROR" }]"#));
    assert!(holds(r#"[{ field = "details.port", equals = 22 }]"#));
    assert!(holds(r#"[{ field = "details.nested.k", equals = "v" }]"#));
    assert!(holds(r#"[{ field = "tenant", equals = "acme" }]"#));
    assert!(!holds(r#"[{ field = "details.missing", equals = "x" }]"#));
}

#[test]
fn one_of_operator() {
    assert!(holds(
        r#"[{ field = "user_id", one_of = ["alice", "attacker_bob"] }]"#
    ));
    assert!(!holds(
        r#"[{ field = "user_id", one_of = ["alice", "carol"] }]"#
    ));
    assert!(holds(
        r#"[{ field = "user_id", one_of = ["ALICE", "Attacker_Bob"], case_insensitive = true }]"#
    ));
    assert!(!holds(
        r#"[{ field = "user_id", one_of = ["attacker"], case_insensitive = true }]"#
    ));
    // Regex metacharacters in values are literal.
    assert!(!holds(
        r#"[{ field = "user_id", one_of = ["attacker.bob"], case_insensitive = true }]"#
    ));
}

#[test]
fn contains_operator() {
    assert!(holds(
        r#"[{ field = "details.command", contains = "/etc/" }]"#
    ));
    assert!(!holds(
        r#"[{ field = "details.command", contains = "/ETC/" }]"#
    ));
    assert!(holds(
        r#"[{ field = "details.command", contains = "/ETC/", case_insensitive = true }]"#
    ));
}

#[test]
fn prefix_operator() {
    assert!(holds(
        r#"[{ field = "server_hostname", prefix = "prod-" }]"#
    ));
    assert!(!holds(r#"[{ field = "server_hostname", prefix = "web" }]"#));
    assert!(holds(
        r#"[{ field = "server_hostname", prefix = "PROD-", case_insensitive = true }]"#
    ));
    assert!(!holds(
        r#"[{ field = "server_hostname", prefix = "WEB", case_insensitive = true }]"#
    ));
}

#[test]
fn regex_operator() {
    assert!(holds(
        r#"[{ field = "server_hostname", regex = "^prod-web-\\d+$" }]"#
    ));
    assert!(holds(
        r#"[{ field = "details.command", regex = "shadow" }]"#
    ));
    assert!(!holds(
        r#"[{ field = "details.command", regex = "^shadow" }]"#
    ));
    assert!(holds(
        r#"[{ field = "details.command", regex = "CAT\\s", case_insensitive = true }]"#
    ));
}

#[test]
fn exists_and_not() {
    assert!(holds(r#"[{ field = "details.command", exists = true }]"#));
    assert!(holds(r#"[{ field = "details.nope", exists = false }]"#));
    assert!(!holds(r#"[{ field = "details.nope", exists = true }]"#));
    assert!(holds(
        r#"[{ field = "user_id", equals = "alice", not = true }]"#
    ));
    assert!(!holds(
        r#"[{ field = "user_id", equals = "attacker_bob", not = true }]"#
    ));
    // An absent field fails the operator, so its negation holds.
    assert!(holds(
        r#"[{ field = "details.nope", equals = "x", not = true }]"#
    ));
}

#[test]
fn virtual_fields_resource_and_client_ip() {
    assert!(holds(r#"[{ field = "resource", equals = "/etc/shadow" }]"#));
    assert!(holds(r#"[{ field = "client_ip", prefix = "10.1." }]"#));
    let legacy = file_modified(1, "/etc/sudoers", true);
    let http = file_modified(2, "/etc/sudoers", false);
    let rules = RuleSet::from_toml_str(&match_rule(
        "R",
        r#"[{ field = "resource", equals = "/etc/sudoers" }]"#,
    ))
    .unwrap();
    assert_eq!(rules.evaluate(&legacy).matched, vec![0]);
    assert_eq!(rules.evaluate(&http).matched, vec![0]);
}

#[test]
fn all_conditions_must_hold() {
    assert!(holds(
        r#"[{ field = "event_type", equals = "sudo_command" }, { field = "action_result", equals = "FAILURE" }]"#
    ));
    assert!(!holds(
        r#"[{ field = "event_type", equals = "sudo_command" }, { field = "action_result", equals = "SUCCESS" }]"#
    ));
}

#[test]
fn conditions_are_introspectable() {
    let rules = RuleSet::from_toml_str(&match_rule(
        "R",
        r#"[{ field = "user_id", regex = "x", not = true }]"#,
    ))
    .unwrap();
    let c = &rules.rules()[0].conditions()[0];
    assert_eq!(c.field(), "user_id");
    assert_eq!(c.op(), OpKind::Regex);
    assert!(c.negated());
    assert_eq!(c.op().key(), "regex");
}

#[test]
fn when_may_be_an_array_of_tables_and_rules_may_be_disabled() {
    let src = r#"
[[rule]]
id = "R1"
name = "n"
description = "d"
kind = "match"
enabled = false
[[rule.when]]
field = "user_id"
equals = "attacker_bob"
[rule.alert]
alert_name = "a"
severity = "info"
description = "d"
action_observed = "X"

[[rule]]
id = "R2"
name = "n"
description = "d"
kind = "match"
[[rule.when]]
field = "user_id"
equals = "attacker_bob"
[[rule.when]]
field = "resource"
prefix = "/etc"
[rule.alert]
alert_name = "a"
severity = "Info"
description = "d"
action_observed = "X"
"#;
    let rules = RuleSet::from_toml_str(src).unwrap();
    assert!(!rules.rules()[0].enabled());
    assert_eq!(rules.rules()[1].conditions().len(), 2);
    assert_eq!(rules.rules()[1].alert_severity(), Severity::Info);
    assert_eq!(rules.evaluate(&sample()).matched, vec![1]);
    assert!(rules.get("R1").is_some());
    assert!(rules.get("R3").is_none());
}

#[tokio::test]
async fn match_alert_renders_template_and_defaults() {
    let rules = RuleSet::from_toml_str(&match_rule(
        "R-1",
        r#"[{ field = "user_id", equals = "attacker_bob" }]"#,
    ))
    .unwrap();
    assert_eq!(rules.rules()[0].kind(), RuleKind::Match);
    let windows = InMemoryWindowState::default();
    let alerts = rules.analyze(&[sample()], &windows, &ctx()).await.unwrap();
    let [alert] = alerts[0].as_slice() else {
        panic!("expected one alert, got {alerts:?}")
    };
    assert_eq!(alert.alert_name, "Hit attacker_bob");
    assert_eq!(alert.description, "attacker_bob did sudo_command");
    assert_eq!(alert.action_observed, "FAILURE");
    assert_eq!(alert.alert_type, "SECURITY");
    assert_eq!(alert.severity, Severity::Warning);
    assert_eq!(alert.triggered_by.actor_type, "USER");
    assert_eq!(alert.triggered_by.actor_id, "attacker_bob");
    assert_eq!(alert.triggered_by.client_ip, "10.1.2.3");
    assert_eq!(alert.impacted_resource.resource_type, "SERVER");
    assert_eq!(alert.impacted_resource.resource_id, "prod-web-01");
    assert_eq!(alert.impacted_resource.server_hostname, "prod-web-01");
    assert_eq!(alert.source_service_name, "audit-event-generator");
    assert_eq!(alert.correlation_id, sample().event_id);
    assert_eq!(
        alert.alert_id,
        auditflow_core::alert_id_for("R-1", sample().event_id)
    );
    assert_eq!(alert.timestamp, ctx().raised_at);
    assert_eq!(alert.metadata.environment, "TEST");
    assert!(alert.metadata.tags.is_empty());
    assert_eq!(
        alert.raw_event_data,
        serde_json::to_value(sample()).unwrap()
    );
    assert_eq!(alert.analysis_rule.rule_name, "Test R-1");
    assert_eq!(alert.analysis_rule.rule_description, "test rule");
}

#[tokio::test]
async fn threshold_templates_see_count_threshold_and_window() {
    let src = r#"
[[rule]]
id = "T"
name = "n"
description = "d"
kind = "threshold"
when = [{ field = "event_type", equals = "user_login" }]
threshold = { count = 2, window = "1m 30s", group_by = ["user_id"] }
[rule.alert]
alert_name = "burst"
severity = "ERROR"
description = "{count}>={threshold} in {window_secs}s by {user_id} via {details.protocol}, {{x}}"
actor_type = "SERVICE"
resource_type = "HOST"
resource_id = "{server_hostname}/{details.nope}"
action_observed = "LOGIN_{action_result}"
[rule.alert.metadata]
tags = ["t1"]
playbook_url = "https://x/{not-a-template}"
"#;
    let rules = RuleSet::from_toml_str(src).unwrap();
    let t = rules.rules()[0].threshold().unwrap();
    assert_eq!(t.window(), std::time::Duration::from_secs(90));
    assert_eq!(t.cooldown(), t.window(), "cooldown defaults to the window");
    assert_eq!(t.count(), 2);
    assert_eq!(t.group_by(), ["user_id"]);
    let windows = InMemoryWindowState::default();
    let events = [
        failed_login(1, "u", "h", 0),
        failed_login(2, "u", "h", 1_000_000),
    ];
    let alerts = rules.analyze(&events, &windows, &ctx()).await.unwrap();
    assert!(alerts[0].is_empty());
    let a = &alerts[1][0];
    assert_eq!(a.description, "2>=2 in 90s by u via ssh, {x}");
    assert_eq!(a.impacted_resource.resource_id, "h/N/A");
    assert_eq!(a.impacted_resource.resource_type, "HOST");
    assert_eq!(a.triggered_by.actor_type, "SERVICE");
    assert_eq!(a.action_observed, "LOGIN_FAILURE");
    assert_eq!(a.metadata.tags, ["t1"]);
    assert_eq!(a.metadata.playbook_url, "https://x/{not-a-template}");
    assert_eq!(a.severity, Severity::Error);
}

#[test]
fn durations_accept_integers_seconds_and_zero_cooldown() {
    let src = match_rule("X", "[]")
        .replace("kind = \"match\"", "kind = \"threshold\"\nthreshold = { count = 1, window = 30, cooldown = \"0s\", group_by = [\"user_id\"] }")
        .replace("when = []", "when = [{ field = \"user_id\", exists = true }]");
    let rules = RuleSet::from_toml_str(&src).unwrap();
    let t = rules.rules()[0].threshold().unwrap();
    assert_eq!(t.window().as_secs(), 30);
    assert!(t.cooldown().is_zero());
}

/// The error for a rules file, as text.
fn error_of(src: &str) -> String {
    match RuleSet::from_toml_str(src) {
        Ok(_) => panic!("expected an error for:\n{src}"),
        Err(e) => e.to_string(),
    }
}

const THRESHOLD_RULE: &str = r#"
[[rule]]
id = "ANLY-SEC-001"
name = "Failed Login Burst Detection"
description = "d"
kind = "threshold"
when = [{ field = "event_type", equals = "user_login" }]
threshold = { count = 3, window = "60s", group_by = ["user_id"] }
[rule.alert]
alert_name = "a"
severity = "CRITICAL"
description = "{count} failures"
action_observed = "LOGIN_FAILURE"
"#;

#[test]
fn validation_errors_name_rule_and_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"window = "60s""#,
            r#"window = "6o s""#,
            r#"rule 'ANLY-SEC-001': threshold.window: invalid duration "6o s""#,
        ),
        (
            r#"window = "60s""#,
            r#"window = "0s""#,
            "rule 'ANLY-SEC-001': threshold.window: must be greater than zero",
        ),
        (
            r#"window = "60s""#,
            r#"window = "60s", cooldown = "soon""#,
            r#"rule 'ANLY-SEC-001': threshold.cooldown: invalid duration "soon""#,
        ),
        (
            "count = 3",
            "count = 0",
            "rule 'ANLY-SEC-001': threshold.count: must be at least 1",
        ),
        (
            "count = 3",
            "count = -2",
            "rule 'ANLY-SEC-001': threshold.count: must be at least 1",
        ),
        (
            "count = 3, ",
            "",
            "rule 'ANLY-SEC-001': threshold.count: is required",
        ),
        (
            r#"group_by = ["user_id"]"#,
            "group_by = []",
            "rule 'ANLY-SEC-001': threshold.group_by: must name at least one field",
        ),
        (
            r#"group_by = ["user_id"]"#,
            r#"group_by = ["user_id", "a..b"]"#,
            "rule 'ANLY-SEC-001': threshold.group_by[1]: invalid field path",
        ),
        (
            r#"group_by = ["user_id"]"#,
            r#"group_by = ["user_id"], size = 4"#,
            "rule 'ANLY-SEC-001': threshold.size: unknown key",
        ),
        (
            r#"kind = "threshold""#,
            r#"kind = "sliding""#,
            r#"rule 'ANLY-SEC-001': kind: unknown kind "sliding""#,
        ),
        (
            r#"kind = "threshold""#,
            r#"kind = "match""#,
            "rule 'ANLY-SEC-001': threshold: only allowed in threshold rules",
        ),
        (
            r#"when = [{ field = "event_type", equals = "user_login" }]"#,
            "when = []",
            "rule 'ANLY-SEC-001': when: must hold at least one condition",
        ),
        (
            r#"when = [{ field = "event_type", equals = "user_login" }]"#,
            "",
            "rule 'ANLY-SEC-001': when: is required",
        ),
        (
            r#"equals = "user_login" }]"#,
            r#"regex = "(unclosed" }]"#,
            r#"rule 'ANLY-SEC-001': when[0].regex: invalid regex "(unclosed""#,
        ),
        (
            r#"equals = "user_login" }]"#,
            r#"equals = "user_login" }, { field = "x", matches = "y" }]"#,
            "rule 'ANLY-SEC-001': when[1].matches: unknown key",
        ),
        (
            r#"equals = "user_login" }]"#,
            r#"equals = "user_login", prefix = "u" }]"#,
            "rule 'ANLY-SEC-001': when[0]: more than one operator (equals, prefix)",
        ),
        (
            r#"{ field = "event_type", equals = "user_login" }"#,
            r#"{ field = "event_type" }"#,
            "rule 'ANLY-SEC-001': when[0]: no operator",
        ),
        (
            r#"{ field = "event_type", equals = "user_login" }"#,
            r#"{ equals = "user_login" }"#,
            "rule 'ANLY-SEC-001': when[0].field: is required",
        ),
        (
            r#"{ field = "event_type", equals = "user_login" }"#,
            r#"{ field = "event type", equals = "user_login" }"#,
            "rule 'ANLY-SEC-001': when[0].field: invalid field path",
        ),
        (
            r#"equals = "user_login" }]"#,
            r#"one_of = [] }]"#,
            "rule 'ANLY-SEC-001': when[0].one_of: one_of needs at least one value",
        ),
        (
            r#"equals = "user_login" }]"#,
            r#"one_of = ["a", 1.5] }]"#,
            "rule 'ANLY-SEC-001': when[0].one_of[1]: expected a string, found float",
        ),
        (
            r#"equals = "user_login" }]"#,
            r#"exists = true, case_insensitive = true }]"#,
            "rule 'ANLY-SEC-001': when[0].case_insensitive: cannot be used with exists",
        ),
        (
            r#"equals = "user_login" }]"#,
            r#"equals = "user_login", not = "yes" }]"#,
            "rule 'ANLY-SEC-001': when[0].not: expected true or false, found string",
        ),
        (
            r#"severity = "CRITICAL""#,
            r#"severity = "LOUD""#,
            r#"rule 'ANLY-SEC-001': alert.severity: "LOUD" is not one of INFO, WARNING, ERROR, CRITICAL"#,
        ),
        (
            r#"description = "{count} failures""#,
            r#"description = "{count failures""#,
            "rule 'ANLY-SEC-001': alert.description: unclosed '{'",
        ),
        (
            r#"alert_name = "a""#,
            "",
            "rule 'ANLY-SEC-001': alert.alert_name: is required",
        ),
        (
            r#"alert_name = "a""#,
            r#"alert_name = "a"
colour = "red""#,
            "rule 'ANLY-SEC-001': alert.colour: unknown key",
        ),
        (
            r#"alert_name = "a""#,
            r#"alert_name = "a"
metadata = { tags = ["x", 3] }"#,
            "rule 'ANLY-SEC-001': alert.metadata.tags[1]: expected a string, found integer",
        ),
        (
            r#"name = "Failed Login Burst Detection""#,
            r#"name = """#,
            "rule 'ANLY-SEC-001': name: must not be empty",
        ),
        (
            r#"name = "Failed Login Burst Detection""#,
            r#"name = "n"
priority = 1"#,
            "rule 'ANLY-SEC-001': priority: unknown key",
        ),
        (r#"id = "ANLY-SEC-001""#, "", "rule #1: id: is required"),
        (
            r#"id = "ANLY-SEC-001""#,
            r#"id = "bad id""#,
            "rule #1: id: \"bad id\" contains ' '",
        ),
    ];
    for (from, to, want) in cases {
        assert!(THRESHOLD_RULE.contains(from), "bad test case: {from}");
        let src = THRESHOLD_RULE.replacen(from, to, 1);
        let got = error_of(&src);
        assert!(
            got.starts_with(want),
            "replacing {from:?} by {to:?}\n got: {got}\nwant: {want}..."
        );
    }
}

#[test]
fn match_rules_cannot_use_threshold_placeholders() {
    let src = match_rule("M", r#"[{ field = "user_id", exists = true }]"#)
        .replace("{user_id} did {event_type}", "{count} times");
    let got = error_of(&src);
    assert!(
        got.starts_with(
            "rule 'M': alert.description: placeholder {count} is only available in threshold rules"
        ),
        "{got}"
    );
}

#[test]
fn file_level_errors() {
    let two = format!("{THRESHOLD_RULE}\n{THRESHOLD_RULE}");
    assert!(error_of(&two)
        .starts_with("rule 'ANLY-SEC-001': id: duplicate rule id (rule #1 has it too)"));
    assert!(error_of("").starts_with("rule: no rules defined"));
    assert!(error_of("rules = 1").starts_with("rules: unknown top-level key"));
    assert!(error_of("rule = 1").starts_with("rule: expected [[rule]] tables"));
    let syntax = error_of("[[rule]\nid = ");
    assert!(syntax.starts_with("invalid TOML:"), "{syntax}");
    match RuleSet::from_toml_str(&THRESHOLD_RULE.replace("count = 3", "count = 0")) {
        Err(RulesError::Invalid { rule, key, .. }) => {
            assert_eq!(rule.as_deref(), Some("ANLY-SEC-001"));
            assert_eq!(key, "threshold.count");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn load_reads_files_and_names_the_path() {
    let dir = std::env::temp_dir().join(format!("auditflow-rules-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, THRESHOLD_RULE).unwrap();
    assert_eq!(RuleSet::load(&good).unwrap().rules().len(), 1);

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, THRESHOLD_RULE.replace("60s", "6o s")).unwrap();
    let err = RuleSet::load(&bad).unwrap_err().to_string();
    assert!(err.contains("bad.toml"), "{err}");
    assert!(
        err.contains(r#"rule 'ANLY-SEC-001': threshold.window: invalid duration "6o s""#),
        "{err}"
    );

    let missing = dir.join("missing.toml");
    let err = RuleSet::load(&missing).unwrap_err();
    assert!(matches!(err, RulesError::Io { .. }));
    assert!(err.to_string().contains("missing.toml"));
    std::fs::remove_dir_all(&dir).ok();
}
