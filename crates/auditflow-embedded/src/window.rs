//! [`SqliteWindowState`]: durable threshold-rule windows in `window.sqlite`.
//!
//! Decisions are made by [`GroupWindow`] (the shared state machine) on an
//! in-memory cache of groups, hydrated lazily from `window_members` the first
//! time a group is seen. `observe` decides a whole batch in order, then
//! persists the new members (and deletes those that fell behind the
//! retention horizon) in ONE transaction, and returns only after the commit.
//! If the commit fails, the touched groups are evicted from the cache so
//! they are reloaded from disk: nothing unrecorded is ever returned or kept.
//!
//! Observes are serialized by a mutex (two analyzer tasks cannot race on a
//! group), and each runs as its own task, so a caller that stops waiting
//! cannot leave the cache ahead of the database.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use auditflow_core::window::{
    Decision, GroupWindow, Member, Observation, WindowError, WindowSpec, WindowState,
};
use rusqlite::params;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::error::{Context, DbError, EmbeddedError};
use crate::lock::DirLock;
use crate::options::EmbeddedOptions;
use crate::readpool::ReadPool;
use crate::writer::{Failpoints, Writer};

/// File name of the window state's database inside the data directory.
pub const WINDOW_FILE: &str = "window.sqlite";

const FAILPOINTS: Failpoints = Failpoints {
    before_commit: "embedded::window::before_commit",
    after_commit: "embedded::window::after_commit",
};

type GroupKey = (String, String);

/// The embedded window state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteWindowState {
    inner: Arc<WindowInner>,
}

#[derive(Debug)]
struct WindowInner {
    writer: Writer,
    reads: Arc<ReadPool>,
    cache: Mutex<HashMap<GroupKey, GroupWindow>>,
    _lock: Arc<DirLock>,
}

impl SqliteWindowState {
    /// Opens (creating or migrating) `window.sqlite` in `dir`.
    pub(crate) fn open(
        dir: &Path,
        opts: &EmbeddedOptions,
        lock: Arc<DirLock>,
    ) -> Result<SqliteWindowState, EmbeddedError> {
        let path = dir.join(WINDOW_FILE);
        let mut conn = crate::conn::open_writer(&path, opts)?;
        crate::schema::migrate(&mut conn, &path, crate::schema::WINDOW)?;
        let reads = ReadPool::open(&path, opts, 1)?;
        let checkpointer =
            crate::checkpoint::Checkpointer::attach(&mut conn, &path, opts, "ckpt-window")?;
        let writer = Writer::spawn(
            "auditflow-window-writer",
            conn,
            checkpointer,
            opts.max_group_commit,
            FAILPOINTS,
        )
        .map_err(|source| EmbeddedError::Io {
            context: "cannot start writer thread for",
            path: path.clone(),
            source,
        })?;
        Ok(SqliteWindowState {
            inner: Arc::new(WindowInner {
                writer,
                reads,
                cache: Mutex::new(HashMap::new()),
                _lock: lock,
            }),
        })
    }

    /// Number of groups currently cached (for metrics and tests).
    pub async fn cached_groups(&self) -> usize {
        self.inner.cache.lock().await.len()
    }
}

impl WindowInner {
    /// Reads the persisted members of `keys`.
    async fn load(&self, keys: Vec<GroupKey>) -> Result<Vec<(GroupKey, GroupWindow)>, DbError> {
        self.reads
            .run(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT micros, event_id, fire, count, observed_micros FROM window_members
                         WHERE rule_id = ?1 AND group_key = ?2",
                    )
                    .ctx("cannot prepare window load")?;
                let mut out = Vec::with_capacity(keys.len());
                for key in keys {
                    let members = stmt
                        .query_map(params![key.0, key.1], |row| {
                            let id: Vec<u8> = row.get(1)?;
                            Ok(Member {
                                micros: row.get(0)?,
                                event_id: Uuid::from_slice(&id).unwrap_or_default(),
                                decision: Decision {
                                    fire: row.get(2)?,
                                    count: row.get(3)?,
                                },
                                observed_micros: row.get(4)?,
                            })
                        })
                        .ctx("cannot load window")?
                        .collect::<Result<Vec<_>, _>>()
                        .ctx("cannot read window member")?;
                    out.push((key, GroupWindow::from_members(members)));
                }
                Ok(out)
            })
            .await
    }

    async fn observe(&self, observations: Vec<Observation>) -> Result<Vec<Decision>, DbError> {
        let mut cache = self.cache.lock().await;
        let mut missing: Vec<GroupKey> = Vec::new();
        for o in &observations {
            let key = (o.rule_id.clone(), o.group_key.clone());
            if !cache.contains_key(&key) && !missing.contains(&key) {
                missing.push(key);
            }
        }
        if !missing.is_empty() {
            for (key, window) in self.load(missing).await? {
                cache.insert(key, window);
            }
        }

        let mut decisions = Vec::with_capacity(observations.len());
        let mut inserts: Vec<(GroupKey, Member)> = Vec::new();
        let mut touched: HashMap<GroupKey, WindowSpec> = HashMap::new();
        let now = chrono::Utc::now();
        for o in &observations {
            let key = (o.rule_id.clone(), o.group_key.clone());
            let window = cache.entry(key.clone()).or_default();
            let (decision, member) = window.observe(o.event_id, o.event_time, &o.spec, now);
            decisions.push(decision);
            if let Some(member) = member {
                inserts.push((key.clone(), member));
                touched.insert(key, o.spec);
            }
        }
        if inserts.is_empty() {
            return Ok(decisions);
        }
        // Rows behind each touched group's horizon, past their decision grace,
        // were pruned from memory; prune them on disk by the same bounds.
        let horizons: Vec<(GroupKey, (i64, i64))> = touched
            .iter()
            .filter_map(|(key, spec)| Some((key.clone(), cache.get(key)?.prune_bounds(spec, now)?)))
            .collect();
        let touched_keys: Vec<GroupKey> = touched.into_keys().collect();

        let result = self
            .writer
            .call(move |tx| {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO window_members
                         (rule_id, group_key, micros, event_id, fire, count, observed_micros)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .ctx("cannot prepare window insert")?;
                for ((rule, group), m) in &inserts {
                    insert
                        .execute(params![
                            rule,
                            group,
                            m.micros,
                            &m.event_id.as_bytes()[..],
                            m.decision.fire,
                            m.decision.count,
                            m.observed_micros
                        ])
                        .ctx("cannot record window member")?;
                }
                let mut prune = tx
                    .prepare_cached(
                        "DELETE FROM window_members
                         WHERE rule_id = ?1 AND group_key = ?2 AND micros < ?3
                           AND observed_micros < ?4",
                    )
                    .ctx("cannot prepare window prune")?;
                for ((rule, group), (horizon, observed_before)) in &horizons {
                    prune
                        .execute(params![rule, group, horizon, observed_before])
                        .ctx("cannot prune window")?;
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => Ok(decisions),
            Err(e) => {
                // Forget what was not (or may not have been) recorded; the
                // next observe reloads these groups from disk.
                for key in &touched_keys {
                    cache.remove(key);
                }
                Err(e)
            }
        }
    }
}

#[async_trait]
impl WindowState for SqliteWindowState {
    async fn observe(&self, observations: &[Observation]) -> Result<Vec<Decision>, WindowError> {
        if observations.is_empty() {
            return Ok(Vec::new());
        }
        let inner = Arc::clone(&self.inner);
        let observations = observations.to_vec();
        // A task of its own: runs to completion even if the caller stops
        // waiting, so the cache and the database never disagree.
        let decisions = tokio::spawn(async move { inner.observe(observations).await })
            .await
            .map_err(|e| WindowError::Unavailable(format!("window observe task failed: {e}")))??;
        Ok(decisions)
    }

    async fn check(&self) -> Result<(), WindowError> {
        self.inner.writer.barrier().await?;
        Ok(())
    }
}
