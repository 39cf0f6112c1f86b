#!/usr/bin/env bash
# Checks the local PostgreSQL, Redis and RabbitMQ servers and starts any that
# is down. `scripts/services.sh ensure` exits non-zero if one cannot be started.
set -euo pipefail

wait_for() { # name, probe command...
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then echo "$name: up"; return 0; fi
    sleep 1
  done
  echo "$name: did not come up" >&2
  return 1
}

ensure_postgres() {
  if pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then echo "postgres: up"; return 0; fi
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  wait_for postgres pg_isready -h 127.0.0.1 -p 5432
}

ensure_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then echo "redis: up"; return 0; fi
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for redis sh -c 'redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG'
}

ensure_rabbitmq() {
  if rabbitmqctl -q status >/dev/null 2>&1; then echo "rabbitmq: up"; return 0; fi
  rabbitmq-server -detached
  wait_for rabbitmq rabbitmqctl -q await_startup
}

case "${1:-ensure}" in
  ensure) ensure_postgres; ensure_redis; ensure_rabbitmq ;;
  *) echo "usage: $0 ensure" >&2; exit 2 ;;
esac
