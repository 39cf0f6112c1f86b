//! Broker semantics on real files.

mod common;

use std::collections::HashSet;

use auditflow_core::broker::{Broker, BrokerError};
use auditflow_embedded::{Embedded, EmbeddedError, EmbeddedOptions, DELIVERY_LIMIT_REASON};
use common::*;

const Q: &str = "audit_events";

#[tokio::test]
async fn delivers_in_fifo_order_across_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_with(dir.path(), fast());
    let b = e.broker();
    b.publish(Q, &[msg("a"), msg("b")]).await.unwrap();
    b.publish(Q, &[msg("c")]).await.unwrap();
    b.publish(
        Q,
        &(0..5).map(|i| msg(&format!("d{i}"))).collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let mut sub = b.subscribe(Q, 100).await.unwrap();
    let got = next(&mut sub, 100).await;
    assert_eq!(ids(&got), ["a", "b", "c", "d0", "d1", "d2", "d3", "d4"]);
    assert!(got.iter().all(|d| !d.redelivered && d.delivery_count == 1));
    assert_eq!(got[0].message, msg("a"), "payload and headers round-trip");
}

#[tokio::test]
async fn prefetch_bounds_unacked_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_with(dir.path(), fast());
    let b = e.broker();
    b.publish(Q, &(0..10).map(|i| msg(&i.to_string())).collect::<Vec<_>>())
        .await
        .unwrap();
    let mut sub = b.subscribe(Q, 3).await.unwrap();
    let first = next(&mut sub, 10).await;
    assert_eq!(ids(&first), ["0", "1", "2"]);
    assert_nothing(&mut sub).await;
    let stats = b.stats(Q).await.unwrap();
    assert_eq!((stats.ready, stats.unacked), (7, 3));
    sub.ack(&[first[0].tag]).await.unwrap();
    assert_eq!(ids(&next(&mut sub, 10).await), ["3"]);
}

#[tokio::test]
async fn ack_removes_and_unknown_tags_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_with(dir.path(), fast());
    let b = e.broker();
    b.publish(Q, &[msg("a"), msg("b"), msg("c")]).await.unwrap();
    let mut sub = b.subscribe(Q, 10).await.unwrap();
    let got = next(&mut sub, 10).await;
    sub.ack(&[got[0].tag, got[2].tag]).await.unwrap();
    let stats = b.stats(Q).await.unwrap();
    assert_eq!((stats.ready, stats.unacked), (0, 1));
    let err = sub.ack(&[got[0].tag]).await.unwrap_err();
    assert!(matches!(err, BrokerError::Rejected(_)), "{err}");
    b.check().await.unwrap();
    drop((sub, b, e));
    let e = open_with(dir.path(), fast());
    let mut sub = e.broker().subscribe(Q, 10).await.unwrap();
    let back = next(&mut sub, 10).await;
    assert_eq!(ids(&back), ["b"]);
    assert!(back[0].redelivered);
}

#[tokio::test]
async fn requeue_returns_to_the_front_in_order_with_counts() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_with(dir.path(), fast());
    let b = e.broker();
    b.publish(Q, &[msg("a"), msg("b"), msg("c")]).await.unwrap();
    let mut sub = b.subscribe(Q, 10).await.unwrap();
    let got = next(&mut sub, 2).await;
    assert_eq!(ids(&got), ["a", "b"]);
    // Requeued in reverse order: FIFO is restored anyway.
    sub.requeue(&[got[1].tag, got[0].tag]).await.unwrap();
    let again = next(&mut sub, 10).await;
    assert_eq!(ids(&again), ["a", "b", "c"]);
    assert!(again[0].redelivered && again[1].redelivered && !again[2].redelivered);
    assert_eq!(
        again.iter().map(|d| d.delivery_count).collect::<Vec<_>>(),
        [2, 2, 1]
    );
}

#[tokio::test]
async fn delivery_limit_dead_letters_with_reason() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions {
        delivery_limit: 3,
        ..fast()
    };
    let e = open_with(dir.path(), opts);
    let b = e.broker();
    b.publish(Q, &[msg("poison"), msg("ok")]).await.unwrap();
    let mut sub = b.subscribe(Q, 1).await.unwrap();
    for attempt in 1..=3 {
        let got = next(&mut sub, 1).await;
        assert_eq!(ids(&got), ["poison"]);
        assert_eq!(got[0].delivery_count, attempt);
        sub.requeue(&tags(&got)).await.unwrap();
    }
    let got = next(&mut sub, 1).await;
    assert_eq!(
        ids(&got),
        ["ok"],
        "the poison message is not delivered a 4th time"
    );
    let dl = b.dead_letters(Q, 10).await.unwrap();
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].message_id, "poison");
    assert_eq!(dl[0].reason, DELIVERY_LIMIT_REASON);
    assert_eq!(dl[0].delivery_count, 3);
    assert_eq!(dl[0].payload, "{\"id\":\"poison\"}");
    let stats = b.stats(Q).await.unwrap();
    assert_eq!((stats.ready, stats.unacked, stats.dead_lettered), (0, 1, 1));
}

#[tokio::test]
async fn delivery_counts_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions {
        delivery_limit: 2,
        ..fast()
    };
    {
        let e = open_with(dir.path(), opts.clone());
        let b = e.broker();
        b.publish(Q, &[msg("crashy")]).await.unwrap();
        let mut sub = b.subscribe(Q, 1).await.unwrap();
        next(&mut sub, 1).await;
        // The consumer "crashes": nothing acked.
    }
    {
        let e = open_with(dir.path(), opts.clone());
        let mut sub = e.broker().subscribe(Q, 1).await.unwrap();
        let got = next(&mut sub, 1).await;
        assert!(got[0].redelivered);
        assert_eq!(got[0].delivery_count, 2);
    }
    let e = open_with(dir.path(), opts);
    let b = e.broker();
    let mut sub = b.subscribe(Q, 1).await.unwrap();
    assert_nothing(&mut sub).await;
    let dl = b.dead_letters(Q, 10).await.unwrap();
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].reason, DELIVERY_LIMIT_REASON);
}

#[tokio::test]
async fn explicit_dead_letter_list_and_redrive() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_with(dir.path(), fast());
    let b = e.broker();
    b.publish(Q, &[msg("bad"), msg("worse")]).await.unwrap();
    let mut sub = b.subscribe(Q, 10).await.unwrap();
    let got = next(&mut sub, 10).await;
    sub.dead_letter(got[0].tag, "invalid event: field `severity`")
        .await
        .unwrap();
    sub.dead_letter(got[1].tag, "second").await.unwrap();
    assert!(matches!(
        sub.dead_letter(got[1].tag, "again").await,
        Err(BrokerError::Rejected(_))
    ));
    let stats = b.stats(Q).await.unwrap();
    assert_eq!((stats.ready, stats.unacked, stats.dead_lettered), (0, 0, 2));
    let dl = b.dead_letters(Q, 10).await.unwrap();
    assert_eq!(
        dl.iter().map(|d| d.message_id.as_str()).collect::<Vec<_>>(),
        ["worse", "bad"],
        "newest first"
    );
    assert_eq!(dl[1].reason, "invalid event: field `severity`");
    assert_eq!(b.dead_letters(Q, 1).await.unwrap().len(), 1);
    assert!(b.dead_letters("other", 10).await.unwrap().is_empty());

    assert!(!b.redrive("other", &dl[1].id).await.unwrap(), "wrong queue");
    assert!(b.redrive(Q, &dl[1].id).await.unwrap());
    assert!(!b.redrive(Q, &dl[1].id).await.unwrap(), "already redriven");
    let back = next(&mut sub, 10).await;
    assert_eq!(ids(&back), ["bad"]);
    assert_eq!(back[0].message, msg("bad"));
    assert_eq!(back[0].delivery_count, 1);
    let stats = b.stats(Q).await.unwrap();
    assert_eq!((stats.unacked, stats.dead_lettered), (1, 1));
    // Dead letters are durable.
    drop((sub, b, e));
    let e = open_with(dir.path(), fast());
    assert_eq!(e.broker().stats(Q).await.unwrap().dead_lettered, 1);
}

/// A broker bounded at `max_queue_depth` whose queue `Q` holds the messages
/// "0", "1", ... up to `count`.
async fn holding(dir: &std::path::Path, max_queue_depth: u64, count: usize) -> Embedded {
    let e = open_with(
        dir,
        EmbeddedOptions {
            max_queue_depth,
            ..fast()
        },
    );
    e.broker()
        .publish(
            Q,
            &(0..count).map(|i| msg(&i.to_string())).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    e
}

#[tokio::test]
async fn a_publisher_waiting_for_room_is_let_in_when_a_consumer_acks() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let e = holding(dir.path(), 3, 3).await;
    let b = e.broker();
    assert!(!b.wait_for_room(Q, 1, Duration::ZERO).await);
    // Nobody consumes: the wait ends at its timeout, with no room.
    assert!(!b.wait_for_room(Q, 2, Duration::from_millis(50)).await);

    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.wait_for_room(Q, 2, Duration::from_secs(30)).await })
    };
    let mut sub = b.subscribe(Q, 10).await.unwrap();
    let got = next(&mut sub, 2).await;
    // Delivered but unacked messages still count against the bound.
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    sub.ack(&got.iter().map(|d| d.tag).collect::<Vec<_>>())
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the ack woke the waiting publisher")
            .unwrap(),
        "two acked, so two fit"
    );
    b.publish(Q, &[msg("x"), msg("y")]).await.unwrap();
}

#[tokio::test]
async fn publish_over_the_bound_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = holding(dir.path(), 5, 4).await;
    let b = e.broker();
    match b.publish(Q, &[msg("x"), msg("y")]).await {
        Err(BrokerError::Full { queue, depth }) => assert_eq!((queue.as_str(), depth), (Q, 4)),
        other => panic!("expected Full, got {other:?}"),
    }
    b.publish(Q, &[msg("4")]).await.unwrap();
    let mut sub = b.subscribe(Q, 10).await.unwrap();
    let got = next(&mut sub, 1).await;
    assert!(
        b.publish(Q, &[msg("5")]).await.unwrap_err().is_transient(),
        "unacked counts"
    );
    sub.ack(&tags(&got)).await.unwrap();
    b.publish(Q, &[msg("5")]).await.unwrap();
    // Other queues have their own bound.
    b.publish("audit_alerts", &[msg("alert")]).await.unwrap();
}

#[tokio::test]
async fn unacked_messages_survive_reopen_and_acked_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = open(dir.path());
        let b = e.broker();
        for chunk in 0..4 {
            b.publish(
                Q,
                &(0..5)
                    .map(|i| msg(&format!("m{:02}", chunk * 5 + i)))
                    .collect::<Vec<_>>(),
            )
            .await
            .unwrap();
        }
        let mut sub = b.subscribe(Q, 100).await.unwrap();
        let got = next(&mut sub, 5).await;
        sub.ack(&tags(&got)).await.unwrap();
        let _held = next(&mut sub, 5).await;
        b.check().await.unwrap(); // acks are lazily committed; make sure they are
                                  // Everything is dropped with 5 deliveries unacked. (Returning them on
                                  // drop only touches memory, so on disk this is a crash; the real
                                  // `kill -9` test is in tests/crash.rs.)
        drop(sub);
    }
    let e = open(dir.path());
    let b = e.broker();
    let stats = b.stats(Q).await.unwrap();
    assert_eq!((stats.ready, stats.unacked), (15, 0));
    let mut sub = b.subscribe(Q, 100).await.unwrap();
    let back = next(&mut sub, 100).await;
    let expected: Vec<String> = (5..20).map(|i| format!("m{i:02}")).collect();
    assert_eq!(ids(&back), expected);
    assert!(back.iter().all(|d| d.redelivered));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_consumers_get_distinct_messages() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_with(dir.path(), fast());
    let b = e.broker();
    let total = 500;
    let mut consumers = Vec::new();
    let (done_tx, done_rx) = tokio::sync::watch::channel(0usize);
    let done_tx = std::sync::Arc::new(done_tx);
    for _ in 0..3 {
        let mut sub = b.subscribe(Q, 16).await.unwrap();
        let done_tx = done_tx.clone();
        let mut done_rx = done_rx.clone();
        consumers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                tokio::select! {
                    batch = sub.next_batch(8) => {
                        let batch = batch.unwrap();
                        seen.extend(ids(&batch));
                        sub.ack(&tags(&batch)).await.unwrap();
                        done_tx.send_modify(|n| *n += batch.len());
                    }
                    changed = done_rx.changed() => {
                        changed.unwrap();
                        let finished = *done_rx.borrow_and_update() >= total;
                        if finished {
                            return seen;
                        }
                    }
                }
            }
        }));
    }
    for chunk in 0..(total / 10) {
        b.publish(
            Q,
            &(0..10)
                .map(|i| msg(&(chunk * 10 + i).to_string()))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    }
    let mut all = Vec::new();
    let mut per_consumer = Vec::new();
    for c in consumers {
        let seen = tokio::time::timeout(std::time::Duration::from_secs(20), c)
            .await
            .expect("consumers finish")
            .unwrap();
        per_consumer.push(seen.len());
        all.extend(seen);
    }
    let distinct: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), total, "no message delivered twice");
    assert_eq!(distinct.len(), total, "every message delivered");
    let stats = b.stats(Q).await.unwrap();
    assert_eq!((stats.ready, stats.unacked), (0, 0));
}

#[tokio::test]
async fn dropping_a_subscription_returns_its_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_with(dir.path(), fast());
    let b = e.broker();
    b.publish(Q, &[msg("a"), msg("b"), msg("c")]).await.unwrap();
    let mut first = b.subscribe(Q, 2).await.unwrap();
    let mut second = b.subscribe(Q, 10).await.unwrap();
    let taken = next(&mut first, 10).await;
    assert_eq!(ids(&taken), ["a", "b"]);
    assert_eq!(ids(&next(&mut second, 10).await), ["c"]);
    drop(first);
    let back = next(&mut second, 10).await;
    assert_eq!(ids(&back), ["a", "b"]);
    assert!(back.iter().all(|d| d.redelivered && d.delivery_count == 2));
}

#[tokio::test]
async fn a_waiting_consumer_is_woken_and_next_batch_is_cancel_safe() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_with(dir.path(), fast());
    let b = e.broker();
    let mut sub = b.subscribe(Q, 10).await.unwrap();
    // Cancel a pending next_batch: nothing may be lost.
    assert_nothing(&mut sub).await;
    let waiter = tokio::spawn(async move {
        let got = next(&mut sub, 10).await;
        (ids(&got), sub)
    });
    tokio::task::yield_now().await;
    b.publish(Q, &[msg("wake")]).await.unwrap();
    let (got, _sub) = waiter.await.unwrap();
    assert_eq!(got, ["wake"]);
}

#[tokio::test]
async fn a_second_open_of_the_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    let err =
        auditflow_embedded::Embedded::open(dir.path(), EmbeddedOptions::default()).unwrap_err();
    assert!(matches!(err, EmbeddedError::Locked { .. }));
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    let broker = e.broker();
    drop(e);
    // Still locked while a backend handle lives.
    assert!(auditflow_embedded::Embedded::open(dir.path(), EmbeddedOptions::default()).is_err());
    drop(broker);
    auditflow_embedded::Embedded::open(dir.path(), EmbeddedOptions::default()).unwrap();
}

#[test]
fn options_deserialize_with_defaults() {
    let opts: EmbeddedOptions =
        serde_json::from_str(r#"{"max_queue_depth": 10, "synchronous": "normal"}"#).unwrap();
    assert_eq!(opts.max_queue_depth, 10);
    assert_eq!(opts.synchronous, auditflow_embedded::SyncMode::Normal);
    assert_eq!(opts.delivery_limit, 5);
    assert_eq!(
        serde_json::from_str::<EmbeddedOptions>("{}").unwrap(),
        EmbeddedOptions::default()
    );
    assert!(serde_json::from_str::<EmbeddedOptions>(r#"{"bogus": 1}"#).is_err());
}
