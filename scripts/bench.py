#!/usr/bin/env python3
"""End-to-end benchmark of AuditFlow, embedded (`auditflow up`) or
distributed (`--distributed`: ingest, analyze, notify and api as separate
processes on the local RabbitMQ, PostgreSQL and Redis, in a throwaway vhost,
schema and key prefix that are removed afterwards).

Builds the release binary, then for each of --runs fresh runs:
  1. idle RSS of a freshly started `auditflow up`;
  2. throughput: --events events sent as fast as possible over HTTP
     (concurrent clients, batches), timed until every event is stored and
     analysed (both queues drained); reports events/s end to end;
  3. latency: --latency-seconds of load at --latency-rate events/s with
     alert-firing bursts; p50/p99 from ingest accepting an event to notify
     storing its alert (the auditflow_ingest_to_alert_seconds histogram: one
     sample per alert, so its p99 rests on a few), and from ingest accepting
     an event to analyze acking it, stored and evaluated (the
     auditflow_event_analysis_latency_seconds histogram: one per event);
  4. peak RSS (VmHWM) over the whole run, and each process's CPU time per
     event over the throughput phase; distributed, also the CPU of the local
     RabbitMQ and PostgreSQL per event there, and in % of a core in phase 3.
Prints each run, the medians, and the alert path's p99 over all runs' alerts
together. Loopback only; every phase is bounded.

Usage: scripts/bench.py [--runs 3] [--events 300000] [--distributed]
       scripts/bench.py --distributed --events 0   # the latency phase alone
"""
import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "auditflow")
# Ingest accepting an event to notify storing its alert, one sample per alert.
ALERT_HISTOGRAM = "auditflow_ingest_to_alert_seconds"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def proc_status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # MiB
    return float("nan")


def cpu_seconds(pid):
    """User + system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu():
    """CPU seconds used so far by each process of the local RabbitMQ
    (`beam.smp`) and PostgreSQL (`postgres`), by pid, per server. A backend
    that exits between two readings takes its CPU time with it, so the
    PostgreSQL figure is a lower bound (the pool's connections live on)."""
    out = {"rabbitmq": {}, "postgres": {}}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            server = {"beam.smp": "rabbitmq", "postgres": "postgres"}.get(comm)
            if server:
                out[server][pid] = cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def server_cpu_used(before, after):
    """CPU seconds each server used between two `server_cpu()` readings."""
    return {server: sum(cpu - before[server].get(pid, 0.0) for pid, cpu in pids.items())
            for server, pids in after.items()}


def wait_drained(base, deadline_s, done=lambda: True):
    """Waits until `done()` and both queues hold nothing ready or unacked.
    Asks for the queues only once `done()` holds: each `/v1/queues` costs the
    broker passive declares (distributed: 0.8 ms of RabbitMQ CPU), which
    polled every 20 ms through the whole run would load the very servers
    being measured."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if done():
            queues = json.loads(get(base + "/v1/queues"))["queues"]
            if all(q["ready"] == 0 and q["unacked"] == 0 for q in queues):
                return time.monotonic()
        time.sleep(0.02)
    raise SystemExit("platform did not drain in time")


def histogram_quantiles(metrics_text, name, quantiles):
    buckets = []
    for line in metrics_text.splitlines():
        m = re.match(name + r'_bucket\{le="([^"]+)"\} (\d+)', line)
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            buckets.append((le, int(m.group(2))))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    out = []
    for q in quantiles:
        if total == 0:
            out.append(float("nan"))
            continue
        rank = q * total
        prev_le, prev_count = 0.0, 0
        for le, count in buckets:
            if count >= rank:
                if le == float("inf"):
                    out.append(prev_le)
                else:  # linear interpolation inside the bucket
                    frac = (rank - prev_count) / max(count - prev_count, 1)
                    out.append(prev_le + (le - prev_le) * frac)
                break
            prev_le, prev_count = le, count
    return out, total


def generate(base, *args):
    cmd = [BINARY, "generate", "--url", base, "--json", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        raise SystemExit(f"generate failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout)


def start(args_list, env, data):
    port = free_port()
    proc = subprocess.Popen(
        [BINARY, *args_list, "--listen", f"127.0.0.1:{port}", "--data-dir", data],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
    )
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"{args_list[:2]} did not start: {line!r}")
    return proc, f"http://127.0.0.1:{port}"


def processed_ok(urls):
    total = 0
    for url in urls:
        m = re.search(r'auditflow_events_processed_total\{result="ok"\} (\d+)', get(url + "/metrics"))
        total += int(m.group(1)) if m else 0
    return total


def throughput_phase(args, run, procs, base, api, analyzers):
    """Sends --events as fast as possible and waits until they are all
    analysed and both queues are empty. Returns the events acknowledged,
    ingest's and the end-to-end rate, and the CPU per event of each of our
    processes and (distributed) of the local servers."""
    cpu_before = {role: cpu_seconds(p.pid) for role, (p, _) in procs.items()}
    servers_before = server_cpu()
    started = time.monotonic()
    report = generate(base, "--rate", "0", "--count", str(args.events),
                      "--concurrency", str(args.concurrency), "--batch", str(args.batch),
                      "--burst-probability", "0.001", "--seed", str(run))
    sent_done = time.monotonic()
    acked = report["acknowledged"]
    drained_at = wait_drained(api, 600, lambda: processed_ok(analyzers) >= acked)
    e2e_rate = acked / (drained_at - started)
    # CPU per event of each of our processes over the throughput phase:
    # steadier than events/s on a machine whose speed drifts.
    cpu_per_event = {role: (cpu_seconds(p.pid) - cpu_before[role]) / max(acked, 1) * 1e6
                     for role, (p, _) in procs.items()}
    ingest_rate = acked / (sent_done - started)
    servers_per_event = {server: used / max(acked, 1) * 1e6 for server, used
                         in server_cpu_used(servers_before, server_cpu()).items()}
    return acked, ingest_rate, e2e_rate, cpu_per_event, servers_per_event


def one_run(args, run):
    tag = f"afbench{os.getpid()}_{run}"
    with tempfile.TemporaryDirectory(prefix="auditflow-bench-") as data:
        env = dict(os.environ, RUST_LOG="warn")
        procs = {}
        if args.distributed:
            subprocess.run(["rabbitmqctl", "-q", "add_vhost", tag], check=True)
            subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", tag, "guest", ".*", ".*", ".*"], check=True)
            env.update(AUDITFLOW_POSTGRES__SCHEMA=tag, AUDITFLOW_REDIS__KEY_PREFIX=tag + ":")
            backends = ["--broker", f"amqp://guest:guest@127.0.0.1:5672/{tag}",
                        "--store", "postgres://postgres@127.0.0.1:5432/test",
                        "--cache", "redis://127.0.0.1:6379"]
            for role in ["api", "analyze", "notify", "ingest"]:
                role_dir = os.path.join(data, role)
                os.makedirs(role_dir)
                procs[role] = start(["run", role, *backends], env, role_dir)
            base = procs["ingest"][1]
            api = procs["api"][1]
            analyzers = [procs["analyze"][1]]
            notifier = procs["notify"][1]
        else:
            procs["up"] = start(["up"], env, data)
            base = api = notifier = procs["up"][1]
            analyzers = [base]
        try:
            time.sleep(1.0)  # let the idle processes settle before measuring idle RSS
            idle_rss = {role: proc_status(p.pid, "VmRSS") for role, (p, _) in procs.items()}

            if args.events > 0:
                (acked, ingest_rate, e2e_rate, cpu_per_event,
                 servers_per_event) = throughput_phase(args, run, procs, base, api, analyzers)
            else:  # --events 0: the latency phase alone, on fresh processes
                acked, ingest_rate, e2e_rate = 0, float("nan"), float("nan")
                cpu_per_event = {role: float("nan") for role in procs}
                servers_per_event = {"rabbitmq": float("nan"), "postgres": float("nan")}

            # Latency phase on the same process, after the backlog is gone:
            # reset by reading the histogram before and after.
            metrics_before = get(notifier + "/metrics")
            analyze_before = get(analyzers[0] + "/metrics")
            before_ok = processed_ok(analyzers)
            servers_before, latency_started = server_cpu(), time.monotonic()
            latency = generate(base, "--rate", str(args.latency_rate), "--duration", f"{args.latency_seconds}s",
                               "--concurrency", "4", "--batch", "1", "--burst-probability", "0.02", "--seed", str(100 + run))
            wait_drained(api, 120, lambda: processed_ok(analyzers) >= before_ok + latency["acknowledged"])
            servers_at_rate = {server: used / (time.monotonic() - latency_started) * 100 for server, used
                               in server_cpu_used(servers_before, server_cpu()).items()}
            metrics_after = get(notifier + "/metrics")
            analyze_after = get(analyzers[0] + "/metrics")
            (p50, p99), count = delta_quantiles(metrics_before, metrics_after)
            alert_deltas = histogram_deltas(metrics_before, metrics_after, ALERT_HISTOGRAM)
            (event_p50, event_p99), event_count = delta_quantiles(
                analyze_before, analyze_after, "auditflow_event_analysis_latency_seconds")
            # That histogram's buckets are coarse (5, 10, 25 ms): its p99 is
            # interpolated, but the share under a bucket bound is exact.
            events_within_10ms = delta_share_within(
                analyze_before, analyze_after, "auditflow_event_analysis_latency_seconds", "0.01")
            peak_rss = {role: proc_status(p.pid, "VmHWM") for role, (p, _) in procs.items()}
            after_rss = {role: proc_status(p.pid, "VmRSS") for role, (p, _) in procs.items()}
        finally:
            for proc, _ in procs.values():
                proc.send_signal(signal.SIGTERM)
            for proc, _ in procs.values():
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            if args.distributed:
                subprocess.run(["rabbitmqctl", "-q", "delete_vhost", tag], check=False)
                subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc",
                                f"DROP SCHEMA IF EXISTS {tag} CASCADE"], check=False, capture_output=True)
                # One key per line; not split(): group keys hold \x1f, which
                # Python counts as whitespace.
                keys = [k for k in subprocess.run(["redis-cli", "--scan", "--pattern", tag + ":*"],
                                                  capture_output=True, text=True).stdout.split("\n") if k]
                for i in range(0, len(keys), 500):
                    subprocess.run(["redis-cli", "del", *keys[i:i + 500]], check=False, capture_output=True)
    result = {
        "events": acked,
        "ingest_events_per_s": ingest_rate,
        "end_to_end_events_per_s": e2e_rate,
        "alerts_in_latency_phase": count,
        "ingest_to_alert_p50_ms": p50 * 1000,
        "ingest_to_alert_p99_ms": p99 * 1000,
        "events_in_latency_phase": event_count,
        "ingest_to_analysed_p50_ms": event_p50 * 1000,
        "ingest_to_analysed_p99_ms": event_p99 * 1000,
        "ingest_to_analysed_within_10ms_pct": events_within_10ms * 100,
    }
    for role in procs:
        result[f"{role}_cpu_us_per_event"] = cpu_per_event[role]
    if args.distributed:
        # The local servers are shared with whatever else runs; on a quiet
        # machine these are this benchmark's.
        for server in servers_per_event:
            result[f"{server}_cpu_us_per_event"] = servers_per_event[server]
            result[f"{server}_cpu_pct_at_latency_rate"] = servers_at_rate[server]
    for role in procs:
        result[f"{role}_idle_rss_mib"] = idle_rss[role]
        result[f"{role}_peak_rss_mib"] = peak_rss[role]
        result[f"{role}_rss_after_load_mib"] = after_rss[role]
    return result, alert_deltas


def histogram_deltas(before_text, after_text, name):
    """Cumulative bucket counts (by `le`) of the observations of histogram
    `name` made between two scrapes."""
    def buckets(text):
        out = {}
        for line in text.splitlines():
            m = re.match(name + r'_bucket\{le="([^"]+)"\} (\d+)', line)
            if m:
                out[m.group(1)] = int(m.group(2))
        return out
    b, a = buckets(before_text), buckets(after_text)
    return {le: a[le] - b.get(le, 0) for le in a}


def delta_share_within(before_text, after_text, name, le):
    """Share of the observations between two scrapes at or under bucket bound `le`."""
    deltas = histogram_deltas(before_text, after_text, name)
    total = deltas.get("+Inf", 0)
    return deltas.get(le, 0) / total if total else float("nan")


def delta_quantiles(before_text, after_text, name=None):
    """p50 and p99 of the observations of histogram `name` (default: the
    alert path's) made between two scrapes, and their number."""
    name = name or ALERT_HISTOGRAM
    return quantiles_of_deltas(histogram_deltas(before_text, after_text, name), name)


def quantiles_of_deltas(deltas, name):
    """p50 and p99 of cumulative bucket counts by `le`, and their number."""
    lines = [f'{name}_bucket{{le="{le}"}} {count}' for le, count in deltas.items()]
    return histogram_quantiles("\n".join(lines), name, [0.5, 0.99])


def pooled(deltas_per_run):
    """The bucket counts of several runs added up."""
    total = {}
    for deltas in deltas_per_run:
        for le, count in deltas.items():
            total[le] = total.get(le, 0) + count
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=300_000,
                        help="events of the throughput phase; 0 skips it, so the latency "
                        "phase runs on fresh processes instead of right after a burst")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--latency-rate", type=int, default=None,
                        help="default 2000 events/s embedded, 1000 distributed")
    parser.add_argument("--latency-seconds", type=int, default=20)
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--distributed", action="store_true",
                        help="separate processes on the local RabbitMQ, PostgreSQL and Redis")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--binary", help="benchmark this auditflow binary (implies --no-build), "
                        "e.g. a copy of an earlier build for an A/B comparison")
    args = parser.parse_args()
    if args.binary:
        global BINARY
        BINARY = os.path.abspath(args.binary)
        args.no_build = True
    if args.latency_rate is None:
        args.latency_rate = 1000 if args.distributed else 2000
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "auditflow"], cwd=ROOT, check=True)
    results, alert_deltas = [], []
    for run in range(args.runs):
        r, deltas = one_run(args, run)
        results.append(r)
        alert_deltas.append(deltas)
        print(f"run {run + 1}: " + ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()), flush=True)
    medians = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print("\nmedian of %d runs (machine: %d cores)" % (len(results), os.cpu_count()))
    for k, v in medians.items():
        print(f"  {k:28s} {v:12.1f}")
    # A run's alert-path p99 rests on its 3 or 4 slowest alerts; all runs'
    # alerts together give a p99 on a few times as many.
    (_, pooled_p99), pooled_count = quantiles_of_deltas(pooled(alert_deltas), ALERT_HISTOGRAM)
    pooled_summary = {"alerts": pooled_count, "ingest_to_alert_p99_ms": pooled_p99 * 1000}
    print(f"\nall {len(results)} runs' alerts together: {pooled_count} alerts, "
          f"ingest to alert p99 {pooled_p99 * 1000:.1f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": results, "median": medians, "pooled_alert_path": pooled_summary,
                       "args": vars(args)}, f, indent=2)


if __name__ == "__main__":
    main()
