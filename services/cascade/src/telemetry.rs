//! The cascade service's metrics. Labels: region, severity, kind.

use metrics::{counter, describe_counter, describe_gauge, gauge, Unit};

use crate::engine::Publication;

/// Cascade risk score of each region's last round, 0 to 1.
pub const RISK: &str = "regionguard_cascade_risk";
/// Alerts and failover requests published.
pub const PUBLISHED: &str = "regionguard_cascade_published_total";
/// Events that came after their round was decided.
pub const LATE_EVENTS: &str = "regionguard_cascade_late_events_total";

/// Registers descriptions.
pub fn describe() {
    describe_gauge!(
        RISK,
        Unit::Count,
        "cascade risk score of a region's last round (0 to 1)"
    );
    describe_counter!(
        PUBLISHED,
        Unit::Count,
        "cascade alerts and failover requests published"
    );
    describe_counter!(
        LATE_EVENTS,
        Unit::Count,
        "health events that came after their round was decided"
    );
}

pub(crate) fn late() {
    counter!(LATE_EVENTS).increment(1);
}

pub(crate) fn risk(region: &str, risk: f64) {
    gauge!(RISK, "region" => region.to_owned()).set(risk);
}

pub(crate) fn published(region: &str, item: &Publication, duplicate: bool) {
    let (kind, severity, text) = match item {
        Publication::Alert {
            severity, alert, ..
        } => ("alert", severity.as_str(), alert.summary.as_str()),
        Publication::Request { decision, .. } => ("failover_request", "", decision.reason.as_str()),
    };
    counter!(PUBLISHED, "kind" => kind, "severity" => severity).increment(1);
    if duplicate {
        tracing::info!(
            region,
            kind,
            "already published before a restart; JetStream dropped the repeat"
        );
    } else {
        tracing::info!(region, kind, severity, "{text}");
    }
}
