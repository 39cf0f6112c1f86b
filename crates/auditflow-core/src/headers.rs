//! [`Headers`]: the few string headers a message carries.
//!
//! A message has two to four headers (correlation id, `traceparent`, ingest
//! time, a delivery count). A `BTreeMap` spends one ~550-byte node on them;
//! a sorted vector of pairs spends ~200 bytes, and every role holds
//! thousands of messages in flight (ingest while RabbitMQ confirms them,
//! analyze its prefetched deliveries). Lookups are a binary search over a
//! handful of names. The map's behaviour is kept: one value per name,
//! iteration in name order, serialized as a JSON object.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Message headers (correlation id, W3C `traceparent`, ingest time, ...):
/// one value per name, iterated in name order.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

/// Iterator over `(name, value)` pairs in name order.
pub type Iter<'a> = std::iter::Map<
    std::slice::Iter<'a, (String, String)>,
    fn(&'a (String, String)) -> (&'a String, &'a String),
>;

fn as_refs(pair: &(String, String)) -> (&String, &String) {
    (&pair.0, &pair.1)
}

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// No headers, with room for `n` without reallocating.
    pub fn with_capacity(n: usize) -> Self {
        Headers(Vec::with_capacity(n))
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(name))
    }

    /// Sets `name` to `value`; returns the value it replaces, if any.
    pub fn insert(&mut self, name: String, value: String) -> Option<String> {
        match self.position(&name) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (name, value));
                None
            }
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&String> {
        self.position(name).ok().map(|i| &self.0[i].1)
    }

    /// True when `name` is set.
    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// Removes `name`; returns its value, if it was set.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.position(name).ok().map(|i| self.0.remove(i).1)
    }

    /// How many headers are set.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when none is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `(name, value)` pairs in name order.
    pub fn iter(&self) -> Iter<'_> {
        self.0
            .iter()
            .map(as_refs as fn(&(String, String)) -> (&String, &String))
    }

    /// The names in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> + '_ {
        self.0.iter().map(|(k, _)| k)
    }
}

impl std::ops::Index<&str> for Headers {
    type Output = String;

    /// The value of `name`.
    ///
    /// # Panics
    ///
    /// When `name` is not set (as a map's index does); use [`Headers::get`]
    /// where it may not be.
    fn index(&self, name: &str) -> &String {
        match self.get(name) {
            Some(value) => value,
            None => panic!("no header named {name:?}"),
        }
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a String, &'a String);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl FromIterator<(String, String)> for Headers {
    /// Later pairs win over earlier ones with the same name, as in a map.
    fn from_iter<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        let mut headers = Headers::new();
        headers.extend(pairs);
        headers
    }
}

impl Extend<(String, String)> for Headers {
    fn extend<I: IntoIterator<Item = (String, String)>>(&mut self, pairs: I) {
        for (name, value) in pairs {
            self.insert(name, value);
        }
    }
}

impl<const N: usize> From<[(String, String); N]> for Headers {
    fn from(pairs: [(String, String); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Read as a map so a JSON object with a repeated name keeps the
        // last value, exactly as the `BTreeMap` this type replaced did.
        let map = BTreeMap::<String, String>::deserialize(deserializer)?;
        let mut headers = Headers::with_capacity(map.len());
        // Already in name order: no search needed.
        headers.0.extend(map);
        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        v.to_string()
    }

    #[test]
    fn behaves_like_a_map_in_name_order() {
        let mut h = Headers::new();
        assert!(h.is_empty());
        assert_eq!(h.insert(s("traceparent"), s("t1")), None);
        assert_eq!(h.insert(s("x-correlation-id"), s("c")), None);
        assert_eq!(h.insert(s("a-first"), s("a")), None);
        assert_eq!(h.insert(s("traceparent"), s("t2")), Some(s("t1")));
        assert_eq!(h.len(), 3);
        assert_eq!(h.get("traceparent"), Some(&s("t2")));
        assert_eq!(h.get("missing"), None);
        assert!(h.contains_key("a-first"));
        let names: Vec<&str> = h.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["a-first", "traceparent", "x-correlation-id"]);
        assert_eq!(h.remove("a-first"), Some(s("a")));
        assert_eq!(h.remove("a-first"), None);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn serializes_as_the_json_object_the_map_did() {
        let h: Headers = [(s("b"), s("2")), (s("a"), s("1")), (s("b"), s("3"))].into();
        let json = serde_json::to_string(&h).expect("serialize");
        assert_eq!(json, r#"{"a":"1","b":"3"}"#);
        let map: BTreeMap<String, String> =
            [(s("b"), s("3")), (s("a"), s("1"))].into_iter().collect();
        assert_eq!(json, serde_json::to_string(&map).expect("serialize map"));
        let back: Headers = serde_json::from_str(r#"{"z":"9","a":"1","a":"2"}"#).expect("parse");
        assert_eq!(back.get("a"), Some(&s("2")));
        let names: Vec<&String> = back.iter().map(|(k, _)| k).collect();
        assert_eq!(names, [&s("a"), &s("z")]);
        assert!(serde_json::from_str::<Headers>(r#"{"a":1}"#).is_err());
    }

    #[test]
    fn matches_a_btreemap_on_any_sequence_of_operations() {
        // A small deterministic generator: inserts and removes over a few
        // names, checked against the map after every step.
        let names = [
            "x-a",
            "traceparent",
            "b",
            "x-correlation-id",
            "a",
            "x-ingested-at",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut h = Headers::new();
        let mut m = BTreeMap::new();
        for step in 0..2000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let name = names[(state % names.len() as u64) as usize].to_string();
            if state.is_multiple_of(3) {
                assert_eq!(h.remove(&name), m.remove(&name), "step {step}");
            } else {
                let value = format!("v{step}");
                assert_eq!(h.insert(name.clone(), value.clone()), m.insert(name, value));
            }
            assert_eq!(h.len(), m.len());
            assert!(h.iter().eq(m.iter()), "step {step}");
        }
    }
}
