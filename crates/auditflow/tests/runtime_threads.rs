//! A single-role process runs its tasks on one thread (a current-thread
//! runtime), `auditflow up` on one per core, and `[runtime] worker_threads`
//! overrides both (see `RuntimeConfig::worker_threads_for`). Read from the
//! process's own start-up line, which reports the runtime it runs on.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Starts `auditflow <args>` on embedded backends in a fresh data dir,
/// waits for its "auditflow listening" log line, stops it and returns the
/// line's `runtime` and `worker_threads`.
fn runtime_of(args: &[&str], worker_threads: Option<&str>) -> (String, u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_auditflow"));
    command
        .args(args)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path())
        .env("AUDITFLOW_LOG__FORMAT", "json")
        .env("RUST_LOG", "info")
        .env_remove("AUDITFLOW_RUNTIME__WORKER_THREADS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(n) = worker_threads {
        command.env("AUDITFLOW_RUNTIME__WORKER_THREADS", n);
    }
    let mut child = command.spawn().expect("start auditflow");
    let stderr = child.stderr.take().expect("stderr");
    let mut found = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("read stderr");
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if json["message"] == "auditflow listening" {
            found = Some((
                json["runtime"].as_str().unwrap_or_default().to_string(),
                json["worker_threads"].as_u64().unwrap_or_default(),
            ));
            break;
        }
    }
    // SAFETY: signals our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("wait for auditflow");
    let found = found.unwrap_or_else(|| panic!("no start-up line; exited {status}"));
    assert!(status.success(), "auditflow {args:?} exited {status}");
    found
}

#[test]
fn a_single_role_runs_on_one_thread_and_up_on_every_core() {
    assert_eq!(
        runtime_of(&["run", "api"], None),
        ("CurrentThread".to_string(), 1)
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let expected_up = if cores == 1 {
        "CurrentThread"
    } else {
        "MultiThread"
    };
    assert_eq!(runtime_of(&["up"], None), (expected_up.to_string(), cores));
}

#[test]
fn worker_threads_in_the_config_override_the_default() {
    assert_eq!(
        runtime_of(&["run", "api"], Some("3")),
        ("MultiThread".to_string(), 3)
    );
    assert_eq!(
        runtime_of(&["up"], Some("1")),
        ("CurrentThread".to_string(), 1)
    );
}
