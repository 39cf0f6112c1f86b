//! Transient failures against real servers: terminated backends on the
//! shared server, and a full restart of a THROWAWAY cluster (initdb'd here
//! on a free port, stopped and removed by a guard even if the test fails).

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use auditflow_core::store::Store;
use auditflow_core::window::{Observation, WindowSpec, WindowState};
use auditflow_postgres::{PgConfig, PgStore, PgWindowState};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backends_are_replaced_without_a_restart() {
    let db = TestDb::new();
    let store = db.store().await;
    // Open several pooled connections.
    let batch: Vec<_> = (0..4).map(|n| login(n, 0)).collect();
    let (a, b, c, d) = tokio::join!(
        store.counts(),
        store.counts(),
        store.counts(),
        store.counts()
    );
    for r in [a, b, c, d] {
        r.unwrap();
    }
    store.insert_events(&batch).await.unwrap();
    let raw = db.raw().await;
    let killed: i64 = raw
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = $1",
            &[&db.config().application_name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed >= 1, "the pool had connections to terminate");
    // The next call either fails as transient or the pool already replaced
    // the dead connection; after that everything works.
    match store.insert_events(&[login(10, 1)]).await {
        Ok(n) => assert_eq!(n, 1),
        Err(e) => assert!(e.is_transient(), "{e}"),
    }
    for n in 0..6 {
        store.insert_events(&[login(20 + n, 2)]).await.unwrap();
        store.counts().await.unwrap();
    }
    assert!(store.counts().await.unwrap().events >= 10);
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_within_the_timeouts() {
    let port = free_port();
    let config = PgConfig {
        url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        schema: "af_unreachable".into(),
        connect_timeout: Duration::from_secs(1),
        ..PgConfig::default()
    };
    let started = Instant::now();
    let err = PgStore::connect(config.clone()).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    let store = PgStore::connect(PgConfig {
        migrate_on_start: false,
        ..config
    })
    .await
    .expect("lazy without migrations");
    let err = store.counts().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A throwaway PostgreSQL cluster; stopped and removed on drop.
struct Cluster {
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    fn command(&self, program: &str, args: &[&str]) -> Command {
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", program]).args(args);
            c
        } else {
            let mut c = Command::new(program);
            c.args(args);
            c
        }
    }

    /// Runs a command to completion. Output goes to /dev/null, never to a
    /// pipe: a server started by it would inherit the pipe and keep it open.
    fn run(&self, program: &str, args: &[&str]) {
        let status = self
            .command(program, args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        assert!(
            status.success(),
            "{program} {args:?} failed; server log:\n{log}"
        );
    }

    fn new() -> Cluster {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let dir = std::env::temp_dir().join(format!("af-pg-{}", uuid::Uuid::new_v4().simple()));
        let cluster = Cluster {
            dir,
            port: free_port(),
            as_postgres: root,
        };
        let dir = cluster.dir.to_string_lossy().to_string();
        // initdb refuses to run as root: create and own the directory as postgres.
        cluster.run("mkdir", &["-p", &dir]);
        cluster.run(
            "initdb",
            &[
                "-D",
                &dir,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        cluster.start();
        cluster
    }

    fn pg_ctl(&self, action: &str) {
        let dir = self.dir.to_string_lossy().to_string();
        let opts = format!(
            "-p {} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port
        );
        let log = format!("{dir}/log");
        self.run(
            "pg_ctl",
            &[
                "-D", &dir, "-o", &opts, "-l", &log, "-m", "fast", "-w", action,
            ],
        );
    }

    fn start(&self) {
        self.pg_ctl("start");
    }

    fn restart(&self) {
        self.pg_ctl("restart");
    }

    fn stop(&self) {
        let dir = self.dir.to_string_lossy().to_string();
        self.run("pg_ctl", &["-D", &dir, "-m", "fast", "-w", "stop"]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let dir = self.dir.to_string_lossy().to_string();
        let _ = self
            .command("pg_ctl", &["-D", &dir, "-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const SPEC: WindowSpec = WindowSpec {
    window: Duration::from_secs(60),
    threshold: 3,
    cooldown: Duration::from_secs(60),
};

fn obs(n: u128) -> Observation {
    Observation {
        rule_id: "R".into(),
        group_key: "g".into(),
        event_id: id(n),
        event_time: at(n as i64),
        spec: SPEC,
    }
}

/// Calls `f` until it succeeds (asserting every failure is transient).
async fn until_ok<T, E, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: IsTransient + std::fmt::Display,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                assert!(e.transient(), "{what}: {e}");
                assert!(Instant::now() < deadline, "{what} did not recover: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

trait IsTransient {
    fn transient(&self) -> bool;
}

impl IsTransient for auditflow_core::store::StoreError {
    fn transient(&self) -> bool {
        self.is_transient()
    }
}

impl IsTransient for auditflow_core::window::WindowError {
    fn transient(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_recovers_after_a_server_restart_without_being_recreated() {
    let cluster = Cluster::new();
    let db = TestDb::with_url(cluster.url());
    let config = PgConfig {
        connect_timeout: Duration::from_secs(1),
        statement_timeout: Duration::from_secs(2),
        ..db.config()
    };
    let store = PgStore::connect(config).await.unwrap();
    let windows = PgWindowState::new(store.pool().clone());
    let first: Vec<_> = (0..10).map(|n| login(n, n as i64)).collect();
    assert_eq!(store.insert_events(&first).await.unwrap(), 10);
    windows.observe(&[obs(0), obs(1)]).await.unwrap();

    // Down: every call fails, as transient, and promptly.
    cluster.stop();
    for n in 0..3 {
        let started = Instant::now();
        let err = store.insert_events(&[login(100 + n, 0)]).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(store.counts().await.unwrap_err().is_transient());
        assert!(store.check().await.is_err());
        assert!(windows.observe(&[obs(2)]).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    // Back: the same store object works again.
    cluster.start();
    let second: Vec<_> = (10..20).map(|n| login(n, n as i64)).collect();
    let new = until_ok("insert", || store.insert_events(&second)).await;
    assert_eq!(new, 10);
    for _ in 0..5 {
        assert_eq!(store.counts().await.unwrap().events, 20);
    }
    let batch = [obs(0), obs(1), obs(2)];
    let d = until_ok("observe", || windows.observe(&batch)).await;
    assert_eq!(d.iter().map(|d| d.count).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(d[2].fire);

    // A restart while idle: at most transient failures, then success.
    cluster.restart();
    let third = [login(30, 30)];
    assert_eq!(
        until_ok("insert after restart", || store.insert_events(&third)).await,
        1
    );
    store.check().await.unwrap();
    assert_eq!(store.counts().await.unwrap().events, 21);
}
