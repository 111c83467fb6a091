//! The detector's metrics. Labels: region, source, severity, state.

use metrics::{counter, describe_counter, describe_gauge, gauge, Unit};

use crate::engine::{AlertToPublish, Decided};

/// Health events taken into a round.
pub const EVENTS: &str = "regionguard_detector_events_total";
/// Events that arrived after their round was decided (acked, unused).
pub const LATE_EVENTS: &str = "regionguard_detector_late_events_total";
/// Rounds decided, by region and whether they were decided silently.
pub const ROUNDS: &str = "regionguard_detector_rounds_total";
/// Alerts published, by source, severity and state.
pub const ALERTS: &str = "regionguard_detector_alerts_total";
/// Rounds the anomaly model found statistically abnormal but under the
/// practical floor (`anomaly.min_effect`): no alert.
pub const ANOMALY_HELD_BACK: &str = "regionguard_detector_anomaly_held_back_total";
/// Share of the last round of a region the anomaly model flagged.
pub const FLAGGED_SHARE: &str = "regionguard_detector_flagged_share";

/// Registers descriptions.
pub fn describe() {
    describe_counter!(EVENTS, Unit::Count, "health events taken into a round");
    describe_counter!(
        LATE_EVENTS,
        Unit::Count,
        "health events that came after their round was decided"
    );
    describe_counter!(
        ROUNDS,
        Unit::Count,
        "rounds decided, by what decided them (complete, or a deadline)"
    );
    describe_counter!(
        ANOMALY_HELD_BACK,
        Unit::Count,
        "rounds statistically abnormal but under the practical floor"
    );
    describe_counter!(ALERTS, Unit::Count, "alerts published");
    describe_gauge!(
        FLAGGED_SHARE,
        Unit::Count,
        "share of the last round flagged by the anomaly model"
    );
}

pub(crate) fn event() {
    counter!(EVENTS).increment(1);
}

pub(crate) fn late() {
    counter!(LATE_EVENTS).increment(1);
}

pub(crate) fn alert(a: &AlertToPublish, duplicate: bool) {
    let state = if a.alert.state == rg_proto::v1::AlertState::Resolved as i32 {
        "resolved"
    } else {
        "firing"
    };
    counter!(ALERTS, "source" => a.source, "severity" => a.severity.as_str(), "state" => state)
        .increment(1);
    if duplicate {
        tracing::info!(id = %a.alert.id, "alert already published (a repeat after a restart); JetStream dropped it");
    } else {
        tracing::info!(id = %a.alert.id, source = a.source, severity = a.severity.as_str(), state, summary = %a.alert.summary, "alert");
    }
}

/// A silence alert was published.
pub(crate) fn silence(
    a: &rg_proto::v1::Alert,
    severity: rg_proto::domain::Severity,
    duplicate: bool,
) {
    let resolved = a.state == rg_proto::v1::AlertState::Resolved as i32;
    let state = if resolved { "resolved" } else { "firing" };
    counter!(ALERTS, "source" => "silence", "severity" => severity.as_str(), "state" => state)
        .increment(1);
    if duplicate {
        tracing::info!(id = %a.id, "silence alert already published (by another replica or before a restart)");
    } else if resolved {
        tracing::info!(id = %a.id, region = %a.region, summary = %a.summary, "silence resolved");
    } else {
        tracing::warn!(id = %a.id, region = %a.region, severity = severity.as_str(), summary = %a.summary, "silence");
    }
}

pub(crate) fn round<T>(d: &Decided<T>) {
    counter!(ROUNDS, "region" => d.region.clone(), "quiet" => if d.quiet { "yes" } else { "no" }, "decided_by" => d.decided_by.as_str())
        .increment(1);
    if let Some(v) = &d.verdict {
        gauge!(FLAGGED_SHARE, "region" => d.region.clone()).set(v.share);
        if v.held_back {
            counter!(ANOMALY_HELD_BACK, "region" => d.region.clone()).increment(1);
            tracing::debug!(region = %d.region, round = d.round, effect_ms = v.effect_ms, practical = v.practical, "abnormal by the statistics, under the practical floor: no alert");
        }
    }
    tracing::debug!(region = %d.region, round = d.round, events = d.events, alerts = d.alerts.len(), quiet = d.quiet, "round decided");
}
