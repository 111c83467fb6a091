//! What alerting services share about an alert's life: its severity (the
//! last token of `<p>.alerts.<source>.<severity>`) and, while it is open,
//! its id and times, persisted so a restarted service can resolve it.

use serde::{Deserialize, Serialize};

pub use rg_proto::domain::Severity;

/// An open (firing) alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Open {
    /// Its id.
    pub id: String,
    /// Its severity.
    pub severity: Severity,
    /// The round it began in.
    pub since_round: u64,
    /// When it began, unix ms.
    pub since_ms: i64,
    /// When it was last sent, unix ms (round time).
    pub last_notified_ms: i64,
    /// Re-notifications so far.
    pub renotify_count: u32,
}
