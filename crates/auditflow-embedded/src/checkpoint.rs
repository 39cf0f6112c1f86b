//! Background WAL checkpoints, off the writer thread.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its
//! threshold, on the committing connection: the writer thread then copies
//! thousands of pages into the database file and fsyncs it while every
//! request of its next group waits. Profiled on the 2-core dev machine, that
//! was about a quarter of the store writer's CPU under load. (Whether it
//! explains the p99 latency measured after a backlog is not established:
//! A/B runs were within the machine's noise.)
//!
//! Instead, each writer connection gets a WAL hook that, after a commit
//! leaves at least [`Limits::soft`] frames in the WAL, wakes a
//! checkpointer thread with its own connection. Its `PASSIVE` checkpoint
//! copies the bulk of the frames concurrently with the writer's commits
//! (SQLite's WAL allows one checkpointer beside one writer).
//!
//! SQLite starts the WAL over only when a write transaction begins with
//! every frame copied, which a checkpointer racing the writer rarely
//! achieves: the writer appends frames while it copies. So the hand-off
//! ends on the writer: at its first commit after the background checkpoint,
//! if at most [`Limits::tail`] frames are left uncopied, the writer copies
//! those few itself; its next transaction then restarts the WAL. If more are
//! left (the writer outpaced the checkpointer), the checkpointer goes again.
//!
//! What the writer copies it pays for while its next group waits, so the
//! thread keeps that tail short: it makes up to [`MAX_PASSES`] passes, each
//! copying what the writer appended during the one before, until a pass
//! copies at most [`SETTLED_FRAMES`] new frames. (Measured at 2,000
//! events/s: the second pass copies a couple of hundred frames in 1-2 ms.
//! Most of the writer's former 25 ms stall, though, was an fsync that also
//! recorded a longer file; see `CHUNK_BYTES` in `conn.rs`.) When every frame
//! is copied, the hand-off is not needed: the writer's next transaction
//! restarts the WAL by itself.
//!
//! Why the soft limit is large (64 MiB by default, not SQLite's 4 MiB): on
//! the dev machine the embedded platform is bound by disk bandwidth, and a
//! checkpoint copies each page once however often the WAL rewrote it since
//! the last one. The broker's pages are inserted and deleted within
//! seconds and the store's index leaves are rewritten by every commit, so a
//! longer interval copies far fewer pages per event. Measured with the
//! threads' write counters (`/proc/PID/task/*/io`) over runs of 150 000
//! events, checkpoint writes fell from about 2.5 KB to 1.7 KB per event
//! going from 4 MiB to 32 MiB. The price is disk space for the WAL and a
//! longer WAL scan when the file is opened.
//!
//! Safety valve: should the WAL still reach [`Limits::hard`] (the
//! checkpointer cannot keep up, or long-lived readers pin old frames), the
//! writer checkpoints inline, as SQLite's own autocheckpoint would, so the
//! WAL cannot grow without bound.

use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use rusqlite::hooks::Wal;
use rusqlite::wal::CheckpointMode;
use rusqlite::Connection;

use crate::error::EmbeddedError;
use crate::options::EmbeddedOptions;

/// When checkpoints happen, in WAL frames (pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Frames after which the checkpointer is woken.
    pub soft: i32,
    /// Uncopied frames the writer copies itself to finish a background
    /// checkpoint.
    pub tail: i32,
    /// Frames at which the writer checkpoints inline.
    pub hard: i32,
}

impl Limits {
    /// Limits for a soft limit of `soft` frames: the writer finishes the
    /// last 256 frames (or a quarter of `soft`, if smaller) and checkpoints
    /// inline at four times `soft`.
    pub(crate) fn from_soft(soft: u32) -> Limits {
        let soft = i32::try_from(soft.max(1))
            .unwrap_or(i32::MAX / 4)
            .min(i32::MAX / 4);
        Limits {
            soft,
            tail: (soft / 4).clamp(1, 256),
            hard: soft * 4,
        }
    }
}

/// Most checkpoint passes the thread makes per wake-up (see the module
/// documentation). Each pass after the first copies only what the writer
/// appended during the previous one, so a few are enough at a light load.
const MAX_PASSES: usize = 8;

/// A pass that copied at most this many new frames was short, so the writer
/// appended about as few meanwhile: what it copies itself stays small.
const SETTLED_FRAMES: i32 = 32;

/// The background checkpoint's progress, shared by the hook and the thread.
/// Encoded in one atomic: [`IDLE`], [`RUNNING`], or (>= 0) "done, this many
/// frames copied".
const IDLE: i32 = -2;
const RUNNING: i32 = -1;

/// What the WAL hook does after a commit that left `pages` frames in the WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HookAction {
    /// Nothing: the WAL is small, or the checkpointer is at work.
    Nothing,
    /// Wake the checkpointer thread.
    Wake,
    /// Checkpoint on the writer's own connection, now.
    Inline,
}

/// Decides what the hook does for a WAL of `pages` frames while the
/// background checkpoint is in `progress`; returns the action and the new
/// progress.
pub(crate) fn hook_action(limits: Limits, pages: i32, progress: i32) -> (HookAction, i32) {
    if pages >= limits.hard {
        // Whatever the thread is doing, the inline checkpoint catches up.
        return (HookAction::Inline, progress);
    }
    match progress {
        RUNNING => (HookAction::Nothing, RUNNING),
        // Fewer frames than were copied: the thread copied them all and
        // this commit's transaction started the WAL over.
        copied if copied >= 0 && pages < copied => (HookAction::Nothing, IDLE),
        copied if copied >= 0 && pages - copied <= limits.tail => (HookAction::Inline, IDLE),
        copied if copied >= 0 => (HookAction::Wake, RUNNING),
        _ if pages >= limits.soft => (HookAction::Wake, RUNNING),
        _ => (HookAction::Nothing, IDLE),
    }
}

/// The checkpointer thread of one database file. It stops by itself once
/// the writer connection (which owns the waking side) is closed.
pub(crate) struct Checkpointer {
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer").finish_non_exhaustive()
    }
}

impl Checkpointer {
    /// Installs the WAL hook on `writer`, the writer connection of the
    /// database file at `path` (replacing SQLite's autocheckpoint), and
    /// starts thread `name` checkpointing through a connection of its own,
    /// at the limits of `opts.checkpoint_after_pages`.
    pub(crate) fn attach(
        writer: &mut Connection,
        path: &Path,
        opts: &EmbeddedOptions,
        name: &str,
    ) -> Result<Checkpointer, EmbeddedError> {
        let limits = Limits::from_soft(opts.checkpoint_after_pages);
        Self::attach_with(writer, path, opts, limits, name)
    }

    /// [`Checkpointer::attach`] at explicit `limits`.
    fn attach_with(
        writer: &mut Connection,
        path: &Path,
        opts: &EmbeddedOptions,
        limits: Limits,
        name: &str,
    ) -> Result<Checkpointer, EmbeddedError> {
        let own = crate::conn::open_checkpointer(path, opts)?;
        // Capacity 1: a wake-up while one is pending adds nothing, the
        // pending checkpoint will see the newer frames too.
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let progress = Arc::new(AtomicI32::new(IDLE));
        let shared = Arc::clone(&progress);
        writer
            .wal_hook(Some(move |wal: &mut Wal, pages| {
                on_commit(limits, &wake, &shared, wal, pages)
            }))
            .map_err(|source| EmbeddedError::Sqlite {
                context: "cannot install the WAL hook",
                path: path.to_path_buf(),
                source,
            })?;
        let thread = thread::Builder::new()
            .name(name.to_string())
            .spawn(move || run(own, woken, progress))
            .map_err(|source| EmbeddedError::Io {
                context: "cannot start checkpointer thread for",
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Checkpointer {
            thread: Some(thread),
        })
    }

    /// Waits for the thread to stop; call after the writer connection is closed.
    pub(crate) fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            // A panic there has already been reported by the panic hook.
            let _ = thread.join();
        }
    }
}

fn on_commit(
    limits: Limits,
    wake: &SyncSender<()>,
    progress: &AtomicI32,
    wal: &mut Wal,
    pages: i32,
) -> rusqlite::Result<()> {
    // Only this hook moves the progress away from IDLE or "done", and only
    // the thread away from RUNNING (one wake-up per RUNNING), so a plain
    // load and store suffice as long as the hook never writes over RUNNING.
    let observed = progress.load(Ordering::Acquire);
    let (action, next) = hook_action(limits, pages, observed);
    if next != observed {
        progress.store(next, Ordering::Release);
    }
    match action {
        HookAction::Nothing => {}
        HookAction::Wake => match wake.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) => {}
            // The thread is gone (it cannot start a checkpoint): do it here.
            Err(TrySendError::Disconnected(())) => {
                progress.store(IDLE, Ordering::Release);
                checkpoint_inline(wal);
            }
        },
        HookAction::Inline => checkpoint_inline(wal),
    }
    // The commit is already durable; a checkpoint problem must not turn it
    // into an error for the caller.
    Ok(())
}

fn checkpoint_inline(wal: &mut Wal) {
    // BUSY here means the checkpointer is at it; other failures leave the
    // frames in the WAL for the next attempt, nothing is lost.
    let _ = wal.checkpoint_v2(CheckpointMode::PASSIVE);
}

fn run(conn: Connection, woken: Receiver<()>, progress: Arc<AtomicI32>) {
    while woken.recv().is_ok() {
        progress.store(checkpoint_passes(&conn), Ordering::Release);
    }
}

/// Checkpoints in passes until one copies at most [`SETTLED_FRAMES`]
/// frames the pass before had not (the writer appended hardly anything
/// meanwhile), or [`MAX_PASSES`] are made, or a pass cannot copy every frame
/// (a reader still needs some); returns how many frames the last pass found
/// copied.
fn checkpoint_passes(conn: &Connection) -> i32 {
    let mut copied = 0;
    for _ in 0..MAX_PASSES {
        // PASSIVE: copy what no reader still needs, never wait for anyone.
        // On failure nothing was copied for sure; the frames stay in the
        // WAL and the hook wakes us again.
        match conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
            Ok((frames, done)) => {
                let fresh = done.max(0) - copied;
                copied = done.max(0);
                if fresh <= SETTLED_FRAMES || done < frames {
                    break;
                }
            }
            Err(_) => return 0,
        }
    }
    copied
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's own autocheckpoint threshold, small enough for fast tests.
    const L: Limits = Limits {
        soft: 1000,
        tail: 250,
        hard: 4000,
    };

    #[test]
    fn small_wals_are_left_alone_and_large_ones_handed_to_the_thread() {
        assert_eq!(hook_action(L, 0, IDLE), (HookAction::Nothing, IDLE));
        assert_eq!(
            hook_action(L, L.soft - 1, IDLE),
            (HookAction::Nothing, IDLE)
        );
        assert_eq!(hook_action(L, L.soft, IDLE), (HookAction::Wake, RUNNING));
        // Woken once; later commits wait for it.
        assert_eq!(
            hook_action(L, L.soft + 50, RUNNING),
            (HookAction::Nothing, RUNNING)
        );
    }

    #[test]
    fn the_writer_copies_a_short_tail_and_rewakes_for_a_long_one() {
        assert_eq!(hook_action(L, 1200, 1000), (HookAction::Inline, IDLE));
        assert_eq!(
            hook_action(L, 1000 + L.tail, 1000),
            (HookAction::Inline, IDLE)
        );
        assert_eq!(
            hook_action(L, 1001 + L.tail, 1000),
            (HookAction::Wake, RUNNING)
        );
        // A failed checkpoint reports 0 copied: woken again.
        assert_eq!(hook_action(L, 2000, 0), (HookAction::Wake, RUNNING));
    }

    #[test]
    fn a_wal_the_thread_copied_whole_and_the_writer_restarted_needs_nothing() {
        // 1100 frames copied, and this commit's WAL holds only 3: it started
        // over, so there is no tail to copy.
        assert_eq!(hook_action(L, 3, 1100), (HookAction::Nothing, IDLE));
        assert_eq!(hook_action(L, 1099, 1100), (HookAction::Nothing, IDLE));
        assert_eq!(hook_action(L, 1100, 1100), (HookAction::Inline, IDLE));
    }

    #[test]
    fn limits_follow_the_soft_limit() {
        assert_eq!(Limits::from_soft(1000), L);
        assert_eq!(
            Limits::from_soft(16_384),
            Limits {
                soft: 16_384,
                tail: 256,
                hard: 65_536
            }
        );
        assert_eq!(Limits::from_soft(8).tail, 2);
        assert_eq!(Limits::from_soft(0).soft, 1);
    }

    #[test]
    fn a_huge_wal_is_checkpointed_inline_whatever_the_thread_does() {
        for progress in [IDLE, RUNNING, 0, 5000] {
            assert_eq!(hook_action(L, L.hard, progress).0, HookAction::Inline);
        }
    }

    fn wal_frames(conn: &Connection) -> i32 {
        // A PASSIVE checkpoint that copies nothing new reports the WAL's size.
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
            .unwrap()
    }

    #[test]
    fn the_checkpointer_keeps_the_wal_from_growing_under_steady_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        // No fsync: this is about the WAL's length, not durability.
        let opts = crate::options::EmbeddedOptions {
            synchronous: crate::options::SyncMode::Off,
            ..Default::default()
        };
        let mut writer = crate::conn::open_writer(&path, &opts).unwrap();
        writer
            .execute_batch("CREATE TABLE t (v BLOB NOT NULL);")
            .unwrap();
        // No inline checkpoints: only the thread can restart the WAL.
        let no_inline = Limits {
            hard: i32::MAX,
            ..L
        };
        let mut checkpointer =
            Checkpointer::attach_with(&mut writer, &path, &opts, no_inline, "test-ckpt").unwrap();
        let blob = vec![7u8; 3000];
        // Each commit adds about two frames: without the checkpointer the
        // WAL would end near 20 000 frames.
        for _ in 0..(L.soft * 10) {
            writer
                .execute("INSERT INTO t (v) VALUES (?1)", [&blob])
                .unwrap();
        }
        let inspect = crate::conn::open_checkpointer(&path, &opts).unwrap();
        let frames = wal_frames(&inspect);
        assert!(
            frames < L.soft * 4,
            "the WAL kept {frames} frames; the checkpointer did not restart it"
        );
        let rows: i64 = inspect
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, i64::from(L.soft * 10));
        drop(writer);
        checkpointer.join();
    }
}
