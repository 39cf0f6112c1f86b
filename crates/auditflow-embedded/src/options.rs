//! [`EmbeddedOptions`]: tuning of the embedded backends, deserializable with defaults.

use serde::{Deserialize, Serialize};

/// SQLite's `synchronous` setting for the writer connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// fsync the WAL on every commit: an acknowledged write survives `kill -9`
    /// *and* power loss. The default.
    #[default]
    Full,
    /// fsync only at checkpoints: an acknowledged write survives `kill -9`
    /// (the WAL is in the OS page cache) but not power loss or an OS crash.
    Normal,
    /// Never fsync (tests and benchmarks only).
    Off,
}

impl SyncMode {
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            SyncMode::Full => "FULL",
            SyncMode::Normal => "NORMAL",
            SyncMode::Off => "OFF",
        }
    }
}

/// Options of [`crate::Embedded::open`]. Every field has a default, so `{}`
/// (or a partial table) deserializes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedOptions {
    /// Bound of each queue (ready + unacked + being published); a publish
    /// that would exceed it fails with `BrokerError::Full`. Default 250 000.
    pub max_queue_depth: u64,
    /// Deliveries after which a message is dead-lettered with reason
    /// `delivery limit exceeded` instead of being delivered again. Default 5.
    pub delivery_limit: u32,
    /// Read-only connections per database for queries. Default 4.
    pub read_pool_size: usize,
    /// Durability of commits. Default [`SyncMode::Full`].
    pub synchronous: SyncMode,
    /// Page cache per connection, in MiB. Default 64.
    pub cache_size_mib: u32,
    /// Most write requests one group commit applies. Default 4096.
    pub max_group_commit: usize,
    /// WAL frames (pages of 4 KiB) after which a database's WAL is copied
    /// into its file in the background; the writer itself checkpoints at
    /// four times this. Larger means less disk traffic per event (a page
    /// rewritten by many commits is copied once) but a larger WAL on disk.
    /// Default 16 384 (64 MiB per database).
    pub checkpoint_after_pages: u32,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            max_queue_depth: 250_000,
            delivery_limit: 5,
            read_pool_size: 4,
            synchronous: SyncMode::Full,
            cache_size_mib: 64,
            max_group_commit: 4096,
            checkpoint_after_pages: 16_384,
        }
    }
}
