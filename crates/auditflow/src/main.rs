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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(auditflow::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
