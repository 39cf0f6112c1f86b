//! Observability end to end, against a running `auditflow up`:
//!
//! - `/metrics` exports the documented series with the values the traffic
//!   implies, and `GET /v1/slo` reports the SLOs evaluated from it;
//! - every metric the shipped Grafana dashboards and Prometheus rules name
//!   is one AuditFlow exports (compared with a live scrape);
//! - a real Prometheus (Debian's `prometheus`) scrapes AuditFlow, loads the
//!   shipped rules and answers queries for key series and recording rules.

mod observability_support;
use auditflow_chaos::read_api;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use observability_support::{
    eventually, exported_names, names_in_query, repo_root, sample, start_auditflow,
};
use read_api::get_text;

fn login_failure(user: &str, second: u32) -> Value {
    json!({
        "timestamp": format!("2026-11-22T21:46:{second:02}.000000Z"),
        "source_service": "observability-test",
        "server_hostname": "prod-web-01",
        "event_type": "user_login",
        "severity": "WARNING",
        "user_id": user,
        "action_result": "FAILURE",
        "details": {"reason": "Incorrect password", "ip_address": "192.168.1.150"}
    })
}

/// Sends three failed logins of one user on one host (one ANLY-SEC-001
/// alert), one invalid item (400) and one read; returns the first scrape in
/// which the alert has reached the file channel.
async fn drive_traffic(client: &reqwest::Client, base: &str) -> String {
    // Three failed logins of one user on one host: one ANLY-SEC-001 alert.
    let burst: Vec<Value> = (0..3).map(|i| login_failure("mallory", 30 + i)).collect();
    let answer = client
        .post(format!("{base}/v1/events"))
        .json(&burst)
        .send()
        .await
        .expect("POST");
    assert_eq!(answer.status(), 202);
    // One invalid item: refused with 400, counted as rejected.
    let answer = client
        .post(format!("{base}/v1/events"))
        .json(&json!({"event_type": "user_login"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(answer.status(), 400);
    let answer = client
        .get(format!("{base}/v1/alerts"))
        .send()
        .await
        .expect("GET");
    assert_eq!(answer.status(), 200);

    let metrics_url = format!("{base}/metrics");
    eventually(
        "the alert is delivered to the file channel",
        Duration::from_secs(30),
        || {
            let (client, url) = (client.clone(), metrics_url.clone());
            async move {
                let scrape = get_text(&client, &url).await?;
                let delivered = sample(
                    &scrape,
                    r#"auditflow_notifications_total{channel="file",result="delivered"}"#,
                );
                Ok((delivered == Some(1.0)).then_some(scrape))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_slo_api_reflect_the_traffic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let auditflow = start_auditflow(dir.path(), false)
        .await
        .expect("auditflow up");
    let base = &auditflow.base;
    let client = reqwest::Client::new();

    let scrape = drive_traffic(&client, base).await;
    let metrics_url = format!("{base}/metrics");
    let expect = |selector: &str, value: f64| {
        assert_eq!(
            sample(&scrape, selector),
            Some(value),
            "{selector} in:\n{scrape}"
        );
    };
    expect("auditflow_events_ingested_total", 3.0);
    expect(r#"auditflow_events_processed_total{result="ok"}"#, 3.0);
    expect(r#"auditflow_events_rejected_total{result="invalid"}"#, 1.0);
    expect(
        r#"auditflow_alerts_triggered_total{rule_id="ANLY-SEC-001",severity="CRITICAL"}"#,
        1.0,
    );
    expect(
        r#"auditflow_notifications_total{channel="log",result="delivered"}"#,
        1.0,
    );
    expect(
        r#"auditflow_http_request_duration_seconds_count{method="POST",route="/v1/events",code="202"}"#,
        1.0,
    );
    expect(
        r#"auditflow_http_request_duration_seconds_count{method="POST",route="/v1/events",code="400"}"#,
        1.0,
    );
    expect(
        r#"auditflow_http_request_duration_seconds_count{method="GET",route="/v1/alerts",code="200"}"#,
        1.0,
    );
    expect("auditflow_event_analysis_latency_seconds_count", 3.0);
    expect("auditflow_ingest_to_alert_seconds_count", 1.0);
    expect(r#"auditflow_queue_depth{queue="audit_events"}"#, 0.0);
    expect(r#"auditflow_dead_letters{queue="audit_events"}"#, 0.0);
    let analysed_batches = sample(&scrape, "auditflow_event_processing_duration_seconds_count");
    assert!(
        analysed_batches.is_some_and(|n| (1.0..=3.0).contains(&n)),
        "{analysed_batches:?}"
    );
    let inserts = sample(
        &scrape,
        r#"auditflow_store_query_duration_seconds_count{operation="insert_events"}"#,
    );
    assert!(inserts.is_some_and(|n| n >= 1.0), "{inserts:?}");
    let store_calls = sample(
        &scrape,
        r#"auditflow_resilience_call_duration_seconds_count{dependency="store"}"#,
    );
    assert!(store_calls.is_some_and(|n| n >= 1.0), "{store_calls:?}");
    for dependency in ["broker", "store", "windows"] {
        expect(
            &format!(r#"auditflow_dependency_up{{dependency="{dependency}"}}"#),
            1.0,
        );
        expect(
            &format!(r#"auditflow_dependency_degraded{{dependency="{dependency}"}}"#),
            0.0,
        );
    }
    for name in [
        "auditflow_slo_objective_ratio",
        "auditflow_slo_error_budget_remaining_ratio",
        "auditflow_slo_burn_rate",
        "auditflow_slo_alert_firing",
        "auditflow_resilience_breaker_state",
    ] {
        assert!(
            exported_names(&scrape).contains(name),
            "{name} not exported"
        );
    }

    // The SLO evaluator runs every 10 s: wait for the evaluation that saw
    // the traffic. 3 events analysed well within 500 ms, 1 ingest request
    // answered 202 and one 400 (a client error: no budget spent).
    let slo_url = format!("{base}/v1/slo");
    let slos = eventually("the SLOs see the traffic", Duration::from_secs(30), || {
        let (client, url) = (client.clone(), slo_url.clone());
        async move {
            let text = get_text(&client, &url).await?;
            let report: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            let slos = report["slos"].as_array().cloned().unwrap_or_default();
            let seen = slos
                .iter()
                .any(|s| s["name"] == "analysis_latency" && s["period_counts"]["total"] == 3);
            Ok(seen.then_some(slos))
        }
    })
    .await;
    let by_name = |name: &str| -> &Value {
        slos.iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no SLO {name}: {slos:?}"))
    };
    let ingest = by_name("ingest_availability");
    assert_eq!(ingest["objective"], 0.999);
    assert_eq!(ingest["period_counts"], json!({"good": 2, "total": 2}));
    assert_eq!(ingest["error_budget_remaining"], 1.0);
    let alerts: Vec<&str> = ingest["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| a["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(alerts, ["page_1h", "page_6h", "ticket_3d"]);
    assert!(ingest["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .all(|a| a["firing"] == false));
    assert_eq!(
        by_name("analysis_latency")["period_counts"],
        json!({"good": 3, "total": 3})
    );
    assert_eq!(
        by_name("analysis_errors")["period_counts"],
        json!({"good": 3, "total": 3})
    );
    let reads = &by_name("read_availability")["period_counts"];
    assert!(
        reads["total"].as_u64().is_some_and(|n| n >= 1) && reads["good"] == reads["total"],
        "{reads}"
    );

    let scrape = get_text(&client, &metrics_url).await.expect("scrape");
    assert_eq!(
        sample(
            &scrape,
            r#"auditflow_slo_error_budget_remaining_ratio{slo="ingest_availability"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &scrape,
            r#"auditflow_slo_objective_ratio{slo="analysis_latency"}"#
        ),
        Some(0.99)
    );
    assert_eq!(
        sample(
            &scrape,
            r#"auditflow_slo_alert_firing{slo="ingest_availability",alert="page_1h",severity="page"}"#
        ),
        Some(0.0)
    );
}

/// Every PromQL expression in the shipped dashboards and rules.
fn shipped_queries() -> Vec<(String, String)> {
    let root = repo_root().join("deploy");
    let mut queries = Vec::new();
    let dashboards = std::fs::read_dir(root.join("grafana")).expect("deploy/grafana");
    let mut count = 0;
    for entry in dashboards {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            count += 1;
            let text = std::fs::read_to_string(&path).expect("read dashboard");
            let dashboard: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            let panels = dashboard["panels"].as_array().expect("panels");
            assert!(!panels.is_empty(), "{} has no panels", path.display());
            for panel in panels {
                let targets = panel["targets"].as_array().expect("targets");
                assert!(
                    !targets.is_empty(),
                    "{}: a panel without queries",
                    path.display()
                );
                for target in targets {
                    let expr = target["expr"].as_str().expect("expr").to_string();
                    queries.push((path.display().to_string(), expr));
                }
            }
        }
    }
    assert!(
        count >= 7,
        "expected the overview, role, resilience and SLO dashboards"
    );
    let rules = root.join("prometheus/auditflow.rules.yml");
    let text = std::fs::read_to_string(&rules).expect("rules");
    queries.push((rules.display().to_string(), text));
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboards_and_rules_name_is_exported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let auditflow = start_auditflow(dir.path(), false)
        .await
        .expect("auditflow up");
    let client = reqwest::Client::new();
    // Labelled series appear with their first event: drive some first.
    let scrape = drive_traffic(&client, &auditflow.base).await;
    let exported = exported_names(&scrape);
    assert!(
        exported.contains("auditflow_events_ingested_total"),
        "{exported:?}"
    );

    let rules_text =
        std::fs::read_to_string(repo_root().join("deploy/prometheus/auditflow.rules.yml"))
            .expect("rules");
    let recorded: BTreeSet<String> = rules_text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record: "))
        .map(str::to_string)
        .collect();
    let mut unknown = Vec::new();
    let mut named = 0;
    for (file, query) in shipped_queries() {
        let (metrics, recordings) = names_in_query(&query);
        named += metrics.len();
        for metric in metrics.difference(&exported) {
            unknown.push(format!("{file}: {metric}"));
        }
        for recording in recordings.difference(&recorded) {
            unknown.push(format!("{file}: recording rule {recording} is not defined"));
        }
    }
    assert!(named > 40, "the queries name metrics ({named})");
    assert!(
        unknown.is_empty(),
        "names AuditFlow does not export:\n{}",
        unknown.join("\n")
    );
}

/// A port free now (the kernel's choice), for a child that cannot bind :0
/// and report back.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn prometheus_query(
    client: &reqwest::Client,
    base: &str,
    query: &str,
) -> Result<Vec<Value>, String> {
    let url = reqwest::Url::parse_with_params(&format!("{base}/api/v1/query"), [("query", query)])
        .map_err(|e| format!("query {query}: {e}"))?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("query {query}: {e}"))?;
    let body: Value = response
        .json()
        .await
        .map_err(|e| format!("query {query}: {e}"))?;
    if body["status"] != "success" {
        return Err(format!("query {query}: {body}"));
    }
    Ok(body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn value_of(series: &Value) -> Option<f64> {
    series["value"][1].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_auditflow_and_evaluates_the_shipped_rules() {
    let prometheus_bin = which("prometheus").expect(
        "the prometheus binary is missing: scripts/test.sh installs Debian's `prometheus` package",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let auditflow = start_auditflow(dir.path(), true)
        .await
        .expect("auditflow up --demo");
    let target = auditflow.base.trim_start_matches("http://").to_string();
    let rules = repo_root()
        .join("deploy/prometheus/auditflow.rules.yml")
        .canonicalize()
        .expect("rules path");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: auditflow\n    static_configs:\n      - targets: ['{target}']\n",
            rules.display()
        ),
    )
    .expect("write prometheus.yml");
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
    let mut prometheus = tokio::process::Command::new(prometheus_bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("start prometheus");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let log_path = dir.path().join("prometheus.log");

    let checks: [Check; 5] = [
        ("the target is up", r#"up{job="auditflow"}"#, |v| v == 1.0),
        (
            "events are ingested",
            "auditflow_events_ingested_total",
            |v| v > 0.0,
        ),
        (
            "events are analysed",
            r#"sum(rate(auditflow_events_processed_total{result="ok"}[10s]))"#,
            |v| v > 0.0,
        ),
        (
            "the in-process SLO is exported",
            r#"auditflow_slo_objective_ratio{slo="ingest_availability"}"#,
            |v| v == 0.999,
        ),
        (
            "the recording rules evaluate the ingest SLI from real traffic",
            r#"auditflow:slo_errors:ratio_rate5m{slo="ingest_availability"}"#,
            |v| (0.0..=1.0).contains(&v),
        ),
    ];
    for (what, query, ok) in checks {
        eventually(what, Duration::from_secs(60), || {
            let (client, base, log_path) = (client.clone(), base.clone(), log_path.clone());
            async move {
                let series = prometheus_query(&client, &base, query).await.map_err(|e| {
                    format!(
                        "{e}; prometheus log: {}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    )
                })?;
                let values: Vec<f64> = series.iter().filter_map(value_of).collect();
                Ok((values.len() == 1 && ok(values[0])).then_some(()))
            }
        })
        .await;
    }

    // Every shipped rule loaded and evaluates without error; the SLOs that
    // only errors can burn (not load on this shared machine) do not page.
    let rules: Value = client
        .get(format!("{base}/api/v1/rules"))
        .send()
        .await
        .expect("rules")
        .json()
        .await
        .expect("rules JSON");
    let groups = rules["data"]["groups"].as_array().expect("groups");
    let all: Vec<&Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    assert!(all.len() >= 30, "{} rules loaded", all.len());
    for rule in &all {
        assert_ne!(rule["health"], "err", "rule failed: {rule}");
    }
    let firing = prometheus_query(
        &client,
        &base,
        r#"ALERTS{alertstate="firing",slo=~"ingest_availability|analysis_errors"}"#,
    )
    .await
    .expect("ALERTS");
    assert!(
        firing.is_empty(),
        "pages on a healthy AuditFlow: {firing:?}"
    );

    prometheus.start_kill().expect("stop prometheus");
    let _ = prometheus.wait().await;
}

/// What to wait for, the PromQL query, and the test its one value must pass.
type Check = (&'static str, &'static str, fn(f64) -> bool);

fn which(binary: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| std::path::Path::new(dir).join(binary))
        .find(|path| path.is_file())
}

/// JSON lines of a file (none when it does not exist).
fn json_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn notices<'a>(lines: &'a [Value], key: &str, state: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|a| {
            a["analysis_rule"]["rule_id"] == "SYS-ROLE-DEAD"
                && a["impacted_resource"]["resource_id"] == key
                && a["action_observed"] == state
        })
        .collect()
}

async fn heartbeat(client: &reqwest::Client, base: &str, instance: &str) {
    let answer = client
        .post(format!("{base}/v1/heartbeats"))
        .json(&json!({"role": "analyze", "instance": instance}))
        .send()
        .await
        .expect("POST /v1/heartbeats");
    assert_eq!(answer.status(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_channel_failing_system_alerts_land_in_the_fallback_file_and_are_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The monitor's only channel is a webhook to a port nobody listens on.
    let closed = free_port();
    let config = dir.path().join("auditflow.toml");
    std::fs::write(
        &config,
        format!(
            "[monitor]\nchannels = [{{ kind = \"webhook\", name = \"pager\", url = \"http://127.0.0.1:{closed}/hook\" }}]\n\
             [resilience.webhook.retry]\nmax_attempts = 1\n\
             [resilience.webhook.timeout]\nper_attempt = \"300ms\"\ntotal = \"500ms\"\n"
        ),
    )
    .expect("config");
    let auditflow = observability_support::start_auditflow_with(dir.path(), false, Some(&config))
        .await
        .expect("auditflow up");
    let base = auditflow.base.clone();
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let fallback = dir.path().join("data/system-alerts-fallback.ndjson");

    // An analyze process elsewhere (same heartbeat protocol) beats for ten
    // seconds, then goes silent.
    let ghost = "127.0.0.1:1";
    for _ in 0..10 {
        heartbeat(&client, &base, ghost).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let member = format!("analyze@{ghost}");
    // Every attempt fails; each lands in the fallback file and none counts
    // as sent, so the next check (1 s later) tries again instead of waiting
    // out the 5-minute repeat interval.
    let lines = eventually(
        "two firing notices in the fallback file",
        Duration::from_secs(30),
        || {
            let (fallback, member) = (fallback.clone(), member.clone());
            async move {
                let lines = json_lines(&fallback);
                Ok((notices(&lines, &member, "FIRING").len() >= 2).then_some(lines))
            }
        },
    )
    .await;
    let first = &notices(&lines, &member, "FIRING")[0];
    assert_eq!(first["alert_type"], "SYSTEM");
    assert_eq!(
        first["metadata"]["playbook_url"],
        "docs/operations.md#role-dead"
    );
    assert!(
        !dir.path().join("data/system-alerts.ndjson").exists(),
        "no file channel is configured"
    );

    let scrape = get_text(&client, &format!("{base}/metrics"))
        .await
        .expect("scrape");
    let fallbacks = sample(
        &scrape,
        r#"auditflow_system_alerts_total{kind="role_dead",state="firing",result="fallback"}"#,
    );
    assert!(fallbacks.is_some_and(|n| n >= 2.0), "{fallbacks:?}");
    assert_eq!(
        sample(
            &scrape,
            r#"auditflow_monitor_role_instances{role="analyze",status="dead"}"#
        ),
        Some(1.0),
        "the silent instance (the local analyze role is alive)"
    );

    // It comes back: a resolved notice, in the fallback file too.
    eventually(
        "a resolved notice in the fallback file",
        Duration::from_secs(30),
        || {
            let (client, base, fallback, member) = (
                client.clone(),
                base.clone(),
                fallback.clone(),
                member.clone(),
            );
            async move {
                heartbeat(&client, &base, ghost).await;
                let lines = json_lines(&fallback);
                Ok((!notices(&lines, &member, "RESOLVED").is_empty()).then_some(()))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_are_flat_json_with_role_and_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let auditflow = start_auditflow(dir.path(), false)
        .await
        .expect("auditflow up");
    let client = reqwest::Client::new();
    drive_traffic(&client, &auditflow.base).await;
    // stderr is a file, so the default format is JSON. The log channel's
    // line for the alert is written before its delivery is counted.
    let log = std::fs::read_to_string(dir.path().join("auditflow.log")).expect("log");
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(!lines.is_empty());
    for line in &lines {
        for key in ["timestamp", "level", "target", "message", "role"] {
            assert!(line[key].is_string(), "no {key}: {line}");
        }
    }
    let alert = lines
        .iter()
        .find(|l| l["target"] == "auditflow::alerts")
        .unwrap_or_else(|| panic!("no alert line in:\n{log}"));
    assert_eq!(
        alert["role"], "notify",
        "the innermost span's role wins: {alert}"
    );
    assert_eq!(alert["level"], "WARN");
    assert_eq!(alert["rule_id"], "ANLY-SEC-001");
    assert!(
        alert["alert_id"].as_str().is_some_and(|id| id.len() == 36),
        "{alert}"
    );
    assert!(
        alert["correlation_id"]
            .as_str()
            .is_some_and(|id| id.len() == 36),
        "{alert}"
    );
    assert!(
        alert["message"]
            .as_str()
            .is_some_and(|m| m.contains("Failed Login")),
        "{alert}"
    );
}
