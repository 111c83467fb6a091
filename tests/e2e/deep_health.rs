//! Deep health and the database step, on a moto account seeded by
//! `aws_shapes.py --shape deep-health`: three regions, each an Auto
//! Scaling group registered in a target group behind an application load
//! balancer, and an RDS primary in us-east-1 with cross-region read
//! replicas in us-west-2 and eu-west-1. Instances are stopped to make
//! targets unhealthy and status checks fail, as an outage of the standby's
//! hosts would.

use std::time::Duration;

use rg_proto::v1::{FailoverDecision, FailoverPhase, RegionCandidate, StepKind, StepStatus};
use serde_json::Value;

use crate::failover::World;
use crate::failover_shapes::{approve, python, Shaped};

pub(crate) const RESOURCES: &str = r#"
standby_order = ["us-west-2", "eu-west-1"]

[[failover.route53]]
zone_id = "{zone}"
name = "api.deep.test."
kind = "simple"
values = { "us-east-1" = ["192.0.2.60"], "us-west-2" = ["198.51.100.60"], "eu-west-1" = ["203.0.113.60"] }

[failover.regions.us-east-1]
autoscaling_groups = ["web"]
target_groups = ["web"]
db_instances = ["orders"]

[failover.regions.us-west-2]
autoscaling_groups = ["web"]
target_groups = ["web"]
promote_replicas = ["orders-usw2"]
db_clusters = ["sessions-usw2"]

[failover.regions.eu-west-1]
autoscaling_groups = ["web"]
target_groups = ["web"]
promote_replicas = ["orders-euw1"]
"#;

pub(crate) fn stop_instances(account: &Shaped, region: &str, count: u32) {
    python(&[
        "stop-instances",
        "--endpoint",
        &account.moto.url(),
        "--region",
        region,
        "--count",
        &count.to_string(),
    ]);
}

fn candidate<'a>(d: &'a FailoverDecision, region: &str) -> &'a RegionCandidate {
    d.plan
        .as_ref()
        .and_then(|p| p.candidates.iter().find(|c| c.region == region))
        .unwrap_or_else(|| panic!("no candidate {region} in {d:#?}"))
}

fn check<'a>(c: &'a RegionCandidate, resource: &str) -> &'a rg_proto::v1::ResourceCheck {
    c.checks
        .iter()
        .find(|k| k.resource == resource)
        .unwrap_or_else(|| panic!("no check {resource} in {c:#?}"))
}

async fn plan(w: &mut World, id: &str) -> FailoverDecision {
    w.request(id).await;
    w.phase(id, FailoverPhase::Planned).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_targets_pull_the_standby_down_and_a_region_without_healthy_targets_is_not_chosen(
) {
    let account = Shaped::seed("deep-health");
    let mut w = World::start().await;
    let failover = w.start_failover(account.config(RESOURCES));

    // All healthy: the standby order decides.
    let planned = plan(&mut w, "deep-1").await;
    assert_eq!(planned.to_region, "us-west-2", "{planned:#?}");
    let usw2 = candidate(&planned, "us-west-2");
    assert_eq!(check(usw2, "tg web").detail, "3/3 targets healthy");
    assert_eq!(
        check(usw2, "ec2 asg web").detail,
        "3/3 instances pass the status checks"
    );
    assert_eq!(
        check(usw2, "rds orders-usw2").detail,
        "available, read replica of arn:aws:rds:us-east-1:123456789012:db:orders"
    );
    assert_eq!(check(usw2, "rds cluster sessions-usw2").detail, "available");
    assert!(
        (usw2.health_score - usw2.dns_score).abs() < 1e-9,
        "{usw2:#?}"
    );

    // Two of us-west-2's three hosts stop: its targets turn unused and
    // their status checks fail; its score drops below the minimum.
    stop_instances(&account, "us-west-2", 2);
    let planned = plan(&mut w, "deep-2").await;
    assert_eq!(planned.to_region, "eu-west-1", "{planned:#?}");
    let usw2 = candidate(&planned, "us-west-2");
    assert!(!usw2.eligible);
    assert_eq!(
        check(usw2, "tg web").detail,
        "1/3 targets healthy (2 unused: Target.InvalidState)"
    );
    assert!((check(usw2, "ec2 asg web").factor - 1.0 / 3.0).abs() < 1e-9);
    assert!(
        usw2.dns_score >= 0.8 && usw2.health_score < 0.8,
        "DNS alone would pass: {usw2:#?}"
    );
    assert!(
        usw2.note
            .contains("pulled down by tg web: 1/3 targets healthy")
            && usw2.note.contains("is below the minimum"),
        "{}",
        usw2.note
    );
    let euw1 = candidate(&planned, "eu-west-1");
    assert!(euw1.checks.iter().all(|k| k.factor == 1.0), "{euw1:#?}");
    failover.stop().await;

    // Every host down, and no minimum score at all: a region whose
    // targets are all unhealthy is still not chosen.
    stop_instances(&account, "us-west-2", 3);
    let mut config = account.config(RESOURCES);
    config.min_target_score = 0.0;
    let _failover = w.start_failover(config);
    let planned = plan(&mut w, "deep-3").await;
    assert_eq!(planned.to_region, "eu-west-1");
    let usw2 = candidate(&planned, "us-west-2");
    assert!(!usw2.eligible);
    assert!(
        usw2.note.contains(
            "tg web: no healthy targets: 0/3 targets healthy (3 unused: Target.InvalidState)"
        ),
        "{}",
        usw2.note
    );
    assert!(
        crate::failover_shapes::verdict(&planned, "us-west-2").starts_with("not eligible"),
        "{planned:#?}"
    );
}

/// Whether RDS treats `db` as a standalone database (it may be stopped;
/// a read replica may not). moto keeps naming a promoted replica's source,
/// so the source field alone cannot tell.
fn standalone(account: &Shaped, region: &str, db: &str) -> bool {
    let out = python(&[
        "standalone",
        "--endpoint",
        &account.moto.url(),
        "--region",
        region,
        "--db",
        db,
    ]);
    out["standalone"].as_bool().expect("standalone: bool")
}

fn database(dump: &Value, region: &str, id: &str) -> Value {
    dump["databases"][region][id].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_step_promotes_the_replica_irreversibly_and_a_rollback_leaves_it_promoted() {
    let account = Shaped::seed("deep-health");
    let seeded = account.dump();
    let mut w = World::start().await;
    // Auto mode, and a verification that cannot pass (a resolver that
    // never answers): the failover rolls back after the promotion.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut config = account.config(RESOURCES);
    config.mode = rg_failover::Mode::Auto;
    config.verify = Some(rg_failover::config::VerifyDns {
        name: "api.deep.test".into(),
        resolver: silent.local_addr().unwrap(),
    });
    config.verify_timeout = Duration::from_secs(2);
    let _failover = w.start_failover(config);

    let planned = plan(&mut w, "db-1").await;
    assert_eq!(planned.to_region, "us-west-2");
    let steps = &planned.plan.as_ref().unwrap().steps;
    let kinds: Vec<StepKind> = steps.iter().map(|s| s.kind()).collect();
    assert_eq!(
        kinds,
        [
            StepKind::AutoscalingCapacity,
            StepKind::DatabasePromotion,
            StepKind::Route53Record,
            StepKind::Verify
        ],
        "capacity, then the database, then traffic"
    );
    let db_step = &steps[1];
    assert!(db_step.irreversible);
    assert!(steps.iter().filter(|s| s.irreversible).count() == 1);
    assert_eq!(db_step.resource, "rds:us-west-2/orders-usw2");
    let warnings = planned.plan.as_ref().unwrap().warnings.join("\n");
    assert!(
        warnings
            .contains("IRREVERSIBLE: step 2 promotes the read replica orders-usw2 in us-west-2"),
        "{warnings}"
    );
    assert!(
        warnings.contains("waits for an operator's approval"),
        "{warnings}"
    );

    // Auto mode does not run it by itself.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(account.dump(), seeded, "nothing changed without approval");

    assert!(!standalone(&account, "us-west-2", "orders-usw2"));
    let ended = approve(&mut w, &planned, FailoverPhase::RolledBack).await;
    let steps = &ended.plan.as_ref().unwrap().steps;
    assert_eq!(steps[0].status(), StepStatus::RolledBack);
    assert_eq!(steps[1].status(), StepStatus::Kept, "{:#?}", steps[1]);
    assert!(
        steps[1]
            .error
            .contains("orders-usw2 in us-west-2 stays a standalone database"),
        "{}",
        steps[1].error
    );
    assert_eq!(steps[2].status(), StepStatus::RolledBack);
    assert!(
        ended
            .error
            .contains("step 1 (rds:us-west-2/orders-usw2) kept"),
        "{}",
        ended.error
    );

    let after = account.dump();
    assert!(
        standalone(&account, "us-west-2", "orders-usw2"),
        "promoted, and left promoted"
    );
    assert!(
        !standalone(&account, "eu-west-1", "orders-euw1"),
        "the other replica untouched"
    );
    assert_eq!(
        database(&after, "eu-west-1", "orders-euw1"),
        database(&seeded, "eu-west-1", "orders-euw1")
    );
    assert_eq!(after["records"], seeded["records"], "traffic back");
    assert_eq!(after["asg"], seeded["asg"], "capacity back");
}

#[test]
fn check_config_aws_reads_the_target_groups_and_databases() {
    let account = Shaped::seed("deep-health");
    let dir = tempfile::tempdir().unwrap();
    let run = |resources: &str| {
        let path = dir.path().join("regionguard.toml");
        std::fs::write(&path, account.toml(resources)).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_regionguard"))
            .args(["check-config", "--aws", "--config"])
            .arg(&path)
            .env_remove("RG_CONFIG")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, said) = run(RESOURCES);
    assert_eq!(code, Some(0), "{said}");
    for line in [
        "ok   target group web in us-west-2: instance targets, 3/3 targets healthy; load balancers: web-lb active",
        "ok   rds orders-usw2 in us-west-2: available, read replica of arn:aws:rds:us-east-1:123456789012:db:orders",
        "ok   rds orders in us-east-1: available",
        "ok   rds cluster sessions-usw2 in us-west-2: available",
    ] {
        assert!(said.contains(line), "no {line:?} in:\n{said}");
    }
    // A target group and a database that do not exist, and a database
    // declared to promote that is not a replica.
    let wrong = RESOURCES
        .replacen(
            r#"target_groups = ["web"]"#,
            r#"target_groups = ["web", "no-such-tg"]"#,
            1,
        )
        .replacen(
            r#"db_instances = ["orders"]"#,
            r#"db_instances = ["no-such-db"]"#,
            1,
        )
        .replacen(
            r#"promote_replicas = ["orders-usw2"]"#,
            r#"promote_replicas = ["orders-usw2"]
db_instances = ["orders-euw1"]"#,
            1,
        )
        .replacen(
            r#"promote_replicas = ["orders-euw1"]"#,
            r#"promote_replicas = ["orders"]"#,
            1,
        );
    let (code, said) = run(&wrong);
    assert_eq!(code, Some(1), "{said}");
    for line in [
        "FAIL target group no-such-tg in us-east-1: no such target group",
        "FAIL rds no-such-db in us-east-1: no such DB instance",
        "FAIL rds orders in eu-west-1: no such DB instance",
    ] {
        assert!(said.contains(line), "no {line:?} in:\n{said}");
    }
}
