//! Field paths, resolved once at load time.

use std::borrow::Cow;

use auditflow_core::Event;

/// A field of an event that conditions, `group_by` and templates refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FieldRef {
    EventType,
    ActionResult,
    UserId,
    ServerHostname,
    SourceService,
    Severity,
    /// Virtual: [`Event::effective_resource`].
    Resource,
    /// Virtual: [`Event::effective_client_ip`].
    ClientIp,
    /// Anything else, through [`Event::field`] (`details.a.b`, extras, `event_id`, `timestamp`).
    Path(String),
}

impl FieldRef {
    /// Validates the syntax of a dotted path and resolves it.
    pub(crate) fn parse(path: &str) -> Result<FieldRef, String> {
        if path.is_empty() {
            return Err("empty field path".into());
        }
        for segment in path.split('.') {
            if segment.is_empty() {
                return Err(format!("invalid field path \"{path}\": empty segment"));
            }
            if let Some(c) = segment
                .chars()
                .find(|c| !(c.is_alphanumeric() || *c == '_' || *c == '-'))
            {
                return Err(format!(
                    "invalid field path \"{path}\": unexpected character {c:?} (use letters, digits, '_', '-' and '.')"
                ));
            }
        }
        Ok(match path {
            "event_type" => FieldRef::EventType,
            "action_result" => FieldRef::ActionResult,
            "user_id" => FieldRef::UserId,
            "server_hostname" => FieldRef::ServerHostname,
            "source_service" => FieldRef::SourceService,
            "severity" => FieldRef::Severity,
            "resource" => FieldRef::Resource,
            "client_ip" => FieldRef::ClientIp,
            other => FieldRef::Path(other.to_string()),
        })
    }

    /// The field's value in `event`, if present (non-string leaves as JSON text).
    #[inline]
    pub(crate) fn get<'e>(&self, event: &'e Event) -> Option<Cow<'e, str>> {
        let s: &str = match self {
            FieldRef::EventType => &event.event_type,
            FieldRef::ActionResult => &event.action_result,
            FieldRef::UserId => &event.user_id,
            FieldRef::ServerHostname => &event.server_hostname,
            FieldRef::SourceService => &event.source_service,
            FieldRef::Severity => event.severity.as_str(),
            FieldRef::Resource => event.effective_resource()?,
            FieldRef::ClientIp => event.effective_client_ip()?,
            FieldRef::Path(path) => return event.field(path),
        };
        Some(Cow::Borrowed(s))
    }
}
