//! Split mode on the real backends, for the tests that start one
//! `auditflow run ROLE` process per role (distributed, traces): each test's
//! own RabbitMQ vhost, PostgreSQL schema and Redis key prefix
//! (`af_test_<tag>_<random>`, removed by a drop guard), and the processes.
//!
//! Set `DISTRIBUTED_KEEP` to keep a failed test's vhost, schema, Redis keys
//! and logs for a post-mortem.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use futures::future::join_all;
use rand::Rng;
use serde_json::Value;

use auditflow_chaos::process::{self, Launch, Platform};

/// RabbitMQ without a vhost (each test adds its own).
pub const BROKER_ROOT: &str = "amqp://guest:guest@127.0.0.1:5672";
/// The local PostgreSQL (each test has its own schema).
pub const STORE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The local Redis (each test has its own key prefix).
pub const CACHE_URL: &str = "redis://127.0.0.1:6379";
/// Set it to keep a failed test's vhost, schema and Redis keys for a post-mortem.
pub const KEEP_VAR: &str = "DISTRIBUTED_KEEP";
// ---------------------------------------------------------------------------
// Isolation: vhost, schema, key prefix, temporary directory

/// Runs a command to completion (synchronously); stdout, or why it failed.
pub fn run_sync(program: &str, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Same, without blocking the runtime.
/// `psql` arguments that run `sql` on the test database (`STORE_URL`),
/// quietly, stopping at the first error.
fn psql_args(sql: &str) -> [&str; 11] {
    [
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-d",
        "test",
        "-qAt",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        sql,
    ]
}

pub async fn run_async(program: &str, args: &[&str]) -> Result<String, String> {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| format!("{program} {args:?}: no answer within 30 s"))?
    .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One test's vhost, schema and key prefix (all named `id`), and its
/// temporary directory; removed on drop (the directory is kept on failure).
pub struct Isolation {
    /// The vhost, schema and key prefix name.
    pub id: String,
    dir: Option<tempfile::TempDir>,
}

impl Isolation {
    pub fn new(tag: &str) -> Isolation {
        let id = format!("af_test_{tag}_{:012x}", rand::rng().random::<u64>() >> 16);
        let dir = tempfile::Builder::new()
            .prefix(&format!("auditflow-{id}-"))
            .tempdir()
            .expect("temp dir");
        // Created first so that the guard exists to remove it on any failure.
        let isolation = Isolation {
            id: id.clone(),
            dir: Some(dir),
        };
        run_sync("rabbitmqctl", &["add_vhost", &id]).expect("rabbitmqctl add_vhost");
        run_sync(
            "rabbitmqctl",
            &["set_permissions", "-p", &id, "guest", ".*", ".*", ".*"],
        )
        .expect("rabbitmqctl set_permissions");
        isolation
    }

    pub fn broker_url(&self) -> String {
        format!("{BROKER_ROOT}/{}", self.id)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.as_ref().expect("dir").path().join(name)
    }

    /// `rabbitmqctl list_queues` of the vhost: name -> row.
    pub async fn queues(&self) -> Result<HashMap<String, Value>, String> {
        let out = run_async(
            "rabbitmqctl",
            &[
                "list_queues",
                "-q",
                "-p",
                &self.id,
                "name",
                "type",
                "messages_ready",
                "messages_unacknowledged",
                "arguments",
                "--formatter",
                "json",
            ],
        )
        .await?;
        let rows: Vec<Value> =
            serde_json::from_str(&out).map_err(|e| format!("list_queues: {e}: {out}"))?;
        Ok(rows
            .into_iter()
            .map(|row| (row["name"].as_str().unwrap_or_default().to_string(), row))
            .collect())
    }

    /// Runs one SQL statement with `psql` in this isolation's schema.
    pub async fn sql(&self, statement: &str) -> Result<String, String> {
        let statement = format!("SET search_path TO \"{}\"; {statement}", self.id);
        run_async("psql", &psql_args(&statement)).await
    }

    pub fn remove_redis_keys(&self) -> Result<usize, String> {
        let pattern = format!("{}:*", self.id);
        let keys = run_sync(
            "redis-cli",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                "6379",
                "--scan",
                "--pattern",
                &pattern,
            ],
        )?;
        let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
        for chunk in keys.chunks(500) {
            let mut args = vec!["-h", "127.0.0.1", "-p", "6379", "DEL"];
            args.extend_from_slice(chunk);
            run_sync("redis-cli", &args)?;
        }
        Ok(keys.len())
    }
}

impl Drop for Isolation {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os(KEEP_VAR).is_some() {
            let dir = self.dir.take().map(|d| d.keep());
            eprintln!(
                "split mode: {KEEP_VAR} set: vhost, schema and Redis keys {} kept, and {dir:?}",
                self.id
            );
            return;
        }
        let mut failures = Vec::new();
        if let Err(e) = run_sync("rabbitmqctl", &["delete_vhost", &self.id]) {
            failures.push(e);
        }
        let drop_schema = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.id);
        if let Err(e) = run_sync("psql", &psql_args(&drop_schema)) {
            failures.push(e);
        }
        if let Err(e) = self.remove_redis_keys() {
            failures.push(e);
        }
        if !failures.is_empty() {
            eprintln!(
                "split mode: cleanup of {} incomplete: {failures:?}",
                self.id
            );
        }
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                eprintln!(
                    "split mode: logs and data of {} kept in {}",
                    self.id,
                    dir.keep().display()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Processes

/// One `auditflow run ROLE` child process (the chaos suite's
/// [`Platform`], with the names the tests use).
pub struct Proc {
    /// The name it was started with (its data directory and log are named after it).
    pub name: String,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its `--data-dir`.
    pub data_dir: PathBuf,
    /// Its stderr log.
    pub log: PathBuf,
    platform: Platform,
}

impl Proc {
    pub fn alerts_file(&self) -> PathBuf {
        self.data_dir.join("alerts.ndjson")
    }

    /// SIGKILL, and reap.
    pub async fn kill9(&mut self) {
        self.platform.kill9().await;
    }

    /// SIGTERM; the exit status within the stop deadline (SIGKILL after it).
    pub async fn sigterm(&mut self) -> Result<ExitStatus, String> {
        self.platform.sigterm_and_wait().await
    }
}

// The chaos suite's helpers, under the names the split-mode tests use
// (each test crate that includes this module uses a part of them).
#[allow(unused_imports)]
pub use auditflow_chaos::{
    load::http_client,
    servers::{free_port, tail as log_tail},
};

/// Starts `auditflow run ROLE` on the isolation's backends; returns once it
/// printed its address, `/readyz` answers 200 and, for analyze and notify,
/// the role reports itself up (it has subscribed).
pub async fn start(
    iso: &Isolation,
    role: &str,
    name: &str,
    extra_env: &[(&str, &str)],
    http: &reqwest::Client,
) -> Proc {
    let mut last = String::new();
    for _ in 0..5 {
        match try_start(iso, role, name, None, extra_env, http).await {
            Ok(proc) => return proc,
            // Another process took the free port first: try another.
            Err(e) if e.contains("binding") => last = e,
            Err(e) => panic!("{name}: {e}"),
        }
    }
    panic!("{name}: {last}")
}

/// [`start`] once, on `port` when given (a restart on the same address).
pub async fn try_start(
    iso: &Isolation,
    role: &str,
    name: &str,
    port: Option<u16>,
    extra_env: &[(&str, &str)],
    http: &reqwest::Client,
) -> Result<Proc, String> {
    let data_dir = iso.path(name);
    let log = iso.path(&format!("{name}.stderr.log"));
    let args = [
        "--broker".to_string(),
        iso.broker_url(),
        "--store".to_string(),
        STORE_URL.to_string(),
        "--cache".to_string(),
        CACHE_URL.to_string(),
    ];
    let mut launch = Launch::role(
        Path::new(env!("CARGO_BIN_EXE_auditflow")),
        role,
        &data_dir,
        &log,
        &args,
    );
    launch.rust_log = "warn,auditflow=info".into();
    launch.env = vec![
        ("AUDITFLOW_LOG__FORMAT".into(), "human".into()),
        ("AUDITFLOW_POSTGRES__SCHEMA".into(), iso.id.clone()),
        ("AUDITFLOW_REDIS__KEY_PREFIX".into(), format!("{}:", iso.id)),
    ];
    launch.env.extend(
        extra_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let platform = process::start(&launch, port, http).await?;
    Ok(Proc {
        name: name.to_string(),
        base: platform.base.clone(),
        data_dir,
        log,
        platform,
    })
}

/// SIGTERMs every process at once; the ones that did not exit 0.
pub async fn stop_all(procs: &mut [Proc]) -> Vec<String> {
    let stops = procs.iter_mut().map(|p| async move {
        let result = p.sigterm().await;
        (p.name.clone(), p.log.clone(), result)
    });
    join_all(stops)
        .await
        .into_iter()
        .filter_map(|(name, log, result)| match result {
            Ok(status) if status.success() => None,
            Ok(status) => Some(format!(
                "{name}: SIGTERM: exited {status}; stderr:\n{}",
                log_tail(&log, 10)
            )),
            Err(e) => Some(format!("{name}: SIGTERM: {e}")),
        })
        .collect()
}
