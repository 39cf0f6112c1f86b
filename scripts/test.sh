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

log "local servers"
scripts/services.sh ensure

log "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

log "tests"
cargo nextest run --workspace --no-fail-fast "$@"
# Crash-at-every-step tests need the failpoints compiled in.
cargo nextest run -p auditflow --features failpoints --test crash_points
# Doctests are not run by nextest.
cargo test --workspace --doc
