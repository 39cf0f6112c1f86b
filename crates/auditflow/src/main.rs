//! The `auditflow` binary.

use clap::Parser;

// glibc malloc spent about 30% of the CPU under load (arena contention and
// consolidation across the writer threads and the runtime); mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sets mimalloc's options before the runtime's first allocation (see
/// `auditflow::allocator` for which and why). An ELF constructor runs
/// before the Rust runtime starts, which allocates before `main`.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static TUNE_ALLOCATOR: extern "C" fn() = {
    extern "C" fn tune_allocator() {
        auditflow::allocator::tune_before_first_allocation();
    }
    tune_allocator
};

fn main() -> std::process::ExitCode {
    let cli = auditflow::cli::Cli::parse();
    let config = match cli.serving_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let runtime = match runtime(cli.worker_threads(config.as_ref())) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(auditflow::cli::run(cli, config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The runtime for `threads` worker threads (`None`: one per core). One
/// thread is a current-thread runtime: the tasks run on the main thread,
/// with no worker thread beside it.
fn runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    if threads == Some(1) {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        builder.worker_threads(n);
    }
    builder.enable_all().build()
}
