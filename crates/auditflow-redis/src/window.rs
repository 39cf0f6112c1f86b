//! [`RedisWindowState`]: threshold-rule windows in Redis, shared by competing
//! analyzers in any number of processes.
//!
//! `observe(batch)` groups the batch by `(rule, group)` and sends ONE call
//! of `observe.lua` per group (its observations in order), all groups
//! pipelined in one round trip. Each call is atomic on the server: it checks
//! the epoch (see [`crate::rebuild`]), answers redeliveries with their
//! recorded decision, decides new events exactly as
//! [`auditflow_core::window::GroupWindow`] would, records them, prunes, and
//! refreshes the group's TTL, all before replying. So a decision is only ever
//! returned once recorded, and two processes observing the same group are
//! serialized by Redis.
//!
//! If a round trip fails or times out, `observe` returns
//! `WindowError::Unavailable`; groups the server already decided keep their
//! decisions, which a retry gets back as redeliveries. Groups that must be
//! rebuilt, or an epoch that changed, take extra round trips within the
//! same `observe` (a few at most).
//!
//! Processing time ("now": when a member was first observed, which the
//! decision grace is measured from) is the Redis server's clock, so all
//! processes share one clock, the same one that expires keys.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use auditflow_core::window::{
    Decision, Member, Observation, WindowError, WindowSource, WindowState,
};
use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use redis::{ErrorKind, RedisResult, ServerErrorKind, Value};
use uuid::Uuid;

use crate::config::RedisConfig;
use crate::error::{protocol, unavailable, ConfigError};
use crate::rebuild;
use crate::script::{epoch_key, GroupKeys, ObserveCall, Reply, Scripts};

/// Round trips one `observe` may take before giving up: a lost epoch, a
/// rebuild and a changed epoch each cost one.
const MAX_ROUNDS: usize = 6;

/// Window state in Redis. Cheap to clone.
#[derive(Clone)]
pub struct RedisWindowState {
    inner: Arc<Inner>,
}

struct Inner {
    config: RedisConfig,
    conn: ConnectionManager,
    source: Arc<dyn WindowSource>,
    scripts: Scripts,
    epoch_key: String,
    epoch: Mutex<Option<String>>,
    rebuilds: AtomicU64,
    epochs_created: AtomicU64,
}

impl std::fmt::Debug for RedisWindowState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisWindowState")
            .field("config", &self.inner.config)
            .field(
                "epoch",
                &self.inner.epoch.lock().ok().and_then(|e| e.clone()),
            )
            .finish_non_exhaustive()
    }
}

/// The observations of one group within a batch.
struct Group<'a> {
    rule_id: &'a str,
    group_key: &'a str,
    keys: GroupKeys,
    /// Indexes into the batch, in order.
    indexes: Vec<usize>,
    observations: Vec<&'a Observation>,
    rebuild: Option<Vec<Member>>,
    done: bool,
}

impl RedisWindowState {
    /// Creates the state. Connects lazily: the first command connects (and
    /// the connection manager reconnects by itself after failures), so this
    /// succeeds while Redis is down; use [`WindowState::check`] to probe.
    ///
    /// `source` is the durable record groups are rebuilt from after Redis
    /// lost its data (see [`crate::rebuild`]). Must be called inside a Tokio
    /// runtime.
    pub fn new(
        config: RedisConfig,
        source: Arc<dyn WindowSource>,
    ) -> Result<RedisWindowState, ConfigError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::NoRuntime);
        }
        if config.command_timeout.is_zero() || config.connect_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "command_timeout and connect_timeout must be positive".into(),
            ));
        }
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| ConfigError::Url(e.to_string()))?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(2)
            .set_min_delay(std::time::Duration::from_millis(50))
            .set_max_delay(config.command_timeout);
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(RedisWindowState {
            inner: Arc::new(Inner {
                epoch_key: epoch_key(&config.key_prefix),
                config,
                conn,
                source,
                scripts: Scripts::new(),
                epoch: Mutex::new(None),
                rebuilds: AtomicU64::new(0),
                epochs_created: AtomicU64::new(0),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// The keys holding the window of `(rule_id, group_key)`.
    pub fn group_keys(&self, rule_id: &str, group_key: &str) -> GroupKeys {
        GroupKeys::new(&self.inner.config.key_prefix, rule_id, group_key)
    }

    /// The current epoch marker (`<id>:<created µs>`), creating it if absent.
    pub async fn epoch(&self) -> Result<String, WindowError> {
        self.inner.epoch().await
    }

    /// Groups this instance rebuilt from the source so far (for metrics).
    pub fn rebuilds(&self) -> u64 {
        self.inner.rebuilds.load(Ordering::Relaxed)
    }

    /// Epoch markers this instance created after finding none (for metrics:
    /// each one after the first means Redis lost its data).
    pub fn epochs_created(&self) -> u64 {
        self.inner.epochs_created.load(Ordering::Relaxed)
    }

    /// [`WindowState::observe`] with an explicit processing time instead of
    /// the Redis server's clock: for tests and replays that must control
    /// when decisions pass their grace period.
    pub async fn observe_at(
        &self,
        observations: &[Observation],
        now: DateTime<Utc>,
    ) -> Result<Vec<Decision>, WindowError> {
        self.inner
            .observe(observations, Some(now.timestamp_micros()))
            .await
    }
}

impl Inner {
    /// Runs one round trip under the command timeout.
    async fn run<T>(
        &self,
        what: &str,
        fut: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, WindowError> {
        match tokio::time::timeout(self.config.command_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(what, &e)),
            Err(_) => Err(WindowError::Unavailable(format!(
                "{what}: no answer from Redis within {:?}",
                self.config.command_timeout
            ))),
        }
    }

    async fn epoch(&self) -> Result<String, WindowError> {
        if let Some(epoch) = self.cached_epoch() {
            return Ok(epoch);
        }
        let fresh = Uuid::new_v4().simple().to_string();
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.epoch.prepare_invoke();
        inv.key(&self.epoch_key).arg(&fresh);
        let marker: String = self
            .run("cannot read the epoch marker", inv.invoke_async(&mut conn))
            .await?;
        if marker.starts_with(&fresh) {
            self.epochs_created.fetch_add(1, Ordering::Relaxed);
            tracing::info!(epoch = %marker, "created a new window-state epoch in Redis");
        }
        self.set_epoch(None, marker.clone());
        Ok(marker)
    }

    fn cached_epoch(&self) -> Option<String> {
        self.epoch.lock().ok().and_then(|e| e.clone())
    }

    /// Replaces the cached epoch, if it is still `seen` (`None`: always).
    fn set_epoch(&self, seen: Option<&str>, new: String) {
        if let Ok(mut cached) = self.epoch.lock() {
            if seen.is_none() || cached.as_deref() == seen {
                *cached = Some(new);
            }
        }
    }

    /// Forgets the cached epoch if it is still `seen`.
    fn forget_epoch(&self, seen: &str) {
        if let Ok(mut cached) = self.epoch.lock() {
            if cached.as_deref() == Some(seen) {
                *cached = None;
            }
        }
    }

    /// Sends one pipelined script call per group of `calls`; loads the
    /// script and retries once on `NOSCRIPT` (a restarted Redis).
    async fn call_scripts(&self, calls: &[ObserveCall<'_>]) -> Result<Vec<Value>, WindowError> {
        let invocations: Vec<_> = calls
            .iter()
            .map(|c| c.invocation(&self.scripts.observe))
            .collect();
        let mut pipe = redis::pipe();
        for inv in &invocations {
            pipe.invoke_script(inv);
        }
        let mut conn = self.conn.clone();
        let first = tokio::time::timeout(
            self.config.command_timeout,
            pipe.query_async::<Vec<Value>>(&mut conn),
        )
        .await;
        match first {
            Ok(Err(e)) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                let mut load = redis::pipe();
                load.load_script(&self.scripts.observe).ignore();
                self.run("cannot load the observe script", async {
                    load.query_async::<()>(&mut conn).await?;
                    pipe.query_async::<Vec<Value>>(&mut conn).await
                })
                .await
            }
            Ok(result) => result.map_err(|e| unavailable("window observe failed", &e)),
            Err(_) => Err(WindowError::Unavailable(format!(
                "window observe: no answer from Redis within {:?}",
                self.config.command_timeout
            ))),
        }
    }

    async fn observe(
        &self,
        observations: &[Observation],
        now: Option<i64>,
    ) -> Result<Vec<Decision>, WindowError> {
        if observations.is_empty() {
            return Ok(Vec::new());
        }
        let mut groups: Vec<Group<'_>> = Vec::new();
        let mut by_key: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, o) in observations.iter().enumerate() {
            let g = *by_key
                .entry((o.rule_id.as_str(), o.group_key.as_str()))
                .or_insert_with(|| {
                    groups.push(Group {
                        rule_id: &o.rule_id,
                        group_key: &o.group_key,
                        keys: GroupKeys::new(&self.config.key_prefix, &o.rule_id, &o.group_key),
                        indexes: Vec::new(),
                        observations: Vec::new(),
                        rebuild: None,
                        done: false,
                    });
                    groups.len() - 1
                });
            groups[g].indexes.push(i);
            groups[g].observations.push(o);
        }

        let mut decisions: Vec<Option<Decision>> = vec![None; observations.len()];
        for _ in 0..MAX_ROUNDS {
            let epoch = self.epoch().await?;
            let pending: Vec<usize> = (0..groups.len()).filter(|&g| !groups[g].done).collect();
            let calls: Vec<ObserveCall<'_>> = pending
                .iter()
                .map(|&g| ObserveCall {
                    epoch_key: &self.epoch_key,
                    keys: &groups[g].keys,
                    epoch: &epoch,
                    now,
                    ttl_slack: self.config.ttl_slack,
                    rebuild: groups[g].rebuild.as_deref(),
                    observations: &groups[g].observations,
                })
                .collect();
            let replies = self.call_scripts(&calls).await?;
            drop(calls);
            if replies.len() != pending.len() {
                return Err(protocol(format!(
                    "{} replies to {} calls",
                    replies.len(),
                    pending.len()
                )));
            }

            let mut lost = false;
            let mut to_rebuild = Vec::new();
            for (&g, reply) in pending.iter().zip(&replies) {
                let group = &mut groups[g];
                match Reply::parse(reply, group.indexes.len())? {
                    Reply::Decided(pairs) => {
                        for (&i, (fire, count)) in group.indexes.iter().zip(pairs) {
                            decisions[i] = Some(Decision { fire, count });
                        }
                        group.done = true;
                    }
                    Reply::Lost => lost = true,
                    Reply::Epoch(current) => self.set_epoch(Some(&epoch), current),
                    Reply::Rebuild => to_rebuild.push(g),
                }
            }
            if lost {
                tracing::warn!(
                    epoch = %epoch,
                    "the window-state epoch marker vanished: Redis lost its data; \
                     groups will be rebuilt from the event store"
                );
                self.forget_epoch(&epoch);
            }
            if !to_rebuild.is_empty() {
                let fetched = futures_util::future::try_join_all(to_rebuild.iter().map(|&g| {
                    let group = &groups[g];
                    rebuild::members(
                        self.source.as_ref(),
                        group.rule_id,
                        group.group_key,
                        &group.observations,
                    )
                }))
                .await?;
                for (&g, members) in to_rebuild.iter().zip(fetched) {
                    tracing::debug!(
                        rule_id = groups[g].rule_id,
                        members = members.len(),
                        "rebuilding a window group from the event store"
                    );
                    groups[g].rebuild = Some(members);
                    self.rebuilds.fetch_add(1, Ordering::Relaxed);
                }
            }
            if groups.iter().all(|g| g.done) {
                return decisions
                    .into_iter()
                    .map(|d| d.ok_or_else(|| protocol("an observation was not decided")))
                    .collect();
            }
        }
        Err(WindowError::Unavailable(format!(
            "window state in Redis kept changing (epoch lost or replaced) during {MAX_ROUNDS} round trips"
        )))
    }
}

#[async_trait]
impl WindowState for RedisWindowState {
    async fn observe(&self, observations: &[Observation]) -> Result<Vec<Decision>, WindowError> {
        self.inner.observe(observations, None).await
    }

    async fn check(&self) -> Result<(), WindowError> {
        let mut conn = self.inner.conn.clone();
        self.inner
            .run(
                "Redis PING failed",
                redis::cmd("PING").query_async::<()>(&mut conn),
            )
            .await
    }
}
