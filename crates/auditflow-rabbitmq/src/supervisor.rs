//! The connection supervisor: owns the connection, reconnects with capped
//! exponential backoff and jitter, and publishes the live state to everyone
//! else through a `watch` channel.
//!
//! A [`Live`] is one incarnation of the connection with its confirm-mode
//! publish channel; its `generation` grows with every incarnation. Users
//! that see a failure call [`Shared::kick`]; the supervisor then checks the
//! connection and channel and replaces whatever is broken. Queues in use are
//! re-declared on every new connection, and declarations are cached per
//! generation so each queue is declared once per incarnation.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use auditflow_core::broker::BrokerError;
use futures_util::StreamExt;
use lapin::options::{ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::config::RabbitConfig;
use crate::error::unavailable;
use crate::topology;

/// One live connection and its publish channel.
#[derive(Debug)]
pub(crate) struct Live {
    /// Incarnation number, starting at 1.
    pub generation: u64,
    /// The connection.
    pub conn: Arc<Connection>,
    /// Confirm-mode channel shared by all publishers.
    pub publish: Channel,
    /// Channel for cheap checks (`check`).
    pub admin: Channel,
    /// Channel for passive declares (`stats`), opened on first use and
    /// again once a failed declare has closed it. Not `admin`: a failure
    /// there would make the whole connection look broken.
    inspect: tokio::sync::Mutex<Option<Channel>>,
}

impl Live {
    /// True while the connection and the publish channel are usable.
    pub fn healthy(&self) -> bool {
        self.conn.status().connected()
            && self.publish.status().connected()
            && self.admin.status().connected()
    }

    /// The channel for passive declares, reused from call to call: a
    /// channel opened and closed per `stats` call cost RabbitMQ 2.4 ms of
    /// CPU per `/v1/queues` request (two queues), so a dashboard or a
    /// benchmark polling it every 20 ms took a tenth of a core
    /// (2026-12-08).
    pub async fn inspect_channel(&self) -> Result<Channel, BrokerError> {
        let mut slot = self.inspect.lock().await;
        if let Some(channel) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(channel.clone());
        }
        let channel = self.temp_channel().await?;
        *slot = Some(channel.clone());
        Ok(channel)
    }

    /// Opens a short-lived channel (for declarations and scans whose
    /// errors must not close a shared channel).
    pub async fn temp_channel(&self) -> Result<Channel, BrokerError> {
        self.conn
            .create_channel()
            .await
            .map_err(|e| unavailable("cannot open a channel", &e))
    }
}

/// Per-process state shared by the broker handle, its subscriptions and the
/// supervisor.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: RabbitConfig,
    live: watch::Sender<Option<Arc<Live>>>,
    kick: Notify,
    closed: watch::Sender<bool>,
    /// Every queue used so far, re-declared after each reconnect.
    known: Mutex<BTreeSet<String>>,
    /// Queues declared on the connection of the given generation.
    declared: Mutex<(u64, HashSet<String>)>,
    /// Serialises declarations: RabbitMQ 3.10 nacks publishes to a quorum
    /// queue that was declared concurrently from several channels.
    declaring: tokio::sync::Mutex<()>,
    /// Generation whose publish channel should be replaced.
    recycle: AtomicU64,
    /// Deliveries held by this process's subscriptions, per queue.
    unacked: Mutex<HashMap<String, Arc<AtomicU64>>>,
    /// Compat topology: deliveries seen per (queue, message key).
    redeliveries: Mutex<HashMap<(String, String), u32>>,
}

/// Most entries kept in the compat redelivery counter before it is reset.
const MAX_TRACKED_REDELIVERIES: usize = 100_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn new(config: RabbitConfig) -> Arc<Shared> {
        Arc::new(Shared {
            config,
            live: watch::channel(None).0,
            kick: Notify::new(),
            closed: watch::channel(false).0,
            known: Mutex::default(),
            declared: Mutex::default(),
            declaring: tokio::sync::Mutex::new(()),
            recycle: AtomicU64::new(0),
            unacked: Mutex::default(),
            redeliveries: Mutex::default(),
        })
    }

    /// Asks the supervisor to check the connection now.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Asks the supervisor to replace the publish channel of `generation`
    /// (after nacks it cannot explain: a fresh channel has fresh queue state).
    pub fn recycle(&self, generation: u64) {
        self.recycle.store(generation, Ordering::Relaxed);
        self.kick();
    }

    /// Stops the supervisor; everything then fails with `Closed`.
    pub fn close(&self) {
        self.closed.send_replace(true);
        self.kick();
    }

    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// The current live connection, if healthy.
    pub fn current(&self) -> Option<Arc<Live>> {
        self.live.borrow().as_ref().filter(|l| l.healthy()).cloned()
    }

    /// Waits for a healthy connection of a generation newer than `after`,
    /// until `deadline` (`None`: forever).
    pub async fn wait_live(
        &self,
        after: u64,
        deadline: Option<Instant>,
    ) -> Result<Arc<Live>, BrokerError> {
        let mut rx = self.live.subscribe();
        let mut closed = self.closed.subscribe();
        loop {
            if *closed.borrow_and_update() {
                return Err(BrokerError::Closed);
            }
            let current = rx
                .borrow_and_update()
                .as_ref()
                .filter(|l| l.generation > after && l.healthy())
                .cloned();
            if let Some(live) = current {
                return Ok(live);
            }
            if rx.borrow().as_ref().is_some_and(|l| !l.healthy()) {
                // Let the supervisor notice sooner than its poll.
                self.kick();
            }
            let wait = async {
                tokio::select! {
                    r = rx.changed() => r.is_ok(),
                    _ = closed.changed() => true,
                    // Health is not pushed by lapin: re-check periodically.
                    _ = tokio::time::sleep(Duration::from_millis(50)) => true,
                }
            };
            let alive = match deadline {
                Some(d) => match tokio::time::timeout_at(d, wait).await {
                    Ok(alive) => alive,
                    Err(_) => {
                        return Err(BrokerError::Unavailable(
                            "not connected to RabbitMQ (reconnecting)".into(),
                        ))
                    }
                },
                None => wait.await,
            };
            if !alive {
                return Err(BrokerError::Closed);
            }
        }
    }

    /// Records that `queue` is in use.
    pub fn remember(&self, queue: &str) {
        let mut known = lock(&self.known);
        if !known.contains(queue) {
            known.insert(queue.to_string());
        }
    }

    /// Declares `queue` (and its dead-letter side) on `live` unless already
    /// done for this generation.
    pub async fn ensure_declared(&self, live: &Live, queue: &str) -> Result<(), BrokerError> {
        self.remember(queue);
        let is_declared = || {
            let declared = lock(&self.declared);
            declared.0 == live.generation && declared.1.contains(queue)
        };
        if is_declared() {
            return Ok(());
        }
        let _serial = self.declaring.lock().await;
        if is_declared() {
            return Ok(());
        }
        let channel = live.temp_channel().await?;
        let result = topology::declare(&channel, &self.config, queue).await;
        let _ = channel.close(200, "declared".into()).await;
        result?;
        let mut declared = lock(&self.declared);
        if declared.0 != live.generation {
            *declared = (live.generation, HashSet::new());
        }
        declared.1.insert(queue.to_string());
        Ok(())
    }

    /// Forgets that `queue` was declared (e.g. a publish was unroutable).
    pub fn forget_declared(&self, queue: &str) {
        lock(&self.declared).1.remove(queue);
    }

    /// The counter of deliveries held for `queue` by this process.
    pub fn unacked_counter(&self, queue: &str) -> Arc<AtomicU64> {
        Arc::clone(lock(&self.unacked).entry(queue.to_string()).or_default())
    }

    pub fn unacked(&self, queue: &str) -> u64 {
        lock(&self.unacked)
            .get(queue)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Compat topology: counts a delivery of the message `key`, returning
    /// how many times this process has seen it delivered (at least 2 when
    /// RabbitMQ flags it redelivered).
    pub fn count_delivery(&self, queue: &str, key: &str, redelivered: bool) -> u32 {
        let mut map = lock(&self.redeliveries);
        if map.len() >= MAX_TRACKED_REDELIVERIES {
            map.clear();
        }
        let entry = map.entry((queue.to_string(), key.to_string())).or_insert(0);
        *entry = if redelivered { (*entry + 1).max(2) } else { 1 };
        *entry
    }

    /// Compat topology: the message `key` is done with.
    pub fn forget_delivery(&self, queue: &str, key: &str) {
        lock(&self.redeliveries).remove(&(queue.to_string(), key.to_string()));
    }

    fn publish_live(&self, live: Option<Arc<Live>>) {
        self.live.send_replace(live);
    }

    fn known_queues(&self) -> Vec<String> {
        lock(&self.known).iter().cloned().collect()
    }
}

/// Runs until [`Shared::close`]: connects, watches, reconnects.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut generation = 0u64;
    let mut attempt = 0u32;
    let mut closed = shared.closed.subscribe();
    loop {
        if shared.is_closed() {
            break;
        }
        let conn = match connect(&shared).await {
            Ok(conn) => Arc::new(conn),
            Err(e) => {
                let delay = shared.config.reconnect.delay(attempt);
                attempt = attempt.saturating_add(1);
                tracing::warn!(error = %e, ?delay, "cannot connect to RabbitMQ, retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = closed.changed() => {}
                }
                continue;
            }
        };
        let mut events = conn.events_listener();
        // Serve this connection, replacing its channels when they break.
        loop {
            generation += 1;
            let live = match open_channels(&shared, Arc::clone(&conn), generation).await {
                Ok(live) => Arc::new(live),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open RabbitMQ channels");
                    break;
                }
            };
            attempt = 0;
            redeclare(&shared, &live).await;
            tracing::info!(generation, "connected to RabbitMQ");
            shared.publish_live(Some(Arc::clone(&live)));
            while live.healthy()
                && !shared.is_closed()
                && shared.recycle.load(Ordering::Relaxed) != live.generation
            {
                tokio::select! {
                    _ = shared.kick.notified() => {}
                    _ = events.next() => {}
                    _ = closed.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
            shared.publish_live(None);
            if shared.is_closed() || !conn.status().connected() {
                break;
            }
            let _ = live.publish.close(200, "replacing".into()).await;
            tracing::warn!(generation, "RabbitMQ publish channel lost, reopening");
        }
        shared.publish_live(None);
        if shared.is_closed() {
            let _ = conn.close(200, "shutting down".into()).await;
            break;
        }
        tracing::warn!("RabbitMQ connection lost, reconnecting");
        drop(conn);
        let delay = shared.config.reconnect.delay(attempt);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = closed.changed() => {}
        }
    }
    shared.publish_live(None);
}

async fn connect(shared: &Shared) -> Result<Connection, lapin::Error> {
    let props = ConnectionProperties::default()
        .with_connection_name(shared.config.connection_name.clone().into());
    let timeout = shared.config.reconnect.max.max(Duration::from_secs(5));
    let mut uri: AMQPUri = shared.config.url.parse().map_err(|e: String| {
        lapin::Error::from(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    })?;
    if uri.query.frame_max.is_none() {
        uri.query.frame_max = Some(shared.config.frame_max);
    }
    match tokio::time::timeout(timeout, Connection::connect_uri(uri, props)).await {
        Ok(r) => r,
        Err(_) => Err(lapin::Error::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connection attempt timed out",
        ))),
    }
}

async fn open_channels(
    _shared: &Shared,
    conn: Arc<Connection>,
    generation: u64,
) -> Result<Live, lapin::Error> {
    let publish = conn.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let admin = conn.create_channel().await?;
    Ok(Live {
        generation,
        conn,
        publish,
        admin,
        inspect: tokio::sync::Mutex::new(None),
    })
}

async fn redeclare(shared: &Shared, live: &Live) {
    for queue in shared.known_queues() {
        if let Err(e) = shared.ensure_declared(live, &queue).await {
            tracing::warn!(queue, error = %e, "cannot re-declare queue after reconnect");
        }
    }
}

/// Cheap readiness probe: a passive declare of a built-in exchange on the
/// admin channel.
pub(crate) async fn check(shared: &Shared) -> Result<(), BrokerError> {
    if shared.is_closed() {
        return Err(BrokerError::Closed);
    }
    let live = shared
        .current()
        .ok_or_else(|| BrokerError::Unavailable("not connected to RabbitMQ".into()))?;
    let probe = live.admin.exchange_declare(
        "amq.direct".into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            passive: true,
            durable: true,
            ..ExchangeDeclareOptions::default()
        },
        FieldTable::default(),
    );
    match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            shared.kick();
            Err(unavailable("RabbitMQ check failed", &e))
        }
        Err(_) => Err(BrokerError::Unavailable("RabbitMQ check timed out".into())),
    }
}
