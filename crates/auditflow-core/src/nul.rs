//! U+0000 in event and alert text.
//!
//! PostgreSQL keeps neither `text` nor `jsonb` holding U+0000 (SQLSTATE
//! `22021`, `22P05`). An event carrying one would be acknowledged by ingest
//! and then fail every attempt to store it: analyze stopped on it until the
//! broker's delivery limit dead-lettered it. Such events and alerts are
//! refused when they are parsed instead, in every mode, so that the
//! embedded and the PostgreSQL stores keep the same events and a client
//! hears why (HTTP 400, or a dead letter with the field's path).

use std::fmt::Write;

use serde_json::{Map, Value};

/// Why a field holding U+0000 is refused.
pub const NUL_REASON: &str = "contains a NUL character (U+0000), which the stores cannot keep";

/// Whether JSON text may hold U+0000 in a string or key. JSON can write it
/// only as the escape `\u0000` (raw control characters are invalid), so
/// text without that sequence holds none; text with it may (the sequence
/// can also be an escaped backslash followed by `u0000`).
pub fn may_hold_nul(json: &[u8]) -> bool {
    memchr::memmem::find(json, b"\\u0000").is_some()
}

/// The path of the first key or string holding U+0000 among `map`'s
/// entries (`prefix.key`, `prefix.key[2].inner`; just `key` without a
/// prefix), if any. A NUL inside a key is shown as `\u0000`.
pub fn nul_path(map: &Map<String, Value>, prefix: Option<&str>) -> Option<String> {
    // Every event goes through here: a read-only scan first, and the path
    // (which costs a string per key visited) only for the rare hit.
    if !map
        .iter()
        .any(|(key, value)| key.contains('\0') || holds_nul(value))
    {
        return None;
    }
    let mut path = prefix.unwrap_or_default().to_string();
    in_map(map, &mut path).then_some(path)
}

fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map
            .iter()
            .any(|(key, value)| key.contains('\0') || holds_nul(value)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fn in_map(map: &Map<String, Value>, path: &mut String) -> bool {
    map.iter().any(|(key, value)| {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(&key.replace('\0', "\\u0000"));
        let found = key.contains('\0') || in_value(value, path);
        if !found {
            path.truncate(len);
        }
        found
    })
}

fn in_value(value: &Value, path: &mut String) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
            let len = path.len();
            let _ = write!(path, "[{i}]");
            let found = in_value(item, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        Value::Object(map) => in_map(map, path),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn finds_the_path_of_the_first_nul_at_any_depth() {
        let details = map(json!({
            "ok": "fine",
            "n": 3,
            "list": ["a", {"deep": ["x", "y\u{0}"]}],
        }));
        assert_eq!(
            nul_path(&details, Some("details")).as_deref(),
            Some("details.list[1].deep[1]")
        );
        let extra = map(json!({"note": "a\u{0}b"}));
        assert_eq!(nul_path(&extra, None).as_deref(), Some("note"));
    }

    #[test]
    fn finds_a_nul_in_a_key() {
        let details = map(json!({"a\u{0}b": 1}));
        assert_eq!(
            nul_path(&details, Some("details")).as_deref(),
            Some("details.a\\u0000b")
        );
    }

    #[test]
    fn text_without_nul_passes() {
        let details = map(json!({"a": ["b", {"c": null, "d": true}], "e": 1.5}));
        assert_eq!(nul_path(&details, Some("details")), None);
        // A backslash followed by `u0000` is text, not a NUL.
        let escaped = map(serde_json::from_str(r#"{"path": "C:\\u0000"}"#).expect("json"));
        assert_eq!(nul_path(&escaped, None), None);
    }

    #[test]
    fn the_prefilter_sees_every_nul_json_can_write() {
        assert!(may_hold_nul(br#"{"a": "x\u0000"}"#));
        assert!(!may_hold_nul(br#"{"a": "x\u0001 plain text"}"#));
        // Serialised NULs always come out as the escape.
        let written = serde_json::to_vec(&json!({"k": "\u{0}"})).expect("json");
        assert!(may_hold_nul(&written));
    }
}
