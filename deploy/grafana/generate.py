#!/usr/bin/env python3
"""Writes AuditFlow's Grafana dashboards (deploy/grafana/*.json).

The JSON files are generated from this one description so that panels stay
consistent; edit here and run `deploy/grafana/generate.py`. `--check` fails
when the committed JSON differs from what this script writes (scripts/test.sh).
Every metric a query names must be one AuditFlow exports: the end-to-end test
crates/auditflow/tests/observability.rs compares against a live /metrics.
"""
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent


def q(expr, legend=""):
    return {"expr": expr, "legendFormat": legend}


def panel(title, targets, unit="short", kind="timeseries", description=""):
    return {"title": title, "targets": targets, "unit": unit, "kind": kind,
            "description": description}


def rate(metric, by="", window="5m", where=""):
    sel = f"{metric}{{{where}}}" if where else metric
    inner = f"rate({sel}[{window}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def quantile(metric, qv, by="", where=""):
    sel = f"{metric}_bucket{{{where}}}" if where else f"{metric}_bucket"
    keep = f"le, {by}" if by else "le"
    return f"histogram_quantile({qv}, sum by ({keep}) (rate({sel}[5m])))"


INGEST = 'method="POST",route="/v1/events"'
READS = 'method="GET",route!~"/livez|/readyz|/healthz|/metrics|unmatched"'

OVERVIEW = [
    panel("Events ingested /s", [q(rate("auditflow_events_ingested_total"), "ingested")]),
    panel("Events processed /s by result", [q(rate("auditflow_events_processed_total", "result"), "{{result}}")]),
    panel("Alerts triggered /s by rule", [q(rate("auditflow_alerts_triggered_total", "rule_id, severity"), "{{rule_id}} {{severity}}")]),
    panel("Notifications /s by channel and result", [q(rate("auditflow_notifications_total", "channel, result"), "{{channel}} {{result}}")]),
    panel("Ingest to alert stored", [q(quantile("auditflow_ingest_to_alert_seconds", 0.5), "p50"),
                                      q(quantile("auditflow_ingest_to_alert_seconds", 0.99), "p99")], unit="s"),
    panel("Queue depth", [q("sum by (queue) (auditflow_queue_depth)", "{{queue}}")]),
    panel("Dead letters", [q("sum by (queue) (auditflow_dead_letters)", "{{queue}}")]),
    panel("Dependencies up (1) / degraded (1)", [q("min by (dependency) (auditflow_dependency_up)", "{{dependency}} up"),
                                                  q("max by (dependency) (auditflow_dependency_degraded)", "{{dependency}} degraded")]),
    panel("Error budget remaining", [q("min by (slo) (auditflow_slo_error_budget_remaining_ratio)", "{{slo}}")], unit="percentunit"),
    panel("Processes up", [q('up{job=~"auditflow.*"}', "{{instance}}")]),
    panel("Role instances (monitor heartbeats)", [q("max by (role, status) (auditflow_monitor_role_instances)", "{{role}} {{status}}")]),
]

INGEST_ROLE = [
    panel("POST /v1/events /s by code", [q(rate("auditflow_http_request_duration_seconds_count", "code", where=INGEST), "{{code}}")]),
    panel("POST /v1/events latency", [q(quantile("auditflow_http_request_duration_seconds", 0.5, where=INGEST), "p50"),
                                       q(quantile("auditflow_http_request_duration_seconds", 0.99, where=INGEST), "p99")], unit="s"),
    panel("Events accepted /s", [q(rate("auditflow_events_ingested_total"), "accepted")]),
    panel("Items refused /s by reason", [q(rate("auditflow_events_rejected_total", "result"), "{{result}}")]),
    panel("Events queue depth", [q('sum(auditflow_queue_depth{queue="audit_events"})', "ready")]),
    panel("Broker calls /s by outcome", [q(rate("auditflow_resilience_calls_total", "outcome", where='dependency="broker"'), "{{outcome}}")]),
]

ANALYZE_ROLE = [
    panel("Events processed /s by result", [q(rate("auditflow_events_processed_total", "result"), "{{result}}")]),
    panel("Ingest to analysed (per event)", [q(quantile("auditflow_event_analysis_latency_seconds", 0.5), "p50"),
                                             q(quantile("auditflow_event_analysis_latency_seconds", 0.99), "p99")], unit="s"),
    panel("Batch processing time", [q(quantile("auditflow_event_processing_duration_seconds", 0.99), "p99")], unit="s"),
    panel("Alerts triggered /s by rule", [q(rate("auditflow_alerts_triggered_total", "rule_id"), "{{rule_id}}")]),
    panel("Store query time p99 by operation", [q(quantile("auditflow_store_query_duration_seconds", 0.99, by="operation"), "{{operation}}")], unit="s"),
    panel("Window state calls /s by outcome", [q(rate("auditflow_resilience_calls_total", "outcome", where='dependency="windows"'), "{{outcome}}")]),
    panel("Dead-lettered events", [q('sum(auditflow_dead_letters{queue="audit_events"})', "audit_events")]),
]

NOTIFY_ROLE = [
    panel("Notifications /s by channel and result", [q(rate("auditflow_notifications_total", "channel, result"), "{{channel}} {{result}}")]),
    panel("Ingest to alert stored", [q(quantile("auditflow_ingest_to_alert_seconds", 0.99), "p99")], unit="s"),
    panel("Alerts queue depth", [q('sum(auditflow_queue_depth{queue="audit_alerts"})', "ready")]),
    # A webhook channel's policy is named after the channel.
    panel("Channel breaker state (0 closed, 1 open, 2 half-open)", [q('max by (dependency) (auditflow_resilience_breaker_state{dependency!~"broker|store|windows"})', "{{dependency}}")]),
    panel("Retries /s by dependency", [q(rate("auditflow_resilience_retries_total", "dependency"), "{{dependency}}")]),
    panel("Store query time p99 by operation", [q(quantile("auditflow_store_query_duration_seconds", 0.99, by="operation"), "{{operation}}")], unit="s"),
]

READ_API_ROLE = [
    panel("Reads /s by route", [q(rate("auditflow_http_request_duration_seconds_count", "route", where=READS), "{{route}}")]),
    panel("Read latency p99 by route", [q(quantile("auditflow_http_request_duration_seconds", 0.99, by="route", where=READS), "{{route}}")], unit="s"),
    panel("Read errors (5xx) /s", [q(rate("auditflow_http_request_duration_seconds_count", "route, code", where=READS + ',code=~"5.."'), "{{route}} {{code}}")]),
    panel("Store query time p99 by operation", [q(quantile("auditflow_store_query_duration_seconds", 0.99, by="operation"), "{{operation}}")], unit="s"),
]

RESILIENCE = [
    panel("Breaker state by dependency", [q("max by (dependency) (auditflow_resilience_breaker_state)", "{{dependency}}")]),
    panel("Breaker transitions /s", [q(rate("auditflow_resilience_breaker_transitions_total", "dependency, to"), "{{dependency}} -> {{to}}")]),
    panel("Calls /s by dependency and outcome", [q(rate("auditflow_resilience_calls_total", "dependency, outcome"), "{{dependency}} {{outcome}}")]),
    panel("Call time p99 by dependency", [q(quantile("auditflow_resilience_call_duration_seconds", 0.99, by="dependency"), "{{dependency}}")], unit="s"),
    panel("Rejections /s by reason", [q(rate("auditflow_resilience_rejections_total", "dependency, reason"), "{{dependency}} {{reason}}")]),
    panel("Retry budget exhausted /s", [q(rate("auditflow_resilience_budget_exhausted_total", "dependency"), "{{dependency}}")]),
]

SLO = [
    panel("Error budget remaining (in-process)", [q("min by (slo) (auditflow_slo_error_budget_remaining_ratio)", "{{slo}}")], unit="percentunit"),
    panel("SLI over the period vs objective", [q("min by (slo) (auditflow_slo_sli_ratio)", "{{slo}} SLI"),
                                               q("max by (slo) (auditflow_slo_objective_ratio)", "{{slo}} objective")], unit="percentunit"),
    panel("Burn rate by window (in-process)", [q("max by (slo, window) (auditflow_slo_burn_rate)", "{{slo}} {{window}}")]),
    panel("Burn-rate alerts firing (in-process)", [q("max by (slo, alert) (auditflow_slo_alert_firing)", "{{slo}} {{alert}}")]),
    panel("Burn rate 1h, cluster-wide (Prometheus rules)", [q("auditflow:slo_errors:ratio_rate1h / on(slo) group_left() (1 - auditflow:slo_objective:ratio)", "{{slo}}")]),
    panel("Burn rate 5m, cluster-wide (Prometheus rules)", [q("auditflow:slo_errors:ratio_rate5m / on(slo) group_left() (1 - auditflow:slo_objective:ratio)", "{{slo}}")]),
]

DASHBOARDS = {
    "overview": ("AuditFlow overview", OVERVIEW),
    "ingest": ("AuditFlow ingest", INGEST_ROLE),
    "analyze": ("AuditFlow analyze", ANALYZE_ROLE),
    "notify": ("AuditFlow notify", NOTIFY_ROLE),
    "read-api": ("AuditFlow read API", READ_API_ROLE),
    "resilience": ("AuditFlow resilience", RESILIENCE),
    "slo": ("AuditFlow SLOs", SLO),
}


def render(uid, title, panels):
    out = []
    for i, p in enumerate(panels):
        targets = [dict(t, refId=chr(ord("A") + j), datasource={"type": "prometheus", "uid": "${datasource}"})
                   for j, t in enumerate(p["targets"])]
        out.append({
            "id": i + 1,
            "type": p["kind"],
            "title": p["title"],
            "description": p["description"],
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"x": (i % 2) * 12, "y": (i // 2) * 8, "w": 12, "h": 8},
            "fieldConfig": {"defaults": {"unit": p["unit"]}, "overrides": []},
            "targets": targets,
        })
    return {
        "uid": f"auditflow-{uid}",
        "title": title,
        "tags": ["auditflow"],
        "schemaVersion": 39,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{
            "name": "datasource", "type": "datasource", "query": "prometheus",
            "label": "Prometheus", "current": {}, "hide": 0,
        }]},
        "panels": out,
    }


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for uid, (title, panels) in DASHBOARDS.items():
        text = json.dumps(render(uid, title, panels), indent=2) + "\n"
        path = HERE / f"{uid}.json"
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        sys.exit(f"stale dashboards (run deploy/grafana/generate.py): {', '.join(stale)}")


if __name__ == "__main__":
    main()
