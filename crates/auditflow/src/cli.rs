//! Command-line interface.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::platform::{self, Plan};
use crate::roles::Role;

/// AuditFlow: a fault-tolerant audit-event platform.
#[derive(Debug, Parser)]
#[command(name = "auditflow", version, about)]
pub struct Cli {
    /// Configuration file (TOML). `AUDITFLOW_*` variables and flags override it.
    #[arg(long, short, global = true, env = "AUDITFLOW_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every role in one process on the embedded backends.
    Up {
        /// Also run a demo event source, so the first screen is alive.
        #[arg(long)]
        demo: bool,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Run one role in this process.
    Run {
        /// The role.
        role: Role,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Send generated events to an ingest endpoint and report.
    Generate(auditflow_generate::GenerateOptions),
    /// Check or try out a rules file.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Show configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Apply pending PostgreSQL migrations (`backends.store`) and exit.
    Migrate {
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Inspect and re-drive dead letters of a running AuditFlow.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

impl Cli {
    /// The configuration of a serving command (`up`, `run`), read before
    /// the async runtime is built, since the runtime's size is in it; pass
    /// it on to [`run`]. `None` for the other commands.
    pub fn serving_config(&self) -> anyhow::Result<Option<Config>> {
        match &self.command {
            Command::Up { serve, .. } | Command::Run { serve, .. } => {
                Ok(Some(load_config(self.config.as_deref(), serve)?))
            }
            _ => Ok(None),
        }
    }

    /// How many threads the async runtime gives this command's tasks (see
    /// [`crate::config::RuntimeConfig::worker_threads_for`]), from its
    /// [`Cli::serving_config`]; `None` (the runtime's own default) for the
    /// commands that do not serve.
    pub fn worker_threads(&self, config: Option<&Config>) -> Option<usize> {
        let single_role = matches!(self.command, Command::Run { .. });
        config.map(|c| c.runtime.worker_threads_for(single_role))
    }
}

/// Flags shared by the serving commands; each overrides its config key.
#[derive(Debug, Clone, Args, Default)]
pub struct ServeArgs {
    /// Listen address (`http.listen`).
    #[arg(long)]
    pub listen: Option<String>,
    /// Data directory of the embedded backends (`data_dir`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Rules file (`analyze.rules_file`).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Broker: `embedded` or an `amqp://` URL (`backends.broker`).
    #[arg(long)]
    pub broker: Option<String>,
    /// Store: `embedded` or a `postgres://` URL (`backends.store`).
    #[arg(long)]
    pub store: Option<String>,
    /// Window state of threshold rules: `embedded`, `store`, or a `redis://`
    /// URL (`backends.windows`).
    #[arg(long)]
    pub cache: Option<String>,
}

impl ServeArgs {
    fn overrides(&self) -> toml::Table {
        let mut table = toml::Table::new();
        if let Some(listen) = &self.listen {
            let mut http = toml::Table::new();
            http.insert("listen".into(), listen.clone().into());
            table.insert("http".into(), http.into());
        }
        if let Some(dir) = &self.data_dir {
            table.insert("data_dir".into(), dir.display().to_string().into());
        }
        let mut backends = toml::Table::new();
        for (key, value) in [
            ("broker", &self.broker),
            ("store", &self.store),
            ("windows", &self.cache),
        ] {
            if let Some(value) = value {
                backends.insert(key.into(), value.clone().into());
            }
        }
        if !backends.is_empty() {
            table.insert("backends".into(), backends.into());
        }
        if let Some(rules) = &self.rules {
            let mut analyze = toml::Table::new();
            analyze.insert("rules_file".into(), rules.display().to_string().into());
            table.insert("analyze".into(), analyze.into());
        }
        table
    }
}

/// `auditflow rules ...`.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate a rules file.
    Check {
        /// The rules file.
        file: PathBuf,
    },
    /// Run rules offline over NDJSON events; prints the alerts that would fire.
    Test {
        /// The rules file (built-in rules when omitted).
        #[arg(long)]
        rules: Option<PathBuf>,
        /// NDJSON file of events, evaluated in file order.
        #[arg(long)]
        events: PathBuf,
    },
}

/// `auditflow config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (file + environment), secrets masked.
    Print,
}

/// `auditflow dlq ...` (talks to a running AuditFlow's API).
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters with their reasons.
    List {
        #[command(flatten)]
        target: ApiTarget,
        /// Queue whose dead letters to list (all configured queues when omitted).
        #[arg(long)]
        queue: Option<String>,
        /// Most records to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Move a dead letter back onto its queue.
    Redrive {
        #[command(flatten)]
        target: ApiTarget,
        /// The queue.
        #[arg(long, default_value = "audit_events")]
        queue: String,
        /// The dead letter's id.
        id: String,
    },
}

/// Where a running AuditFlow's API is.
#[derive(Debug, Clone, Args)]
pub struct ApiTarget {
    /// Base URL of the API.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "AUDITFLOW_URL")]
    pub url: String,
    /// Bearer token.
    #[arg(long, env = "AUDITFLOW_TOKEN")]
    pub token: Option<String>,
}

fn load_config(file: Option<&Path>, serve: &ServeArgs) -> anyhow::Result<Config> {
    Ok(Config::load(file, &serve.overrides())?)
}

/// Sets up logging and trace export, runs `plan` until it stops, then
/// flushes the spans still queued (on SIGTERM too: the platform drains and
/// returns first), whether the plan stopped cleanly or not.
async fn serve_plan(config: Config, plan: Plan) -> anyhow::Result<()> {
    let exporter =
        crate::traces::Exporter::from_config(&config.telemetry, &plan.roles().join(","))?;
    crate::telemetry::init(&config.log, exporter.as_ref());
    if let Some(exporter) = &exporter {
        tracing::info!(url = exporter.url(), "exporting traces");
    }
    let result = platform::run(config, plan).await;
    if let Some(exporter) = exporter {
        exporter.shutdown().await;
    }
    result
}

/// Runs a parsed command line; `config` is its [`Cli::serving_config`]
/// (read here when `None`).
pub async fn run(cli: Cli, config: Option<Config>) -> anyhow::Result<ExitCode> {
    let file = cli.config.as_deref();
    match cli.command {
        Command::Up { demo, serve } => {
            let config = config.map_or_else(|| load_config(file, &serve), Ok)?;
            let plan = Plan {
                demo,
                ..Plan::everything()
            };
            serve_plan(config, plan).await?;
        }
        Command::Run { role, serve } => {
            let config = config.map_or_else(|| load_config(file, &serve), Ok)?;
            let plan = match role {
                Role::Ingest => Plan {
                    ingest: true,
                    ..Plan::default()
                },
                Role::Analyze => Plan {
                    analyze: true,
                    ..Plan::default()
                },
                Role::Notify => Plan {
                    notify: true,
                    ..Plan::default()
                },
                Role::Api => Plan {
                    read_api: true,
                    ..Plan::default()
                },
                Role::Dashboard => Plan {
                    dashboard: true,
                    ..Plan::default()
                },
                Role::Monitor => Plan {
                    monitor: true,
                    ..Plan::default()
                },
            };
            serve_plan(config, plan).await?;
        }
        Command::Generate(options) => {
            let stop = tokio_util::sync::CancellationToken::new();
            let on_signal = stop.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    on_signal.cancel();
                }
            });
            let json = options.json;
            let report = auditflow_generate::run(options, stop).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
        Command::Rules { command } => return rules(command).await,
        Command::Migrate { serve } => {
            let config = load_config(file, &serve)?;
            anyhow::ensure!(
                config.backends.store != "embedded",
                "the embedded store migrates itself at open; set --store postgres://..."
            );
            let mut pg = config.postgres.clone();
            pg.url = config.backends.store.clone();
            pg.migrate_on_start = false;
            let store = auditflow_postgres::PgStore::connect(pg).await?;
            let applied = store.migrate().await?;
            println!("migrations applied: {applied:?}");
        }
        Command::Config {
            command: ConfigCommand::Print,
        } => {
            let config = load_config(file, &ServeArgs::default())?;
            print!("{}", config.to_toml_masked());
        }
        Command::Dlq { command } => dlq(command).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn rules(command: RulesCommand) -> anyhow::Result<ExitCode> {
    match command {
        RulesCommand::Check { file } => match auditflow_rules::RuleSet::load(&file) {
            Ok(rules) => {
                println!("{}: {} rules OK", file.display(), rules.rules().len());
                for rule in rules.rules() {
                    println!("  {}  {}", rule.id(), rule.name());
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                Ok(ExitCode::FAILURE)
            }
        },
        RulesCommand::Test { rules, events } => {
            let ruleset = match &rules {
                Some(path) => auditflow_rules::RuleSet::load(path)?,
                None => auditflow_rules::RuleSet::builtin(),
            };
            let file = std::fs::File::open(&events)
                .with_context(|| format!("opening {}", events.display()))?;
            let ctx = auditflow_rules::AlertContext {
                environment: "TEST".into(),
                raised_at: chrono::Utc::now(),
            };
            let report =
                auditflow_rules::test_events(&ruleset, std::io::BufReader::new(file), &ctx).await;
            {
                use std::io::Write as _;
                let mut out = std::io::stdout().lock();
                for alert in &report.alerts {
                    let written = serde_json::to_writer(&mut out, alert)
                        .map_err(std::io::Error::from)
                        .and_then(|()| out.write_all(b"\n"));
                    match written {
                        Ok(()) => {}
                        // The reader (e.g. `head`) has had enough.
                        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                            return Ok(ExitCode::SUCCESS)
                        }
                        Err(e) => return Err(anyhow::Error::new(e).context("writing alerts")),
                    }
                }
            }
            for error in &report.errors {
                eprintln!("{}: {error}", events.display());
            }
            eprintln!(
                "{} events, {} alerts, {} invalid lines",
                report.events,
                report.alerts.len(),
                report.errors.len()
            );
            Ok(if report.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

async fn dlq(command: DlqCommand) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    let with_token = |req: reqwest::RequestBuilder, target: &ApiTarget| match &target.token {
        Some(token) => req.bearer_auth(token),
        None => req,
    };
    match command {
        DlqCommand::List {
            target,
            queue,
            limit,
        } => {
            let mut url = format!(
                "{}/v1/dead-letters?limit={limit}",
                target.url.trim_end_matches('/')
            );
            if let Some(queue) = queue {
                url.push_str(&format!("&queue={queue}"));
            }
            let response = with_token(client.get(&url), &target)
                .send()
                .await
                .with_context(|| format!("GET {url}"))?;
            let status = response.status();
            let body: serde_json::Value = response.json().await.context("reading the answer")?;
            anyhow::ensure!(status.is_success(), "GET {url} answered {status}: {body}");
            println!("{}", serde_json::to_string_pretty(&body)?);
        }
        DlqCommand::Redrive { target, queue, id } => {
            let url = format!(
                "{}/v1/dead-letters/{queue}/{id}/redrive",
                target.url.trim_end_matches('/')
            );
            let response = with_token(client.post(&url), &target)
                .send()
                .await
                .with_context(|| format!("POST {url}"))?;
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            anyhow::ensure!(status.is_success(), "POST {url} answered {status}: {body}");
            println!("{body}");
        }
    }
    Ok(())
}
