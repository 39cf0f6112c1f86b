//! Bad input mixed into the good load: every kind of malformed, invalid or
//! oversize request a careless or hostile client sends. Each must be
//! refused with a 4xx and a reason, and none of its events stored (ingest
//! is all-or-nothing per request unless `?partial=true`).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use uuid::Uuid;

/// One bad request.
pub struct BadRequest {
    pub kind: &'static str,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Event ids it carries (none may be stored).
    pub ids: Vec<Uuid>,
}

fn good_event(id: Uuid) -> Value {
    json!({
        "event_id": id.to_string(),
        "timestamp": "2031-01-01T00:00:00Z",
        "source_service": "chaos",
        "server_hostname": "bad-input-host",
        "event_type": "user_login",
        "severity": "INFO",
        "user_id": "bad-input-user",
        "action_result": "SUCCESS",
        "details": {}
    })
}

fn with(id: Uuid, key: &str, value: Value) -> Value {
    let mut event = good_event(id);
    event[key] = value;
    event
}

fn without(id: Uuid, key: &str) -> Value {
    let mut event = good_event(id);
    if let Some(map) = event.as_object_mut() {
        map.remove(key);
    }
    event
}

fn json_request(kind: &'static str, value: &Value, ids: Vec<Uuid>) -> BadRequest {
    BadRequest {
        kind,
        content_type: "application/json",
        body: serde_json::to_vec(value).unwrap_or_default(),
        ids,
    }
}

/// The `n`-th bad request (kinds cycle; oversize ones are rare: they are big).
pub fn bad_request(n: usize, rng: &mut StdRng) -> BadRequest {
    let id = Uuid::new_v4();
    match n % 14 {
        0 => BadRequest {
            kind: "truncated JSON",
            content_type: "application/json",
            body: br#"{"event_id": "#.to_vec(),
            ids: vec![],
        },
        1 => json_request("not an object", &json!(42), vec![]),
        2 => json_request("empty object", &json!({}), vec![]),
        3 => json_request(
            "unknown severity",
            &with(id, "severity", json!("SUPER")),
            vec![id],
        ),
        4 => json_request(
            "bad timestamp",
            &with(id, "timestamp", json!("yesterday")),
            vec![id],
        ),
        5 => json_request(
            "event_id not a UUID",
            &with(id, "event_id", json!("abc")),
            vec![],
        ),
        6 => json_request(
            "details not an object",
            &with(id, "details", json!(5)),
            vec![id],
        ),
        7 => json_request("missing event_type", &without(id, "event_type"), vec![id]),
        8 => {
            // One valid event next to one invalid one: all or nothing.
            let other = Uuid::new_v4();
            json_request(
                "array with one invalid item",
                &json!([good_event(id), with(other, "severity", json!(7))]),
                vec![id, other],
            )
        }
        9 => {
            let other = Uuid::new_v4();
            let mut body = serde_json::to_vec(&good_event(id)).unwrap_or_default();
            body.extend_from_slice(b"\n{not json\n");
            body.extend_from_slice(&serde_json::to_vec(&good_event(other)).unwrap_or_default());
            BadRequest {
                kind: "NDJSON with a broken line",
                content_type: "application/x-ndjson",
                body,
                ids: vec![id, other],
            }
        }
        10 => BadRequest {
            kind: "invalid UTF-8",
            content_type: "application/json",
            body: vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'],
            ids: vec![],
        },
        11 => {
            let depth = 5_000;
            let mut body = Vec::new();
            body.extend(std::iter::repeat_n(b'[', depth));
            body.extend(std::iter::repeat_n(b']', depth));
            BadRequest {
                kind: "nesting 5,000 deep",
                content_type: "application/json",
                body,
                ids: vec![],
            }
        }
        12 if n % 70 == 12 => {
            // 9 MiB of padding: over the 8 MiB body limit.
            let padding = "x".repeat(9 << 20);
            json_request(
                "oversize body (9 MiB)",
                &with(id, "details", json!({ "padding": padding })),
                vec![id],
            )
        }
        12 => json_request(
            "severity of the wrong type",
            &with(id, "severity", json!([1])),
            vec![id],
        ),
        _ => {
            // More events than `http.max_events_per_request` (10,000).
            let events: Vec<Value> = (0..10_001).map(|_| good_event(Uuid::new_v4())).collect();
            let ids = if rng.random_bool(0.5) {
                events
                    .iter()
                    .filter_map(|e| e["event_id"].as_str().and_then(|s| Uuid::parse_str(s).ok()))
                    .collect()
            } else {
                Vec::new()
            };
            json_request("10,001 events in one request", &Value::Array(events), ids)
        }
    }
}

/// What the bad requests got.
#[derive(Debug, Default)]
pub struct FloodOutcome {
    /// Answers by status code, per kind.
    pub answers: BTreeMap<&'static str, BTreeMap<u16, usize>>,
    /// Problems: a bad request accepted, answered 5xx, or without a reason.
    pub problems: Vec<String>,
    /// Event ids carried by bad requests (none may be stored).
    pub ids: HashSet<Uuid>,
}

/// Sends `count` bad requests from 4 clients while the good load runs.
/// 429 and 503 (backpressure) are retried a few times: they are not the
/// answer to the input.
pub async fn flood(url: String, count: usize, seed: u64) -> FloodOutcome {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients = (0..4u64).map(|c| {
        let (url, next) = (url.clone(), next.clone());
        tokio::spawn(async move {
            let http = crate::load::http_client();
            let mut rng = StdRng::seed_from_u64(seed ^ (c + 1));
            let mut out = FloodOutcome::default();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if n >= count {
                    return out;
                }
                let request = bad_request(n, &mut rng);
                out.ids.extend(&request.ids);
                let mut answer = None;
                for _ in 0..20 {
                    let sent = http
                        .post(&url)
                        .header(reqwest::header::CONTENT_TYPE, request.content_type)
                        .body(request.body.clone())
                        .send()
                        .await;
                    match sent {
                        Ok(r) if matches!(r.status().as_u16(), 429 | 503) => {}
                        Ok(r) => {
                            let status = r.status().as_u16();
                            answer = Some((status, r.text().await.unwrap_or_default()));
                            break;
                        }
                        Err(_) => {}
                    }
                    tokio::time::sleep(Duration::from_millis(rng.random_range(50..200))).await;
                }
                let (status, text) = answer.unwrap_or((0, String::new()));
                *out.answers
                    .entry(request.kind)
                    .or_default()
                    .entry(status)
                    .or_default() += 1;
                let reason = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(|s| !s.trim().is_empty()))
                    .unwrap_or(false);
                if !(400..500).contains(&status) || status == 429 {
                    out.problems.push(format!(
                        "{}: answered {status}: {}",
                        request.kind,
                        crate::report::clip(&text, 200)
                    ));
                } else if !reason {
                    out.problems.push(format!(
                        "{}: {status} without a reason: {}",
                        request.kind,
                        crate::report::clip(&text, 200)
                    ));
                }
            }
        })
    });
    let mut total = FloodOutcome::default();
    for joined in futures::future::join_all(clients).await {
        match joined {
            Ok(part) => {
                for (kind, statuses) in part.answers {
                    let entry = total.answers.entry(kind).or_default();
                    for (status, n) in statuses {
                        *entry.entry(status).or_default() += n;
                    }
                }
                total.problems.extend(part.problems);
                total.ids.extend(part.ids);
            }
            Err(e) => total.problems.push(format!("flood client panicked: {e}")),
        }
    }
    total
}
