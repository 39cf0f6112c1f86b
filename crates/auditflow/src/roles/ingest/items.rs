//! Splitting a request body into items, one at a time.
//!
//! A body is one JSON value (an object, or an array of items) or NDJSON.
//! Items are handed to the caller as they are parsed, so a batch of
//! thousands of events never exists as thousands of `serde_json::Value`
//! trees at once: each item is turned into its wire message and dropped
//! before the next one is parsed, which keeps ingest's memory per request
//! close to the size of the body.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::Value;

use auditflow_core::event::EventError;

/// Why a body could not be split into items at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedBody(pub String);

/// Calls `each` with every item of `body` in order (an item that is not
/// valid JSON, possible in NDJSON, is passed as its error) until `limit`
/// items were passed; later items are only counted. Returns the number of
/// items in the body.
pub fn for_each_item(
    body: &[u8],
    limit: usize,
    mut each: impl FnMut(Result<Value, EventError>),
) -> Result<usize, MalformedBody> {
    let text = std::str::from_utf8(body).map_err(|_| MalformedBody("body is not UTF-8".into()))?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(MalformedBody("empty body".into()));
    }
    if trimmed.starts_with('[') {
        let mut de = serde_json::Deserializer::from_str(trimmed);
        let count = de
            .deserialize_seq(Items {
                each: &mut each,
                limit,
            })
            .and_then(|count| de.end().map(|()| count))
            .map_err(|_| MalformedBody("body is not valid JSON".into()))?;
        return Ok(count);
    }
    if let Ok(value) = serde_json::from_str::<Value>(trimmed) {
        each(Ok(value));
        return Ok(1);
    }
    let mut count = 0;
    for line in trimmed.lines().filter(|line| !line.trim().is_empty()) {
        if count < limit {
            each(serde_json::from_str::<Value>(line).map_err(|e| EventError {
                field: "$".into(),
                reason: format!("invalid JSON: {e}"),
            }));
        }
        count += 1;
    }
    Ok(count)
}

/// Visits a JSON array, passing each element on as soon as it is parsed.
struct Items<'a, F> {
    each: &'a mut F,
    limit: usize,
}

impl<'de, F: FnMut(Result<Value, EventError>)> Visitor<'de> for Items<'_, F> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut count = 0;
        while count < self.limit {
            match seq.next_element::<Value>()? {
                Some(value) => (self.each)(Ok(value)),
                None => return Ok(count),
            }
            count += 1;
        }
        // Over the limit: the request is refused, but its size is reported.
        while seq.next_element_seed(Skip)?.is_some() {
            count += 1;
        }
        Ok(count)
    }
}

/// Parses and discards one element.
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        serde::Deserialize::deserialize(deserializer).map(|IgnoredAny| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(
        body: &[u8],
        limit: usize,
    ) -> Result<(usize, Vec<Result<Value, EventError>>), MalformedBody> {
        let mut items = Vec::new();
        let count = for_each_item(body, limit, |item| items.push(item))?;
        Ok((count, items))
    }

    #[test]
    fn splits_objects_arrays_and_ndjson() {
        let (count, items) = collect(br#"{"a":1}"#, 10).unwrap();
        assert_eq!((count, items.len()), (1, 1));
        let (count, items) = collect(br#" [{"a":1},{"a":2}] "#, 10).unwrap();
        assert_eq!((count, items.len()), (2, 2));
        assert_eq!(items[1].as_ref().unwrap()["a"], 2);
        let (count, items) = collect(b"{\"a\":1}\n\n{\"a\":2}\n{oops\n", 10).unwrap();
        assert_eq!((count, items.len()), (3, 3));
        assert!(items[2].is_err());
    }

    #[test]
    fn a_body_that_is_not_json_at_all_is_malformed() {
        assert!(collect(b"[{\"a\":1},", 10).is_err());
        assert!(collect(b"[{\"a\":1}] trailing", 10).is_err());
        assert!(collect(b"  ", 10).is_err());
        assert!(collect(&[0xff, 0xfe], 10).is_err());
    }

    #[test]
    fn items_past_the_limit_are_counted_but_not_passed() {
        let (count, items) = collect(br#"[{"a":1},{"a":2},{"a":3}]"#, 2).unwrap();
        assert_eq!((count, items.len()), (3, 2));
        let (count, items) = collect(b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n", 1).unwrap();
        assert_eq!((count, items.len()), (3, 1));
    }

    #[test]
    fn an_empty_array_has_no_items() {
        assert_eq!(collect(b"[]", 10).unwrap().0, 0);
    }
}
