//! [`PgPool`]: the connection pool every backend of a process shares.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Hook, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::config::PgConfig;
use crate::error::PgError;
use crate::verify::Verifier;

/// A pool of connections to one schema. Cheap to clone.
///
/// Connections are opened lazily, with `statement_timeout`, `search_path`
/// and `application_name` set at connect (startup options). Each checkout
/// checks the connection: a closed one (its backend terminated, the server
/// restarted) is dropped and replaced, and one idle for longer than
/// [`crate::VERIFY_AFTER`] or handed out before a call failed transiently is
/// first verified with a round trip (see [`crate::verify`]). So the pool
/// recovers by itself after backends are terminated or the server restarts.
/// Waiting for a connection, opening one and verifying one are each bounded
/// by `connect_timeout`, and every call as a whole by
/// [`PgConfig::call_timeout`].
#[derive(Clone)]
pub struct PgPool {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    config: PgConfig,
    verifier: Verifier,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.inner.pool.status();
        f.debug_struct("PgPool")
            .field("config", &self.inner.config)
            .field("size", &status.size)
            .field("available", &status.available)
            .finish()
    }
}

impl PgPool {
    /// Builds the pool (no connection is opened yet).
    pub fn new(config: &PgConfig) -> Result<PgPool, PgError> {
        let client_config = config.client_config()?;
        let manager = Manager::from_config(
            client_config,
            NoTls,
            ManagerConfig {
                // Closed connections only; the verifier does the rest.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let verifier = Verifier::new(config.connect_timeout);
        let hook = verifier.clone();
        // Last in, first out: the connection just returned is the next one
        // handed out, so a role that makes one call at a time keeps using
        // one connection. Each connection keeps buffers as large as the
        // largest statement it has sent (tokio-postgres reuses them), and
        // first-in-first-out handed every statement to the next of the
        // pool's connections in turn, so each grew its own.
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .queue_mode(deadpool_postgres::QueueMode::Lifo)
            .wait_timeout(Some(config.connect_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .post_recycle(Hook::async_fn(move |client, metrics| {
                let hook = hook.clone();
                Box::pin(async move { hook.check(client, metrics).await })
            }))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| PgError::Config(format!("cannot build the connection pool: {e}")))?;
        Ok(PgPool {
            inner: Arc::new(Inner {
                pool,
                config: config.clone(),
                verifier,
            }),
        })
    }

    /// The configuration the pool was built from.
    pub fn config(&self) -> &PgConfig {
        &self.inner.config
    }

    /// The schema the pool's connections use.
    pub fn schema(&self) -> &str {
        &self.inner.config.schema
    }

    /// The underlying deadpool pool (for ad-hoc queries and metrics).
    pub fn deadpool(&self) -> &Pool {
        &self.inner.pool
    }

    /// A connection from the pool.
    pub async fn get(&self) -> Result<Object, PgError> {
        self.inner.pool.get().await.map_err(|source| PgError::Pool {
            context: "cannot get a database connection",
            source,
        })
    }

    /// Runs `call` with a pooled connection, bounded by
    /// [`PgConfig::call_timeout`]. The connection returns to the pool when
    /// `call` ends (or is abandoned on timeout; an open transaction is then
    /// rolled back and the connection re-verified before reuse).
    pub(crate) async fn run<T, F, Fut>(&self, what: &'static str, call: F) -> Result<T, PgError>
    where
        F: FnOnce(Object) -> Fut,
        Fut: Future<Output = Result<T, PgError>>,
    {
        let limit: Duration = self.inner.config.call_timeout();
        let work = async {
            let client = self.get().await?;
            call(client).await
        };
        let result = tokio::time::timeout(limit, work)
            .await
            .map_err(|_| PgError::Timeout(what, limit))
            .and_then(|r| r);
        if result.as_ref().is_err_and(PgError::is_transient) {
            self.inner.verifier.note_failure();
        }
        result
    }

    /// Applies pending migrations (see [`crate::migrations`]). Returns the
    /// versions applied now (empty when the schema was up to date).
    pub async fn migrate(&self) -> Result<Vec<i64>, PgError> {
        let mut client = self.get().await?;
        crate::migrations::migrate(&mut client, self.schema()).await
    }

    /// A round trip to the server.
    pub async fn check(&self) -> Result<(), PgError> {
        self.run("check", |client| async move {
            client
                .simple_query("SELECT 1")
                .await
                .map_err(PgError::db("check failed"))?;
            Ok(())
        })
        .await
    }
}
