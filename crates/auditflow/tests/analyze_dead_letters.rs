//! Analyze dead-letters what it cannot take, with the reason, and goes on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use auditflow::config::Config;
use auditflow::platform::build_context;
use auditflow::roles::analyze;
use auditflow_core::broker::Message;
use auditflow_embedded::{Embedded, EmbeddedOptions};
use auditflow_rules::RuleSet;
use bytes::Bytes;
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn message(id: &str, body: String) -> Message {
    Message {
        message_id: id.into(),
        payload: Bytes::from(body),
        headers: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_and_invalid_events_are_dead_lettered_with_a_reason_and_the_rest_flows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.analyze.max_event_bytes = 2048;
    let embedded = Embedded::open(dir.path(), EmbeddedOptions::default()).expect("embedded");
    let (ctx, _) = build_context(
        Arc::new(config),
        embedded.broker(),
        embedded.store(),
        embedded.windows(),
        CancellationToken::new(),
    )
    .expect("context");
    let good = |n: u32| {
        json!({
            "event_id": format!("00000000-0000-4000-8000-{n:012}"),
            "timestamp": "2026-11-22T21:46:30Z",
            "source_service": "t", "server_hostname": "h", "event_type": "sudo_command",
            "severity": "INFO", "user_id": "u", "action_result": "SUCCESS",
            "details": {"blob": "x".repeat(100)}
        })
    };
    let mut huge = good(99);
    huge["details"] = json!({"blob": "x".repeat(4096)});
    let queue = ctx.config.broker.events_queue.clone();
    ctx.broker
        .publish(
            &queue,
            &[
                message("huge", huge.to_string()),
                message("good-1", good(1).to_string()),
                message("broken", "{not json".into()),
                message("good-2", good(2).to_string()),
            ],
        )
        .await
        .expect("publish");
    let task = tokio::spawn(analyze::run(ctx.clone(), Arc::new(RuleSet::builtin())));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = ctx.broker.stats(&queue).await.expect("stats");
        if stats.ready + stats.unacked == 0 && stats.dead_lettered == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "queue did not drain: {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ctx.store.counts().await.expect("counts").events, 2);
    let letters = ctx
        .broker
        .dead_letters(&queue, 10)
        .await
        .expect("dead letters");
    let reason = |id: &str| {
        letters
            .iter()
            .find(|l| l.message_id == id)
            .map(|l| l.reason.clone())
            .unwrap_or_default()
    };
    assert!(
        reason("huge").contains("analyze.max_event_bytes"),
        "{letters:?}"
    );
    assert!(reason("broken").contains("invalid JSON"), "{letters:?}");
    ctx.shutdown.cancel();
    task.await.expect("join").expect("analyze stops cleanly");
}
