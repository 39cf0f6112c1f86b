//! Test helpers: unique key prefixes on the shared Redis (cleaned up on
//! drop), throwaway `redis-server` processes (killed on drop), and an
//! in-memory stand-in for the event store as `WindowSource`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use auditflow_core::window::{
    Decision, Member, Observation, WindowError, WindowSource, WindowSpec, WindowState,
};
use auditflow_redis::{RedisConfig, RedisWindowState};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The shared Redis every non-destructive test uses.
pub const SHARED_URL: &str = "redis://127.0.0.1:6379";

/// A key prefix unique to one test; deletes its keys when dropped.
pub struct Prefix {
    pub prefix: String,
    url: String,
}

impl Prefix {
    pub fn new(test: &str) -> Prefix {
        Prefix::on(SHARED_URL, test)
    }

    pub fn on(url: &str, test: &str) -> Prefix {
        Prefix {
            prefix: format!("auditflow-test:{test}:{}:", Uuid::new_v4().simple()),
            url: url.to_string(),
        }
    }

    pub fn config(&self) -> RedisConfig {
        RedisConfig {
            url: self.url.clone(),
            key_prefix: self.prefix.clone(),
            ..RedisConfig::default()
        }
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(1)) else {
            return;
        };
        let keys: Vec<Vec<u8>> =
            redis::Commands::scan_match::<_, Vec<u8>>(&mut conn, format!("{}*", self.prefix))
                .map(|iter| iter.filter_map(Result::ok).collect())
                .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

/// A throwaway `redis-server` on a free port (no persistence), killed when
/// dropped.
pub struct Server {
    pub port: u16,
    child: Option<Child>,
}

impl Server {
    pub fn start() -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Server { port, child: None };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = redis::Client::open(self.url()).unwrap();
        loop {
            if let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200)) {
                if redis::cmd("PING").query::<String>(&mut conn).is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (its data is gone: no persistence).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none());
        self.spawn();
    }

    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stand-in for the event store: the events observed so far (as the store
/// role would have stored them) and whether each raised an alert.
#[derive(Default)]
pub struct VecSource {
    events: Mutex<Vec<(String, String, Member)>>,
    pub queries: Mutex<usize>,
}

impl VecSource {
    /// Stores observed events with their decisions, as the store and
    /// notify roles would.
    pub fn store(&self, observations: &[Observation], decisions: &[Decision]) {
        let mut events = self.events.lock().unwrap();
        for (o, d) in observations.iter().zip(decisions) {
            if events.iter().any(|(_, _, m)| m.event_id == o.event_id) {
                continue;
            }
            events.push((
                o.rule_id.clone(),
                o.group_key.clone(),
                Member {
                    event_id: o.event_id,
                    micros: o.event_time.timestamp_micros(),
                    decision: Decision {
                        fire: d.fire,
                        count: 0,
                    },
                    observed_micros: Utc::now().timestamp_micros(),
                },
            ));
        }
    }
}

#[async_trait]
impl WindowSource for VecSource {
    async fn members(
        &self,
        rule_id: &str,
        group_key: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<Member>, WindowError> {
        *self.queries.lock().unwrap() += 1;
        let mut out: Vec<Member> = self
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, g, m)| {
                r == rule_id && g == group_key && m.micros >= since.timestamp_micros()
            })
            .map(|(_, _, m)| *m)
            .collect();
        out.sort_by_key(|m| m.micros);
        Ok(out)
    }
}

/// A source that knows nothing: what rebuilding would see without an event
/// store.
pub struct EmptySource;

#[async_trait]
impl WindowSource for EmptySource {
    async fn members(
        &self,
        _: &str,
        _: &str,
        _: DateTime<Utc>,
    ) -> Result<Vec<Member>, WindowError> {
        Ok(Vec::new())
    }
}

pub fn state(config: RedisConfig, source: Arc<dyn WindowSource>) -> RedisWindowState {
    RedisWindowState::new(config, source).unwrap()
}

pub const SPEC: WindowSpec = WindowSpec {
    window: Duration::from_secs(60),
    threshold: 3,
    cooldown: Duration::from_secs(60),
};

pub fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

pub fn obs(rule: &str, group: &str, n: u128, secs: i64) -> Observation {
    Observation {
        rule_id: rule.to_string(),
        group_key: group.to_string(),
        event_id: Uuid::from_u128(n + 1),
        event_time: at(secs),
        spec: SPEC,
    }
}

/// Observes like the analyze role: retries `Unavailable` with backoff
/// (here for at most `limit`).
pub async fn observe_retrying(
    state: &RedisWindowState,
    observations: &[Observation],
    limit: Duration,
) -> Vec<Decision> {
    let deadline = Instant::now() + limit;
    let mut delay = Duration::from_millis(20);
    loop {
        match state.observe(observations).await {
            Ok(d) => return d,
            Err(e) => {
                assert!(Instant::now() < deadline, "still failing: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(500));
            }
        }
    }
}
