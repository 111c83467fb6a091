//! Deep health: what the AWS APIs say of a region's declared resources
//! (load balancers and target groups, the instances of its Auto Scaling
//! groups, its databases), and how that combines with the DNS health
//! events into the region's score.
//!
//! ```text
//! score = dns × resources
//! resources = mean of the checks' factors (1 when none is declared)
//! ```
//!
//! Each check's factor, 0 (down) to 1:
//! - **target group**: healthy targets / targets counted (draining ones
//!   are not counted), halved while a load balancer in front of it is
//!   `active_impaired`. A load balancer that is not active (provisioning,
//!   failed), a group whose registered targets are all unhealthy, or one
//!   with no target at all, scores 0 and disqualifies the region, except
//!   the empty group of a pilot light (nothing desired yet) that the
//!   failover's scaling fills: an `instance` group with Auto Scaling
//!   groups declared, an `ip` group with ECS services declared.
//! - **instances** of an Auto Scaling group: the share passing EC2's
//!   status checks (running, instance status `ok`, system status `ok`);
//!   `initializing` counts half. A group without instances is not counted.
//! - **database**: `available` 1; busy but serving (`backing-up`,
//!   `modifying`, `upgrading`, `configuring-*`, `storage-optimization`,
//!   `maintenance`) 0.5; anything else, or absent, 0. Whether a read
//!   replica the failover would promote can be promoted (it exists, is
//!   available, is still a replica) is the plan's to say: a plan to the
//!   region is refused when it cannot.
//!
//! Both factors of the product and every check are bounded and monotone:
//! a worse answer never scores higher (the property tests below).

use rg_proto::v1::ResourceCheck;

/// A target group as Elastic Load Balancing reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetGroupRead {
    /// Its name.
    pub name: String,
    /// `instance`, `ip`, `lambda` or `alb`.
    pub target_type: String,
    /// The load balancers in front of it: (name, state code).
    pub load_balancers: Vec<(String, String)>,
    /// Its targets: (id, state, reason code).
    pub targets: Vec<(String, String, String)>,
}

/// An instance as EC2's status checks report it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstanceRead {
    /// Instance id.
    pub id: String,
    /// `running`, `stopped`, ...
    pub state: String,
    /// Instance status check: `ok`, `impaired`, `initializing`,
    /// `insufficient-data`, `not-applicable`.
    pub instance_status: String,
    /// System status check, same values.
    pub system_status: String,
}

/// A DB instance as RDS reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DbRead {
    /// Identifier.
    pub id: String,
    /// `available`, `stopped`, `modifying`, ...
    pub status: String,
    /// The source it replicates from, when it is a read replica.
    pub replica_of: Option<String>,
}

fn bounded(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

/// The region's score from its DNS score and its checks.
pub fn combine(dns: f64, checks: &[ResourceCheck]) -> f64 {
    let dns = bounded(dns);
    if checks.is_empty() {
        return dns;
    }
    let resources = checks.iter().map(|c| bounded(c.factor)).sum::<f64>() / checks.len() as f64;
    dns * resources
}

/// What pulls a region down: every check below 1, worst first, as
/// `tg web: 1/3 targets healthy; ...` ("" when none).
pub fn pulled_down(checks: &[ResourceCheck]) -> String {
    let mut low: Vec<&ResourceCheck> = checks.iter().filter(|c| c.factor < 1.0).collect();
    low.sort_by(|a, b| a.factor.total_cmp(&b.factor));
    low.iter()
        .map(|c| format!("{}: {}", c.resource, c.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The first reason a check disqualifies the region, if any.
pub fn disqualified(checks: &[ResourceCheck]) -> Option<String> {
    checks
        .iter()
        .find(|c| !c.disqualifies.is_empty())
        .map(|c| format!("{}: {}", c.resource, c.disqualifies))
}

/// A declared target group's check. `filled`: a failover's scaling
/// registers its targets (a pilot light's instance group fed by its Auto
/// Scaling groups, or an IP group fed by its ECS services), so that it
/// may be empty now.
pub fn target_group(declared: &str, read: Option<&TargetGroupRead>, filled: bool) -> ResourceCheck {
    let resource = format!("tg {declared}");
    let Some(tg) = read else {
        return down(resource, "does not exist");
    };
    for (lb, state) in &tg.load_balancers {
        if state != "active" && state != "active_impaired" {
            return down(resource, &format!("load balancer {lb} is {state}"));
        }
    }
    let counted: Vec<&(String, String, String)> =
        tg.targets.iter().filter(|t| t.1 != "draining").collect();
    let healthy = counted.iter().filter(|t| t.1 == "healthy").count();
    if counted.is_empty() {
        if filled {
            return ResourceCheck {
                resource,
                factor: 1.0,
                detail: "no targets yet: a pilot light, filled when a failover scales it up".into(),
                disqualifies: String::new(),
            };
        }
        let kind = if tg.target_type.is_empty() {
            "unknown"
        } else {
            tg.target_type.as_str()
        };
        return down(
            resource,
            &format!(
                "no targets registered ({kind} targets; nothing the failover scales registers any)"
            ),
        );
    }
    let mut detail = format!("{healthy}/{} targets healthy", counted.len());
    let mut others: std::collections::BTreeMap<String, usize> = Default::default();
    for t in counted.iter().filter(|t| t.1 != "healthy") {
        let why = if t.2.is_empty() {
            t.1.clone()
        } else {
            format!("{}: {}", t.1, t.2)
        };
        *others.entry(why).or_default() += 1;
    }
    if !others.is_empty() {
        let list: Vec<String> = others.iter().map(|(w, n)| format!("{n} {w}")).collect();
        detail = format!("{detail} ({})", list.join(", "));
    }
    let mut factor = healthy as f64 / counted.len() as f64;
    let impaired: Vec<&str> = tg
        .load_balancers
        .iter()
        .filter(|(_, s)| s == "active_impaired")
        .map(|(lb, _)| lb.as_str())
        .collect();
    if !impaired.is_empty() {
        factor *= 0.5;
        detail = format!(
            "{detail}; load balancer {} is active_impaired",
            impaired.join(", ")
        );
    }
    let disqualifies = if healthy == 0 {
        format!("no healthy targets: {detail}")
    } else {
        String::new()
    };
    ResourceCheck {
        resource,
        factor,
        detail,
        disqualifies,
    }
}

/// The check of an Auto Scaling group's instances; `None` without any.
pub fn instances(group: &str, read: &[InstanceRead]) -> Option<ResourceCheck> {
    if read.is_empty() {
        return None;
    }
    let value = |i: &InstanceRead| -> f64 {
        if i.state != "running" {
            return 0.0;
        }
        let check = |s: &str| -> f64 {
            match s {
                "ok" => 1.0,
                "initializing" => 0.5,
                _ => 0.0,
            }
        };
        check(&i.instance_status).min(check(&i.system_status))
    };
    let passing = read.iter().filter(|i| value(i) == 1.0).count();
    let mut detail = format!("{passing}/{} instances pass the status checks", read.len());
    let failing: Vec<String> = read
        .iter()
        .filter(|i| value(i) < 1.0)
        .map(|i| {
            if i.state != "running" {
                format!("{} {}", i.id, i.state)
            } else {
                format!(
                    "{} instance {}, system {}",
                    i.id, i.instance_status, i.system_status
                )
            }
        })
        .collect();
    if !failing.is_empty() {
        detail = format!("{detail} ({})", failing.join(", "));
    }
    Some(ResourceCheck {
        resource: format!("ec2 asg {group}"),
        factor: read.iter().map(value).sum::<f64>() / read.len() as f64,
        detail,
        disqualifies: String::new(),
    })
}

/// What a DB status counts.
fn db_value(status: &str) -> f64 {
    match status {
        "available" => 1.0,
        "backing-up" | "modifying" | "upgrading" | "storage-optimization" | "maintenance" => 0.5,
        s if s.starts_with("configuring-") => 0.5,
        _ => 0.0,
    }
}

/// A declared database's check. `replica`: it is a read replica a
/// failover would promote; whether it can be is the plan's to say (a
/// plan to the region is refused when it cannot), so it never
/// disqualifies here.
pub fn database(declared: &str, read: Option<&DbRead>, replica: bool) -> ResourceCheck {
    let resource = format!("rds {declared}");
    let Some(db) = read else {
        let detail = if replica {
            "does not exist: there is no replica to promote"
        } else {
            "does not exist"
        };
        return ResourceCheck {
            resource,
            factor: 0.0,
            detail: detail.into(),
            disqualifies: String::new(),
        };
    };
    let detail = match &db.replica_of {
        Some(source) => format!("{}, read replica of {source}", db.status),
        None if replica => format!("{}, not a read replica (nothing to promote)", db.status),
        None => db.status.clone(),
    };
    ResourceCheck {
        resource,
        factor: db_value(&db.status),
        detail,
        disqualifies: String::new(),
    }
}

fn down(resource: String, why: &str) -> ResourceCheck {
    ResourceCheck {
        resource,
        factor: 0.0,
        detail: why.to_owned(),
        disqualifies: why.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tg(lb_state: &str, targets: &[&str]) -> TargetGroupRead {
        TargetGroupRead {
            name: "web".into(),
            target_type: "instance".into(),
            load_balancers: vec![("alb-web".into(), lb_state.into())],
            targets: targets
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let reason = if *s == "unused" {
                        "Target.InvalidState"
                    } else {
                        ""
                    };
                    (format!("i-{i}"), (*s).into(), reason.into())
                })
                .collect(),
        }
    }

    #[test]
    fn a_target_group_counts_its_healthy_share_and_names_the_rest() {
        let c = target_group(
            "web",
            Some(&tg("active", &["healthy", "unused", "healthy"])),
            false,
        );
        assert!((c.factor - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(
            c.detail,
            "2/3 targets healthy (1 unused: Target.InvalidState)"
        );
        assert!(c.disqualifies.is_empty());
        let none = target_group("web", Some(&tg("active", &["unhealthy", "unused"])), false);
        assert_eq!(none.factor, 0.0);
        assert!(
            none.disqualifies.starts_with("no healthy targets"),
            "{none:?}"
        );
        let lb = target_group("web", Some(&tg("provisioning", &["healthy"])), false);
        assert_eq!(lb.disqualifies, "load balancer alb-web is provisioning");
        let impaired = target_group("web", Some(&tg("active_impaired", &["healthy"])), false);
        assert_eq!(impaired.factor, 0.5);
        assert_eq!(
            target_group("web", None, true).disqualifies,
            "does not exist"
        );
    }

    #[test]
    fn an_empty_target_group_is_expected_only_where_the_failover_fills_it() {
        let pilot = target_group("web", Some(&tg("active", &[])), true);
        assert_eq!((pilot.factor, pilot.disqualifies.as_str()), (1.0, ""));
        let nothing_fills_it = target_group("web", Some(&tg("active", &[])), false);
        assert_eq!(
            nothing_fills_it.disqualifies,
            "no targets registered (instance targets; nothing the failover scales registers any)"
        );
        // Draining targets are leaving: not counted.
        assert!(
            target_group("web", Some(&tg("active", &["draining"])), true)
                .disqualifies
                .is_empty()
        );
    }

    #[test]
    fn instances_pass_only_with_both_status_checks_ok() {
        let i = |id: &str, state: &str, inst: &str, sys: &str| InstanceRead {
            id: id.into(),
            state: state.into(),
            instance_status: inst.into(),
            system_status: sys.into(),
        };
        let c = instances(
            "web",
            &[
                i("i-1", "running", "ok", "ok"),
                i("i-2", "running", "ok", "impaired"),
                i("i-3", "stopped", "not-applicable", "not-applicable"),
                i("i-4", "running", "initializing", "ok"),
            ],
        )
        .unwrap();
        assert!((c.factor - 1.5 / 4.0).abs() < 1e-9);
        assert_eq!(c.detail, "1/4 instances pass the status checks (i-2 instance ok, system impaired, i-3 stopped, i-4 instance initializing, system ok)");
        assert_eq!(instances("web", &[]), None);
    }

    #[test]
    fn a_database_counts_its_status_and_says_what_it_replicates() {
        let db = |status: &str, of: Option<&str>| DbRead {
            id: "orders-usw2".into(),
            status: status.into(),
            replica_of: of.map(str::to_owned),
        };
        let src = Some("arn:aws:rds:us-east-1:123456789012:db:orders");
        let ok = database("orders-usw2", Some(&db("available", src)), true);
        assert_eq!(
            (ok.factor, ok.detail.as_str()),
            (
                1.0,
                "available, read replica of arn:aws:rds:us-east-1:123456789012:db:orders"
            )
        );
        let promoted = database("orders-usw2", Some(&db("available", None)), true);
        assert_eq!(
            promoted.detail,
            "available, not a read replica (nothing to promote)"
        );
        assert_eq!(
            database("orders-usw2", Some(&db("storage-full", src)), true).factor,
            0.0
        );
        assert_eq!(database("orders-usw2", None, true).factor, 0.0);
        assert_eq!(
            database("x", Some(&db("modifying", None)), false).factor,
            0.5
        );
        // Whether a replica can be promoted is the plan's to say.
        for c in [promoted, database("orders-usw2", None, true)] {
            assert!(c.disqualifies.is_empty(), "{c:?}");
        }
    }

    #[test]
    fn what_pulls_a_region_down_is_named_worst_first() {
        let check = |r: &str, f: f64, d: &str| ResourceCheck {
            resource: r.into(),
            factor: f,
            detail: d.into(),
            disqualifies: String::new(),
        };
        let checks = [
            check("rds a", 1.0, "available"),
            check("ec2 asg web", 0.5, "1/2 instances pass"),
            check("tg web", 0.0, "0/2 targets healthy"),
        ];
        assert_eq!(
            pulled_down(&checks),
            "tg web: 0/2 targets healthy; ec2 asg web: 1/2 instances pass"
        );
        assert!((combine(0.9, &checks) - 0.9 * 0.5).abs() < 1e-9);
        assert_eq!(combine(0.9, &[]), 0.9);
    }

    fn checks(factors: &[f64]) -> Vec<ResourceCheck> {
        factors
            .iter()
            .map(|f| ResourceCheck {
                factor: *f,
                ..Default::default()
            })
            .collect()
    }

    const STATES: [&str; 6] = [
        "healthy",
        "unhealthy",
        "initial",
        "unused",
        "unavailable",
        "draining",
    ];

    proptest! {
        #[test]
        fn the_score_is_bounded(dns in -1.0f64..2.0, factors in prop::collection::vec(-1.0f64..2.0, 0..6)) {
            let s = combine(dns, &checks(&factors));
            prop_assert!((0.0..=1.0).contains(&s), "{s}");
        }

        #[test]
        fn a_worse_check_or_dns_never_scores_higher(
            dns in 0.0f64..=1.0,
            factors in prop::collection::vec(0.0f64..=1.0, 1..6),
            which in 0usize..6,
            drop in 0.0f64..=1.0,
            dns_drop in 0.0f64..=1.0,
        ) {
            let before = combine(dns, &checks(&factors));
            let mut worse = factors.clone();
            let i = which % worse.len();
            worse[i] = (worse[i] - drop).max(0.0);
            prop_assert!(combine(dns, &checks(&worse)) <= before + 1e-12);
            prop_assert!(combine((dns - dns_drop).max(0.0), &checks(&factors)) <= before + 1e-12);
        }

        #[test]
        fn a_target_turning_unhealthy_never_raises_the_factor(
            states in prop::collection::vec(0usize..6, 1..8),
            which in 0usize..8,
            lb in 0usize..2,
        ) {
            let lb = ["active", "active_impaired"][lb];
            let mut names: Vec<&str> = states.iter().map(|s| STATES[*s]).collect();
            let i = which % names.len();
            names[i] = "healthy";
            let mut worse = names.clone();
            worse[i] = "unhealthy";
            let f = |n: &[&str]| target_group("web", Some(&tg(lb, n)), false).factor;
            prop_assert!(f(&worse) <= f(&names));
            prop_assert!((0.0..=1.0).contains(&f(&names)));
        }

        #[test]
        fn a_failing_status_check_never_raises_the_factor(
            checks_ok in prop::collection::vec((0usize..4, 0usize..4, any::<bool>()), 1..6),
            which in 0usize..6,
        ) {
            const S: [&str; 4] = ["ok", "initializing", "impaired", "insufficient-data"];
            let read: Vec<InstanceRead> = checks_ok
                .iter()
                .enumerate()
                .map(|(n, (a, b, running))| InstanceRead {
                    id: format!("i-{n}"),
                    state: if *running { "running" } else { "stopped" }.into(),
                    instance_status: S[*a].into(),
                    system_status: S[*b].into(),
                })
                .collect();
            let mut worse = read.clone();
            let i = which % worse.len();
            worse[i].system_status = "impaired".into();
            let f = |r: &[InstanceRead]| instances("web", r).map_or(1.0, |c| c.factor);
            prop_assert!(f(&worse) <= f(&read));
        }
    }
}
