//! The connection pool on the real server.

mod common;

use auditflow_postgres::PgPool;
use common::*;

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
