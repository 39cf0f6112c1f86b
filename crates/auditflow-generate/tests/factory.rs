//! The event factory against AuditFlow's own event validation and rules.

use std::collections::{BTreeMap, BTreeSet};

use auditflow_core::event::Event;
use auditflow_core::window::InMemoryWindowState;
use auditflow_generate::factory::{
    format_timestamp, HOSTNAMES, SENSITIVE_PATHS, SOURCE_SERVICE, USERS,
};
use auditflow_generate::{
    ConfigError, EventKind, Factory, FactoryConfig, GeneratedEvent, Item, MalformedKind, Mix,
};
use auditflow_rules::{AlertContext, RuleSet};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

/// The compat samples of the earlier Python generator (`/work/shared/compat`).
const LOGIN_FAILURE_SAMPLE: &str = r#"{
  "event_id": "0e9c7f9f-5b1d-4d0e-9a51-2f1f9d6f4c11",
  "timestamp": "2026-11-22T21:46:30.165174Z",
  "source_service": "audit-event-generator",
  "server_hostname": "prod-web-01",
  "event_type": "user_login",
  "severity": "WARNING",
  "user_id": "attacker_bob",
  "action_result": "FAILURE",
  "details": {"reason": "Incorrect password", "ip_address": "192.168.1.150", "protocol": "ssh"}
}"#;
const FILE_MODIFIED_SAMPLE: &str = r#"{
  "event_id": "6a1f0c55-1c1e-4c1b-8f55-0d1f3b7c9e02",
  "timestamp": "2026-11-22T21:46:31Z",
  "source_service": "audit-event-generator",
  "server_hostname": "prod-db-02",
  "event_type": "file_modified",
  "severity": "CRITICAL",
  "user_id": "devops_admin",
  "action_result": "MODIFIED",
  "details": {"resource": "/etc/passwd", "old_checksum": "a1b2c3d4", "new_checksum": "e5f6a7b8", "size_change_bytes": -120}
}"#;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T21:46:30.165174Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// `n` items with a clock advancing 10 ms per item.
fn items(factory: &mut Factory, n: usize) -> Vec<Item> {
    (0..n)
        .map(|i| factory.next_item(t0() + Duration::milliseconds(10 * i as i64)))
        .collect()
}

fn noisy_config() -> FactoryConfig {
    FactoryConfig {
        malformed_ratio: 0.2,
        burst_probability: 0.02,
        ..FactoryConfig::default()
    }
}

/// An event as it goes on the wire, parsed back.
fn wire(event: GeneratedEvent) -> Value {
    serde_json::from_str(&Item::Valid(event).body()).unwrap()
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn deterministic_for_a_seed() {
    let a = items(&mut Factory::new(noisy_config(), 42).unwrap(), 2_000);
    let b = items(&mut Factory::new(noisy_config(), 42).unwrap(), 2_000);
    let c = items(&mut Factory::new(noisy_config(), 43).unwrap(), 2_000);
    assert_eq!(a, b);
    assert_ne!(a, c);
    let ids: BTreeSet<_> = a.iter().filter_map(Item::event_id).collect();
    assert_eq!(
        ids.len(),
        a.iter().filter(|i| i.is_valid()).count(),
        "ids are unique"
    );
}

#[test]
fn valid_items_pass_and_malformed_items_fail_validation() {
    let mut factory = Factory::new(noisy_config(), 7).unwrap();
    let all = items(&mut factory, 5_000);
    let mut malformed_kinds = BTreeMap::new();
    let mut valid = 0;
    for item in &all {
        match item {
            Item::Valid(event) => {
                valid += 1;
                let value = wire(event.clone());
                assert_eq!(value, event.to_value());
                let parsed =
                    Event::from_value(value.clone()).unwrap_or_else(|e| panic!("{e}: {value}"));
                assert!(!parsed.id_assigned);
                assert_eq!(parsed.event.event_id.get_version_num(), 4);
                // The wire text parses the same way.
                assert!(Event::from_slice(item.body().as_bytes()).is_ok());
            }
            Item::Malformed { body, kind } => {
                *malformed_kinds.entry(*kind).or_insert(0) += 1;
                assert!(
                    Event::from_slice(body.as_bytes()).is_err(),
                    "{kind:?} passed validation: {body}"
                );
                // Inside a batch array it still spoils the batch.
                let batch = format!("[{}]", body);
                if let Ok(Value::Array(values)) = serde_json::from_str::<Value>(&batch) {
                    assert!(values.into_iter().any(|v| Event::from_value(v).is_err()));
                }
            }
        }
    }
    let malformed = all.len() - valid;
    assert!(
        (800..=1_200).contains(&malformed),
        "{malformed} malformed of 5000"
    );
    assert_eq!(
        malformed_kinds.keys().copied().collect::<Vec<_>>(),
        MalformedKind::ALL.to_vec(),
        "every kind of damage occurs"
    );
    for kind in MalformedKind::ALL {
        for _ in 0..50 {
            let item = factory.malformed_of(kind, t0());
            assert!(!item.is_valid());
            assert!(
                Event::from_slice(item.body().as_bytes()).is_err(),
                "{kind:?}"
            );
        }
    }
}

#[test]
fn events_look_like_the_compat_samples() {
    let login_sample: Value = serde_json::from_str(LOGIN_FAILURE_SAMPLE).unwrap();
    let file_sample: Value = serde_json::from_str(FILE_MODIFIED_SAMPLE).unwrap();
    assert!(Event::from_value(login_sample.clone()).is_ok());
    let config = FactoryConfig {
        login_failure_ratio: 1.0,
        sensitive_file_ratio: 1.0,
        ..FactoryConfig::default()
    };
    let mut factory = Factory::new(config, 1).unwrap();
    let login = wire(factory.event(EventKind::UserLogin, t0()));
    assert_eq!(keys(&login), keys(&login_sample));
    assert_eq!(keys(&login["details"]), keys(&login_sample["details"]));
    assert_eq!(login["severity"], "WARNING");
    assert_eq!(login["action_result"], "FAILURE");
    assert_eq!(login["source_service"], SOURCE_SERVICE);
    assert_eq!(login["timestamp"], "2026-11-22T21:46:30.165174Z");
    assert!(HOSTNAMES.contains(&login["server_hostname"].as_str().unwrap()));
    assert!(USERS.contains(&login["user_id"].as_str().unwrap()));
    // Field order is the generator's too.
    let order: Vec<_> = login.as_object().unwrap().keys().collect();
    let sample_order: Vec<_> = login_sample.as_object().unwrap().keys().collect();
    assert_eq!(order, sample_order);

    let file = wire(factory.event(EventKind::FileModified, t0()));
    assert_eq!(keys(&file), keys(&file_sample));
    assert_eq!(keys(&file["details"]), keys(&file_sample["details"]));
    assert_eq!(file["severity"], "CRITICAL");
    assert_eq!(file["action_result"], "MODIFIED");
    assert!(SENSITIVE_PATHS.contains(&file["details"]["resource"].as_str().unwrap()));
    assert!(file["details"]["size_change_bytes"].is_i64());
    assert_eq!(file["details"]["old_checksum"].as_str().unwrap().len(), 8);

    let results: BTreeMap<&str, BTreeSet<String>> = [
        (EventKind::ServiceStatusChange, "service_status_change"),
        (EventKind::UserAccountManagement, "user_account_management"),
        (EventKind::SudoCommand, "sudo_command"),
    ]
    .into_iter()
    .map(|(kind, name)| {
        let seen = (0..200)
            .map(|_| {
                let event = wire(factory.event(kind, t0()));
                assert_eq!(event["event_type"], name);
                event["action_result"].as_str().unwrap().to_string()
            })
            .collect();
        (name, seen)
    })
    .collect();
    assert_eq!(
        results["service_status_change"],
        BTreeSet::from(["STARTED".to_string(), "STOPPED".to_string()])
    );
    assert_eq!(
        results["user_account_management"],
        BTreeSet::from(["CREATED".to_string()])
    );
    assert!(results["sudo_command"].contains("SUCCESS"));

    // Timestamps always carry microseconds and a Z.
    let whole_second = t0() - Duration::microseconds(165_174);
    assert_eq!(
        format_timestamp(&whole_second),
        "2026-11-22T21:46:30.000000Z"
    );
}

#[test]
fn bursts_are_three_or_more_failures_for_one_user_and_host_within_60s() {
    let mut factory = Factory::new(FactoryConfig::default(), 3).unwrap();
    for _ in 0..200 {
        let burst = factory.burst(t0());
        assert!(burst.len() >= 3, "{}", burst.len());
        let events: Vec<Event> = burst
            .into_iter()
            .map(|v| Event::from_value(wire(v)).unwrap().event)
            .collect();
        let first = &events[0];
        for e in &events {
            assert_eq!(e.event_type, "user_login");
            assert_eq!(e.action_result, "FAILURE");
            assert_eq!(e.user_id, first.user_id);
            assert_eq!(e.server_hostname, first.server_hostname);
        }
        let times: Vec<_> = events.iter().map(|e| e.timestamp).collect();
        assert!(times.windows(2).all(|w| {
            let gap = w[1] - w[0];
            gap >= Duration::seconds(1) && gap <= Duration::seconds(5)
        }));
        assert_eq!(*times.last().unwrap(), t0());
        assert!(*times.last().unwrap() - times[0] < Duration::seconds(60));
    }
    assert_eq!(factory.bursts(), 200);
}

#[tokio::test]
async fn a_burst_fires_anly_sec_001() {
    // Only successful logins otherwise, so the alert can come from the burst alone.
    let config = FactoryConfig {
        mix: Mix::only(EventKind::UserLogin),
        login_failure_ratio: 0.0,
        burst_probability: 0.01,
        ..FactoryConfig::default()
    };
    let mut factory = Factory::new(config, 11).unwrap();
    let events: Vec<Event> = items(&mut factory, 1_000)
        .into_iter()
        .map(|item| match item {
            Item::Valid(v) => Event::from_value(wire(v)).unwrap().event,
            Item::Malformed { .. } => panic!("no malformed items configured"),
        })
        .collect();
    assert!(factory.bursts() >= 2, "{} bursts", factory.bursts());
    let rules = RuleSet::builtin();
    let windows = InMemoryWindowState::default();
    let ctx = AlertContext {
        environment: "test".into(),
        raised_at: Utc::now(),
    };
    let alerts = rules.analyze(&events, &windows, &ctx).await.unwrap();
    let fired: Vec<_> = alerts
        .iter()
        .flatten()
        .filter(|a| a.analysis_rule.rule_id == "ANLY-SEC-001")
        .collect();
    // Every burst is for a (user, host) group, with a 60 s cooldown per group:
    // at least one alert, and never more than there were bursts.
    assert!(!fired.is_empty());
    assert!(fired.len() as u64 <= factory.bursts());
}

#[test]
fn the_mix_follows_the_weights() {
    let config = FactoryConfig {
        mix: "user_login=50,sudo_command=10,file_modified=25,service_status_change=10,user_account_management=5"
            .parse()
            .unwrap(),
        ..FactoryConfig::default()
    };
    let mix = config.mix;
    let mut factory = Factory::new(config, 5).unwrap();
    let n = 20_000;
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let (mut failures, mut logins, mut sensitive, mut files) = (0, 0, 0, 0);
    for item in items(&mut factory, n) {
        let Item::Valid(v) = item else {
            panic!("no malformed items configured")
        };
        let v = wire(v);
        let kind = v["event_type"].as_str().unwrap().to_string();
        if kind == "user_login" {
            logins += 1;
            failures += usize::from(v["action_result"] == "FAILURE");
        }
        if kind == "file_modified" {
            files += 1;
            let path = v["details"]["resource"].as_str().unwrap();
            sensitive += usize::from(SENSITIVE_PATHS.contains(&path));
        }
        *by_kind.entry(kind).or_default() += 1;
    }
    for kind in EventKind::ALL {
        let share = by_kind.get(kind.as_str()).copied().unwrap_or(0) as f64 / n as f64;
        assert!(
            (share - mix.share(kind)).abs() < 0.02,
            "{kind}: {share} vs {}",
            mix.share(kind)
        );
    }
    let failure_share = failures as f64 / logins as f64;
    assert!((failure_share - 0.25).abs() < 0.03, "{failure_share}");
    let sensitive_share = sensitive as f64 / files as f64;
    assert!((sensitive_share - 0.1).abs() < 0.03, "{sensitive_share}");

    let only_files = Factory::new(
        FactoryConfig {
            mix: Mix::only(EventKind::FileModified),
            ..FactoryConfig::default()
        },
        5,
    );
    for item in items(&mut only_files.unwrap(), 100) {
        let Item::Valid(v) = item else { panic!() };
        let v = wire(v);
        assert_eq!(v["event_type"], "file_modified");
    }
}

#[test]
fn mix_text_round_trips_and_config_is_checked() {
    let mix = Mix::default();
    assert_eq!(mix.to_string().parse::<Mix>().unwrap(), mix);
    assert_eq!(
        "file_modified=3".parse::<Mix>().unwrap(),
        Mix {
            user_login: 0,
            sudo_command: 0,
            file_modified: 3,
            service_status_change: 0,
            user_account_management: 0,
        }
    );
    for bad in [
        "user_login",
        "telnet=3",
        "user_login=-1",
        "user_login=0",
        "",
    ] {
        let err: ConfigError = bad.parse::<Mix>().unwrap_err();
        assert_eq!(err.field, "mix", "{bad}");
    }
    let bad_configs = [
        FactoryConfig {
            burst_min: 2,
            ..FactoryConfig::default()
        },
        FactoryConfig {
            burst_min: 5,
            burst_max: 4,
            ..FactoryConfig::default()
        },
        FactoryConfig {
            malformed_ratio: -0.1,
            ..FactoryConfig::default()
        },
        FactoryConfig {
            burst_probability: 1.1,
            ..FactoryConfig::default()
        },
    ];
    for config in bad_configs {
        assert!(Factory::new(config.clone(), 1).is_err(), "{config:?}");
    }
}
