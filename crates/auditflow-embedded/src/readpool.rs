//! A small pool of read-only connections used from `spawn_blocking`, so
//! queries never block the async runtime nor wait for the writer.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use crate::error::{DbError, EmbeddedError};
use crate::options::EmbeddedOptions;

/// Read-only connections to one database file.
#[derive(Debug)]
pub(crate) struct ReadPool {
    conns: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl ReadPool {
    pub(crate) fn open(
        path: &Path,
        opts: &EmbeddedOptions,
        size: usize,
    ) -> Result<Arc<ReadPool>, EmbeddedError> {
        let size = size.max(1);
        let conns = (0..size)
            .map(|_| crate::conn::open_reader(path, opts))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(ReadPool {
            conns: Mutex::new(conns),
            permits: Arc::new(Semaphore::new(size)),
        }))
    }

    /// Runs `query` on a pooled connection on the blocking thread pool.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, query: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| DbError::Closed("read pool closed"))?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = pool
                .conns
                .lock()
                .map_err(|_| DbError::Closed("read pool poisoned"))?
                .pop()
                .ok_or(DbError::Closed("read pool empty"))?;
            let result = query(&conn);
            if let Ok(mut conns) = pool.conns.lock() {
                conns.push(conn);
            }
            result
        })
        .await
        .map_err(|e| DbError::Other(format!("read task failed: {e}")))?
    }
}
