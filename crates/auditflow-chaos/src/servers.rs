//! Throwaway backend servers for the chaos suite and the recovery tests
//! (never the shared ones at 5432/6379/5672).
//!
//! - [`PgCluster`]: `initdb` + `pg_ctl` (as `postgres` when run as root) on a
//!   free port, removed on drop.
//! - [`RedisServer`]: `redis-server --save "" --appendonly no`, killed on drop.
//! - [`RabbitNode`]: a second RabbitMQ node `af_test_<n>@localhost` with its
//!   own mnesia/log directories and ports, run as the `rabbitmq` user (so it
//!   shares the node cookie with `rabbitmqctl`), stopped on drop.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The last `lines` lines of a log file (empty if it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs a command with output to /dev/null (never a pipe: a server it starts
/// would inherit the pipe); `Err` names the command and its exit status.
fn run_quiet(mut command: Command, what: &str) -> Result<(), String> {
    let status = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed: {status}"))
    }
}

// ---------------------------------------------------------------------------
// PostgreSQL

/// A throwaway PostgreSQL cluster; stopped and removed on drop.
pub struct PgCluster {
    dir: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

impl PgCluster {
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

    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        run_quiet(self.command(program, args), &format!("{program} {args:?}"))
            .map_err(|e| format!("{e}; server log:\n{}", tail(&self.dir.join("log"), 20)))
    }

    /// initdb + start on a free port.
    pub fn start() -> Result<PgCluster, String> {
        let cluster = PgCluster {
            dir: std::env::temp_dir()
                .join(format!("af-recovery-pg-{}", uuid::Uuid::new_v4().simple())),
            port: free_port(),
            as_postgres: is_root(),
        };
        let dir = cluster.dir.to_string_lossy().to_string();
        // initdb refuses to run as root: create and own the directory as postgres.
        cluster.run("mkdir", &["-p", &dir])?;
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
        )?;
        cluster.pg_ctl("start")?;
        Ok(cluster)
    }

    fn pg_ctl(&self, action: &str) -> Result<(), String> {
        let dir = self.dir.to_string_lossy().to_string();
        let opts = format!(
            "-p {} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port
        );
        let log = format!("{dir}/log");
        self.run(
            "pg_ctl",
            &[
                "-D", &dir, "-o", &opts, "-l", &log, "-m", "fast", "-w", "-t", "60", action,
            ],
        )
    }

    /// `pg_ctl restart -m fast -w` (blocking).
    pub fn restart(&self) -> Result<(), String> {
        self.pg_ctl("restart")
    }

    /// `pg_ctl stop -m fast -w` (blocking): the server is gone until
    /// [`PgCluster::start_again`].
    pub fn stop(&self) -> Result<(), String> {
        self.pg_ctl("stop")
    }

    /// `pg_ctl start -w` on the same port and data directory.
    pub fn start_again(&self) -> Result<(), String> {
        self.pg_ctl("start")
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let dir = self.dir.to_string_lossy().to_string();
        let _ = run_quiet(
            self.command("pg_ctl", &["-D", &dir, "-m", "immediate", "-w", "stop"]),
            "pg_ctl stop",
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------
// Redis

/// A throwaway `redis-server` without persistence; killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl RedisServer {
    pub fn start() -> Result<RedisServer, String> {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
        };
        server.start_again()?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts a fresh (empty) server on the same port; waits for PING.
    pub fn start_again(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "redis-server already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawning redis-server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if redis_ping(self.port) {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Err(format!(
                    "redis-server on port {} exited at once ({status}); port still in use?",
                    self.port
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "redis-server on port {} not answering PING within 10 s",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: its data is gone (no persistence).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal RESP PING.
fn redis_ping(port: u16) -> bool {
    use std::io::Read as _;
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

// ---------------------------------------------------------------------------
// RabbitMQ

/// A second RabbitMQ node of its own (name, ports, mnesia and log
/// directories); stopped (and its VM killed if need be) on drop.
pub struct RabbitNode {
    pub node: String,
    pub port: u16,
    dist_port: u16,
    dir: PathBuf,
    runner: Option<std::process::Child>,
    starts: usize,
}

const RABBIT_START_DEADLINE: Duration = Duration::from_secs(120);

impl RabbitNode {
    /// Creates the directories and starts the node; returns once
    /// `rabbitmqctl await_startup` succeeds.
    pub fn start() -> Result<RabbitNode, String> {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let dir = std::env::temp_dir().join(format!("af-recovery-rmq-{id}"));
        for sub in ["mnesia", "log"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| format!("mkdir: {e}"))?;
        }
        std::fs::write(dir.join("enabled_plugins"), "[].\n").map_err(|e| e.to_string())?;
        let port = free_port();
        let mut dist_port = free_port();
        while dist_port == port {
            dist_port = free_port();
        }
        // Our own config file: the system one pins the listener to 5672.
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.default = 127.0.0.1:{port}\nloopback_users.guest = true\n"),
        )
        .map_err(|e| e.to_string())?;
        if is_root() {
            run_quiet(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "rabbitmq:rabbitmq"]).arg(&dir);
                    c
                },
                "chown -R rabbitmq",
            )?;
        }
        let mut node = RabbitNode {
            node: format!("af_test_{id}@localhost"),
            port,
            dist_port,
            dir,
            runner: None,
            starts: 0,
        };
        node.start_again()?;
        Ok(node)
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Starts the (stopped) node again on the same directories and ports.
    pub fn start_again(&mut self) -> Result<Duration, String> {
        let started = Instant::now();
        self.starts += 1;
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.out"))
            .map_err(|e| e.to_string())?;
        let d = |sub: &str| self.dir.join(sub).to_string_lossy().to_string();
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "rabbitmq", "--", "env"]);
            c
        } else {
            Command::new("env")
        };
        command
            .arg("HOME=/var/lib/rabbitmq")
            .arg(format!("RABBITMQ_NODENAME={}", self.node))
            .arg(format!("RABBITMQ_NODE_PORT={}", self.port))
            .arg(format!("RABBITMQ_DIST_PORT={}", self.dist_port))
            .arg(format!("RABBITMQ_MNESIA_BASE={}", d("mnesia")))
            .arg(format!("RABBITMQ_LOG_BASE={}", d("log")))
            .arg(format!(
                "RABBITMQ_ENABLED_PLUGINS_FILE={}",
                d("enabled_plugins")
            ))
            .arg(format!("RABBITMQ_CONFIG_FILE={}", d("rabbitmq.conf")))
            .arg(format!("RABBITMQ_PID_FILE={}", d("node.pid")))
            .arg("/usr/lib/rabbitmq/bin/rabbitmq-server")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(out));
        let runner = command
            .spawn()
            .map_err(|e| format!("spawning rabbitmq-server: {e}"))?;
        self.runner = Some(runner);
        // await_startup fails at once while the node is not registered yet.
        let deadline = started + RABBIT_START_DEADLINE;
        loop {
            if self.ctl(&["await_startup", "--timeout", "30"]).is_ok() {
                return Ok(started.elapsed());
            }
            if let Some(Ok(Some(status))) = self.runner.as_mut().map(|c| c.try_wait()) {
                self.runner = None;
                return Err(format!(
                    "rabbitmq node {} (start #{}) exited ({status}) before startup; output:\n{}",
                    self.node,
                    self.starts,
                    tail(&self.dir.join("server.out"), 25)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "rabbitmq node {} (start #{}) not started within {RABBIT_START_DEADLINE:?}; output:\n{}",
                    self.node,
                    self.starts,
                    tail(&self.dir.join("server.out"), 25)
                ));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn ctl(&self, args: &[&str]) -> Result<(), String> {
        let mut c = Command::new("rabbitmqctl");
        c.args(["-n", &self.node]).args(args);
        run_quiet(c, &format!("rabbitmqctl -n {} {args:?}", self.node))
    }

    /// `rabbitmqctl stop`, then waits for the runner to exit.
    pub fn stop(&mut self) -> Result<(), String> {
        let stopped = self.ctl(&["stop"]);
        if let Some(mut runner) = self.runner.take() {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match runner.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        self.kill_vm();
                        let _ = runner.kill();
                        let _ = runner.wait();
                        return Err(format!("node {} still running 30 s after stop", self.node));
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        }
        stopped
    }

    /// SIGKILLs the node's VM (by the pid it wrote), if it still runs.
    fn kill_vm(&self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("node.pid")) {
            if let Ok(pid) = pid.trim().parse::<libc::pid_t>() {
                // SAFETY: kill(2) on the pid our own node wrote.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        if self.runner.is_some() {
            let _ = self.stop();
        }
        self.kill_vm();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
