//! The group-commit writer: one thread per database file owns its only
//! read-write connection.
//!
//! Callers submit jobs over a channel. The thread takes every job waiting
//! (up to a cap), applies them all in ONE transaction, commits once (one
//! fsync for the whole group), then finishes each job in submission order:
//! first its `on_finish` hook (which updates in-memory state), then its reply.
//! Throughput therefore grows with concurrency instead of being bounded by
//! fsync latency.
//!
//! If any job of a group fails, the group is rolled back and its jobs are
//! retried one transaction each, so one bad request cannot fail its
//! neighbours. Jobs must therefore be re-runnable: `apply` starts from scratch.

use std::sync::mpsc;
use std::thread::{self, JoinHandle, ThreadId};

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::oneshot;

use crate::checkpoint::Checkpointer;
use crate::error::{Context, DbError};
use crate::failpoint;

/// Failpoint names of one writer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Failpoints {
    /// Evaluated before each commit; `return` fails the group.
    pub before_commit: &'static str,
    /// Evaluated after each commit; `return` answers the committed jobs with an error.
    pub after_commit: &'static str,
}

/// One write request.
pub(crate) trait WriteJob: Send + 'static {
    /// Applies the request inside the group's transaction. May be called
    /// again (after a rollback) and must then start from scratch.
    fn apply(&mut self, tx: &Transaction<'_>) -> Result<(), DbError>;

    /// Called once, on the writer thread, after the commit or the failure.
    /// `committed` says whether the effects are durable; `result` is what to
    /// report to the caller (an injected after-commit failure reports an
    /// error for committed work).
    fn finish(self: Box<Self>, committed: bool, result: Result<(), DbError>);
}

type ApplyFn<T> = Box<dyn FnMut(&Transaction<'_>) -> Result<T, DbError> + Send>;
type FinishHook<T> = Box<dyn FnOnce(Option<&T>) + Send>;

/// A closure-based job: `apply` computes a `T`; then `on_finish` sees it
/// (`None` when nothing was committed), then the caller receives it.
struct FnJob<T> {
    apply: ApplyFn<T>,
    out: Option<T>,
    on_finish: FinishHook<T>,
    reply: Option<oneshot::Sender<Result<T, DbError>>>,
}

impl<T: Send + 'static> WriteJob for FnJob<T> {
    fn apply(&mut self, tx: &Transaction<'_>) -> Result<(), DbError> {
        self.out = None;
        self.out = Some((self.apply)(tx)?);
        Ok(())
    }

    fn finish(self: Box<Self>, committed: bool, result: Result<(), DbError>) {
        let FnJob {
            apply,
            out,
            on_finish,
            reply,
        } = *self;
        // Release what `apply` captured before the hook runs, so the hook can
        // take sole ownership of shared data.
        drop(apply);
        on_finish(if committed { out.as_ref() } else { None });
        if let Some(reply) = reply {
            let value = result.and_then(|()| out.ok_or(DbError::Closed("job produced no result")));
            // The caller may have given up waiting; that is fine.
            let _ = reply.send(value);
        }
    }
}

/// Handle to a database's writer thread. Dropping the last handle stops the
/// thread after it finishes the jobs already submitted, and waits for it.
pub(crate) struct Writer {
    sender: Option<mpsc::Sender<Box<dyn WriteJob>>>,
    thread: Option<JoinHandle<()>>,
    thread_id: ThreadId,
    /// Checkpoints the WAL the thread writes; stops once the thread closed
    /// its connection.
    checkpointer: Checkpointer,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("thread", &self.thread_id)
            .finish()
    }
}

impl Writer {
    /// Starts the writer thread `name` owning `conn`, whose WAL
    /// `checkpointer` (attached to `conn`) keeps short.
    pub(crate) fn spawn(
        name: &str,
        conn: Connection,
        checkpointer: Checkpointer,
        max_group: usize,
        failpoints: Failpoints,
    ) -> std::io::Result<Writer> {
        let (sender, receiver) = mpsc::channel::<Box<dyn WriteJob>>();
        let max_group = max_group.max(1);
        let thread = thread::Builder::new()
            .name(name.to_string())
            .spawn(move || run(conn, receiver, max_group, failpoints))?;
        let thread_id = thread.thread().id();
        Ok(Writer {
            sender: Some(sender),
            thread: Some(thread),
            thread_id,
            checkpointer,
        })
    }

    fn submit(&self, job: Box<dyn WriteJob>) -> Result<(), DbError> {
        self.sender
            .as_ref()
            .ok_or(DbError::Closed("writer stopped"))?
            .send(job)
            .map_err(|_| DbError::Closed("writer thread stopped"))
    }

    /// Runs `apply` in the next group commit and returns its result once committed.
    pub(crate) async fn call<T, F>(&self, apply: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnMut(&Transaction<'_>) -> Result<T, DbError> + Send + 'static,
    {
        self.call_then(apply, |_| {}).await
    }

    /// Like [`Writer::call`], and runs `on_finish` on the writer thread right
    /// after the commit (with the result) or the failure (with `None`),
    /// before replying, in commit order. It runs even if the caller stopped
    /// waiting, so in-memory state always follows the database.
    pub(crate) async fn call_then<T, F, C>(&self, apply: F, on_finish: C) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnMut(&Transaction<'_>) -> Result<T, DbError> + Send + 'static,
        C: FnOnce(Option<&T>) + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        self.submit(Box::new(FnJob {
            apply: Box::new(apply),
            out: None,
            on_finish: Box::new(on_finish),
            reply: Some(reply),
        }))?;
        rx.await
            .map_err(|_| DbError::Closed("writer thread stopped before replying"))?
    }

    /// Submits `apply` without waiting for the commit (acks and other writes
    /// whose loss only causes a harmless redelivery). It rides along with
    /// the next group commit; `on_finish` runs as for [`Writer::call_then`].
    pub(crate) fn submit_lazy<T, F, C>(&self, apply: F, on_finish: C) -> Result<(), DbError>
    where
        T: Send + 'static,
        F: FnMut(&Transaction<'_>) -> Result<T, DbError> + Send + 'static,
        C: FnOnce(Option<&T>) + Send + 'static,
    {
        self.submit(Box::new(FnJob {
            apply: Box::new(apply),
            out: None,
            on_finish: Box::new(on_finish),
            reply: None,
        }))
    }

    /// Waits until every job submitted before this call is committed.
    pub(crate) async fn barrier(&self) -> Result<(), DbError> {
        self.call(|_| Ok(())).await
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            if thread::current().id() != self.thread_id {
                // The thread exits once the channel is drained; a panic in it
                // has already been reported by the panic hook.
                let _ = thread.join();
                // Its connection is closed now, so the checkpointer stops.
                self.checkpointer.join();
            }
        }
    }
}

fn run(
    mut conn: Connection,
    receiver: mpsc::Receiver<Box<dyn WriteJob>>,
    max_group: usize,
    failpoints: Failpoints,
) {
    let mut group: Vec<Box<dyn WriteJob>> = Vec::with_capacity(max_group.min(1024));
    while let Ok(first) = receiver.recv() {
        group.push(first);
        while group.len() < max_group {
            match receiver.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        match commit(&mut conn, &mut group, failpoints) {
            Ok(()) => finish_committed(group.drain(..), failpoints),
            Err(e) if group.len() == 1 => {
                for job in group.drain(..) {
                    job.finish(false, Err(e.clone()));
                }
            }
            Err(_) => {
                // Isolate the failing request(s): one transaction per job.
                for job in std::mem::take(&mut group) {
                    let mut single = vec![job];
                    match commit(&mut conn, &mut single, failpoints) {
                        Ok(()) => finish_committed(single.drain(..), failpoints),
                        Err(e) => {
                            if let Some(job) = single.pop() {
                                job.finish(false, Err(e));
                            }
                        }
                    }
                }
            }
        }
    }
    // Channel closed: every handle is gone. Checkpoint so the WAL does not
    // have to be replayed at the next open; failure here is harmless.
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);");
}

fn commit(
    conn: &mut Connection,
    group: &mut [Box<dyn WriteJob>],
    failpoints: Failpoints,
) -> Result<(), DbError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("cannot begin transaction")?;
    for job in group.iter_mut() {
        job.apply(&tx)?;
    }
    if failpoint::triggered(failpoints.before_commit) {
        return Err(DbError::Other(format!(
            "failpoint {} injected a commit failure",
            failpoints.before_commit
        )));
    }
    tx.commit().ctx("cannot commit")
}

fn finish_committed(jobs: impl Iterator<Item = Box<dyn WriteJob>>, failpoints: Failpoints) {
    let result = if failpoint::triggered(failpoints.after_commit) {
        Err(DbError::Other(format!(
            "failpoint {} injected a failure after the commit",
            failpoints.after_commit
        )))
    } else {
        Ok(())
    };
    for job in jobs {
        job.finish(true, result.clone());
    }
}
