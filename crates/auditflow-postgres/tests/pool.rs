//! The connection pool on the real server.

mod common;

use std::time::{Duration, Instant};

use auditflow_postgres::{PgConfig, PgPool, VERIFY_AFTER};
use common::*;
use faultproxy::{Direction, Proxy};

async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pg_backend_pid")
        .get(0)
}

/// Each connection keeps buffers as large as the largest statement it has
/// sent, so a caller that makes one call at a time should keep getting the
/// same connection back rather than each of the pool's in turn.
#[tokio::test]
async fn the_connection_returned_last_is_handed_out_next() {
    let db = TestDb::new();
    let pool = PgPool::new(&db.config()).expect("pool");
    // Two connections exist: both were checked out at once.
    let first = pool.get().await.expect("first connection");
    let second = pool.get().await.expect("second connection");
    let (first_pid, second_pid) = (backend_pid(&first).await, backend_pid(&second).await);
    assert_ne!(first_pid, second_pid);
    drop(first);
    drop(second);
    for call in 0..4 {
        let client = pool.get().await.expect("connection");
        assert_eq!(
            backend_pid(&client).await,
            second_pid,
            "call {call} got another connection than the one returned last"
        );
    }
    assert_eq!(pool.deadpool().status().size, 2);
}

/// A connection that went silent while idle (its peer vanished without a
/// FIN: the fault proxy drops its bytes) is verified at the next checkout,
/// found dead within `connect_timeout`, and replaced; the call then succeeds
/// on a fresh connection instead of waiting out the call timeout on the old
/// one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_silent_since_its_last_use_is_verified_and_replaced() {
    let db = TestDb::new();
    let proxy = Proxy::start("127.0.0.1:0".parse().expect("address"), server_addr())
        .await
        .expect("proxy");
    let faults = proxy.handle();
    let config = PgConfig {
        url: proxied_url(proxy.listen_addr()),
        connect_timeout: Duration::from_secs(1),
        statement_timeout: Duration::from_secs(5),
        pool_size: 1,
        ..db.config()
    };
    let pool = PgPool::new(&config).expect("pool");
    pool.check().await.expect("first call");
    let first = backend_pid(&pool.get().await.expect("connection")).await;

    faults.set_blackhole(Direction::Both, true);
    // The condition under test: idle for longer than VERIFY_AFTER.
    tokio::time::sleep(VERIFY_AFTER + Duration::from_millis(200)).await;
    // The path comes back once the old connection's verification has been
    // swallowed (its bytes dropped, not delayed), before the pool gives up
    // on it and opens another.
    let heal = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(5);
        while faults.stats().bytes_blackholed == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let swallowed = faults.stats().bytes_blackholed;
        faults.set_blackhole(Direction::Both, false);
        swallowed
    });
    let started = Instant::now();
    // Bounded: handed the silent connection, the query would wait forever.
    let second = tokio::time::timeout(config.call_timeout(), async {
        let client = pool.get().await.expect("a fresh connection");
        backend_pid(&client).await
    })
    .await
    .expect("the checkout and query waited on the dead connection");
    let took = started.elapsed();
    let swallowed = heal.await.expect("heal task");
    assert!(
        swallowed > 0,
        "the pool sent nothing on the silent connection"
    );
    assert_ne!(first, second, "the silent connection was handed out again");
    assert!(
        took < config.call_timeout(),
        "took {took:?}: the checkout waited on the dead connection"
    );
}

/// A connection handed out again within VERIFY_AFTER is not verified (its
/// last statement is still the one the caller ran); one idle for longer is
/// (PostgreSQL saw the empty verification query).
#[tokio::test]
async fn only_a_connection_idle_for_longer_than_verify_after_is_verified() {
    let db = TestDb::new();
    let pool = PgPool::new(&db.config()).expect("pool");
    let client = pool.get().await.expect("connection");
    let pid = backend_pid(&client).await;
    client
        .simple_query("SELECT 'marker'")
        .await
        .expect("marker");
    drop(client);
    let raw = db.raw().await;
    let last_query = || async {
        let row = raw
            .query_one("SELECT query FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await
            .expect("pg_stat_activity");
        row.get::<_, String>(0)
    };

    let again = pool.get().await.expect("checkout right after");
    assert_eq!(
        last_query().await,
        "SELECT 'marker'",
        "verified although just used"
    );
    assert_eq!(
        backend_pid(&again).await,
        pid,
        "not the connection just returned"
    );
    drop(again);

    // The condition under test: idle for longer than VERIFY_AFTER.
    tokio::time::sleep(VERIFY_AFTER + Duration::from_millis(200)).await;
    let later = pool.get().await.expect("checkout after idling");
    assert_eq!(last_query().await, "", "not verified after idling");
    assert_eq!(
        backend_pid(&later).await,
        pid,
        "a sound connection was replaced"
    );
}

/// The test server's address (from [`base_url`]).
fn server_addr() -> std::net::SocketAddr {
    let config: tokio_postgres::Config = base_url().parse().expect("test URL");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}").parse().expect("a TCP test server")
}

/// [`base_url`] with its address replaced by `via`.
fn proxied_url(via: std::net::SocketAddr) -> String {
    let config: tokio_postgres::Config = base_url().parse().expect("test URL");
    let user = config.get_user().unwrap_or("postgres");
    let dbname = config.get_dbname().unwrap_or("test");
    format!("postgres://{user}@{via}/{dbname}")
}
