//! The accept loop: binds (and re-binds after down/up), accepts, spawns one
//! task per connection and stops them all on shutdown.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::sleep;

use crate::connection;
use crate::control::Shared;
use crate::stats::Counters;

/// Pause after a failed bind or accept, so that a persistent error does not spin.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

async fn accept(l: Option<&TcpListener>) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Runs until `shutdown` turns true or its sender is dropped; then every
/// connection task is aborted and awaited.
pub(crate) async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let mut ctrl = shared.control.subscribe();
    let mut listener = Some(listener);
    loop {
        let down = ctrl.borrow_and_update().faults.down;
        if down {
            shared.listening.store(false, Ordering::Release);
            listener = None;
        } else if listener.is_none() {
            match TcpListener::bind(shared.listen).await {
                Ok(l) => {
                    listener = Some(l);
                    shared.listening.store(true, Ordering::Release);
                }
                Err(_) => {
                    tokio::select! {
                        _ = sleep(RETRY_PAUSE) => {}
                        r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { break },
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { break },
            r = ctrl.changed() => if r.is_err() { break },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            r = accept(listener.as_ref()) => match r {
                Ok((stream, _)) => {
                    Counters::bump(&shared.counters.accepted);
                    conns.spawn(connection::serve(stream, Arc::clone(&shared)));
                }
                Err(_) => sleep(RETRY_PAUSE).await,
            },
        }
    }
    drop(listener);
    shared.listening.store(false, Ordering::Release);
    conns.shutdown().await;
}
