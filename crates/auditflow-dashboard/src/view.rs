//! The page shell and small view helpers shared by every page.
//!
//! Everything is rendered with `maud`, which escapes every interpolated
//! value: event and alert content (attacker-controlled) can only ever appear
//! as text. Nothing here builds HTML by concatenating strings.

use auditflow_core::Severity;
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

/// Where every dashboard URL lives.
pub const BASE: &str = "/dashboard";

/// The pages of the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// `/dashboard`.
    Overview,
    /// `/dashboard/alerts`.
    Alerts,
    /// `/dashboard/events`.
    Events,
    /// `/dashboard/dead-letters`.
    DeadLetters,
    /// `/dashboard/health`.
    Health,
    /// The login page (no navigation).
    Login,
}

const NAV: [(Nav, &str, &str); 5] = [
    (Nav::Overview, "", "Overview"),
    (Nav::Alerts, "/alerts", "Alerts"),
    (Nav::Events, "/events", "Events"),
    (Nav::DeadLetters, "/dead-letters", "Dead letters"),
    (Nav::Health, "/health", "Health"),
];

/// A whole page: head, navigation, `body`. `signed_in` shows the sign-out
/// button (only when a token is configured).
pub fn page(title: &str, current: Nav, signed_in: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · AuditFlow" }
                link rel="stylesheet" href={ (BASE) "/assets/dashboard.css" };
                link rel="icon" href={ (BASE) "/assets/favicon.svg" } type="image/svg+xml";
                script defer src={ (BASE) "/assets/dashboard.js" } {}
            }
            body {
                header.top {
                    a.brand href=(BASE) { "AuditFlow" }
                    @if current != Nav::Login {
                        nav {
                            @for (nav, path, label) in NAV {
                                a href={ (BASE) (path) } aria-current=[(nav == current).then_some("page")] { (label) }
                            }
                        }
                        @if signed_in {
                            form.signout method="post" action={ (BASE) "/logout" } {
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" { (body) }
            }
        }
    }
}

/// A timestamp as people read it: `2026-11-22 21:46:30 UTC`.
pub fn format_time(ts: &DateTime<Utc>) -> String {
    ts.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A `<time>` element for `ts`.
pub fn time(ts: &DateTime<Utc>) -> Markup {
    html! { time datetime=(ts.to_rfc3339()) { (format_time(ts)) } }
}

/// A coloured severity badge.
pub fn severity(severity: Severity) -> Markup {
    let class = format!("badge sev-{}", severity.as_str().to_ascii_lowercase());
    html! { span class=(class) { (severity.as_str()) } }
}

/// A coloured up/degraded/down badge.
pub fn status(status: crate::sources::Status) -> Markup {
    let class = format!("badge status-{}", status.as_str());
    html! { span class=(class) { (status.as_str()) } }
}

/// A link to `url` only when it is plain `http(s)`; anything else (a
/// `javascript:` URL in a rule's playbook, say) is shown as text.
pub fn external_link(url: &str) -> Markup {
    let trimmed = url.trim();
    let lower = trimmed.to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        html! { a href=(trimmed) rel="noopener noreferrer" target="_blank" { (trimmed) } }
    } else if trimmed.is_empty() {
        html! { span.muted { "none" } }
    } else {
        html! { code { (trimmed) } }
    }
}

/// JSON shown as indented text.
pub fn json_block(value: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    html! { pre.json { (text) } }
}

/// A query string from `pairs`, percent-encoded, skipping empty values.
pub fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    let mut out = String::new();
    for (key, value) in pairs {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            continue;
        };
        out.push(if out.is_empty() { '?' } else { '&' });
        out.push_str(key);
        out.push('=');
        out.push_str(&percent_encode(value));
    }
    out
}

/// Percent-encodes everything but unreserved URL characters.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// A `<select>` of severities with `selected` chosen (or "any").
pub fn severity_select(selected: Option<&str>) -> Markup {
    html! {
        select name="severity" id="f-severity" {
            option value="" { "any" }
            @for sev in Severity::ALL {
                option value=(sev.as_str()) selected[selected.is_some_and(|s| s.eq_ignore_ascii_case(sev.as_str()))] { (sev.as_str()) }
            }
        }
    }
}

/// An en dash, for empty table cells.
pub fn empty() -> Markup {
    html! { "–" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_links_become_links() {
        assert!(external_link("https://wiki.example/playbooks/ssh")
            .0
            .starts_with("<a href=\"https://wiki.example/playbooks/ssh\""));
        let js = external_link("javascript:alert(1)").0;
        assert!(!js.contains("href"), "{js}");
        assert_eq!(js, "<code>javascript:alert(1)</code>");
        let quoted = external_link("https://x.example/\"><script>").0;
        assert!(!quoted.contains("<script>"), "{quoted}");
    }

    #[test]
    fn query_strings_are_encoded_and_skip_empty_values() {
        assert_eq!(
            query_string(&[
                ("user_id", Some("a b&c=<d>")),
                ("severity", Some("")),
                ("rule_id", None),
                ("q", Some("x"))
            ]),
            "?user_id=a%20b%26c%3D%3Cd%3E&q=x"
        );
        assert_eq!(query_string(&[("a", None)]), "");
    }
}
