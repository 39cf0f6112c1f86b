-- 0001: events, alerts (the earlier notification service's table, adopted if
-- it exists, plus our full alert JSON), deliveries, exact counters and the
-- members of rule windows. Runs with search_path set to the target schema.

CREATE TABLE events (
    event_id        uuid PRIMARY KEY,
    ts              timestamptz NOT NULL,
    event_type      text NOT NULL,
    user_id         text NOT NULL,
    server_hostname text NOT NULL,
    severity        text NOT NULL,
    source_service  text NOT NULL,
    action_result   text NOT NULL,
    resource        text,
    event_json      jsonb NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT now()
);
-- Keyset pagination is (ts DESC, event_id DESC): each filter column leads an
-- index ending in (ts, event_id), scanned backwards.
CREATE INDEX events_by_time ON events (ts, event_id);
CREATE INDEX events_by_type ON events (event_type, ts, event_id);
CREATE INDEX events_by_user ON events (user_id, ts, event_id);
CREATE INDEX events_by_host ON events (server_hostname, ts, event_id);
CREATE INDEX events_by_severity ON events (severity, ts, event_id);

-- Column for column the legacy notification service's alerts table.
CREATE TABLE IF NOT EXISTS alerts (
    alert_id                  uuid PRIMARY KEY,
    correlation_id            uuid,
    timestamp                 timestamptz NOT NULL,
    received_at               timestamptz NOT NULL DEFAULT now(),
    alert_name                text,
    alert_type                text,
    severity                  text,
    description               text,
    source_service_name       text,
    rule_id                   text,
    rule_name                 text,
    actor_type                text,
    actor_id                  text,
    client_ip                 inet,
    resource_type             text,
    resource_id               text,
    server_hostname           text,
    action_observed           text,
    analysis_rule_details     jsonb,
    triggered_by_details      jsonb,
    impacted_resource_details jsonb,
    metadata                  jsonb,
    raw_event_data            jsonb
);
-- Ours: the whole alert as AuditFlow received it (unknown fields included).
-- NULL on rows written by the legacy service; reads rebuild those from the
-- legacy columns.
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS alert_json jsonb;
CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts (timestamp, alert_id);
CREATE INDEX IF NOT EXISTS alerts_by_rule ON alerts (rule_id, timestamp, alert_id);
CREATE INDEX IF NOT EXISTS alerts_by_actor ON alerts (actor_id, timestamp, alert_id);
CREATE INDEX IF NOT EXISTS alerts_by_host ON alerts (server_hostname, timestamp, alert_id);
CREATE INDEX IF NOT EXISTS alerts_by_severity ON alerts (severity, timestamp, alert_id);
CREATE INDEX IF NOT EXISTS alerts_by_correlation ON alerts (correlation_id);

CREATE TABLE deliveries (
    alert_id    uuid NOT NULL,
    channel     text NOT NULL,
    status      text NOT NULL CHECK (status IN ('delivered', 'failed')),
    attempts    bigint NOT NULL,
    last_error  text,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (alert_id, channel)
);

-- Exact totals, updated by the inserting statement itself. Spread over 16
-- shards so that concurrent inserters do not queue on one row lock.
CREATE TABLE counters (
    name  text NOT NULL,
    shard smallint NOT NULL,
    value bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (name, shard)
);
INSERT INTO counters (name, shard, value)
SELECT n, s, 0 FROM unnest(ARRAY['events', 'alerts']) AS n, generate_series(0, 15) AS s;
-- An adopted legacy table already holds alerts.
UPDATE counters SET value = (SELECT count(*) FROM alerts) WHERE name = 'alerts' AND shard = 0;

-- Members of threshold-rule windows with their recorded decisions, and when
-- each was first observed (processing time; see DECISION_GRACE).
CREATE TABLE window_members (
    rule_id         text NOT NULL,
    group_key       text NOT NULL,
    event_id        uuid NOT NULL,
    micros          bigint NOT NULL,
    fire            boolean NOT NULL,
    count           bigint NOT NULL,
    observed_micros bigint NOT NULL,
    PRIMARY KEY (rule_id, group_key, event_id)
);
-- Loads of the time range a batch needs, the newest member, and pruning.
CREATE INDEX window_members_by_time ON window_members (rule_id, group_key, micros);
