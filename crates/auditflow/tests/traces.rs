//! Traces end to end, received by an in-test OTLP/HTTP receiver:
//!
//! 1. split mode over RabbitMQ (`auditflow run ingest`, `run analyze`, `run
//!    notify` as separate processes): one event is one trace whose
//!    `ingest`, `analyze`, `notify` and `deliver` spans come from the three
//!    processes, each the child of the one before, the context carried in
//!    the messages' `traceparent`; a request's own `traceparent` is
//!    continued. The batch delay is set far beyond the test, so the spans
//!    arrive only because SIGTERM flushes them.
//! 2. `auditflow up` (embedded broker): the same trace, exported on the
//!    batch processor's schedule while the process runs, with `RUST_LOG=warn`.
//! 3. An unreachable collector changes nothing: ingest answers 202 and the
//!    events are analysed.

#[allow(dead_code)] // not every helper is used here
mod observability_support;
mod otlp_receiver;
use auditflow_chaos::read_api;
#[allow(dead_code)] // not every helper is used here
mod split_support;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use auditflow_core::alert_id_for;
use futures::future::join_all;
use serde_json::{json, Value};
use uuid::Uuid;

use observability_support::{eventually, start_auditflow_with};
use otlp_receiver::{ReceivedSpan, Receiver};
use split_support::{http_client, log_tail, start, stop_all, Isolation};

/// The rule a single sensitive-file modification fires.
const RULE_FILE: &str = "ANLY-SEC-002";
/// SpanKind numbers of the OTLP protobuf.
const KIND_INTERNAL: i32 = 1;
const KIND_PRODUCER: i32 = 4;
const KIND_CONSUMER: i32 = 5;
/// A client's own trace context, as a caller would send it.
const CLIENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

fn passwd_modified() -> (Uuid, Value) {
    let id = Uuid::new_v4();
    let event = json!({
        "event_id": id.to_string(),
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "source_service": "traces-test",
        "server_hostname": "prod-db-02",
        "event_type": "file_modified",
        "severity": "CRITICAL",
        "user_id": "devops_admin",
        "action_result": "MODIFIED",
        "details": {"resource": "/etc/passwd"}
    });
    (id, event)
}

async fn post_event(
    http: &reqwest::Client,
    base: &str,
    event: &Value,
    traceparent: Option<&str>,
) -> Result<(), String> {
    let mut request = http.post(format!("{base}/v1/events")).json(event);
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    if status != reqwest::StatusCode::ACCEPTED {
        let body = response.text().await.unwrap_or_default();
        return Err(format!("POST /v1/events: {status}: {body}"));
    }
    Ok(())
}

/// The spans of the trace that `event_id`'s ingest span started, checked to
/// be one chain ingest -> analyze -> notify -> deliver (one `deliver` per
/// channel); returns (ingest, analyze, notify) and the trace's spans.
fn chain_of(
    spans: &[ReceivedSpan],
    event_id: Uuid,
) -> Result<([ReceivedSpan; 3], Vec<ReceivedSpan>), String> {
    let event_id = event_id.to_string();
    let of_event: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.attribute("event_id") == Some(&event_id))
        .collect();
    let traces: HashSet<&str> = of_event.iter().map(|s| s.trace_id.as_str()).collect();
    if traces.len() > 1 {
        return Err(format!(
            "event {event_id} is in {} traces: {of_event:#?}",
            traces.len()
        ));
    }
    let find = |name: &str| {
        of_event
            .iter()
            .find(|s| s.name == name)
            .map(|s| (*s).clone())
            .ok_or_else(|| {
                format!(
                    "no {name} span of event {event_id} among {} spans: {:?}",
                    spans.len(),
                    spans.iter().map(|s| &s.name).collect::<Vec<_>>()
                )
            })
    };
    let ingest = find("ingest")?;
    let analyze = find("analyze")?;
    let trace: Vec<ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == ingest.trace_id)
        .cloned()
        .collect();
    let notify = trace
        .iter()
        .find(|s| s.name == "notify")
        .cloned()
        .ok_or_else(|| format!("no notify span in the trace: {trace:#?}"))?;
    let delivers: Vec<&ReceivedSpan> = trace.iter().filter(|s| s.name == "deliver").collect();
    if analyze.parent_span_id != ingest.span_id {
        return Err(format!(
            "analyze is not the child of ingest: {analyze:#?} {ingest:#?}"
        ));
    }
    if notify.parent_span_id != analyze.span_id {
        return Err(format!(
            "notify is not the child of analyze: {notify:#?} {analyze:#?}"
        ));
    }
    if delivers.is_empty() || delivers.iter().any(|d| d.parent_span_id != notify.span_id) {
        return Err(format!(
            "the deliver spans are not notify's children: {delivers:#?}"
        ));
    }
    Ok(([ingest, analyze, notify], trace))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_is_one_trace_across_the_ingest_analyze_and_notify_processes() {
    let receiver = Receiver::start().await;
    let iso = Isolation::new("traces");
    let http = http_client();
    let env = [
        ("AUDITFLOW_TELEMETRY__OTLP_ENDPOINT", receiver.base.as_str()),
        // Far beyond the test: what arrives was flushed at SIGTERM.
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ("AUDITFLOW_LOG__FORMAT", "json"),
    ];
    // analyze first, as the distributed tests start it, then the others.
    let analyze = start(&iso, "analyze", "analyze", &env, &http).await;
    let mut procs = join_all([
        start(&iso, "ingest", "ingest", &env, &http),
        start(&iso, "notify", "notify", &env, &http),
    ])
    .await;
    procs.insert(1, analyze);
    let ingest = procs[0].base.clone();
    let alerts_file = procs[2].alerts_file();

    let (plain, plain_event) = passwd_modified();
    let (continued, continued_event) = passwd_modified();
    let client = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let delivered = |count: usize| {
        let alerts_file = alerts_file.clone();
        eventually(
            "the alerts in notify's file",
            Duration::from_secs(30),
            move || {
                let text = std::fs::read_to_string(&alerts_file).unwrap_or_default();
                let lines = text.lines().count();
                async move { Ok((lines >= count).then_some(())) }
            },
        )
    };
    // One at a time, so that the first alert is a batch of its own (whose
    // log channel line then carries its trace id).
    for (n, (event, traceparent)) in [(&plain_event, None), (&continued_event, Some(&client))]
        .into_iter()
        .enumerate()
    {
        if let Err(e) = post_event(&http, &ingest, event, traceparent.map(String::as_str)).await {
            let failures = stop_all(&mut procs).await;
            panic!(
                "{e}\n  ingest:\n{}\n  {failures:?}",
                log_tail(&procs[0].log, 10)
            );
        }
        delivered(n + 1).await;
    }
    let early = receiver.requests();

    let failures = stop_all(&mut procs).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(
        early, 0,
        "spans were exported before shutdown although the batch delay is 10 minutes"
    );
    let spans = receiver.spans();

    let ([ingest_span, analyze_span, notify_span], trace) =
        chain_of(&spans, plain).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ingest_span.parent_span_id, "",
        "a request without traceparent starts a trace"
    );
    for (span, role, kind) in [
        (&ingest_span, "ingest", KIND_PRODUCER),
        (&analyze_span, "analyze", KIND_CONSUMER),
        (&notify_span, "notify", KIND_CONSUMER),
    ] {
        assert_eq!(
            span.resource.get("auditflow.roles").map(String::as_str),
            Some(role),
            "{} came from the wrong process: {span:#?}",
            span.name
        );
        assert_eq!(
            span.resource.get("service.name").map(String::as_str),
            Some("auditflow")
        );
        assert_eq!(span.kind, kind, "{span:#?}");
        assert_eq!(
            span.attribute("messaging.system"),
            Some("rabbitmq"),
            "{span:#?}"
        );
        assert_ne!(span.status, 2, "{span:#?}");
    }
    assert_eq!(analyze_span.attribute("auditflow.alerts"), Some("1"));
    assert_eq!(
        notify_span.attribute("alert_id"),
        Some(alert_id_for(RULE_FILE, plain).to_string().as_str())
    );
    assert_eq!(notify_span.attribute("auditflow.rule_id"), Some(RULE_FILE));
    let channels: HashSet<&str> = trace
        .iter()
        .filter(|s| s.name == "deliver")
        .inspect(|d| assert_eq!(d.kind, KIND_INTERNAL))
        .filter_map(|d| d.attribute("auditflow.channel"))
        .collect();
    assert_eq!(channels, HashSet::from(["log", "file"]), "{trace:#?}");
    assert_eq!(
        trace.len(),
        5,
        "ingest, analyze, notify, 2 x deliver: {trace:#?}"
    );

    // The log channel's line about the alert carries the trace id.
    let alert_id = alert_id_for(RULE_FILE, plain).to_string();
    let notify_log = std::fs::read_to_string(&procs[2].log).expect("notify's log");
    let line = notify_log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["target"] == "auditflow::alerts" && line["alert_id"] == alert_id.as_str())
        .unwrap_or_else(|| panic!("no log channel line for {alert_id}:\n{notify_log}"));
    assert_eq!(line["trace_id"], ingest_span.trace_id.as_str(), "{line}");

    let ([ingest_span, ..], _) = chain_of(&spans, continued).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ingest_span.trace_id, CLIENT_TRACE,
        "the caller's trace goes on"
    );
    assert_eq!(ingest_span.parent_span_id, CLIENT_SPAN);
}

/// Writes a config file exporting traces to `endpoint`.
fn telemetry_config(dir: &Path, endpoint: &str) -> std::path::PathBuf {
    let path = dir.join("auditflow.toml");
    std::fs::write(
        &path,
        format!(
            "[telemetry]\notlp_endpoint = \"{endpoint}\"\nservice_name = \"auditflow-embedded\"\n"
        ),
    )
    .expect("write config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_carries_the_trace_too() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = telemetry_config(dir.path(), &receiver.base);
    let auditflow = start_auditflow_with(dir.path(), false, Some(&config))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let http = http_client();
    let (id, event) = passwd_modified();
    post_event(&http, &auditflow.base, &event, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The batch processor exports every 5 s by default, while running.
    let ([ingest, analyze, notify], _) =
        eventually("the event's trace", Duration::from_secs(30), || {
            let spans = receiver.spans();
            async move { Ok(chain_of(&spans, id).ok()) }
        })
        .await;
    for span in [&ingest, &analyze, &notify] {
        assert_eq!(
            span.attribute("messaging.system"),
            Some("auditflow_embedded"),
            "{span:#?}"
        );
        assert_eq!(
            span.resource.get("service.name").map(String::as_str),
            Some("auditflow-embedded")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_does_not_hold_up_events() {
    // A port nobody listens on: every export fails at once.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let config = telemetry_config(dir.path(), &format!("http://127.0.0.1:{closed}"));
    let auditflow = start_auditflow_with(dir.path(), false, Some(&config))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let http = http_client();
    // Across more than one export interval (5 s), so exports fail meanwhile.
    let mut ids = Vec::new();
    let until = std::time::Instant::now() + Duration::from_secs(7);
    while std::time::Instant::now() < until {
        let (id, event) = passwd_modified();
        post_event(&http, &auditflow.base, &event, None)
            .await
            .unwrap_or_else(|e| panic!("with the collector unreachable: {e}"));
        ids.push(id);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expected = ids.len();
    eventually("every event analysed", Duration::from_secs(30), || {
        let (http, base) = (http.clone(), auditflow.base.clone());
        async move {
            let events = read_api::list_all(&http, &base, "/v1/events", "").await?;
            Ok((events.len() >= expected).then_some(()))
        }
    })
    .await;
}
