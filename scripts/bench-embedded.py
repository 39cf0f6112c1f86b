#!/usr/bin/env python3
"""End-to-end benchmark of the embedded platform (`auditflow up`).

Builds the release binary, then for each of --runs fresh runs:
  1. idle RSS of a freshly started `auditflow up`;
  2. throughput: --events events sent as fast as possible over HTTP
     (concurrent clients, batches), timed until every event is stored and
     analysed (both queues drained); reports events/s end to end;
  3. latency: --latency-seconds of load at --latency-rate events/s with
     alert-firing bursts; p50/p99 from ingest accepting an event to notify
     storing its alert (the auditflow_ingest_to_alert_seconds histogram);
  4. peak RSS (VmHWM) over the whole run.
Prints each run and the medians. Loopback only; every phase is bounded.

Usage: scripts/bench-embedded.py [--runs 3] [--events 300000]
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


def wait_drained(base, deadline_s):
    """Waits until both queues hold nothing ready or unacked."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
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


def one_run(args, run):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="auditflow-bench-") as data:
        env = dict(os.environ, RUST_LOG="warn")
        server = subprocess.Popen(
            [BINARY, "up", "--listen", f"127.0.0.1:{port}", "--data-dir", data],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
        )
        try:
            line = server.stdout.readline()
            if "listening on" not in line:
                raise SystemExit(f"server did not start: {line!r}")
            time.sleep(1.0)  # let the idle process settle before measuring idle RSS
            idle_rss = proc_status(server.pid, "VmRSS")

            started = time.monotonic()
            report = generate(base, "--rate", "0", "--count", str(args.events),
                              "--concurrency", str(args.concurrency), "--batch", str(args.batch),
                              "--burst-probability", "0.001", "--seed", str(run))
            sent_done = time.monotonic()
            drained_at = wait_drained(base, 600)
            acked = report["acknowledged"]
            e2e_rate = acked / (drained_at - started)
            ingest_rate = acked / (sent_done - started)

            # Latency phase on the same process, after the backlog is gone:
            # reset by reading the histogram before and after.
            before, _ = histogram_quantiles(get(base + "/metrics"), "auditflow_ingest_to_alert_seconds", [0.5])
            metrics_before = get(base + "/metrics")
            generate(base, "--rate", str(args.latency_rate), "--duration", f"{args.latency_seconds}s",
                     "--concurrency", "4", "--batch", "1", "--burst-probability", "0.02", "--seed", str(100 + run))
            wait_drained(base, 120)
            metrics_after = get(base + "/metrics")
            (p50, p99), count = delta_quantiles(metrics_before, metrics_after)
            peak_rss = proc_status(server.pid, "VmHWM")
            after_rss = proc_status(server.pid, "VmRSS")
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    return {
        "events": acked,
        "ingest_events_per_s": ingest_rate,
        "end_to_end_events_per_s": e2e_rate,
        "alerts_in_latency_phase": count,
        "ingest_to_alert_p50_ms": p50 * 1000,
        "ingest_to_alert_p99_ms": p99 * 1000,
        "idle_rss_mib": idle_rss,
        "peak_rss_mib": peak_rss,
        "rss_after_load_mib": after_rss,
    }


def delta_quantiles(before_text, after_text):
    """Quantiles of the observations made between two scrapes."""
    name = "auditflow_ingest_to_alert_seconds"
    def buckets(text):
        out = {}
        for line in text.splitlines():
            m = re.match(name + r'_bucket\{le="([^"]+)"\} (\d+)', line)
            if m:
                out[m.group(1)] = int(m.group(2))
        return out
    b, a = buckets(before_text), buckets(after_text)
    lines = [f'{name}_bucket{{le="{le}"}} {a[le] - b.get(le, 0)}' for le in a]
    return histogram_quantiles("\n".join(lines), name, [0.5, 0.99])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--latency-rate", type=int, default=2000)
    parser.add_argument("--latency-seconds", type=int, default=20)
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "auditflow"], cwd=ROOT, check=True)
    results = []
    for run in range(args.runs):
        r = one_run(args, run)
        results.append(r)
        print(f"run {run + 1}: " + ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()), flush=True)
    medians = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print("\nmedian of %d runs (machine: %d cores)" % (len(results), os.cpu_count()))
    for k, v in medians.items():
        print(f"  {k:28s} {v:12.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": results, "median": medians, "args": vars(args)}, f, indent=2)


if __name__ == "__main__":
    main()
