//! The plan: the target region, and the exact changes in execution order,
//! each with the state it replaces, computed before anything changes.
//!
//! Order: capacity first (Auto Scaling groups, ECS services of the target
//! scaled to at least what the failing region runs), then the target's
//! declared read replicas promoted (irreversible), then traffic (Route 53
//! records, CloudFront origins), then verification. Moving traffic to a
//! region before it has the capacity for it would turn one outage into two.
//!
//! Every step's `before` and `after` are a [`Change`] as JSON: applying a
//! step makes the resource equal `after`; rolling it back makes it equal
//! `before`. A step is therefore its own undo.

use std::collections::BTreeMap;

use rg_proto::v1::{FailoverPlan, FailoverStep, RegionCandidate, StepKind, StepStatus};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::route53;

pub use crate::route53::{Alias, RecordSet};

/// The state of one resource: what a step's `before` and `after` hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// Route 53 record sets of one zone.
    Route53 {
        /// Hosted zone id.
        zone_id: String,
        /// The record sets.
        records: Vec<RecordSet>,
    },
    /// A CloudFront origin's domain name.
    CloudFrontOrigin {
        /// Distribution id.
        distribution_id: String,
        /// Origin id.
        origin_id: String,
        /// Domain name.
        domain: String,
    },
    /// The origin (or origin group) a CloudFront cache behaviour sends
    /// requests to.
    CloudFrontBehavior {
        /// Distribution id.
        distribution_id: String,
        /// Path pattern; `None` for the default behaviour.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path_pattern: Option<String>,
        /// Target origin id.
        target_origin_id: String,
    },
    /// The members of a CloudFront origin group, in order: the first is
    /// the primary, tried first.
    CloudFrontOriginGroup {
        /// Distribution id.
        distribution_id: String,
        /// Origin group id.
        group_id: String,
        /// Member origin ids, primary first.
        members: Vec<String>,
    },
    /// An Auto Scaling group's capacity.
    Autoscaling {
        /// Region.
        region: String,
        /// Group name.
        group: String,
        /// Minimum size.
        min: i32,
        /// Maximum size.
        max: i32,
        /// Desired capacity.
        desired: i32,
    },
    /// An ECS service's desired count.
    Ecs {
        /// Region.
        region: String,
        /// Cluster.
        cluster: String,
        /// Service.
        service: String,
        /// Desired count.
        desired: i32,
    },
    /// An RDS DB instance: a read replica of `replica_of`, or (`None`) a
    /// standalone database. Promoting a replica cannot be undone.
    DatabasePromotion {
        /// Region.
        region: String,
        /// DB instance identifier.
        db_instance: String,
        /// The source it replicates from; `None` once promoted.
        replica_of: Option<String>,
    },
    /// A data-plane routing switch (served by regionguard, polled by
    /// Route 53 health checks).
    RoutingSwitch {
        /// Region.
        region: String,
        /// True: answer 200 (take traffic); false: 503 (drain).
        take_traffic: bool,
    },
    /// What verification waits for (no change of its own).
    Verify {
        /// Auto Scaling groups and the InService instances each needs.
        groups: Vec<(String, String, i32)>,
        /// ECS services and the running tasks each needs.
        services: Vec<(String, String, String, i32)>,
        /// The application's name must resolve to the target's values.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dns: Option<DnsCheck>,
    },
}

/// A name that must resolve to given values through a resolver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsCheck {
    /// The application's name.
    pub name: String,
    /// The resolver asked, `ip:port`.
    pub resolver: String,
    /// `A` or `AAAA`.
    pub record_type: String,
    /// The values expected, sorted.
    pub expected: Vec<String>,
}

impl Change {
    /// The resource name of a step, e.g. `route53:Z123/api.example.com./A`.
    pub fn resource(&self) -> String {
        match self {
            Self::Route53 { zone_id, records } => {
                let first = records.first();
                format!(
                    "route53:{zone_id}/{}/{}",
                    first.map_or("", |r| r.name.as_str()),
                    first.map_or("", |r| r.record_type.as_str())
                )
            }
            Self::CloudFrontOrigin {
                distribution_id,
                origin_id,
                ..
            } => format!("cloudfront:{distribution_id}/origin:{origin_id}"),
            Self::CloudFrontBehavior {
                distribution_id,
                path_pattern,
                ..
            } => format!(
                "cloudfront:{distribution_id}/behavior:{}",
                path_pattern.as_deref().unwrap_or("default")
            ),
            Self::CloudFrontOriginGroup {
                distribution_id,
                group_id,
                ..
            } => format!("cloudfront:{distribution_id}/origin-group:{group_id}"),
            Self::Autoscaling { region, group, .. } => format!("asg:{region}/{group}"),
            Self::Ecs {
                region,
                cluster,
                service,
                ..
            } => format!("ecs:{region}/{cluster}/{service}"),
            Self::DatabasePromotion {
                region,
                db_instance,
                ..
            } => format!("rds:{region}/{db_instance}"),
            Self::RoutingSwitch { region, .. } => format!("switch:{region}"),
            Self::Verify { .. } => "verify".into(),
        }
    }

    fn kind(&self) -> StepKind {
        match self {
            Self::Route53 { .. } => StepKind::Route53Record,
            Self::CloudFrontOrigin { .. } => StepKind::CloudfrontOrigin,
            Self::CloudFrontBehavior { .. } => StepKind::CloudfrontBehavior,
            Self::CloudFrontOriginGroup { .. } => StepKind::CloudfrontOriginGroup,
            Self::Autoscaling { .. } => StepKind::AutoscalingCapacity,
            Self::Ecs { .. } => StepKind::EcsDesiredCount,
            Self::DatabasePromotion { .. } => StepKind::DatabasePromotion,
            Self::RoutingSwitch { .. } => StepKind::RoutingSwitch,
            Self::Verify { .. } => StepKind::Verify,
        }
    }

    /// Whether applying it cannot be undone.
    pub fn irreversible(&self) -> bool {
        matches!(self, Self::DatabasePromotion { .. })
    }

    /// Whether applying it needs a control plane hosted in us-east-1.
    fn needs_control_plane(&self) -> bool {
        matches!(
            self,
            Self::Route53 { .. }
                | Self::CloudFrontOrigin { .. }
                | Self::CloudFrontBehavior { .. }
                | Self::CloudFrontOriginGroup { .. }
        )
    }

    /// As compact JSON (what a step records).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// From a step's JSON.
    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }
}

/// What AWS holds now, read before planning.
#[derive(Debug, Clone, Default)]
pub struct Current {
    /// Per configured record (same order as `config.route53`): the record
    /// sets of that name and type in the zone.
    pub records: Vec<Vec<RecordSet>>,
    /// Per configured origin: its domain now (None: no such origin).
    pub origins: Vec<Option<String>>,
    /// Per configured origin group: its members now, primary first (None:
    /// no such group).
    pub origin_groups: Vec<Option<Vec<String>>>,
    /// Per configured cache behaviour: its target origin now (None: no
    /// such behaviour).
    pub behaviors: Vec<Option<String>>,
    /// Per distribution: the ids of its origins and origin groups.
    pub distribution_targets: BTreeMap<String, std::collections::BTreeSet<String>>,
    /// (region, group) -> (min, max, desired); absent: no such group.
    pub groups: BTreeMap<(String, String), (i32, i32, i32)>,
    /// (region, cluster, service) -> desired count; absent: no such service.
    pub services: BTreeMap<(String, String, String), i32>,
    /// Routing switches: region -> takes traffic (absent: true).
    pub switches: BTreeMap<String, bool>,
    /// (region, DB instance) -> what RDS reports, for the declared
    /// replicas to promote; absent: no such instance.
    pub databases: BTreeMap<(String, String), crate::deep::DbRead>,
}

/// A plan that cannot be made; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// No region can take the traffic.
    #[error("no region can take the traffic: {0}")]
    NoTarget(String),
    /// A configured resource does not exist.
    #[error("{0} does not exist")]
    Missing(String),
    /// A target region a declared resource does not cover: that region
    /// cannot take the traffic.
    #[error("{region} is not covered: {}", why.join("; "))]
    NotCovered {
        /// The target region.
        region: String,
        /// What lacks it: every reason.
        why: Vec<String>,
    },
    /// Records or resources regionguard cannot move as declared.
    #[error("{0}")]
    Unsupported(String),
}

fn step(before: &Change, after: &Change) -> FailoverStep {
    FailoverStep {
        kind: after.kind() as i32,
        resource: after.resource(),
        before: before.to_json(),
        after: after.to_json(),
        needs_control_plane: after.needs_control_plane(),
        irreversible: after.irreversible(),
        status: StepStatus::Pending as i32,
        ..Default::default()
    }
}

/// The steps that move traffic from `from` to `target`, from what AWS
/// holds now.
pub fn build(
    config: &Config,
    from: &str,
    target: &str,
    current: &Current,
) -> Result<FailoverPlan, PlanError> {
    // Every reason the target is not covered, not only the first: the
    // plan fails with all of them (readiness names each).
    let mut uncovered: Vec<String> = Vec::new();
    let mut steps = Vec::new();
    let mut warnings = Vec::new();
    let mut verify_groups = Vec::new();
    let mut verify_services = Vec::new();
    let none = Default::default();
    let from_res = config.regions.get(from).unwrap_or(&none);
    let target_res = config.regions.get(target).unwrap_or(&none);

    // 1. Capacity: the target's i-th group gets at least the failing
    //    region's i-th group's capacity.
    for (i, group) in target_res.autoscaling_groups.iter().enumerate() {
        let key = (target.to_owned(), group.clone());
        let Some(&(min, max, desired)) = current.groups.get(&key) else {
            uncovered.push(format!("Auto Scaling group {group} does not exist there"));
            continue;
        };
        let (f_min, f_desired) = match from_res.autoscaling_groups.get(i) {
            Some(g) => current
                .groups
                .get(&(from.to_owned(), g.clone()))
                .map_or((min, desired), |&(m, _, d)| (m, d)),
            None => (min, desired),
        };
        let new_desired = desired.max(f_desired);
        let new_min = min.max(f_min);
        let before = Change::Autoscaling {
            region: target.into(),
            group: group.clone(),
            min,
            max,
            desired,
        };
        let after = Change::Autoscaling {
            region: target.into(),
            group: group.clone(),
            min: new_min,
            max: max.max(new_desired),
            desired: new_desired,
        };
        if before != after {
            steps.push(step(&before, &after));
        }
        verify_groups.push((target.to_owned(), group.clone(), new_desired));
    }
    for (i, svc) in target_res.ecs_services.iter().enumerate() {
        let key = (target.to_owned(), svc.cluster.clone(), svc.service.clone());
        let Some(&desired) = current.services.get(&key) else {
            uncovered.push(format!(
                "ECS service {}/{} does not exist there",
                svc.cluster, svc.service
            ));
            continue;
        };
        let f_desired = from_res
            .ecs_services
            .get(i)
            .and_then(|f| {
                current
                    .services
                    .get(&(from.to_owned(), f.cluster.clone(), f.service.clone()))
            })
            .copied()
            .unwrap_or(desired);
        let before = Change::Ecs {
            region: target.into(),
            cluster: svc.cluster.clone(),
            service: svc.service.clone(),
            desired,
        };
        let after = Change::Ecs {
            region: target.into(),
            cluster: svc.cluster.clone(),
            service: svc.service.clone(),
            desired: desired.max(f_desired),
        };
        if before != after {
            steps.push(step(&before, &after));
        }
        verify_services.push((
            target.to_owned(),
            svc.cluster.clone(),
            svc.service.clone(),
            desired.max(f_desired),
        ));
    }

    let planned_capacity = verify_groups.iter().map(|g| g.2).sum::<i32>()
        + verify_services.iter().map(|s| s.3).sum::<i32>();
    if (!verify_groups.is_empty() || !verify_services.is_empty()) && planned_capacity == 0 {
        warnings.push(format!(
            "{target} runs nothing in its declared capacity and {from} declares none to match: the plan adds no capacity"
        ));
    }

    // 2. Databases: the target's read replicas become standalone
    //    databases, once the capacity that will write to them is there and
    //    before any traffic arrives. Irreversible.
    for id in &target_res.promote_replicas {
        let key = (target.to_owned(), id.clone());
        let Some(db) = current.databases.get(&key) else {
            uncovered.push(format!("read replica {id} does not exist there"));
            continue;
        };
        let Some(source) = db.replica_of.clone() else {
            uncovered.push(format!(
                "{id} is not a read replica (already promoted?): nothing to promote"
            ));
            continue;
        };
        // Only a replica of the failing region's database is promoted: one
        // of a database elsewhere (still serving) would split it in two.
        let source_region = replica_source_region(&source);
        if source_region != Some(from) {
            warnings.push(format!(
                "read replica {id} in {target} replicates from {source}, not from {from}'s database: it is not promoted"
            ));
            continue;
        }
        if db.status != "available" {
            uncovered.push(format!(
                "read replica {id} is {}, not available to promote",
                db.status
            ));
            continue;
        }
        let change = |replica_of: Option<String>| Change::DatabasePromotion {
            region: target.into(),
            db_instance: id.clone(),
            replica_of,
        };
        steps.push(step(&change(Some(source.clone())), &change(None)));
        warnings.push(format!(
            "IRREVERSIBLE: step {} promotes the read replica {id} in {target} to a standalone database; it stops replicating from {source}, and no rollback or failback can undo it (a new replica must be created from it by hand)",
            steps.len()
        ));
    }

    if steps.iter().any(|s| s.irreversible)
        && config.mode == crate::Mode::Auto
        && !config.allow_irreversible
    {
        warnings.push("auto mode: this plan has an irreversible step, so it waits for an operator's approval (failover.allow_irreversible = false)".into());
    }

    // 3. Traffic: the data-plane switches first, then DNS records, then
    //    CDN origins (control planes).
    if config.switches.enabled {
        for (region, take_traffic) in [(target, true), (from, false)] {
            let now = current.switches.get(region).copied().unwrap_or(true);
            if now != take_traffic {
                let before = Change::RoutingSwitch {
                    region: region.into(),
                    take_traffic: now,
                };
                let after = Change::RoutingSwitch {
                    region: region.into(),
                    take_traffic,
                };
                steps.push(step(&before, &after));
            }
        }
    }

    let mut regions = config.declared_regions();
    regions.extend([from.to_owned(), target.to_owned()]);
    let mut first_values = None;
    for (i, r) in config.route53.iter().enumerate() {
        let found = current.records.get(i).map(Vec::as_slice).unwrap_or(&[]);
        let regions = route53::regions_named(&regions, found);
        let after_records = match route53::fail_over(r, found, &regions, from, target) {
            Ok(after) => after,
            Err(PlanError::NotCovered { why, .. }) => {
                uncovered.extend(why);
                continue;
            }
            Err(e) => return Err(e),
        };
        if i == 0 {
            first_values = Some(route53::target_values(r, found, &regions, target));
        }
        let before_records: Vec<RecordSet> = after_records
            .iter()
            .filter_map(|a| {
                found
                    .iter()
                    .find(|x| x.set_identifier == a.set_identifier)
                    .cloned()
            })
            .collect();
        let before = Change::Route53 {
            zone_id: r.zone_id.clone(),
            records: before_records,
        };
        let after = Change::Route53 {
            zone_id: r.zone_id.clone(),
            records: after_records,
        };
        if before != after {
            steps.push(step(&before, &after));
        }
    }
    for (i, c) in config.cloudfront.iter().enumerate() {
        let what = format!(
            "CloudFront origin {} of distribution {}",
            c.origin_id, c.distribution_id
        );
        let now = found(&current.origins, i, &what)?;
        // Only an origin that points at the failed region moves.
        if Some(&now) != c.domains.get(from) {
            if Some(&now) != c.domains.get(target) {
                warnings.push(format!(
                    "{what} points at {now}, not at {from}'s domain: it is left as it is"
                ));
            }
            continue;
        }
        let Some(domain) = c.domains.get(target).cloned() else {
            uncovered.push(format!("{what} declares no domain for it"));
            continue;
        };
        let before = Change::CloudFrontOrigin {
            distribution_id: c.distribution_id.clone(),
            origin_id: c.origin_id.clone(),
            domain: now,
        };
        let after = Change::CloudFrontOrigin {
            distribution_id: c.distribution_id.clone(),
            origin_id: c.origin_id.clone(),
            domain,
        };
        if before != after {
            steps.push(step(&before, &after));
        }
    }

    for (i, b) in config.cloudfront_behaviors.iter().enumerate() {
        let what = format!(
            "CloudFront behaviour {} of distribution {}",
            b.pattern().unwrap_or("default"),
            b.distribution_id
        );
        let now = found(&current.behaviors, i, &what)?;
        let Some(theirs) = b.targets.get(target) else {
            uncovered.push(format!("{what} declares no origin for it"));
            continue;
        };
        let exists = current
            .distribution_targets
            .get(&b.distribution_id)
            .is_some_and(|ids| ids.contains(theirs));
        if !exists {
            uncovered.push(format!(
                "distribution {} has no origin or origin group {theirs} for {what}",
                b.distribution_id
            ));
            continue;
        }
        if Some(&now) != b.targets.get(from) {
            if &now != theirs {
                warnings.push(format!(
                    "{what} sends requests to {now}, not to {from}'s origin: it is left as it is"
                ));
            }
            continue;
        }
        let change = |target_origin_id: String| Change::CloudFrontBehavior {
            distribution_id: b.distribution_id.clone(),
            path_pattern: b.pattern().map(str::to_owned),
            target_origin_id,
        };
        steps.push(step(&change(now), &change(theirs.clone())));
    }

    for (i, g) in config.cloudfront_origin_groups.iter().enumerate() {
        let what = format!(
            "CloudFront origin group {} of distribution {}",
            g.group_id, g.distribution_id
        );
        let now = found(&current.origin_groups, i, &what)?;
        // Only a group that tries the failed region's origin first moves.
        if now.first() != g.members.get(from) {
            continue;
        }
        let Some(primary) = g.members.get(target) else {
            uncovered.push(format!("{what} declares no member for it"));
            continue;
        };
        if !now.contains(primary) {
            uncovered.push(format!(
                "origin {primary} ({target}) is not among the members of {what}"
            ));
            continue;
        }
        let after = Change::CloudFrontOriginGroup {
            distribution_id: g.distribution_id.clone(),
            group_id: g.group_id.clone(),
            members: primary_first(&now, primary),
        };
        let before = Change::CloudFrontOriginGroup {
            distribution_id: g.distribution_id.clone(),
            group_id: g.group_id.clone(),
            members: now,
        };
        if before != after {
            steps.push(step(&before, &after));
        }
    }

    if !uncovered.is_empty() {
        return Err(PlanError::NotCovered {
            region: target.to_owned(),
            why: uncovered,
        });
    }

    // 4. Verification.
    let dns = match (&config.verify, first_values) {
        (Some(v), Some(Some(expected))) => Some(DnsCheck {
            name: v.name.clone(),
            resolver: v.resolver.to_string(),
            record_type: config.route53[0].record_type.clone(),
            expected,
        }),
        (Some(v), Some(None)) => {
            warnings.push(format!("{} cannot be verified by DNS: {target}'s answer for the first Route 53 record is an alias or is not declared", v.name));
            None
        }
        (Some(v), None) => {
            warnings.push(format!(
                "{} cannot be verified by DNS: no Route 53 record is declared",
                v.name
            ));
            None
        }
        (None, _) => None,
    };
    if !verify_groups.is_empty() || !verify_services.is_empty() || !steps.is_empty() {
        let v = Change::Verify {
            groups: verify_groups,
            services: verify_services,
            dns,
        };
        steps.push(step(&v, &v));
    }

    let count = |kind: StepKind| steps.iter().filter(|s| s.kind() == kind).count();
    let route53 = count(StepKind::Route53Record);
    let cloudfront = steps.iter().filter(|s| s.needs_control_plane).count() - route53;
    if from == "us-east-1" && route53 + cloudfront > 0 {
        let mut which = Vec::new();
        if route53 > 0 {
            which.push(format!("{route53} Route 53"));
        }
        if cloudfront > 0 {
            which.push(format!("{cloudfront} CloudFront"));
        }
        warnings.push(format!(
            "the Route 53 and CloudFront control planes are hosted in us-east-1, the failing region: {} step{} (marked [control plane]) may fail or be slow; traffic already follows Route 53 health checks (data plane) where they are set up",
            which.join(" and "),
            if route53 + cloudfront == 1 { "" } else { "s" }
        ));
    }
    if steps.is_empty() {
        warnings.push(format!(
            "nothing is declared to change for {target}: the plan has no steps"
        ));
    }
    Ok(FailoverPlan {
        steps,
        warnings,
        ..Default::default()
    })
}

/// The region of a read replica's source: a cross-region replica names
/// its source by ARN (`arn:aws:rds:us-east-1:123456789012:db:orders`); a
/// plain identifier is a source in the replica's own region (`None`).
fn replica_source_region(source: &str) -> Option<&str> {
    let mut parts = source.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(_partition), Some("rds"), Some(region)) if !region.is_empty() => {
            Some(region)
        }
        _ => None,
    }
}

/// The state read for the `i`-th declared resource; `Missing` when it is
/// not in the account.
fn found<T: Clone>(read: &[Option<T>], i: usize, what: &str) -> Result<T, PlanError> {
    read.get(i)
        .cloned()
        .flatten()
        .ok_or_else(|| PlanError::Missing(what.to_owned()))
}

/// `members` with `primary` moved to the front, the others in their order.
fn primary_first(members: &[String], primary: &str) -> Vec<String> {
    std::iter::once(primary.to_owned())
        .chain(members.iter().filter(|m| *m != primary).cloned())
        .collect()
}

/// Whether a step of this kind moves traffic (what a failback undoes).
pub fn moves_traffic(kind: StepKind) -> bool {
    matches!(
        kind,
        StepKind::RoutingSwitch
            | StepKind::Route53Record
            | StepKind::CloudfrontOrigin
            | StepKind::CloudfrontBehavior
            | StepKind::CloudfrontOriginGroup
    )
}

/// The failback of a completed failover: its traffic steps (switches,
/// records, origins) undone, last first, each back to the state it
/// replaced. Capacity is left as it is: regionguard never scales a region
/// down by itself. Every step's current state must still be what the
/// failover left (`current`, read back just now), or nothing is planned.
pub fn failback(
    completed: &FailoverPlan,
    current: &[(usize, Change)],
    candidates: Vec<RegionCandidate>,
    rationale: String,
) -> Result<FailoverPlan, PlanError> {
    let mut steps = Vec::new();
    for (i, s) in completed.steps.iter().enumerate().rev() {
        if !moves_traffic(s.kind()) || s.status() != StepStatus::Done {
            continue;
        }
        let (Ok(before), Ok(after)) = (Change::from_json(&s.before), Change::from_json(&s.after))
        else {
            return Err(PlanError::Unsupported(format!(
                "step {i} of the failover is unreadable"
            )));
        };
        let now = current
            .iter()
            .find(|(j, _)| *j == i)
            .map(|(_, c)| c)
            .ok_or_else(|| PlanError::Missing(format!("the current state of {}", s.resource)))?;
        if *now != after {
            return Err(PlanError::Unsupported(format!(
                "{} changed since the failover (now {}, the failover left {}): fail back by hand",
                s.resource,
                now.to_json(),
                after.to_json()
            )));
        }
        steps.push(step(&after, &before));
    }
    if steps.is_empty() {
        return Err(PlanError::Unsupported(
            "the failover changed no traffic step to undo".into(),
        ));
    }
    let mut warnings = vec!["capacity added by the failover is left in place; scale it down by hand when it is no longer needed".to_owned()];
    for s in completed.steps.iter().filter(|s| s.irreversible) {
        if let Ok(Change::DatabasePromotion {
            region,
            db_instance,
            ..
        }) = Change::from_json(&s.after)
        {
            warnings.push(format!(
                "the failover promoted {db_instance} in {region}, which cannot be undone: it stays a standalone database; bring its writes back to the original region's database by hand before traffic returns"
            ));
        }
    }
    Ok(FailoverPlan {
        candidates,
        rationale,
        steps,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RecordKind, Route53Record};

    fn record(kind: RecordKind, values: &[(&str, &str)]) -> Route53Record {
        Route53Record {
            zone_id: "Z1".into(),
            name: "api.example.com.".into(),
            record_type: "A".into(),
            kind,
            ttl: None,
            weight: 100,
            set_identifiers: BTreeMap::new(),
            aliases: BTreeMap::new(),
            values: values
                .iter()
                .map(|(r, v)| ((*r).to_owned(), vec![(*v).to_owned()]))
                .collect(),
        }
    }

    fn set(id: Option<&str>, value: &str, weight: Option<i64>) -> RecordSet {
        RecordSet {
            name: "api.example.com.".into(),
            record_type: "A".into(),
            ttl: Some(60),
            values: vec![value.into()],
            alias: None,
            set_identifier: id.map(str::to_owned),
            weight,
            failover: None,
            region: None,
            health_check_id: None,
            other_policy: None,
        }
    }

    #[test]
    fn a_target_without_declared_values_fails_the_plan_naming_the_region() {
        let config = Config {
            route53: vec![record(
                RecordKind::Simple,
                &[("us-east-1", "192.0.2.1"), ("eu-west-1", "192.0.2.3")],
            )],
            ..Config::default()
        };
        let current = Current {
            records: vec![vec![set(None, "192.0.2.1", None)]],
            ..Current::default()
        };
        let e = build(&config, "us-east-1", "us-west-2", &current).unwrap_err();
        assert_eq!(
            e.to_string(),
            "us-west-2 is not covered: record api.example.com. A in zone Z1 declares no answer (values or aliases) for it"
        );
    }

    #[test]
    fn weighted_records_give_the_target_the_weight_and_the_others_zero() {
        let config = Config {
            route53: vec![record(RecordKind::Weighted, &[])],
            ..Config::default()
        };
        let current = Current {
            records: vec![vec![
                set(Some("us-east-1"), "192.0.2.1", Some(100)),
                set(Some("us-west-2"), "192.0.2.2", Some(0)),
            ]],
            ..Current::default()
        };
        let plan = build(&config, "us-east-1", "us-west-2", &current).unwrap();
        let Ok(Change::Route53 { records, .. }) = Change::from_json(&plan.steps[0].after) else {
            panic!("{:?}", plan.steps)
        };
        let weights: Vec<_> = records
            .iter()
            .map(|r| (r.set_identifier.clone().unwrap(), r.weight))
            .collect();
        assert_eq!(
            weights,
            [
                ("us-east-1".into(), Some(0)),
                ("us-west-2".into(), Some(100))
            ]
        );
        // The values are kept.
        assert_eq!(records[1].values, ["192.0.2.2"]);
    }

    #[test]
    fn a_failback_undoes_traffic_steps_in_reverse_and_refuses_a_changed_resource() {
        let config = Config {
            route53: vec![record(
                RecordKind::Simple,
                &[("us-east-1", "192.0.2.1"), ("us-west-2", "192.0.2.2")],
            )],
            ..Config::default()
        };
        let current = Current {
            records: vec![vec![set(None, "192.0.2.1", None)]],
            ..Current::default()
        };
        let mut plan = build(&config, "us-east-1", "us-west-2", &current).unwrap();
        for s in &mut plan.steps {
            s.set_status(StepStatus::Done);
        }
        let after = Change::from_json(&plan.steps[0].after).unwrap();
        let back = failback(&plan, &[(0, after.clone())], Vec::new(), String::new()).unwrap();
        assert_eq!(
            back.steps.len(),
            1,
            "verification and capacity are not undone"
        );
        assert_eq!(back.steps[0].after, plan.steps[0].before);
        // Someone changed the record since: no failback plan.
        let edited = Change::Route53 {
            zone_id: "Z1".into(),
            records: vec![set(None, "203.0.113.9", None)],
        };
        let e = failback(&plan, &[(0, edited)], Vec::new(), String::new()).unwrap_err();
        assert!(e.to_string().contains("changed since the failover"), "{e}");
    }

    #[test]
    fn an_origin_group_gets_the_target_as_primary_and_keeps_the_other_members_in_order() {
        use crate::config::CloudFrontOriginGroup;
        let config = Config {
            cloudfront_origin_groups: vec![CloudFrontOriginGroup {
                distribution_id: "E1".into(),
                group_id: "app".into(),
                members: [("us-east-1", "use1"), ("us-west-2", "usw2")]
                    .into_iter()
                    .map(|(r, o)| (r.to_owned(), o.to_owned()))
                    .collect(),
            }],
            ..Config::default()
        };
        let members = |m: &[&str]| Some(m.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let current = Current {
            origin_groups: vec![members(&["use1", "backup", "usw2"])],
            ..Current::default()
        };
        let plan = build(&config, "us-east-1", "us-west-2", &current).unwrap();
        assert_eq!(plan.steps[0].resource, "cloudfront:E1/origin-group:app");
        assert!(plan.steps[0].needs_control_plane);
        let Ok(Change::CloudFrontOriginGroup { members: after, .. }) =
            Change::from_json(&plan.steps[0].after)
        else {
            panic!("{:?}", plan.steps)
        };
        assert_eq!(after, ["usw2", "use1", "backup"]);

        // Already primary: no step.
        let current = Current {
            origin_groups: vec![members(&["usw2", "use1"])],
            ..Current::default()
        };
        let plan = build(&config, "us-east-1", "us-west-2", &current).unwrap();
        assert!(plan
            .steps
            .iter()
            .all(|s| s.kind() != StepKind::CloudfrontOriginGroup));

        // The target's origin is not a member: nothing is planned.
        let current = Current {
            origin_groups: vec![members(&["use1", "backup"])],
            ..Current::default()
        };
        let e = build(&config, "us-east-1", "us-west-2", &current).unwrap_err();
        assert!(
            e.to_string()
                .contains("origin usw2 (us-west-2) is not among the members"),
            "{e}"
        );
    }

    /// A failover away from eu-west-1 moves nothing that only us-east-1
    /// and us-west-2 serve: no record, origin or origin group of a
    /// healthy region is touched.
    #[test]
    fn a_failover_moves_only_what_sends_the_failed_regions_traffic() {
        use crate::config::{CloudFrontOrigin, CloudFrontOriginGroup};
        let by_region = |a: &str, b: &str| -> BTreeMap<String, String> {
            [("us-east-1", a), ("us-west-2", b)]
                .into_iter()
                .map(|(r, v)| (r.to_owned(), v.to_owned()))
                .collect()
        };
        let config = Config {
            route53: vec![record(
                RecordKind::Simple,
                &[("us-east-1", "192.0.2.1"), ("us-west-2", "192.0.2.2")],
            )],
            cloudfront: vec![CloudFrontOrigin {
                distribution_id: "E1".into(),
                origin_id: "app".into(),
                domains: by_region("use1.example", "usw2.example"),
            }],
            cloudfront_origin_groups: vec![CloudFrontOriginGroup {
                distribution_id: "E1".into(),
                group_id: "og".into(),
                members: by_region("use1", "usw2"),
            }],
            ..Config::default()
        };
        let current = Current {
            records: vec![vec![set(None, "192.0.2.1", None)]],
            origins: vec![Some("use1.example".into())],
            origin_groups: vec![Some(vec!["use1".into(), "usw2".into()])],
            ..Current::default()
        };
        let plan = build(&config, "eu-west-1", "us-west-2", &current).unwrap();
        assert!(plan.steps.is_empty(), "{:#?}", plan.steps);
        // Away from us-east-1, all three move.
        let plan = build(&config, "us-east-1", "us-west-2", &current).unwrap();
        let moved: Vec<&str> = plan.steps.iter().map(|s| s.resource.as_str()).collect();
        assert_eq!(
            moved,
            [
                "route53:Z1/api.example.com./A",
                "cloudfront:E1/origin:app",
                "cloudfront:E1/origin-group:og",
                "verify"
            ]
        );
    }

    #[test]
    fn only_a_replica_of_the_failing_regions_database_is_promoted() {
        assert_eq!(
            replica_source_region("arn:aws:rds:us-east-1:123456789012:db:orders"),
            Some("us-east-1")
        );
        assert_eq!(replica_source_region("orders"), None);
        let mut config = Config::default();
        config.regions.insert(
            "us-west-2".into(),
            crate::config::RegionResources {
                promote_replicas: vec!["orders-usw2".into()],
                ..Default::default()
            },
        );
        let mut current = Current::default();
        current.databases.insert(
            ("us-west-2".into(), "orders-usw2".into()),
            crate::deep::DbRead {
                id: "orders-usw2".into(),
                status: "available".into(),
                replica_of: Some("arn:aws:rds:us-east-1:123456789012:db:orders".into()),
            },
        );
        let from_source = build(&config, "us-east-1", "us-west-2", &current).unwrap();
        assert!(from_source.steps.iter().any(|s| s.irreversible));
        // eu-west-1 fails, the database in us-east-1 still serves: no
        // promotion, and the plan says why.
        let elsewhere = build(&config, "eu-west-1", "us-west-2", &current).unwrap();
        assert!(
            !elsewhere.steps.iter().any(|s| s.irreversible),
            "{elsewhere:?}"
        );
        assert!(
            elsewhere
                .warnings
                .iter()
                .any(|w| w.contains("not from eu-west-1's database: it is not promoted")),
            "{:?}",
            elsewhere.warnings
        );
    }
}
