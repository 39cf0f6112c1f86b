//! The email channel end to end: `auditflow up` as a child process with a
//! file channel and three email channels, each sending to its own real SMTP
//! receiver on loopback (tests/smtp_support): one accepts (with AUTH, the
//! password from an environment variable), one answers 451 to each message's
//! first attempt, one refuses every recipient with 550.
//!
//! Each alert arrives once at the accepting server, with the headers and a
//! body that carry what the on-call person needs; the temporary refusal is
//! retried and then delivered; the permanent one is tried once per alert and
//! recorded failed with the server's reason.

use auditflow_chaos::read_api;
#[allow(dead_code)] // helpers shared with the recovery tests
mod recovery_support;
mod smtp_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use read_api::get_json;
use smtp_support::{Answer, SmtpServer};

const PASSWORD: &str = "correct horse battery staple";

/// Alert ids in a file channel's NDJSON file (empty when absent).
fn ids_in(path: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|alert| alert["alert_id"].as_str().map(str::to_string))
        .collect()
}

/// One `[[notify.channels]]` email table for `server`.
fn email_channel(name: &str, server: &SmtpServer, extra: &str) -> String {
    format!(
        r#"
[[notify.channels]]
kind = "email"
name = "{name}"
host = "127.0.0.1"
port = {port}
tls = "none"
from = "AuditFlow <alerts@auditflow.test>"
to = ["oncall@example.test", "SecOps <secops@example.test>"]
subject = "[{{severity}}] {{name}} ({{rule}}) on {{host}}"
{extra}
"#,
        port = server.addr.port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mails_each_alert_once_retries_4xx_and_records_5xx() {
    let accepting = SmtpServer::start(Answer::Accept, Some(("auditflow", PASSWORD))).await;
    let greylisting = SmtpServer::start(Answer::TempFailFirstAttempt, None).await;
    let refusing = SmtpServer::start(Answer::RejectRecipients, None).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let alerts_file = dir.path().join("alerts.ndjson");
    let config = dir.path().join("auditflow.toml");
    let mut text = format!(
        "[[notify.channels]]\nkind = \"file\"\nname = \"file\"\npath = \"{}\"\n",
        alerts_file.display()
    );
    text += &email_channel(
        "mail",
        &accepting,
        "username = \"auditflow\"\npassword_env = \"AF_TEST_SMTP_PASSWORD\"",
    );
    // Quick retries, so the test does not wait out the email defaults.
    text += &email_channel(
        "mail-greylisted",
        &greylisting,
        "[notify.channels.resilience.retry]\ninitial_backoff = \"50ms\"\nmax_backoff = \"100ms\"",
    );
    // Retries allowed, to show a 5xx does not use them.
    text += &email_channel(
        "mail-refused",
        &refusing,
        "[notify.channels.resilience.retry]\nmax_attempts = 5\ninitial_backoff = \"10ms\"",
    );
    std::fs::write(&config, text).expect("config");

    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let log = dir.path().join("auditflow.log");
    let mut platform = recovery_support::start_platform(
        &dir.path().join("data"),
        &log,
        &["--config".to_string(), config.display().to_string()],
        &[("AF_TEST_SMTP_PASSWORD".to_string(), PASSWORD.to_string())],
        &client,
    )
    .await
    .expect("auditflow up");

    // A failed-login burst (ANLY-SEC-001) and a change to /etc/shadow
    // (ANLY-SEC-002): two alerts.
    let now = chrono::Utc::now();
    let mut events: Vec<Value> = (0..3)
        .map(|i| {
            json!({
                "timestamp": (now - chrono::Duration::seconds(3 - i)).to_rfc3339(),
                "source_service": "email-test", "server_hostname": "web-01",
                "event_type": "user_login", "severity": "WARNING", "user_id": "mallory",
                "action_result": "FAILURE", "details": {"reason": "Incorrect password"}
            })
        })
        .collect();
    events.push(json!({
        "timestamp": now.to_rfc3339(),
        "source_service": "email-test", "server_hostname": "db-01",
        "event_type": "file_modified", "severity": "CRITICAL", "user_id": "root",
        "action_result": "MODIFIED", "details": {"resource": "/etc/shadow"}
    }));
    let answer = client
        .post(format!("{}/v1/events", platform.base))
        .json(&events)
        .send()
        .await
        .expect("POST");
    assert_eq!(answer.status(), 202);

    // Wait until both alerts have a delivery record from every channel.
    let channels = ["file", "mail", "mail-greylisted", "mail-refused"];
    let start = Instant::now();
    let (alerts, deliveries) = loop {
        let page = get_json(&client, &format!("{}/v1/alerts?limit=10", platform.base))
            .await
            .expect("alerts");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        let mut deliveries: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        for alert in &items {
            let id = alert["alert_id"].as_str().unwrap_or_default().to_string();
            let detail = get_json(&client, &format!("{}/v1/alerts/{id}", platform.base))
                .await
                .expect("alert");
            let records = detail["deliveries"].as_array().cloned().unwrap_or_default();
            deliveries.insert(
                id,
                records
                    .into_iter()
                    .filter_map(|d| Some((d["channel"].as_str()?.to_string(), d)))
                    .collect(),
            );
        }
        if items.len() >= 2 && deliveries.values().all(|d| d.len() == channels.len()) {
            break (items, deliveries);
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "deliveries not recorded: {deliveries:?}\n{}",
            platform.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let ids: BTreeSet<String> = deliveries.keys().cloned().collect();
    assert_eq!(ids_in(&alerts_file), ids);

    for (id, records) in &deliveries {
        for channel in ["file", "mail", "mail-greylisted"] {
            assert_eq!(
                records[channel]["status"], "delivered",
                "{channel} for {id}: {records:?}"
            );
        }
        let refused = &records["mail-refused"];
        assert_eq!(refused["status"], "failed", "{refused}");
        assert_eq!(refused["attempts"], 1, "a 5xx is not retried: {refused}");
        let reason = refused["last_error"].as_str().unwrap_or_default();
        assert!(
            reason.contains("550") && reason.contains("mailbox unavailable"),
            "the server's reason is recorded: {reason}"
        );
    }

    // Give any stray duplicate time to show up before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The accepting server: one mail per alert, authenticated, to both
    // recipients, headers and body as documented.
    {
        let seen = accepting.seen();
        assert_eq!(seen.mails.len(), 2, "one mail per alert: {:?}", seen.mails);
        assert!(!seen.logins.is_empty(), "AUTH was used");
        assert!(seen
            .logins
            .iter()
            .all(|(u, p)| u == "auditflow" && p == PASSWORD));
        for alert in &alerts {
            let id = alert["alert_id"].as_str().expect("alert_id");
            let message_id = format!("<{id}@auditflow>");
            let mails: Vec<_> = seen
                .mails
                .iter()
                .filter(|m| m.header("Message-ID").as_deref() == Some(message_id.as_str()))
                .collect();
            assert_eq!(mails.len(), 1, "exactly one mail for {id}");
            let mail = mails[0];
            assert_eq!(mail.from, "alerts@auditflow.test");
            assert_eq!(
                mail.to,
                vec!["oncall@example.test", "secops@example.test"],
                "both recipients in the envelope"
            );
            assert_eq!(
                mail.header("From").as_deref(),
                Some("AuditFlow <alerts@auditflow.test>")
            );
            let to = mail.header("To").unwrap_or_default();
            assert!(
                to.contains("oncall@example.test") && to.contains("secops@example.test"),
                "{to}"
            );
            let severity = alert["severity"].as_str().expect("severity");
            let name = alert["alert_name"].as_str().expect("alert_name");
            let rule = alert["analysis_rule"]["rule_id"].as_str().expect("rule");
            let host = alert["impacted_resource"]["server_hostname"]
                .as_str()
                .expect("host");
            assert_eq!(
                mail.header("Subject"),
                Some(format!("[{severity}] {name} ({rule}) on {host}"))
            );
            assert!(mail.header("Date").is_some());
            let body = mail.body();
            for (what, value) in [
                ("name", name),
                ("severity", severity),
                ("rule", rule),
                ("host", host),
                (
                    "actor",
                    alert["triggered_by"]["actor_id"].as_str().unwrap_or("?"),
                ),
                (
                    "resource",
                    alert["impacted_resource"]["resource_id"]
                        .as_str()
                        .unwrap_or("?"),
                ),
                ("description", alert["description"].as_str().unwrap_or("?")),
                (
                    "remediation",
                    alert["metadata"]["remediation_guidance"]
                        .as_str()
                        .unwrap_or("?"),
                ),
                (
                    "playbook",
                    alert["metadata"]["playbook_url"].as_str().unwrap_or("?"),
                ),
                ("alert_id", id),
                (
                    "correlation_id",
                    alert["correlation_id"].as_str().unwrap_or("?"),
                ),
            ] {
                assert!(
                    !value.is_empty() && body.contains(value),
                    "the body lacks the {what} '{value}':\n{body}"
                );
            }
            assert!(body.contains(&format!("alert_id:       {id}")), "{body}");
        }
    }

    // The greylisting server: each message tried twice (451, then 250), the
    // same Message-ID both times; one accepted mail per alert.
    {
        let seen = greylisting.seen();
        assert_eq!(seen.mails.len(), 2, "{:?}", seen.data_attempts);
        assert_eq!(seen.data_attempts.len(), 4, "{:?}", seen.data_attempts);
        for id in &ids {
            let message_id = format!("<{id}@auditflow>");
            assert_eq!(
                seen.data_attempts
                    .iter()
                    .filter(|m| **m == message_id)
                    .count(),
                2,
                "{id}: one 451, one retry: {:?}",
                seen.data_attempts
            );
        }
    }

    // The refusing server: one transaction per alert, no retries.
    {
        let seen = refusing.seen();
        assert_eq!(seen.transactions, 2, "no retry after a 5xx");
        assert!(seen.mails.is_empty());
    }

    let metrics = read_api::get_text(&client, &format!("{}/metrics", platform.base))
        .await
        .expect("metrics");
    for series in [
        "auditflow_notifications_total{channel=\"mail\",result=\"delivered\"} 2",
        "auditflow_notifications_total{channel=\"mail-greylisted\",result=\"delivered\"} 2",
        "auditflow_notifications_total{channel=\"mail-refused\",result=\"failed\"} 2",
        "auditflow_resilience_retries_total{dependency=\"mail-greylisted\"} 2",
        "auditflow_resilience_retries_total{dependency=\"mail-refused\"} 0",
        "auditflow_resilience_breaker_state{dependency=\"mail\"} 0",
    ] {
        assert!(metrics.contains(series), "no '{series}' in\n{metrics}");
    }

    let status = platform.sigterm_and_wait().await.expect("SIGTERM");
    assert!(status.success(), "{status}");
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!logged.contains(PASSWORD), "the password was logged");
}
