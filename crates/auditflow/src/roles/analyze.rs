//! The analyze role: events queue -> store -> rules -> alerts queue.
//!
//! Per batch, in this order, each step idempotent:
//! 1. parse; an invalid event is dead-lettered with its reason;
//! 2. store the events (idempotent on `event_id`);
//! 3. evaluate the rules; threshold decisions are recorded in the window
//!    state before they are returned, so a redelivered event gets the same
//!    decision and the same deterministic alert id;
//! 4. publish the alerts (confirmed);
//! 5. ack the events.
//!
//! A crash at any point leaves the events unacked; their redelivery repeats
//! steps 2-5 with the same outcome. Failpoints mark each boundary so tests can
//! crash there on purpose.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use uuid::Uuid;

use auditflow_core::broker::{
    Delivery, Headers, Message, Subscription, HEADER_CORRELATION_ID, HEADER_INGESTED_AT,
};
use auditflow_core::event::{Event, Severity};
use auditflow_core::Alert;
use auditflow_rules::{AlertContext, RuleSet};

use crate::context::Context;
use crate::metrics::{AlertLabels, ResultLabel};
use crate::persist::{persist, Stopped};

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
        || ctx.broker.subscribe(&queue, ctx.config.analyze.prefetch),
    )
    .await
    {
        Ok(sub) => sub,
        Err(Stopped::Shutdown) => return Ok(()),
        Err(Stopped::Permanent(e)) => {
            return Err(anyhow::Error::new(e).context(format!("subscribing to {queue}")))
        }
    };
    ctx.health.up("analyze");
    tracing::info!(queue, rules = rules.rules().len(), "analyze started");
    loop {
        let batch = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break,
            batch = sub.next_batch(ctx.config.analyze.batch_size) => batch,
        };
        match batch {
            Ok(batch) => match handle_batch(&ctx, &rules, sub.as_mut(), batch).await {
                Ok(()) => {}
                Err(Stopped::Shutdown) => break,
                Err(Stopped::Permanent(e)) => {
                    ctx.health
                        .set("analyze", crate::health::Status::Down, Some(e.to_string()));
                    return Err(e.context("analyze stopped"));
                }
            },
            Err(e) => {
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
    tracing::info!("analyze stopped");
    Ok(())
}

/// Handles one batch; returns only when every delivery is acked or dead-lettered.
async fn handle_batch(
    ctx: &Context,
    rules: &RuleSet,
    sub: &mut dyn Subscription,
    batch: Vec<Delivery>,
) -> Result<(), Stopped<anyhow::Error>> {
    let started = Instant::now();
    let mut events = Vec::with_capacity(batch.len());
    let mut tags = Vec::with_capacity(batch.len());
    let mut headers = Vec::with_capacity(batch.len());
    for delivery in batch {
        match Event::from_slice(&delivery.message.payload) {
            Ok(parsed) => {
                let mut event = parsed.event;
                if parsed.id_assigned {
                    event.event_id = Uuid::new_v5(&PAYLOAD_ID_NAMESPACE, &delivery.message.payload);
                }
                events.push(event);
                tags.push(delivery.tag);
                headers.push(delivery.message.headers);
            }
            Err(e) => {
                let reason = format!("invalid event: {e}");
                tracing::warn!(message_id = %delivery.message.message_id, %reason, "dead-lettering event");
                ctx.metrics
                    .events_processed
                    .get_or_create(&ResultLabel { result: "invalid" })
                    .inc();
                crate::persist_sub!(
                    ctx,
                    sub.dead_letter(delivery.tag, &reason),
                    "dead-lettering an invalid event"
                )?;
            }
        }
    }
    if events.is_empty() {
        return Ok(());
    }

    fail::fail_point!("analyze::before_store");
    persist(
        ctx,
        "store",
        |e: &auditflow_core::store::StoreError| e.is_transient(),
        || ctx.store.insert_events(&events),
    )
    .await
    .map_err(|s| s.map_permanent("storing events"))?;
    fail::fail_point!("analyze::after_store");

    let alert_ctx = AlertContext {
        environment: ctx.config.environment.clone(),
        raised_at: chrono::Utc::now(),
    };
    let alerts_per_event = persist(
        ctx,
        "windows",
        |_: &auditflow_core::window::WindowError| true,
        || rules.analyze(&events, ctx.windows.as_ref(), &alert_ctx),
    )
    .await
    .map_err(|s| s.map_permanent("evaluating rules"))?;
    fail::fail_point!("analyze::after_rules");

    let mut messages = Vec::new();
    for (alerts, event_headers) in alerts_per_event.iter().zip(&headers) {
        for alert in alerts {
            messages.push(alert_message(alert, event_headers));
            ctx.metrics
                .alerts_triggered
                .get_or_create(&AlertLabels {
                    rule_id: alert.analysis_rule.rule_id.clone(),
                    severity: severity_label(alert.severity),
                })
                .inc();
        }
    }
    if !messages.is_empty() {
        let queue = &ctx.config.broker.alerts_queue;
        persist(
            ctx,
            "broker",
            |e: &auditflow_core::broker::BrokerError| e.is_transient(),
            || ctx.broker.publish(queue, messages.clone()),
        )
        .await
        .map_err(|s| s.map_permanent("publishing alerts"))?;
    }
    fail::fail_point!("analyze::after_publish");

    crate::persist_sub!(ctx, sub.ack(&tags), "acking events")?;
    ctx.metrics
        .events_processed
        .get_or_create(&ResultLabel { result: "ok" })
        .inc_by(events.len() as u64);
    ctx.metrics
        .event_processing_duration
        .observe(started.elapsed().as_secs_f64());
    Ok(())
}

fn alert_message(alert: &Alert, event_headers: &Headers) -> Message {
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
