//! Readiness: whether a failover away from each declared region would
//! work now, checked every `readiness_interval` and on demand
//! (`regionguard failover readiness`, a core request on
//! `<p>.failover.readiness`), without executing anything.
//!
//! For each declared region as the failing one: the candidates (DNS and
//! deep health, capacity) and the plan a failover would run, exactly as a
//! request would make it; then each standby on its own, whatever its
//! health: a plan to it must be possible (a missing record, a behaviour or
//! origin group without its origin, a replica that cannot be promoted),
//! its targets must not all be unhealthy, and its Auto Scaling maximum
//! must hold what the failing region runs. The result goes out on
//! `<p>.decisions.readiness.<region>`; while a problem lasts, an alert
//! `<p>.alerts.readiness.<severity>` is open for the region (`high` when a
//! failover would fail, `medium` when it would work but a standby
//! drifted), resolved when the problems are gone. The open alert is kept
//! in the failover bucket, so a restarted service resolves it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use prost::Message as _;
use rg_proto::domain::Severity;
use rg_proto::v1::{Alert, AlertSource, AlertState, Readiness, ReadinessRun};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::service::Service;
use crate::{deep, plan};

/// A readiness alert that is firing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenAlert {
    /// Its id.
    pub id: String,
    /// Its severity.
    pub severity: Severity,
    /// When it began, unix ms.
    pub since_ms: i64,
}

impl Service {
    /// Checks every declared region; publishes each result and opens or
    /// resolves its alert. One run at a time.
    pub(crate) async fn readiness_run(&self) -> ReadinessRun {
        let _one = self.readiness_lock.lock().await;
        if self.aws.is_none() {
            return ReadinessRun {
                error: "observe mode: the failover service reads no AWS state".into(),
                ..Default::default()
            };
        }
        let regions: Vec<String> = self.config.regions.keys().cloned().collect();
        if regions.is_empty() {
            return ReadinessRun {
                error: "no [failover.regions.<region>] is declared: nothing to check".into(),
                ..Default::default()
            };
        }
        let mut out = ReadinessRun::default();
        for region in &regions {
            let mut r = self.readiness_of(region).await;
            r.alert_id = self.readiness_alert(&r).await;
            let subject = self.bus.subjects.readiness(region);
            let msg_id = format!("readiness:{region}:{}", r.checked_at_unix_ms);
            match self
                .bus
                .publisher
                .publish_until_stored(subject.clone(), &r, Some(&msg_id), &self.shutdown)
                .await
            {
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::error!(%subject, error = %e, "readiness result cannot be stored")
                }
                None => tracing::warn!(%subject, "readiness result not stored: shutting down"),
            }
            crate::telemetry::readiness(region, r.ready, r.problems.len());
            if r.problems.is_empty() {
                tracing::info!(%region, target = %r.target, aws_calls = r.aws_calls, duration_ms = r.duration_ms, "readiness: {}", r.summary);
            } else {
                tracing::warn!(%region, problems = %r.problems.join("; "), aws_calls = r.aws_calls, "readiness: {}", r.summary);
            }
            out.regions.push(r);
        }
        out
    }

    /// Whether a failover away from `from` would work now.
    async fn readiness_of(&self, from: &str) -> Readiness {
        let began = Instant::now();
        let calls = self.aws.as_ref().map_or(0, |a| a.calls());
        let mut r = Readiness {
            region: from.to_owned(),
            checked_at_unix_ms: rg_bus::unix_now_ms(),
            ..Default::default()
        };
        self.check_readiness(from, &mut r).await;
        r.duration_ms = began.elapsed().as_millis() as u64;
        r.aws_calls = (self.aws.as_ref().map_or(0, |a| a.calls()) - calls) as u32;
        r
    }

    async fn check_readiness(&self, from: &str, r: &mut Readiness) {
        let standbys: Vec<String> = self
            .config
            .declared_regions()
            .into_iter()
            .filter(|s| s != from)
            .collect();
        let candidates = match self.candidates(from).await {
            Ok(c) => c,
            Err(e) => {
                r.summary = format!("not ready: the candidates cannot be read: {e}");
                r.problems.push(format!("a failover would fail: {e}"));
                return;
            }
        };
        r.candidates = candidates.clone();
        let targets: Vec<&str> = standbys.iter().map(String::as_str).collect();
        let current = match self.read_current(from, &targets).await {
            Ok(c) => c,
            Err(e) => {
                r.summary = format!("not ready: the account cannot be read: {e}");
                r.problems.push(format!("a failover would fail: {e}"));
                return;
            }
        };
        match self.choose_plan(from, candidates, &current) {
            Ok((target, p)) => {
                r.ready = true;
                r.summary = format!(
                    "ready: {target} would take the traffic in {}",
                    steps(p.steps.len())
                );
                r.target = target;
                r.candidates = p.candidates;
                r.steps = p.steps;
                r.warnings = p.warnings;
            }
            Err(no) => {
                r.summary = format!("not ready: {}", no.error);
                r.problems
                    .push(format!("a failover would fail: {}", no.error));
                r.candidates = no.candidates;
            }
        }
        let mut seen = BTreeSet::new();
        for standby in &standbys {
            for problem in drift(&self.config, from, standby, &current, &r.candidates) {
                if seen.insert(problem.clone()) {
                    r.problems.push(problem);
                }
            }
        }
        if r.ready && !r.problems.is_empty() {
            r.summary = format!("{}, but {}", r.summary, r.problems.join("; "));
        }
    }

    /// Opens, keeps or resolves `r.region`'s readiness alert; its id
    /// while it fires.
    async fn readiness_alert(&self, r: &Readiness) -> String {
        let want = if r.problems.is_empty() {
            None
        } else if r.ready {
            Some(Severity::Medium)
        } else {
            Some(Severity::High)
        };
        let open = match self.journal.readiness_alert(&r.region).await {
            Ok(open) => open,
            Err(e) => {
                tracing::error!(region = %r.region, error = %e, "readiness alert state unreadable: the alert is left as it is");
                return String::new();
            }
        };
        match (open, want) {
            (Some(open), Some(severity)) if open.severity == severity => open.id,
            (open, want) => {
                if let Some(open) = open {
                    self.publish_alert(r, &open, AlertState::Resolved, want)
                        .await;
                }
                let next = want.map(|severity| OpenAlert {
                    id: format!("readiness:{}:{}", r.region, r.checked_at_unix_ms),
                    severity,
                    since_ms: r.checked_at_unix_ms,
                });
                if let Some(next) = &next {
                    self.publish_alert(r, next, AlertState::Firing, None).await;
                }
                if let Err(e) = self
                    .journal
                    .set_readiness_alert(&r.region, next.as_ref())
                    .await
                {
                    tracing::error!(region = %r.region, error = %e, "readiness alert state not saved: the next run may raise or resolve it again");
                    crate::telemetry::journal_write_failed("readiness");
                }
                next.map(|n| n.id).unwrap_or_default()
            }
        }
    }

    /// Publishes `open` in `state`; a resolved alert `replaced_by` another
    /// severity says so (escalated or de-escalated), not that all is well.
    async fn publish_alert(
        &self,
        r: &Readiness,
        open: &OpenAlert,
        state: AlertState,
        replaced_by: Option<Severity>,
    ) {
        let now = rg_bus::unix_now_ms();
        let problems = r
            .problems
            .iter()
            .map(|p| p.strip_prefix("a failover would fail: ").unwrap_or(p))
            .collect::<Vec<_>>()
            .join("; ");
        let summary = match (state, replaced_by) {
            (AlertState::Resolved, Some(next)) => {
                let how = if next > open.severity {
                    "escalated"
                } else {
                    "de-escalated"
                };
                format!(
                    "readiness of {} {how} from {} to {next}: {problems}",
                    r.region, open.severity
                )
            }
            (AlertState::Resolved, None) => format!(
                "a failover away from {} would work again: {}",
                r.region, r.summary
            ),
            _ if r.ready => format!(
                "a failover away from {} works, but its standbys drifted: {problems}",
                r.region
            ),
            _ => format!("a failover away from {} would fail: {problems}", r.region),
        };
        let mut a = Alert {
            id: open.id.clone(),
            region: r.region.clone(),
            summary,
            started_at_unix_ms: open.since_ms,
            emitted_at_unix_ms: now,
            ended_at_unix_ms: if state == AlertState::Resolved {
                now
            } else {
                0
            },
            recommended_actions: if state == AlertState::Resolved {
                Vec::new()
            } else {
                r.problems
                    .iter()
                    .map(|p| format!("fix: {p}"))
                    .chain(std::iter::once(
                        "check again with `regionguard failover readiness`".to_owned(),
                    ))
                    .collect()
            },
            ..Default::default()
        };
        a.set_source(AlertSource::Readiness);
        a.set_severity(open.severity.to_wire());
        a.set_state(state);
        let subject = self.bus.subjects.alert("readiness", open.severity.as_str());
        let msg_id = format!("{}:{}", open.id, state.as_str_name());
        match self
            .bus
            .publisher
            .publish_until_stored(subject.clone(), &a, Some(&msg_id), &self.shutdown)
            .await
        {
            Some(Ok(_)) => {
                tracing::info!(%subject, alert = %open.id, state = state.as_str_name(), "readiness alert")
            }
            Some(Err(e)) => {
                tracing::error!(%subject, alert = %open.id, error = %e, "readiness alert cannot be stored")
            }
            None => {
                tracing::warn!(%subject, alert = %open.id, "readiness alert not stored: shutting down")
            }
        }
    }
}

/// `1 step`, `4 steps`.
fn steps(n: usize) -> String {
    if n == 1 {
        "1 step".into()
    } else {
        format!("{n} steps")
    }
}

/// How `standby` drifted for a failover away from `from`: a plan to it
/// that cannot be made, a deep-health check that disqualifies it, an Auto
/// Scaling maximum below what `from` runs.
pub fn drift(
    config: &crate::Config,
    from: &str,
    standby: &str,
    current: &plan::Current,
    candidates: &[rg_proto::v1::RegionCandidate],
) -> Vec<String> {
    let mut out = Vec::new();
    match plan::build(config, from, standby, current) {
        Ok(_) => {}
        Err(plan::PlanError::NotCovered { why, .. }) => {
            for reason in why {
                out.push(format!("{standby} cannot take {from}'s traffic: {reason}"));
            }
        }
        Err(e) => out.push(format!("{standby} cannot take {from}'s traffic: {e}")),
    }
    if let Some(c) = candidates.iter().find(|c| c.region == standby) {
        if let Some(why) = deep::disqualified(&c.checks) {
            out.push(format!("{standby}: {why}"));
        }
        // A declared resource that is gone though it only counts in the
        // score (a database watched for health; a replica to promote is
        // the plan's to name).
        for k in c.checks.iter().filter(|k| k.disqualifies.is_empty()) {
            if k.detail == "does not exist" {
                out.push(format!("{standby}: {} does not exist", k.resource));
            }
        }
    }
    let none = Default::default();
    let from_res = config.regions.get(from).unwrap_or(&none);
    let standby_res = config.regions.get(standby).unwrap_or(&none);
    for (i, group) in standby_res.autoscaling_groups.iter().enumerate() {
        let Some(from_group) = from_res.autoscaling_groups.get(i) else {
            continue;
        };
        let (Some(&(_, max, _)), Some(&(_, _, runs))) = (
            current.groups.get(&(standby.to_owned(), group.clone())),
            current.groups.get(&(from.to_owned(), from_group.clone())),
        ) else {
            continue;
        };
        if max < runs {
            out.push(format!(
                "{standby}: asg {group} has a maximum of {max}, below the {runs} instances {from} runs"
            ));
        }
    }
    out
}

/// Runs readiness every `readiness_interval` (aligned to the wall clock,
/// so replicas check in the same slot) and answers on-demand requests,
/// until `shutdown`.
pub(crate) async fn run(service: Arc<Service>, shutdown: CancellationToken) {
    let subject = service.bus.subjects.readiness_check();
    let mut requests = match service
        .bus
        .client
        .queue_subscribe(subject.clone(), "failover".into())
        .await
    {
        Ok(sub) => Some(sub),
        Err(e) => {
            tracing::error!(%subject, error = %e, "cannot answer on-demand readiness checks");
            None
        }
    };
    let interval = service.config.readiness_interval;
    let mut next = (!interval.is_zero()).then(|| first_tick(interval));
    if !interval.is_zero() {
        tracing::info!(every = ?interval, "readiness checked every {interval:?} and on request");
    }
    loop {
        let tick = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let request = async {
            match requests.as_mut() {
                Some(sub) => sub.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tick => {
                service.readiness_run().await;
                // The next wall-clock slot, at least half an interval away.
                let mut wait = until_next_slot(interval);
                if wait < interval / 2 {
                    wait += interval;
                }
                next = Some(Instant::now() + wait);
            }
            msg = request => {
                let Some(msg) = msg else {
                    tracing::warn!(%subject, "on-demand readiness subscription closed");
                    requests = None;
                    continue;
                };
                let Some(reply) = msg.reply.clone() else {
                    continue;
                };
                tracing::info!("readiness check requested");
                let run = service.readiness_run().await;
                if let Err(e) = service
                    .bus
                    .client
                    .publish(reply, run.encode_to_vec().into())
                    .await
                {
                    tracing::warn!(error = %e, "readiness answer not sent");
                }
            }
        }
    }
}

/// The first periodic check: within a minute of starting (once the health
/// window is read back), then on the wall clock's slots.
fn first_tick(interval: Duration) -> Instant {
    Instant::now() + interval.min(Duration::from_secs(30))
}

/// Time to the next multiple of `interval` since the epoch.
fn until_next_slot(interval: Duration) -> Duration {
    let every = interval.as_millis().max(1) as u64;
    let now = rg_bus::unix_now_ms().max(0) as u64;
    Duration::from_millis(every - now % every)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_slot_is_within_one_interval() {
        let every = Duration::from_secs(1800);
        let wait = until_next_slot(every);
        assert!(wait > Duration::ZERO && wait <= every, "{wait:?}");
    }
}
