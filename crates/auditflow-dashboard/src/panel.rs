//! Panels that fail one at a time.
//!
//! Every panel fetches its data with [`fetch`], bounded by a timeout, so a
//! slow source cannot hang the page. [`PanelMemory`] remembers, per panel,
//! the last markup rendered from good data and since when the panel has been
//! failing, so a failed panel shows "data unavailable (reason, since when)"
//! above its last good content, marked stale, while the rest of the page
//! renders normally.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use maud::{html, Markup};

use crate::view::format_time;

/// How long any one panel may wait for its source. Shorter than the server's
/// request timeout, so the page always answers.
pub const PANEL_TIMEOUT: Duration = Duration::from_millis(2500);

/// Runs `source` for at most `timeout`; a failure or timeout becomes the
/// reason shown on the panel.
pub async fn fetch<T, E: std::fmt::Display>(
    timeout: Duration,
    source: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, source).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// What one panel last showed.
#[derive(Debug, Default)]
struct Record {
    last_good: Option<(DateTime<Utc>, Markup)>,
    failing_since: Option<DateTime<Utc>>,
}

/// The last good render and failure start of every overview panel.
#[derive(Debug, Default)]
pub struct PanelMemory {
    records: Mutex<HashMap<&'static str, Record>>,
}

impl PanelMemory {
    /// Renders panel `key` from `outcome`: the fresh markup when it
    /// succeeded (remembered as the last good one), else the unavailable
    /// notice followed by the last good markup, marked stale.
    pub fn render(&self, key: &'static str, outcome: Result<Markup, String>) -> Markup {
        self.render_with(key, outcome, true)
    }

    /// Like [`PanelMemory::render`], for panels whose content depends on the
    /// request (filters, an id): tracks since when `key` fails, but never
    /// shows another request's content as stale.
    pub fn render_fresh(&self, key: &'static str, outcome: Result<Markup, String>) -> Markup {
        self.render_with(key, outcome, false)
    }

    fn render_with(
        &self,
        key: &'static str,
        outcome: Result<Markup, String>,
        keep: bool,
    ) -> Markup {
        let now = Utc::now();
        // A poisoned lock only loses the memory, never the page.
        let mut records = match self.records.lock() {
            Ok(records) => records,
            Err(poisoned) => poisoned.into_inner(),
        };
        let record = records.entry(key).or_default();
        match outcome {
            Ok(markup) => {
                record.failing_since = None;
                if keep {
                    record.last_good = Some((now, markup.clone()));
                }
                markup
            }
            Err(reason) => {
                let since = *record.failing_since.get_or_insert(now);
                let stale = if keep {
                    record.last_good.as_ref()
                } else {
                    None
                };
                unavailable(&reason, since, stale)
            }
        }
    }
}

/// The notice of a panel whose source failed, with its stale content if any.
pub fn unavailable(
    reason: &str,
    since: DateTime<Utc>,
    stale: Option<&(DateTime<Utc>, Markup)>,
) -> Markup {
    html! {
        div.unavailable role="status" data-unavailable="true" {
            strong { "data unavailable" }
            " (" span.reason { (reason) } ", since " time datetime=(since.to_rfc3339()) { (format_time(&since)) } ")"
        }
        @if let Some((at, markup)) = stale {
            div.stale {
                p.stale-note { "last good data from " (format_time(at)) ", may be out of date" }
                (markup)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_its_start_time_and_shows_the_last_good_data_as_stale() {
        let memory = PanelMemory::default();
        let good = memory.render("queues", Ok(html! { p { "12 ready" } }));
        assert_eq!(good.0, "<p>12 ready</p>");

        let first = memory.render("queues", Err("broker unavailable".into())).0;
        assert!(first.contains("data unavailable"), "{first}");
        assert!(first.contains("broker unavailable"), "{first}");
        assert!(first.contains("class=\"stale\""), "{first}");
        assert!(first.contains("<p>12 ready</p>"), "{first}");

        let since = |html: &str| {
            html.split("datetime=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .map(str::to_string)
        };
        std::thread::sleep(Duration::from_millis(5));
        let second = memory.render("queues", Err("still down".into())).0;
        assert_eq!(since(&first), since(&second), "since moved: {second}");

        let recovered = memory.render("queues", Ok(html! { p { "0 ready" } })).0;
        assert_eq!(recovered, "<p>0 ready</p>");
    }

    #[test]
    fn a_panel_that_never_worked_has_no_stale_part() {
        let memory = PanelMemory::default();
        let html = memory.render("health", Err("<b>boom</b>".into())).0;
        assert!(!html.contains("stale"), "{html}");
        assert!(
            html.contains("&lt;b&gt;boom&lt;/b&gt;"),
            "reason not escaped: {html}"
        );
    }

    #[tokio::test]
    async fn fetch_cuts_off_a_source_that_hangs() {
        let outcome: Result<(), String> = fetch(
            Duration::from_millis(20),
            std::future::pending::<Result<(), String>>(),
        )
        .await;
        let reason = outcome.expect_err("a hanging source must fail");
        assert!(reason.contains("no answer within"), "{reason}");
    }
}
