//! AuditFlow's chaos suite.
//!
//! A scenario starts real AuditFlow processes (embedded mode: one
//! `auditflow up`; split mode: one process per role on throwaway
//! PostgreSQL, Redis and RabbitMQ servers, each dependency link through a
//! [`faultproxy`]), drives a bounded load whose expected alerts an
//! independent oracle knows, injects faults on a schedule, and then checks
//! the invariants:
//!
//! 1. every event acknowledged to a client (HTTP 202) is stored exactly once,
//!    and nothing else is stored;
//! 2. the stored alerts are exactly the oracle's (none missing, none extra,
//!    none twice);
//! 3. every alert is delivered once per channel;
//! 4. every process is healthy (`/readyz` ready) again at the end.
//!
//! Each scenario's report says what was sent, acknowledged and stored, how
//! long detection and recovery took, what was lost, and the seed that
//! replays it. Run it with `scripts/chaos.sh` (see the README).
//!
//! The modules are also the end-to-end tests' support library: throwaway
//! servers ([`servers`]), AuditFlow child processes ([`process`]), the
//! workload and oracle ([`workload`]), the read API ([`read_api`]).

pub mod deployment;
pub mod invariants;
pub mod load;
pub mod observe;
pub mod process;
pub mod read_api;
pub mod report;
pub mod runner;
pub mod scenarios;
pub mod servers;
pub mod workload;
