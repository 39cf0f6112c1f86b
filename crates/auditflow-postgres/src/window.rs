//! [`PgWindowState`]: durable threshold-rule windows, shared by competing
//! analyzers in any number of processes.
//!
//! `observe(batch)` runs ONE transaction (READ COMMITTED):
//! 1. take a transaction-scoped advisory lock per distinct `(rule, group)` of
//!    the batch, in ascending key order (so two observers with overlapping
//!    groups cannot deadlock);
//! 2. load, after the locks (so whatever the previous holder committed is
//!    seen), the members the batch's decisions can depend on: per group,
//!    those whose time lies within `max(window, cooldown)` before and
//!    `cooldown` after the batch's times, the group's newest member (which
//!    fixes the retention horizon), and any member that is one of the batch's
//!    events (redeliveries);
//! 3. decide every observation in order with
//!    [`auditflow_core::window::GroupWindow`] (the shared decision logic) on
//!    those members: since a decision only looks at members in that range,
//!    it is the decision the whole group would give;
//! 4. in one statement, insert the new members and delete every member the
//!    window forgets (by [`GroupWindow::prune_bounds`], loaded or not);
//! 5. commit, and only then return the decisions.
//!
//! A redelivered event finds its member and gets the recorded decision. If
//! anything fails the transaction rolls back and nothing is returned, so the
//! caller retries and gets a consistent answer. Nothing is cached between
//! calls: another process may have changed a group meanwhile. The
//! processing time (`now`, for the decision grace period) is this process's
//! clock, read once per batch after the locks are held.
//!
//! The lock key of a group is the 64-bit FNV-1a hash of
//! `rule_id 0x1f group_key`, as `pg_advisory_xact_lock(bigint)`: every
//! replica and every version must compute the same key, so never change it.
//! (Two groups sharing a key only serialize; they never share state.)

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use auditflow_core::window::{
    Decision, GroupWindow, Member, Observation, WindowError, WindowSpec, WindowState,
};
use chrono::Utc;
use deadpool_postgres::Object;
use tokio_postgres::IsolationLevel;
use uuid::Uuid;

use crate::config::PgConfig;
use crate::error::PgError;
use crate::pool::PgPool;

/// Durable window state in PostgreSQL. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PgWindowState {
    pool: PgPool,
}

type GroupKey = (String, String);

/// The advisory lock key of a group (FNV-1a 64 of `rule 0x1f group`).
pub(crate) fn lock_key(rule_id: &str, group_key: &str) -> i64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for &b in rule_id
        .as_bytes()
        .iter()
        .chain(&[0x1f])
        .chain(group_key.as_bytes())
    {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(PRIME);
    }
    hash as i64
}

fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

const LOCK_GROUPS: &str = "SELECT pg_advisory_xact_lock(k)
    FROM (SELECT k FROM unnest($1::bigint[]) WITH ORDINALITY AS t(k, i) ORDER BY i) AS ordered";

const MEMBER_COLUMNS: &str =
    "m.rule_id, m.group_key, m.event_id, m.micros, m.fire, m.count, m.observed_micros";

fn load_members_sql() -> String {
    format!(
        "SELECT {MEMBER_COLUMNS}
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS g(rule_id, group_key, lo, hi)
         JOIN window_members m ON m.rule_id = g.rule_id AND m.group_key = g.group_key
                              AND m.micros BETWEEN g.lo AND g.hi
         UNION ALL
         SELECT n.* FROM unnest($1::text[], $2::text[]) AS g(rule_id, group_key),
         LATERAL (SELECT {MEMBER_COLUMNS} FROM window_members m
                  WHERE m.rule_id = g.rule_id AND m.group_key = g.group_key
                  ORDER BY m.micros DESC LIMIT 1) AS n
         UNION ALL
         SELECT {MEMBER_COLUMNS}
         FROM unnest($5::text[], $6::text[], $7::uuid[]) AS o(rule_id, group_key, event_id)
         JOIN window_members m ON m.rule_id = o.rule_id AND m.group_key = o.group_key
                              AND m.event_id = o.event_id"
    )
}

const WRITE_MEMBERS: &str = "WITH pruned AS (
    DELETE FROM window_members m
    USING unnest($8::text[], $9::text[], $10::bigint[], $11::bigint[])
          AS d(rule_id, group_key, horizon, observed_before)
    WHERE m.rule_id = d.rule_id AND m.group_key = d.group_key
      AND m.micros < d.horizon AND m.observed_micros < d.observed_before
)
INSERT INTO window_members (rule_id, group_key, event_id, micros, fire, count, observed_micros)
SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::bigint[], $5::bool[], $6::bigint[],
                     $7::bigint[])
ON CONFLICT DO NOTHING";

/// What a batch touches in one group.
struct Group {
    window: GroupWindow,
    /// Earliest and latest member time the batch's decisions can look at.
    lo: i64,
    hi: i64,
    /// Spec of the group's last new observation (for pruning).
    spec: Option<WindowSpec>,
}

/// Rows to insert, and prune bounds per group, as column arrays.
#[derive(Default)]
struct Changes {
    rules: Vec<String>,
    groups: Vec<String>,
    ids: Vec<Uuid>,
    micros: Vec<i64>,
    fire: Vec<bool>,
    count: Vec<i64>,
    observed: Vec<i64>,
    prune_rules: Vec<String>,
    prune_groups: Vec<String>,
    horizons: Vec<i64>,
    observed_before: Vec<i64>,
}

impl PgWindowState {
    /// Window state on an existing pool (e.g. [`crate::PgStore::pool`]).
    /// The schema must have been migrated.
    pub fn new(pool: PgPool) -> PgWindowState {
        PgWindowState { pool }
    }

    /// Builds a pool of its own and, when `config.migrate_on_start`, applies
    /// pending migrations.
    pub async fn connect(config: PgConfig) -> Result<PgWindowState, PgError> {
        let pool = PgPool::new(&config)?;
        if config.migrate_on_start {
            pool.migrate().await?;
        }
        Ok(PgWindowState::new(pool))
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The advisory lock (`pg_advisory_xact_lock(bigint)`) that `observe`
    /// holds on a group: for finding a stuck holder in `pg_locks`
    /// (`classid = key >> 32`, `objid = key & 0xffffffff`, `objsubid = 1`).
    pub fn lock_key(rule_id: &str, group_key: &str) -> i64 {
        lock_key(rule_id, group_key)
    }

    async fn observe_inner(&self, observations: &[Observation]) -> Result<Vec<Decision>, PgError> {
        self.pool
            .run("window observe", |client| observe_in(client, observations))
            .await
    }
}

async fn observe_in(
    mut client: Object,
    observations: &[Observation],
) -> Result<Vec<Decision>, PgError> {
    let mut groups: BTreeMap<GroupKey, Group> = BTreeMap::new();
    for o in observations {
        let t = o.event_time.timestamp_micros();
        let cooldown = micros(o.spec.cooldown);
        let lo = t.saturating_sub(micros(o.spec.window).max(cooldown));
        let hi = t.saturating_add(cooldown);
        let g = groups
            .entry((o.rule_id.clone(), o.group_key.clone()))
            .or_insert(Group {
                window: GroupWindow::default(),
                lo,
                hi,
                spec: None,
            });
        g.lo = g.lo.min(lo);
        g.hi = g.hi.max(hi);
    }
    let mut keys: Vec<i64> = groups.keys().map(|(r, g)| lock_key(r, g)).collect();
    keys.sort_unstable();
    keys.dedup();
    let rules: Vec<&str> = groups.keys().map(|(r, _)| r.as_str()).collect();
    let names: Vec<&str> = groups.keys().map(|(_, g)| g.as_str()).collect();
    let los: Vec<i64> = groups.values().map(|g| g.lo).collect();
    let his: Vec<i64> = groups.values().map(|g| g.hi).collect();
    let obs_rules: Vec<&str> = observations.iter().map(|o| o.rule_id.as_str()).collect();
    let obs_groups: Vec<&str> = observations.iter().map(|o| o.group_key.as_str()).collect();
    let obs_ids: Vec<Uuid> = observations.iter().map(|o| o.event_id).collect();

    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await
        .map_err(PgError::db("cannot start window transaction"))?;
    let lock = tx
        .prepare_cached(LOCK_GROUPS)
        .await
        .map_err(PgError::db("cannot prepare window lock"))?;
    tx.execute(&lock, &[&keys])
        .await
        .map_err(PgError::db("cannot lock window groups"))?;
    let load = tx
        .prepare_cached(&load_members_sql())
        .await
        .map_err(PgError::db("cannot prepare window load"))?;
    let rows = tx
        .query(
            &load,
            &[
                &rules,
                &names,
                &los,
                &his,
                &obs_rules,
                &obs_groups,
                &obs_ids,
            ],
        )
        .await
        .map_err(PgError::db("cannot load window members"))?;

    let mut loaded: HashMap<GroupKey, Vec<Member>> = HashMap::new();
    for row in &rows {
        let count: i64 = row.get(5);
        loaded
            .entry((row.get(0), row.get(1)))
            .or_default()
            .push(Member {
                event_id: row.get(2),
                micros: row.get(3),
                decision: Decision {
                    fire: row.get(4),
                    count: u32::try_from(count).unwrap_or(u32::MAX),
                },
                observed_micros: row.get(6),
            });
    }
    for (key, members) in loaded {
        if let Some(g) = groups.get_mut(&key) {
            g.window = GroupWindow::from_members(members);
        }
    }

    let now = Utc::now();
    let mut decisions = Vec::with_capacity(observations.len());
    let mut new_members: Vec<(&Observation, Member)> = Vec::new();
    for o in observations {
        let key = (o.rule_id.clone(), o.group_key.clone());
        let Some(g) = groups.get_mut(&key) else {
            continue; // every observation's group was entered above
        };
        let (decision, member) = g.window.observe(o.event_id, o.event_time, &o.spec, now);
        decisions.push(decision);
        if let Some(member) = member {
            g.spec = Some(o.spec);
            new_members.push((o, member));
        }
    }

    let mut changes = Changes::default();
    for (o, m) in new_members {
        let key = (o.rule_id.clone(), o.group_key.clone());
        let kept = groups
            .get(&key)
            .is_some_and(|g| g.window.recorded(m.event_id).is_some());
        if kept {
            changes.rules.push(key.0);
            changes.groups.push(key.1);
            changes.ids.push(m.event_id);
            changes.micros.push(m.micros);
            changes.fire.push(m.decision.fire);
            changes.count.push(i64::from(m.decision.count));
            changes.observed.push(m.observed_micros);
        }
    }
    for ((rule, group), g) in &groups {
        let Some(bounds) = g.spec.and_then(|spec| g.window.prune_bounds(&spec, now)) else {
            continue;
        };
        changes.prune_rules.push(rule.clone());
        changes.prune_groups.push(group.clone());
        changes.horizons.push(bounds.0);
        changes.observed_before.push(bounds.1);
    }
    if !changes.ids.is_empty() || !changes.horizons.is_empty() {
        let write = tx
            .prepare_cached(WRITE_MEMBERS)
            .await
            .map_err(PgError::db("cannot prepare window write"))?;
        tx.execute(
            &write,
            &[
                &changes.rules,
                &changes.groups,
                &changes.ids,
                &changes.micros,
                &changes.fire,
                &changes.count,
                &changes.observed,
                &changes.prune_rules,
                &changes.prune_groups,
                &changes.horizons,
                &changes.observed_before,
            ],
        )
        .await
        .map_err(PgError::db("cannot record window members"))?;
    }
    tx.commit()
        .await
        .map_err(PgError::db("cannot commit window decisions"))?;
    Ok(decisions)
}

#[async_trait]
impl WindowState for PgWindowState {
    async fn observe(&self, observations: &[Observation]) -> Result<Vec<Decision>, WindowError> {
        if observations.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.observe_inner(observations).await?)
    }

    async fn check(&self) -> Result<(), WindowError> {
        Ok(self.pool.check().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_and_separate_rule_from_group() {
        // Pinned: replicas of every version must agree on these.
        assert_eq!(lock_key("", ""), 0xaf63_d24c_8601_db8e_u64 as i64);
        assert_eq!(lock_key("R1", "bob"), lock_key("R1", "bob"));
        assert_ne!(lock_key("ab", "c"), lock_key("a", "bc"));
        assert_ne!(lock_key("R1", "bob"), lock_key("R2", "bob"));
    }
}
