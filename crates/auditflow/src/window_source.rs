//! Rebuilding a threshold window from the store, for window backends that
//! can lose their state (Redis without persistence).
//!
//! A group's members are the stored events that match the rule and belong to
//! the group, from `since` on; the ones that raised an alert of the rule are
//! marked fired. Groups on `user_id` and `server_hostname` (the built-in
//! rules) are narrowed by the store's indexes; other group fields are
//! filtered here after a time-range scan.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use auditflow_core::store::{AlertQuery, EventQuery, Store, MAX_PAGE};
use auditflow_core::window::{Decision, Member, WindowError, WindowSource};
use auditflow_rules::RuleSet;

/// The store as the record of every window.
pub struct StoreWindowSource {
    store: Arc<dyn Store>,
    rules: Arc<RuleSet>,
}

impl StoreWindowSource {
    /// A source reading `store`, grouping with `rules`.
    pub fn new(store: Arc<dyn Store>, rules: Arc<RuleSet>) -> Self {
        StoreWindowSource { store, rules }
    }
}

fn unavailable(e: impl std::fmt::Display) -> WindowError {
    WindowError::Unavailable(format!("rebuilding a window from the store: {e}"))
}

#[async_trait]
impl WindowSource for StoreWindowSource {
    async fn members(
        &self,
        rule_id: &str,
        group_key: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<Member>, WindowError> {
        let Some(rule) = self.rules.get(rule_id) else {
            return Ok(Vec::new());
        };
        let Some(threshold) = rule.threshold() else {
            return Ok(Vec::new());
        };
        let values: Vec<&str> = group_key
            .split(auditflow_rules::GROUP_KEY_SEPARATOR)
            .collect();
        let field = |name: &str| {
            threshold
                .group_by()
                .iter()
                .position(|f| f == name)
                .and_then(|i| values.get(i))
                .map(|v| v.to_string())
        };
        let mut query = EventQuery {
            from: Some(since),
            user_id: field("user_id"),
            server_hostname: field("server_hostname"),
            limit: MAX_PAGE,
            ..EventQuery::default()
        };
        let mut members = Vec::new();
        loop {
            let page = self.store.events(&query).await.map_err(unavailable)?;
            for stored in &page.items {
                let event = &stored.event;
                if rule.matches(event) && threshold.group_key(event) == group_key {
                    members.push(Member {
                        event_id: event.event_id,
                        micros: event.timestamp.timestamp_micros(),
                        decision: Decision {
                            fire: false,
                            count: 0,
                        },
                        observed_micros: 0,
                    });
                }
            }
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => break,
            }
        }
        let mut fired: HashSet<Uuid> = HashSet::new();
        // No time bound: an alert's timestamp is when it was raised (wall
        // clock), not its event's time, so `since` does not apply to it. The
        // rule, user and host narrow it to this group's few alerts.
        let mut alerts = AlertQuery {
            rule_id: Some(rule_id.to_string()),
            user_id: field("user_id"),
            server_hostname: field("server_hostname"),
            limit: MAX_PAGE,
            ..AlertQuery::default()
        };
        loop {
            let page = self.store.alerts(&alerts).await.map_err(unavailable)?;
            fired.extend(page.items.iter().map(|a| a.alert.correlation_id));
            match page.next_cursor {
                Some(cursor) => alerts.cursor = Some(cursor),
                None => break,
            }
        }
        for member in &mut members {
            member.decision.fire = fired.contains(&member.event_id);
        }
        members.sort_by_key(|m| (m.micros, m.event_id));
        Ok(members)
    }
}
