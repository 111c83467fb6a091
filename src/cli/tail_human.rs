//! `regionguard tail`'s format for a person: one line a message (time in
//! UTC, subject, severity, status or phase, what it says), and with
//! `--verbose` what an alert predicts and recommends and a plan's steps,
//! indented under it.

use prost::Message;
use rg_proto::v1;

/// One message as a person reads it (possibly several lines with
/// `verbose`).
pub(crate) fn line(prefix: &str, subject: &str, payload: &[u8], verbose: bool) -> String {
    let kind = subject
        .strip_prefix(prefix)
        .and_then(|s| s.strip_prefix('.'))
        .and_then(|s| s.split('.').next());
    let rendered = match kind {
        Some("health") => v1::HealthEvent::decode(payload).map(|e| health(&e)),
        Some("alerts") => v1::Alert::decode(payload).map(|a| alert(&a, verbose)),
        Some("decisions") if super::tail::is_readiness(prefix, subject) => {
            v1::Readiness::decode(payload).map(|r| readiness(&r, verbose))
        }
        Some("decisions") => v1::FailoverDecision::decode(payload).map(|d| decision(&d, verbose)),
        Some("snapshots") => v1::DashboardSnapshot::decode(payload).map(|s| snapshot(&s)),
        Some("confirm") => v1::ConfirmRequest::decode(payload).map(|c| confirm(&c)),
        Some("sim") => match v1::FaultRequest::decode(payload) {
            Ok(r) if r.action.is_some() => Ok(fault_request(&r)),
            _ => v1::FaultReply::decode(payload).map(|r| fault_reply(&r)),
        },
        Some("deadletter") => Ok((
            0,
            "DEAD-LETTER".to_owned(),
            format!(
                "{} undecodable bytes set aside by a consumer",
                payload.len()
            ),
        )),
        _ => {
            return format!(
                "{}  {subject}  ?  {} bytes: no regionguard message is published on this subject",
                clock(now_ms()),
                payload.len()
            )
        }
    };
    match rendered {
        Ok((at, tag, text)) => {
            let at = if at > 0 { at } else { now_ms() };
            format!("{}  {subject}  {tag}  {text}", clock(at))
        }
        Err(e) => format!(
            "{}  {subject}  ?  {} undecodable bytes: {e}",
            clock(now_ms()),
            payload.len()
        ),
    }
}

/// (time, tag, text).
type Rendered = (i64, String, String);

fn health(e: &v1::HealthEvent) -> Rendered {
    let outcome = match e.error_kind() {
        v1::ErrorKind::None => format!("answered in {}", millis(e.response_time_us)),
        kind => format!(
            "{} after {}",
            name(kind.as_str_name(), "ERROR_KIND_"),
            millis(e.response_time_us)
        ),
    };
    let burst = if e.confirmation { " (re-probe)" } else { "" };
    (
        e.observed_at_unix_ms,
        name(e.status().as_str_name(), "STATUS_").to_uppercase(),
        format!(
            "{} via {} at {}: {outcome}{burst}",
            e.endpoint, e.resolver, e.vantage
        ),
    )
}

fn alert(a: &v1::Alert, verbose: bool) -> Rendered {
    let severity = rg_proto::domain::Severity::from_wire(a.severity())
        .map_or("UNSPECIFIED".to_owned(), |s| s.as_str().to_uppercase());
    let state = match (a.state(), a.renotify_count) {
        (v1::AlertState::Resolved, _) => "resolved".to_owned(),
        (_, 0) => "firing".to_owned(),
        (_, n) => format!("firing, reminder {n}"),
    };
    let mut text = format!("[{state}] {}", a.summary);
    if verbose && a.state() != v1::AlertState::Resolved {
        if !a.predicted_impact.is_empty() {
            let hurt: Vec<String> = a
                .predicted_impact
                .iter()
                .map(|i| {
                    format!(
                        "{} {:.0} % (via {})",
                        i.service,
                        i.degradation * 100.0,
                        i.path.join(" → ")
                    )
                })
                .collect();
            text.push_str(&format!("\n      impact: {}", hurt.join(", ")));
        }
        for action in &a.recommended_actions {
            text.push_str(&format!("\n      do: {action}"));
        }
        for f in a.anomalies.iter().take(5) {
            text.push_str(&format!(
                "\n      abnormal: {} at {}: {}",
                f.endpoint,
                f.vantage,
                f.reasons.join("; ")
            ));
        }
    }
    (a.emitted_at_unix_ms, severity, text)
}

fn decision(d: &v1::FailoverDecision, verbose: bool) -> Rendered {
    let phase = name(d.phase().as_str_name(), "FAILOVER_PHASE_").to_uppercase();
    let to = if d.to_region.is_empty() {
        "?"
    } else {
        d.to_region.as_str()
    };
    let back = if d.failback { " (failback)" } else { "" };
    let head = format!("{} {} → {to}{back}", d.id, d.from_region);
    let plan = d.plan.as_ref();
    let steps = plan.map_or(0, |p| p.steps.len());
    let text = match d.phase() {
        v1::FailoverPhase::Requested => format!("{head}: {}", d.reason),
        v1::FailoverPhase::Planned => {
            let mode = name(d.mode().as_str_name(), "FAILOVER_MODE_");
            let mut t = format!(
                "{head}: {steps} steps, {mode} mode; {}",
                plan.map_or("", |p| p.rationale.as_str())
            );
            if let Some(p) = plan {
                for w in &p.warnings {
                    t.push_str(&format!("; warning: {w}"));
                }
                if verbose {
                    for (i, s) in p.steps.iter().enumerate() {
                        t.push_str(&format!(
                            "\n      step {}: {} {}: {} → {}",
                            i + 1,
                            name(s.kind().as_str_name(), "STEP_KIND_"),
                            s.resource,
                            s.before,
                            s.after
                        ));
                    }
                }
            }
            t
        }
        v1::FailoverPhase::Step => {
            let step = plan.and_then(|p| p.steps.get(d.step_index as usize));
            match step {
                Some(s) => format!(
                    "{head}: step {}/{steps} {} {}: {}{}",
                    d.step_index + 1,
                    name(s.kind().as_str_name(), "STEP_KIND_"),
                    s.resource,
                    name(s.status().as_str_name(), "STEP_STATUS_"),
                    if s.error.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", s.error)
                    }
                ),
                None => format!("{head}: step {}", d.step_index + 1),
            }
        }
        v1::FailoverPhase::Failed | v1::FailoverPhase::RolledBack => {
            format!("{head}: {}", d.error)
        }
        _ => format!("{head} by {}", d.actor),
    };
    (d.at_unix_ms, phase, text)
}

fn readiness(r: &v1::Readiness, verbose: bool) -> Rendered {
    let head = if r.ready { "READY" } else { "NOT-READY" };
    let mut text = format!("{}: {}", r.region, r.summary);
    if verbose {
        for p in &r.problems {
            text.push_str(&format!("\n      problem: {p}"));
        }
        for (i, s) in r.steps.iter().enumerate() {
            text.push_str(&format!(
                "\n      step {}: {}{}",
                i + 1,
                s.resource,
                if s.irreversible {
                    " (IRREVERSIBLE)"
                } else {
                    ""
                }
            ));
        }
        for w in &r.warnings {
            text.push_str(&format!("\n      warning: {w}"));
        }
        for c in &r.candidates {
            for k in c.checks.iter().filter(|k| k.factor < 1.0) {
                text.push_str(&format!(
                    "\n      {} {} {:.2}: {}",
                    c.region, k.resource, k.factor, k.detail
                ));
            }
        }
    }
    (r.checked_at_unix_ms, head.to_owned(), text)
}

fn snapshot(s: &v1::DashboardSnapshot) -> Rendered {
    let text = match &s.summary {
        Some(m) => format!(
            "snapshot {}: {} endpoints, {} healthy, {} warning, {} critical ({:.1} % up), average {}",
            s.sequence,
            m.total_endpoints,
            m.healthy,
            m.warning,
            m.critical,
            m.uptime_percent,
            millis(m.avg_response_time_us)
        ),
        None => format!("snapshot {}: no endpoints yet", s.sequence),
    };
    (s.generated_at_unix_ms, "SNAPSHOT".into(), text)
}

fn confirm(c: &v1::ConfirmRequest) -> Rendered {
    (
        0,
        "CONFIRM".into(),
        format!(
            "{} saw {} {}: asks the other vantage points in {} to re-probe it",
            c.vantage,
            c.endpoint,
            name(c.status().as_str_name(), "STATUS_"),
            c.region
        ),
    )
}

fn fault_target(f: &v1::FaultSpec) -> String {
    let parts: Vec<&str> = [f.name.as_str(), f.service.as_str(), f.region.as_str()]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        "every name".into()
    } else {
        parts.join(" ")
    }
}

fn fault_request(r: &v1::FaultRequest) -> Rendered {
    let text = match &r.action {
        Some(v1::fault_request::Action::Inject(f)) => format!(
            "inject {} on {}",
            name(f.kind().as_str_name(), "FAULT_KIND_"),
            fault_target(f)
        ),
        Some(v1::fault_request::Action::Clear(f)) => format!("clear faults on {}", fault_target(f)),
        Some(v1::fault_request::Action::List(_)) | None => "list faults".into(),
    };
    (0, "FAULT".into(), text)
}

fn fault_reply(r: &v1::FaultReply) -> Rendered {
    let mut text = format!("{} faults active", r.active.len());
    if !r.error.is_empty() {
        text.push_str(&format!("; refused: {}", r.error));
    }
    (0, "FAULT".into(), text)
}

/// `STATUS_CRITICAL` → `critical`.
fn name(wire: &str, prefix: &str) -> String {
    wire.strip_prefix(prefix).unwrap_or(wire).to_lowercase()
}

fn millis(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Unix ms as `HH:MM:SS.mmm` (UTC).
fn clock(unix_ms: i64) -> String {
    let ms = unix_ms.rem_euclid(86_400_000);
    let s = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_is_one_line_with_its_severity_and_summary_and_verbose_adds_what_to_do() {
        let a = v1::Alert {
            severity: v1::Severity::Critical as i32,
            state: v1::AlertState::Firing as i32,
            summary:
                "dynamodb.us-east-1.amazonaws.com is critical (empty_answer) at 2/2 vantage points"
                    .into(),
            emitted_at_unix_ms: 1_764_747_075_123,
            predicted_impact: vec![v1::Impact {
                service: "ec2".into(),
                degradation: 0.7,
                path: vec!["dynamodb".into(), "ec2".into()],
            }],
            recommended_actions: vec!["switch DynamoDB clients".into()],
            ..Default::default()
        };
        let subject = "rg.alerts.threshold.critical";
        let one = line("rg", subject, &a.encode_to_vec(), false);
        assert_eq!(one, "07:31:15.123  rg.alerts.threshold.critical  CRITICAL  [firing] dynamodb.us-east-1.amazonaws.com is critical (empty_answer) at 2/2 vantage points");
        let more = line("rg", subject, &a.encode_to_vec(), true);
        assert!(
            more.ends_with(
                "\n      impact: ec2 70 % (via dynamodb → ec2)\n      do: switch DynamoDB clients"
            ),
            "{more}"
        );
    }

    #[test]
    fn health_events_confirmations_and_garbage_read_as_such() {
        let e = v1::HealthEvent {
            endpoint: "dynamodb.us-east-1.amazonaws.com".into(),
            resolver: "127.0.0.1:8053".into(),
            vantage: "use1-a".into(),
            status: v1::Status::Critical as i32,
            error_kind: v1::ErrorKind::Timeout as i32,
            response_time_us: 1_000_000,
            observed_at_unix_ms: 1_000,
            confirmation: true,
            ..Default::default()
        };
        assert_eq!(
            line("rg", "rg.health.us-east-1.dynamodb", &e.encode_to_vec(), false),
            "00:00:01.000  rg.health.us-east-1.dynamodb  CRITICAL  dynamodb.us-east-1.amazonaws.com via 127.0.0.1:8053 at use1-a: timeout after 1000 ms (re-probe)"
        );
        let c = v1::ConfirmRequest {
            region: "us-east-1".into(),
            endpoint: "elb".into(),
            vantage: "use1-a".into(),
            status: v1::Status::Critical as i32,
            round_id: 5,
        };
        let l = line("rg", "rg.confirm.us-east-1", &c.encode_to_vec(), false);
        assert!(l.ends_with("CONFIRM  use1-a saw elb critical: asks the other vantage points in us-east-1 to re-probe it"), "{l}");
        let g = line("rg", "rg.alerts.threshold.high", &[0xff, 0xff], false);
        assert!(g.contains("?  2 undecodable bytes"), "{g}");
    }
}
