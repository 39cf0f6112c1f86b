//! Latency: when a chunk read at `arrival` may be written.

use std::time::Duration;

use tokio::time::Instant;

use crate::fault::Latency;

/// The instant a chunk may be written: `arrival + base + sample * jitter`,
/// never before `not_before` (the previous chunk's due time, to keep order).
/// `sample` is uniform in `0.0..1.0`.
pub(crate) fn due(
    arrival: Instant,
    sample: f64,
    latency: Option<Latency>,
    not_before: Option<Instant>,
) -> Instant {
    let delay = match latency {
        Some(l) => l.base + l.jitter.mul_f64(sample.clamp(0.0, 1.0)),
        None => Duration::ZERO,
    };
    let due = arrival + delay;
    match not_before {
        Some(n) if n > due => n,
        _ => due,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_base_and_jitter_and_keeps_order() {
        let t = Instant::now();
        let l = Some(Latency {
            base: Duration::from_millis(100),
            jitter: Duration::from_millis(50),
        });
        assert_eq!(due(t, 0.0, None, None), t);
        assert_eq!(due(t, 0.5, l, None), t + Duration::from_millis(125));
        let later = t + Duration::from_secs(1);
        assert_eq!(due(t, 0.0, l, Some(later)), later);
    }
}
