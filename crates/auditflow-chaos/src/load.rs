//! The bounded load: concurrent HTTP clients that send each request of the
//! workload (same body, same event ids) until it is answered 202, the way a
//! careful producer does, and record exactly which events were acknowledged.
//!
//! A request answered 202 counts as acknowledged for every id it carries,
//! and only if the answer names exactly those ids. 429, 5xx and transport
//! errors are retried (after `Retry-After`, capped, or a short jittered
//! pause); any other answer to a good request is an error the report shows.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::workload::Request;

/// How a load is paced and bounded.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Concurrent clients.
    pub clients: usize,
    /// The requests are released evenly (by events) over this long.
    pub pace: Duration,
    /// Every request must be acknowledged within this (from the start).
    pub deadline: Duration,
}

/// What the clients saw, updated live.
#[derive(Debug, Default)]
pub struct LoadCounters {
    pub attempts: AtomicU64,
    pub retries: AtomicU64,
    pub acked_events: AtomicUsize,
    pub acked_requests: AtomicUsize,
    /// Answers by status code (`0`: no answer: connection refused, reset,
    /// timeout).
    pub statuses: Mutex<BTreeMap<u16, u64>>,
    /// Up to three distinct reasons given per refusing status.
    pub reasons: Mutex<BTreeMap<u16, Vec<String>>>,
}

impl LoadCounters {
    fn count(&self, status: u16) {
        if let Ok(mut map) = self.statuses.lock() {
            *map.entry(status).or_default() += 1;
        }
    }

    fn reason(&self, status: u16, text: &str) {
        let reason = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| crate::report::clip(text, 120));
        if let Ok(mut map) = self.reasons.lock() {
            let seen = map.entry(status).or_default();
            if seen.len() < 3 && !seen.contains(&reason) {
                seen.push(reason);
            }
        }
    }

    /// A copy of the reasons given per refusing status.
    pub fn reasons(&self) -> BTreeMap<u16, Vec<String>> {
        self.reasons.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// A copy of the answers by status code.
    pub fn statuses(&self) -> BTreeMap<u16, u64> {
        self.statuses.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// The outcome of a whole load.
#[derive(Debug, Default)]
pub struct LoadOutcome {
    /// Every event id answered 202, in no particular order (an id appears
    /// once per request that carried it; the workload never repeats one).
    pub acked: Vec<Uuid>,
    /// Requests never acknowledged (deadline, or a refusal of good input).
    pub errors: Vec<String>,
    pub elapsed: Duration,
}

struct Shared {
    url: String,
    requests: Vec<Request>,
    release: Vec<Duration>,
    started: Instant,
    next: AtomicUsize,
    pacing: Pacing,
    counters: Arc<LoadCounters>,
}

/// Release times spreading `requests` evenly by event count over `pace`.
fn release_times(requests: &[Request], pace: Duration) -> Vec<Duration> {
    let total: usize = requests.iter().map(|r| r.ids.len()).sum::<usize>().max(1);
    let mut sent = 0usize;
    requests
        .iter()
        .map(|r| {
            let at = pace.mul_f64(sent as f64 / total as f64);
            sent += r.ids.len();
            at
        })
        .collect()
}

/// A client for load and probes: no proxy from the environment, bounded
/// connect and request times.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Runs the load against `url` (`.../v1/events`) to the end; `counters`
/// can be watched while it runs.
pub async fn run(
    url: String,
    requests: Vec<Request>,
    pacing: Pacing,
    seed: u64,
    counters: Arc<LoadCounters>,
) -> LoadOutcome {
    let release = release_times(&requests, pacing.pace);
    let shared = Arc::new(Shared {
        url,
        requests,
        release,
        started: Instant::now(),
        next: AtomicUsize::new(0),
        pacing,
        counters,
    });
    let clients: Vec<_> = (0..pacing.clients)
        .map(|c| tokio::spawn(client(shared.clone(), seed.wrapping_add(c as u64))))
        .collect();
    let mut outcome = LoadOutcome::default();
    for joined in futures::future::join_all(clients).await {
        match joined {
            Ok((acked, errors)) => {
                outcome.acked.extend(acked);
                outcome.errors.extend(errors);
            }
            Err(e) => outcome.errors.push(format!("load client panicked: {e}")),
        }
    }
    outcome.elapsed = shared.started.elapsed();
    outcome
}

/// The pause before the next attempt: the server's `Retry-After` (capped at
/// 2 s) or 20..120 ms of jitter.
fn pause(retry_after: Option<Duration>, rng: &mut StdRng) -> Duration {
    let jitter = Duration::from_millis(rng.random_range(20..=120));
    retry_after.map_or(jitter, |d| d.min(Duration::from_secs(2)) + jitter)
}

async fn client(shared: Arc<Shared>, seed: u64) -> (Vec<Uuid>, Vec<String>) {
    let http = http_client();
    let mut rng = StdRng::seed_from_u64(seed);
    let deadline = shared.started + shared.pacing.deadline;
    let (mut acked, mut errors) = (Vec::new(), Vec::new());
    let c = &shared.counters;
    loop {
        let i = shared.next.fetch_add(1, Ordering::SeqCst);
        let Some(request) = shared.requests.get(i) else {
            return (acked, errors);
        };
        tokio::time::sleep_until((shared.started + shared.release[i]).into()).await;
        loop {
            c.attempts.fetch_add(1, Ordering::Relaxed);
            let sent = http
                .post(&shared.url)
                .header(reqwest::header::CONTENT_TYPE, request.content_type)
                .body(request.body.clone())
                .send()
                .await;
            let mut retry_after = None;
            match sent {
                Ok(response) => {
                    let status = response.status();
                    c.count(status.as_u16());
                    retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = response.text().await.unwrap_or_default();
                    if status != StatusCode::ACCEPTED {
                        c.reason(status.as_u16(), &text);
                    }
                    if status == StatusCode::ACCEPTED {
                        if accepted_ids(&text).as_ref() == Some(&request.ids) {
                            acked.extend(&request.ids);
                            c.acked_events
                                .fetch_add(request.ids.len(), Ordering::SeqCst);
                            c.acked_requests.fetch_add(1, Ordering::SeqCst);
                        } else {
                            errors.push(format!(
                                "{} request {i}: 202 does not name the ids sent: {}",
                                request.kind,
                                crate::report::clip(&text, 200)
                            ));
                        }
                        break;
                    }
                    if !(status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS) {
                        errors.push(format!(
                            "{} request {i} (good input) answered {status}: {}",
                            request.kind,
                            crate::report::clip(&text, 200)
                        ));
                        break;
                    }
                }
                Err(_) => c.count(0),
            }
            c.retries.fetch_add(1, Ordering::Relaxed);
            if Instant::now() > deadline {
                errors.push(format!(
                    "{} request {i} not acknowledged within {:?}",
                    request.kind, shared.pacing.deadline
                ));
                break;
            }
            tokio::time::sleep(pause(retry_after, &mut rng)).await;
        }
    }
}

/// The ids a 202 answer names (`{"accepted": [...]}`).
fn accepted_ids(text: &str) -> Option<Vec<Uuid>> {
    let value: Value = serde_json::from_str(text).ok()?;
    value["accepted"]
        .as_array()?
        .iter()
        .map(|id| id.as_str().and_then(|s| Uuid::parse_str(s).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn request(n: usize) -> Request {
        Request {
            kind: "t",
            body: Bytes::new(),
            content_type: "application/json",
            ids: (0..n).map(|_| Uuid::new_v4()).collect(),
        }
    }

    #[test]
    fn releases_are_spread_by_events() {
        let requests = vec![request(10), request(30), request(60)];
        let times = release_times(&requests, Duration::from_secs(10));
        assert_eq!(
            times,
            vec![
                Duration::ZERO,
                Duration::from_secs(1),
                Duration::from_secs(4)
            ]
        );
    }

    #[test]
    fn accepted_ids_must_be_uuids() {
        let id = Uuid::new_v4();
        assert_eq!(
            accepted_ids(&format!(r#"{{"accepted":["{id}"]}}"#)),
            Some(vec![id])
        );
        assert_eq!(accepted_ids(r#"{"accepted":["nope"]}"#), None);
        assert_eq!(accepted_ids("not json"), None);
    }
}
