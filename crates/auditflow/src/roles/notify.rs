//! The notify role: alerts queue -> store -> channels.
//!
//! Per batch: parse (invalid alerts are dead-lettered), store (idempotent on
//! `alert_id`), deliver to every channel that has no delivery record for the
//! alert yet and whose routes let it through (`[[notify.routes]]`), record
//! each outcome, ack. While the store is down the alerts
//! stay unacked in the broker, which buffers them; nothing is acked unstored.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::Context as _;
use chrono::Utc;
use futures::future::join_all;
use tracing::{Instrument as _, Span};
use uuid::Uuid;

use auditflow_core::broker::{BrokerError, Delivery, Subscription, HEADER_INGESTED_AT};
use auditflow_core::store::{DeliveryRecord, DeliveryStatus, StoreError};
use auditflow_core::time::parse_timestamp;
use auditflow_core::Alert;

use crate::channels::routing::Routes;
use crate::channels::{Channel, Outcome};
use crate::context::Context;
use crate::metrics::ChannelLabels;
use crate::persist::{persist, Stopped};

/// Runs the notify loop until shutdown.
pub async fn run(ctx: Context, channels: Vec<Arc<dyn Channel>>) -> anyhow::Result<()> {
    let queue = ctx.config.broker.alerts_queue.clone();
    let routes = Routes::new(
        &ctx.config.notify.routes,
        channels.iter().map(|channel| channel.name()),
    )
    .context("notify.routes")?;
    let mut sub = match persist(&ctx, "broker", BrokerError::is_transient, || {
        ctx.broker.subscribe(&queue, ctx.config.notify.prefetch)
    })
    .await
    {
        Ok(sub) => sub,
        Err(Stopped::Shutdown) => return Ok(()),
        Err(Stopped::Permanent(e)) => {
            return Err(anyhow::Error::new(e).context(format!("subscribing to {queue}")))
        }
    };
    ctx.health.up("notify");
    tracing::info!(queue, channels = channels.len(), "notify started");
    loop {
        let batch = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break,
            batch = sub.next_batch(ctx.config.notify.batch_size) => batch,
        };
        match batch {
            Ok(batch) => match handle_batch(&ctx, &channels, &routes, sub.as_mut(), batch).await {
                Ok(()) => {}
                Err(Stopped::Shutdown) => break,
                Err(Stopped::Permanent(e)) => {
                    ctx.health
                        .set("notify", crate::health::Status::Down, Some(e.to_string()));
                    return Err(e.context("notify stopped"));
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot receive alerts; retrying");
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
    tracing::info!("notify stopped");
    Ok(())
}

async fn handle_batch(
    ctx: &Context,
    channels: &[Arc<dyn Channel>],
    routes: &Routes,
    sub: &mut dyn Subscription,
    batch: Vec<Delivery>,
) -> Result<(), Stopped<anyhow::Error>> {
    let mut alerts = Vec::with_capacity(batch.len());
    let mut tags = Vec::with_capacity(batch.len());
    let mut ingested_at = Vec::with_capacity(batch.len());
    // Each alert's `notify` span, by alert id, when tracing is on; they end
    // when the batch is acked.
    let mut spans: HashMap<Uuid, Span> = HashMap::new();
    let traced = crate::traces::enabled();
    let system = crate::traces::spans::messaging_system(&ctx.config.backends.broker);
    for delivery in batch {
        let span = traced.then(|| {
            crate::traces::spans::notify(
                &delivery.message.headers,
                &delivery.message.message_id,
                &ctx.config.broker.alerts_queue,
                system,
                delivery.delivery_count,
            )
        });
        match Alert::from_slice(&delivery.message.payload) {
            Ok(alert) => {
                if let Some(span) = span {
                    let rule_id = alert.analysis_rule.rule_id.clone();
                    crate::traces::spans::set(&span, "auditflow.rule_id", rule_id);
                    crate::traces::spans::set(&span, "auditflow.severity", alert.severity.as_str());
                    // A redelivered duplicate in the same batch shares the first's span.
                    spans.entry(alert.alert_id).or_insert(span);
                }
                alerts.push(alert);
                tags.push(delivery.tag);
                ingested_at.push(
                    delivery
                        .message
                        .headers
                        .get(HEADER_INGESTED_AT)
                        .and_then(|v| parse_timestamp(v).ok()),
                );
            }
            Err(e) => {
                let reason = e.to_string();
                let span = span.unwrap_or_else(Span::none);
                crate::traces::spans::fail(&span, &reason);
                span.in_scope(|| {
                    tracing::warn!(alert_id = %delivery.message.message_id, %reason, "dead-lettering alert");
                });
                crate::persist_sub!(
                    ctx,
                    sub.dead_letter(delivery.tag, &reason),
                    "dead-lettering an invalid alert"
                )?;
            }
        }
    }
    if alerts.is_empty() {
        return Ok(());
    }

    let new_ids: HashSet<Uuid> = persist(ctx, "store", StoreError::is_transient, || {
        ctx.store.insert_alerts(&alerts)
    })
    .await
    .map_err(|s| s.map_permanent("storing alerts"))?
    .into_iter()
    .collect();
    fail::fail_point!("notify::after_store");
    let now = Utc::now();
    for (alert, ingested) in alerts.iter().zip(&ingested_at) {
        if let (true, Some(ingested)) = (new_ids.contains(&alert.alert_id), ingested) {
            let seconds = (now - *ingested).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
            ctx.metrics.ingest_to_alert.observe(seconds);
        }
    }

    // Which channels already took which (redelivered) alerts.
    let mut done: HashMap<Uuid, HashSet<String>> = HashMap::new();
    for alert in alerts.iter().filter(|a| !new_ids.contains(&a.alert_id)) {
        let records = persist(ctx, "store", StoreError::is_transient, || {
            ctx.store.deliveries(alert.alert_id)
        })
        .await
        .map_err(|s| s.map_permanent("reading delivery records"))?;
        done.insert(
            alert.alert_id,
            records
                .into_iter()
                .filter(|r| r.status == DeliveryStatus::Delivered)
                .map(|r| r.channel)
                .collect(),
        );
    }

    // Channels run concurrently, so a slow channel does not hold up the others.
    let deliveries = channels.iter().map(|channel| {
        let (routed, pending): (Vec<&Alert>, Vec<&Alert>) = alerts
            .iter()
            .filter(|a| {
                done.get(&a.alert_id)
                    .is_none_or(|names| !names.contains(channel.name()))
            })
            .partition(|a| !routes.wants(channel.name(), a));
        if !routed.is_empty() {
            // Routed elsewhere: no delivery, no record, counted.
            ctx.metrics
                .notifications
                .get_or_create(&ChannelLabels {
                    channel: channel.name().to_string(),
                    result: "not_routed",
                })
                .inc_by(routed.len() as u64);
        }
        let traces: Vec<Span> = if spans.is_empty() {
            Vec::new()
        } else {
            pending
                .iter()
                .filter_map(|a| spans.get(&a.alert_id))
                .map(|parent| crate::traces::spans::deliver(parent, channel.name()))
                .collect()
        };
        // A channel given one alert delivers inside its span, so what the
        // channel logs carries the alert's trace id (and lands in the trace).
        // A batch of several has no one span to run in.
        let only = match traces.as_slice() {
            [span] => Some(span.clone()),
            _ => None,
        };
        async move {
            let outcomes = match (pending.is_empty(), only) {
                (true, _) => Vec::new(),
                (false, Some(span)) => channel.deliver(&pending).instrument(span).await,
                (false, None) => channel.deliver(&pending).await,
            };
            (channel, pending, outcomes, traces)
        }
    });
    let mut records = Vec::new();
    // Per alert: (channels delivered, channels failed), for its span.
    let mut tally: HashMap<Uuid, (u32, u32)> = HashMap::new();
    for (channel, pending, outcomes, traces) in join_all(deliveries).await {
        for (i, (alert, outcome)) in pending.into_iter().zip(outcomes).enumerate() {
            let (status, attempts, last_error, result) = match outcome {
                Ok(Outcome::Delivered) => (DeliveryStatus::Delivered, 1, None, "delivered"),
                Ok(Outcome::AlreadyDelivered) => {
                    (DeliveryStatus::Delivered, 1, None, "duplicate_skipped")
                }
                Err(e) => (
                    DeliveryStatus::Failed,
                    e.attempts,
                    Some(e.message),
                    "failed",
                ),
            };
            if let Some(span) = traces.get(i) {
                crate::traces::spans::set(span, "auditflow.result", result);
                let counts = tally.entry(alert.alert_id).or_default();
                match &last_error {
                    Some(error) => {
                        crate::traces::spans::fail(span, error);
                        counts.1 += 1;
                    }
                    None => counts.0 += 1,
                }
            }
            ctx.metrics
                .notifications
                .get_or_create(&ChannelLabels {
                    channel: channel.name().to_string(),
                    result,
                })
                .inc();
            let record = DeliveryRecord {
                alert_id: alert.alert_id,
                channel: channel.name().to_string(),
                status,
                attempts,
                last_error,
                recorded_at: Utc::now(),
            };
            records.push(record);
        }
    }
    // All records of the batch at once: the embedded store folds them into
    // one group commit, PostgreSQL spreads them over the pool, instead of one
    // round trip (and one fsync) after another.
    futures::future::try_join_all(records.iter().map(|record| {
        persist(ctx, "store", StoreError::is_transient, || {
            ctx.store.record_delivery(record)
        })
    }))
    .await
    .map_err(|s| s.map_permanent("recording a delivery"))?;
    fail::fail_point!("notify::before_ack");
    crate::persist_sub!(ctx, sub.ack(&tags), "acking alerts")?;
    for (alert_id, span) in spans {
        let (delivered, failed) = tally.get(&alert_id).copied().unwrap_or_default();
        crate::traces::spans::set(&span, "auditflow.channels.delivered", i64::from(delivered));
        crate::traces::spans::set(&span, "auditflow.channels.failed", i64::from(failed));
        if failed > 0 {
            crate::traces::spans::fail(&span, "a channel refused the alert");
        }
    }
    Ok(())
}
