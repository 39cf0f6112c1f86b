//! Test helpers: a throw-away vhost per test on the local RabbitMQ.
#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use auditflow_core::broker::{Broker, Delivery, Message, Subscription};
use auditflow_rabbitmq::{RabbitBroker, RabbitConfig, ReconnectConfig, Topology};
use bytes::Bytes;

/// Runs `rabbitmqctl` and returns its stdout, panicking on failure.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A vhost deleted on drop.
pub struct Vhost {
    pub name: String,
}

impl Vhost {
    pub fn new() -> Vhost {
        let name = format!("auditflow-test-{:016x}", fastrand::u64(..));
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        Vhost { name }
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }

    pub fn config(&self, topology: Topology) -> RabbitConfig {
        RabbitConfig {
            url: self.url(),
            topology,
            reconnect: ReconnectConfig {
                initial: Duration::from_millis(50),
                max: Duration::from_millis(500),
                jitter: 0.2,
            },
            ..RabbitConfig::default()
        }
    }

    /// `name type messages arguments` of every queue, as JSON values.
    pub fn queues(&self) -> Vec<serde_json::Value> {
        let out = rabbitmqctl(&[
            "list_queues",
            "-p",
            &self.name,
            "name",
            "type",
            "messages",
            "arguments",
            "--formatter",
            "json",
        ]);
        serde_json::from_str(&out).expect("json from rabbitmqctl")
    }

    pub fn queue(&self, name: &str) -> serde_json::Value {
        self.queues()
            .into_iter()
            .find(|q| q["name"] == name)
            .unwrap_or_else(|| panic!("queue {name} not found in {:?}", self.queues()))
    }

    /// Closes every client connection to this vhost.
    pub fn close_connections(&self) {
        rabbitmqctl(&["close_all_connections", "-p", &self.name, "test"]);
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}

pub async fn broker(vhost: &Vhost, topology: Topology) -> RabbitBroker {
    RabbitBroker::connect(vhost.config(topology), Duration::from_secs(10))
        .await
        .expect("connects")
}

pub fn msg(id: &str, body: &str) -> Message {
    let mut headers = auditflow_core::broker::Headers::new();
    headers.insert("x-correlation-id".into(), format!("corr-{id}"));
    Message {
        message_id: id.to_string(),
        payload: Bytes::from(body.to_string()),
        headers,
    }
}

/// Next batch, or panic after `secs`.
pub async fn next(sub: &mut Box<dyn Subscription>, max: usize, secs: u64) -> Vec<Delivery> {
    tokio::time::timeout(Duration::from_secs(secs), sub.next_batch(max))
        .await
        .expect("a delivery in time")
        .expect("next_batch works")
}

/// True when no delivery arrives within `ms`.
pub async fn quiet(sub: &mut Box<dyn Subscription>, ms: u64) -> bool {
    tokio::time::timeout(Duration::from_millis(ms), sub.next_batch(10))
        .await
        .is_err()
}

/// Collects `n` deliveries (acking none).
pub async fn take(sub: &mut Box<dyn Subscription>, n: usize, secs: u64) -> Vec<Delivery> {
    let mut out = Vec::new();
    while out.len() < n {
        out.extend(next(sub, n - out.len(), secs).await);
    }
    out
}

/// A new subscription to `queue` and the `n` deliveries it takes (unacked),
/// with their ids sorted: what comes back after a drop, in any order.
pub async fn resubscribe(
    b: &RabbitBroker,
    queue: &str,
    n: usize,
) -> (Box<dyn Subscription>, Vec<Delivery>, Vec<String>) {
    let mut sub = b.subscribe(queue, 10).await.expect("subscribes");
    let got = take(&mut sub, n, 10).await;
    let mut sorted = ids(&got);
    sorted.sort();
    (sub, got, sorted)
}

pub fn ids(d: &[Delivery]) -> Vec<String> {
    d.iter().map(|d| d.message.message_id.clone()).collect()
}

pub async fn publish(b: &RabbitBroker, q: &str, ids: &[&str]) {
    let msgs: Vec<Message> = ids
        .iter()
        .map(|id| msg(id, &format!("{{\"id\":\"{id}\"}}")))
        .collect();
    b.publish(q, &msgs).await.expect("publish");
}
