//! An AuditFlow deployment under test, in one of two modes:
//!
//! - **embedded**: one `auditflow up` on its embedded broker and store;
//! - **split**: `auditflow run ingest|analyze|notify|api`, one process per
//!   role, on a throwaway RabbitMQ node, PostgreSQL cluster and Redis server
//!   of its own. Every role reaches every server through a fault proxy of
//!   its own (link `ROLE->broker`, `ROLE->store`, `ROLE->cache`), so a
//!   scenario can cut or slow exactly one link.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use faultproxy::{FaultHandle, Proxy};
use serde::{Deserialize, Serialize};

use crate::process::{self, Launch, Platform};
use crate::read_api::get_json;
use crate::servers::{PgCluster, RabbitNode, RedisServer};

/// How AuditFlow is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Embedded,
    Split,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Embedded => "embedded",
            Mode::Split => "split",
        })
    }
}

/// The roles of a split deployment, in start order (consumers first, so
/// that ingest's first events find them subscribed).
pub const SPLIT_ROLES: [&str; 4] = ["analyze", "notify", "api", "ingest"];
/// The dependencies a split role reaches through its own proxies.
pub const DEPENDENCIES: [&str; 3] = ["broker", "store", "cache"];

/// What a scenario wants deployed.
#[derive(Debug, Clone)]
pub struct DeploySpec {
    pub mode: Mode,
    /// The configuration file's content (TOML; may be empty).
    pub config: String,
    /// Extra environment for every process.
    pub env: Vec<(String, String)>,
    /// The embedded data directory, when not `<dir>/up` (a small filesystem
    /// for the disk-full scenario).
    pub data_dir: Option<PathBuf>,
}

impl DeploySpec {
    pub fn new(mode: Mode) -> DeploySpec {
        DeploySpec {
            mode,
            config: String::new(),
            env: Vec::new(),
            data_dir: None,
        }
    }
}

/// One proxied link from a role to a dependency.
pub struct Link {
    pub name: String,
    proxy: Proxy,
}

impl Link {
    pub fn faults(&self) -> FaultHandle {
        self.proxy.handle()
    }
}

/// The running deployment; servers, proxies and processes stop when it drops.
pub struct Deployment {
    pub mode: Mode,
    pub dir: PathBuf,
    pub procs: Vec<Platform>,
    pub pg: Option<PgCluster>,
    pub redis: Option<RedisServer>,
    pub rabbit: Option<RabbitNode>,
    pub links: Vec<Link>,
}

fn port_of(url_port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], url_port))
}

impl Deployment {
    /// Starts the servers (split mode), the proxies and every process.
    pub async fn start(
        spec: &DeploySpec,
        binary: &Path,
        dir: &Path,
        http: &reqwest::Client,
    ) -> Result<Deployment, String> {
        let config = dir.join("auditflow.toml");
        std::fs::write(&config, &spec.config).map_err(|e| format!("writing config: {e}"))?;
        let mut deployment = Deployment {
            mode: spec.mode,
            dir: dir.to_path_buf(),
            procs: Vec::new(),
            pg: None,
            redis: None,
            rabbit: None,
            links: Vec::new(),
        };
        let base_args = vec!["--config".to_string(), config.display().to_string()];
        match spec.mode {
            Mode::Embedded => {
                let data_dir = spec.data_dir.clone().unwrap_or_else(|| dir.join("up"));
                let mut launch = Launch::up(binary, &data_dir, &dir.join("up.log"), &base_args);
                launch.env = spec.env.clone();
                deployment
                    .procs
                    .push(process::start(&launch, None, http).await?);
            }
            Mode::Split => {
                // The servers start one after another: RabbitMQ is the slow one.
                let pg = tokio::task::spawn_blocking(PgCluster::start)
                    .await
                    .map_err(|e| e.to_string())??;
                let redis = tokio::task::spawn_blocking(RedisServer::start)
                    .await
                    .map_err(|e| e.to_string())??;
                let rabbit = tokio::task::spawn_blocking(RabbitNode::start)
                    .await
                    .map_err(|e| e.to_string())??;
                let upstream = |dep: &str| match dep {
                    "broker" => port_of(rabbit.port),
                    "store" => port_of(pg.port),
                    _ => port_of(redis.port),
                };
                for role in SPLIT_ROLES {
                    let mut ports = Vec::new();
                    for dep in DEPENDENCIES {
                        let proxy = Proxy::start(port_of(0), upstream(dep))
                            .await
                            .map_err(|e| format!("proxy {role}->{dep}: {e}"))?;
                        ports.push(proxy.listen_addr().port());
                        deployment.links.push(Link {
                            name: format!("{role}->{dep}"),
                            proxy,
                        });
                    }
                    let mut args = base_args.clone();
                    args.extend([
                        "--broker".to_string(),
                        format!("amqp://guest:guest@127.0.0.1:{}/%2f", ports[0]),
                        "--store".to_string(),
                        format!("postgres://postgres@127.0.0.1:{}/postgres", ports[1]),
                        "--cache".to_string(),
                        format!("redis://127.0.0.1:{}", ports[2]),
                    ]);
                    let mut launch = Launch::role(
                        binary,
                        role,
                        &dir.join(role),
                        &dir.join(format!("{role}.log")),
                        &args,
                    );
                    launch.env = spec.env.clone();
                    deployment
                        .procs
                        .push(process::start(&launch, None, http).await?);
                }
                deployment.pg = Some(pg);
                deployment.redis = Some(redis);
                deployment.rabbit = Some(rabbit);
            }
        }
        Ok(deployment)
    }

    /// The process named `name` (`up`, or a split role).
    pub fn proc(&mut self, name: &str) -> Result<&mut Platform, String> {
        self.procs
            .iter_mut()
            .find(|p| p.launch.name == name)
            .ok_or_else(|| format!("no process {name}"))
    }

    fn base_of(&self, split_role: &str) -> String {
        let name = match self.mode {
            Mode::Embedded => "up",
            Mode::Split => split_role,
        };
        self.procs
            .iter()
            .find(|p| p.launch.name == name)
            .map(|p| p.base.clone())
            .unwrap_or_default()
    }

    /// Where events are posted.
    pub fn ingest_url(&self) -> String {
        format!("{}/v1/events", self.base_of("ingest"))
    }

    /// The read API's base URL.
    pub fn api_base(&self) -> String {
        self.base_of("api")
    }

    /// The fault handle of link `name` (`ROLE->DEPENDENCY`).
    pub fn link(&self, name: &str) -> Result<FaultHandle, String> {
        self.links
            .iter()
            .find(|l| l.name == name)
            .map(Link::faults)
            .ok_or_else(|| format!("no link {name} (split mode only)"))
    }

    /// Every link to `dependency`.
    pub fn links_to(&self, dependency: &str) -> Vec<FaultHandle> {
        let suffix = format!("->{dependency}");
        self.links
            .iter()
            .filter(|l| l.name.ends_with(&suffix))
            .map(Link::faults)
            .collect()
    }

    /// The file channel's output of the process that notifies.
    pub fn alerts_file(&self) -> PathBuf {
        let name = match self.mode {
            Mode::Embedded => "up",
            Mode::Split => "notify",
        };
        self.procs
            .iter()
            .find(|p| p.launch.name == name)
            .map(|p| p.launch.data_dir.join("alerts.ndjson"))
            .unwrap_or_default()
    }

    /// Each process's `/readyz` status (`None`: no answer).
    pub async fn health(&self, http: &reqwest::Client) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        for p in &self.procs {
            let status = ready_status(http, &p.base).await;
            out.push((p.launch.name.clone(), status));
        }
        out
    }

    /// SIGTERMs every process; the ones that did not exit 0.
    pub async fn stop(&mut self) -> Vec<String> {
        let mut failures = Vec::new();
        for p in self.procs.iter_mut().rev() {
            if p.has_exited() {
                continue;
            }
            match p.sigterm_and_wait().await {
                Ok(status) if status.success() => {}
                Ok(status) => failures.push(format!("{}: SIGTERM: exited {status}", p.launch.name)),
                Err(e) => failures.push(format!("{}: SIGTERM: {e}", p.launch.name)),
            }
        }
        failures
    }
}

/// `/readyz`'s `status` field at `base` (`None`: no parseable answer).
pub async fn ready_status(http: &reqwest::Client, base: &str) -> Option<String> {
    let response = http
        .get(format!("{base}/readyz"))
        .timeout(std::time::Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let body: serde_json::Value = response.json().await.ok()?;
    body["status"].as_str().map(str::to_string)
}

/// Whether the read API answers at all (used while waiting for a drain).
pub async fn api_answers(http: &reqwest::Client, base: &str) -> bool {
    get_json(http, &format!("{base}/v1/queues")).await.is_ok()
}
