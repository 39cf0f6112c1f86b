//! Measures `RuleSet::evaluate` per event with the built-in rules.
//!
//! `cargo run --release -p auditflow-rules --example evaluate_throughput [RULES.toml]`

use std::hint::black_box;
use std::time::Instant;

use auditflow_core::Event;
use auditflow_rules::RuleSet;

const SAMPLE: &str = include_str!("sample-events.ndjson");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rules = match std::env::args().nth(1) {
        Some(path) => RuleSet::load(std::path::Path::new(&path))?,
        None => RuleSet::builtin(),
    };
    let events: Vec<Event> = SAMPLE
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Event::from_slice(l.as_bytes()).map(|p| p.event))
        .collect::<Result<_, _>>()?;
    let rounds = 200_000;
    let start = Instant::now();
    let mut hits = 0usize;
    for i in 0..rounds {
        let eval = rules.evaluate(black_box(&events[i % events.len()]));
        hits += eval.matched.len() + eval.observations.len();
    }
    let elapsed = start.elapsed();
    let per_event = elapsed / rounds as u32;
    println!(
        "{rounds} evaluations of {} rules in {elapsed:?}: {per_event:?}/event, {:.0} events/s on one core ({hits} hits)",
        rules.rules().len(),
        rounds as f64 / elapsed.as_secs_f64(),
    );
    Ok(())
}
