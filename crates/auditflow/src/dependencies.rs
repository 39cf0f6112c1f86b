//! The `auditflow_dependency_up` and `auditflow_dependency_degraded` gauges:
//! a live check of each dependency on an interval, folded with what the
//! roles report about it.

use std::time::Duration;

use crate::context::Context;
use crate::health::Status;
use crate::metrics::DependencyLabel;

/// How often the dependencies are checked.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Longer than the policies' per-attempt timeouts, so a hanging dependency
/// is cut (and counted) by its policy first.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The dependencies every process talks to.
pub const DEPENDENCIES: [&str; 3] = ["broker", "store", "windows"];

/// Checks one dependency now: `Ok` when it answered in time.
pub async fn check(ctx: &Context, dependency: &str) -> Result<(), String> {
    let answer = match dependency {
        "broker" => {
            tokio::time::timeout(CHECK_TIMEOUT, async {
                ctx.broker.check().await.map_err(|e| e.to_string())
            })
            .await
        }
        "store" => {
            tokio::time::timeout(CHECK_TIMEOUT, async {
                ctx.store.check().await.map_err(|e| e.to_string())
            })
            .await
        }
        "windows" => {
            tokio::time::timeout(CHECK_TIMEOUT, async {
                ctx.windows.check().await.map_err(|e| e.to_string())
            })
            .await
        }
        other => return Err(format!("unknown dependency {other}")),
    };
    answer.unwrap_or_else(|_| Err(format!("no answer within {CHECK_TIMEOUT:?}")))
}

/// Keeps the gauges current until shutdown.
pub async fn run_gauges(ctx: Context) {
    loop {
        let results = futures::future::join_all(DEPENDENCIES.iter().map(|d| check(&ctx, d))).await;
        let reported = ctx.health.snapshot();
        for (dependency, result) in DEPENDENCIES.iter().zip(results) {
            let up = result.is_ok();
            let degraded = up
                && reported
                    .get(*dependency)
                    .is_some_and(|c| c.status != Status::Up);
            let label = DependencyLabel { dependency };
            ctx.metrics
                .dependency_up
                .get_or_create(&label)
                .set(i64::from(up));
            ctx.metrics
                .dependency_degraded
                .get_or_create(&label)
                .set(i64::from(degraded));
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tokio::time::sleep(CHECK_INTERVAL) => {}
        }
    }
}
