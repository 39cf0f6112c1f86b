//! Service level objectives evaluated in-process.
//!
//! An SLO is a target ratio of good events to all events (an *SLI*) over a
//! period, e.g. "99.9 % of ingest requests succeed over 30 days". The
//! [`SloTracker`] keeps good/total counts in fixed rings of time buckets
//! (bounded memory whatever the traffic), and from them computes:
//!
//! - the **error budget remaining** over the period:
//!   `1 - bad / ((1 - objective) * total)` (1 = untouched, 0 = spent,
//!   negative = overspent);
//! - the **burn rate** over a window: `(bad / total) / (1 - objective)`, i.e.
//!   how many times faster than "exactly on budget" the budget is being spent;
//! - **multi-window, multi-burn-rate alerts** (Google SRE workbook, ch. 5):
//!   an alert fires while the burn rate over *both* its long and its short
//!   window is at or above its threshold. The long window makes it
//!   significant, the short one makes it reset quickly once the burn stops.
//!   [`default_alerts`]: page at 14.4x over 1 h and 5 min, page at 6x over
//!   6 h and 30 min, ticket at 1x over 3 days and 6 h.
//!
//! Time comes only from a [`resilience::Clock`], so tests drive it with a
//! [`resilience::ManualClock`].

#![deny(missing_docs)]

mod ring;
mod spec;
mod tracker;

pub use ring::{BucketRing, Counts};
pub use spec::{default_alerts, AlertSeverity, BurnRateAlert, SloError, SloSpec};
pub use tracker::{AlertState, SloReport, SloTracker, WindowBurn};
