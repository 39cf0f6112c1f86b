//! Parsing an event straight from JSON text, without a `Value` tree for the
//! whole object.
//!
//! Both ingest (every item of every request) and analyze (every delivery)
//! parse events, so this is on the hot path twice per event. Going through
//! `serde_json::Value` first built an ordered map of every top-level field
//! and then took the known ones out of it again; measured with perf on the
//! dev machine, that was a fifth of `auditflow up`'s CPU at full load. Here
//! each known field is read into a [`Raw`] slot as it is met and only the
//! unknown ones (kept, as the format requires) and `details` become
//! `Value`s.
//!
//! Validation is shared with [`Event::from_value`] ([`Fields::validate`]), so
//! both paths accept the same events and give the same reasons, in the same
//! order of precedence.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{EventError, ParsedEvent};

/// A known top-level field's value, as much of it as validation needs.
#[derive(Debug)]
pub(super) enum Raw {
    /// JSON `null`.
    Null,
    /// A string.
    Str(String),
    /// An object (only `details` may be one).
    Object(Map<String, Value>),
    /// A number, a boolean or an array: the wrong type for every known field.
    Other,
}

impl From<Value> for Raw {
    fn from(value: Value) -> Self {
        match value {
            Value::Null => Raw::Null,
            Value::String(s) => Raw::Str(s),
            Value::Object(map) => Raw::Object(map),
            _ => Raw::Other,
        }
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Raw, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_str<E>(self, s: &str) -> Result<Raw, E> {
        Ok(Raw::Str(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Raw, E> {
        Ok(Raw::Str(s))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Raw, E> {
        Ok(Raw::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Raw, E> {
        Ok(Raw::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Raw, E> {
        Ok(Raw::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Raw, E> {
        Ok(Raw::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Raw::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut out = Map::new();
        while let Some((key, value)) = map.next_entry::<String, Value>()? {
            out.insert(key, value);
        }
        Ok(Raw::Object(out))
    }
}

/// A map key, borrowed from the input when it has no escapes (serde's own
/// `Cow<str>` always allocates).
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key<'de>, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The known fields of one event object, before validation; `None` when
/// absent. A repeated field keeps its last value, as a `Value` map would.
#[derive(Debug, Default)]
pub(super) struct Fields {
    pub event_id: Option<Raw>,
    pub timestamp: Option<Raw>,
    pub severity: Option<Raw>,
    pub source_service: Option<Raw>,
    pub server_hostname: Option<Raw>,
    pub event_type: Option<Raw>,
    pub user_id: Option<Raw>,
    pub action_result: Option<Raw>,
    pub details: Option<Raw>,
    pub resource: Option<Raw>,
    pub client_ip: Option<Raw>,
}

impl Fields {
    /// The slot of known field `name`, `None` for a field AuditFlow does not know.
    pub(super) fn slot(&mut self, name: &str) -> Option<&mut Option<Raw>> {
        Some(match name {
            "event_id" => &mut self.event_id,
            "timestamp" => &mut self.timestamp,
            "severity" => &mut self.severity,
            "source_service" => &mut self.source_service,
            "server_hostname" => &mut self.server_hostname,
            "event_type" => &mut self.event_type,
            "user_id" => &mut self.user_id,
            "action_result" => &mut self.action_result,
            "details" => &mut self.details,
            "resource" => &mut self.resource,
            "client_ip" => &mut self.client_ip,
            _ => return None,
        })
    }
}

/// Deserializes one JSON value as an event. Only malformed JSON is a
/// deserialization error; a well-formed value that is not a valid event
/// yields `Ok(Err(reason))`, so that one bad item of an array does not fail
/// its neighbours.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventSeed;

impl<'de> DeserializeSeed<'de> for EventSeed {
    type Value = Result<ParsedEvent, EventError>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(EventVisitor)
    }
}

struct EventVisitor;

fn not_an_object<E>() -> Result<Result<ParsedEvent, EventError>, E> {
    Ok(Err(EventError::new("$", "an event must be a JSON object")))
}

impl<'de> Visitor<'de> for EventVisitor {
    type Value = Result<ParsedEvent, EventError>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Fields::default();
        let mut extra = Map::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match fields.slot(&key) {
                Some(slot) => *slot = Some(map.next_value::<Raw>()?),
                None => {
                    let value = map.next_value::<Value>()?;
                    extra.insert(key.into_owned(), value);
                }
            }
        }
        Ok(fields.validate(extra))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        not_an_object()
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        not_an_object()
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        not_an_object()
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        not_an_object()
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        not_an_object()
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        not_an_object()
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        not_an_object()
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        not_an_object()
    }
}
