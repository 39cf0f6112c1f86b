//! One channel's retry task: the outbox of deliveries that failed
//! transiently.
//!
//! Every `poll`, it claims the channel's due `retrying` records from the
//! store (leasing them, so another notify replica leaves them alone), hands
//! their alerts to the channel's [`Lane`] (behind the batches already queued
//! there, so retries never overtake or block fresh alerts on another
//! channel), and records each answer: delivered, failed for good, or
//! `retrying` again after a longer wait. Everything it needs is in the
//! store, so it picks up after a restart or a kill -9 where it left off
//! (leases held by a dead process run out after `notify.retry_lease`).
//!
//! Exactly once per channel: it only ever claims `retrying` records, the
//! stores never overwrite a `delivered` record with anything else, and the
//! broker path leaves alerts with a `retrying` record to this task.

use std::sync::Arc;

use chrono::Utc;

use auditflow_core::store::{PendingDelivery, StoreError};

use super::outbox::{Prior, Schedule};
use crate::channels::lane::Lane;
use crate::context::Context;
use crate::metrics::{ChannelLabel, ChannelLabels};
use crate::persist::Stopped;

/// Runs until shutdown.
pub(super) async fn run(ctx: Context, lane: Arc<Lane>, schedule: Schedule) {
    let limit = ctx.config.notify.batch_size.max(1);
    // Series that exist from the start read 0 rather than nothing (rates,
    // the notifications-failing rule).
    for result in ["delivered", "retrying"] {
        let _ = ctx
            .metrics
            .notification_retries
            .get_or_create(&ChannelLabels {
                channel: lane.name().to_string(),
                result,
            });
    }
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tokio::time::sleep(schedule.poll()) => {}
        }
        // A full claim means more are due: go on without waiting.
        loop {
            match round(&ctx, &lane, &schedule, limit).await {
                Ok(claimed) if claimed >= limit => continue,
                Ok(_) => break,
                Err(Stopped::Shutdown) => return,
                Err(Stopped::Permanent(e)) => {
                    // The leases run out and the next round tries again.
                    tracing::warn!(channel = lane.name(), error = %e, "retrying deliveries failed");
                    break;
                }
            }
        }
    }
}

/// Claims, delivers and records one batch of due retries; returns how many
/// it claimed.
async fn round(
    ctx: &Context,
    lane: &Lane,
    schedule: &Schedule,
    limit: usize,
) -> Result<usize, Stopped<StoreError>> {
    let channel = lane.name();
    // The backlog (a read, off the embedded store's writer) feeds the gauge
    // and spares the claim, a write, when nothing waits at all: the normal
    // case, polled every second per channel. A failed read skips neither.
    match ctx.store.retry_backlog(channel).await {
        Ok(count) => {
            ctx.metrics
                .notification_retry_backlog
                .get_or_create(&ChannelLabel {
                    channel: channel.to_string(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
            if count == 0 {
                return Ok(0);
            }
        }
        Err(e) => tracing::debug!(channel, error = %e, "cannot count pending retries"),
    }
    let now = Utc::now();
    let lease = chrono::Duration::from_std(schedule.lease()).unwrap_or(chrono::Duration::MAX);
    let claimed = match ctx
        .store
        .claim_retries(channel, now, now + lease, limit)
        .await
    {
        Ok(claimed) => claimed,
        // The store being down is reported by the roles that wait for it;
        // this task just tries again next round.
        Err(e) if e.is_transient() => {
            tracing::debug!(channel, error = %e, "cannot claim retries");
            return Ok(0);
        }
        Err(e) => return Err(Stopped::Permanent(e)),
    };
    if claimed.is_empty() {
        return Ok(0);
    }
    let count = claimed.len();
    tracing::info!(channel, count, "retrying deliveries");
    let (priors, alerts): (Vec<Prior>, Vec<_>) = claimed
        .into_iter()
        .map(|PendingDelivery { alert, record }| {
            (Prior::of(&record, alert.received_at), alert.alert)
        })
        .unzip();

    // Given up before trying: retried for `retry_for` already (e.g. after a
    // long stop). They are recorded failed like a failed retry past it.
    let now = Utc::now();
    let (expired, due): (Vec<usize>, Vec<usize>) =
        (0..alerts.len()).partition(|&i| schedule.expired(priors[i].received_at, now));
    let batch = Arc::new(alerts);
    let mut outcomes: Vec<_> = expired
        .iter()
        .map(|&i| {
            let error = crate::channels::ChannelError::transient(
                "not retried: older than notify.retry_for",
                0,
            );
            (i, Err(error))
        })
        .collect();
    if !due.is_empty() {
        let answers = lane.deliver(Arc::clone(&batch), due.clone(), None).await;
        outcomes.extend(due.into_iter().zip(answers));
    }

    let now = Utc::now();
    let mut records = Vec::with_capacity(outcomes.len());
    for (i, outcome) in outcomes {
        let (record, result) =
            schedule.record(channel, batch[i].alert_id, outcome, Some(&priors[i]), now);
        let labels = ChannelLabels {
            channel: channel.to_string(),
            result,
        };
        ctx.metrics
            .notification_retries
            .get_or_create(&labels)
            .inc();
        // The first attempt already counted this delivery; a final outcome
        // counts again so `notifications` shows how deliveries ended.
        if result != "retrying" {
            ctx.metrics.notifications.get_or_create(&labels).inc();
        }
        if result == "gave_up" {
            tracing::warn!(channel, alert_id = %record.alert_id, error = ?record.last_error, "delivery given up");
        }
        records.push(record);
    }
    super::save(ctx, &records).await?;
    Ok(count)
}
