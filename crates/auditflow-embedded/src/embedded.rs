//! [`Embedded`]: the three backends over one data directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::broker::EmbeddedBroker;
use crate::error::EmbeddedError;
use crate::lock::DirLock;
use crate::options::EmbeddedOptions;
use crate::store::SqliteStore;
use crate::window::SqliteWindowState;

/// The embedded backends of one data directory: `broker.sqlite`,
/// `store.sqlite`, `window.sqlite` (each with its own writer thread, so
/// their commits proceed in parallel) and a `LOCK` file.
///
/// The directory stays locked until the `Embedded` *and* every backend
/// handle obtained from it are dropped; dropping the last handle of a
/// backend waits for its writer to finish the requests already submitted.
#[derive(Debug, Clone)]
pub struct Embedded {
    dir: PathBuf,
    broker: Arc<EmbeddedBroker>,
    store: Arc<SqliteStore>,
    windows: Arc<SqliteWindowState>,
}

fn check_options(opts: &EmbeddedOptions) -> Result<(), EmbeddedError> {
    let checks: [(&'static str, bool); 4] = [
        ("max_queue_depth", opts.max_queue_depth >= 1),
        ("delivery_limit", opts.delivery_limit >= 1),
        ("read_pool_size", opts.read_pool_size >= 1),
        ("max_group_commit", opts.max_group_commit >= 1),
    ];
    for (option, ok) in checks {
        if !ok {
            return Err(EmbeddedError::InvalidOption {
                option,
                reason: "must be at least 1".into(),
            });
        }
    }
    Ok(())
}

impl Embedded {
    /// Opens `dir` (creating it), locks it against other processes, creates
    /// or migrates the databases and loads the queued messages.
    pub fn open(dir: &Path, opts: EmbeddedOptions) -> Result<Embedded, EmbeddedError> {
        check_options(&opts)?;
        std::fs::create_dir_all(dir).map_err(|source| EmbeddedError::Io {
            context: "cannot create data directory",
            path: dir.to_path_buf(),
            source,
        })?;
        let lock = Arc::new(DirLock::acquire(dir)?);
        let broker = EmbeddedBroker::open(dir, &opts, Arc::clone(&lock))?;
        let store = SqliteStore::open(dir, &opts, Arc::clone(&lock))?;
        let windows = SqliteWindowState::open(dir, &opts, lock)?;
        Ok(Embedded {
            dir: dir.to_path_buf(),
            broker: Arc::new(broker),
            store: Arc::new(store),
            windows: Arc::new(windows),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The broker (implements `auditflow_core::Broker`).
    pub fn broker(&self) -> Arc<EmbeddedBroker> {
        Arc::clone(&self.broker)
    }

    /// The store (implements `auditflow_core::Store`).
    pub fn store(&self) -> Arc<SqliteStore> {
        Arc::clone(&self.store)
    }

    /// The window state (implements `auditflow_core::WindowState`).
    pub fn windows(&self) -> Arc<SqliteWindowState> {
        Arc::clone(&self.windows)
    }
}
