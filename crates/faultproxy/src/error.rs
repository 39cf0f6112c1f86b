//! Errors of the proxy.

use std::net::SocketAddr;

/// What can go wrong when starting or configuring a [`crate::Proxy`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The listening socket's local address could not be read.
    #[error("cannot read the bound address: {0}")]
    LocalAddr(std::io::Error),
    /// A fault was configured with a value outside its domain.
    #[error("invalid fault setting: {0}")]
    InvalidFault(String),
}
