//! A notice: one alert or failover phase as the sinks see it, and each
//! sink's payload for it. No I/O here.

use rg_proto::v1::{Alert, AlertSource, AlertState, FailoverDecision, FailoverPhase, Severity};
use serde_json::{json, Value};

use rg_proto::domain::Severity as DomainSeverity;

/// One thing to tell the sinks.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Stable across the notice's lifecycle (an alert's firing, reminders
    /// and resolution; a failover's phases): PagerDuty's dedup key and
    /// Alertmanager's `alert_id` label.
    pub id: String,
    /// Alertmanager's `alertname`, e.g. `RegionguardCascade`.
    pub name: &'static str,
    /// `threshold`, `anomaly`, `cascade` or `failover`.
    pub source: &'static str,
    /// A severity's name ([`DomainSeverity::as_str`]).
    pub severity: &'static str,
    /// Resolved (an alert's end, a completed failover).
    pub resolved: bool,
    /// Region concerned ("" when none).
    pub region: String,
    /// Service concerned ("" when none).
    pub service: String,
    /// Endpoint concerned ("" when none).
    pub endpoint: String,
    /// One line for humans.
    pub summary: String,
    /// Predicted impact, one line per dependent service.
    pub impact: Vec<String>,
    /// What to do.
    pub actions: Vec<String>,
    /// When the condition began, unix ms.
    pub started_ms: i64,
    /// When it ended (resolved only), unix ms; 0 otherwise.
    pub ended_ms: i64,
    /// The dashboard's address.
    pub dashboard: String,
    /// The message as published, as JSON (the webhook's `event`).
    pub event: Value,
}

impl Notice {
    /// From an alert.
    pub fn from_alert(a: &Alert, dashboard: &str) -> Self {
        let (source, name) = match a.source() {
            AlertSource::Threshold => ("threshold", "RegionguardThreshold"),
            AlertSource::Anomaly => ("anomaly", "RegionguardAnomaly"),
            AlertSource::Cascade => ("cascade", "RegionguardCascade"),
            AlertSource::Readiness => ("readiness", "RegionguardReadiness"),
            AlertSource::Silence => ("silence", "RegionguardSilence"),
            _ => ("threshold", "RegionguardAlert"),
        };
        let impact = a
            .predicted_impact
            .iter()
            .map(|i| {
                format!(
                    "{}: {:.0} % degraded (via {})",
                    i.service,
                    i.degradation * 100.0,
                    i.path.join(" -> ")
                )
            })
            .collect();
        Self {
            id: a.id.clone(),
            name,
            source,
            severity: severity_name(a.severity()),
            resolved: a.state() == AlertState::Resolved,
            region: a.region.clone(),
            service: a.service.clone(),
            endpoint: a.endpoint.clone(),
            summary: a.summary.clone(),
            impact,
            actions: a.recommended_actions.clone(),
            started_ms: a.started_at_unix_ms,
            ended_ms: a.ended_at_unix_ms,
            dashboard: dashboard.to_owned(),
            event: json!({
                "kind": "alert",
                "id": a.id,
                "source": source,
                "severity": severity_name(a.severity()),
                "state": if a.state() == AlertState::Resolved { "resolved" } else { "firing" },
                "region": a.region,
                "service": a.service,
                "endpoint": a.endpoint,
                "summary": a.summary,
                "started_at_unix_ms": a.started_at_unix_ms,
                "ended_at_unix_ms": a.ended_at_unix_ms,
                "risk_score": a.risk_score,
                "renotify_count": a.renotify_count,
                "predicted_impact": a.predicted_impact.iter().map(|i| json!({
                    "service": i.service, "degradation": i.degradation, "path": i.path,
                })).collect::<Vec<_>>(),
                "recommended_actions": a.recommended_actions,
            }),
        }
    }

    /// From a failover phase. A failover is one notice from its plan to
    /// its end: firing (high) while planned or under way, resolved when
    /// completed; a failed or rolled-back failover is its own critical
    /// notice (`RegionguardFailoverFailed`), which only an operator ends.
    pub fn from_failover(d: &FailoverDecision, dashboard: &str) -> Self {
        let phase = d.phase();
        let failed = matches!(phase, FailoverPhase::Failed | FailoverPhase::RolledBack);
        let target = if d.to_region.is_empty() {
            String::new()
        } else {
            format!(" -> {}", d.to_region)
        };
        let summary = match phase {
            FailoverPhase::Requested => format!(
                "failover requested away from {}: {}",
                d.from_region, d.reason
            ),
            FailoverPhase::Planned => format!(
                "failover {} planned: {}{target} ({} steps, {} mode)",
                d.id,
                d.from_region,
                d.plan.as_ref().map_or(0, |p| p.steps.len()),
                d.mode()
                    .as_str_name()
                    .trim_start_matches("FAILOVER_MODE_")
                    .to_lowercase()
            ),
            FailoverPhase::Approved => format!("failover {} approved by {}", d.id, d.actor),
            FailoverPhase::Rejected => format!("failover {} {}", d.id, d.error),
            FailoverPhase::Completed => {
                format!("failover {} completed: traffic is in {}", d.id, d.to_region)
            }
            FailoverPhase::RolledBack => format!("failover {} rolled back: {}", d.id, d.error),
            FailoverPhase::Failed => format!("failover {} failed: {}", d.id, d.error),
            _ => format!("failover {}: {} step {}", d.id, phase.token(), d.step_index),
        };
        let mut actions = Vec::new();
        match phase {
            FailoverPhase::Planned => actions.push(format!(
                "review the plan on the dashboard; approve with `regionguard failover approve {}`",
                d.id
            )),
            FailoverPhase::Failed | FailoverPhase::RolledBack => actions.push(
                "traffic was not moved (or was moved back): check the failing step on the dashboard".into(),
            ),
            _ => {}
        }
        Self {
            id: format!("failover:{}", d.id),
            name: if failed {
                "RegionguardFailoverFailed"
            } else {
                "RegionguardFailover"
            },
            source: "failover",
            severity: if failed { "critical" } else { "high" },
            resolved: phase == FailoverPhase::Completed,
            region: d.from_region.clone(),
            service: String::new(),
            endpoint: String::new(),
            summary,
            impact: Vec::new(),
            actions,
            started_ms: d.at_unix_ms,
            ended_ms: if phase == FailoverPhase::Completed {
                d.at_unix_ms
            } else {
                0
            },
            dashboard: dashboard.to_owned(),
            event: json!({
                "kind": "failover",
                "id": d.id,
                "phase": phase.token(),
                "from_region": d.from_region,
                "to_region": d.to_region,
                "reason": d.reason,
                "actor": d.actor,
                "error": d.error,
                "at_unix_ms": d.at_unix_ms,
            }),
        }
    }

    /// The notice's severity, to compare with a sink's `min_severity`.
    pub fn rank(&self) -> DomainSeverity {
        DomainSeverity::from_name(self.severity).unwrap_or(DomainSeverity::Info)
    }

    /// Alertmanager labels: the same for a notice's firing and resolution,
    /// so Alertmanager matches them.
    fn labels(&self) -> Value {
        let mut labels = serde_json::Map::new();
        labels.insert("alertname".into(), self.name.into());
        labels.insert("alert_id".into(), self.id.clone().into());
        labels.insert("source".into(), self.source.into());
        labels.insert("severity".into(), self.severity.into());
        for (k, v) in [
            ("region", &self.region),
            ("service", &self.service),
            ("endpoint", &self.endpoint),
        ] {
            if !v.is_empty() {
                labels.insert(k.into(), v.clone().into());
            }
        }
        Value::Object(labels)
    }

    /// One alert of Alertmanager's `POST /api/v2/alerts`. A firing one
    /// ends at `now + hold` unless sent again; a resolved one ends when
    /// the condition did.
    pub fn alertmanager(&self, now_ms: i64, hold_ms: i64) -> Value {
        let ends = if self.resolved {
            if self.ended_ms > 0 {
                self.ended_ms
            } else {
                now_ms
            }
        } else {
            now_ms + hold_ms
        };
        let mut annotations = serde_json::Map::new();
        annotations.insert("summary".into(), self.summary.clone().into());
        if !self.impact.is_empty() {
            annotations.insert("predicted_impact".into(), self.impact.join("; ").into());
        }
        if !self.actions.is_empty() {
            annotations.insert("recommended_actions".into(), self.actions.join("; ").into());
        }
        annotations.insert("dashboard".into(), self.dashboard.clone().into());
        json!({
            "labels": self.labels(),
            "annotations": annotations,
            "startsAt": rfc3339(if self.started_ms > 0 { self.started_ms } else { now_ms }),
            "endsAt": rfc3339(ends),
            "generatorURL": self.dashboard,
        })
    }

    /// The generic webhook's body.
    pub fn webhook(&self) -> Value {
        json!({
            "version": "1",
            "id": self.id,
            "name": self.name,
            "source": self.source,
            "severity": self.severity,
            "status": if self.resolved { "resolved" } else { "firing" },
            "summary": self.summary,
            "dashboard": self.dashboard,
            "event": self.event,
        })
    }

    /// A Slack-compatible incoming webhook's body.
    pub fn slack(&self) -> Value {
        let head = if self.resolved {
            format!("RESOLVED [{}] {}", self.source, self.summary)
        } else {
            format!(
                "{} [{}] {}",
                self.severity.to_uppercase(),
                self.source,
                self.summary
            )
        };
        let mut lines = vec![head];
        if !self.impact.is_empty() {
            lines.push(format!("Impact: {}", self.impact.join("; ")));
        }
        if !self.actions.is_empty() {
            lines.push(format!("Do: {}", self.actions.join("; ")));
        }
        lines.push(format!("<{}|Dashboard>", self.dashboard));
        json!({ "text": lines.join("\n") })
    }

    /// A PagerDuty Events API v2 event: trigger, or resolve with the same
    /// dedup key.
    pub fn pagerduty(&self, routing_key: &str) -> Value {
        if self.resolved {
            return json!({
                "routing_key": routing_key,
                "event_action": "resolve",
                "dedup_key": self.id,
            });
        }
        let severity = match self.severity {
            "critical" => "critical",
            "high" => "error",
            "medium" => "warning",
            _ => "info",
        };
        json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": self.id,
            "payload": {
                "summary": truncate(&self.summary, 1024),
                "source": if self.region.is_empty() { "regionguard".to_owned() } else { format!("regionguard/{}", self.region) },
                "severity": severity,
                "component": self.service,
                "group": self.region,
                "class": self.source,
                "custom_details": {
                    "predicted_impact": self.impact,
                    "recommended_actions": self.actions,
                    "endpoint": self.endpoint,
                },
            },
            "links": [{ "href": self.dashboard, "text": "regionguard dashboard" }],
        })
    }
}

/// The wire severity as a config name.
pub fn severity_name(s: Severity) -> &'static str {
    DomainSeverity::from_wire(s).map_or("info", DomainSeverity::as_str)
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Unix milliseconds as RFC 3339 (UTC), as Alertmanager takes them.
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rg_proto::v1::Impact;

    fn cascade_alert(state: AlertState) -> Alert {
        Alert {
            id: "cascade:us-east-1:critical:42".into(),
            source: AlertSource::Cascade as i32,
            severity: Severity::Critical as i32,
            state: state as i32,
            region: "us-east-1".into(),
            summary: "us-east-1: cascade risk 0.91".into(),
            started_at_unix_ms: 1_700_000_000_000,
            ended_at_unix_ms: if state == AlertState::Resolved {
                1_700_000_060_000
            } else {
                0
            },
            predicted_impact: vec![Impact {
                service: "lambda".into(),
                degradation: 0.8,
                path: vec!["dynamodb".into(), "lambda".into()],
            }],
            recommended_actions: vec!["fail over to us-west-2".into()],
            ..Default::default()
        }
    }

    #[test]
    fn alertmanager_gets_the_same_labels_firing_and_resolved_and_endsat_on_resolution() {
        let firing = Notice::from_alert(&cascade_alert(AlertState::Firing), "http://dash/");
        let resolved = Notice::from_alert(&cascade_alert(AlertState::Resolved), "http://dash/");
        let f = firing.alertmanager(1_700_000_010_000, 240_000);
        let r = resolved.alertmanager(1_700_000_070_000, 240_000);
        assert_eq!(f["labels"], r["labels"]);
        assert_eq!(
            f["labels"],
            json!({"alertname": "RegionguardCascade", "alert_id": "cascade:us-east-1:critical:42",
                   "source": "cascade", "severity": "critical", "region": "us-east-1"})
        );
        assert_eq!(f["startsAt"], "2023-11-14T22:13:20Z");
        assert_eq!(f["endsAt"], "2023-11-14T22:17:30Z", "now + hold");
        assert_eq!(r["endsAt"], "2023-11-14T22:14:20Z", "when it ended");
        assert_eq!(
            f["annotations"]["predicted_impact"],
            "lambda: 80 % degraded (via dynamodb -> lambda)"
        );
        assert_eq!(f["annotations"]["dashboard"], "http://dash/");
    }

    #[test]
    fn pagerduty_triggers_and_resolves_with_one_dedup_key() {
        let t =
            Notice::from_alert(&cascade_alert(AlertState::Firing), "http://dash/").pagerduty("KEY");
        let r = Notice::from_alert(&cascade_alert(AlertState::Resolved), "http://dash/")
            .pagerduty("KEY");
        assert_eq!(
            (t["event_action"].as_str(), r["event_action"].as_str()),
            (Some("trigger"), Some("resolve"))
        );
        assert_eq!(t["dedup_key"], r["dedup_key"]);
        assert_eq!(t["payload"]["severity"], "critical");
        assert_eq!(t["routing_key"], "KEY");
    }

    #[test]
    fn a_failed_failover_is_a_critical_notice_of_its_own() {
        let mut d = FailoverDecision {
            id: "fo-1".into(),
            from_region: "us-east-1".into(),
            to_region: "us-west-2".into(),
            error: "step 3 failed".into(),
            ..Default::default()
        };
        d.set_phase(FailoverPhase::Planned);
        let planned = Notice::from_failover(&d, "http://dash/");
        d.set_phase(FailoverPhase::RolledBack);
        let rolled = Notice::from_failover(&d, "http://dash/");
        d.set_phase(FailoverPhase::Completed);
        let done = Notice::from_failover(&d, "http://dash/");
        assert_eq!((planned.severity, planned.resolved), ("high", false));
        assert_eq!(
            (rolled.name, rolled.severity),
            ("RegionguardFailoverFailed", "critical")
        );
        assert_eq!((done.name, done.resolved), ("RegionguardFailover", true));
        assert!(planned.actions[0].contains("regionguard failover approve fo-1"));
    }
}
