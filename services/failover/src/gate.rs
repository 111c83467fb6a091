//! The failback gate: a failback is proposed only once the failed region
//! has been well for the whole `failback_after`, not merely scoring above
//! `min_target_score` (a region with DynamoDB wholly failing and its other
//! services fine can score 0.83).
//!
//! Held back while, within the window:
//! - any lookup of a critical service of the region was not healthy (a
//!   service probed at critical priority, or of criticality 1.0 in the
//!   dependency map), or
//! - a cascade alert above low was open for the region.

use std::collections::BTreeMap;
use std::time::Duration;

use rg_proto::domain::{Observation, Priority, Severity, Status};
use rg_proto::v1::{Alert, AlertSource, AlertState};

/// What keeps each region from a failback.
#[derive(Debug, Default)]
pub struct FailbackGate {
    /// region -> critical service -> (last not-healthy lookup, what it was).
    unhealthy: BTreeMap<String, BTreeMap<String, (i64, String)>>,
    /// region -> open cascade alert id -> (severity, summary).
    cascade_open: BTreeMap<String, BTreeMap<String, (Severity, String)>>,
    /// region -> when its last cascade alert above low ended.
    cascade_ended: BTreeMap<String, i64>,
}

impl FailbackGate {
    /// Takes one lookup; `criticality` is the failover's map.
    pub fn observe(&mut self, o: &Observation, criticality: &BTreeMap<String, f64>) {
        let critical = o.priority == Priority::Critical
            || criticality.get(o.service.as_str()).copied().unwrap_or(0.0) >= 1.0;
        if !critical || o.status == Status::Healthy {
            return;
        }
        let what = format!(
            "{} {} at {}{}",
            o.endpoint,
            o.status.as_str(),
            o.vantage,
            o.error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
        let slot = self
            .unhealthy
            .entry(o.region.as_str().to_owned())
            .or_default()
            .entry(o.service.as_str().to_owned())
            .or_insert((o.observed_at_unix_ms, what.clone()));
        if slot.0 <= o.observed_at_unix_ms {
            *slot = (o.observed_at_unix_ms, what);
        }
    }

    /// Takes one alert (only the cascade's count).
    pub fn alert(&mut self, a: &Alert) {
        if a.source() != AlertSource::Cascade || a.region.is_empty() {
            return;
        }
        let severity = Severity::from_wire(a.severity()).unwrap_or(Severity::Info);
        let open = self.cascade_open.entry(a.region.clone()).or_default();
        let firing = a.state() == AlertState::Firing && severity > Severity::Low;
        if firing {
            open.insert(a.id.clone(), (severity, a.summary.clone()));
        } else if open.remove(&a.id).is_some() || severity > Severity::Low {
            let ended = if a.ended_at_unix_ms > 0 {
                a.ended_at_unix_ms
            } else {
                a.emitted_at_unix_ms
            };
            let last = self.cascade_ended.entry(a.region.clone()).or_insert(ended);
            *last = (*last).max(ended);
        }
    }

    /// Why `region` may not be failed back to at `now_ms`, or `None` when
    /// it has been well for the whole `window`.
    pub fn blocked(&self, region: &str, now_ms: i64, window: Duration) -> Option<String> {
        let since = now_ms - window.as_millis() as i64;
        if let Some((id, (severity, summary))) =
            self.cascade_open.get(region).and_then(|o| o.iter().next())
        {
            return Some(format!(
                "cascade alert {id} ({}) is open: {summary}",
                severity.as_str()
            ));
        }
        if let Some(&ended) = self.cascade_ended.get(region).filter(|&&t| t > since) {
            return Some(format!(
                "a cascade alert above low ended {} s ago; a failback needs {window:?} without one",
                (now_ms - ended) / 1000
            ));
        }
        let services = self.unhealthy.get(region)?;
        let (service, (at, what)) = services
            .iter()
            .filter(|(_, (at, _))| *at > since)
            .max_by_key(|(_, (at, _))| *at)?;
        Some(format!(
            "critical service {service} was not healthy {} s ago ({what}); a failback needs {window:?} without that",
            (now_ms - at).max(0) / 1000
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rg_proto::v1::{self, HealthEvent};

    fn obs(service: &str, status: v1::Status, priority: v1::Priority, at_ms: i64) -> Observation {
        let mut e = HealthEvent {
            region: "us-east-1".into(),
            service: service.into(),
            endpoint: format!("{service}.us-east-1.amazonaws.com"),
            vantage: "use1-a".into(),
            resolver: "127.0.0.1:53".into(),
            observed_at_unix_ms: at_ms,
            round_id: 1,
            ..Default::default()
        };
        e.set_status(status);
        e.set_priority(priority);
        e.set_query_type(v1::QueryType::A);
        e.set_probe_kind(v1::ProbeKind::Dns);
        Observation::try_from(&e).expect("valid")
    }

    fn crit() -> BTreeMap<String, f64> {
        crate::config::default_criticality()
    }

    const WINDOW: Duration = Duration::from_secs(60);

    #[test]
    fn a_critical_service_not_healthy_within_the_window_holds_the_failback() {
        let mut g = FailbackGate::default();
        g.observe(
            &obs(
                "dynamodb",
                v1::Status::Critical,
                v1::Priority::Critical,
                10_000,
            ),
            &crit(),
        );
        let why = g.blocked("us-east-1", 30_000, WINDOW).expect("held");
        assert!(why.contains("critical service dynamodb"), "{why}");
        // The whole window after it, the gate opens.
        assert_eq!(g.blocked("us-east-1", 70_001, WINDOW), None);
        assert_eq!(g.blocked("us-west-2", 30_000, WINDOW), None);
    }

    #[test]
    fn a_service_of_lower_criticality_probed_at_default_priority_does_not_hold_it() {
        let mut g = FailbackGate::default();
        g.observe(
            &obs("sqs", v1::Status::Critical, v1::Priority::Default, 10_000),
            &crit(),
        );
        assert_eq!(g.blocked("us-east-1", 20_000, WINDOW), None);
        // Probed at critical priority, it counts.
        g.observe(
            &obs("sqs", v1::Status::Warning, v1::Priority::Critical, 10_000),
            &crit(),
        );
        assert!(g.blocked("us-east-1", 20_000, WINDOW).is_some());
    }

    #[test]
    fn an_open_cascade_alert_above_low_holds_it_until_a_window_after_it_ended() {
        let mut g = FailbackGate::default();
        let mut a = Alert {
            id: "cascade:us-east-1".into(),
            region: "us-east-1".into(),
            summary: "DynamoDB DNS: 4 services at risk".into(),
            emitted_at_unix_ms: 1_000,
            ..Default::default()
        };
        a.set_source(AlertSource::Cascade);
        a.set_severity(v1::Severity::High);
        a.set_state(AlertState::Firing);
        g.alert(&a);
        let why = g.blocked("us-east-1", 500_000, WINDOW).expect("held");
        assert!(why.contains("is open"), "{why}");
        a.set_state(AlertState::Resolved);
        a.ended_at_unix_ms = 100_000;
        g.alert(&a);
        assert!(g.blocked("us-east-1", 150_000, WINDOW).is_some());
        assert_eq!(g.blocked("us-east-1", 160_001, WINDOW), None);
        // A low one never holds it.
        let mut low = a.clone();
        low.id = "cascade:low".into();
        low.set_severity(v1::Severity::Low);
        low.set_state(AlertState::Firing);
        g.alert(&low);
        assert_eq!(g.blocked("us-east-1", 160_001, WINDOW), None);
    }
}
