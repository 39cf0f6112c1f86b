//! [`EmbeddedBroker`]: durable FIFO queues in `broker.sqlite`.
//!
//! - `publish` inserts the messages through the group-commit writer and
//!   returns once they are committed (fsync'd with `synchronous=FULL`); right
//!   after the commit, on the writer thread, the messages are appended to the
//!   queue's in-memory ready deque and consumers are woken. Consumers never
//!   read from disk.
//! - At open, every stored message is loaded into its queue, marked
//!   `redelivered` (its consumer may have seen it before the restart).
//! - Acks delete rows and are committed lazily with the next group commit:
//!   a lost ack only causes a redelivery. Delivery counts are also recorded
//!   lazily, so a message that crashes its consumer *process* is still
//!   dead-lettered after the delivery limit (give or take the last delivery).
//!   They live in a narrow table of their own (`deliveries`), so recording
//!   one does not rewrite the page that holds the message.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use auditflow_core::broker::{
    Broker, BrokerError, DeadLetter, Headers, Message, QueueStats, Subscription,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use rusqlite::{params, Transaction};

use crate::error::{Context, DbError, EmbeddedError};
use crate::lock::DirLock;
use crate::options::EmbeddedOptions;
use crate::queue::{Entry, Queue};
use crate::readpool::ReadPool;
use crate::subscription::EmbeddedSubscription;
use crate::writer::{Failpoints, Writer};

/// File name of the broker's database inside the data directory.
pub const BROKER_FILE: &str = "broker.sqlite";

/// Reason recorded when a message exceeds the delivery limit.
pub const DELIVERY_LIMIT_REASON: &str = "delivery limit exceeded";

const FAILPOINTS: Failpoints = Failpoints {
    before_commit: "embedded::broker::before_commit",
    after_commit: "embedded::broker::after_commit",
};

/// The embedded broker. Cheap to clone; all clones share the queues.
#[derive(Debug, Clone)]
pub struct EmbeddedBroker {
    inner: Arc<BrokerInner>,
}

/// Shared state of the broker and its subscriptions.
#[derive(Debug)]
pub(crate) struct BrokerInner {
    // Declared first so it is dropped (and its thread joined) first.
    pub(crate) writer: Writer,
    reads: Arc<ReadPool>,
    queues: RwLock<HashMap<String, Arc<Queue>>>,
    max_depth: u64,
    pub(crate) delivery_limit: u32,
    _lock: Arc<DirLock>,
}

impl EmbeddedBroker {
    /// Opens (creating or migrating) `broker.sqlite` in `dir` and loads every
    /// stored message. `lock` proves the directory is ours.
    pub(crate) fn open(
        dir: &Path,
        opts: &EmbeddedOptions,
        lock: Arc<DirLock>,
    ) -> Result<EmbeddedBroker, EmbeddedError> {
        let path = dir.join(BROKER_FILE);
        let mut conn = crate::conn::open_writer(&path, opts)?;
        crate::schema::migrate(&mut conn, &path, crate::schema::BROKER)?;
        let queues = load(&conn).map_err(|source| EmbeddedError::Sqlite {
            context: "cannot load queued messages",
            path: path.clone(),
            source,
        })?;
        let reads = ReadPool::open(&path, opts, opts.read_pool_size.min(2))?;
        let checkpointer =
            crate::checkpoint::Checkpointer::attach(&mut conn, &path, opts, "ckpt-broker")?;
        let writer = Writer::spawn(
            "auditflow-broker-writer",
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
        Ok(EmbeddedBroker {
            inner: Arc::new(BrokerInner {
                writer,
                reads,
                queues: RwLock::new(queues),
                max_depth: opts.max_queue_depth,
                delivery_limit: opts.delivery_limit.max(1),
                _lock: lock,
            }),
        })
    }
}

/// Loads every stored message and the dead-letter counts, per queue.
fn load(conn: &rusqlite::Connection) -> rusqlite::Result<HashMap<String, Arc<Queue>>> {
    // A count outlives its message only if a write was lost half-way; drop
    // such rows so the table holds only counts of queued messages.
    conn.execute(
        "DELETE FROM deliveries WHERE seq NOT IN (SELECT seq FROM messages)",
        [],
    )?;
    let mut queues: HashMap<String, Arc<Queue>> = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT m.seq, m.queue, m.message_id, m.payload, m.headers,
                max(m.delivery_count, coalesce(d.count, 0))
         FROM messages m LEFT JOIN deliveries d ON d.seq = m.seq
         ORDER BY m.seq",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let queue: String = row.get(1)?;
        let headers: String = row.get(4)?;
        let entry = Entry {
            seq: row.get(0)?,
            message: Message {
                message_id: row.get(2)?,
                payload: Bytes::from(row.get::<_, Vec<u8>>(3)?),
                // Headers are written by us as a JSON object of strings; a
                // row damaged on disk still delivers its payload.
                headers: serde_json::from_str(&headers).unwrap_or_default(),
            },
            deliveries: row.get(5)?,
            redelivered: true,
        };
        queues
            .entry(queue)
            .or_default()
            .lock()
            .ready
            .push_back(entry);
    }
    let mut stmt = conn.prepare("SELECT queue, count(*) FROM dead_letters GROUP BY queue")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let queue: String = row.get(0)?;
        let count: i64 = row.get(1)?;
        queues.entry(queue).or_default().lock().dead = u64::try_from(count).unwrap_or(0);
    }
    Ok(queues)
}

fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

fn headers_json(headers: &Headers) -> Result<String, BrokerError> {
    serde_json::to_string(headers)
        .map_err(|e| BrokerError::Rejected(format!("headers cannot be encoded: {e}")))
}

fn validate_queue(queue: &str) -> Result<(), BrokerError> {
    if queue.is_empty() || queue.len() > 255 {
        return Err(BrokerError::Rejected(format!(
            "queue name must be 1 to 255 bytes, got {} bytes",
            queue.len()
        )));
    }
    Ok(())
}

/// Deletes the messages `seqs` and their delivery counts.
fn delete_messages(
    tx: &Transaction<'_>,
    seqs: impl Iterator<Item = i64>,
    context: &'static str,
) -> Result<(), DbError> {
    let mut message = tx
        .prepare_cached("DELETE FROM messages WHERE seq = ?1")
        .ctx("cannot prepare message delete")?;
    let mut count = tx
        .prepare_cached("DELETE FROM deliveries WHERE seq = ?1")
        .ctx("cannot prepare delivery-count delete")?;
    for seq in seqs {
        message.execute([seq]).ctx(context)?;
        count.execute([seq]).ctx(context)?;
    }
    Ok(())
}

/// A message given up on, to be moved to `dead_letters`.
pub(crate) struct DeadLetterRow {
    pub queue: String,
    pub entry: Entry,
    pub reason: String,
}

impl BrokerInner {
    /// The queue named `name`, created on first use.
    pub(crate) fn queue(&self, name: &str) -> Arc<Queue> {
        if let Some(q) = self
            .queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Arc::clone(q);
        }
        let mut queues = self.queues.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(queues.entry(name.to_string()).or_default())
    }

    /// Records, lazily, that `seqs` were delivered `count` times.
    pub(crate) fn record_deliveries(&self, marks: Vec<(i64, u32)>) -> Result<(), DbError> {
        if marks.is_empty() {
            return Ok(());
        }
        self.writer.submit_lazy(
            move |tx: &Transaction<'_>| {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO deliveries (seq, count) VALUES (?1, ?2)",
                    )
                    .ctx("cannot prepare delivery update")?;
                for (seq, count) in &marks {
                    stmt.execute(params![seq, count])
                        .ctx("cannot record delivery")?;
                }
                Ok(())
            },
            |_| {},
        )
    }

    /// Deletes acked messages, lazily.
    pub(crate) fn delete_acked(&self, seqs: Vec<i64>) -> Result<(), DbError> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.writer.submit_lazy(
            move |tx: &Transaction<'_>| {
                delete_messages(tx, seqs.iter().copied(), "cannot delete acked message")
            },
            |_| {},
        )
    }

    /// Moves messages to the dead-letter table. Once the move is committed,
    /// the queue's dead-letter count grows and, when `held` (the messages
    /// were counted as unacked), its unacked count shrinks. With `wait`,
    /// returns after the commit.
    pub(crate) async fn dead_letter(
        &self,
        queue: &Arc<Queue>,
        rows: Vec<DeadLetterRow>,
        held: bool,
        wait: bool,
    ) -> Result<(), DbError> {
        if rows.is_empty() {
            return Ok(());
        }
        let count = rows.len() as u64;
        let queue = Arc::clone(queue);
        let apply = move |tx: &Transaction<'_>| {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO dead_letters
                     (id, queue, message_id, payload, headers, reason, delivery_count, failed_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .ctx("cannot prepare dead-letter insert")?;
            let now = now_micros();
            for row in &rows {
                let m = &row.entry.message;
                let headers = serde_json::to_string(&m.headers).unwrap_or_else(|_| "{}".into());
                insert
                    .execute(params![
                        uuid::Uuid::now_v7().hyphenated().to_string(),
                        row.queue,
                        m.message_id,
                        &m.payload[..],
                        headers,
                        row.reason,
                        row.entry.deliveries,
                        now
                    ])
                    .ctx("cannot insert dead letter")?;
            }
            delete_messages(
                tx,
                rows.iter().map(|row| row.entry.seq),
                "cannot delete dead-lettered message",
            )
        };
        let on_finish = move |done: Option<&()>| {
            if done.is_some() {
                queue.lock().dead += count;
                if held {
                    queue.release_unacked(count);
                }
            }
        };
        if wait {
            self.writer.call_then(apply, on_finish).await
        } else {
            self.writer.submit_lazy(apply, on_finish)
        }
    }
}

#[async_trait]
impl Broker for EmbeddedBroker {
    async fn publish(&self, queue: &str, messages: &[Message]) -> Result<(), BrokerError> {
        validate_queue(queue)?;
        if messages.is_empty() {
            return Ok(());
        }
        let n = messages.len() as u64;
        // Our own copy: the queue keeps the messages in memory once committed.
        let rows: Vec<(Message, String)> = messages
            .iter()
            .map(|m| headers_json(&m.headers).map(|h| (m.clone(), h)))
            .collect::<Result<_, _>>()?;
        let q = self.inner.queue(queue);
        {
            let mut state = q.lock();
            let depth = state.depth();
            if depth + n > self.inner.max_depth {
                return Err(BrokerError::Full {
                    queue: queue.to_string(),
                    depth,
                });
            }
            state.pending += n;
        }
        let rows = Arc::new(rows);
        let for_apply = Arc::clone(&rows);
        let queue_name = queue.to_string();
        let apply = move |tx: &Transaction<'_>| {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO messages (queue, message_id, payload, headers, delivery_count, enqueued_at)
                     VALUES (?1, ?2, ?3, ?4, 0, ?5)",
                )
                .ctx("cannot prepare publish")?;
            let now = now_micros();
            let mut seqs = Vec::with_capacity(for_apply.len());
            for (m, headers) in for_apply.iter() {
                stmt.execute(params![
                    queue_name,
                    m.message_id,
                    &m.payload[..],
                    headers,
                    now
                ])
                .ctx("cannot insert message")?;
                seqs.push(tx.last_insert_rowid());
            }
            Ok(seqs)
        };
        let on_finish = move |seqs: Option<&Vec<i64>>| match seqs {
            Some(seqs) => {
                // `apply` is dropped by now, so this is normally the only owner.
                let rows = Arc::try_unwrap(rows).unwrap_or_else(|shared| (*shared).clone());
                let entries = rows
                    .into_iter()
                    .zip(seqs)
                    .map(|((message, _), &seq)| Entry {
                        seq,
                        message,
                        deliveries: 0,
                        redelivered: false,
                    })
                    .collect();
                q.push_committed(entries, n);
            }
            None => q.release_pending(n),
        };
        self.inner.writer.call_then(apply, on_finish).await?;
        Ok(())
    }

    async fn wait_for_room(&self, queue: &str, n: usize, timeout: std::time::Duration) -> bool {
        let q = self.inner.queue(queue);
        let n = n as u64;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before the check, so a release in between is seen.
            let mut released = std::pin::pin!(q.room.notified());
            released.as_mut().enable();
            if q.lock().depth() + n <= self.inner.max_depth {
                return true;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return false;
            }
        }
    }

    async fn subscribe(
        &self,
        queue: &str,
        prefetch: usize,
    ) -> Result<Box<dyn Subscription>, BrokerError> {
        validate_queue(queue)?;
        if prefetch == 0 {
            return Err(BrokerError::Rejected("prefetch must be at least 1".into()));
        }
        let q = self.inner.queue(queue);
        Ok(Box::new(EmbeddedSubscription::new(
            Arc::clone(&self.inner),
            queue.to_string(),
            q,
            prefetch,
        )))
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, BrokerError> {
        validate_queue(queue)?;
        Ok(self.inner.queue(queue).stats())
    }

    async fn dead_letters(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        validate_queue(queue)?;
        // Read our own writes: lazily submitted dead-letterings first.
        self.inner.writer.barrier().await?;
        let queue = queue.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .inner
            .reads
            .run(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id, queue, message_id, payload, reason, delivery_count, failed_at
                         FROM dead_letters WHERE queue = ?1
                         ORDER BY failed_at DESC, id DESC LIMIT ?2",
                    )
                    .ctx("cannot prepare dead-letter listing")?;
                let rows = stmt
                    .query_map(params![queue, limit], |row| {
                        let payload: Vec<u8> = row.get(3)?;
                        let failed_at: i64 = row.get(6)?;
                        Ok(DeadLetter {
                            id: row.get(0)?,
                            queue: row.get(1)?,
                            message_id: row.get(2)?,
                            payload: String::from_utf8_lossy(&payload).into_owned(),
                            reason: row.get(4)?,
                            delivery_count: row.get(5)?,
                            failed_at: DateTime::from_timestamp_micros(failed_at)
                                .unwrap_or_default(),
                        })
                    })
                    .ctx("cannot list dead letters")?
                    .collect::<Result<Vec<_>, _>>()
                    .ctx("cannot read dead letter")?;
                Ok(rows)
            })
            .await?;
        Ok(rows)
    }

    async fn redrive(&self, queue: &str, dead_letter_id: &str) -> Result<bool, BrokerError> {
        validate_queue(queue)?;
        let q = self.inner.queue(queue);
        let queue = queue.to_string();
        let id = dead_letter_id.to_string();
        let apply = move |tx: &Transaction<'_>| {
            let found = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT message_id, payload, headers FROM dead_letters WHERE id = ?1 AND queue = ?2",
                    )
                    .ctx("cannot prepare redrive")?;
                let mut rows = stmt
                    .query(params![id, queue])
                    .ctx("cannot find dead letter")?;
                match rows.next().ctx("cannot read dead letter")? {
                    None => None,
                    Some(row) => {
                        let message_id: String = row.get(0).ctx("bad dead letter")?;
                        let payload: Vec<u8> = row.get(1).ctx("bad dead letter")?;
                        let headers: String = row.get(2).ctx("bad dead letter")?;
                        Some((message_id, payload, headers))
                    }
                }
            };
            let Some((message_id, payload, headers)) = found else {
                return Ok(None);
            };
            tx.execute("DELETE FROM dead_letters WHERE id = ?1", [&id])
                .ctx("cannot delete dead letter")?;
            tx.execute(
                "INSERT INTO messages (queue, message_id, payload, headers, delivery_count, enqueued_at)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5)",
                params![queue, message_id, payload, headers, now_micros()],
            )
            .ctx("cannot requeue dead letter")?;
            let entry = Entry {
                seq: tx.last_insert_rowid(),
                message: Message {
                    message_id,
                    payload: Bytes::from(payload),
                    headers: serde_json::from_str(&headers).unwrap_or_default(),
                },
                deliveries: 0,
                redelivered: false,
            };
            Ok(Some(entry))
        };
        let on_finish = move |entry: Option<&Option<Entry>>| {
            if let Some(Some(entry)) = entry {
                {
                    let mut state = q.lock();
                    state.dead = state.dead.saturating_sub(1);
                }
                q.push_committed(vec![entry.clone()], 0);
            }
        };
        let entry = self.inner.writer.call_then(apply, on_finish).await?;
        Ok(entry.is_some())
    }

    async fn check(&self) -> Result<(), BrokerError> {
        self.inner.writer.barrier().await?;
        Ok(())
    }
}
