//! Subject templates: `{placeholder}` names an alert field, `{{` and `}}`
//! stand for braces. Parsed when the configuration loads, so a typo is a
//! startup error rather than a silently odd subject.

use auditflow_core::Alert;

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 10] = [
    "name",
    "severity",
    "rule",
    "rule_name",
    "host",
    "actor",
    "resource",
    "alert_id",
    "correlation_id",
    "environment",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(&'static str),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Piece>);

impl Template {
    /// Parses `text`; the error names the bad placeholder or brace.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(format!("'{{{name}' is not closed")),
                        }
                    }
                    let field = PLACEHOLDERS.iter().find(|p| **p == name).ok_or_else(|| {
                        format!(
                            "unknown placeholder {{{name}}}; known: {}",
                            PLACEHOLDERS.join(", ")
                        )
                    })?;
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Field(field));
                }
                '}' => return Err("a lone '}' (write '}}' for a brace)".into()),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Template(pieces))
    }

    /// The template filled in for `alert`, on one line: control characters
    /// (CR, LF...) become spaces. Alert fields come from audit events, which
    /// whoever is being audited can shape; a line break in a header value
    /// must not reach the message.
    pub fn render(&self, alert: &Alert) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Field(field) => out.push_str(&field_value(alert, field)),
            }
        }
        out.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    }
}

fn field_value(alert: &Alert, field: &str) -> String {
    match field {
        "name" => alert.alert_name.clone(),
        "severity" => alert.severity.to_string(),
        "rule" => alert.analysis_rule.rule_id.clone(),
        "rule_name" => alert.analysis_rule.rule_name.clone(),
        "host" => alert.impacted_resource.server_hostname.clone(),
        "actor" => alert.triggered_by.actor_id.clone(),
        "resource" => alert.impacted_resource.resource_id.clone(),
        "alert_id" => alert.alert_id.to_string(),
        "correlation_id" => alert.correlation_id.to_string(),
        "environment" => alert.metadata.environment.clone(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_and_escapes() {
        let t = Template::parse("{{x}} [{severity}] {name}").expect("valid");
        assert_eq!(
            t.0,
            vec![
                Piece::Text("{x} [".into()),
                Piece::Field("severity"),
                Piece::Text("] ".into()),
                Piece::Field("name"),
            ]
        );
        assert!(Template::parse("{sevrity}")
            .expect_err("unknown")
            .contains("unknown placeholder {sevrity}"));
        assert!(Template::parse("{name").is_err());
        assert!(Template::parse("a } b").is_err());
    }
}
