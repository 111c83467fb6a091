//! What AWS holds now, for a plan: each candidate's capacity (its Auto
//! Scaling groups and ECS services exist and run what they should), the
//! state every step will replace, and, just before executing, whether that
//! state changed since the plan was made.

use rg_proto::v1::{FailoverDecision, FailoverPlan};

use crate::error::FailoverError;
use crate::service::Service;
use crate::{health, plan};

impl Service {
    /// What AWS and the switches hold now, for a plan from `from` to `target`.
    async fn read_current(&self, from: &str, target: &str) -> Result<plan::Current, FailoverError> {
        let aws = self.aws.as_ref().ok_or(FailoverError::Observing)?;
        let mut current = aws
            .read(&self.config, from, target)
            .await
            .map_err(|e| e.about("reading the current state"))?;
        if self.config.switches.enabled {
            for region in [from, target] {
                let on = self.journal.switch(region).await?;
                current.switches.insert(region.to_owned(), on);
            }
        }
        Ok(current)
    }

    /// Deep health, target, current state, plan.
    pub(crate) async fn plan(
        &self,
        request: &FailoverDecision,
    ) -> Result<FailoverDecision, FailoverError> {
        if request.failback {
            return self.plan_failback(request).await;
        }
        let aws = self.aws.as_ref().ok_or(FailoverError::Observing)?;
        let declared = self.config.declared_regions();
        let since = rg_bus::unix_now_ms() - self.config.health_window.as_millis() as i64;
        let mut candidates = {
            let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
            let mut regions = health.regions();
            regions.extend(declared.iter().cloned());
            health.candidates(
                &request.from_region,
                &regions,
                since,
                self.config.min_target_score,
                &self.config.criticality,
            )
        };
        if !declared.is_empty() {
            for c in candidates
                .iter_mut()
                .filter(|c| c.eligible && !declared.contains(&c.region))
            {
                c.eligible = false;
                c.note = format!("{}; no resources are declared for it", c.note);
            }
        }
        // API checks in each eligible candidate: its declared capacity
        // exists and runs what it should now.
        for c in candidates.iter_mut().filter(|c| c.eligible) {
            let Some(res) = self.config.regions.get(&c.region) else {
                continue;
            };
            let mut groups = Vec::new();
            for g in &res.autoscaling_groups {
                let found = aws
                    .group(&c.region, g)
                    .await
                    .map_err(|e| e.about(format!("checking asg {g} in {}", c.region)))?;
                groups.push((
                    g.clone(),
                    found.map(|(_, _, desired, in_service)| (desired, in_service)),
                ));
            }
            let mut services = Vec::new();
            for svc in &res.ecs_services {
                let found = aws
                    .service(&c.region, &svc.cluster, &svc.service)
                    .await
                    .map_err(|e| {
                        e.about(format!(
                            "checking ecs {}/{} in {}",
                            svc.cluster, svc.service, c.region
                        ))
                    })?;
                services.push((format!("{}/{}", svc.cluster, svc.service), found));
            }
            match health::capacity_check(&groups, &services) {
                Ok(note) if !note.is_empty() => c.note = format!("{}; {note}", c.note),
                Ok(_) => {}
                Err(why) => {
                    c.eligible = false;
                    c.note = format!("{}; {why}", c.note);
                }
            }
        }
        candidates.sort_by(|a, b| {
            b.eligible
                .cmp(&a.eligible)
                .then(b.health_score.total_cmp(&a.health_score))
        });
        let (target, rationale) = plan::choose_target(&candidates)?;
        let current = self.read_current(&request.from_region, &target).await?;
        let plan = plan::build(
            &self.config,
            &request.from_region,
            &target,
            &current,
            candidates,
            rationale,
        )?;
        Ok(FailoverDecision {
            to_region: target,
            plan: Some(plan),
            error: String::new(),
            ..request.clone()
        })
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
                .read_current(&planned.from_region, &planned.to_region)
                .await?;
            plan::build(
                &self.config,
                &planned.from_region,
                &planned.to_region,
                &current,
                Vec::new(),
                String::new(),
            )?
        };
        let steps = |p: &FailoverPlan| {
            p.steps
                .iter()
                .map(|s| (s.resource.clone(), s.before.clone(), s.after.clone()))
                .collect::<Vec<_>>()
        };
        if steps(&again) != steps(plan) {
            return Err(FailoverError::Changed);
        }
        Ok(())
    }
}
