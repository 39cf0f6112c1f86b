//! Detecting that Redis lost its data, and rebuilding groups from the
//! durable [`WindowSource`].
//!
//! # Why
//!
//! Redis runs without persistence: a restart comes back empty. Deciding on
//! that empty state would silently under-count every burst in progress
//! (two failures before the restart and one after would count 1, not 3) and
//! miss alerts. So the state must *know* that it lost data, and rebuild
//! before deciding.
//!
//! # The epoch marker
//!
//! `<prefix>epoch` holds `<random id>:<created µs>` (server clock, no TTL).
//! The state creates it when absent (`epoch.lua`, set-if-absent, so
//! competing processes agree on one) and caches it. Every group records in
//! its hash (`_epoch`) the epoch it was built under, and every script call
//! passes the caller's cached epoch. `observe.lua` then answers:
//!
//! - `LOST` when the marker is gone: Redis lost its data (restart without
//!   persistence, `FLUSHALL`, eviction). The caller creates a new epoch and
//!   tries again.
//! - `EPOCH` when the marker differs from the caller's: another process
//!   already created the new epoch. The caller adopts it and tries again.
//! - `REBUILD` when the group was built under another epoch, or is absent
//!   while the epoch is younger than the group's TTL (retention + grace +
//!   slack): an absent group is then either new or lost in the restart, and
//!   only the durable record can tell. The caller reads the group's members
//!   from the [`WindowSource`] and calls again with them; the script loads
//!   them under the current epoch (unless another process has rebuilt the
//!   group meanwhile: then its state is used and the members are ignored)
//!   and decides, in the same atomic call.
//!
//! An absent group under an epoch older than the TTL is simply new (or
//! expired): any member it had before the restart would have expired by now
//! anyway, as its last write preceded the epoch. So after a restart each
//! active group costs one source query, lazily on first touch, and only
//! during the first TTL after it; afterwards new groups cost nothing. A
//! first start is indistinguishable from a restart (the marker is new
//! either way), so it pays the same: one source query per new group during
//! the first TTL.
//!
//! The members travel as script arguments: a group is rebuilt in one call
//! however many members it has (a very hot group makes one large call).
//!
//! # What is loaded
//!
//! The source's members of the group with event time at or after
//! `min(t - retention)` over the call's observations: everything
//! [`auditflow_core::window::GroupWindow`] keeps by event time (its horizon
//! is `retention` behind the newest member, which is at least the oldest
//! observation). Their fire flags come from the stored alerts.
//!
//! The events of the call itself are left out: they are decided anew on the
//! rebuilt neighbours rather than given the source's flag. For a redelivery
//! whose alert was raised but not yet stored when Redis died (the source
//! says "not fired"), this re-fires it: the alert id is deterministic
//! (`alert_id_for(rule, event)`), so notify drops the duplicate — no
//! duplicate alert, no lost one.
//!
//! # Residual
//!
//! - A *new* event within the cooldown of such an alert (raised, not yet
//!   stored by notify when Redis died) sees its neighbour as not fired and
//!   may fire a second alert for the same burst (an extra alert, never a
//!   lost one).
//! - Events decided before the loss but not yet in the source (the store
//!   lags behind analyze) are missing from the rebuilt window until they
//!   are redelivered; a burst straddling the loss can then count short.
//! - With Redis persistence (RDB/AOF), a restart restores an *old* snapshot
//!   together with the old epoch marker, which this design cannot detect:
//!   run Redis without persistence (as intended), or delete the marker when
//!   restoring. Likewise eviction must be off (`maxmemory-policy
//!   noeviction`): an evicted group (with the marker still present) is
//!   indistinguishable from an expired one.

use std::collections::HashSet;

use auditflow_core::window::{Member, Observation, WindowError, WindowSource};
use chrono::{DateTime, Utc};
use uuid::Uuid;

fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The earliest event time the rebuilt window must hold for `observations`.
pub(crate) fn since(observations: &[&Observation]) -> DateTime<Utc> {
    observations
        .iter()
        .map(|o| {
            o.event_time
                .timestamp_micros()
                .saturating_sub(micros(o.spec.retention()))
        })
        .min()
        .and_then(DateTime::from_timestamp_micros)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Reads the members of `(rule_id, group_key)` to rebuild it with, leaving
/// out the events being observed.
pub(crate) async fn members(
    source: &dyn WindowSource,
    rule_id: &str,
    group_key: &str,
    observations: &[&Observation],
) -> Result<Vec<Member>, WindowError> {
    let own: HashSet<Uuid> = observations.iter().map(|o| o.event_id).collect();
    let mut members = source
        .members(rule_id, group_key, since(observations))
        .await?;
    members.retain(|m| !own.contains(&m.event_id));
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditflow_core::window::{Decision, WindowSpec};
    use std::sync::Mutex;
    use std::time::Duration;

    struct Fixed(Vec<Member>, Mutex<Option<DateTime<Utc>>>);

    #[async_trait::async_trait]
    impl WindowSource for Fixed {
        async fn members(
            &self,
            _: &str,
            _: &str,
            since: DateTime<Utc>,
        ) -> Result<Vec<Member>, WindowError> {
            *self.1.lock().unwrap() = Some(since);
            Ok(self.0.clone())
        }
    }

    #[tokio::test]
    async fn leaves_out_the_observed_events_and_reaches_back_one_retention() {
        let spec = WindowSpec {
            window: Duration::from_secs(60),
            threshold: 3,
            cooldown: Duration::from_secs(30),
        };
        let at = |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap();
        let member = |n: u128| Member {
            event_id: Uuid::from_u128(n),
            micros: at(n as i64).timestamp_micros(),
            decision: Decision {
                fire: false,
                count: 0,
            },
            observed_micros: 0,
        };
        let source = Fixed(vec![member(1), member(2), member(3)], Mutex::new(None));
        let obs = |n: u128| Observation {
            rule_id: "r".into(),
            group_key: "g".into(),
            event_id: Uuid::from_u128(n),
            event_time: at(n as i64 + 300),
            spec,
        };
        let (a, b) = (obs(3), obs(4));
        let got = members(&source, "r", "g", &[&a, &b]).await.unwrap();
        assert_eq!(
            got.iter().map(|m| m.event_id).collect::<Vec<_>>(),
            [Uuid::from_u128(1), Uuid::from_u128(2)]
        );
        // retention = 2 * 60 + 30 = 150 s before the earliest observation (303 s).
        assert_eq!(source.1.lock().unwrap().unwrap(), at(303 - 150));
    }
}
