#!/usr/bin/env bash
# Builds AuditFlow and its chaos suite, then runs scenarios and writes the
# report (Markdown and JSON).
#
#   scripts/chaos.sh                 # every scenario, release build: docs/chaos/report.{md,json},
#                                    # and the measured table of docs/fault-tolerance.md
#   scripts/chaos.sh --smoke         # the CI smoke subset, dev build, report in target/chaos-smoke/
#   scripts/chaos.sh NAME... [--seed N] [--keep]   # some scenarios (replay with a seed)
#
# Needs the PostgreSQL 15 binaries (initdb, pg_ctl), redis-server and
# rabbitmq-server installed (throwaway instances are started per scenario,
# never the shared ones), and root for the disk-full scenario's tmpfs.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--smoke" ]]; then
  cargo build -q -p auditflow -p auditflow-chaos
  exec target/debug/auditflow-chaos run --report-dir target/chaos-smoke "$@"
fi
cargo build -q --release -p auditflow -p auditflow-chaos
if (($#)); then
  exec target/release/auditflow-chaos run --report-dir target/chaos "$@"
fi
# The full suite: its report is committed, and its numbers go into the
# fault-tolerance document (also when a scenario failed: the document shows it).
status=0
target/release/auditflow-chaos run --report-dir docs/chaos || status=$?
target/release/auditflow-chaos doc --report docs/chaos/report.json --doc docs/fault-tolerance.md
exit "$status"
