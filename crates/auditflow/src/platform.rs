//! Starting roles on backends, and stopping them gracefully.
//!
//! `auditflow up` starts every role in one process on the embedded backends;
//! `auditflow run ROLE` starts one. On SIGTERM or SIGINT the process stops
//! taking new work (ingest answers 503, readiness fails), lets in-flight
//! requests and batches finish and ack, and exits within the grace period.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use auditflow_core::{Broker, Store, WindowState};
use auditflow_rules::RuleSet;

use crate::channels;
use crate::config::Config;
use crate::context::Context;
use crate::health::Health;
use crate::metrics::{Metrics, QueueLabels};
use crate::resilient::{Policies, ResilientBroker, ResilientStore, ResilientWindows};
use crate::roles::{analyze, notify};
use crate::server::{self, Surface};

/// What to start in this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plan {
    /// Serve `POST /v1/events`.
    pub ingest: bool,
    /// Serve the read API.
    pub read_api: bool,
    /// Run the analyze loop.
    pub analyze: bool,
    /// Run the notify loop.
    pub notify: bool,
    /// Run the demo event source against our own ingest.
    pub demo: bool,
    /// Serve the web dashboard (`/dashboard`).
    pub dashboard: bool,
    /// Run the monitor (system alerts; receives heartbeats).
    pub monitor: bool,
}

impl Plan {
    /// Every role (what `auditflow up` runs).
    pub fn everything() -> Plan {
        Plan {
            ingest: true,
            read_api: true,
            analyze: true,
            notify: true,
            demo: false,
            dashboard: true,
            monitor: true,
        }
    }

    /// The roles planned, as heartbeats name them.
    pub fn roles(&self) -> Vec<&'static str> {
        [
            (self.ingest, "ingest"),
            (self.analyze, "analyze"),
            (self.notify, "notify"),
            (self.read_api, "api"),
            (self.dashboard, "dashboard"),
            (self.monitor, "monitor"),
        ]
        .into_iter()
        .filter_map(|(planned, role)| planned.then_some(role))
        .collect()
    }
}

/// Loads the rules named by the config, or the built-in ones.
pub fn load_rules(config: &Config) -> anyhow::Result<RuleSet> {
    match &config.analyze.rules_file {
        Some(path) => {
            RuleSet::load(path).with_context(|| format!("loading rules from {}", path.display()))
        }
        None => Ok(RuleSet::builtin()),
    }
}

/// Wraps backends in their resilience policies and builds the roles' context.
pub fn build_context(
    config: Arc<Config>,
    broker: Arc<dyn Broker>,
    store: Arc<dyn Store>,
    windows: Arc<dyn WindowState>,
    shutdown: CancellationToken,
) -> anyhow::Result<(Context, Policies)> {
    let metrics = Metrics::new();
    let policies = Policies::build(&config.resilience, Arc::clone(&metrics.resilience))?;
    let policy = |name: &str| {
        policies
            .get(name)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no policy for {name}"))
    };
    let ctx_config = Arc::clone(&config);
    let ctx = Context {
        broker: Arc::new(ResilientBroker::new(broker, policy("broker")?)),
        store: Arc::new(
            ResilientStore::new(store, policy("store")?)
                .with_durations(metrics.store_query_duration.clone()),
        ),
        windows: Arc::new(ResilientWindows::new(windows, policy("windows")?)),
        config,
        metrics,
        health: Arc::new(Health::default()),
        shutdown,
        ingest_limiter: config_limiter(&ctx_config),
        ingest_in_flight: Arc::new(tokio::sync::Semaphore::new(
            ctx_config.http.max_bytes_in_flight,
        )),
        slo: Arc::new(crate::slo::SloBoard::new(
            &ctx_config.slo,
            Arc::new(resilience::SystemClock),
        )?),
    };
    Ok((ctx, policies))
}

fn config_limiter(config: &Config) -> Option<Arc<resilience::KeyedRateLimiter<String>>> {
    let limit = &config.http.rate_limit;
    limit.enabled.then(|| {
        Arc::new(resilience::KeyedRateLimiter::new(
            limit,
            Arc::new(resilience::SystemClock),
        ))
    })
}

// Each role runs inside a `role` span that its log lines take their `role`
// field from. The spans are ERROR level so that they stay enabled whatever
// the log level (a span below the filter's level would not exist).

/// Runs `plan` until a shutdown signal (or a role fails), then drains.
pub async fn run(config: Config, plan: Plan) -> anyhow::Result<()> {
    crate::telemetry::set_process_role(&plan.roles().join(","));
    let config = Arc::new(config);
    let rules = Arc::new(load_rules(&config)?);
    let backends = crate::backends::open(&config, &rules).await?;
    let shutdown = CancellationToken::new();
    let (ctx, policies) = build_context(
        Arc::clone(&config),
        Arc::clone(&backends.broker),
        Arc::clone(&backends.store),
        Arc::clone(&backends.windows),
        shutdown.clone(),
    )?;
    let tracker = TaskTracker::new();
    // A role that fails stops the whole process (the supervisor restarts it)
    // rather than leaving a half-working process that looks alive.
    let failed = CancellationToken::new();

    if plan.analyze {
        let (ctx, rules, failed) = (ctx.clone(), Arc::clone(&rules), failed.clone());
        tracker.spawn(
            async move {
                if let Err(e) = analyze::run(ctx, rules).await {
                    tracing::error!(error = format!("{e:#}"), "analyze failed");
                    failed.cancel();
                }
            }
            .instrument(tracing::error_span!("role", role = "analyze")),
        );
    }
    if plan.notify {
        let channels = channels::build(&config.notify.channels, &config.data_dir, &policies)?;
        let (ctx, failed) = (ctx.clone(), failed.clone());
        tracker.spawn(
            async move {
                if let Err(e) = notify::run(ctx, channels).await {
                    tracing::error!(error = format!("{e:#}"), "notify failed");
                    failed.cancel();
                }
            }
            .instrument(tracing::error_span!("role", role = "notify")),
        );
    }
    let heartbeats = plan.monitor.then(|| {
        Arc::new(crate::monitor::heartbeats::Heartbeats::new(
            config.monitor.phi.clone(),
            Arc::new(resilience::SystemClock),
        ))
    });
    if let Some(heartbeats) = &heartbeats {
        let (ctx, heartbeats, failed) = (ctx.clone(), Arc::clone(heartbeats), failed.clone());
        let policies = policies.clone();
        tracker.spawn(
            async move {
                if let Err(e) = crate::monitor::run(ctx, heartbeats, policies).await {
                    tracing::error!(error = format!("{e:#}"), "monitor failed");
                    failed.cancel();
                }
            }
            .instrument(tracing::error_span!("role", role = "monitor")),
        );
    }
    tracker.spawn(poll_queue_gauges(ctx.clone()));
    tracker.spawn(crate::dependencies::run_gauges(ctx.clone()));
    tracker.spawn(crate::slo::run_evaluator(
        Arc::clone(&ctx.slo),
        Arc::clone(&ctx.metrics),
        shutdown.clone(),
    ));

    // Every process serves health and metrics; ingest and the read API when planned.
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding {}", config.http.listen))?;
    let address = listener.local_addr()?;
    let dashboard = if plan.dashboard {
        crate::dashboard::router(&ctx, &policies, plan)
    } else {
        axum::Router::new()
    };
    let app = server::router_with(
        ctx.clone(),
        Surface {
            ingest: plan.ingest,
            read_api: plan.read_api,
        },
        dashboard,
    );
    let app = match &heartbeats {
        Some(heartbeats) => app.merge(
            crate::monitor::heartbeats::router(Arc::clone(heartbeats)).layer(
                axum::middleware::from_fn_with_state(ctx.clone(), server::require_token),
            ),
        ),
        None => app,
    };
    let heartbeat_sink = match (&heartbeats, &config.monitor.url) {
        (Some(local), _) => Some(crate::monitor::heartbeats::Sink::Local(Arc::clone(local))),
        (None, Some(url)) => Some(crate::monitor::heartbeats::Sink::Http {
            // The monitor is an internal address: never through a proxy.
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(
                    config
                        .monitor
                        .heartbeat_interval
                        .max(Duration::from_millis(500)),
                )
                .build()
                .context("building the heartbeat client")?,
            url: format!("{}/v1/heartbeats", url.trim_end_matches('/')),
            token: config.http.auth_token.clone(),
        }),
        (None, None) => None,
    };
    if let Some(sink) = heartbeat_sink {
        tracker.spawn(crate::monitor::heartbeats::send_loop(
            sink,
            plan.roles(),
            address.to_string(),
            config.monitor.heartbeat_interval,
            shutdown.clone(),
        ));
    }
    let server_stop = shutdown.clone();
    tracker.spawn(
        async move {
            crate::serve::serve(listener, app, server_stop).await;
        }
        .instrument(tracing::error_span!("role", role = "http")),
    );
    // Before anyone is told we listen: a SIGTERM that follows the line
    // below at once must drain us, not kill us (tokio installs a signal's
    // handler only when its listener is made).
    let signals = ShutdownSignals::install();
    let runtime = tokio::runtime::Handle::current();
    tracing::info!(
        %address,
        ?plan,
        data_dir = %config.data_dir.display(),
        runtime = ?runtime.runtime_flavor(),
        worker_threads = runtime.metrics().num_workers(),
        "auditflow listening"
    );
    // Machine-readable line for scripts and tests that start us on port 0.
    println!("listening on http://{address}");

    if plan.demo {
        let mut options = auditflow_generate::demo_options(format!("http://{address}"));
        options.token = config.http.auth_token.clone();
        let stop = shutdown.clone();
        tracker.spawn(
            async move {
                if let Err(e) = auditflow_generate::run(options, stop).await {
                    tracing::warn!(error = %e, "demo source stopped");
                }
            }
            .instrument(tracing::error_span!("role", role = "generate")),
        );
    }

    let reason = tokio::select! {
        signal = signals.recv() => signal,
        _ = failed.cancelled() => "a role failed",
    };
    tracing::info!(reason, grace = ?config.http.shutdown_grace, "draining");
    ctx.health.start_draining();
    shutdown.cancel();
    tracker.close();
    let drained = tokio::time::timeout(config.http.shutdown_grace, tracker.wait())
        .await
        .is_ok();
    drop(ctx);
    // Dropping the last handles stops the embedded writer threads after they
    // commit what is queued.
    drop(backends);
    if !drained {
        tracing::warn!(
            "grace period over with work still in flight; it stays unacked and will be redelivered"
        );
    }
    if failed.is_cancelled() {
        anyhow::bail!("stopped because a role failed");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The signals that drain the process (SIGTERM, SIGINT), listened to from
/// [`ShutdownSignals::install`] on.
struct ShutdownSignals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    fn install() -> ShutdownSignals {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(listener) => Some(listener),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for {name}; it will stop the process without draining");
                None
            }
        };
        ShutdownSignals {
            term: listen(SignalKind::terminate(), "SIGTERM"),
            int: listen(SignalKind::interrupt(), "SIGINT"),
        }
    }

    /// Waits for the first of them.
    async fn recv(mut self) -> &'static str {
        async fn next(listener: &mut Option<tokio::signal::unix::Signal>) {
            match listener {
                Some(listener) => {
                    listener.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.term) => "SIGTERM",
            _ = next(&mut self.int) => "SIGINT",
        }
    }
}

/// Keeps the queue-depth and dead-letter gauges current.
async fn poll_queue_gauges(ctx: Context) {
    let queues = [
        ctx.config.broker.events_queue.clone(),
        ctx.config.broker.alerts_queue.clone(),
    ];
    loop {
        for queue in &queues {
            if let Ok(stats) = ctx.broker.stats(queue).await {
                let labels = QueueLabels {
                    queue: queue.clone(),
                };
                ctx.metrics
                    .queue_depth
                    .get_or_create(&labels)
                    .set(stats.ready as i64);
                ctx.metrics
                    .dead_letters
                    .get_or_create(&labels)
                    .set(stats.dead_lettered as i64);
            }
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
