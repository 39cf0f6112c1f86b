#!/usr/bin/env bash
# Prepares and runs every AuditFlow test: system packages, the local servers
# the backend tests talk to, formatting, lints, then the whole test suite.
# Usage: scripts/test.sh [extra nextest args]
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

log "system packages"
missing=()
# chromium and chromium-driver: the dashboard's browser tests (never skipped).
for pkg in pkg-config libssl-dev chromium chromium-driver; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi
command -v cargo-nextest >/dev/null 2>&1 || cargo install cargo-nextest
# Prometheus (promtool, and a real server for tests/observability.rs) and
# Alertmanager (amtool) check the shipped deploy/ files. Debian's packages
# want to start their services; in a container without an init system a
# policy-rc.d answering 101 keeps invoke-rc.d from starting daemons (that
# would hold port 9090) and the install from failing.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1 \
  || ! command -v amtool >/dev/null 2>&1; then
  added_policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    added_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    prometheus prometheus-alertmanager
  if [[ -n "$added_policy" ]]; then rm -f /usr/sbin/policy-rc.d; fi
fi

log "local servers"
scripts/services.sh ensure

log "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

log "operations files (deploy/)"
promtool check rules deploy/prometheus/auditflow.rules.yml
promtool test rules deploy/prometheus/tests/*.test.yml
amtool check-config deploy/alertmanager/alertmanager.yml
python3 deploy/grafana/generate.py --check

log "tests"
cargo nextest run --workspace --no-fail-fast "$@"
# Crash-at-every-step tests need the failpoints compiled in.
cargo nextest run -p auditflow --features failpoints --test crash_points
# Doctests are not run by nextest.
cargo test --workspace --doc

log "chaos smoke subset"
# A few short fault scenarios and the negative controls (docs/fault-tolerance.md).
scripts/chaos.sh --smoke
