//! Opening the configured backends: embedded (one data directory), or
//! RabbitMQ, PostgreSQL and Redis, in any combination.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use auditflow_core::{Broker, Store, WindowState};
use auditflow_embedded::{Embedded, EmbeddedOptions};
use auditflow_rules::RuleSet;

use crate::config::Config;
use crate::window_source::StoreWindowSource;

/// The opened backends, before their resilience policies are applied.
pub struct Backends {
    /// Queues.
    pub broker: Arc<dyn Broker>,
    /// Events, alerts, deliveries.
    pub store: Arc<dyn Store>,
    /// Threshold-rule windows.
    pub windows: Arc<dyn WindowState>,
    /// The embedded backends, when any is used: dropped last, at shutdown.
    pub embedded: Option<Embedded>,
}

/// Opens what `config.backends` names.
pub async fn open(config: &Config, rules: &Arc<RuleSet>) -> anyhow::Result<Backends> {
    let embedded = if config.backends.any_embedded() {
        Some(
            Embedded::open(
                &config.data_dir,
                EmbeddedOptions {
                    max_queue_depth: config.broker.max_queue_depth,
                    delivery_limit: config.broker.delivery_limit,
                    // A small page cache per connection keeps the resident set
                    // small (there are several connections); the OS caches the rest.
                    cache_size_mib: 8,
                    read_pool_size: 2,
                    ..EmbeddedOptions::default()
                },
            )
            .with_context(|| {
                format!(
                    "opening the embedded backends in {}",
                    config.data_dir.display()
                )
            })?,
        )
    } else {
        None
    };
    let local = |what: &str| {
        embedded
            .clone()
            .ok_or_else(|| anyhow::anyhow!("{what} is embedded but the data directory is not open"))
    };

    let broker: Arc<dyn Broker> = if config.backends.broker == "embedded" {
        local("broker")?.broker()
    } else {
        let mut rabbit = config.rabbitmq.clone();
        rabbit.url = config.backends.broker.clone();
        rabbit.delivery_limit = config.broker.delivery_limit;
        // Threshold windows need the events queue in order: one analyze
        // replica consumes at a time, the others stand by.
        if !rabbit
            .single_active_consumer
            .contains(&config.broker.events_queue)
        {
            rabbit
                .single_active_consumer
                .push(config.broker.events_queue.clone());
        }
        Arc::new(
            auditflow_rabbitmq::RabbitBroker::connect(rabbit, Duration::from_secs(30))
                .await
                .context("connecting to RabbitMQ")?,
        )
    };

    let mut pg_store = None;
    let store: Arc<dyn Store> = if config.backends.store == "embedded" {
        local("store")?.store()
    } else {
        let mut pg = config.postgres.clone();
        pg.url = config.backends.store.clone();
        let store = auditflow_postgres::PgStore::connect(pg)
            .await
            .context("connecting to PostgreSQL")?;
        pg_store = Some(store.clone());
        Arc::new(store)
    };

    let windows: Arc<dyn WindowState> = match config.backends.windows.as_str() {
        "embedded" => local("window state")?.windows(),
        "store" => {
            let pool = pg_store.as_ref().map(|s| s.pool().clone()).ok_or_else(|| {
                anyhow::anyhow!("backends.windows = 'store' needs a PostgreSQL store")
            })?;
            Arc::new(auditflow_postgres::PgWindowState::new(pool))
        }
        url => {
            let mut redis = config.redis.clone();
            redis.url = url.to_string();
            let source = Arc::new(StoreWindowSource::new(
                Arc::clone(&store),
                Arc::clone(rules),
            ));
            Arc::new(
                auditflow_redis::RedisWindowState::new(redis, source)
                    .context("configuring Redis")?,
            )
        }
    };
    Ok(Backends {
        broker,
        store,
        windows,
        embedded,
    })
}
