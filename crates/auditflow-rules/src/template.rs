//! Alert text templates: literal text with `{field.path}` placeholders.

use auditflow_core::Event;

use crate::field::FieldRef;

/// What a missing field renders as (the legacy platform's convention).
pub(crate) const MISSING: &str = "N/A";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(FieldRef),
    Count,
    Threshold,
    WindowSecs,
}

/// Values of the rule-level placeholders when rendering.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Vars {
    pub count: u32,
    pub threshold: u32,
    pub window_secs: u64,
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Compiles `src`. `{{` and `}}` are literal braces. `{count}`,
    /// `{threshold}` and `{window_secs}` are accepted only when
    /// `threshold_vars` is true.
    pub(crate) fn parse(src: &str, threshold_vars: bool) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = src.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|&(_, n)| n) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|&(_, n)| n) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => {
                    return Err(format!(
                        "unmatched '}}' at byte {i} in template {src:?} (write '}}}}' for a literal brace)"
                    ))
                }
                '{' => {
                    let rest = &src[i + 1..];
                    let Some(end) = rest.find('}') else {
                        return Err(format!(
                            "unclosed '{{' at byte {i} in template {src:?} (write '{{{{' for a literal brace)"
                        ));
                    };
                    let name = rest[..end].trim();
                    // Skip the placeholder's characters.
                    for _ in rest[..=end].chars() {
                        chars.next();
                    }
                    let part = match name {
                        "count" | "threshold" | "window_secs" if !threshold_vars => {
                            return Err(format!(
                                "placeholder {{{name}}} is only available in threshold rules"
                            ))
                        }
                        "count" => Part::Count,
                        "threshold" => Part::Threshold,
                        "window_secs" => Part::WindowSecs,
                        path => Part::Field(
                            FieldRef::parse(path)
                                .map_err(|e| format!("placeholder {{{path}}}: {e}"))?,
                        ),
                    };
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    /// Renders against `event`; absent fields render as `N/A`.
    pub(crate) fn render(&self, event: &Event, vars: &Vars) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Field(f) => match f.get(event) {
                    Some(v) => out.push_str(&v),
                    None => out.push_str(MISSING),
                },
                // Writing to a String cannot fail.
                Part::Count => {
                    let _ = write!(out, "{}", vars.count);
                }
                Part::Threshold => {
                    let _ = write!(out, "{}", vars.threshold);
                }
                Part::WindowSecs => {
                    let _ = write!(out, "{}", vars.window_secs);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Event {
        Event::from_value(json!({
            "event_id": "0e9c7f9f-5b1d-4d0e-9a51-2f1f9d6f4c11",
            "timestamp": "2026-11-22T21:46:30Z",
            "source_service": "gen",
            "server_hostname": "prod-web-01",
            "event_type": "user_login",
            "severity": "WARNING",
            "user_id": "bob",
            "action_result": "FAILURE",
            "details": {"reason": "Incorrect password", "attempt": 4, "ip_address": "10.0.0.9"},
            "resource": "/srv/app"
        }))
        .unwrap()
        .event
    }

    fn render(src: &str) -> String {
        let vars = Vars {
            count: 5,
            threshold: 3,
            window_secs: 60,
        };
        Template::parse(src, true).unwrap().render(&event(), &vars)
    }

    #[test]
    fn renders_fields_virtual_fields_and_rule_values() {
        assert_eq!(
            render("{count}/{threshold} in {window_secs}s: '{user_id}' on {server_hostname}"),
            "5/3 in 60s: 'bob' on prod-web-01"
        );
        assert_eq!(
            render("{details.reason} #{details.attempt}"),
            "Incorrect password #4"
        );
        assert_eq!(
            render("{resource} from {client_ip}"),
            "/srv/app from 10.0.0.9"
        );
        assert_eq!(render("{severity} {event_type}"), "WARNING user_login");
        assert_eq!(render("{ user_id }"), "bob");
    }

    #[test]
    fn missing_fields_render_as_na_and_braces_escape() {
        assert_eq!(render("{details.nope}|{tenant.name}"), "N/A|N/A");
        assert_eq!(render("{{literal}} {user_id}"), "{literal} bob");
        assert_eq!(render("no placeholders"), "no placeholders");
        assert_eq!(render(""), "");
        assert_eq!(render("é{user_id}ü"), "ébobü");
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert!(Template::parse("{user_id", true)
            .unwrap_err()
            .contains("unclosed"));
        assert!(Template::parse("oops}", true)
            .unwrap_err()
            .contains("unmatched"));
        assert!(Template::parse("{}", true)
            .unwrap_err()
            .contains("empty field path"));
        assert!(Template::parse("{a b}", true)
            .unwrap_err()
            .contains("unexpected character"));
        let err = Template::parse("{count} events", false).unwrap_err();
        assert!(err.contains("only available in threshold rules"), "{err}");
    }
}
