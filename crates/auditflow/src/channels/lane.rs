//! A channel's own delivery queue and worker task.
//!
//! Notify hands each batch to every channel's lane and goes on with the next
//! batch; each lane delivers its batches in order, one after the other. So a
//! slow channel (a hanging webhook waiting out its timeouts until its breaker
//! opens) delays only its own deliveries, never another channel's: the lanes
//! are the bulkhead between channels. A batch is acked once every lane has
//! answered for it.
//!
//! The queue has no bound of its own: it only ever holds alerts notify has
//! not acked, and the broker hands notify at most `notify.prefetch` of those.
//! A channel that stays slow for long can so hold up to `prefetch` alerts
//! unacked, after which notify waits for it (the broker keeps the rest).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use auditflow_core::Alert;

use super::{Channel, ChannelError, Outcome};

/// What a lane was asked for: these alerts of a batch.
struct Job {
    batch: Arc<Vec<Alert>>,
    indices: Vec<usize>,
    /// The span to deliver in (the alert's `deliver` span when tracing is
    /// on and the job holds one alert), else the worker's own.
    span: Option<tracing::Span>,
    reply: oneshot::Sender<Vec<Result<Outcome, ChannelError>>>,
}

/// One channel's queue; dropping it stops the worker after its current job.
pub struct Lane {
    channel: Arc<dyn Channel>,
    jobs: mpsc::UnboundedSender<Job>,
}

impl Lane {
    /// Starts `channel`'s worker on the current tokio runtime, in the
    /// caller's span (so the channel's log lines keep notify's `role`).
    pub fn start(channel: Arc<dyn Channel>) -> Lane {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        let worker = Arc::clone(&channel);
        tokio::spawn(
            async move {
                while let Some(mut job) = queue.recv().await {
                    let alerts: Vec<&Alert> = job.indices.iter().map(|&i| &job.batch[i]).collect();
                    let span = job.span.take().unwrap_or_else(tracing::Span::current);
                    // Nobody waits any more only when notify stopped (or died):
                    // drop the delivery then, as if it ran inside notify, rather
                    // than send alerts that notify will neither record nor ack
                    // (they stay unacked and are delivered again after a restart).
                    tokio::select! {
                        outcomes = worker.deliver(&alerts).instrument(span) => {
                            let _ = job.reply.send(outcomes);
                        }
                        _ = job.reply.closed() => {}
                    }
                }
            }
            .instrument(tracing::Span::current()),
        );
        Lane { channel, jobs }
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        self.channel.name()
    }

    /// Delivers `batch[i]` for each `i` in `indices` (after the batches
    /// queued before), one result per index, inside `span` if given.
    pub async fn deliver(
        &self,
        batch: Arc<Vec<Alert>>,
        indices: Vec<usize>,
        span: Option<tracing::Span>,
    ) -> Vec<Result<Outcome, ChannelError>> {
        let count = indices.len();
        let (reply, answer) = oneshot::channel();
        let sent = self.jobs.send(Job {
            batch,
            indices,
            span,
            reply,
        });
        let stopped = || {
            (0..count)
                .map(|_| {
                    Err(ChannelError::transient(
                        format!("channel '{}': its worker stopped", self.name()),
                        0,
                    ))
                })
                .collect()
        };
        if sent.is_err() {
            return stopped();
        }
        // The worker only goes away if the channel panicked.
        answer.await.unwrap_or_else(|_| stopped())
    }
}
