//! The mail for one alert: headers (a Message-ID derived from the alert id)
//! and a plain-text body a person can act on.

use std::fmt::Write as _;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::Message;

use auditflow_core::Alert;

use super::template::Template;

/// The Message-ID of an alert's mail: the same for every (re)delivery of the
/// alert, so a mail client or a receiving pipeline can recognise the rare
/// duplicate (a crash after the server took the mail, before the delivery
/// record was written).
pub fn message_id(alert: &Alert) -> String {
    format!("<{}@auditflow>", alert.alert_id)
}

/// A message that cannot be built (an address the configuration let through
/// that lettre refuses): sending it again cannot help.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the mail: {0}")]
pub struct BuildError(#[from] lettre::error::Error);

/// Builds the mail for `alert`.
pub fn build(
    alert: &Alert,
    from: &Mailbox,
    to: &[Mailbox],
    subject: &Template,
) -> Result<Message, BuildError> {
    let mut builder = Message::builder()
        .message_id(Some(message_id(alert)))
        .from(from.clone())
        .subject(subject.render(alert));
    for recipient in to {
        builder = builder.to(recipient.clone());
    }
    Ok(builder
        .header(ContentType::TEXT_PLAIN)
        .body(plain_text(alert))?)
}

/// The body: what happened, who and where, then what to do, then the ids to
/// look it up with (`GET /v1/alerts/<alert_id>`).
pub fn plain_text(alert: &Alert) -> String {
    let mut body = String::new();
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    // Writing to a String cannot fail; the results are ignored for that reason.
    let _ = writeln!(body, "[{}] {}", alert.severity, alert.alert_name);
    let _ = writeln!(body);
    let rows = [
        ("Severity", alert.severity.to_string()),
        (
            "Rule",
            format!(
                "{} ({})",
                alert.analysis_rule.rule_id, alert.analysis_rule.rule_name
            ),
        ),
        (
            "Actor",
            format!(
                "{} {}",
                alert.triggered_by.actor_type, alert.triggered_by.actor_id
            ),
        ),
        ("Client IP", dash(&alert.triggered_by.client_ip)),
        ("Host", dash(&alert.impacted_resource.server_hostname)),
        (
            "Resource",
            format!(
                "{} {}",
                alert.impacted_resource.resource_type, alert.impacted_resource.resource_id
            ),
        ),
        ("Observed", dash(&alert.action_observed)),
        ("Source", dash(&alert.source_service_name)),
        ("Time", alert.timestamp.to_rfc3339()),
        ("Environment", dash(&alert.metadata.environment)),
    ];
    for (label, value) in rows {
        let _ = writeln!(body, "{:<13}{value}", format!("{label}:"));
    }
    let _ = writeln!(body);
    let _ = writeln!(body, "What happened");
    let _ = writeln!(body, "{}", dash(&alert.description));
    let _ = writeln!(body);
    let _ = writeln!(body, "What to do");
    let _ = writeln!(body, "{}", dash(&alert.metadata.remediation_guidance));
    let _ = writeln!(body, "Playbook:    {}", dash(&alert.metadata.playbook_url));
    if !alert.metadata.tags.is_empty() {
        let _ = writeln!(body, "Tags:        {}", alert.metadata.tags.join(", "));
    }
    let _ = writeln!(body);
    let _ = writeln!(body, "alert_id:       {}", alert.alert_id);
    let _ = writeln!(body, "correlation_id: {}", alert.correlation_id);
    body
}
