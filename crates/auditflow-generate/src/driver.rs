//! The HTTP load driver: paced batches to `POST {url}/v1/events`.
//!
//! One dispatcher draws items from the [`Factory`], paces them with a
//! [`Pacer`] (so the aggregate rate holds however many workers there are) and
//! hands each batch to a task; a semaphore bounds the batches in flight to
//! `concurrency`. A task retries 429 and 5xx answers (honouring
//! `Retry-After`) and network errors, up to `max_attempts` attempts.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::factory::{ConfigError, Factory, FactoryConfig, Item, Mix};
use crate::pacing::Pacer;
use crate::report::{LatencyRecorder, Report, StopReason};

/// Default base URL: the AuditFlow HTTP listener's default address.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Longest `Retry-After` wait honoured; longer answers are capped to this.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// An option is out of range or missing.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// The event factory's configuration is invalid.
    #[error("invalid generator settings: {0}")]
    Config(#[from] ConfigError),
    /// The URL does not parse or is not http(s).
    #[error("invalid ingest URL '{url}': {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built (e.g. the TLS backend failed to load).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// A sender task panicked.
    #[error("a sender task failed: {0}")]
    Task(String),
}

/// Options of a load run (`auditflow generate`).
///
/// Every run is bounded by `count` and/or `duration` (whichever comes first);
/// the only unbounded mode is [`demo_options`]'s `until_cancelled`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct GenerateOptions {
    /// Base URL of the AuditFlow HTTP API; events go to `{url}/v1/events`.
    #[cfg_attr(feature = "clap", arg(long, default_value = DEFAULT_URL))]
    pub url: String,
    /// Target rate in events per second across all workers (0 = as fast as possible).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 100.0))]
    pub rate: f64,
    /// Stop after this many events.
    #[cfg_attr(feature = "clap", arg(long, required_unless_present = "duration"))]
    pub count: Option<u64>,
    /// Stop after this long (e.g. `30s`, `2m`).
    #[cfg_attr(
        feature = "clap",
        arg(long, value_parser = humantime::parse_duration, required_unless_present = "count")
    )]
    pub duration: Option<Duration>,
    /// Requests in flight at once.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 4))]
    pub concurrency: usize,
    /// Events per request (sent as a JSON array).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 1))]
    pub batch: usize,
    /// Share (0..=1) of items that are malformed (expected to be rejected with 400).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 0.0))]
    pub malformed_ratio: f64,
    /// Probability (0..=1), per item, of a burst of failed logins that fires ANLY-SEC-001.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 0.0))]
    pub burst_probability: f64,
    /// Event-type weights, e.g. `user_login=40,file_modified=20` (unlisted types get 0).
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            default_value = "user_login=40,sudo_command=15,file_modified=20,service_status_change=15,user_account_management=10"
        )
    )]
    pub mix: Mix,
    /// RNG seed, to replay the same events (random when not given; the report shows it).
    #[cfg_attr(feature = "clap", arg(long))]
    pub seed: Option<u64>,
    /// Bearer token for the API.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "AUDITFLOW_TOKEN", hide_env_values = true)
    )]
    pub token: Option<String>,
    /// Print the final report as JSON instead of a table.
    #[cfg_attr(feature = "clap", arg(long))]
    pub json: bool,
    /// Attempts per request, first included, for 429, 5xx and network errors.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 5))]
    pub max_attempts: u32,
    /// Timeout of one request (e.g. `10s`).
    #[cfg_attr(
        feature = "clap",
        arg(long, value_parser = humantime::parse_duration, default_value = "10s")
    )]
    pub timeout: Duration,
    /// List the acknowledged event ids in the report (`acked_ids`).
    #[cfg_attr(feature = "clap", arg(long))]
    pub record_acked: bool,
    /// Run until the cancellation token fires, with no count or duration (demo only).
    #[cfg_attr(feature = "clap", arg(skip))]
    pub until_cancelled: bool,
}

impl Default for GenerateOptions {
    /// The CLI defaults; note that neither `count` nor `duration` is set, so
    /// one must be before [`run`].
    fn default() -> Self {
        GenerateOptions {
            url: DEFAULT_URL.to_string(),
            rate: 100.0,
            count: None,
            duration: None,
            concurrency: 4,
            batch: 1,
            malformed_ratio: 0.0,
            burst_probability: 0.0,
            mix: Mix::default(),
            seed: None,
            token: None,
            json: false,
            max_attempts: 5,
            timeout: Duration::from_secs(10),
            record_acked: false,
            until_cancelled: false,
        }
    }
}

impl GenerateOptions {
    /// The factory settings these options imply.
    pub fn factory_config(&self) -> FactoryConfig {
        FactoryConfig {
            mix: self.mix,
            malformed_ratio: self.malformed_ratio,
            burst_probability: self.burst_probability,
            ..FactoryConfig::default()
        }
    }

    /// Checks the options without running.
    pub fn validate(&self) -> Result<reqwest::Url, GenerateError> {
        if self.count.is_none() && self.duration.is_none() && !self.until_cancelled {
            return Err(GenerateError::InvalidOptions(
                "one of --count or --duration is required, so that the run is bounded".into(),
            ));
        }
        if !self.rate.is_finite() || self.rate < 0.0 {
            return Err(GenerateError::InvalidOptions(format!(
                "--rate {} must be a non-negative number (0 = unpaced)",
                self.rate
            )));
        }
        if self.concurrency == 0 {
            return Err(GenerateError::InvalidOptions(
                "--concurrency must be at least 1".into(),
            ));
        }
        if self.batch == 0 {
            return Err(GenerateError::InvalidOptions(
                "--batch must be at least 1".into(),
            ));
        }
        if self.max_attempts == 0 {
            return Err(GenerateError::InvalidOptions(
                "--max-attempts must be at least 1".into(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(GenerateError::InvalidOptions(
                "--timeout must be positive".into(),
            ));
        }
        self.factory_config().validate()?;
        endpoint(&self.url)
    }
}

/// Options for `auditflow up --demo`: about 20 events/s with a failed-login
/// burst now and then, nothing malformed, running until the cancellation
/// token fires.
pub fn demo_options(url: impl Into<String>) -> GenerateOptions {
    GenerateOptions {
        url: url.into(),
        rate: 20.0,
        concurrency: 2,
        burst_probability: 0.01,
        until_cancelled: true,
        ..GenerateOptions::default()
    }
}

fn endpoint(url: &str) -> Result<reqwest::Url, GenerateError> {
    let invalid = |reason: String| GenerateError::InvalidUrl {
        url: url.to_string(),
        reason,
    };
    let base = reqwest::Url::parse(url.trim()).map_err(|e| invalid(e.to_string()))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "scheme '{}' is not http or https",
            base.scheme()
        )));
    }
    let joined = format!("{}/v1/events", base.as_str().trim_end_matches('/'));
    reqwest::Url::parse(&joined).map_err(|e| invalid(e.to_string()))
}

#[derive(Debug, Default)]
struct Stats {
    sent: u64,
    acknowledged: u64,
    rejected: u64,
    failed: u64,
    malformed_sent: u64,
    requests: u64,
    retries: u64,
    status_counts: std::collections::BTreeMap<u16, u64>,
    last_error: Option<String>,
    acked_ids: Vec<String>,
    latency: Option<LatencyRecorder>,
}

struct Shared {
    client: reqwest::Client,
    endpoint: reqwest::Url,
    token: Option<String>,
    max_attempts: u32,
    record_acked: bool,
    abort: CancellationToken,
    stats: Mutex<Stats>,
    progress: ProgressBar,
}

impl Shared {
    fn stats(&self) -> MutexGuard<'_, Stats> {
        // Stats stay consistent under a panic (plain counters); keep going.
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Acknowledged,
    Rejected,
    Failed,
}

/// Runs a load: generates, paces and sends events until `count` or
/// `duration` (or, with `until_cancelled`, until `shutdown` fires), then
/// waits for the requests in flight and reports.
///
/// Cancelling `shutdown` stops the run early: no new batches, no further
/// retries, and requests in flight are abandoned (counted as failed).
pub async fn run(
    opts: GenerateOptions,
    shutdown: CancellationToken,
) -> Result<Report, GenerateError> {
    let endpoint = opts.validate()?;
    let seed = opts.seed.unwrap_or_else(rand::random);
    let mut factory = Factory::new(opts.factory_config(), seed)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.concurrency)
        .timeout(opts.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(GenerateError::Client)?;
    let shared = Arc::new(Shared {
        client,
        endpoint: endpoint.clone(),
        token: opts.token.clone(),
        max_attempts: opts.max_attempts,
        record_acked: opts.record_acked,
        abort: shutdown.child_token(),
        stats: Mutex::new(Stats {
            latency: Some(LatencyRecorder::new()),
            ..Stats::default()
        }),
        progress: progress_bar(opts.count),
    });

    let start = Instant::now();
    let deadline = opts.duration.map(|d| start + d);
    let deadline_sleep = async move {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(deadline_sleep);
    let mut pacer = Pacer::starting_at(opts.rate, start);
    let permits = Arc::new(Semaphore::new(opts.concurrency));
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut issued: u64 = 0;
    let batch = u64::try_from(opts.batch).unwrap_or(u64::MAX);

    let stopped_by = loop {
        let n = match opts.count {
            Some(count) if issued >= count => break StopReason::Count,
            Some(count) => batch.min(count - issued),
            None => batch,
        };
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break StopReason::Cancelled,
            _ = &mut deadline_sleep => break StopReason::Duration,
            _ = pacer.acquire(n) => {}
        }
        let permit = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break StopReason::Cancelled,
            _ = &mut deadline_sleep => break StopReason::Duration,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                // The semaphore is never closed; treat it as cancellation.
                Err(_) => break StopReason::Cancelled,
            },
        };
        let items: Vec<Item> = (0..n).map(|_| factory.next_item(Utc::now())).collect();
        issued += n;
        tasks.spawn(send_batch(shared.clone(), items, permit));
        while let Some(done) = tasks.try_join_next() {
            check_join(done)?;
        }
    };
    while let Some(done) = tasks.join_next().await {
        check_join(done)?;
    }
    let elapsed = start.elapsed();
    shared.progress.finish_and_clear();

    let mut stats = shared.stats();
    let elapsed_secs = elapsed.as_secs_f64();
    Ok(Report {
        endpoint: endpoint.to_string(),
        seed,
        stopped_by,
        elapsed_secs,
        target_rate: opts.rate,
        sent: stats.sent,
        acknowledged: stats.acknowledged,
        rejected: stats.rejected,
        failed: stats.failed,
        malformed_sent: stats.malformed_sent,
        bursts: factory.bursts(),
        requests: stats.requests,
        retries: stats.retries,
        achieved_rate: if elapsed_secs > 0.0 {
            stats.sent as f64 / elapsed_secs
        } else {
            0.0
        },
        latency: stats
            .latency
            .as_ref()
            .map(LatencyRecorder::summary)
            .unwrap_or_default(),
        status_counts: std::mem::take(&mut stats.status_counts),
        last_error: stats.last_error.take(),
        acked_ids: std::mem::take(&mut stats.acked_ids),
    })
}

fn check_join(done: Result<(), tokio::task::JoinError>) -> Result<(), GenerateError> {
    done.map_err(|e| GenerateError::Task(e.to_string()))
}

fn progress_bar(count: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match count {
        Some(len) => (
            ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr()),
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} events ({per_sec}) {msg}",
        ),
        None => (
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            "{spinner} [{elapsed_precise}] {pos} events ({per_sec}) {msg}",
        ),
    };
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Sends one batch, retrying as allowed, and records the outcome.
async fn send_batch(shared: Arc<Shared>, items: Vec<Item>, permit: OwnedSemaphorePermit) {
    let body = batch_body(&items);
    let outcome = send_with_retries(&shared, body).await;
    drop(permit);
    let n = items.len() as u64;
    let malformed = items.iter().filter(|i| !i.is_valid()).count() as u64;
    let message = {
        let mut stats = shared.stats();
        stats.sent += n;
        stats.malformed_sent += malformed;
        match outcome {
            Outcome::Acknowledged => {
                stats.acknowledged += n;
                if shared.record_acked {
                    stats.acked_ids.extend(
                        items
                            .iter()
                            .filter_map(Item::event_id)
                            .map(|id| id.to_string()),
                    );
                }
            }
            Outcome::Rejected => stats.rejected += n,
            Outcome::Failed => stats.failed += n,
        }
        format!(
            "acked {} rejected {} failed {}",
            stats.acknowledged, stats.rejected, stats.failed
        )
    };
    shared.progress.inc(n);
    shared.progress.set_message(message);
}

/// The request body: the items' texts as one JSON array. `Bytes`, so a
/// retry re-sends it without copying it.
pub(crate) fn batch_body(items: &[Item]) -> Bytes {
    let mut body = Vec::with_capacity(items.len() * 400 + 2);
    body.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        item.write_body(&mut body);
    }
    body.push(b']');
    Bytes::from(body)
}

async fn send_with_retries(shared: &Shared, body: Bytes) -> Outcome {
    for attempt in 1..=shared.max_attempts {
        let mut request = shared
            .client
            .post(shared.endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone());
        if let Some(token) = &shared.token {
            request = request.bearer_auth(token);
        }
        let started = Instant::now();
        let answer = tokio::select! {
            biased;
            _ = shared.abort.cancelled() => return Outcome::Failed,
            answer = async {
                let response = request.send().await?;
                let status = response.status();
                let retry_after = retry_after(response.headers());
                // Read the body so the connection goes back to the pool.
                response.bytes().await?;
                Ok::<_, reqwest::Error>((status, retry_after))
            } => answer,
        };
        let latency = started.elapsed();
        let last = attempt == shared.max_attempts;
        let wait = {
            let mut stats = shared.stats();
            stats.requests += 1;
            if let Some(recorder) = stats.latency.as_mut() {
                recorder.record(latency);
            }
            match answer {
                Ok((status, retry_after)) => {
                    *stats.status_counts.entry(status.as_u16()).or_default() += 1;
                    if status.is_success() {
                        return Outcome::Acknowledged;
                    }
                    let retryable =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    if status.is_client_error() && !retryable {
                        return Outcome::Rejected;
                    }
                    stats.last_error = Some(format!("HTTP {status}"));
                    if !retryable || last {
                        return Outcome::Failed;
                    }
                    retry_after.unwrap_or_else(|| backoff(attempt))
                }
                Err(e) => {
                    stats.last_error = Some(error_chain(&e));
                    if last {
                        return Outcome::Failed;
                    }
                    backoff(attempt)
                }
            }
        };
        shared.stats().retries += 1;
        tokio::select! {
            biased;
            _ = shared.abort.cancelled() => return Outcome::Failed,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    Outcome::Failed
}

/// Exponential backoff without a `Retry-After`: 100 ms, 200 ms, ... up to 5 s.
fn backoff(attempt: u32) -> Duration {
    let factor = 1u64 << attempt.saturating_sub(1).min(6);
    Duration::from_millis(100 * factor).min(Duration::from_secs(5))
}

/// `Retry-After` as delay-seconds or an HTTP date, capped to [`MAX_RETRY_WAIT`].
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_WAIT))
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_dates_and_caps() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("86400"));
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_WAIT));
        let soon = std::time::SystemTime::now() + Duration::from_secs(10);
        let date = httpdate::fmt_http_date(soon);
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait > Duration::from_secs(8) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(30), Duration::from_secs(5));
    }

    #[test]
    fn endpoint_joins_and_rejects() {
        assert_eq!(
            endpoint("http://127.0.0.1:8080/").unwrap().as_str(),
            "http://127.0.0.1:8080/v1/events"
        );
        assert_eq!(
            endpoint("https://audit.example.com/base").unwrap().as_str(),
            "https://audit.example.com/base/v1/events"
        );
        assert!(matches!(
            endpoint("ftp://x"),
            Err(GenerateError::InvalidUrl { .. })
        ));
        assert!(matches!(
            endpoint("not a url"),
            Err(GenerateError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn runs_must_be_bounded_except_the_demo() {
        let opts = GenerateOptions::default();
        assert!(matches!(
            opts.validate(),
            Err(GenerateError::InvalidOptions(_))
        ));
        let bounded = GenerateOptions {
            count: Some(1),
            ..GenerateOptions::default()
        };
        assert!(bounded.validate().is_ok());
        let demo = demo_options("http://127.0.0.1:8080");
        assert!(demo.until_cancelled && demo.count.is_none() && demo.duration.is_none());
        assert_eq!(demo.malformed_ratio, 0.0);
        assert!(demo.burst_probability > 0.0);
        assert!(demo.validate().is_ok());
        for bad in [
            GenerateOptions {
                concurrency: 0,
                ..bounded.clone()
            },
            GenerateOptions {
                batch: 0,
                ..bounded.clone()
            },
            GenerateOptions {
                rate: -1.0,
                ..bounded.clone()
            },
            GenerateOptions {
                malformed_ratio: 1.5,
                ..bounded.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[cfg(feature = "clap")]
    #[test]
    fn cli_defaults_match_default() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            opts: GenerateOptions,
        }
        let cli = Cli::try_parse_from(["generate", "--count", "5"]).unwrap();
        let expected = GenerateOptions {
            count: Some(5),
            token: std::env::var("AUDITFLOW_TOKEN").ok(),
            ..GenerateOptions::default()
        };
        assert_eq!(cli.opts, expected);
        let cli = Cli::try_parse_from([
            "generate",
            "--duration",
            "1m 30s",
            "--rate",
            "0",
            "--mix",
            "user_login=1",
            "--seed",
            "9",
        ])
        .unwrap();
        assert_eq!(cli.opts.duration, Some(Duration::from_secs(90)));
        assert_eq!(
            cli.opts.mix,
            Mix::only(crate::factory::EventKind::UserLogin)
        );
        assert_eq!(cli.opts.seed, Some(9));
        assert!(
            Cli::try_parse_from(["generate"]).is_err(),
            "a bound is required"
        );
        assert!(Cli::try_parse_from(["generate", "--count", "1", "--mix", "nope=1"]).is_err());
    }
}
