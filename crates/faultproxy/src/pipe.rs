//! One direction of a connection: a reader that stamps chunks, a bounded
//! queue, and a writer that applies the direction's faults.

use std::future::pending;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, sleep_until, Instant};

use crate::control::{Control, Shared};
use crate::fault::{DirectionFaults, Flow};
use crate::stats::Counters;
use crate::transform::bandwidth::Pacer;
use crate::transform::{latency, limit, slicer};

/// The largest chunk read at once.
const READ_BUF: usize = 16 * 1024;
/// Chunks queued between reader and writer (bounds memory to about 1 MiB per direction).
const QUEUE: usize = 64;

/// How a direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The source closed and the close was passed on.
    Finished,
    /// A fault (data limit) or a write failure asks to close the connection.
    Close,
    /// The source failed (e.g. was reset): reset the connection.
    Abort,
}

enum Item {
    Data {
        bytes: Vec<u8>,
        arrival: Instant,
        sample: f64,
    },
    Eof,
    Failed,
}

fn faults(ctrl: &watch::Receiver<Control>, flow: Flow) -> DirectionFaults {
    *ctrl.borrow().faults.flow(flow)
}

/// Forwards `src` to `dst` under the faults of `flow` until the source closes
/// or a fault ends the connection. Cancel-safe: dropping it stops everything.
pub(crate) async fn run<R, W>(
    src: R,
    dst: W,
    flow: Flow,
    shared: &Shared,
    ctrl: watch::Receiver<Control>,
) -> Outcome
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, rx) = mpsc::channel(QUEUE);
    let reader = async {
        read_loop(src, tx, flow, shared, ctrl.clone()).await;
        pending::<Outcome>().await
    };
    let writer = write_loop(dst, rx, flow, &shared.counters, ctrl.clone());
    tokio::select! {
        o = writer => o,
        o = reader => o,
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut src: R,
    tx: mpsc::Sender<Item>,
    flow: Flow,
    shared: &Shared,
    ctrl: watch::Receiver<Control>,
) {
    loop {
        let mut buf = vec![0u8; READ_BUF];
        let item = match src.read(&mut buf).await {
            Ok(0) => Item::Eof,
            Err(_) => Item::Failed,
            Ok(n) => {
                if faults(&ctrl, flow).blackhole {
                    shared
                        .counters
                        .blackholed
                        .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    continue;
                }
                buf.truncate(n);
                Item::Data {
                    bytes: buf,
                    arrival: Instant::now(),
                    sample: shared.rng.next_f64(),
                }
            }
        };
        let last = !matches!(item, Item::Data { .. });
        if tx.send(item).await.is_err() || last {
            return;
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut dst: W,
    mut rx: mpsc::Receiver<Item>,
    flow: Flow,
    counters: &Counters,
    mut ctrl: watch::Receiver<Control>,
) -> Outcome {
    let mut sent: u64 = 0;
    let mut pacer = Pacer::default();
    let mut last_due: Option<Instant> = None;
    while let Some(item) = rx.recv().await {
        let (bytes, arrival, sample) = match item {
            Item::Data {
                bytes,
                arrival,
                sample,
            } => (bytes, arrival, sample),
            Item::Eof => {
                if let Some(d) = faults(&ctrl, flow).slow_close {
                    sleep(d).await;
                }
                return match dst.shutdown().await {
                    Ok(()) => Outcome::Finished,
                    Err(_) => Outcome::Close,
                };
            }
            Item::Failed => return Outcome::Abort,
        };
        // Latency: wait until due, re-reading the setting whenever it changes.
        loop {
            let due = latency::due(arrival, sample, faults(&ctrl, flow).latency, last_due);
            if Instant::now() >= due {
                last_due = Some(due);
                break;
            }
            tokio::select! {
                _ = sleep_until(due) => {}
                r = ctrl.changed() => if r.is_err() { return Outcome::Close },
            }
        }
        let allowance = limit::allowance(faults(&ctrl, flow).data_limit, sent, bytes.len());
        let mut rest = &bytes[..allowance.allowed];
        while !rest.is_empty() {
            let f = faults(&ctrl, flow);
            if let Some(at) = pacer.ready_at(f.bandwidth) {
                sleep_until(at).await;
            }
            let n = Pacer::piece(f.bandwidth, slicer::piece(f.slicer, rest.len()));
            if dst.write_all(&rest[..n]).await.is_err() {
                return Outcome::Close;
            }
            pacer.sent(f.bandwidth, n, Instant::now());
            counters.add_bytes(flow, n);
            sent += n as u64;
            rest = &rest[n..];
            if let Some(p) = slicer::pause(f.slicer) {
                sleep(p).await;
            }
        }
        if allowance.close {
            let _ = dst.flush().await;
            return Outcome::Close;
        }
    }
    Outcome::Finished
}
