//! What alerting services share about an alert's life: its severity (the
//! last token of `<p>.alerts.<source>.<severity>`) and, while it is open,
//! its id and times, persisted so a restarted service can resolve it.

use serde::{Deserialize, Serialize};

/// Alert severity (the last token of the alert subject), from least to
/// most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Minor.
    Low,
    /// Degraded (e.g. an endpoint in warning).
    Medium,
    /// Failing.
    High,
    /// Failing where it matters most (e.g. DynamoDB), or an outage in the
    /// making.
    Critical,
}

impl Severity {
    /// The subject token.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// The wire enum.
    pub fn to_wire(self) -> rg_proto::v1::Severity {
        match self {
            Self::Low => rg_proto::v1::Severity::Low,
            Self::Medium => rg_proto::v1::Severity::Medium,
            Self::High => rg_proto::v1::Severity::High,
            Self::Critical => rg_proto::v1::Severity::Critical,
        }
    }
}

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
