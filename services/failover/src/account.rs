//! `regionguard check-config --aws`: the declared resources checked
//! against the account, read only. Every record, distribution, behaviour,
//! origin group, Auto Scaling group, ECS service, target group and
//! database must exist (a replica to promote must be one), and a plan
//! must be possible from every declared region to every other: what a
//! failover would refuse is found before an outage.

use std::collections::BTreeSet;

use crate::aws::Aws;
use crate::config::Config;
use crate::plan::{self, Current};
use crate::{deep, route53};

/// One line of the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// False when a failover would fail on it.
    pub ok: bool,
    /// What was checked and what was found.
    pub message: String,
}

fn ok(message: String) -> Finding {
    Finding { ok: true, message }
}

fn fail(message: String) -> Finding {
    Finding { ok: false, message }
}

/// Checks `config`'s resources against the account `config.aws` reaches.
pub async fn check(config: &Config) -> Vec<Finding> {
    let aws = match Aws::new(&config.aws).await {
        Ok(aws) => aws,
        Err(e) => return vec![fail(format!("{e:#}"))],
    };
    let regions: Vec<String> = config.declared_regions().into_iter().collect();
    if regions.is_empty() {
        return vec![fail(
            "no resources are declared under [failover]: a failover would have nothing to move"
                .into(),
        )];
    }
    // Each resource read on its own: one that cannot be read (a
    // distribution that does not exist, a denied call) is named, and the
    // rest is still checked.
    let mut out = Vec::new();
    let all: Vec<&str> = regions.iter().map(String::as_str).collect();
    let read = aws
        .read_each(config, &all, |what, e| {
            out.push(fail(format!("{what}: cannot be read: {e}")));
            Ok(())
        })
        .await;
    let current = match read {
        Ok(current) => current,
        Err(e) => return vec![fail(format!("reading the account: {e}"))],
    };
    out.extend(resources(config, &current, &regions));
    out.extend(deep_resources(&aws, config).await);
    for from in &regions {
        for target in regions.iter().filter(|t| *t != from) {
            match plan::build(config, from, target, &current) {
                Ok(p) => out.push(ok(format!(
                    "{from} -> {target}: a plan of {} steps{}",
                    p.steps.len(),
                    if p.warnings.is_empty() {
                        String::new()
                    } else {
                        format!(" (warnings: {})", p.warnings.join("; "))
                    }
                ))),
                Err(e) => out.push(fail(format!("{from} -> {target}: {e}"))),
            }
        }
    }
    out
}

/// The deep-health resources of each region: target groups (their load
/// balancers and targets) and databases, each read on its own.
async fn deep_resources(aws: &Aws, config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    for (region, res) in &config.regions {
        for tg in &res.target_groups {
            let what = format!("target group {tg} in {region}");
            out.push(match aws.target_group(region, tg).await {
                Err(e) => fail(format!("{what}: cannot be read: {e}")),
                Ok(None) => fail(format!("{what}: no such target group")),
                Ok(Some(read)) => {
                    // Emptiness is readiness's to judge (a pilot light's
                    // group fills when a failover scales it up).
                    let check = deep::target_group(tg, Some(&read), true);
                    let lbs: Vec<String> = read
                        .load_balancers
                        .iter()
                        .map(|(name, state)| format!("{name} {state}"))
                        .collect();
                    let message = format!(
                        "{what}: {} targets, {}; load balancers: {}",
                        read.target_type,
                        check.detail,
                        if lbs.is_empty() {
                            "none".into()
                        } else {
                            lbs.join(", ")
                        }
                    );
                    if check.disqualifies.is_empty() {
                        ok(message)
                    } else {
                        fail(message)
                    }
                }
            });
        }
        for id in &res.db_clusters {
            let what = format!("rds cluster {id} in {region}");
            out.push(match aws.db_cluster(region, id).await {
                Err(e) => fail(format!("{what}: cannot be read: {e}")),
                Ok(None) => fail(format!("{what}: no such DB cluster")),
                Ok(Some(db)) => ok(format!(
                    "{what}: {}",
                    deep::database(id, Some(&db), false).detail
                )),
            });
        }
        for (list, replica) in [(&res.db_instances, false), (&res.promote_replicas, true)] {
            for id in list {
                let what = format!("rds {id} in {region}");
                out.push(match aws.db_instance(region, id).await {
                    Err(e) => fail(format!("{what}: cannot be read: {e}")),
                    Ok(None) => fail(format!("{what}: no such DB instance")),
                    Ok(Some(db)) if replica && db.replica_of.is_none() => fail(format!(
                        "{what}: {}, not a read replica: nothing to promote",
                        db.status
                    )),
                    Ok(Some(db)) => ok(format!(
                        "{what}: {}",
                        deep::database(id, Some(&db), replica).detail
                    )),
                });
            }
        }
    }
    out
}

/// What each declared resource is in the account.
fn resources(config: &Config, current: &Current, regions: &[String]) -> Vec<Finding> {
    let declared: BTreeSet<String> = regions.iter().cloned().collect();
    let mut out = Vec::new();
    for (i, r) in config.route53.iter().enumerate() {
        let what = format!(
            "route53 {} {} {} (zone {})",
            r.kind.name(),
            r.name,
            r.record_type,
            r.zone_id
        );
        let found = current.records.get(i).map(Vec::as_slice).unwrap_or(&[]);
        if found.is_empty() {
            out.push(fail(format!("{what}: no such record")));
            continue;
        }
        let named = route53::regions_named(&declared, found);
        match route53::sets_by_region(r, found, &named) {
            Ok(sets) if sets.is_empty() => out.push(ok(format!(
                "{what}: {}",
                found
                    .iter()
                    .map(route53::RecordSet::describe)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            Ok(sets) => out.push(ok(format!(
                "{what}: {}",
                sets.iter()
                    .map(|(region, s)| format!("{region} = {}", s.describe()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            Err(e) => out.push(fail(format!("{what}: {e}"))),
        }
    }
    for (i, c) in config.cloudfront.iter().enumerate() {
        let what = format!("cloudfront origin {} of {}", c.origin_id, c.distribution_id);
        out.push(match current.origins.get(i).cloned().flatten() {
            Some(domain) => ok(format!("{what}: {domain}")),
            None => fail(format!("{what}: no such origin")),
        });
    }
    for (i, b) in config.cloudfront_behaviors.iter().enumerate() {
        let what = format!(
            "cloudfront behaviour {} of {}",
            b.pattern().unwrap_or("default"),
            b.distribution_id
        );
        let targets = current.distribution_targets.get(&b.distribution_id);
        let missing: Vec<String> = b
            .targets
            .iter()
            .filter(|(_, id)| !targets.is_some_and(|t| t.contains(*id)))
            .map(|(region, id)| format!("{id} ({region})"))
            .collect();
        out.push(match current.behaviors.get(i).cloned().flatten() {
            None => fail(format!("{what}: no such behaviour")),
            Some(_) if !missing.is_empty() => fail(format!(
                "{what}: the distribution has no origin or origin group {}",
                missing.join(", ")
            )),
            Some(now) => ok(format!("{what}: sends requests to {now}")),
        });
    }
    for (i, g) in config.cloudfront_origin_groups.iter().enumerate() {
        let what = format!(
            "cloudfront origin group {} of {}",
            g.group_id, g.distribution_id
        );
        out.push(match current.origin_groups.get(i).cloned().flatten() {
            None => fail(format!("{what}: no such origin group")),
            Some(members) => {
                let missing: Vec<&str> = g
                    .members
                    .values()
                    .filter(|m| !members.contains(m))
                    .map(String::as_str)
                    .collect();
                if missing.is_empty() {
                    ok(format!("{what}: members {}", members.join(", ")))
                } else {
                    fail(format!(
                        "{what}: {} not among its members ({})",
                        missing.join(", "),
                        members.join(", ")
                    ))
                }
            }
        });
    }
    for (region, res) in &config.regions {
        for g in &res.autoscaling_groups {
            out.push(match current.groups.get(&(region.clone(), g.clone())) {
                Some((min, max, desired)) => ok(format!(
                    "asg {g} in {region}: min {min}, desired {desired}, max {max}"
                )),
                None => fail(format!("asg {g} in {region}: no such group")),
            });
        }
        for s in &res.ecs_services {
            let key = (region.clone(), s.cluster.clone(), s.service.clone());
            out.push(match current.services.get(&key) {
                Some(desired) => ok(format!(
                    "ecs {}/{} in {region}: desired {desired}",
                    s.cluster, s.service
                )),
                None => fail(format!(
                    "ecs {}/{} in {region}: no such service",
                    s.cluster, s.service
                )),
            });
        }
    }
    out
}
