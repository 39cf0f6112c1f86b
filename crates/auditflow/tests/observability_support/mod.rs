//! Helpers of the observability tests: a running `auditflow up`, a scrape
//! of its `/metrics`, and the metric names the shipped operations files use.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A running `auditflow up`, killed on drop.
pub struct Auditflow {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    _child: Child,
}

/// Starts `auditflow up` (with `--demo` when asked) on a port of its own
/// choosing and a data directory in `dir`; returns once `/readyz` is 200.
pub async fn start_auditflow(dir: &Path, demo: bool) -> Result<Auditflow, String> {
    start_auditflow_with(dir, demo, None).await
}

/// [`start_auditflow`] with a configuration file.
pub async fn start_auditflow_with(
    dir: &Path,
    demo: bool,
    config: Option<&Path>,
) -> Result<Auditflow, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = std::fs::File::create(dir.join("auditflow.log")).map_err(|e| e.to_string())?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_auditflow"));
    command
        .arg("up")
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    if demo {
        command.arg("--demo");
    }
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    for (key, _) in std::env::vars() {
        if key.starts_with("AUDITFLOW_") {
            command.env_remove(key);
        }
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("spawning auditflow: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut lines = BufReader::new(stdout).lines();
    let base = tokio::time::timeout_at(deadline.into(), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = line.strip_prefix("listening on ") {
                return Some(url.to_string());
            }
        }
        None
    })
    .await
    .map_err(|_| "no 'listening on' line within 60 s".to_string())?
    .ok_or_else(|| {
        format!(
            "auditflow exited before listening: {}",
            std::fs::read_to_string(dir.join("auditflow.log")).unwrap_or_default()
        )
    })?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return Ok(Auditflow {
                    base,
                    _child: child,
                });
            }
        }
        if Instant::now() > deadline {
            return Err("/readyz not 200 within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sample names a scrape can contain, from its `# TYPE` lines: every
/// registered family, whether or not it has samples yet (a counter `x` is
/// sampled as `x_total`, a histogram as `x_bucket`, `x_count`, `x_sum`).
pub fn exported_names(scrape: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in scrape.lines() {
        let mut parts = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        {
            match kind {
                "counter" => {
                    names.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_count", "_sum"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {
                    names.insert(name.to_string());
                }
            }
        }
    }
    names
}

/// Every `auditflow_*` metric name in a PromQL text (recording-rule names,
/// `auditflow:...`, are not metric names and are returned apart).
pub fn names_in_query(query: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut metrics = BTreeSet::new();
    let mut recorded = BTreeSet::new();
    let bytes = query.as_bytes();
    let mut i = 0;
    while let Some(found) = query[i..].find("auditflow") {
        let start = i + found;
        let preceded = start > 0 && is_name_byte(bytes[start - 1]);
        let mut end = start;
        while end < bytes.len() && (is_name_byte(bytes[end]) || bytes[end] == b':') {
            end += 1;
        }
        let name = &query[start..end];
        if !preceded {
            if name.contains(':') {
                recorded.insert(name.to_string());
            } else if name.starts_with("auditflow_") {
                metrics.insert(name.to_string());
            }
        }
        i = end.max(start + 1);
    }
    (metrics, recorded)
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// A sample's value in a scrape: the first line starting with `selector`
/// (metric name with its labels exactly as AuditFlow renders them).
pub fn sample(scrape: &str, selector: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let rest = line.strip_prefix(selector)?;
        let value = rest.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Polls `probe` every 200 ms until it yields `Some`, or fails after
/// `timeout` with the last state `probe` described.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(Some(value)) => return value,
            Ok(None) => "condition not met".to_string(),
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
