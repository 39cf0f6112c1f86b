//! Integration tests against the local RabbitMQ, one vhost per test.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use auditflow_core::broker::{Broker, BrokerError};
use auditflow_rabbitmq::dead_letters::{HEADER_REASON, HEADER_SOURCE_QUEUE};
use auditflow_rabbitmq::{RabbitBroker, RabbitConfig, Topology};
use common::*;
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};

fn arg<'a>(queue: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    queue["arguments"]
        .as_array()?
        .iter()
        .find(|a| a[0] == name)
        .map(|a| &a[2])
}

/// A peek returns what it looked at asynchronously: poll the counts.
async fn assert_stats(b: &RabbitBroker, queue: &str, expected: (u64, u64, u64)) {
    let mut got = (0, 0, 0);
    for _ in 0..50 {
        let s = b.stats(queue).await.unwrap();
        got = (s.ready, s.unacked, s.dead_lettered);
        if got == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_wire_properties_topology_and_fifo() {
    let v = Vhost::new();
    let b = broker(&v, Topology::Quorum).await;
    b.check().await.unwrap();
    publish(&b, "events", &["wire-1"]).await;

    // The message as it is on the wire, read by a plain lapin client.
    let conn = Connection::connect(&v.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let got = ch
        .basic_get("events".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("a message");
    let p = &got.delivery.properties;
    assert_eq!(*p.delivery_mode(), Some(2));
    assert_eq!(p.message_id().as_ref().unwrap().as_str(), "wire-1");
    assert_eq!(
        p.content_type().as_ref().unwrap().as_str(),
        "application/json"
    );
    let headers = p.headers().as_ref().unwrap();
    match headers.inner().get("x-correlation-id") {
        Some(AMQPValue::LongString(s)) => assert_eq!(s.to_string(), "corr-wire-1"),
        other => panic!("bad correlation header {other:?}"),
    }
    assert_eq!(got.delivery.data, b"{\"id\":\"wire-1\"}");
    conn.close(200, "done".into()).await.unwrap();

    // Topology as declared.
    let q = v.queue("events");
    assert_eq!(q["type"], "quorum");
    assert_eq!(arg(&q, "x-queue-type").unwrap(), "quorum");
    assert_eq!(arg(&q, "x-delivery-limit").unwrap(), 4);
    assert_eq!(arg(&q, "x-dead-letter-exchange").unwrap(), "events.dlx");
    assert_eq!(arg(&q, "x-dead-letter-routing-key").unwrap(), "events.dlq");
    assert_eq!(arg(&q, "x-dead-letter-strategy").unwrap(), "at-least-once");
    assert_eq!(arg(&q, "x-overflow").unwrap(), "reject-publish");
    assert_eq!(v.queue("events.dlq")["type"], "quorum");

    // FIFO through one consumer, then ack.
    let ids_in: Vec<String> = (0..50).map(|i| format!("m{i:02}")).collect();
    let refs: Vec<&str> = ids_in.iter().map(String::as_str).collect();
    publish(&b, "events", &refs).await;
    let mut sub = b.subscribe("events", 100).await.unwrap();
    let got = take(&mut sub, 50, 10).await;
    assert_eq!(ids(&got), ids_in);
    assert!(got.iter().all(|d| !d.redelivered && d.delivery_count == 1));
    assert_eq!(got[0].message.headers["x-correlation-id"], "corr-m00");
    assert_eq!(
        got[0].tag, 1,
        "first channel's tags are RabbitMQ's delivery tags"
    );
    let stats = b.stats("events").await.unwrap();
    assert_eq!(
        (stats.ready, stats.unacked, stats.dead_lettered),
        (0, 50, 0)
    );
    let tags: Vec<u64> = got.iter().map(|d| d.tag).collect();
    sub.ack(&tags[..10]).await.unwrap();
    sub.ack(&tags[10..]).await.unwrap();
    assert!(matches!(
        sub.ack(&[tags[0]]).await,
        Err(BrokerError::Rejected(_))
    ));
    assert!(quiet(&mut sub, 300).await);
    drop(sub);
    let mut sub = b.subscribe("events", 100).await.unwrap();
    assert!(quiet(&mut sub, 500).await, "acked messages stay acked");
    let stats = b.stats("events").await.unwrap();
    assert_eq!((stats.ready, stats.unacked), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_come_back_after_drop_and_requeue() {
    let v = Vhost::new();
    let b = broker(&v, Topology::Quorum).await;
    publish(&b, "q", &["a", "b", "c"]).await;
    let mut sub = b.subscribe("q", 10).await.unwrap();
    let got = take(&mut sub, 3, 10).await;
    assert_eq!(ids(&got), ["a", "b", "c"]);
    drop(sub);
    let (mut sub, again, again_ids) = resubscribe(&b, "q", 3).await;
    assert_eq!(again_ids, ["a", "b", "c"]);
    assert!(again.iter().all(|d| d.redelivered && d.delivery_count == 2));

    // Requeue one: it comes back with a higher count; ack the others.
    let a = again.iter().find(|d| d.message.message_id == "a").unwrap();
    let others: Vec<u64> = again
        .iter()
        .filter(|d| d.tag != a.tag)
        .map(|d| d.tag)
        .collect();
    sub.ack(&others).await.unwrap();
    sub.requeue(&[a.tag]).await.unwrap();
    let back = next(&mut sub, 10, 10).await;
    assert_eq!(ids(&back), ["a"]);
    assert!(back[0].redelivered);
    assert_eq!(back[0].delivery_count, 3);
    sub.ack(&[back[0].tag]).await.unwrap();
    assert!(quiet(&mut sub, 300).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_dead_letter_keeps_reason_and_redrive_moves_back() {
    let v = Vhost::new();
    let b = broker(&v, Topology::Quorum).await;
    publish(&b, "q", &["bad", "good"]).await;
    let mut sub = b.subscribe("q", 10).await.unwrap();
    let got = take(&mut sub, 2, 10).await;
    sub.dead_letter(got[0].tag, "schema violation: no timestamp")
        .await
        .unwrap();
    sub.ack(&[got[1].tag]).await.unwrap();
    assert!(matches!(
        sub.dead_letter(got[0].tag, "again").await,
        Err(BrokerError::Rejected(_))
    ));

    let dead = b.dead_letters("q", 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].id, "bad");
    assert_eq!(dead[0].message_id, "bad");
    assert_eq!(dead[0].queue, "q");
    assert_eq!(dead[0].reason, "schema violation: no timestamp");
    assert_eq!(dead[0].delivery_count, 1);
    assert_eq!(dead[0].payload, "{\"id\":\"bad\"}");
    assert!((chrono::Utc::now() - dead[0].failed_at).num_seconds() < 60);
    // Listing is a peek: still there.
    assert_eq!(b.dead_letters("q", 10).await.unwrap().len(), 1);
    assert_stats(&b, "q", (0, 0, 1)).await;

    // The copy in the DLQ carries the reason headers.
    let conn = Connection::connect(&v.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let raw = ch
        .basic_get("q.dlq".into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .unwrap();
    let h = raw.delivery.properties.headers().clone().unwrap();
    assert!(h.contains_key(HEADER_REASON) && h.contains_key(HEADER_SOURCE_QUEUE));
    conn.close(200, "done".into()).await.unwrap();

    assert!(!b.redrive("q", "nope").await.unwrap());
    assert!(b.redrive("q", "bad").await.unwrap());
    assert!(b.dead_letters("q", 10).await.unwrap().is_empty());
    let back = next(&mut sub, 10, 10).await;
    assert_eq!(ids(&back), ["bad"]);
    assert_eq!(back[0].delivery_count, 1);
    assert_eq!(back[0].message.headers["x-correlation-id"], "corr-bad");
    assert!(!back[0].message.headers.contains_key(HEADER_REASON));
    sub.ack(&[back[0].tag]).await.unwrap();
}

/// Requeues `poison` forever and acks everything else, until `others` are done.
async fn poison_run(b: &RabbitBroker, queue: &str, others: usize) -> u32 {
    let mut sub = b.subscribe(queue, 10).await.unwrap();
    let mut done = HashSet::new();
    let mut poison_deliveries = 0;
    while done.len() < others {
        for d in next(&mut sub, 10, 10).await {
            if d.message.message_id == "poison" {
                poison_deliveries += 1;
                assert_eq!(d.delivery_count, poison_deliveries);
                sub.requeue(&[d.tag]).await.unwrap();
            } else {
                done.insert(d.message.message_id.clone());
                sub.ack(&[d.tag]).await.unwrap();
            }
        }
    }
    // Drain what is left of the poison message's deliveries.
    while let Ok(Ok(batch)) =
        tokio::time::timeout(Duration::from_millis(700), sub.next_batch(10)).await
    {
        for d in batch {
            assert_eq!(d.message.message_id, "poison");
            poison_deliveries += 1;
            sub.requeue(&[d.tag]).await.unwrap();
        }
    }
    poison_deliveries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_message_ends_in_dlq_without_blocking() {
    let v = Vhost::new();
    let b = broker(&v, Topology::Quorum).await;
    let others: Vec<String> = (0..30).map(|i| format!("ok{i}")).collect();
    publish(&b, "q", &["poison"]).await;
    publish(
        &b,
        "q",
        &others.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let deliveries = poison_run(&b, "q", 30).await;
    assert_eq!(deliveries, 5, "delivered exactly delivery_limit times");
    let mut dead = Vec::new();
    for _ in 0..50 {
        dead = b.dead_letters("q", 10).await.unwrap();
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id, "poison");
    assert_eq!(dead[0].reason, "delivery limit exceeded");
    assert_eq!(dead[0].delivery_count, 5);
    assert_stats(&b, "q", (0, 0, 1)).await;

    assert!(b.redrive("q", "poison").await.unwrap());
    let mut sub = b.subscribe("q", 10).await.unwrap();
    let back = next(&mut sub, 10, 10).await;
    assert_eq!(ids(&back), ["poison"]);
    assert_eq!(
        back[0].delivery_count, 1,
        "a redriven message starts afresh"
    );
    sub.ack(&[back[0].tag]).await.unwrap();
    assert_eq!(b.stats("q").await.unwrap().dead_lettered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_length_refuses_publish_as_full() {
    let v = Vhost::new();
    let config = RabbitConfig {
        max_queue_length: Some(5),
        ..v.config(Topology::Quorum)
    };
    let b = RabbitBroker::connect(config, Duration::from_secs(10))
        .await
        .unwrap();
    publish(&b, "bounded", &["1", "2", "3", "4", "5"]).await;
    assert_eq!(arg(&v.queue("bounded"), "x-max-length").unwrap(), 5);
    let mut outcome = None;
    for i in 0..20 {
        match b.publish("bounded", &[msg(&format!("x{i}"), "{}")]).await {
            Ok(()) => continue,
            Err(e) => {
                outcome = Some(e);
                break;
            }
        }
    }
    match outcome {
        Some(BrokerError::Full { queue, depth }) => {
            assert_eq!(queue, "bounded");
            assert!(depth >= 5, "depth {depth}");
        }
        other => panic!("expected Full, got {other:?}"),
    }
    // Draining makes room again.
    let mut sub = b.subscribe("bounded", 100).await.unwrap();
    let mut drained = 0;
    while let Ok(Ok(batch)) =
        tokio::time::timeout(Duration::from_millis(500), sub.next_batch(100)).await
    {
        drained += batch.len();
        sub.ack(&batch.iter().map(|d| d.tag).collect::<Vec<_>>())
            .await
            .unwrap();
    }
    assert!(drained >= 5);
    publish(&b, "bounded", &["after"]).await;
}

/// Publishes like the earlier Python generator: default exchange, classic
/// durable queue without arguments, delivery mode 2, nothing else, no confirms.
async fn python_style_publish(url: &str, queue: &str, body: &[u8]) {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default().with_delivery_mode(2),
    )
    .await
    .unwrap();
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compat_topology_interoperates_with_python_publisher() {
    let v = Vhost::new();
    let body = br#"{"event_type":"user_login_failure","user_id":"u1"}"#;
    python_style_publish(&v.url(), "audit_events", body).await;

    let b = broker(&v, Topology::Compat).await;
    let mut sub = b.subscribe("audit_events", 10).await.unwrap();
    let got = next(&mut sub, 10, 10).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message.message_id, "", "caller derives an id");
    assert_eq!(&got[0].message.payload[..], body);
    assert!(got[0].message.headers.is_empty());
    sub.ack(&[got[0].tag]).await.unwrap();

    publish(&b, "audit_events", &["ours"]).await;
    let ours = next(&mut sub, 10, 10).await;
    assert_eq!(ids(&ours), ["ours"]);
    sub.ack(&[ours[0].tag]).await.unwrap();
    for name in ["audit_events", "audit_events.dlq"] {
        let q = v.queue(name);
        assert_eq!(q["type"], "classic");
        assert_eq!(q["arguments"], serde_json::json!([]), "{q}");
    }

    // A quorum broker refuses the classic queue instead of misusing it.
    let quorum = broker(&v, Topology::Quorum).await;
    assert!(matches!(
        quorum.publish("audit_events", &[msg("z", "{}")]).await,
        Err(BrokerError::Rejected(_))
    ));
    assert!(matches!(
        quorum.subscribe("audit_events", 1).await,
        Err(BrokerError::Rejected(_))
    ));
    quorum.check().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compat_poison_message_is_dead_lettered_client_side() {
    let v = Vhost::new();
    let b = broker(&v, Topology::Compat).await;
    python_style_publish(&v.url(), "audit_events", b"{\"poison\":true}").await;
    let others: Vec<String> = (0..10).map(|i| format!("ok{i}")).collect();
    publish(
        &b,
        "audit_events",
        &others.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;

    let mut sub = b.subscribe("audit_events", 10).await.unwrap();
    let mut done = HashSet::new();
    let mut poison = 0;
    while done.len() < 10 || poison < 5 {
        let batch = match tokio::time::timeout(Duration::from_secs(3), sub.next_batch(10)).await {
            Ok(b) => b.unwrap(),
            Err(_) => break,
        };
        for d in batch {
            if d.message.message_id.is_empty() {
                poison += 1;
                assert_eq!(d.delivery_count, poison);
                sub.requeue(&[d.tag]).await.unwrap();
            } else {
                done.insert(d.message.message_id.clone());
                sub.ack(&[d.tag]).await.unwrap();
            }
        }
    }
    assert_eq!(done.len(), 10);
    assert_eq!(poison, 5);
    assert!(
        quiet(&mut sub, 500).await,
        "the poison message no longer spins"
    );
    let dead = b.dead_letters("audit_events", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "delivery limit exceeded");
    assert!(dead[0].id.starts_with("fnv-"));
    assert_eq!(dead[0].delivery_count, 5);
    assert_eq!(v.queue("audit_events.dlq")["type"], "classic");
    assert!(b.redrive("audit_events", &dead[0].id).await.unwrap());
    let back = next(&mut sub, 10, 10).await;
    assert_eq!(&back[0].message.payload[..], b"{\"poison\":true}");
    assert_eq!(back[0].delivery_count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_consumers_share_a_queue() {
    let v = Vhost::new();
    let b = broker(&v, Topology::Quorum).await;
    let mut s1 = b.subscribe("q", 7).await.unwrap();
    let mut s2 = b.subscribe("q", 7).await.unwrap();
    let all: Vec<String> = (0..14).map(|i| format!("m{i}")).collect();
    publish(&b, "q", &all.iter().map(String::as_str).collect::<Vec<_>>()).await;
    // Each holds at most its prefetch, so both must get some.
    let a = take(&mut s1, 7, 10).await;
    let c = take(&mut s2, 7, 10).await;
    assert!(quiet(&mut s1, 300).await && quiet(&mut s2, 300).await);
    let ia: BTreeSet<String> = ids(&a).into_iter().collect();
    let ic: BTreeSet<String> = ids(&c).into_iter().collect();
    assert!(ia.is_disjoint(&ic));
    assert_eq!(ia.union(&ic).cloned().collect::<Vec<_>>().len(), 14);
    assert_eq!(b.stats("q").await.unwrap().unacked, 14);
    s1.ack(&a.iter().map(|d| d.tag).collect::<Vec<_>>())
        .await
        .unwrap();
    s2.ack(&c.iter().map(|d| d.tag).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(b.stats("q").await.unwrap().unacked, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_share_the_channel() {
    let v = Vhost::new();
    let b = broker(&v, Topology::Quorum).await;
    let mut tasks = Vec::new();
    for t in 0..16 {
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            for batch in 0..5 {
                let msgs: Vec<_> = (0..20)
                    .map(|i| msg(&format!("t{t}-b{batch}-{i}"), "{}"))
                    .collect();
                b.publish("q", &msgs).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(b.stats("q").await.unwrap().ready, 1600);
    let mut sub = b.subscribe("q", 500).await.unwrap();
    let mut seen = HashSet::new();
    while seen.len() < 1600 {
        let batch = next(&mut sub, 200, 10).await;
        sub.ack(&batch.iter().map(|d| d.tag).collect::<Vec<_>>())
            .await
            .unwrap();
        seen.extend(ids(&batch));
    }
    assert_eq!(b.stats("q").await.unwrap().ready, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_server_closes_connections() {
    let v = Vhost::new();
    let config = RabbitConfig {
        publish_timeout: Duration::from_secs(3),
        ..v.config(Topology::Quorum)
    };
    let b = RabbitBroker::connect(config, Duration::from_secs(10))
        .await
        .unwrap();
    let mut sub = b.subscribe("held", 50).await.unwrap();
    publish(&b, "held", &["held"]).await;
    let held = next(&mut sub, 1, 10).await;

    // Publisher task: a stream of single-message publishes, recording which returned Ok.
    let publisher = {
        let b = b.clone();
        tokio::spawn(async move {
            let mut ok = Vec::new();
            let mut failed = 0;
            // Single messages and pipelined batches, so confirms are in flight
            // when the connection goes.
            for i in 0..200 {
                let n = if i % 2 == 0 { 1 } else { 10 };
                let batch: Vec<String> = (0..n).map(|j| format!("s{i:03}-{j}")).collect();
                let msgs: Vec<_> = batch.iter().map(|id| msg(id, "{}")).collect();
                match b.publish("q", &msgs).await {
                    Ok(()) => ok.extend(batch),
                    Err(BrokerError::Unavailable(_)) => failed += 1,
                    Err(e) => panic!("unexpected {e}"),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (ok, failed)
        })
    };
    // Consumer task: acks everything, records ids.
    let seen = Arc::new(std::sync::Mutex::new(HashSet::<String>::new()));
    let consumer = {
        let seen = Arc::clone(&seen);
        let mut sub = b.subscribe("q", 50).await.unwrap();
        tokio::spawn(async move {
            loop {
                let batch = match sub.next_batch(50).await {
                    Ok(batch) => batch,
                    Err(_) => return,
                };
                seen.lock().unwrap().extend(ids(&batch));
                let _ = sub
                    .ack(&batch.iter().map(|d| d.tag).collect::<Vec<_>>())
                    .await;
            }
        })
    };

    tokio::time::sleep(Duration::from_millis(300)).await;
    v.close_connections();
    // Unavailable right after the server closed us...
    let mut saw_unavailable = false;
    for _ in 0..50 {
        if b.check().await.is_err() {
            saw_unavailable = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(saw_unavailable, "check() reported the outage");
    // ... and back by itself.
    let mut back = false;
    for _ in 0..100 {
        if b.check().await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "reconnected");

    // A tag of the lost channel is a no-op now; its message comes back.
    sub.ack(&[held[0].tag]).await.unwrap();
    let again = next(&mut sub, 10, 10).await;
    assert_eq!(ids(&again), ["held"]);
    assert!(again[0].redelivered);
    assert_eq!(again[0].delivery_count, 2);
    assert_ne!(again[0].tag, held[0].tag);
    sub.ack(&again.iter().map(|d| d.tag).collect::<Vec<_>>())
        .await
        .unwrap();

    let (ok, failed) = publisher.await.unwrap();
    eprintln!("reconnect test: {} publishes ok, {failed} failed", ok.len());
    assert!(
        ok.len() > 900,
        "most publishes succeed ({} ok, {failed} failed)",
        ok.len()
    );
    for _ in 0..100 {
        if ok.iter().all(|id| seen.lock().unwrap().contains(id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = seen.lock().unwrap().clone();
    let missing: Vec<&String> = ok.iter().filter(|id| !seen.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "confirmed but never consumed: {missing:?}"
    );
    consumer.abort();
    b.check().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_while_server_unreachable_and_closed_after_close() {
    let config = RabbitConfig {
        url: "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        publish_timeout: Duration::from_millis(300),
        ..RabbitConfig::default()
    };
    let b = RabbitBroker::start(config).unwrap();
    assert!(matches!(b.check().await, Err(BrokerError::Unavailable(_))));
    assert!(matches!(
        b.publish("q", &[msg("a", "{}")]).await,
        Err(BrokerError::Unavailable(_))
    ));
    assert!(matches!(
        b.publish("", &[msg("a", "{}")]).await,
        Err(BrokerError::Rejected(_))
    ));
    b.close();
    assert!(matches!(b.check().await, Err(BrokerError::Closed)));
    assert!(RabbitBroker::start(RabbitConfig {
        url: "http://nope".into(),
        ..RabbitConfig::default()
    })
    .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_active_consumer_keeps_queue_order_across_replicas_and_fails_over() {
    let v = Vhost::new();
    let mut config = v.config(Topology::Quorum);
    config.single_active_consumer = vec!["ordered".into()];
    let b = RabbitBroker::connect(config, Duration::from_secs(10))
        .await
        .expect("connects");
    let mut first = b.subscribe("ordered", 50).await.unwrap();
    let second = b.subscribe("ordered", 50).await.unwrap();
    let all: Vec<String> = (0..20).map(|i| format!("m{i:02}")).collect();
    publish(
        &b,
        "ordered",
        &all.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    // Exactly one of them is active (whichever RabbitMQ registered first).
    let mut got = Vec::new();
    let (active, mut standby) =
        match tokio::time::timeout(Duration::from_secs(3), first.next_batch(20)).await {
            Ok(Ok(batch)) if !batch.is_empty() => {
                got = batch;
                (first, second)
            }
            _ => (second, first),
        };
    let mut active = active;
    got.extend(take(&mut active, 20 - got.len(), 10).await);
    assert_eq!(
        ids(&got),
        all,
        "the active consumer gets everything, in order"
    );
    assert!(
        quiet(&mut standby, 300).await,
        "the standby receives nothing"
    );
    // The active one goes away without acking: the standby takes over, in order.
    drop(active);
    let again = take(&mut standby, 20, 10).await;
    assert_eq!(
        ids(&again),
        all,
        "the standby takes over from the head of the queue"
    );
    assert!(again.iter().all(|d| d.redelivered));
    standby
        .ack(&again.iter().map(|d| d.tag).collect::<Vec<_>>())
        .await
        .unwrap();
}

/// `stats` inspects through one reused channel (see
/// `Live::inspect_channel`); a failed passive declare
/// (here: the dead-letter queue is gone) closes that channel on the broker's
/// side, and the next `stats` opens another instead of failing for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_recover_after_a_failed_inspection_closed_their_channel() {
    let v = Vhost::new();
    let b = broker(&v, Topology::Quorum).await;
    publish(&b, "q", &["a", "b"]).await;
    assert_stats(&b, "q", (2, 0, 0)).await;

    let conn = Connection::connect(&v.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_delete(
        "q.dlq".into(),
        lapin::options::QueueDeleteOptions::default(),
    )
    .await
    .unwrap();
    let err = b
        .stats("q")
        .await
        .expect_err("the dead-letter queue is gone");
    assert!(err.to_string().contains("q.dlq"), "{err}");

    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    ch.queue_declare(
        "q.dlq".into(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        args,
    )
    .await
    .unwrap();
    assert_stats(&b, "q", (2, 0, 0)).await;
    b.check().await.unwrap();
}
