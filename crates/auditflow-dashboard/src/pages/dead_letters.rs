//! Dead letters: what was given up on and why, and a button that re-drives
//! an item onto its queue once the cause is fixed.

use std::sync::Arc;

use auditflow_core::broker::{BrokerError, DeadLetter};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;

use crate::panel::{fetch, PANEL_TIMEOUT};
use crate::view::{self, Nav, BASE};
use crate::Dashboard;

/// Most dead letters listed per queue.
const LIMIT: usize = 100;
/// Longest payload excerpt shown (the whole payload is in the read API).
const PAYLOAD_EXCERPT: usize = 2000;

/// Query of `GET /dashboard/dead-letters`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    queue: Option<String>,
    /// Outcome of the last re-drive: `redriven`, `not-found`, `failed`.
    notice: Option<String>,
}

/// `GET /dashboard/dead-letters`.
pub async fn list(
    State(dashboard): State<Arc<Dashboard>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let signed_in = dashboard.signed_in(&headers);
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => {
            return super::bad_filter(
                "Dead letters",
                Nav::DeadLetters,
                signed_in,
                html! {},
                &rejection.body_text(),
            )
        }
    };
    let configured = &dashboard.sources.queues;
    let selected: Vec<&String> = match query.queue.as_deref().filter(|q| !q.is_empty()) {
        Some(queue) => configured.iter().filter(|q| *q == queue).collect(),
        None => configured.iter().collect(),
    };
    let mut sections = Vec::with_capacity(selected.len());
    for queue in selected {
        let letters = fetch(
            PANEL_TIMEOUT,
            dashboard.sources.broker.dead_letters(queue, LIMIT),
        )
        .await;
        sections.push((
            queue.as_str(),
            dashboard
                .memory
                .render_fresh("dead-letters", letters.map(|l| table(&l))),
        ));
    }
    let body = html! {
        h1 { "Dead letters" }
        @match query.notice.as_deref() {
            Some("redriven") => p.notice role="status" { "Re-driven: the message is back on its queue." },
            Some("not-found") => p.error role="alert" { "No such dead letter (already re-driven?)." },
            Some("failed") => p.error role="alert" { "The broker did not answer; nothing was re-driven. Try again." },
            _ => {},
        }
        form.filters method="get" action={ (BASE) "/dead-letters" } {
            div {
                label for="f-queue" { "queue" }
                select name="queue" id="f-queue" {
                    option value="" { "all" }
                    @for q in configured {
                        option value=(q) selected[query.queue.as_deref() == Some(q.as_str())] { (q) }
                    }
                }
            }
            div.actions { button type="submit" { "Show" } }
        }
        @for (queue, section) in &sections {
            section.panel.wide data-queue=(queue) {
                h2 { (queue) }
                (section)
            }
        }
    };
    view::page("Dead letters", Nav::DeadLetters, signed_in, body).into_response()
}

fn table(letters: &[DeadLetter]) -> Markup {
    html! {
        @if letters.is_empty() {
            p.muted { "Nothing was dead-lettered." }
        } @else {
            div.scroll {
                table.dead-letters {
                    thead { tr { th { "failed" } th { "reason" } th.num { "deliveries" } th { "message" } th { "" } } }
                    tbody {
                        @for l in letters {
                            tr data-dead-letter-id=(l.id) {
                                td { (view::time(&l.failed_at)) }
                                td.detail { (l.reason) }
                                td.num { (l.delivery_count) }
                                td {
                                    details {
                                        summary { code { (l.message_id) } }
                                        pre.json { (excerpt(&l.payload)) }
                                    }
                                }
                                td {
                                    form method="post" action={ (BASE) "/dead-letters/" (l.queue) "/" (l.id) "/redrive" } {
                                        button type="submit" { "Re-drive" }
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

fn excerpt(payload: &str) -> String {
    match payload.char_indices().nth(PAYLOAD_EXCERPT) {
        Some((cut, _)) => format!("{}…", &payload[..cut]),
        None => payload.to_string(),
    }
}

/// `POST /dashboard/dead-letters/{queue}/{id}/redrive`: re-drives, then back
/// to the list with the outcome (post/redirect/get, so a reload re-drives nothing).
pub async fn redrive(
    State(dashboard): State<Arc<Dashboard>>,
    Path((queue, id)): Path<(String, String)>,
) -> Response {
    let notice = if !dashboard.sources.queues.contains(&queue) {
        "not-found"
    } else {
        match fetch(PANEL_TIMEOUT, async {
            match dashboard.sources.broker.redrive(&queue, &id).await {
                Err(BrokerError::Rejected(_)) => Ok(false),
                other => other,
            }
        })
        .await
        {
            Ok(true) => {
                tracing::info!(
                    queue,
                    dead_letter = id,
                    "dead letter re-driven from the dashboard"
                );
                "redriven"
            }
            Ok(false) => "not-found",
            Err(reason) => {
                tracing::warn!(queue, dead_letter = id, reason, "dashboard re-drive failed");
                "failed"
            }
        }
    };
    let target = format!(
        "{BASE}/dead-letters{}",
        view::query_string(&[("queue", Some(&queue)), ("notice", Some(notice))])
    );
    Redirect::to(&target).into_response()
}
