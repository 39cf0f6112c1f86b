//! `[[notify.routes]]` end to end: `auditflow up` as a child process with
//! three file channels, two of them routed. A failed-login burst
//! (ANLY-SEC-001, tag `brute-force`) and a change to /etc/shadow
//! (ANLY-SEC-002, tag `file-integrity`) each reach the unrouted channel and
//! only the channel whose route matches them; the alerts' delivery records
//! say the same.

use auditflow_chaos::read_api;
#[allow(dead_code)] // helpers shared with the recovery tests
mod recovery_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use read_api::get_json;

/// Alert ids in a file channel's NDJSON file (empty when absent).
fn ids_in(path: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|alert| alert["alert_id"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_routed_channel_gets_only_the_alerts_its_routes_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str| dir.path().join(format!("{name}.ndjson"));
    let config = dir.path().join("auditflow.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[notify.channels]]
kind = "file"
name = "everything"
path = "{everything}"

[[notify.channels]]
kind = "file"
name = "auth-team"
path = "{auth}"

[[notify.channels]]
kind = "file"
name = "integrity-pager"
path = "{integrity}"

[[notify.routes]]
channels = ["auth-team"]
tags = ["brute-force"]

[[notify.routes]]
channels = ["integrity-pager"]
rule_id = ["ANLY-SEC-002"]
severity = ["CRITICAL"]
"#,
            everything = file("everything").display(),
            auth = file("auth").display(),
            integrity = file("integrity").display(),
        ),
    )
    .expect("config");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let data = dir.path().join("data");
    let mut platform = recovery_support::start_platform(
        &data,
        &dir.path().join("auditflow.log"),
        &["--config".to_string(), config.display().to_string()],
        &[],
        &client,
    )
    .await
    .expect("auditflow up");

    let now = chrono::Utc::now();
    let mut events: Vec<Value> = (0..3)
        .map(|i| {
            json!({
                "timestamp": (now - chrono::Duration::seconds(3 - i)).to_rfc3339(),
                "source_service": "routes-test", "server_hostname": "web-01",
                "event_type": "user_login", "severity": "WARNING", "user_id": "mallory",
                "action_result": "FAILURE", "details": {"reason": "Incorrect password"}
            })
        })
        .collect();
    events.push(json!({
        "timestamp": now.to_rfc3339(),
        "source_service": "routes-test", "server_hostname": "db-01",
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

    // Both alerts reach the unrouted channel.
    let start = Instant::now();
    let alerts: Vec<Value> = loop {
        let page = get_json(&client, &format!("{}/v1/alerts?limit=10", platform.base))
            .await
            .expect("alerts");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= 2 && ids_in(&file("everything")).len() >= 2 {
            break items;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "alerts not delivered: {page}\n{}",
            platform.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let id_of = |rule: &str| {
        alerts
            .iter()
            .find(|a| a["analysis_rule"]["rule_id"] == rule)
            .and_then(|a| a["alert_id"].as_str())
            .unwrap_or_else(|| panic!("no {rule} alert in {alerts:?}"))
            .to_string()
    };
    let (burst, shadow) = (id_of("ANLY-SEC-001"), id_of("ANLY-SEC-002"));
    assert_eq!(alerts.len(), 2, "{alerts:?}");

    // Delivery records are written after the channels took the alerts:
    // once both alerts show theirs, every channel is done.
    for (alert, expected) in [
        (&burst, ["auth-team", "everything"]),
        (&shadow, ["everything", "integrity-pager"]),
    ] {
        let start = Instant::now();
        loop {
            let detail = get_json(&client, &format!("{}/v1/alerts/{alert}", platform.base))
                .await
                .expect("alert");
            let channels: BTreeSet<String> = detail["deliveries"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["status"] == "delivered")
                .filter_map(|d| d["channel"].as_str().map(str::to_string))
                .collect();
            if channels.len() >= 2 {
                assert_eq!(
                    channels,
                    expected.iter().map(|c| c.to_string()).collect(),
                    "{detail}"
                );
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "deliveries of {alert} not recorded: {detail}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(
        ids_in(&file("everything")),
        [burst.clone(), shadow.clone()].into()
    );
    assert_eq!(ids_in(&file("auth")), [burst.clone()].into());
    assert_eq!(ids_in(&file("integrity")), [shadow.clone()].into());

    let metrics = read_api::get_text(&client, &format!("{}/metrics", platform.base))
        .await
        .expect("metrics");
    for channel in ["auth-team", "integrity-pager"] {
        assert!(
            metrics.contains(&format!(
                "auditflow_notifications_total{{channel=\"{channel}\",result=\"not_routed\"}} 1"
            )),
            "{channel}: no not_routed count in\n{metrics}"
        );
    }
    let status = platform.sigterm_and_wait().await.expect("SIGTERM");
    assert!(status.success(), "{status}");
}
