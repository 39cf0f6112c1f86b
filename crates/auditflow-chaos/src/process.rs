//! An AuditFlow process (`auditflow up` or `auditflow run ROLE`) as a child:
//! started until it is ready, killed with SIGKILL, stopped with SIGTERM,
//! started again on the same port and data directory, its memory read.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::servers::{free_port, tail};

/// How long a start may take, from spawn to ready.
const START_DEADLINE: Duration = Duration::from_secs(90);
/// How long SIGTERM may take to end the process.
pub const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// What "started" means for a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// `/readyz` answers 200.
    Ready,
    /// `/readyz` answers 200 and reports this component `up` (analyze and
    /// notify: subscribed to their queue).
    ComponentUp(String),
}

/// Everything needed to start (and start again) one AuditFlow process.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The `auditflow` binary.
    pub binary: PathBuf,
    /// A short name for logs and reports (`up`, `analyze`, ...).
    pub name: String,
    /// The subcommand and its arguments before `--listen`: `["up"]` or
    /// `["run", "analyze"]`.
    pub command: Vec<String>,
    /// Further arguments after `--listen ADDR --data-dir DIR`.
    pub args: Vec<String>,
    pub data_dir: PathBuf,
    /// Stderr is appended here, across restarts.
    pub log: PathBuf,
    pub env: Vec<(String, String)>,
    /// `RUST_LOG` for the child.
    pub rust_log: String,
    pub readiness: Readiness,
}

impl Launch {
    /// `auditflow up` in `data_dir` with `args`.
    pub fn up(binary: &Path, data_dir: &Path, log: &Path, args: &[String]) -> Launch {
        Launch {
            binary: binary.to_path_buf(),
            name: "up".into(),
            command: vec!["up".into()],
            args: args.to_vec(),
            data_dir: data_dir.to_path_buf(),
            log: log.to_path_buf(),
            env: Vec::new(),
            rust_log: "warn".into(),
            readiness: Readiness::Ready,
        }
    }

    /// `auditflow run ROLE` in `data_dir` with `args`; analyze and notify
    /// count as started once subscribed.
    pub fn role(binary: &Path, role: &str, data_dir: &Path, log: &Path, args: &[String]) -> Launch {
        let readiness = if matches!(role, "analyze" | "notify") {
            Readiness::ComponentUp(role.to_string())
        } else {
            Readiness::Ready
        };
        Launch {
            binary: binary.to_path_buf(),
            name: role.to_string(),
            command: vec!["run".into(), role.to_string()],
            args: args.to_vec(),
            data_dir: data_dir.to_path_buf(),
            log: log.to_path_buf(),
            env: Vec::new(),
            rust_log: "warn".into(),
            readiness,
        }
    }
}

/// A running AuditFlow child process.
pub struct Platform {
    pub child: tokio::process::Child,
    pub pid: u32,
    pub port: u16,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub log: PathBuf,
    pub launch: Launch,
}

/// Starts `launch` on a free port (or `port`); returns once it printed its
/// address and is ready per [`Launch::readiness`].
pub async fn start(
    launch: &Launch,
    port: Option<u16>,
    http: &reqwest::Client,
) -> Result<Platform, String> {
    let deadline = Instant::now() + START_DEADLINE;
    let port = port.unwrap_or_else(free_port);
    let mut log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log)
        .map_err(|e| format!("opening {}: {e}", launch.log.display()))?;
    let _ = writeln!(log_file, "=== start on port {port} ===");
    let mut command = tokio::process::Command::new(&launch.binary);
    command
        .args(&launch.command)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(&launch.data_dir)
        .args(&launch.args)
        .env("RUST_LOG", &launch.rust_log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true);
    // The caller's own AUDITFLOW_* settings must not leak into the child.
    for (key, _) in std::env::vars() {
        if key.starts_with("AUDITFLOW_") {
            command.env_remove(key);
        }
    }
    for (key, value) in &launch.env {
        command.env(key, value);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("spawning {}: {e}", launch.binary.display()))?;
    let pid = child.id().ok_or("auditflow exited at once")?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut lines = BufReader::new(stdout).lines();
    let listening = tokio::time::timeout_at(deadline.into(), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("listening on http://") {
                return true;
            }
        }
        false
    })
    .await;
    if listening != Ok(true) {
        let _ = child.start_kill();
        let _ = child.wait().await;
        return Err(format!(
            "{} did not print 'listening on' ({listening:?}); stderr:\n{}",
            launch.name,
            tail(&launch.log, 20)
        ));
    }
    // Keep draining stdout so that the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let base = format!("http://127.0.0.1:{port}");
    loop {
        if let Ok(response) = http.get(format!("{base}/readyz")).send().await {
            let ok = response.status() == reqwest::StatusCode::OK;
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let started = match &launch.readiness {
                Readiness::Ready => ok,
                Readiness::ComponentUp(c) => ok && body["components"][c]["status"] == "up",
            };
            if started {
                return Ok(Platform {
                    child,
                    pid,
                    port,
                    base,
                    log: launch.log.clone(),
                    launch: launch.clone(),
                });
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{} exited ({status}) before ready; stderr:\n{}",
                launch.name,
                tail(&launch.log, 20)
            ));
        }
        if Instant::now() > deadline {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(format!(
                "{}: not ready within {START_DEADLINE:?}; stderr:\n{}",
                launch.name,
                tail(&launch.log, 20)
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Platform {
    /// The last lines of its stderr.
    pub fn log_tail(&self) -> String {
        tail(&self.log, 20)
    }

    /// Whether the process has exited (reaping it if so).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, and reap.
    pub async fn kill9(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM, then waits ([`STOP_DEADLINE`] at most; SIGKILL after that).
    pub async fn sigterm_and_wait(&mut self) -> Result<ExitStatus, String> {
        let pid = libc::pid_t::try_from(self.pid).map_err(|e| e.to_string())?;
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            return Err(format!(
                "kill(SIGTERM): {}",
                std::io::Error::last_os_error()
            ));
        }
        match tokio::time::timeout(STOP_DEADLINE, self.child.wait()).await {
            Ok(status) => status.map_err(|e| e.to_string()),
            Err(_) => {
                self.kill9().await;
                Err(format!("no exit within {STOP_DEADLINE:?} of SIGTERM"))
            }
        }
    }

    /// Starts the same launch again on the same port (the old process must
    /// have exited).
    pub async fn start_again(&mut self, http: &reqwest::Client) -> Result<(), String> {
        let again = start(&self.launch, Some(self.port), http).await?;
        *self = again;
        Ok(())
    }

    /// (current, peak) resident set size in KiB, from `/proc/PID/status`.
    pub fn rss_kib(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }
}
