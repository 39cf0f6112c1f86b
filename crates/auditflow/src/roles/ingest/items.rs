//! Splitting a request body into items, one at a time.
//!
//! A body is one JSON value (an object, or an array of items) or NDJSON.
//! Items are parsed straight into events ([`EventSeed`], no `Value` tree
//! per item) and handed to the caller one at a time, so a batch of
//! thousands of events never exists as thousands of parsed events at once:
//! each is turned into its wire message and dropped before the next one is
//! parsed, which keeps ingest's memory per request close to the size of the
//! body.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, SeqAccess, Visitor};

use auditflow_core::event::{Event, EventError, EventSeed, ParsedEvent};

/// Why a body could not be split into items at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedBody(pub String);

/// One item: the event, or why it is not one.
pub type Item = Result<ParsedEvent, EventError>;

/// Calls `each` with every item of `body` in order, parsed and validated
/// (an item that is not a valid event, or in NDJSON not even valid JSON,
/// is passed as its reason) until `limit` items were passed; later items
/// are only counted. Returns the number of items in the body.
pub fn for_each_item(
    body: &[u8],
    limit: usize,
    mut each: impl FnMut(Item),
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
    let mut de = serde_json::Deserializer::from_str(trimmed);
    if let Ok(item) = EventSeed
        .deserialize(&mut de)
        .and_then(|item| de.end().map(|()| item))
    {
        each(item);
        return Ok(1);
    }
    let mut count = 0;
    for line in trimmed.lines().filter(|line| !line.trim().is_empty()) {
        if count < limit {
            each(Event::from_slice(line.as_bytes()));
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

impl<'de, F: FnMut(Item)> Visitor<'de> for Items<'_, F> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut count = 0;
        while count < self.limit {
            match seq.next_element_seed(EventSeed)? {
                Some(item) => (self.each)(item),
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

    fn collect(body: &[u8], limit: usize) -> Result<(usize, Vec<Item>), MalformedBody> {
        let mut items = Vec::new();
        let count = for_each_item(body, limit, |item| items.push(item))?;
        Ok((count, items))
    }

    fn event(user: &str) -> String {
        format!(
            r#"{{"timestamp":"2026-11-22T21:46:30Z","source_service":"s","server_hostname":"h",
            "event_type":"user_login","severity":"INFO","user_id":"{user}","action_result":"SUCCESS"}}"#
        )
        .replace('\n', " ")
    }

    fn user(item: &Item) -> &str {
        &item.as_ref().expect("a valid event").event.user_id
    }

    #[test]
    fn splits_objects_arrays_and_ndjson() {
        let (count, items) = collect(event("a").as_bytes(), 10).unwrap();
        assert_eq!((count, user(&items[0])), (1, "a"));
        let array = format!(" [{},{}] ", event("a"), event("b"));
        let (count, items) = collect(array.as_bytes(), 10).unwrap();
        assert_eq!((count, user(&items[1])), (2, "b"));
        let ndjson = format!("{}\n\n{}\n{{oops\n", event("a"), event("b"));
        let (count, items) = collect(ndjson.as_bytes(), 10).unwrap();
        assert_eq!((count, items.len()), (3, 3));
        assert_eq!(user(&items[1]), "b");
        assert!(items[2]
            .as_ref()
            .unwrap_err()
            .reason
            .starts_with("invalid JSON"));
    }

    #[test]
    fn an_invalid_item_of_an_array_is_its_own_reason_only() {
        let array = format!(r#"[{}, {{"a":1}}, 7, {}]"#, event("a"), event("d"));
        let (count, items) = collect(array.as_bytes(), 10).unwrap();
        assert_eq!(count, 4);
        assert_eq!(user(&items[0]), "a");
        assert_eq!(items[1].as_ref().unwrap_err().field, "timestamp");
        assert_eq!(items[2].as_ref().unwrap_err().field, "$");
        assert_eq!(user(&items[3]), "d");
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
