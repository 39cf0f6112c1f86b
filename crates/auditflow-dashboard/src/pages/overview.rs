//! The overview: the state of the system at a glance, refreshed in place.
//!
//! Every panel has its own source and fails on its own. The panels are
//! fetched concurrently and served as one fragment
//! (`/dashboard/panels/overview`) that the page re-fetches every
//! [`REFRESH_MS`], so one request per viewer per refresh reaches the sources.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use auditflow_core::store::{AlertQuery, StoreCounts, StoredAlert, MAX_PAGE};
use auditflow_core::Severity;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{Duration, Utc};
use maud::{html, Markup};

use crate::panel::{fetch, PANEL_TIMEOUT};
use crate::view::{self, Nav, BASE};
use crate::{chart, throughput, Dashboard};

/// How often the browser refreshes live panels, in milliseconds.
pub const REFRESH_MS: u32 = 2000;
/// How many entries the "top" panels list.
const TOP: usize = 5;
/// How many alerts the "recent alerts" panel lists.
const RECENT: u32 = 10;

/// `GET /dashboard`.
pub async fn page(State(dashboard): State<Arc<Dashboard>>, headers: HeaderMap) -> Response {
    let signed_in = dashboard.signed_in(&headers);
    let body = html! {
        h1 { "Overview" }
        div #overview data-refresh={ (BASE) "/panels/overview" } data-every=(REFRESH_MS) aria-live="polite" {
            (panels(&dashboard).await)
        }
    };
    view::page("Overview", Nav::Overview, signed_in, body).into_response()
}

/// `GET /dashboard/panels/{name}`: the live fragment of the overview or health page.
pub async fn panel(State(dashboard): State<Arc<Dashboard>>, Path(name): Path<String>) -> Response {
    match name.as_str() {
        "overview" => panels(&dashboard).await.into_response(),
        "health" => super::health::panel(&dashboard, true).await.into_response(),
        _ => (StatusCode::NOT_FOUND, "no such panel").into_response(),
    }
}

/// Every overview panel, fetched concurrently.
async fn panels(dashboard: &Dashboard) -> Markup {
    let sources = &dashboard.sources;
    let counts = fetch(PANEL_TIMEOUT, sources.store.counts());
    let last_hour = AlertQuery {
        from: Some(Utc::now() - Duration::hours(1)),
        limit: MAX_PAGE,
        ..AlertQuery::default()
    };
    let newest = AlertQuery {
        limit: RECENT,
        ..AlertQuery::default()
    };
    let breakdown = fetch(PANEL_TIMEOUT, sources.store.alerts(&last_hour));
    let recent = fetch(PANEL_TIMEOUT, sources.store.alerts(&newest));
    let queues = queue_stats(dashboard);
    let health = super::health::panel(dashboard, false);
    let (counts, breakdown, recent, queues, health) =
        tokio::join!(counts, breakdown, recent, queues, health);

    let memory = &dashboard.memory;
    let throughput = counts.map(|counts| {
        dashboard.throughput.record(Instant::now(), counts);
        throughput_panel(dashboard, counts)
    });
    let breakdown = breakdown.map(|page| Breakdown::of(&page.items, page.next_cursor.is_some()));
    html! {
        div.grid {
            (section("Events and alerts per second", "throughput", memory.render("throughput", throughput)))
            (section("Alerts per minute, last hour", "timeline",
                memory.render("timeline", breakdown.as_ref().map(Breakdown::timeline).map_err(Clone::clone))))
            (section("Alerts by rule, last hour", "by-rule",
                memory.render("by-rule", breakdown.as_ref().map(|b| chart::bars(&b.by_rule)).map_err(Clone::clone))))
            (section("Alerts by severity, last hour", "by-severity",
                memory.render("by-severity", breakdown.as_ref().map(|b| chart::bars(&b.by_severity)).map_err(Clone::clone))))
            (section("Top users in alerts", "top-users",
                memory.render("top-users", breakdown.as_ref().map(|b| chart::bars(&b.top_users)).map_err(Clone::clone))))
            (section("Top hosts in alerts", "top-hosts",
                memory.render("top-hosts", breakdown.as_ref().map(|b| chart::bars(&b.top_hosts)).map_err(Clone::clone))))
            (section("Queues", "queues", memory.render("queues", queues)))
            (section("Health", "health", health))
            (section("SLOs", "slo", slo_panel(&sources.slo.reports())))
            (wide_section("Recent alerts", "recent-alerts",
                memory.render("recent-alerts", recent.map(|page| super::alerts::table(&page.items)))))
        }
    }
}

fn section(title: &str, key: &str, body: Markup) -> Markup {
    html! {
        section.panel id={ "panel-" (key) } {
            h2 { (title) }
            (body)
        }
    }
}

fn wide_section(title: &str, key: &str, body: Markup) -> Markup {
    html! {
        section.panel.wide id={ "panel-" (key) } {
            h2 { (title) " " a.more href={ (BASE) "/alerts" } { "all alerts" } }
            (body)
        }
    }
}

fn throughput_panel(dashboard: &Dashboard, totals: StoreCounts) -> Markup {
    let rates = dashboard.throughput.rates();
    html! {
        @if rates.events.is_empty() {
            p.muted { "Measuring: rates appear after the next refresh." }
        } @else {
            (chart::columns("events stored per second", &rates.events, "/s", throughput::KEEP - 1))
            (chart::columns("alerts stored per second", &rates.alerts, "/s", throughput::KEEP - 1))
        }
        p.totals { span { (totals.events) " events" } " · " span { (totals.alerts) " alerts" } " stored" }
    }
}

/// Each SLO: objective, SLI and error budget over its period, and the
/// burn-rate alerts firing now.
fn slo_panel(reports: &[auditflow_slo::SloReport]) -> Markup {
    let percent = |ratio: f64| format!("{:.3}%", ratio * 100.0);
    html! {
        @if reports.is_empty() {
            p.muted { "No SLO is configured." }
        } @else {
            // Inside `.scroll`: on a phone the table scrolls, not the page.
            div.scroll {
                table {
                    thead { tr { th { "SLO" } th.num { "SLI" } th.num { "budget left" } th { "alerts" } } }
                    tbody {
                        @for report in reports {
                            @let budget = report.error_budget_remaining;
                            tr data-slo=(report.name) {
                                th.slo-name scope="row" {
                                    (report.name)
                                    br;
                                    span.muted { "objective " (percent(report.objective)) }
                                }
                                td.num { (percent(report.sli)) }
                                td.num.warn[budget < 0.25] { (format!("{:.1}%", budget * 100.0)) }
                                td {
                                    @let firing: Vec<_> = report.firing().collect();
                                    @if firing.is_empty() {
                                        span.muted { "none" }
                                    } @else {
                                        @for alert in firing {
                                            span class={ "badge slo-" (alert.severity.as_str()) } data-firing=(alert.name) {
                                                (alert.severity.as_str()) ": " (alert.name)
                                            }
                                            " "
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn queue_stats(dashboard: &Dashboard) -> Result<Markup, String> {
    let sources = &dashboard.sources;
    // One deadline for all queues, so a hanging broker costs the page one
    // timeout, not one per queue.
    let rows = fetch(PANEL_TIMEOUT, async {
        let mut rows = Vec::with_capacity(sources.queues.len());
        for queue in &sources.queues {
            rows.push((queue.as_str(), sources.broker.stats(queue).await?));
        }
        Ok::<_, auditflow_core::broker::BrokerError>(rows)
    })
    .await?;
    Ok(html! {
        table {
            thead { tr { th { "queue" } th.num { "ready" } th.num { "unacked" } th.num { "dead letters" } } }
            tbody {
                @for (queue, stats) in &rows {
                    tr {
                        th scope="row" { (queue) }
                        td.num { (stats.ready) }
                        td.num { (stats.unacked) }
                        td.num {
                            @if stats.dead_lettered > 0 {
                                a.warn href={ (BASE) "/dead-letters?queue=" (queue) } { (stats.dead_lettered) }
                            } @else { "0" }
                        }
                    }
                }
            }
        }
    })
}

/// Alerts of the last hour, counted several ways.
#[derive(Debug, Clone, PartialEq)]
struct Breakdown {
    per_minute: Vec<f64>,
    by_rule: Vec<(String, u64)>,
    by_severity: Vec<(String, u64)>,
    top_users: Vec<(String, u64)>,
    top_hosts: Vec<(String, u64)>,
    truncated: bool,
}

impl Breakdown {
    fn of(alerts: &[StoredAlert], truncated: bool) -> Breakdown {
        let now = Utc::now();
        let mut per_minute = vec![0.0; 60];
        let mut rules = HashMap::<String, u64>::new();
        let mut severities = HashMap::<Severity, u64>::new();
        let mut users = HashMap::<String, u64>::new();
        let mut hosts = HashMap::<String, u64>::new();
        for stored in alerts {
            let alert = &stored.alert;
            let minutes_ago = (now - alert.timestamp).num_minutes();
            if (0..60).contains(&minutes_ago) {
                per_minute[59 - minutes_ago as usize] += 1.0;
            }
            *rules
                .entry(format!(
                    "{} {}",
                    alert.analysis_rule.rule_id, alert.analysis_rule.rule_name
                ))
                .or_default() += 1;
            *severities.entry(alert.severity).or_default() += 1;
            *users
                .entry(alert.triggered_by.actor_id.clone())
                .or_default() += 1;
            *hosts
                .entry(alert.impacted_resource.server_hostname.clone())
                .or_default() += 1;
        }
        let by_severity: Vec<(String, u64)> = Severity::ALL
            .iter()
            .rev()
            .filter_map(|s| severities.get(s).map(|n| (s.as_str().to_string(), *n)))
            .collect();
        Breakdown {
            per_minute,
            by_rule: ranked(rules, usize::MAX),
            by_severity,
            top_users: ranked(users, TOP),
            top_hosts: ranked(hosts, TOP),
            truncated,
        }
    }

    fn timeline(&self) -> Markup {
        html! {
            (chart::columns("alerts per minute", &self.per_minute, "", self.per_minute.len()))
            @if self.truncated {
                p.muted { "Counting the newest " (MAX_PAGE) " alerts only." }
            }
        }
    }
}

/// The `limit` largest counts, largest first (ties by name).
fn ranked(counts: HashMap<String, u64>, limit: usize) -> Vec<(String, u64)> {
    let mut items: Vec<(String, u64)> = counts.into_iter().collect();
    items.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    items.truncate(limit);
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_is_by_count_then_name_and_capped() {
        let counts: HashMap<String, u64> = [("b", 2), ("a", 2), ("c", 5), ("d", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(
            ranked(counts, 3),
            vec![("c".into(), 5), ("a".into(), 2), ("b".into(), 2)]
        );
    }
}
