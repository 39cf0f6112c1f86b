//! [`RabbitBroker`]: the [`Broker`] implementation.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use auditflow_core::broker::{Broker, BrokerError, DeadLetter, Message, QueueStats, Subscription};
use tokio::time::Instant;

use crate::config::{RabbitConfig, Topology};
use crate::error::{validate_queue, ConfigError};
use crate::publisher::publish_confirmed;
use crate::subscription::RabbitSubscription;
use crate::supervisor::{self, Shared};
use crate::{dead_letters, topology};

/// A [`Broker`] over RabbitMQ. Cheap to clone; clones share the connection.
/// The supervisor task stops when the last clone is dropped (or on
/// [`RabbitBroker::close`]).
#[derive(Debug, Clone)]
pub struct RabbitBroker {
    shared: Arc<Shared>,
    _guard: Arc<CloseOnDrop>,
}

#[derive(Debug)]
struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl RabbitBroker {
    /// Starts the connection supervisor and returns at once; the broker
    /// connects (and keeps reconnecting) in the background, and `check`
    /// reports `Unavailable` until it is connected. Must be called inside a
    /// Tokio runtime.
    pub fn start(config: RabbitConfig) -> Result<RabbitBroker, ConfigError> {
        config
            .url
            .parse::<lapin::uri::AMQPUri>()
            .map_err(ConfigError::Url)?;
        if config.confirm_batch == 0 {
            return Err(ConfigError::Invalid(
                "confirm_batch must be at least 1".into(),
            ));
        }
        if config.frame_max < 4096 {
            // AMQP 0-9-1 frame-min-size: a peer may not propose less.
            return Err(ConfigError::Invalid(
                "frame_max must be at least 4096".into(),
            ));
        }
        if config.delivery_limit == 0 {
            return Err(ConfigError::Invalid(
                "delivery_limit must be at least 1".into(),
            ));
        }
        if config.reconnect.max < config.reconnect.initial {
            return Err(ConfigError::Invalid(
                "reconnect.max must not be below reconnect.initial".into(),
            ));
        }
        let handle = tokio::runtime::Handle::try_current().map_err(|_| ConfigError::NoRuntime)?;
        let shared = Shared::new(config);
        handle.spawn(supervisor::run(Arc::clone(&shared)));
        Ok(RabbitBroker {
            _guard: Arc::new(CloseOnDrop(Arc::clone(&shared))),
            shared,
        })
    }

    /// [`RabbitBroker::start`], then waits up to `timeout` for the first
    /// connection.
    pub async fn connect(
        config: RabbitConfig,
        timeout: Duration,
    ) -> Result<RabbitBroker, BrokerError> {
        let broker =
            RabbitBroker::start(config).map_err(|e| BrokerError::Rejected(e.to_string()))?;
        broker
            .shared
            .wait_live(0, Some(Instant::now() + timeout))
            .await?;
        Ok(broker)
    }

    /// The configuration in use.
    pub fn config(&self) -> &RabbitConfig {
        &self.shared.config
    }

    /// True while connected.
    pub fn is_connected(&self) -> bool {
        self.shared.current().is_some()
    }

    /// Stops the supervisor and closes the connection; every later call
    /// fails with `Closed`.
    pub fn close(&self) {
        self.shared.close();
    }
}

#[async_trait]
impl Broker for RabbitBroker {
    async fn publish(&self, queue: &str, messages: &[Message]) -> Result<(), BrokerError> {
        validate_queue(queue)?;
        let deadline = Instant::now() + self.shared.config.publish_timeout;
        let bounded = self.shared.config.topology == Topology::Quorum;
        // `confirm_batch` is at least 1 (checked in `start`).
        for chunk in messages.chunks(self.shared.config.confirm_batch) {
            publish_confirmed(&self.shared, queue, queue, bounded, chunk, deadline).await?;
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        queue: &str,
        prefetch: usize,
    ) -> Result<Box<dyn Subscription>, BrokerError> {
        validate_queue(queue)?;
        if self.shared.is_closed() {
            return Err(BrokerError::Closed);
        }
        let prefetch = if prefetch == 0 {
            self.shared.config.prefetch
        } else {
            u16::try_from(prefetch).unwrap_or(u16::MAX)
        };
        // Declare now so a bad queue fails here rather than in the task.
        let deadline = Instant::now() + self.shared.config.publish_timeout;
        let live = self.shared.wait_live(0, Some(deadline)).await?;
        self.shared.ensure_declared(&live, queue).await?;
        Ok(Box::new(RabbitSubscription::start(
            Arc::clone(&self.shared),
            queue.to_string(),
            prefetch,
        )))
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, BrokerError> {
        validate_queue(queue)?;
        let deadline = Instant::now() + self.shared.config.publish_timeout;
        let live = self.shared.wait_live(0, Some(deadline)).await?;
        self.shared.ensure_declared(&live, queue).await?;
        let channel = live.inspect_channel().await?;
        let ready = topology::depth(&channel, queue).await?;
        let dead_lettered = topology::depth(&channel, &topology::dlq_name(queue)).await?;
        Ok(QueueStats {
            ready,
            unacked: self.shared.unacked(queue),
            dead_lettered,
        })
    }

    async fn dead_letters(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        validate_queue(queue)?;
        dead_letters::list(&self.shared, queue, limit).await
    }

    async fn redrive(&self, queue: &str, dead_letter_id: &str) -> Result<bool, BrokerError> {
        validate_queue(queue)?;
        dead_letters::redrive(&self.shared, queue, dead_letter_id).await
    }

    async fn check(&self) -> Result<(), BrokerError> {
        supervisor::check(&self.shared).await
    }
}
