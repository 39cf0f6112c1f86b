//! The Lua scripts, the key layout they work on, and their replies.
//!
//! [`OBSERVE`] (`observe.lua`) decides the observations of one group
//! atomically, mirroring [`auditflow_core::window::GroupWindow::observe`];
//! [`EPOCH`] (`epoch.lua`) creates the epoch marker if absent. Both run with
//! `EVALSHA`, loaded on `NOSCRIPT` (a restarted Redis forgets its scripts).

use auditflow_core::window::{Member, Observation, DECISION_GRACE};
use redis::{Script, ScriptInvocation, Value};

use crate::error::protocol;

/// Source of the observe script.
pub const OBSERVE: &str = include_str!("observe.lua");

/// Source of the epoch script.
pub const EPOCH: &str = include_str!("epoch.lua");

/// The keys holding one `(rule, group)` window.
///
/// All four share the base `<prefix>w:{<len(rule)>:<rule>:<group>}` (the
/// length makes the encoding unambiguous whatever the rule id holds) and
/// carry the same TTL, refreshed by every write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupKeys {
    /// Sorted set: event id → event time (µs since the Unix epoch).
    pub times: String,
    /// Sorted set: event id → when it was first observed (µs, processing time).
    pub observed: String,
    /// Sorted set of the events that fired: event id → event time.
    pub fired: String,
    /// Hash: event id → recorded decision `fire:count:observed`, plus
    /// `_epoch` → the epoch the group was built under.
    pub decisions: String,
}

impl GroupKeys {
    /// The keys of `(rule_id, group_key)` under `prefix`.
    pub fn new(prefix: &str, rule_id: &str, group_key: &str) -> GroupKeys {
        let base = format!("{prefix}w:{{{}:{rule_id}:{group_key}}}", rule_id.len());
        GroupKeys {
            times: format!("{base}:z"),
            observed: format!("{base}:o"),
            fired: format!("{base}:f"),
            decisions: format!("{base}:h"),
        }
    }

    /// The four keys, in the order the script takes them.
    pub fn all(&self) -> [&str; 4] {
        [&self.times, &self.observed, &self.fired, &self.decisions]
    }
}

/// The key of the epoch marker under `prefix`.
pub fn epoch_key(prefix: &str) -> String {
    format!("{prefix}epoch")
}

/// The loaded scripts.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) observe: Script,
    pub(crate) epoch: Script,
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        Scripts {
            observe: Script::new(OBSERVE),
            epoch: Script::new(EPOCH),
        }
    }
}

fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// One call of the observe script for one group.
pub(crate) struct ObserveCall<'a> {
    pub(crate) epoch_key: &'a str,
    pub(crate) keys: &'a GroupKeys,
    pub(crate) epoch: &'a str,
    /// Processing time in µs, or `None` for the server's clock.
    pub(crate) now: Option<i64>,
    pub(crate) ttl_slack: std::time::Duration,
    /// Members from the durable source, when the group is being rebuilt.
    pub(crate) rebuild: Option<&'a [Member]>,
    pub(crate) observations: &'a [&'a Observation],
}

impl ObserveCall<'_> {
    /// The script invocation (`EVALSHA` with these keys and arguments).
    pub(crate) fn invocation<'s>(&self, script: &'s Script) -> ScriptInvocation<'s> {
        let mut inv = script.prepare_invoke();
        inv.key(self.epoch_key);
        for key in self.keys.all() {
            inv.key(key);
        }
        inv.arg(self.epoch)
            .arg(self.now.map(|n| n.to_string()).unwrap_or_default())
            .arg(micros(DECISION_GRACE))
            .arg(micros(self.ttl_slack));
        match self.rebuild {
            None => {
                inv.arg(-1i64);
            }
            Some(members) => {
                inv.arg(members.len());
                for m in members {
                    inv.arg(m.event_id.hyphenated().to_string())
                        .arg(m.micros)
                        .arg(u8::from(m.decision.fire))
                        .arg(m.decision.count)
                        .arg(m.observed_micros);
                }
            }
        }
        for o in self.observations {
            inv.arg(o.event_id.hyphenated().to_string())
                .arg(o.event_time.timestamp_micros())
                .arg(micros(o.spec.window))
                .arg(micros(o.spec.cooldown))
                .arg(o.spec.threshold);
        }
        inv
    }
}

/// What the observe script answered for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Decided and recorded: `(fire, count)` per observation, in order.
    Decided(Vec<(bool, u32)>),
    /// The epoch marker is gone: Redis lost its data.
    Lost,
    /// The caller's epoch is outdated; this is the current one.
    Epoch(String),
    /// The group must be rebuilt from the durable source first.
    Rebuild,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".to_string()),
        _ => None,
    }
}

impl Reply {
    /// Parses the script's reply for a call with `expected` observations.
    pub(crate) fn parse(
        value: &Value,
        expected: usize,
    ) -> Result<Reply, auditflow_core::window::WindowError> {
        let Value::Array(items) = value else {
            return Err(protocol(format!("{value:?}")));
        };
        let tag = items.first().and_then(text);
        match tag.as_deref() {
            Some("LOST") => Ok(Reply::Lost),
            Some("REBUILD") => Ok(Reply::Rebuild),
            Some("EPOCH") => items
                .get(1)
                .and_then(text)
                .map(Reply::Epoch)
                .ok_or_else(|| protocol("EPOCH without a marker")),
            Some("OK") if items.len() == 1 + 2 * expected => items[1..]
                .chunks(2)
                .map(|pair| match pair {
                    [Value::Int(fire), Value::Int(count)] => Ok((
                        *fire != 0,
                        u32::try_from(*count).map_err(|_| protocol("count out of range"))?,
                    )),
                    other => Err(protocol(format!("{other:?}"))),
                })
                .collect::<Result<_, _>>()
                .map(Reply::Decided),
            _ => Err(protocol(format!("{value:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unambiguous_and_share_a_hash_tag() {
        let a = GroupKeys::new("p:", "r\u{1f}x", "g");
        let b = GroupKeys::new("p:", "r", "x\u{1f}g");
        assert_ne!(a, b);
        assert_eq!(a.times, "p:w:{3:r\u{1f}x:g}:z");
        for key in a.all() {
            assert!(key.starts_with("p:w:{3:r\u{1f}x:g}:"));
        }
        assert_eq!(epoch_key("p:"), "p:epoch");
    }

    #[test]
    fn replies_parse() {
        let ok = Value::Array(vec![
            Value::BulkString(b"OK".to_vec()),
            Value::Int(1),
            Value::Int(3),
        ]);
        assert_eq!(
            Reply::parse(&ok, 1).unwrap(),
            Reply::Decided(vec![(true, 3)])
        );
        assert!(Reply::parse(&ok, 2).is_err(), "wrong arity");
        let lost = Value::Array(vec![Value::BulkString(b"LOST".to_vec())]);
        assert_eq!(Reply::parse(&lost, 5).unwrap(), Reply::Lost);
        let epoch = Value::Array(vec![
            Value::BulkString(b"EPOCH".to_vec()),
            Value::BulkString(b"abc:1".to_vec()),
        ]);
        assert_eq!(
            Reply::parse(&epoch, 1).unwrap(),
            Reply::Epoch("abc:1".into())
        );
        assert!(Reply::parse(&Value::Nil, 1).is_err());
    }
}
