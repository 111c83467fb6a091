//! Failover on AWS accounts of the shapes AWS documents (seeded in moto by
//! `aws_shapes.py`): alias failover records to regional load balancers
//! with Evaluate Target Health and health checks; weighted and latency
//! records whose set identifiers are not region names; CloudFront path
//! behaviours and an origin group; warm and pilot-light standbys. For each,
//! what Route 53 would answer is judged by an oracle written from AWS's
//! answer rules (`route53_oracle`) with every health check of the failed
//! region failing; a rollback and a failback restore the account exactly.

use std::path::Path;
use std::time::Duration;

use rg_proto::v1::{FailoverDecision, FailoverPhase};
use rg_testkit::Moto;
use serde_json::{json, Value};

use crate::failover::World;
use crate::harness::*;
use crate::route53_oracle::{self, answers};

const CLIENTS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];

/// A moto account of one shape.
pub(crate) struct Shaped {
    pub(crate) moto: Moto,
    ids: Value,
}

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/aws_shapes.py")
}

pub(crate) fn python(args: &[&str]) -> Value {
    let out = std::process::Command::new("python3")
        .arg(script())
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "aws_shapes.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("aws_shapes.py prints JSON")
}

impl Shaped {
    pub(crate) fn seed(shape: &str) -> Self {
        let moto = Moto::start();
        let ids = python(&["seed", "--endpoint", &moto.url(), "--shape", shape]);
        Self { moto, ids }
    }

    pub(crate) fn id(&self, key: &str) -> String {
        self.ids[key].as_str().unwrap_or_default().to_owned()
    }

    /// Every record set, health check, behaviour, origin, origin group and
    /// region's capacity, read back with boto3.
    pub(crate) fn dump(&self) -> Value {
        let url = self.moto.url();
        let zone = self.id("zone_id");
        let dist = self.id("distribution_id");
        let mut args = vec!["dump", "--endpoint", &url, "--zone-id", &zone];
        if !dist.is_empty() {
            args.extend(["--distribution-id", &dist]);
        }
        python(&args)
    }

    /// The `[failover]` section a user writes for this account.
    pub(crate) fn config(&self, resources: &str) -> rg_failover::Config {
        let text = self.toml(resources);
        #[derive(serde::Deserialize)]
        struct File {
            failover: rg_failover::Config,
        }
        toml::from_str::<File>(&text)
            .unwrap_or_else(|e| panic!("the test's config: {e}\n{text}"))
            .failover
    }

    /// The `[failover]` section as TOML.
    pub(crate) fn toml(&self, resources: &str) -> String {
        format!(
            r#"
[failover]
mode = "approve"
replica = "shapes"
cooldown = "0s"
verify_timeout = "20s"
verify_interval = "200ms"
health_window = "30s"
failback_after = "0s"
{resources}

[failover.aws]
endpoint_url = "{url}"
emulator_credentials = true
max_attempts = 2
insync_timeout = "10s"
"#,
            url = self.moto.url(),
        )
        .replace("{zone}", &self.id("zone_id"))
        .replace("{dist}", &self.id("distribution_id"))
    }
}

/// Route 53's answers for `name` `kind` to a client in `client`, with
/// every health check and load balancer of `failed` failing.
fn route53_answers(
    dump: &Value,
    name: &str,
    kind: &str,
    failed: &str,
    client: &str,
) -> Vec<String> {
    let world = route53_oracle::World {
        checks: &dump["health_checks"],
        failed,
    };
    answers(&dump["records"], name, kind, &world, client)
}

/// The failed region's users get `target`'s answer and nobody gets
/// `failed`'s, for the name.
fn assert_routed(dump: &Value, name: &str, failed: &str, failed_answer: &str, target_answer: &str) {
    assert_eq!(
        route53_answers(dump, name, "A", failed, failed),
        [target_answer],
        "{name}: the failed region's users\n{}",
        dump["records"]
    );
    for client in CLIENTS {
        let got = route53_answers(dump, name, "A", failed, client);
        assert!(
            !got.iter().any(|a| a == failed_answer),
            "{name}: a client in {client} still gets {failed_answer}: {got:?}"
        );
    }
}

/// Approves `planned` and waits for the end it reaches.
pub(crate) async fn approve(
    w: &mut World,
    planned: &FailoverDecision,
    end: FailoverPhase,
) -> FailoverDecision {
    w.publish(&planned.approval("cli:test", now_ms()).unwrap())
        .await;
    w.phase(&planned.id, end).await
}

/// Requests the failback of failover `id` (us-west-2's traffic back to
/// `back_to`), approves it and waits for it to complete.
async fn fail_back(w: &mut World, id: &str, from: &str, back_to: &str) {
    let failback_id = format!("{id}:failback");
    let mut request = FailoverDecision {
        id: failback_id.clone(),
        from_region: from.into(),
        to_region: back_to.into(),
        reason: "test: fail back".into(),
        failback: true,
        at_unix_ms: now_ms(),
        ..Default::default()
    };
    request.set_phase(FailoverPhase::Requested);
    w.publish(&request).await;
    let planned = w.phase(&failback_id, FailoverPhase::Planned).await;
    approve(w, &planned, FailoverPhase::Completed).await;
}

pub(crate) fn verdict<'a>(d: &'a FailoverDecision, region: &str) -> &'a str {
    d.plan
        .as_ref()
        .and_then(|p| p.candidates.iter().find(|c| c.region == region))
        .map_or("", |c| c.verdict.as_str())
}

/// What Route 53 answers after the old failover, which swapped values
/// and left each record's health check with its role: the PRIMARY holds
/// the target's values and the failed region's check; that check failing,
/// Route 53 answers the SECONDARY, which now holds the failed region's
/// values. The oracle must see that; roles moved with their checks give
/// the target.
#[test]
fn values_swapped_with_health_checks_left_in_place_send_traffic_back_to_the_failed_region() {
    let set = |id: &str, role: &str, value: &str, check: &str| {
        json!({"Name": "login.shop.test.", "Type": "A", "SetIdentifier": id, "Failover": role,
               "TTL": 30, "HealthCheckId": check, "ResourceRecords": [{"Value": value}]})
    };
    let checks = json!({"hc-1": "login-us-east-1.shop.test", "hc-2": "login-us-west-2.shop.test"});
    let world = route53_oracle::World {
        checks: &checks,
        failed: "us-east-1",
    };
    let ask = |records: Value| answers(&records, "login.shop.test.", "A", &world, "us-east-1");
    let (use1, usw2) = ("192.0.2.20", "198.51.100.20");
    let seeded = json!([
        set("blue", "PRIMARY", use1, "hc-1"),
        set("green", "SECONDARY", usw2, "hc-2")
    ]);
    assert_eq!(
        ask(seeded),
        [usw2],
        "Route 53's own failover answers us-west-2"
    );
    let values_swapped = json!([
        set("blue", "PRIMARY", usw2, "hc-1"),
        set("green", "SECONDARY", use1, "hc-2")
    ]);
    assert_eq!(ask(values_swapped), [use1], "back to the failed region");
    let roles_moved = json!([
        set("blue", "SECONDARY", use1, "hc-1"),
        set("green", "PRIMARY", usw2, "hc-2")
    ]);
    assert_eq!(ask(roles_moved), [usw2]);
}

/// The alias account's resources, as a user declares them.
const SHOP_RESOURCES: &str = r#"
# Discovered: each record's alias target names its region.
[[failover.route53]]
zone_id = "{zone}"
name = "api.shop.test."
kind = "failover"

# Declared: set identifiers that name no region.
[[failover.route53]]
zone_id = "{zone}"
name = "login.shop.test."
kind = "failover"
ttl = 20
set_identifiers = { "us-east-1" = "blue", "us-west-2" = "green" }

[failover.regions.us-east-1]
autoscaling_groups = ["app-asg"]
ecs_services = [{ cluster = "prod", service = "api" }]

[failover.regions.us-west-2]
autoscaling_groups = ["app-asg"]
ecs_services = [{ cluster = "prod", service = "api" }]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_failover_records_with_health_checks_route_to_the_target_and_fail_back_exactly() {
    let account = Shaped::seed("alias-failover");
    let seeded = account.dump();
    let mut w = World::start().await;
    let config = account.config(SHOP_RESOURCES);
    let _failover = w.start_failover(config);
    w.request("shop-1").await;
    let planned = w.phase("shop-1", FailoverPhase::Planned).await;
    assert_eq!(planned.to_region, "us-west-2");
    assert!(
        verdict(&planned, "eu-west-1").contains("no resources are declared"),
        "{planned:?}"
    );
    let done = approve(&mut w, &planned, FailoverPhase::Completed).await;
    assert!(done.error.is_empty(), "{}", done.error);

    let after = account.dump();
    let elb = |r: &str| format!("alias dualstack.api-lb-1234.{r}.elb.amazonaws.com.");
    assert_routed(
        &after,
        "api.shop.test.",
        "us-east-1",
        &elb("us-east-1"),
        &elb("us-west-2"),
    );
    assert_routed(
        &after,
        "login.shop.test.",
        "us-east-1",
        "192.0.2.20",
        "198.51.100.20",
    );
    // With every check passing, too: the roles moved, not only the checks.
    assert_eq!(
        route53_answers(&after, "api.shop.test.", "A", "nowhere", "us-east-1"),
        [elb("us-west-2")]
    );
    // What no failover declares is untouched.
    for name in ["www.shop.test.", "cdn.shop.test."] {
        let pick = |d: &Value| {
            d["records"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["Name"] == name)
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(pick(&after), pick(&seeded), "{name}");
    }
    assert_eq!(after["health_checks"], seeded["health_checks"]);
    // Capacity: the warm standby scaled to what us-east-1 runs.
    assert_eq!(
        after["asg"]["us-west-2"],
        json!({"min": 2, "desired": 4, "max": 12})
    );
    assert_eq!(after["ecs"]["us-west-2"], 3);

    fail_back(&mut w, "shop-1", "us-west-2", "us-east-1").await;
    let back = account.dump();
    assert_eq!(
        back["records"], seeded["records"],
        "records restored exactly"
    );
    assert_eq!(back["health_checks"], seeded["health_checks"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_and_latency_records_follow_the_standby_order_and_roll_back_exactly() {
    let account = Shaped::seed("weighted-latency");
    let seeded = account.dump();
    let mut w = World::start().await;
    let resources = r#"
standby_order = ["eu-west-1", "us-west-2"]

# Set identifiers app-a/app-b/app-c: told apart by their values.
[[failover.route53]]
zone_id = "{zone}"
name = "app.media.test."
kind = "weighted"
values = { "us-east-1" = ["192.0.2.30"], "us-west-2" = ["198.51.100.30"], "eu-west-1" = ["203.0.113.30"] }

# lat-1/lat-2/lat-3: each latency record names its region.
[[failover.route53]]
zone_id = "{zone}"
name = "edge.media.test."
kind = "latency"

[failover.regions.us-east-1]
autoscaling_groups = ["app-asg"]
ecs_services = [{ cluster = "prod", service = "api" }]
[failover.regions.us-west-2]
autoscaling_groups = ["app-asg"]
ecs_services = [{ cluster = "prod", service = "api" }]
[failover.regions.eu-west-1]
autoscaling_groups = ["app-asg"]
ecs_services = [{ cluster = "prod", service = "api" }]
"#;
    // First with a verification that cannot pass (a resolver that never
    // answers): every step is rolled back.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut config = account.config(resources);
    config.verify = Some(rg_failover::config::VerifyDns {
        name: "app.media.test".into(),
        resolver: silent.local_addr().unwrap(),
    });
    config.verify_timeout = Duration::from_secs(2);
    let failover = w.start_failover(config);
    w.request("media-1").await;
    let planned = w.phase("media-1", FailoverPhase::Planned).await;
    // eu-west-1 is a pilot light: without the standby order, the warm
    // us-west-2 would be chosen.
    assert_eq!(planned.to_region, "eu-west-1", "first in standby_order");
    assert_eq!(
        verdict(&planned, "us-west-2"),
        "eu-west-1 comes before it in standby_order"
    );
    approve(&mut w, &planned, FailoverPhase::RolledBack).await;
    assert_eq!(account.dump(), seeded, "a rollback leaves 0 differences");
    failover.stop().await;

    let _failover = w.start_failover(account.config(resources));
    w.request("media-2").await;
    let planned = w.phase("media-2", FailoverPhase::Planned).await;
    assert_eq!(planned.to_region, "eu-west-1");
    approve(&mut w, &planned, FailoverPhase::Completed).await;
    let after = account.dump();
    for client in CLIENTS {
        assert_eq!(
            route53_answers(&after, "app.media.test.", "A", "us-east-1", client),
            ["203.0.113.30"],
            "weighted: every client"
        );
    }
    assert_routed(
        &after,
        "edge.media.test.",
        "us-east-1",
        "192.0.2.40",
        "203.0.113.40",
    );
    // us-west-2's users keep their own region.
    assert_eq!(
        route53_answers(&after, "edge.media.test.", "A", "us-east-1", "us-west-2"),
        ["198.51.100.40"]
    );

    fail_back(&mut w, "media-2", "eu-west-1", "us-east-1").await;
    assert_eq!(account.dump()["records"], seeded["records"]);
}

/// The CloudFront account's resources, as a user declares them.
pub(crate) const CDN_RESOURCES: &str = r#"
standby_order = ["eu-west-1", "us-west-2"]

[[failover.route53]]
zone_id = "{zone}"
name = "origin.video.test."
kind = "simple"
values = { "us-east-1" = ["192.0.2.50"], "us-west-2" = ["198.51.100.50"], "eu-west-1" = ["203.0.113.50"] }

[[failover.cloudfront_behaviors]]
distribution_id = "{dist}"
targets = { "us-east-1" = "origin-us-east-1", "us-west-2" = "origin-us-west-2", "eu-west-1" = "origin-eu-west-1" }

[[failover.cloudfront_behaviors]]
distribution_id = "{dist}"
path_pattern = "/static/*"
targets = { "us-east-1" = "origin-us-east-1", "us-west-2" = "origin-us-west-2", "eu-west-1" = "origin-eu-west-1" }

# /api/* targets this group; it has no eu-west-1 member.
[[failover.cloudfront_origin_groups]]
distribution_id = "{dist}"
group_id = "og-api"
members = { "us-east-1" = "api-us-east-1", "us-west-2" = "api-us-west-2" }

[failover.regions.us-east-1]
autoscaling_groups = ["app-asg"]
ecs_services = [{ cluster = "prod", service = "api" }]
[failover.regions.us-west-2]
autoscaling_groups = ["app-asg"]
ecs_services = [{ cluster = "prod", service = "api" }]
[failover.regions.eu-west-1]
autoscaling_groups = ["app-asg"]
ecs_services = [{ cluster = "prod", service = "api" }]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudfront_behaviours_move_to_the_warm_standby_when_the_first_standby_is_not_covered() {
    let account = Shaped::seed("cdn-standbys");
    let seeded = account.dump();
    let mut w = World::start().await;
    let config = account.config(CDN_RESOURCES);
    let _failover = w.start_failover(config);
    w.request("video-1").await;
    let planned = w.phase("video-1", FailoverPhase::Planned).await;
    assert_eq!(planned.to_region, "us-west-2");
    let why = verdict(&planned, "eu-west-1");
    assert!(
        why.starts_with("not eligible") && why.contains("og-api") && why.contains("no member"),
        "{why}"
    );
    assert!(
        verdict(&planned, "us-west-2").contains("a warm standby (2 running)"),
        "{}",
        verdict(&planned, "us-west-2")
    );
    approve(&mut w, &planned, FailoverPhase::Completed).await;

    let after = account.dump();
    // Every behaviour serves us-west-2: its origin, or its origin group's
    // primary, is us-west-2's.
    for (pattern, target) in after["behaviors"].as_object().unwrap() {
        let target = target.as_str().unwrap();
        let origin = match after["origin_groups"][target][0].as_str() {
            Some(primary) => primary,
            None => target,
        };
        let domain = after["origins"][origin].as_str().unwrap();
        assert!(
            domain.contains(".us-west-2."),
            "behaviour {pattern} serves {domain}"
        );
    }
    assert_eq!(
        route53_answers(&after, "origin.video.test.", "A", "us-east-1", "us-east-1"),
        ["198.51.100.50"]
    );
    assert_eq!(
        after["asg"]["us-west-2"],
        json!({"min": 2, "desired": 4, "max": 12})
    );
    assert_eq!(after["ecs"]["us-west-2"], 3);
    assert_eq!(after["asg"]["eu-west-1"], seeded["asg"]["eu-west-1"]);

    fail_back(&mut w, "video-1", "us-west-2", "us-east-1").await;
    let back = account.dump();
    for key in ["records", "behaviors", "origins", "origin_groups"] {
        assert_eq!(back[key], seeded[key], "{key} restored exactly");
    }
}

/// `check-config --aws` finds, before any outage, what a failover would
/// refuse: here, that eu-west-1 is not covered by the origin group, and a
/// distribution that does not exist (one line: the call, AWS's error code
/// and message, the request id).
#[test]
fn check_config_aws_names_what_a_failover_would_refuse() {
    let account = Shaped::seed("cdn-standbys");
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
    let (code, said) = run(CDN_RESOURCES);
    assert_eq!(code, Some(1), "{said}");
    for line in [
        "ok   cloudfront behaviour /static/* of",
        "ok   cloudfront origin group og-api of",
        "ok   us-east-1 -> us-west-2: a plan of",
        "FAIL us-east-1 -> eu-west-1: eu-west-1 is not covered: CloudFront origin group og-api",
        "ok   asg app-asg in eu-west-1: min 0, desired 0, max 12",
    ] {
        assert!(said.contains(line), "no {line:?} in:\n{said}");
    }

    // A kind that is not the records' routing policy is named.
    let wrong_kind = CDN_RESOURCES.replacen(r#"kind = "simple""#, r#"kind = "weighted""#, 1);
    let (code, said) = run(&wrong_kind);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("record origin.video.test. A in zone")
            && said.contains("uses simple routing, not weighted: declare kind = \"simple\""),
        "{said}"
    );

    let missing = CDN_RESOURCES.replacen("{dist}", "E0NOSUCHDIST", 1);
    let (code, said) = run(&missing);
    assert_eq!(code, Some(1), "{said}");
    let line = said
        .lines()
        .find(|l| l.contains("NoSuchDistribution"))
        .unwrap_or_else(|| panic!("no NoSuchDistribution in:\n{said}"));
    assert!(
        line.contains("cloudfront:GetDistributionConfig: NoSuchDistribution: ")
            && line.contains("(request id "),
        "{line}"
    );
    // The rest is still checked.
    assert!(
        said.contains("ok   asg app-asg in us-west-2")
            && said.contains("ok   route53 simple origin.video.test."),
        "{said}"
    );
}

/// A record edited between the plan and its approval: nothing is executed,
/// and the refusal names the record with the state the plan recorded and
/// the state now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_edited_after_the_plan_is_named_with_both_states_and_nothing_changes() {
    let account = Shaped::seed("alias-failover");
    let mut w = World::start().await;
    let _failover = w.start_failover(account.config(SHOP_RESOURCES));
    w.request("shop-edit").await;
    let planned = w.phase("shop-edit", FailoverPhase::Planned).await;
    let url = account.moto.url();
    let zone = account.id("zone_id");
    python(&[
        "set-ttl",
        "--endpoint",
        &url,
        "--zone-id",
        &zone,
        "--name",
        "login.shop.test.",
        "--set-id",
        "blue",
        "--ttl",
        "45",
    ]);
    let edited = account.dump();
    let failed = approve(&mut w, &planned, FailoverPhase::Failed).await;
    let e = &failed.error;
    assert!(
        e.starts_with(&format!(
            "not executed: route53:{zone}/login.shop.test./A changed since the plan was made: the plan replaces "
        )) && e.contains(r#""ttl":30"#)
            && e.contains(r#""ttl":45"#),
        "{e}"
    );
    assert_eq!(account.dump(), edited, "nothing executed");
}
