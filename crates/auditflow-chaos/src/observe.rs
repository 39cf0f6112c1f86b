//! Watching a deployment: a readiness timeline (for time to detect and time
//! to ready), an end-to-end recovery probe (for the RTO), and the final
//! state read back through the read API and the channel files.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::deployment::{ready_status, Deployment};
use crate::invariants::{ChannelLog, Expectation, Observed};
use crate::read_api::list_all;
use crate::workload::{event_id, probe_event, Gen, RULE_FILE};

/// How often readiness is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// One change of a process's readiness.
#[derive(Debug, Clone)]
struct Change {
    at: Duration,
    process: String,
    ready: bool,
}

/// Readiness of every process, sampled every 100 ms; records changes only.
pub struct Timeline {
    started: Instant,
    changes: Arc<Mutex<Vec<Change>>>,
    task: JoinHandle<()>,
}

impl Timeline {
    /// Starts sampling `deployment`'s processes (by their fixed ports).
    pub fn start(deployment: &Deployment, http: reqwest::Client, started: Instant) -> Timeline {
        let targets: Vec<(String, String)> = deployment
            .procs
            .iter()
            .map(|p| (p.launch.name.clone(), p.base.clone()))
            .collect();
        let changes = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let changes = changes.clone();
            async move {
                let mut last: Vec<Option<bool>> = vec![None; targets.len()];
                loop {
                    for (i, (name, base)) in targets.iter().enumerate() {
                        let ready = ready_status(&http, base).await.as_deref() == Some("ready");
                        if last[i] != Some(ready) {
                            last[i] = Some(ready);
                            if let Ok(mut c) = changes.lock() {
                                c.push(Change {
                                    at: started.elapsed(),
                                    process: name.clone(),
                                    ready,
                                });
                            }
                        }
                    }
                    tokio::time::sleep(SAMPLE_EVERY).await;
                }
            }
        });
        Timeline {
            started,
            changes,
            task,
        }
    }

    /// Time since the run started.
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn changes(&self) -> Vec<Change> {
        self.changes.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The first moment at or after `since` that some process was not ready.
    pub fn first_unready_since(&self, since: Duration) -> Option<Duration> {
        let changes = self.changes();
        // Already unready when `since` came?
        let mut state: std::collections::HashMap<String, bool> = Default::default();
        for c in changes.iter().filter(|c| c.at < since) {
            state.insert(c.process.clone(), c.ready);
        }
        if state.values().any(|ready| !ready) {
            return Some(since);
        }
        changes
            .iter()
            .find(|c| c.at >= since && !c.ready)
            .map(|c| c.at)
    }

    /// The first moment at or after `since` from which every process was
    /// ready (and stayed so until the next change).
    pub fn all_ready_since(&self, since: Duration) -> Option<Duration> {
        let changes = self.changes();
        let mut state: std::collections::HashMap<String, bool> = Default::default();
        let mut candidate = None;
        for c in &changes {
            state.insert(c.process.clone(), c.ready);
            let all = state.values().all(|r| *r);
            if c.at < since {
                candidate = all.then_some(since);
                continue;
            }
            match (all, candidate) {
                (true, None) => candidate = Some(c.at),
                (false, _) => candidate = None,
                _ => {}
            }
        }
        candidate
    }

    /// Stops sampling.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Timeline {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An end-to-end probe sent after a fault: a sensitive-file event sent
/// until acknowledged, then watched until its alert is listed.
pub struct Probe {
    pub event: Value,
    pub alert_id: Uuid,
}

impl Probe {
    pub fn new(gen: &mut Gen, n: usize) -> Probe {
        let event = probe_event(gen, &format!("chaos-probe-{n}"));
        let alert_id = auditflow_core::alert_id_for(RULE_FILE, event_id(&event));
        Probe { event, alert_id }
    }

    /// Sends the probe until it is answered 202 or `within` passes; whether
    /// it was acknowledged.
    pub async fn send(&self, http: &reqwest::Client, ingest_url: &str, within: Duration) -> bool {
        let Ok(body) = serde_json::to_vec(&self.event) else {
            return false;
        };
        let started = Instant::now();
        while started.elapsed() < within {
            let sent = http
                .post(ingest_url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            if matches!(sent, Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Sends the probe (retrying until 202) and waits for its alert; the
    /// time from `from` to the alert being listed, or `None` at the deadline.
    /// `acked` says whether the probe event was acknowledged.
    pub async fn run(
        &self,
        http: &reqwest::Client,
        ingest_url: &str,
        api_base: &str,
        from: Instant,
        deadline: Duration,
    ) -> (Option<Duration>, bool) {
        let left = deadline.saturating_sub(from.elapsed());
        if !self.send(http, ingest_url, left).await {
            return (None, false);
        }
        let url = format!("{api_base}/v1/alerts/{}", self.alert_id);
        while from.elapsed() < deadline {
            if let Ok(r) = http.get(&url).send().await {
                if r.status().is_success() {
                    return (Some(from.elapsed()), true);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (None, true)
    }
}

/// Messages ready or unacked in `queue`, per the read API's `/v1/queues`.
pub async fn queue_depth(http: &reqwest::Client, api_base: &str, queue: &str) -> Option<u64> {
    let value = crate::read_api::get_json(http, &format!("{api_base}/v1/queues"))
        .await
        .ok()?;
    let q = value["queues"]
        .as_array()?
        .iter()
        .find(|q| q["queue"] == queue)?;
    Some(q["ready"].as_u64()? + q["unacked"].as_u64()?)
}

/// Alert ids in an NDJSON channel file, one entry per line (empty when absent).
pub fn file_deliveries(path: &Path) -> Vec<Uuid> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|v| v["alert_id"].as_str().and_then(|s| Uuid::parse_str(s).ok()))
        .collect()
}

fn uuid_at(item: &Value, pointer: &str) -> Option<Uuid> {
    item.pointer(pointer)
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
}

/// Stored events and alerts through the read API.
pub async fn stored(
    http: &reqwest::Client,
    api_base: &str,
) -> Result<(Vec<Uuid>, Vec<(Uuid, String, Uuid)>), String> {
    let events = list_all(http, api_base, "/v1/events", "").await?;
    let alerts = list_all(http, api_base, "/v1/alerts", "").await?;
    let events = events
        .iter()
        .filter_map(|e| uuid_at(e, "/event_id"))
        .collect();
    let alerts = alerts
        .iter()
        .filter_map(|a| {
            Some((
                uuid_at(a, "/alert_id")?,
                a.pointer("/analysis_rule/rule_id")?.as_str()?.to_string(),
                uuid_at(a, "/correlation_id")?,
            ))
        })
        .collect();
    Ok((events, alerts))
}

/// Waits (bounded by `deadline`) until every acknowledged event and every
/// expected alert is stored and written to the file channel; `Err` says
/// how far it got. Then lets the system settle for 3 s: late duplicates or
/// extras would show up in that time.
///
/// `also_delivered`, when given, reads the deliveries of one more channel
/// (a scenario's webhook receiver) that must have every expected alert too:
/// a channel that was down catches up through notify's retries, with their
/// backoff, so it may finish well after the file channel.
pub async fn wait_complete(
    http: &reqwest::Client,
    deployment: &Deployment,
    expect: &Expectation,
    deadline: Duration,
    also_delivered: Option<&dyn Fn() -> Vec<Uuid>>,
) -> Result<Duration, String> {
    let started = Instant::now();
    let acked: HashSet<Uuid> = expect.acked.iter().copied().collect();
    let api = deployment.api_base();
    let file = deployment.alerts_file();
    let mut last = String::from("nothing read yet");
    let mut complete = false;
    while started.elapsed() < deadline {
        match stored(http, &api).await {
            Ok((events, alerts)) => {
                let events: HashSet<Uuid> = events.into_iter().collect();
                let alerts: HashSet<Uuid> = alerts.into_iter().map(|a| a.0).collect();
                let delivered: HashSet<Uuid> = file_deliveries(&file).into_iter().collect();
                let other: Option<HashSet<Uuid>> =
                    also_delivered.map(|read| read().into_iter().collect());
                complete = acked.is_subset(&events)
                    && expect.alerts.keys().all(|a| {
                        alerts.contains(a)
                            && delivered.contains(a)
                            && other.as_ref().is_none_or(|o| o.contains(a))
                    });
                if complete {
                    break;
                }
                last = format!(
                    "{} of {} acked events, {} of {} alerts stored, {} delivered to the file{}",
                    acked.intersection(&events).count(),
                    acked.len(),
                    alerts.len(),
                    expect.alerts.len(),
                    delivered.len(),
                    other.map_or(String::new(), |o| format!(
                        ", {} to the other channel",
                        o.len()
                    ))
                );
            }
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let waited = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    if complete {
        Ok(waited)
    } else {
        Err(format!("not complete within {deadline:?}: {last}"))
    }
}

/// The final state: stored events and alerts, the file channel's deliveries.
pub async fn observe_state(
    http: &reqwest::Client,
    deployment: &Deployment,
) -> Result<Observed, String> {
    let (events, alerts) = stored(http, &deployment.api_base()).await?;
    Ok(Observed {
        events,
        alerts,
        channels: vec![ChannelLog {
            name: "file".into(),
            deliveries: file_deliveries(&deployment.alerts_file()),
        }],
        health: Vec::new(),
    })
}
