//! The file channel: appends each alert as one JSON line, fsync'd, exactly once.
//!
//! Exactly once even across `kill -9`: at open the channel reads the ids of
//! every alert already in the file (and cuts off a torn last line), so an
//! alert redelivered after a crash that came between the append and notify's
//! delivery record is recognised and not written again.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Deserialize;
use uuid::Uuid;

use auditflow_core::Alert;

use super::{Channel, ChannelError, Outcome};

struct State {
    file: File,
    written: HashSet<Uuid>,
}

/// Appends alerts to an NDJSON file.
pub struct FileChannel {
    name: String,
    path: PathBuf,
    state: Arc<Mutex<State>>,
}

#[derive(Deserialize)]
struct IdOnly {
    alert_id: Uuid,
}

/// Reads the ids already in the file and the length of its last complete line.
fn scan(path: &Path) -> std::io::Result<(HashSet<Uuid>, u64)> {
    let mut written = HashSet::new();
    let mut complete_len = 0u64;
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((written, 0)),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break; // end, or a torn line left by a crash mid-append
        }
        complete_len += n as u64;
        if let Ok(row) = serde_json::from_slice::<IdOnly>(&line) {
            written.insert(row.alert_id);
        }
    }
    Ok((written, complete_len))
}

impl FileChannel {
    /// Opens (creating) the file, repairing a torn last line.
    pub fn open(name: String, path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let (written, complete_len) =
            scan(path).with_context(|| format!("reading {}", path.display()))?;
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        if file.metadata()?.len() != complete_len {
            tracing::warn!(path = %path.display(), "cutting a torn last line left by a crash");
            file.set_len(complete_len)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::End(0))?;
        Ok(FileChannel {
            name,
            path: path.to_path_buf(),
            state: Arc::new(Mutex::new(State { file, written })),
        })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn append(
    state: &Mutex<State>,
    alerts: Vec<(Uuid, Vec<u8>)>,
) -> Vec<Result<Outcome, ChannelError>> {
    // A failed write (disk full, I/O error) may well succeed later.
    let fail = |message: String| ChannelError::transient(message, 1);
    let Ok(mut state) = state.lock() else {
        return alerts
            .iter()
            .map(|_| Err(fail("file channel lock poisoned".into())))
            .collect();
    };
    let mut outcomes = Vec::with_capacity(alerts.len());
    let mut buffer = Vec::new();
    let mut fresh = Vec::new();
    for (id, mut line) in alerts {
        if state.written.contains(&id) || fresh.contains(&id) {
            outcomes.push(Some(Outcome::AlreadyDelivered));
        } else {
            line.push(b'\n');
            buffer.extend_from_slice(&line);
            fresh.push(id);
            outcomes.push(None);
        }
    }
    // One write and one fsync for the whole batch.
    let result = state
        .file
        .write_all(&buffer)
        .and_then(|()| state.file.sync_data());
    match result {
        Ok(()) => {
            state.written.extend(fresh);
            outcomes
                .into_iter()
                .map(|o| Ok(o.unwrap_or(Outcome::Delivered)))
                .collect()
        }
        Err(e) => outcomes
            .into_iter()
            .map(|o| match o {
                Some(done) => Ok(done),
                None => Err(fail(format!("appending to the alerts file: {e}"))),
            })
            .collect(),
    }
}

#[async_trait]
impl Channel for FileChannel {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, alerts: &[&Alert]) -> Vec<Result<Outcome, ChannelError>> {
        let lines: Vec<(Uuid, Vec<u8>)> = alerts
            .iter()
            .map(|a| (a.alert_id, a.to_json_bytes()))
            .collect();
        let state = Arc::clone(&self.state);
        let count = lines.len();
        match tokio::task::spawn_blocking(move || append(&state, lines)).await {
            Ok(outcomes) => outcomes,
            Err(e) => (0..count)
                .map(|_| {
                    Err(ChannelError::transient(
                        format!("file channel task failed: {e}"),
                        1,
                    ))
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(n: u128) -> Alert {
        let raw = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/compat/alert-failed-login-burst.json"
        ))
        .expect("compat sample");
        let mut alert = Alert::from_slice(&raw).expect("sample parses");
        alert.alert_id = Uuid::from_u128(n);
        alert
    }

    #[tokio::test]
    async fn writes_once_and_remembers_across_reopen_and_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.ndjson");
        let channel = FileChannel::open("file".into(), &path).unwrap();
        let (a, b) = (alert(1), alert(2));
        let out = channel.deliver(&[&a, &b, &a]).await;
        assert!(matches!(out[0], Ok(Outcome::Delivered)));
        assert!(matches!(out[2], Ok(Outcome::AlreadyDelivered)));
        drop(channel);
        // Simulate a crash mid-append: a torn line at the end.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"alert_id\":\"00000000-0000").unwrap();
        drop(f);
        let channel = FileChannel::open("file".into(), &path).unwrap();
        let c = alert(3);
        let out = channel.deliver(&[&b, &c]).await;
        assert!(matches!(out[0], Ok(Outcome::AlreadyDelivered)));
        assert!(matches!(out[1], Ok(Outcome::Delivered)));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            serde_json::from_str::<Alert>(line).unwrap();
        }
    }
}
