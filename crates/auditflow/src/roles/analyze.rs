//! The analyze role: events queue -> store -> rules -> alerts queue.
//!
//! Per batch, in this order, each step idempotent:
//! 1. parse; an invalid event is dead-lettered with its reason;
//! 2. store the events (idempotent on `event_id`); when the store refuses
//!    the batch for its data ([`StoreError::Refused`]), they are stored one
//!    at a time and the events refused again are dead-lettered with the
//!    store's reason, so one unstorable event stops neither its batch nor
//!    the role;
//! 3. evaluate the rules; threshold decisions are recorded in the window
//!    state before they are returned, so a redelivered event gets the same
//!    decision and the same deterministic alert id;
//! 4. publish the alerts (confirmed);
//! 5. ack the events.
//!
//! A crash at any point leaves the events unacked; their redelivery repeats
//! steps 2-5 with the same outcome. Failpoints mark each boundary so tests can
//! crash there on purpose.
//!
//! Overlap: while batch N is evaluated, published and acked (steps 3-5),
//! batch N+1, if it is already there, is parsed and stored (steps 1-2).
//! Rules still see the batches strictly in order. On the embedded platform
//! the store writer was idle during steps 3-5; overlapping them measured
//! about +10% events/s end to end (three alternating runs of 300 000
//! events: 32.3, 31.0, 34.3k/s without, 35.8, 36.0, 37.8k/s with) for
//! about 15 MB more peak RSS.
//!
//! Not when the window state can be rebuilt from the store (Redis, which
//! can lose its data): storing batch N+1 before batch N is evaluated would
//! put events in the store ahead of their turn, and a window rebuilt then
//! would count events that, in queue order, come later. There, one batch at
//! a time, with step 3 first: a rebuild needs only the batches before this
//! one in the store (they are, being acked), so the batch's insert (step 2)
//! and its alerts' publish (step 4) then wait on their disks at once; see
//! [`finish_rules_first`].

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::FutureExt;
use tokio_util::task::AbortOnDropHandle;
use tracing::Span;
use uuid::Uuid;

use auditflow_core::broker::{
    Delivery, Headers, Message, Subscription, HEADER_CORRELATION_ID, HEADER_INGESTED_AT,
};
use auditflow_core::event::{Event, Severity};
use auditflow_core::store::StoreError;
use auditflow_core::Alert;
use auditflow_rules::{AlertContext, RuleSet};

use crate::context::Context;
use crate::metrics::{AlertLabels, ResultLabel};
use crate::persist::{each_alone, persist, Stopped};

/// Namespace for ids of events that reached the broker without one: the id is
/// derived from the payload, so every redelivery gets the same id.
const PAYLOAD_ID_NAMESPACE: Uuid = Uuid::from_u128(0x3b7e_91c4_2d5a_4f60_8e1b_c0d2_a4f6_1357);

/// Runs the analyze loop until shutdown.
pub async fn run(ctx: Context, rules: Arc<RuleSet>) -> anyhow::Result<()> {
    let queue = ctx.config.broker.events_queue.clone();
    let mut sub = match persist(
        &ctx,
        "broker",
        |e: &auditflow_core::broker::BrokerError| e.is_transient(),
        || {
            ctx.broker.subscribe(
                &queue,
                ctx.config.analyze.prefetch_for(&ctx.config.backends.broker),
            )
        },
    )
    .await
    {
        Ok(sub) => sub,
        Err(Stopped::Shutdown) => return Ok(()),
        Err(Stopped::Permanent(e)) => {
            return Err(anyhow::Error::new(e).context(format!("subscribing to {queue}")))
        }
    };
    let batch_size = ctx
        .config
        .analyze
        .batch_size_for(&ctx.config.backends.broker);
    ctx.health.up("analyze");
    tracing::info!(queue, rules = rules.rules().len(), "analyze started");
    let consumed = consume(&ctx, &rules, sub.as_mut(), batch_size).await;
    super::flush_acks(&ctx, sub.as_mut()).await;
    match consumed {
        Ok(()) => {
            tracing::info!("analyze stopped");
            Ok(())
        }
        Err(stopped) => stop(&ctx, stopped),
    }
}

/// The analyze loop proper, until shutdown (`Ok`) or a stop.
async fn consume(
    ctx: &Context,
    rules: &RuleSet,
    sub: &mut dyn Subscription,
    batch_size: usize,
) -> Result<(), Stopped<anyhow::Error>> {
    // With `overlap`, one batch may be in flight: its events are being
    // stored while the batch before it is evaluated, published and acked.
    // `finish` runs one batch at a time, in queue order. Without it, one
    // batch at a time, its rules first (`finish_rules_first`).
    let overlap = matches!(ctx.config.backends.windows.as_str(), "embedded" | "store");
    let mut in_flight: Option<Stored> = None;
    loop {
        let batch = match in_flight.take() {
            None => tokio::select! {
                biased;
                _ = ctx.shutdown.cancelled() => break,
                batch = sub.next_batch(batch_size) => batch,
            },
            // Never wait for a next batch while one is in flight: take one
            // only if it is there now (`next_batch` is cancel-safe).
            // Shutdown is noticed here too: under a steady backlog the
            // loop may never wait in the branch above.
            Some(stored) if ctx.shutdown.is_cancelled() => {
                in_flight = Some(stored);
                break;
            }
            // Only behind a backlog (a full batch): at a light load there is
            // no throughput to win, and the next batch's store commit would
            // sit in the store writer's queue ahead of this batch's alerts.
            Some(stored) => match (overlap && stored.prepared.full)
                .then(|| sub.next_batch(batch_size).now_or_never())
                .flatten()
            {
                Some(batch) => {
                    in_flight = Some(stored);
                    batch
                }
                None => {
                    finish(ctx, rules, sub, stored).await?;
                    continue;
                }
            },
        };
        match batch {
            // Nothing is ever in flight without overlap.
            Ok(batch) if !overlap => {
                if let Some(prepared) = prepare(ctx, sub, batch, batch_size).await? {
                    finish_rules_first(ctx, rules, sub, prepared).await?;
                }
            }
            Ok(batch) => {
                let next = prepare(ctx, sub, batch, batch_size)
                    .await?
                    .map(|prepared| prepared.store(ctx));
                if let Some(stored) = in_flight.take() {
                    finish(ctx, rules, sub, stored).await?;
                }
                in_flight = next;
            }
            Err(e) => {
                if let Some(stored) = in_flight.take() {
                    finish(ctx, rules, sub, stored).await?;
                }
                tracing::warn!(error = %e, "cannot receive events; retrying");
                ctx.health.set(
                    "broker",
                    crate::health::Status::Degraded,
                    Some(e.to_string()),
                );
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                }
            }
        }
    }
    // Shutdown: the batch in flight is finished and acked, not left to be
    // redelivered.
    if let Some(stored) = in_flight.take() {
        finish(ctx, rules, sub, stored).await?;
    }
    Ok(())
}

fn stop(ctx: &Context, stopped: Stopped<anyhow::Error>) -> anyhow::Result<()> {
    match stopped {
        Stopped::Shutdown => {
            tracing::info!("analyze stopped with work in flight; it stays unacked");
            Ok(())
        }
        Stopped::Permanent(e) => {
            ctx.health
                .set("analyze", crate::health::Status::Down, Some(e.to_string()));
            Err(e.context("analyze stopped"))
        }
    }
}

/// A parsed batch: the valid events with their delivery tags and headers.
struct Prepared {
    events: Arc<Vec<Event>>,
    tags: Vec<u64>,
    headers: Vec<Headers>,
    /// Each event's `analyze` span, when tracing is on (else empty); they
    /// end when the batch is acked.
    spans: Vec<Span>,
    started: Instant,
    /// The batch had as many deliveries as asked for: there is a backlog.
    full: bool,
}

/// A batch whose events are being stored. Dropping it (the role stopping
/// or crashing) aborts the insert: its events are unacked and come back.
struct Stored {
    prepared: Prepared,
    insert: AbortOnDropHandle<Result<Vec<Refused>, Stopped<anyhow::Error>>>,
}

/// An event of the batch the store refused for good (its index in the
/// batch, and the store's reason): it is dead-lettered, not evaluated.
type Refused = (usize, String);

/// Parses a batch; invalid events are dead-lettered with their reason.
/// `None` when nothing valid is left.
async fn prepare(
    ctx: &Context,
    sub: &mut dyn Subscription,
    batch: Vec<Delivery>,
    batch_size: usize,
) -> Result<Option<Prepared>, Stopped<anyhow::Error>> {
    let started = Instant::now();
    let full = batch.len() >= batch_size;
    let mut events = Vec::with_capacity(batch.len());
    let mut tags = Vec::with_capacity(batch.len());
    let mut headers = Vec::with_capacity(batch.len());
    let mut spans = Vec::new();
    let traced = crate::traces::enabled();
    let system = crate::traces::spans::messaging_system(&ctx.config.backends.broker);
    for delivery in batch {
        let span = traced.then(|| {
            crate::traces::spans::analyze(
                &delivery.message.headers,
                &delivery.message.message_id,
                &ctx.config.broker.events_queue,
                system,
                delivery.delivery_count,
            )
        });
        let size = delivery.message.payload.len();
        let parsed = if size > ctx.config.analyze.max_event_bytes {
            Err(auditflow_core::event::EventError {
                field: "$".into(),
                reason: format!(
                    "event is {size} bytes; the limit is {} (analyze.max_event_bytes)",
                    ctx.config.analyze.max_event_bytes
                ),
            })
        } else {
            Event::from_slice(&delivery.message.payload)
        };
        match parsed {
            Ok(parsed) => {
                let mut event = parsed.event;
                if parsed.id_assigned {
                    event.event_id = Uuid::new_v5(&PAYLOAD_ID_NAMESPACE, &delivery.message.payload);
                }
                if let Some(span) = span {
                    if delivery.message.message_id != event.event_id.to_string() {
                        span.record("event_id", event.event_id.to_string());
                    }
                    spans.push(span);
                }
                events.push(event);
                tags.push(delivery.tag);
                headers.push(delivery.message.headers);
            }
            Err(e) => {
                let reason = format!("invalid event: {e}");
                let span = span.unwrap_or_else(Span::none);
                crate::traces::spans::fail(&span, &reason);
                span.in_scope(|| {
                    tracing::warn!(event_id = %delivery.message.message_id, %reason, "dead-lettering event");
                });
                dead_letter(ctx, sub, delivery.tag, &reason).await?;
            }
        }
    }
    for span in &spans {
        crate::traces::spans::set(span, "auditflow.batch.events", events.len() as i64);
    }
    Ok((!events.is_empty()).then(|| Prepared {
        events: Arc::new(events),
        tags,
        headers,
        spans,
        started,
        full,
    }))
}

impl Prepared {
    /// Starts storing the events in the background.
    fn store(self, ctx: &Context) -> Stored {
        let (ctx, events) = (ctx.clone(), Arc::clone(&self.events));
        let insert = AbortOnDropHandle::new(tokio::spawn(async move {
            fail::fail_point!("analyze::before_store");
            match insert_events(&ctx, &events).await {
                Err(Stopped::Permanent(StoreError::Refused(reason))) if events.len() > 1 => {
                    tracing::warn!(%reason, events = events.len(), "the store refused a batch; storing its events one at a time");
                    one_at_a_time(&ctx, &events).await
                }
                Err(Stopped::Permanent(StoreError::Refused(reason))) => Ok(vec![(0, reason)]),
                other => other
                    .map(|_| Vec::new())
                    .map_err(|s| s.map_permanent("storing events")),
            }
        }));
        Stored {
            prepared: self,
            insert,
        }
    }

    /// Leaves out the events at `refused` (sorted indexes).
    fn without(self, refused: &[usize]) -> Prepared {
        let keep = |i: &usize| refused.binary_search(i).is_err();
        let events = Arc::try_unwrap(self.events).unwrap_or_else(|shared| (*shared).clone());
        let pick = |len: usize| (0..len).filter(keep);
        let events: Vec<Event> = pick(events.len()).map(|i| events[i].clone()).collect();
        Prepared {
            events: Arc::new(events),
            tags: pick(self.tags.len()).map(|i| self.tags[i]).collect(),
            headers: pick(self.headers.len())
                .map(|i| self.headers[i].clone())
                .collect(),
            spans: pick(self.spans.len())
                .map(|i| self.spans[i].clone())
                .collect(),
            ..self
        }
    }
}

/// Stores `events`, retrying outages.
async fn insert_events(ctx: &Context, events: &[Event]) -> Result<u64, Stopped<StoreError>> {
    persist(ctx, "store", StoreError::is_transient, || {
        ctx.store.insert_events(events)
    })
    .await
}

/// After the store refused a batch for its data: the events refused again
/// on their own (see [`each_alone`]).
async fn one_at_a_time(
    ctx: &Context,
    events: &[Event],
) -> Result<Vec<Refused>, Stopped<anyhow::Error>> {
    let stored = each_alone(events.len(), |i| {
        insert_events(ctx, std::slice::from_ref(&events[i]))
    })
    .await
    .map_err(|s| s.map_permanent("storing events"))?;
    Ok(stored
        .into_iter()
        .enumerate()
        .filter_map(|(i, result)| result.err().map(|reason| (i, reason)))
        .collect())
}

/// Waits for the batch to be stored, then runs the rules, publishes the
/// alerts and acks; returns only when every delivery is acked.
async fn finish(
    ctx: &Context,
    rules: &RuleSet,
    sub: &mut dyn Subscription,
    stored: Stored,
) -> Result<(), Stopped<anyhow::Error>> {
    let refused = stored_events(stored.insert.await)?;
    let Some(prepared) = without_refused(ctx, sub, stored.prepared, &refused).await? else {
        return Ok(());
    };
    fail::fail_point!("analyze::after_store");
    let alerts_per_event = evaluate(ctx, rules, &prepared).await?;
    fail::fail_point!("analyze::after_rules");
    let messages = alert_messages(ctx, &prepared, &alerts_per_event);
    publish_alerts(ctx, &messages).await?;
    fail::fail_point!("analyze::after_publish");
    acknowledge(ctx, sub, prepared).await
}

/// Without overlap (window state that is rebuilt from the store): runs
/// the rules first, then stores the events while their alerts are being
/// published, then acks; returns only when every delivery is acked.
///
/// The rules need no event of this batch in the store: a rebuild reads
/// the events acked before it, all stored, and leaves the batch's own
/// out. So the insert's commit and the alerts' confirm, the two waits on
/// a disk, run at once rather than one after the other (they were 32 and
/// about 14 ms of a 54 ms batch in the distributed benchmark, 2026-12-07).
/// The ack still waits for both. A crash in between leaves the events
/// unacked: their redelivery gets the decisions the window state recorded,
/// the same alert ids, and stores what was not stored.
///
/// An event the store then refuses for its data has been counted in its
/// windows, and an alert it raised is published (its event is in the
/// dead-letter queue with the store's reason); with the store first, it
/// would have been dead-lettered before the rules saw it.
async fn finish_rules_first(
    ctx: &Context,
    rules: &RuleSet,
    sub: &mut dyn Subscription,
    prepared: Prepared,
) -> Result<(), Stopped<anyhow::Error>> {
    let alerts_per_event = evaluate(ctx, rules, &prepared).await?;
    fail::fail_point!("analyze::after_rules");
    let messages = alert_messages(ctx, &prepared, &alerts_per_event);
    let Stored { prepared, insert } = prepared.store(ctx);
    let (inserted, published) = tokio::join!(insert, publish_alerts(ctx, &messages));
    published?;
    let refused = stored_events(inserted)?;
    fail::fail_point!("analyze::after_publish");
    let Some(prepared) = without_refused(ctx, sub, prepared, &refused).await? else {
        return Ok(());
    };
    acknowledge(ctx, sub, prepared).await
}

/// The outcome of a batch's insert task: the events the store refused.
fn stored_events(
    joined: Result<Result<Vec<Refused>, Stopped<anyhow::Error>>, tokio::task::JoinError>,
) -> Result<Vec<Refused>, Stopped<anyhow::Error>> {
    match joined {
        Ok(result) => result,
        // A crash of the storing task is a crash of the role.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(Stopped::Permanent(anyhow::anyhow!("storing events: {e}"))),
    }
}

/// Dead-letters the events the store refused and returns the rest of the
/// batch; `None` when nothing is left.
async fn without_refused(
    ctx: &Context,
    sub: &mut dyn Subscription,
    prepared: Prepared,
    refused: &[Refused],
) -> Result<Option<Prepared>, Stopped<anyhow::Error>> {
    if refused.is_empty() {
        return Ok(Some(prepared));
    }
    dead_letter_refused(ctx, sub, &prepared, refused).await?;
    let indexes: Vec<usize> = refused.iter().map(|(i, _)| *i).collect();
    let rest = prepared.without(&indexes);
    Ok((!rest.events.is_empty()).then_some(rest))
}

/// Runs the rules over the batch: the alerts of each event, in order.
async fn evaluate(
    ctx: &Context,
    rules: &RuleSet,
    prepared: &Prepared,
) -> Result<Vec<Vec<Alert>>, Stopped<anyhow::Error>> {
    let alert_ctx = AlertContext {
        environment: ctx.config.environment.clone(),
        raised_at: chrono::Utc::now(),
    };
    persist(
        ctx,
        "windows",
        |_: &auditflow_core::window::WindowError| true,
        || rules.analyze(&prepared.events, ctx.windows.as_ref(), &alert_ctx),
    )
    .await
    .map_err(|s| s.map_permanent("evaluating rules"))
}

/// The wire messages of the batch's alerts, counted as triggered.
fn alert_messages(
    ctx: &Context,
    prepared: &Prepared,
    alerts_per_event: &[Vec<Alert>],
) -> Vec<Message> {
    let mut messages = Vec::new();
    for (i, (alerts, event_headers)) in alerts_per_event.iter().zip(&prepared.headers).enumerate() {
        let span = prepared.spans.get(i);
        if let Some(span) = span {
            crate::traces::spans::set(span, "auditflow.alerts", alerts.len() as i64);
        }
        for alert in alerts {
            messages.push(alert_message(alert, event_headers, span));
            ctx.metrics
                .alerts_triggered
                .get_or_create(&AlertLabels {
                    rule_id: alert.analysis_rule.rule_id.clone(),
                    severity: severity_label(alert.severity),
                })
                .inc();
        }
    }
    messages
}

/// Publishes the alerts (confirmed), retrying outages.
async fn publish_alerts(ctx: &Context, messages: &[Message]) -> Result<(), Stopped<anyhow::Error>> {
    if messages.is_empty() {
        return Ok(());
    }
    let queue = &ctx.config.broker.alerts_queue;
    persist(
        ctx,
        "broker",
        |e: &auditflow_core::broker::BrokerError| e.is_transient(),
        || ctx.broker.publish(queue, messages),
    )
    .await
    .map_err(|s| s.map_permanent("publishing alerts"))
}

/// Acks the batch and records it as processed.
async fn acknowledge(
    ctx: &Context,
    sub: &mut dyn Subscription,
    prepared: Prepared,
) -> Result<(), Stopped<anyhow::Error>> {
    let Prepared {
        events,
        tags,
        headers,
        spans,
        started,
        full: _,
    } = prepared;
    crate::persist_sub!(ctx, sub.ack(&tags), "acking events")?;
    ctx.metrics
        .events_processed
        .get_or_create(&ResultLabel { result: "ok" })
        .inc_by(events.len() as u64);
    ctx.metrics
        .event_processing_duration
        .observe(started.elapsed().as_secs_f64());
    ctx.metrics.sli.analysis.add(events.len() as u64, 0);
    observe_latencies(ctx, &headers);
    // The events' spans end here, acked.
    drop(spans);
    Ok(())
}

/// Dead-letters the events the store refused, with its reason, and counts
/// them as invalid: like an event that fails validation, nothing can store
/// it, and the rest of its batch goes on.
async fn dead_letter_refused(
    ctx: &Context,
    sub: &mut dyn Subscription,
    prepared: &Prepared,
    refused: &[Refused],
) -> Result<(), Stopped<anyhow::Error>> {
    for (i, reason) in refused {
        let reason = format!("the store refused the event: {reason}");
        tracing::warn!(event_id = %prepared.events[*i].event_id, %reason, "dead-lettering event");
        if let Some(span) = prepared.spans.get(*i) {
            crate::traces::spans::fail(span, &reason);
        }
        dead_letter(ctx, sub, prepared.tags[*i], &reason).await?;
    }
    Ok(())
}

/// Dead-letters one event with `reason`, counted as invalid (an event
/// analyze cannot handle, and a bad one for the analysis SLI).
async fn dead_letter(
    ctx: &Context,
    sub: &mut dyn Subscription,
    tag: u64,
    reason: &str,
) -> Result<(), Stopped<anyhow::Error>> {
    ctx.metrics
        .events_processed
        .get_or_create(&ResultLabel { result: "invalid" })
        .inc();
    ctx.metrics.sli.analysis.add(1, 1);
    crate::persist_sub!(ctx, sub.dead_letter(tag, reason), "dead-lettering an event")?;
    Ok(())
}

/// Records each event's latency from ingest accepting it (its
/// `x-ingested-at` header) to now, when it is acked. Events published by
/// others without the header are not counted.
fn observe_latencies(ctx: &Context, headers: &[Headers]) {
    let now = chrono::Utc::now();
    // One ingest request stamps all its events alike: parse each distinct
    // stamp once.
    let mut last: Option<(&str, f64)> = None;
    let latencies = headers.iter().filter_map(|h| {
        let stamp = h.get(HEADER_INGESTED_AT)?.as_str();
        match last {
            Some((seen, latency)) if seen == stamp => Some(latency),
            _ => {
                let at = auditflow_core::time::parse_timestamp(stamp).ok()?;
                let micros = (now - at).num_microseconds().unwrap_or(0).max(0);
                let latency = micros as f64 / 1e6;
                last = Some((stamp, latency));
                Some(latency)
            }
        }
    });
    let latencies: Vec<f64> = latencies.collect();
    for latency in &latencies {
        ctx.metrics.event_analysis_latency.observe(*latency);
    }
    ctx.metrics.sli.observe_analysis_latencies(latencies);
}

/// The wire message of `alert`. Its `traceparent` is the event's `analyze`
/// span when there is one (notify continues from analyze), else the
/// event's own, so that a process with tracing off still passes the trace on.
fn alert_message(alert: &Alert, event_headers: &Headers, span: Option<&Span>) -> Message {
    let mut headers = Headers::new();
    headers.insert(
        HEADER_CORRELATION_ID.into(),
        alert.correlation_id.to_string(),
    );
    for key in [
        HEADER_INGESTED_AT,
        auditflow_core::broker::HEADER_TRACEPARENT,
    ] {
        if let Some(value) = event_headers.get(key) {
            headers.insert(key.into(), value.clone());
        }
    }
    if let Some(span) = span {
        crate::traces::spans::inject(span, &mut headers);
    }
    Message {
        message_id: alert.alert_id.to_string(),
        payload: Bytes::from(alert.to_json_bytes()),
        headers,
    }
}

/// Static label values for severities (bounded label set).
pub fn severity_label(severity: Severity) -> &'static str {
    severity.as_str()
}

impl<E: std::error::Error + Send + Sync + 'static> Stopped<E> {
    /// Wraps a permanent error with what was being done.
    pub fn map_permanent(self, doing: &'static str) -> Stopped<anyhow::Error> {
        match self {
            Stopped::Shutdown => Stopped::Shutdown,
            Stopped::Permanent(e) => Stopped::Permanent(anyhow::Error::new(e).context(doing)),
        }
    }
}
