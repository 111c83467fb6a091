//! Threshold alerts: one per change of an endpoint's agreed status, not one
//! per event.
//!
//! - healthy → warning or critical: the new status fires at once;
//! - a change between warning and critical: the old alert resolves and the
//!   new one fires (at once when worse);
//! - back to healthy: the open alert resolves;
//! - a better status takes effect only once it has held for
//!   `resolve_after` rounds in a row, so an endpoint whose latency wanders
//!   across a threshold does not fire and resolve every round;
//! - still warning or critical: re-notified every `renotify` (by round
//!   time, so a replay behaves as the live run did);
//! - no quorum: nothing changes.
//!
//! An alert's id is derived from what it is about (region, endpoint,
//! status, the round it began), so a detector that decides the same round
//! again after a restart produces the same id, and JetStream's duplicate
//! window drops the repeat.

use std::time::Duration;

use rg_proto::domain::{Priority, Status};
use serde::{Deserialize, Serialize};

pub use rg_rounds::alerting::{Open, Severity};
use rg_rounds::Agreement;

/// The severity of a threshold alert: warning → medium; critical → high,
/// or critical for a critical-priority endpoint.
pub fn severity_of(status: Status, priority: Priority) -> Option<Severity> {
    match (status, priority) {
        (Status::Healthy, _) => None,
        (Status::Warning, _) => Some(Severity::Medium),
        (Status::Critical, Priority::Critical) => Some(Severity::Critical),
        (Status::Critical, Priority::Default) => Some(Severity::High),
    }
}

/// What the detector remembers of an endpoint (persisted across restarts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointState {
    /// The agreed status.
    pub status: Status,
    /// Consecutive decided rounds in that status.
    pub consecutive_rounds: u32,
    /// The open alert, if the status is not healthy.
    pub open: Option<Open>,
    /// Consecutive rounds agreeing on a better status than `status` (it
    /// takes effect at `resolve_after`).
    #[serde(default)]
    pub better_rounds: u32,
}

impl Default for EndpointState {
    fn default() -> Self {
        Self {
            status: Status::Healthy,
            consecutive_rounds: 0,
            open: None,
            better_rounds: 0,
        }
    }
}

/// An alert to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new alert.
    Fire(Open, Status),
    /// The same alert again (still unresolved).
    Renotify(Open, Status),
    /// The alert ended at this round time (unix ms).
    Resolve(Open, Status, i64),
}

/// The stable id of a threshold alert.
pub fn alert_id(region: &str, endpoint: &str, status: Status, round: u64) -> String {
    format!("thr:{region}:{endpoint}:{status}:{round}")
}

/// Advances an endpoint's state by one decided round.
#[allow(clippy::too_many_arguments)]
pub fn step(
    state: &mut EndpointState,
    agreement: Agreement,
    priority: Priority,
    region: &str,
    endpoint: &str,
    round: u64,
    round_ms: i64,
    renotify: Duration,
    resolve_after: u32,
) -> Vec<Change> {
    let Agreement::Agreed { status, .. } = agreement else {
        return Vec::new();
    };
    let mut changes = Vec::new();
    if status < state.status {
        state.better_rounds = state.better_rounds.saturating_add(1);
        if state.better_rounds < resolve_after.max(1) {
            // Not yet: the alert stays as it is.
            return changes;
        }
    }
    state.better_rounds = 0;
    if status == state.status {
        state.consecutive_rounds = state.consecutive_rounds.saturating_add(1);
        if let Some(open) = &mut state.open {
            if !renotify.is_zero()
                && round_ms - open.last_notified_ms >= renotify.as_millis() as i64
            {
                open.renotify_count += 1;
                open.last_notified_ms = round_ms;
                changes.push(Change::Renotify(open.clone(), status));
            }
        }
        return changes;
    }
    let previous = state.status;
    if let Some(open) = state.open.take() {
        changes.push(Change::Resolve(open, previous, round_ms));
    }
    if let Some(severity) = severity_of(status, priority) {
        let open = Open {
            id: alert_id(region, endpoint, status, round),
            severity,
            since_round: round,
            since_ms: round_ms,
            last_notified_ms: round_ms,
            renotify_count: 0,
        };
        changes.push(Change::Fire(open.clone(), status));
        state.open = Some(open);
    }
    state.status = status;
    state.consecutive_rounds = 1;
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agreed(status: Status) -> Agreement {
        Agreement::Agreed {
            status,
            agreeing: 1,
            reporting: 1,
        }
    }

    fn run(statuses: &[Option<Status>], renotify_s: u64) -> Vec<String> {
        let mut state = EndpointState::default();
        let mut out = Vec::new();
        for (r, s) in statuses.iter().enumerate() {
            let a = s.map_or(
                Agreement::NoQuorum {
                    reporting: 0,
                    required: 1,
                },
                agreed,
            );
            for c in step(
                &mut state,
                a,
                Priority::Critical,
                "us-east-1",
                "d",
                r as u64,
                r as i64 * 10_000,
                Duration::from_secs(renotify_s),
                1,
            ) {
                out.push(match c {
                    Change::Fire(o, s) => {
                        format!("fire {s} {} {}", o.severity.as_str(), o.since_round)
                    }
                    Change::Renotify(o, s) => format!("renotify {s} #{}", o.renotify_count),
                    Change::Resolve(o, s, _) => format!("resolve {s} {}", o.since_round),
                });
            }
        }
        out
    }

    #[test]
    fn one_alert_per_change_and_a_resolution() {
        use Status::*;
        let s = [
            Some(Healthy),
            Some(Warning),
            Some(Warning),
            Some(Critical),
            Some(Critical),
            None,
            Some(Healthy),
            Some(Healthy),
        ];
        assert_eq!(
            run(&s, 0),
            [
                "fire warning medium 1",
                "resolve warning 1",
                "fire critical critical 3",
                "resolve critical 3"
            ]
        );
    }

    #[test]
    fn a_better_status_takes_effect_after_resolve_after_rounds_and_a_worse_one_at_once() {
        use Status::*;
        let mut state = EndpointState::default();
        let mut seen = Vec::new();
        let wander = [
            Warning, Healthy, Warning, Healthy, Healthy, Critical, Warning, Warning,
        ];
        for (r, s) in wander.into_iter().enumerate() {
            for c in step(
                &mut state,
                agreed(s),
                Priority::Default,
                "r",
                "e",
                r as u64,
                r as i64,
                Duration::ZERO,
                2,
            ) {
                seen.push(match c {
                    Change::Fire(_, s) => format!("{r}: fire {s}"),
                    Change::Renotify(..) => format!("{r}: renotify"),
                    Change::Resolve(_, s, _) => format!("{r}: resolve {s}"),
                });
            }
        }
        assert_eq!(
            seen,
            [
                "0: fire warning",
                "4: resolve warning",
                "5: fire critical",
                "7: resolve critical",
                "7: fire warning"
            ]
        );
    }

    #[test]
    fn unresolved_alerts_are_renotified() {
        use Status::*;
        let s = [Some(Critical); 7];
        assert_eq!(
            run(&s, 30),
            [
                "fire critical critical 0",
                "renotify critical #1",
                "renotify critical #2"
            ]
        );
    }

    #[test]
    fn ids_are_stable_and_severity_follows_priority() {
        assert_eq!(
            alert_id("us-east-1", "d.x", Status::Critical, 7),
            alert_id("us-east-1", "d.x", Status::Critical, 7)
        );
        assert_eq!(
            severity_of(Status::Critical, Priority::Default),
            Some(Severity::High)
        );
        assert_eq!(severity_of(Status::Healthy, Priority::Critical), None);
    }
}
