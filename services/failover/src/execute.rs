//! Carrying out a plan: each step in order, each reported; verification
//! with a deadline; on any failure, the steps already done are undone in
//! reverse order, each back to the exact state it replaced.

use std::time::Duration;

use rg_proto::v1::{FailoverPlan, StepKind, StepStatus};
use tokio::time::Instant;

use crate::aws::Aws;
use crate::error::FailoverError;
use crate::journal::Journal;
use crate::plan::Change;

/// What steps act on: AWS, and the routing switches in the journal.
pub struct Actuators<'a> {
    /// The AWS clients.
    pub aws: &'a Aws,
    /// The journal (routing switches).
    pub journal: &'a Journal,
}

impl Actuators<'_> {
    /// Makes the resource equal `change`.
    pub async fn apply(
        &self,
        change: &Change,
        insync_timeout: Duration,
    ) -> Result<(), FailoverError> {
        match change {
            Change::RoutingSwitch {
                region,
                take_traffic,
            } => Ok(self.journal.set_switch(region, *take_traffic).await?),
            other => Ok(self.aws.apply(other, insync_timeout).await?),
        }
    }

    /// The resource of `like` as it is now, in the same shape.
    pub async fn read_now(&self, like: &Change) -> Result<Change, FailoverError> {
        match like {
            Change::RoutingSwitch { region, .. } => Ok(Change::RoutingSwitch {
                region: region.clone(),
                take_traffic: self.journal.switch(region).await?,
            }),
            Change::Route53 { zone_id, records } => {
                let first = records
                    .first()
                    .ok_or_else(|| FailoverError::Step("an empty record change".into()))?;
                let found = self
                    .aws
                    .records(zone_id, &first.name, &first.record_type)
                    .await?;
                Ok(Change::Route53 {
                    zone_id: zone_id.clone(),
                    records: records
                        .iter()
                        .filter_map(|r| {
                            found
                                .iter()
                                .find(|x| x.set_identifier == r.set_identifier)
                                .cloned()
                        })
                        .collect(),
                })
            }
            Change::CloudFrontOrigin {
                distribution_id,
                origin_id,
                ..
            } => Ok(Change::CloudFrontOrigin {
                distribution_id: distribution_id.clone(),
                origin_id: origin_id.clone(),
                domain: self
                    .aws
                    .origin_domain(distribution_id, origin_id)
                    .await?
                    .unwrap_or_default(),
            }),
            Change::CloudFrontBehavior {
                distribution_id,
                path_pattern,
                ..
            } => Ok(Change::CloudFrontBehavior {
                distribution_id: distribution_id.clone(),
                path_pattern: path_pattern.clone(),
                target_origin_id: self
                    .aws
                    .behavior_target(distribution_id, path_pattern.as_deref())
                    .await?
                    .unwrap_or_default(),
            }),
            Change::CloudFrontOriginGroup {
                distribution_id,
                group_id,
                ..
            } => Ok(Change::CloudFrontOriginGroup {
                distribution_id: distribution_id.clone(),
                group_id: group_id.clone(),
                members: self
                    .aws
                    .origin_group(distribution_id, group_id)
                    .await?
                    .unwrap_or_default(),
            }),
            Change::DatabasePromotion {
                region,
                db_instance,
                ..
            } => Ok(Change::DatabasePromotion {
                region: region.clone(),
                db_instance: db_instance.clone(),
                replica_of: self
                    .aws
                    .db_instance(region, db_instance)
                    .await?
                    .and_then(|d| d.replica_of),
            }),
            other => Err(FailoverError::Step(format!(
                "{} cannot be read back",
                other.resource()
            ))),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Every step done and verified.
    Completed,
    /// A step failed; every step done before it was rolled back.
    RolledBack {
        /// The step that failed.
        failed_step: usize,
        /// Why.
        error: String,
    },
    /// A step failed and the rollback failed too: an operator must act.
    Failed {
        /// The step that failed.
        failed_step: usize,
        /// Why, including what could not be undone.
        error: String,
    },
}

/// Verification limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long verification may take.
    pub verify_timeout: Duration,
    /// Time between checks.
    pub verify_interval: Duration,
    /// Time for a Route 53 change to become INSYNC.
    pub insync_timeout: Duration,
}

/// Runs the plan's steps from `start` on; `report(plan, index)` is called
/// after each step changes status (so the caller can publish and journal).
pub async fn run<F, Fut>(
    act: &Actuators<'_>,
    plan: &mut FailoverPlan,
    start: usize,
    limits: Limits,
    mut report: F,
) -> Ended
where
    F: FnMut(FailoverPlan, usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for i in start..plan.steps.len() {
        let began = Instant::now();
        let outcome = run_step(act, plan, i, limits).await;
        let step = &mut plan.steps[i];
        step.duration_ms = began.elapsed().as_millis() as u64;
        let outcome_label = if outcome.is_ok() { "done" } else { "failed" };
        crate::telemetry::step(step.kind(), outcome_label, began.elapsed());
        match outcome {
            Ok(()) => {
                step.set_status(StepStatus::Done);
                report(plan.clone(), i).await;
            }
            Err(e) => {
                crate::telemetry::error(&e);
                step.set_status(StepStatus::Failed);
                step.error = e.to_string();
                report(plan.clone(), i).await;
                return match rollback(act, plan, i, limits, &mut report).await {
                    Ok(()) => Ended::RolledBack {
                        failed_step: i,
                        error: format!(
                            "step {i} ({}) failed: {e}{}",
                            plan.steps[i].resource,
                            kept_note(plan)
                        ),
                    },
                    Err(undo) => Ended::Failed {
                        failed_step: i,
                        error: format!(
                            "step {i} ({}) failed: {e}; rollback failed: {undo}",
                            plan.steps[i].resource
                        ),
                    },
                };
            }
        }
    }
    Ended::Completed
}

async fn run_step(
    act: &Actuators<'_>,
    plan: &FailoverPlan,
    i: usize,
    limits: Limits,
) -> Result<(), FailoverError> {
    let step = &plan.steps[i];
    let after = Change::from_json(&step.after)
        .map_err(|e| FailoverError::Step(format!("unreadable step: {e}")))?;
    if step.kind() == StepKind::Verify {
        return verify(act.aws, plan, &after, limits).await;
    }
    act.apply(&after, limits.insync_timeout).await
}

/// What an operator must do about an irreversible step a rollback left
/// in place.
fn kept_action(after: &str) -> String {
    match Change::from_json(after) {
        Ok(Change::DatabasePromotion {
            region,
            db_instance,
            ..
        }) => format!(
            "kept: {db_instance} in {region} stays a standalone database (a promotion cannot be undone); traffic went back, so make sure nothing writes to it, then delete it and create a new read replica of the original database by hand"
        ),
        _ => "kept: this step cannot be undone".into(),
    }
}

/// `; kept: ...` for every step a rollback left in place ("" when none).
fn kept_note(plan: &FailoverPlan) -> String {
    plan.steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.status() == StepStatus::Kept)
        .map(|(i, s)| format!("; step {i} ({}) {}", s.resource, s.error))
        .collect()
}

/// A step that could not be undone.
#[derive(Debug, thiserror::Error)]
#[error("step {step} ({resource}): {error}")]
pub struct UndoFailed {
    /// Its index in the plan.
    pub step: usize,
    /// The resource.
    pub resource: String,
    /// Why.
    pub error: FailoverError,
}

/// Undoes steps `0..failed` that are done, last first. Stops at the first
/// undo that fails (later undos could depend on it) and says which.
pub async fn rollback<F, Fut>(
    act: &Actuators<'_>,
    plan: &mut FailoverPlan,
    failed: usize,
    limits: Limits,
    report: &mut F,
) -> Result<(), UndoFailed>
where
    F: FnMut(FailoverPlan, usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for j in (0..failed).rev() {
        if plan.steps[j].status() != StepStatus::Done || plan.steps[j].kind() == StepKind::Verify {
            continue;
        }
        if plan.steps[j].irreversible {
            // Left as it is, and said so: what an operator must do.
            plan.steps[j].set_status(StepStatus::Kept);
            plan.steps[j].error = kept_action(&plan.steps[j].after);
            tracing::warn!(step = j, resource = %plan.steps[j].resource, "rollback leaves an irreversible step in place: {}", plan.steps[j].error);
            report(plan.clone(), j).await;
            continue;
        }
        let began = Instant::now();
        let undone = match Change::from_json(&plan.steps[j].before) {
            Ok(before) => act.apply(&before, limits.insync_timeout).await,
            Err(e) => Err(FailoverError::Step(format!("unreadable: {e}"))),
        };
        let label = if undone.is_ok() {
            "rolled_back"
        } else {
            "rollback_failed"
        };
        crate::telemetry::step(plan.steps[j].kind(), label, began.elapsed());
        match undone {
            Ok(()) => {
                plan.steps[j].set_status(StepStatus::RolledBack);
                report(plan.clone(), j).await;
            }
            Err(e) => {
                crate::telemetry::error(&e);
                plan.steps[j].error = format!("rollback failed: {e}");
                report(plan.clone(), j).await;
                return Err(UndoFailed {
                    step: j,
                    resource: plan.steps[j].resource.clone(),
                    error: e,
                });
            }
        }
    }
    Ok(())
}

/// Waits until the target's groups have their InService instances, its
/// services their running tasks, and every changed record and origin reads
/// back as planned; fails at the deadline with what is still missing.
async fn verify(
    aws: &Aws,
    plan: &FailoverPlan,
    what: &Change,
    limits: Limits,
) -> Result<(), FailoverError> {
    let Change::Verify {
        groups,
        services,
        dns,
    } = what
    else {
        return Err(FailoverError::Step("not a verification step".into()));
    };
    let deadline = Instant::now() + limits.verify_timeout;
    loop {
        let mut missing = Vec::new();
        for (region, group, need) in groups {
            match aws.group(region, group).await {
                Ok(Some((_, _, _, in_service))) if in_service >= *need => {}
                Ok(Some((_, _, _, in_service))) => missing.push(format!(
                    "asg {region}/{group}: {in_service}/{need} InService"
                )),
                Ok(None) => missing.push(format!("asg {region}/{group} is gone")),
                Err(e) => missing.push(e.to_string()),
            }
        }
        for (region, cluster, service, need) in services {
            match aws.service(region, cluster, service).await {
                Ok(Some((_, running))) if running >= *need => {}
                Ok(Some((_, running))) => missing.push(format!(
                    "ecs {region}/{cluster}/{service}: {running}/{need} running"
                )),
                Ok(None) => missing.push(format!("ecs {region}/{cluster}/{service} is gone")),
                Err(e) => missing.push(e.to_string()),
            }
        }
        // Traffic changes read back as written.
        for step in plan.steps.iter().filter(|s| s.status() == StepStatus::Done) {
            if let Ok(Change::Route53 { zone_id, records }) = Change::from_json(&step.after) {
                for r in &records {
                    match aws.records(&zone_id, &r.name, &r.record_type).await {
                        Ok(found)
                            if found.iter().any(|x| {
                                x.set_identifier == r.set_identifier
                                    && x.values == r.values
                                    && x.weight == r.weight
                            }) => {}
                        Ok(_) => missing.push(format!(
                            "route53 {} {} does not read back as written",
                            r.name,
                            r.set_identifier.as_deref().unwrap_or("")
                        )),
                        Err(e) => missing.push(e.to_string()),
                    }
                }
            }
        }
        if let Some(check) = dns {
            match check.resolver.parse() {
                Ok(resolver) => match crate::resolve::addresses(
                    resolver,
                    &check.name,
                    &check.record_type,
                    limits.verify_interval.max(Duration::from_secs(1)),
                )
                .await
                {
                    Ok(found) if found == check.expected => {}
                    Ok(found) => missing.push(format!(
                        "{} resolves to {found:?} through {}, expected {:?}",
                        check.name, check.resolver, check.expected
                    )),
                    Err(e) => missing.push(e.to_string()),
                },
                Err(e) => missing.push(format!("resolver {}: {e}", check.resolver)),
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() + limits.verify_interval > deadline {
            return Err(FailoverError::NotVerified {
                within: limits.verify_timeout,
                missing: missing.join("; "),
            });
        }
        tokio::time::sleep(limits.verify_interval).await;
    }
}
