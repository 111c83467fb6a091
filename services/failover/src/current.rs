//! What AWS holds now, for a plan: each candidate's capacity (its Auto
//! Scaling groups and ECS services exist and run what they should), the
//! state every step will replace, and, just before executing, whether that
//! state changed since the plan was made.

use rg_proto::v1::{FailoverDecision, FailoverPlan, RegionCandidate};

use crate::aws::Aws;
use crate::config::RegionResources;
use crate::error::{AwsError, FailoverError};
use crate::service::Service;
use crate::{choose, deep, health, plan};

/// How long the health view may go without being known current before a
/// decision re-reads it from the stream (a stalled reader is recreated in
/// about [`rg_bus::tail::PROBE_AFTER`] + [`rg_bus::tail::STALL_AFTER`]).
const VIEW_STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(10);
/// How long that re-read may take.
const REREAD_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// A plan that could not be made, with the candidates considered.
pub(crate) struct NoPlan {
    pub(crate) error: FailoverError,
    pub(crate) candidates: Vec<RegionCandidate>,
}

impl<E: Into<FailoverError>> From<E> for NoPlan {
    fn from(e: E) -> Self {
        Self {
            error: e.into(),
            candidates: Vec::new(),
        }
    }
}

impl Service {
    /// What AWS and the switches hold now, for a plan from `from` to any
    /// of `targets`.
    pub(crate) async fn read_current(
        &self,
        from: &str,
        targets: &[&str],
    ) -> Result<plan::Current, FailoverError> {
        let aws = self.aws.as_ref().ok_or(FailoverError::Observing)?;
        let mut current = aws
            .read(&self.config, from, targets)
            .await
            .map_err(|e| e.about("reading the current state"))?;
        if self.config.switches.enabled {
            for region in std::iter::once(from).chain(targets.iter().copied()) {
                let on = self.journal.switch(region).await?;
                current.switches.insert(region.to_owned(), on);
            }
        }
        Ok(current)
    }

    /// Makes sure the health view is current before it decides: when its
    /// reader has not been known current for [`VIEW_STALE_AFTER`] (its
    /// server died, NATS was away), the window is re-read from the health
    /// stream first. Fails, saying so, when that re-read fails too.
    pub(crate) async fn vouch_for_health(&self) -> Result<(), FailoverError> {
        let age = self.health_fresh.age();
        if age.is_some_and(|a| a <= VIEW_STALE_AFTER) {
            return Ok(());
        }
        let last_current = match age {
            Some(a) => format!("last known current {:.0} s ago", a.as_secs_f64()),
            None => "never known current since the service started".to_owned(),
        };
        let since = std::time::SystemTime::now()
            .checked_sub(self.config.health_window)
            .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
        let stream = self.bus.subjects.stream(rg_bus::Stream::Health);
        let read = rg_bus::tail::read_once::<rg_proto::v1::HealthEvent>(
            &self.bus.js,
            &stream,
            &self.bus.subjects.health_all(),
            rg_bus::tail::From::Time(since),
            REREAD_WITHIN,
        )
        .await;
        match read {
            Ok(events) => {
                let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
                let mut taken = 0usize;
                for e in &events {
                    if let Ok(o) = rg_proto::domain::Observation::try_from(&e.message) {
                        health.observe(&o);
                        taken += 1;
                    }
                }
                crate::telemetry::view_reread(true);
                tracing::warn!(%stream, %last_current, events = taken, "the health view was stale; re-read the window from the stream before deciding");
                Ok(())
            }
            Err(error) => {
                crate::telemetry::view_reread(false);
                Err(FailoverError::StaleView {
                    last_current,
                    error,
                })
            }
        }
    }

    /// Every region considered, with its health, capacity and place in
    /// the standby order, best first.
    pub(crate) async fn candidates(
        &self,
        from: &str,
    ) -> Result<Vec<RegionCandidate>, FailoverError> {
        let aws = self.aws.as_ref().ok_or(FailoverError::Observing)?;
        self.vouch_for_health().await?;
        let declared = self.config.declared_regions();
        let since = rg_bus::unix_now_ms() - self.config.health_window.as_millis() as i64;
        let mut candidates = {
            let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
            let mut regions = health.regions();
            regions.extend(declared.iter().cloned());
            health.candidates(
                from,
                &regions,
                since,
                self.config.min_target_score,
                &self.config.criticality,
            )
        };
        for c in candidates.iter_mut() {
            c.dns_score = c.health_score;
            c.standby_rank = self
                .config
                .standby_order
                .iter()
                .position(|r| *r == c.region)
                .map_or(0, |i| i as u32 + 1);
        }
        if !declared.is_empty() {
            for c in candidates
                .iter_mut()
                .filter(|c| c.eligible && !declared.contains(&c.region))
            {
                c.eligible = false;
                c.note = format!("{}; no resources are declared for it", c.note);
            }
        }
        // What the AWS APIs say of each declared region but the failing
        // one: its capacity (for an eligible one) and its deep health.
        for c in candidates.iter_mut().filter(|c| c.region != from) {
            let Some(res) = self.config.regions.get(&c.region) else {
                continue;
            };
            let found = match inspect(aws, &c.region, res).await {
                Ok(found) => found,
                Err(e) => {
                    if c.eligible {
                        c.eligible = false;
                        c.note = format!("{}; could not be read: {e}", c.note);
                    }
                    continue;
                }
            };
            let dns = c.health_score;
            c.dns_score = dns;
            c.health_score = deep::combine(dns, &found.checks);
            c.checks = found.checks;
            if !c.checks.is_empty() {
                let resources = if dns > 0.0 { c.health_score / dns } else { 1.0 };
                c.note = c.note.replacen(
                    &format!("health {dns:.2}"),
                    &format!(
                        "health {:.2} (DNS {dns:.2} × resources {resources:.2})",
                        c.health_score
                    ),
                    1,
                );
            }
            let down = deep::pulled_down(&c.checks);
            if !down.is_empty() {
                c.note = format!("{}; pulled down by {down}", c.note);
            }
            if !c.eligible {
                continue;
            }
            match health::capacity_check(&found.groups, &found.services) {
                Ok((note, running)) => {
                    c.running_capacity = running;
                    if !note.is_empty() {
                        c.note = format!("{}; {note}", c.note);
                    }
                }
                Err(why) => {
                    c.eligible = false;
                    c.note = format!("{}; {why}", c.note);
                    continue;
                }
            }
            if let Some(why) = deep::disqualified(&c.checks) {
                c.eligible = false;
                c.note = format!("{}; {why}", c.note);
            } else if c.health_score < self.config.min_target_score {
                c.eligible = false;
                c.note = format!(
                    "{}; health {:.2} is below the minimum {:.2}",
                    c.note, c.health_score, self.config.min_target_score
                );
            }
        }
        choose::rank(&mut candidates, self.config.score_margin);
        Ok(candidates)
    }

    /// Deep health, candidates, current state, plan: the best candidate
    /// every declared resource covers becomes the target. A candidate a
    /// resource does not cover is ineligible, with the reason. On failure,
    /// the candidates considered come with the error.
    pub(crate) async fn plan(
        &self,
        request: &FailoverDecision,
    ) -> Result<FailoverDecision, NoPlan> {
        if request.failback {
            return self.plan_failback(request).await.map_err(NoPlan::from);
        }
        let from = request.from_region.as_str();
        let candidates = self.candidates(from).await?;
        let eligible: Vec<String> = candidates
            .iter()
            .filter(|c| c.eligible)
            .map(|c| c.region.clone())
            .collect();
        if eligible.is_empty() {
            return Err(NoPlan {
                error: choose::none_can(&candidates).into(),
                candidates,
            });
        }
        let targets: Vec<&str> = eligible.iter().map(String::as_str).collect();
        let current = match self.read_current(from, &targets).await {
            Ok(c) => c,
            Err(error) => return Err(NoPlan { error, candidates }),
        };
        let (target, plan) = self.choose_plan(from, candidates, &current)?;
        Ok(FailoverDecision {
            to_region: target,
            plan: Some(plan),
            error: String::new(),
            ..request.clone()
        })
    }

    /// The plan from `from` to the best candidate every declared resource
    /// covers, against `current`: the target and the plan (with the
    /// candidates and why each lost). A candidate a resource does not cover
    /// is ineligible, with the reason.
    pub(crate) fn choose_plan(
        &self,
        from: &str,
        mut candidates: Vec<RegionCandidate>,
        current: &plan::Current,
    ) -> Result<(String, FailoverPlan), NoPlan> {
        let eligible: Vec<String> = candidates
            .iter()
            .filter(|c| c.eligible)
            .map(|c| c.region.clone())
            .collect();
        // Every eligible candidate's plan, so that one a resource does not
        // cover is shown as not eligible (not as merely outranked); then
        // the best of those left, ranked again without the others, is the
        // target.
        let mut plans = std::collections::BTreeMap::new();
        for target in &eligible {
            match plan::build(&self.config, from, target, current) {
                Ok(plan) => {
                    plans.insert(target.clone(), plan);
                }
                Err(plan::PlanError::NotCovered { why, .. }) => {
                    let why = why.join("; ");
                    if let Some(c) = candidates.iter_mut().find(|c| c.region == *target) {
                        c.eligible = false;
                        c.note = format!("{}; {why}", c.note);
                        c.verdict = format!("not eligible: {why}");
                    }
                }
                Err(e) => {
                    return Err(NoPlan {
                        error: e.into(),
                        candidates,
                    })
                }
            }
        }
        choose::rank(&mut candidates, self.config.score_margin);
        let best = candidates
            .iter()
            .find(|c| c.eligible)
            .map(|c| c.region.clone());
        match best.and_then(|t| plans.remove(&t).map(|p| (t, p))) {
            Some((target, mut plan)) => {
                plan.warnings.extend(unpromoted_replicas(
                    &self.config,
                    from,
                    &target,
                    &candidates,
                ));
                let rationale =
                    choose::verdicts(&mut candidates, &target, self.config.score_margin);
                plan.candidates = candidates;
                plan.rationale = rationale;
                Ok((target, plan))
            }
            None => Err(NoPlan {
                error: choose::none_can(&candidates).into(),
                candidates,
            }),
        }
    }

    /// Fails with [`FailoverError::Changed`] when a plan made now would
    /// not replace the same states with the same values.
    pub(crate) async fn still_current(
        &self,
        planned: &FailoverDecision,
        plan: &FailoverPlan,
    ) -> Result<(), FailoverError> {
        let again = if planned.failback {
            self.plan_failback(planned).await?.plan.unwrap_or_default()
        } else {
            let current = self
                .read_current(&planned.from_region, &[planned.to_region.as_str()])
                .await?;
            plan::build(
                &self.config,
                &planned.from_region,
                &planned.to_region,
                &current,
            )?
        };
        let Some((resource, planned, now)) = changed(plan, &again) else {
            return Ok(());
        };
        let now = match now {
            Some(now) => now,
            // No step any more: the resource holds something the plan
            // would not touch now (or already its end state); read it.
            None => self.read_state(plan, &resource).await,
        };
        Err(FailoverError::Changed {
            resource,
            planned,
            now,
        })
    }

    /// The state of a planned step's resource now, as JSON, or why it
    /// cannot be read.
    async fn read_state(&self, plan: &FailoverPlan, resource: &str) -> String {
        let Some(aws) = self.aws.as_ref() else {
            return "unknown (observe mode)".into();
        };
        let Some(like) = plan
            .steps
            .iter()
            .find(|s| s.resource == resource)
            .and_then(|s| plan::Change::from_json(&s.before).ok())
        else {
            return "unknown".into();
        };
        let act = crate::execute::Actuators {
            aws,
            journal: &self.journal,
        };
        match act.read_now(&like).await {
            Ok(now) => now.to_json(),
            Err(e) => format!("unreadable ({e})"),
        }
    }
}

/// What the APIs report of one region's declared resources.
struct Inspection {
    /// Each Auto Scaling group: (desired, InService), `None` when absent.
    groups: Vec<(String, Option<(i32, i32)>)>,
    /// Each ECS service: (desired, running), `None` when absent.
    services: Vec<(String, Option<(i32, i32)>)>,
    /// The deep-health checks.
    checks: Vec<rg_proto::v1::ResourceCheck>,
}

/// Reads a region's declared capacity and deep health: each Auto Scaling
/// group once (sizes and instances), its instances' status checks, its
/// ECS services, target groups and databases.
async fn inspect(aws: &Aws, region: &str, res: &RegionResources) -> Result<Inspection, AwsError> {
    let mut found = Inspection {
        groups: Vec::new(),
        services: Vec::new(),
        checks: Vec::new(),
    };
    let mut instance_checks = Vec::new();
    for g in &res.autoscaling_groups {
        let read = aws
            .group_detail(region, g)
            .await
            .map_err(|e| e.about(format!("asg {g} in {region}")))?;
        if let Some(read) = &read {
            let statuses = aws
                .instance_statuses(region, &read.instances)
                .await
                .map_err(|e| e.about(format!("the instances of asg {g} in {region}")))?;
            instance_checks.extend(deep::instances(g, &statuses));
        }
        found
            .groups
            .push((g.clone(), read.map(|r| (r.desired, r.in_service))));
    }
    for svc in &res.ecs_services {
        let read = aws
            .service(region, &svc.cluster, &svc.service)
            .await
            .map_err(|e| e.about(format!("ecs {}/{} in {region}", svc.cluster, svc.service)))?;
        found
            .services
            .push((format!("{}/{}", svc.cluster, svc.service), read));
    }
    let declared = !found.groups.is_empty() || !found.services.is_empty();
    let pilot_light = declared
        && found
            .groups
            .iter()
            .chain(&found.services)
            .all(|(_, r)| r.is_none_or(|(desired, _)| desired == 0));
    for tg in &res.target_groups {
        if let Some(elsewhere) = arn_region(tg).filter(|r| *r != region) {
            let why = format!("an ARN of {elsewhere}, declared for {region}");
            found.checks.push(rg_proto::v1::ResourceCheck {
                resource: format!("tg {tg}"),
                factor: 0.0,
                detail: why.clone(),
                disqualifies: why,
            });
            continue;
        }
        let read = aws
            .target_group(region, tg)
            .await
            .map_err(|e| e.about(format!("target group {tg} in {region}")))?;
        // A failover's scaling fills an empty group of a pilot light: with
        // instances (Auto Scaling) or task IPs (ECS).
        let filled = pilot_light
            && read.as_ref().is_some_and(|t| match t.target_type.as_str() {
                "instance" => !res.autoscaling_groups.is_empty(),
                "ip" => !res.ecs_services.is_empty(),
                _ => false,
            });
        found
            .checks
            .push(deep::target_group(tg, read.as_ref(), filled));
    }
    found.checks.extend(instance_checks);
    for id in &res.db_clusters {
        let read = aws
            .db_cluster(region, id)
            .await
            .map_err(|e| e.about(format!("rds cluster {id} in {region}")))?;
        let mut check = deep::database(id, read.as_ref(), false);
        check.resource = format!("rds cluster {id}");
        found.checks.push(check);
    }
    for (list, replica) in [(&res.db_instances, false), (&res.promote_replicas, true)] {
        for id in list {
            let read = aws
                .db_instance(region, id)
                .await
                .map_err(|e| e.about(format!("rds {id} in {region}")))?;
            found
                .checks
                .push(deep::database(id, read.as_ref(), replica));
        }
    }
    Ok(found)
}

/// A warning for each database of `target` watched for health that is a
/// read replica of `from`'s database and not declared to promote: after
/// the failover nothing in `target` can write to it.
fn unpromoted_replicas(
    config: &crate::Config,
    from: &str,
    target: &str,
    candidates: &[RegionCandidate],
) -> Vec<String> {
    let Some(c) = candidates.iter().find(|c| c.region == target) else {
        return Vec::new();
    };
    let source = format!("read replica of arn:aws:rds:{from}:");
    let promoted = config
        .regions
        .get(target)
        .map(|r| r.promote_replicas.as_slice())
        .unwrap_or(&[]);
    c.checks
        .iter()
        .filter_map(|k| {
            let id = k.resource.strip_prefix("rds ")?;
            (k.detail.contains(&source) && !promoted.iter().any(|p| p == id)).then(|| {
                format!("{id} in {target} is a read replica of {from}'s database and is not declared in promote_replicas: after the failover it stays read-only")
            })
        })
        .collect()
}

/// The region of an ARN (`arn:aws:elasticloadbalancing:us-west-2:…`),
/// `None` for a name.
fn arn_region(name_or_arn: &str) -> Option<&str> {
    let mut parts = name_or_arn.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(_), Some(_), Some(region)) if !region.is_empty() => Some(region),
        _ => None,
    }
}

/// The first resource whose state a plan made now (`again`) would replace
/// differs from what `planned` recorded: the resource, the state the plan
/// recorded, and the state now when `again` has a step for it.
fn changed(
    planned: &FailoverPlan,
    again: &FailoverPlan,
) -> Option<(String, String, Option<String>)> {
    let state = |p: &FailoverPlan, resource: &str| {
        p.steps
            .iter()
            .find(|s| s.resource == resource)
            .map(|s| (s.before.clone(), s.after.clone()))
    };
    let resources = planned
        .steps
        .iter()
        .chain(&again.steps)
        .map(|s| s.resource.as_str());
    for resource in resources {
        let (was, now) = (state(planned, resource), state(again, resource));
        if was == now {
            continue;
        }
        return Some((
            resource.to_owned(),
            was.map_or_else(|| "nothing (no step)".into(), |(before, _)| before),
            now.map(|(before, _)| before),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rg_proto::v1::ResourceCheck;

    fn candidate(region: &str, checks: &[(&str, &str)]) -> RegionCandidate {
        RegionCandidate {
            region: region.into(),
            checks: checks
                .iter()
                .map(|(resource, detail)| ResourceCheck {
                    resource: (*resource).into(),
                    factor: 1.0,
                    detail: (*detail).into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_watched_replica_of_the_failing_regions_database_is_named_as_staying_read_only() {
        let of_use1 = "available, read replica of arn:aws:rds:us-east-1:123456789012:db:orders";
        let candidates = [candidate(
            "eu-west-1",
            &[
                ("rds orders-euw1", of_use1),
                ("rds cache-euw1", "available"),
            ],
        )];
        let mut config = crate::Config::default();
        let warned = unpromoted_replicas(&config, "us-east-1", "eu-west-1", &candidates);
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(warned[0]
            .starts_with("orders-euw1 in eu-west-1 is a read replica of us-east-1's database"));
        // Not from the failing region, or declared to promote: nothing.
        assert!(unpromoted_replicas(&config, "us-west-2", "eu-west-1", &candidates).is_empty());
        config.regions.insert(
            "eu-west-1".into(),
            crate::config::RegionResources {
                promote_replicas: vec!["orders-euw1".into()],
                ..Default::default()
            },
        );
        assert!(unpromoted_replicas(&config, "us-east-1", "eu-west-1", &candidates).is_empty());
    }

    #[test]
    fn an_arn_names_its_region_and_a_name_none() {
        assert_eq!(
            arn_region("arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/web/abc"),
            Some("us-west-2")
        );
        assert_eq!(arn_region("web"), None);
    }
}
