//! Acks held back and sent together (`ack_delay`, `ack_coalesce`), against
//! the local RabbitMQ, one vhost per test.
//!
//! The oracle is the broker itself: a subscription is dropped (its channel
//! closes, and RabbitMQ requeues whatever it has not seen acked) and a new
//! one shows which deliveries come back.

mod common;

use std::time::Duration;

use auditflow_core::broker::{Broker, Subscription};
use auditflow_rabbitmq::{RabbitBroker, Topology};
use common::*;

async fn broker_with(v: &Vhost, ack_delay: Duration, ack_coalesce: usize) -> RabbitBroker {
    let config = auditflow_rabbitmq::RabbitConfig {
        ack_delay,
        ack_coalesce,
        ..v.config(Topology::Quorum)
    };
    RabbitBroker::connect(config, Duration::from_secs(10))
        .await
        .expect("connects")
}

/// Publishes `ids` to "q" and takes them on a new subscription (unacked).
async fn consumed(b: &RabbitBroker, ids: &[&str]) -> (Box<dyn Subscription>, Vec<u64>) {
    publish(b, "q", ids).await;
    let mut sub = b.subscribe("q", 10).await.expect("subscribes");
    let got = take(&mut sub, ids.len(), 10).await;
    assert_eq!(common::ids(&got), ids);
    (sub, got.iter().map(|d| d.tag).collect())
}

/// Acks each delivery with its own call, as a consumer at light load does.
async fn ack_one_by_one(sub: &mut Box<dyn Subscription>, tags: &[u64]) {
    for tag in tags {
        sub.ack(&[*tag]).await.expect("ack");
    }
}

/// The ids a fresh subscription gets back, sorted (waits `ms` for more).
async fn redelivered(b: &RabbitBroker, queue: &str, ms: u64) -> Vec<String> {
    let mut sub = b.subscribe(queue, 10).await.expect("subscribes");
    let mut got = Vec::new();
    while let Ok(batch) = tokio::time::timeout(Duration::from_millis(ms), sub.next_batch(10)).await
    {
        got.extend(ids(&batch.expect("next_batch works")));
    }
    got.sort();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_back_acks_go_out_once_their_delay_has_passed() {
    let v = Vhost::new();
    let b = broker_with(&v, Duration::from_millis(300), 64).await;
    let (mut sub, tags) = consumed(&b, &["a", "b", "c"]).await;
    ack_one_by_one(&mut sub, &tags).await;
    // Waiting for the next delivery is enough: no other call is made.
    assert!(quiet(&mut sub, 800).await);
    drop(sub);
    assert!(redelivered(&b, "q", 500).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_back_acks_are_lost_with_the_subscription_unless_flushed() {
    let v = Vhost::new();
    let b = broker_with(&v, Duration::from_secs(60), 64).await;
    let (mut sub, tags) = consumed(&b, &["a", "b", "c"]).await;
    ack_one_by_one(&mut sub, &tags).await;
    // Dropped within the delay: the acks were never sent, all three come
    // back (a redelivery, which idempotent effects absorb, not a loss).
    drop(sub);
    let (mut sub, again, again_ids) = resubscribe(&b, "q", 3).await;
    assert_eq!(again_ids, ["a", "b", "c"]);
    assert!(again.iter().all(|d| d.redelivered));
    // Flushed before the drop: nothing comes back.
    let tags: Vec<u64> = again.iter().map(|d| d.tag).collect();
    ack_one_by_one(&mut sub, &tags).await;
    sub.flush().await.unwrap();
    drop(sub);
    assert!(redelivered(&b, "q", 500).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_go_out_at_once_when_ack_coalesce_of_them_wait() {
    let v = Vhost::new();
    let b = broker_with(&v, Duration::from_secs(60), 3).await;
    let (mut sub, tags) = consumed(&b, &["a", "b", "c", "d"]).await;
    // The third ack sends all three; "d" stays unacked.
    ack_one_by_one(&mut sub, &tags[..3]).await;
    drop(sub);
    assert_eq!(redelivered(&b, "q", 500).await, ["d"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_back_multiple_ack_leaves_deliveries_still_held_unacked() {
    // "b" is still being processed when "a" and "c" are acked: the acks
    // must not go out as one `multiple` ack up to "c", which would ack "b".
    let v = Vhost::new();
    let b = broker_with(&v, Duration::from_millis(100), 64).await;
    let (mut sub, tags) = consumed(&b, &["a", "b", "c"]).await;
    ack_one_by_one(&mut sub, &[tags[0], tags[2]]).await;
    assert!(quiet(&mut sub, 400).await);
    drop(sub);
    assert_eq!(redelivered(&b, "q", 500).await, ["b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_delay_every_ack_goes_out_at_once() {
    let v = Vhost::new();
    let b = broker_with(&v, Duration::ZERO, 64).await;
    let (mut sub, tags) = consumed(&b, &["a", "b"]).await;
    ack_one_by_one(&mut sub, &tags[..1]).await;
    drop(sub);
    assert_eq!(redelivered(&b, "q", 500).await, ["b"]);
}
