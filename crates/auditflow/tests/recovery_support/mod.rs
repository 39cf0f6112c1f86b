//! Throwaway backend servers and `auditflow up` as a child process, for the
//! end-to-end tests: the chaos suite's own (`auditflow_chaos::servers`,
//! `auditflow_chaos::process`) with this package's binary.

use std::path::Path;

pub use auditflow_chaos::process::Platform;
// Each test crate that includes this module uses a part of it.
#[allow(unused_imports)]
pub use auditflow_chaos::servers::{free_port, PgCluster, RabbitNode, RedisServer};

/// Starts `auditflow up --data-dir DATA_DIR ARGS...` with `env`; returns
/// once it printed its address and `/readyz` answered 200.
pub async fn start_platform(
    data_dir: &Path,
    log: &Path,
    args: &[String],
    env: &[(String, String)],
    api: &reqwest::Client,
) -> Result<Platform, String> {
    let mut launch = auditflow_chaos::process::Launch::up(
        Path::new(env!("CARGO_BIN_EXE_auditflow")),
        data_dir,
        log,
        args,
    );
    launch.env = env.to_vec();
    auditflow_chaos::process::start(&launch, None, api).await
}
