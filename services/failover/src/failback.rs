//! The way back: once a failed region has been healthy for
//! `failback_after`, a failback of the failover away from it is proposed,
//! and planned as the exact reverse of what the failover changed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rg_proto::v1::{FailoverDecision, FailoverPhase};
use tokio_util::sync::CancellationToken;

use crate::error::FailoverError;
use crate::journal::State;
use crate::service::Service;
use crate::{execute, plan};

/// The id of the failback of failover `id`.
fn failback_id(id: &str) -> String {
    format!("{id}:failback")
}

/// Proposes the failback of each completed failover once its failed
/// region has been healthy (score at least `min_target_score`, and the
/// [`crate::gate::FailbackGate`] open) for `failback_after` without a
/// break. The request goes through the normal
/// path: planned, then executed once approved (or at once in auto mode
/// with `failback_auto`).
pub(crate) async fn propose(service: Arc<Service>, shutdown: CancellationToken) {
    let mut healthy_since: HashMap<String, i64> = HashMap::new();
    let mut held_because: HashMap<String, String> = HashMap::new();
    let mut proposed = HashSet::new();
    let tick = (service.config.failback_after / 4)
        .clamp(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let completed = match service.journal.completed().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read completed failovers; failbacks are proposed at the next check");
                continue;
            }
        };
        let now = rg_bus::unix_now_ms();
        let since = now - service.config.health_window.as_millis() as i64;
        for d in completed {
            let id = failback_id(&d.id);
            if proposed.contains(&id) {
                continue;
            }
            let score = service
                .health
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .score(&d.from_region, since, &service.config.criticality);
            let held = match score {
                Some(s) if s.score >= service.config.min_target_score => service
                    .gate
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .blocked(&d.from_region, now, service.config.failback_after),
                Some(s) => Some(format!(
                    "health {:.2} is below {:.2}",
                    s.score, service.config.min_target_score
                )),
                None => Some("no health events within the window".into()),
            };
            if let Some(why) = held {
                // Logged when the reason changes, not when its age does.
                let key: String = why.chars().filter(|c| !c.is_ascii_digit()).collect();
                if held_because.get(&d.id) != Some(&key) {
                    tracing::info!(failover = %d.id, region = %d.from_region, %why, "no failback yet");
                    held_because.insert(d.id.clone(), key);
                }
                healthy_since.remove(&d.id);
                continue;
            }
            held_because.remove(&d.id);
            let first = *healthy_since.entry(d.id.clone()).or_insert(now);
            if now - first < service.config.failback_after.as_millis() as i64 {
                continue;
            }
            if matches!(service.journal.get(&id).await, Ok(Some(_))) {
                proposed.insert(id);
                continue;
            }
            let mut request = FailoverDecision {
                id: id.clone(),
                from_region: d.to_region.clone(),
                to_region: d.from_region.clone(),
                reason: format!(
                    "{} has been healthy for {:?} since failover {}",
                    d.from_region, service.config.failback_after, d.id
                ),
                failback: true,
                ..Default::default()
            };
            request.set_phase(FailoverPhase::Requested);
            tracing::info!(failover = %d.id, region = %d.from_region, "proposing a failback");
            service.publish(request, FailoverPhase::Requested).await;
            proposed.insert(id);
        }
    }
}

impl Service {
    /// The failback plan of the failover a failback request names.
    pub(crate) async fn plan_failback(
        &self,
        request: &FailoverDecision,
    ) -> Result<FailoverDecision, FailoverError> {
        let aws = self.aws.as_ref().ok_or(FailoverError::Observing)?;
        let original = request.id.strip_suffix(":failback").unwrap_or(&request.id);
        let completed = self
            .journal
            .get(original)
            .await?
            .filter(|r| matches!(r.state, State::Completed | State::FailedBack))
            .and_then(|r| r.decision())
            .ok_or_else(|| FailoverError::NothingToFailBack(original.to_owned()))?;
        let steps = completed.plan.clone().unwrap_or_default();
        let act = execute::Actuators {
            aws,
            journal: &self.journal,
        };
        let mut now = Vec::new();
        for (i, s) in steps.steps.iter().enumerate() {
            if !plan::moves_traffic(s.kind()) {
                continue;
            }
            if let Ok(after) = plan::Change::from_json(&s.after) {
                match act.read_now(&after).await {
                    Ok(current) => now.push((i, current)),
                    Err(e) => {
                        tracing::warn!(failover = %original, step = i, error = %e, "cannot read a changed resource back; the failback plan leaves it out")
                    }
                }
            }
        }
        let rationale = format!(
            "traffic returns to {} as before failover {original} ({})",
            completed.from_region, request.reason
        );
        let plan = plan::failback(&steps, &now, Vec::new(), rationale)?;
        Ok(FailoverDecision {
            from_region: completed.to_region.clone(),
            to_region: completed.from_region.clone(),
            plan: Some(plan),
            failback: true,
            error: String::new(),
            ..request.clone()
        })
    }

    /// Marks the failover a completed failback reversed as failed back,
    /// so that it is not proposed again.
    pub(crate) async fn mark_failed_back(&self, failback: &FailoverDecision) {
        let Some(original) = failback.id.strip_suffix(":failback") else {
            return;
        };
        match self.journal.get(original).await {
            Ok(Some(r)) => {
                let mut d = r.decision().unwrap_or_default();
                original.clone_into(&mut d.id);
                d.failback = true;
                self.journal.record(&d, State::FailedBack).await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(failover = %original, error = %e, "could not mark the failover failed back; it may be proposed again");
                crate::telemetry::journal_write_failed(State::FailedBack.name());
            }
        }
    }
}
