//! `auditflow-chaos`: runs the chaos scenarios against an `auditflow`
//! binary and writes the report. `scripts/chaos.sh` builds both and runs it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use auditflow_chaos::report::{doc_table, markdown, update_doc, SuiteReport};
use auditflow_chaos::runner::{run_scenario, RunOptions};
use auditflow_chaos::scenarios::catalogue;

#[derive(Debug, Parser)]
#[command(name = "auditflow-chaos", about = "AuditFlow's chaos suite")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the scenarios.
    List,
    /// Write a report's measured table into the fault-tolerance document.
    Doc {
        #[arg(long, default_value = "docs/chaos/report.json")]
        report: PathBuf,
        #[arg(long, default_value = "docs/fault-tolerance.md")]
        doc: PathBuf,
    },
    /// Run scenarios and write the report.
    Run {
        /// Scenario names (default: all).
        names: Vec<String>,
        /// Only the CI smoke subset.
        #[arg(long, conflicts_with = "names")]
        smoke: bool,
        /// Seed of every scenario's workload (replays a failure).
        #[arg(long)]
        seed: Option<u64>,
        /// Keep every scenario's directory, also when it passed.
        #[arg(long)]
        keep: bool,
        /// The auditflow binary (default: `auditflow` next to this one).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Where report.json and report.md go.
        #[arg(long, default_value = "target/chaos")]
        report_dir: PathBuf,
        /// Where scenario directories (logs, data) are created.
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / (1 << 20) as f64);
    format!("{} {cpus} CPUs, {mem_gib:.0} GiB", std::env::consts::OS)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let all = catalogue();
    match cli.command {
        Command::List => {
            for s in &all {
                let smoke = if s.smoke { " [smoke]" } else { "" };
                println!(
                    "{:<28} {:<8}{smoke} {}",
                    s.name,
                    s.mode.to_string(),
                    s.description
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Doc { report, doc } => {
            let suite: SuiteReport = serde_json::from_slice(
                &std::fs::read(&report).with_context(|| format!("reading {}", report.display()))?,
            )
            .with_context(|| format!("parsing {}", report.display()))?;
            let text = std::fs::read_to_string(&doc)
                .with_context(|| format!("reading {}", doc.display()))?;
            let updated = update_doc(&text, &doc_table(&suite))
                .with_context(|| format!("{} has no chaos-report markers", doc.display()))?;
            std::fs::write(&doc, updated)?;
            eprintln!("{} updated from {}", doc.display(), report.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            names,
            smoke,
            seed,
            keep,
            binary,
            report_dir,
            work_dir,
        } => {
            let chosen: Vec<_> = if smoke {
                all.iter().filter(|s| s.smoke).cloned().collect()
            } else if names.is_empty() {
                all.clone()
            } else {
                let unknown: Vec<&String> = names
                    .iter()
                    .filter(|n| !all.iter().any(|s| s.name == n.as_str()))
                    .collect();
                anyhow::ensure!(
                    unknown.is_empty(),
                    "unknown scenarios {unknown:?}; see `auditflow-chaos list`"
                );
                all.iter()
                    .filter(|s| names.iter().any(|n| n == s.name))
                    .cloned()
                    .collect()
            };
            let binary = match binary {
                Some(b) => b,
                None => std::env::current_exe()
                    .context("locating this binary")?
                    .with_file_name("auditflow"),
            };
            anyhow::ensure!(
                binary.exists(),
                "no auditflow binary at {}",
                binary.display()
            );
            let work_dir = work_dir.unwrap_or_else(|| std::env::temp_dir().join("auditflow-chaos"));
            let options = RunOptions {
                binary: binary.clone(),
                seed,
                keep,
                work_dir,
            };
            let profile = if binary.components().any(|c| c.as_os_str() == "release") {
                "release"
            } else {
                "dev (debug)"
            };
            let mut suite = SuiteReport {
                started_at: chrono::Utc::now().to_rfc3339(),
                command: std::env::args().collect::<Vec<_>>().join(" "),
                git_commit: git_commit(),
                build_profile: profile.into(),
                machine: machine(),
                scenarios: Vec::new(),
            };
            std::fs::create_dir_all(&report_dir)
                .with_context(|| format!("creating {}", report_dir.display()))?;
            for scenario in &chosen {
                eprintln!("== {} ({})", scenario.name, scenario.mode);
                let report = run_scenario(scenario, &options).await;
                eprintln!(
                    "   {} in {:.1} s: acked {} stored {} alerts {}/{} rto {:?}{}",
                    if report.passed { "pass" } else { "FAIL" },
                    report.duration_s,
                    report.events_acked,
                    report.events_stored,
                    report.alerts_stored,
                    report.alerts_expected,
                    report.rto_s,
                    report
                        .error
                        .as_ref()
                        .map(|e| format!("\n   error: {e}"))
                        .unwrap_or_default()
                );
                for v in &report.violations {
                    eprintln!("   violation ({}): {}", v.invariant, v.detail);
                }
                suite.scenarios.push(report);
                // Written after every scenario: a long run interrupted keeps what it measured.
                std::fs::write(
                    report_dir.join("report.json"),
                    serde_json::to_vec_pretty(&suite)?,
                )?;
                std::fs::write(report_dir.join("report.md"), markdown(&suite))?;
            }
            let failed = suite.scenarios.iter().filter(|s| !s.passed).count();
            eprintln!(
                "{} of {} scenarios passed; report in {}",
                suite.scenarios.len() - failed,
                suite.scenarios.len(),
                report_dir.display()
            );
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
