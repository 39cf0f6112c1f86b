//! An exact event counter whose increment is not a locked read-modify-write.
//!
//! A contended or even uncontended `fetch_add` is a full-barrier `lock xadd`
//! on x86 (≈ 5–9 ns on the shared VM), which was most of the cost of a circuit
//! breaker rejection. [`PerThreadCounter`] gives each thread its own slot
//! instead: a thread takes one of [`SLOTS`] process-wide slot ids on first
//! use (returned when it exits) and is then the *only writer* of that slot in
//! every counter, so it can increment with a plain relaxed load + store.
//! Threads beyond [`SLOTS`] (or running TLS destructors) fall back to one
//! shared `fetch_add`. Reads sum all slots.
//!
//! Exactness: a slot id is handed over with `Release` (on thread exit) /
//! `Acquire` (when taken), so the next owner sees the previous owner's last
//! store and no increment is lost. A concurrent [`get`](PerThreadCounter::get)
//! sees each slot's old or new value, like any relaxed counter.

use std::sync::atomic::{AtomicU64, Ordering};

/// Slot ids available process-wide (one bit each in [`TAKEN`]).
const SLOTS: usize = 64;

/// Bit `i` set = slot id `i` is owned by a live thread.
static TAKEN: AtomicU64 = AtomicU64::new(0);

struct SlotId(Option<usize>);

impl SlotId {
    fn take() -> SlotId {
        let mut taken = TAKEN.load(Ordering::Relaxed);
        loop {
            if taken == u64::MAX {
                return SlotId(None);
            }
            let bit = (!taken).trailing_zeros();
            match TAKEN.compare_exchange_weak(
                taken,
                taken | (1 << bit),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return SlotId(Some(bit as usize)),
                Err(actual) => taken = actual,
            }
        }
    }
}

impl Drop for SlotId {
    fn drop(&mut self) {
        if let Some(i) = self.0 {
            TAKEN.fetch_and(!(1u64 << i), Ordering::Release);
        }
    }
}

thread_local! {
    static SLOT: SlotId = SlotId::take();
}

/// A cache line of its own, so threads do not false-share their slots.
#[repr(align(64))]
#[derive(Debug, Default)]
struct Slot(AtomicU64);

/// See the [module docs](self). Allocates `SLOTS` cache lines (4 KiB) once.
#[derive(Debug)]
pub(crate) struct PerThreadCounter {
    slots: Box<[Slot]>,
    shared: AtomicU64,
}

impl Default for PerThreadCounter {
    fn default() -> Self {
        PerThreadCounter {
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
            shared: AtomicU64::new(0),
        }
    }
}

impl PerThreadCounter {
    /// Adds one.
    #[inline]
    pub(crate) fn incr(&self) {
        match SLOT.try_with(|s| s.0) {
            Ok(Some(i)) => {
                if let Some(slot) = self.slots.get(i) {
                    // This thread is the slot's only writer (module docs).
                    let v = slot.0.load(Ordering::Relaxed);
                    slot.0.store(v.wrapping_add(1), Ordering::Relaxed);
                    return;
                }
                self.shared.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                self.shared.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The total so far.
    pub(crate) fn get(&self) -> u64 {
        self.slots
            .iter()
            .fold(self.shared.load(Ordering::Relaxed), |acc, s| {
                acc.wrapping_add(s.0.load(Ordering::Relaxed))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counts_exactly_across_more_threads_than_slots() {
        let c = Arc::new(PerThreadCounter::default());
        // Waves of threads, more than SLOTS at once and reusing slot ids.
        for _ in 0..3 {
            let all_alive = Arc::new(std::sync::Barrier::new(SLOTS + 16));
            let handles: Vec<_> = (0..SLOTS + 16)
                .map(|_| {
                    let c = c.clone();
                    let all_alive = all_alive.clone();
                    std::thread::spawn(move || {
                        all_alive.wait();
                        for _ in 0..1_000 {
                            c.incr();
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().expect("counting thread");
            }
        }
        c.incr();
        assert_eq!(c.get(), 3 * (SLOTS as u64 + 16) * 1_000 + 1);
    }
}
