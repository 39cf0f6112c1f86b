//! Parses the same event over and over, through a `serde_json::Value`
//! (`Event::from_value`) and straight from the text (`Event::from_slice`),
//! and prints events/s of each: the median of 5 rounds.
//!
//! `cargo run --release -p auditflow-core --example parse_throughput`

use std::time::Instant;

use auditflow_core::event::Event;

const EVENT: &str = r#"{"event_id":"0e9c7f9f-5b1d-4d0e-9a51-2f1f9d6f4c11","timestamp":"2026-11-22T21:46:30.165174Z","source_service":"audit-event-generator","server_hostname":"web-01","event_type":"user_login","severity":"WARNING","user_id":"alice","action_result":"FAILURE","details":{"reason":"invalid_password","ip_address":"203.0.113.7","protocol":"ssh"},"client_ip":"203.0.113.7","environment":"production"}"#;

fn rate(rounds: usize, per_round: usize, parse: impl Fn(&[u8]) -> usize) -> f64 {
    let mut rates: Vec<f64> = (0..rounds)
        .map(|_| {
            let started = Instant::now();
            let mut sink = 0;
            for _ in 0..per_round {
                sink += parse(EVENT.as_bytes());
            }
            assert!(sink > 0);
            per_round as f64 / started.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn main() {
    let through_value = rate(5, 200_000, |bytes| {
        let value: serde_json::Value = serde_json::from_slice(bytes).expect("valid JSON");
        Event::from_value(value)
            .expect("valid event")
            .event
            .user_id
            .len()
    });
    let direct = rate(5, 200_000, |bytes| {
        Event::from_slice(bytes)
            .expect("valid event")
            .event
            .user_id
            .len()
    });
    println!("through a Value: {through_value:>10.0} events/s");
    println!(
        "straight:        {direct:>10.0} events/s ({:.2}x)",
        direct / through_value
    );
}
