//! A fault-injecting TCP proxy, in the spirit of Toxiproxy, for chaos tests.
//!
//! A [`Proxy`] listens on a loopback port and forwards each accepted
//! connection to one upstream address. Its faults are changed at run time
//! through a cheap cloneable [`FaultHandle`]: latency with jitter, bandwidth
//! limit, connection reset, blackhole, slow close, data limit then close,
//! down/up, slicing and a reset probability for new connections, each for the
//! upstream direction (client to server), the downstream one, or both.
//!
//! ```no_run
//! # async fn demo() -> Result<(), faultproxy::Error> {
//! use std::time::Duration;
//! use faultproxy::{Direction, Proxy};
//!
//! let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), "127.0.0.1:5432".parse().unwrap()).await?;
//! let faults = proxy.handle();
//! // point the client at proxy.listen_addr() ...
//! faults.set_latency(Direction::Both, Duration::from_millis(500), Duration::from_millis(50));
//! faults.down();
//! faults.up();
//! faults.clear_all();
//! proxy.shutdown().await;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod connection;
mod control;
mod error;
mod fault;
mod listener;
mod pipe;
mod rng;
mod stats;
mod transform;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use control::FaultHandle;
pub use error::Error;
pub use fault::{Direction, DirectionFaults, Faults, Flow, Latency, Slicer};
pub use stats::Stats;

/// The README's example compiles.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme_doctest {}

use control::{Control, Shared};
use rng::Rng;

/// How long a connection's upstream connect may take before the client is reset.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A running proxy. Dropping it stops it (listener and every connection);
/// [`Proxy::shutdown`] also waits until everything has stopped.
#[derive(Debug)]
pub struct Proxy {
    handle: FaultHandle,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on `listen` (port 0 picks a free port) and forwards to `upstream`.
    /// Must be called within a Tokio runtime.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> Result<Proxy, Error> {
        Self::start_with(listen, upstream, DEFAULT_CONNECT_TIMEOUT).await
    }

    /// As [`Proxy::start`], with the upstream connect timeout.
    pub async fn start_with(
        listen: SocketAddr,
        upstream: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<Proxy, Error> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| Error::Bind {
                addr: listen,
                source,
            })?;
        let bound = listener.local_addr().map_err(Error::LocalAddr)?;
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(bound.port());
        let shared = Arc::new(Shared {
            control: watch::Sender::new(Control::default()),
            counters: Default::default(),
            rng: Rng::seeded(seed),
            listen: bound,
            upstream,
            connect_timeout,
            listening: AtomicBool::new(true),
        });
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(listener::run(listener, Arc::clone(&shared), rx));
        Ok(Proxy {
            handle: FaultHandle { shared },
            shutdown,
            task: Some(task),
        })
    }

    /// The bound listening address (clients connect here).
    pub fn listen_addr(&self) -> SocketAddr {
        self.handle.listen_addr()
    }

    /// A handle to change faults and read state; it may outlive the proxy.
    pub fn handle(&self) -> FaultHandle {
        self.handle.clone()
    }

    /// Stops the listener and every connection, and waits until all tasks ended.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The accept loop sees this and aborts its connection tasks.
        let _ = self.shutdown.send(true);
    }
}
