//! Redis unreachable: `observe` fails fast with `Unavailable` (never decides
//! on empty state, never hangs), and works again once Redis is back,
//! without recreating the state (the connection manager reconnects).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use auditflow_core::window::{WindowError, WindowState};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_fast_while_down_and_recovers_by_itself() {
    let mut server = Server::start();
    let prefix = Prefix::on(&server.url(), "down");
    let mut config = prefix.config();
    config.command_timeout = Duration::from_millis(500);
    let source = Arc::new(VecSource::default());
    let s = state(config, source.clone());
    let first = [obs("r", "g", 1, 0), obs("r", "g", 2, 1)];
    let d = s.observe(&first).await.unwrap();
    source.store(&first, &d);
    s.check().await.unwrap();

    server.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let err = s.observe(&[obs("r", "g", 3, 2)]).await.unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, WindowError::Unavailable(_)), "{err}");
        assert!(took < Duration::from_millis(800), "took {took:?}: {err}");
        let started = Instant::now();
        assert!(s.check().await.is_err());
        assert!(started.elapsed() < Duration::from_millis(800));
    }

    server.start_again(); // empty, like any restart without persistence
    let back = observe_retrying(&s, &[obs("r", "g", 3, 2)], Duration::from_secs(10)).await;
    assert!(back[0].fire, "rebuilt from the source: {back:?}");
    s.check().await.unwrap();
}

/// A state created while Redis is down connects lazily once it is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn can_be_created_while_redis_is_down() {
    let mut server = Server::start();
    server.stop();
    let prefix = Prefix::on(&server.url(), "lazy");
    let s = state(prefix.config(), Arc::new(EmptySource));
    assert!(s.check().await.is_err());
    server.start_again();
    let d = observe_retrying(&s, &[obs("r", "g", 1, 0)], Duration::from_secs(10)).await;
    assert_eq!(d[0].count, 1);
}
