//! The failover manager against moto's server (the AWS API on loopback,
//! started by each test) with an account seeded by `aws_account.py`
//! (boto3), a real `nats-server -js`, the simulator and a prober per
//! region for the health scores.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use prost::Message;
use rg_failover::config::{
    AwsConfig, CloudFrontOrigin, CloudFrontOriginGroup, EcsService, RecordKind, RegionResources,
    Route53Record,
};
use rg_failover::Mode;
use rg_proto::v1::{FailoverDecision, FailoverPhase, FaultKind, StepStatus};
use rg_testkit::{init_logging, wait_until, Moto, NatsServer, Waited};
use serde_json::{json, Value};

use crate::harness::*;

const INTERVAL: Duration = Duration::from_millis(500);
const WAIT: Duration = Duration::from_secs(30);

/// moto with the seeded account.
pub(crate) struct Account {
    moto: Moto,
    zone_id: String,
    distribution_id: String,
}

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/aws_account.py")
}

impl Account {
    pub(crate) fn seed() -> Self {
        let moto = Moto::start();
        let out = std::process::Command::new("python3")
            .arg(script())
            .args(["seed", "--endpoint", &moto.url()])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "seeding moto failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ids: Value = serde_json::from_slice(&out.stdout).expect("seed prints JSON");
        Self {
            zone_id: ids["zone_id"].as_str().unwrap().to_owned(),
            distribution_id: ids["distribution_id"].as_str().unwrap().to_owned(),
            moto,
        }
    }

    /// What the failover changes, read back from moto with boto3.
    pub(crate) fn read(&self) -> Value {
        let out = std::process::Command::new("python3")
            .arg(script())
            .args([
                "read",
                "--endpoint",
                &self.moto.url(),
                "--zone-id",
                &self.zone_id,
            ])
            .args(["--distribution-id", &self.distribution_id])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "reading moto failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("read prints JSON")
    }

    /// The same account as `config`, as the TOML a user writes, for a
    /// `regionguard failover` process.
    fn toml(&self, metrics_port: u16) -> String {
        format!(
            r#"
[failover]
mode = "approve"
replica = "process"
verify_timeout = "20s"
verify_interval = "200ms"
health_window = "30s"
metrics_listen = "127.0.0.1:{metrics_port}"

[failover.aws]
endpoint_url = "{url}"
emulator_credentials = true
max_attempts = 2
insync_timeout = "10s"

[[failover.route53]]
zone_id = "{zone}"
name = "api.example.test."
kind = "failover"
values = {{ "us-east-1" = ["192.0.2.10"], "us-west-2" = ["198.51.100.10"] }}

[[failover.cloudfront]]
distribution_id = "{dist}"
origin_id = "app"
domains = {{ "us-east-1" = "use1.origin.example.test", "us-west-2" = "usw2.origin.example.test" }}

[[failover.cloudfront_origin_groups]]
distribution_id = "{dist}"
group_id = "app-group"
members = {{ "us-east-1" = "use1", "us-west-2" = "usw2" }}

[failover.regions.us-east-1]
autoscaling_groups = ["web"]
ecs_services = [{{ cluster = "app", service = "web" }}]

[failover.regions.us-west-2]
autoscaling_groups = ["web"]
ecs_services = [{{ cluster = "app", service = "web" }}]
"#,
            url = self.moto.url(),
            zone = self.zone_id,
            dist = self.distribution_id,
        )
    }

    pub(crate) fn config(&self, mode: Mode) -> rg_failover::Config {
        let by_region = |a: &str, b: &str| {
            BTreeMap::from([
                ("us-east-1".to_owned(), a.to_owned()),
                ("us-west-2".to_owned(), b.to_owned()),
            ])
        };
        let resources = RegionResources {
            autoscaling_groups: vec!["web".into()],
            ecs_services: vec![EcsService {
                cluster: "app".into(),
                service: "web".into(),
            }],
            ..Default::default()
        };
        rg_failover::Config {
            mode,
            replica: Some("test".into()),
            verify_timeout: Duration::from_secs(20),
            verify_interval: Duration::from_millis(200),
            health_window: Duration::from_secs(30),
            aws: AwsConfig {
                endpoint_url: Some(self.moto.url()),
                emulator_credentials: true,
                max_attempts: 2,
                insync_timeout: Duration::from_secs(10),
                ..Default::default()
            },
            route53: vec![Route53Record {
                zone_id: self.zone_id.clone(),
                name: "api.example.test.".into(),
                record_type: "A".into(),
                kind: RecordKind::Failover,
                ttl: None,
                weight: 100,
                set_identifiers: BTreeMap::new(),
                aliases: BTreeMap::new(),
                values: by_region("192.0.2.10", "198.51.100.10")
                    .into_iter()
                    .map(|(r, v)| (r, vec![v]))
                    .collect(),
            }],
            cloudfront: vec![CloudFrontOrigin {
                distribution_id: self.distribution_id.clone(),
                origin_id: "app".into(),
                domains: by_region("use1.origin.example.test", "usw2.origin.example.test"),
            }],
            cloudfront_origin_groups: vec![CloudFrontOriginGroup {
                distribution_id: self.distribution_id.clone(),
                group_id: "app-group".into(),
                members: by_region("use1", "usw2"),
            }],
            regions: BTreeMap::from([
                ("us-east-1".to_owned(), resources.clone()),
                ("us-west-2".to_owned(), resources),
            ]),
            ..Default::default()
        }
    }
}

/// NATS, the simulator and probers of three regions, a failover service,
/// and a feed of every failover phase.
pub(crate) struct World {
    server: NatsServer,
    nats: rg_bus::NatsConfig,
    js: async_nats::jetstream::Context,
    _simulator: Running,
    _probers: Vec<Running>,
    phases: Feed<FailoverDecision>,
}

impl World {
    pub(crate) async fn start() -> Self {
        init_logging();
        let server = NatsServer::start();
        let nats = nats_config(&server.url());
        let (simulator, probers) = start_regions(&nats, INTERVAL).await;
        let phases = Feed::subscribe(&server.url(), "rg.decisions.failover.>").await;
        let client = async_nats::connect(server.url()).await.unwrap();
        Self {
            js: async_nats::jetstream::new(client),
            server,
            nats,
            _simulator: simulator,
            _probers: probers,
            phases,
        }
    }

    pub(crate) fn start_failover(&self, config: rg_failover::Config) -> Running {
        let token = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(rg_failover::run(config, self.nats.clone(), token.clone()));
        Running::new(token, task)
    }

    pub(crate) async fn publish(&self, d: &FailoverDecision) {
        let subject = format!("rg.decisions.failover.{}", d.phase().token());
        self.js
            .publish(subject, d.encode_to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// The NATS settings of this world.
    pub(crate) fn nats(&self) -> &rg_bus::NatsConfig {
        &self.nats
    }

    /// Once the failover's consumer exists and a few probe rounds are
    /// stored, so every region has a health score.
    pub(crate) async fn wait_failover_ready(&self) {
        wait_for_consumer(&self.server.url(), "RG_DECISIONS", "failover").await;
        wait_rounds_stored(&self.server.url(), 3).await;
    }

    /// A request away from us-east-1, as the cascade service sends it,
    /// once the failover's consumer exists and health has been seen.
    pub(crate) async fn request(&self, id: &str) {
        self.wait_failover_ready().await;
        let mut d = FailoverDecision {
            id: id.into(),
            from_region: "us-east-1".into(),
            reason: "test: us-east-1 is critical".into(),
            actor: "cascade".into(),
            at_unix_ms: now_ms(),
            ..Default::default()
        };
        d.set_phase(FailoverPhase::Requested);
        self.publish(&d).await;
    }

    pub(crate) async fn phase(&mut self, id: &str, phase: FailoverPhase) -> FailoverDecision {
        self.phases
            .wait_for(phase.token(), WAIT, |_, d| d.id == id && d.phase() == phase)
            .await
            .1
    }
}

pub(crate) fn seeded_state() -> Value {
    json!({
        "asg": {"us-east-1": {"desired": 4, "max": 10, "min": 1}, "us-west-2": {"desired": 1, "max": 10, "min": 1}},
        "ecs": {"us-east-1": 3, "us-west-2": 1},
        "origin": {"app": "use1.origin.example.test"},
        "origin_group": ["use1", "usw2"],
        "records": {
            "primary": {"role": "PRIMARY", "values": ["192.0.2.10"]},
            "secondary": {"role": "SECONDARY", "values": ["198.51.100.10"]}
        }
    })
}

/// The seeded failover records after a failover to us-west-2: the roles
/// moved, each record keeping its values (and health check).
pub(crate) fn failed_over_records() -> Value {
    json!({
        "primary": {"role": "SECONDARY", "values": ["192.0.2.10"]},
        "secondary": {"role": "PRIMARY", "values": ["198.51.100.10"]}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_failover_moves_records_origin_and_capacity_to_the_target() {
    let account = Account::seed();
    assert_eq!(account.read(), seeded_state());
    let mut w = World::start().await;
    let _failover = w.start_failover(account.config(Mode::Approve));
    w.request("fo-1").await;

    let planned = w.phase("fo-1", FailoverPhase::Planned).await;
    assert_eq!(planned.to_region, "us-west-2", "{planned:#?}");
    let plan = planned.plan.clone().unwrap();
    // eu-west-1 is healthy but has no resources declared; us-east-1 is failing.
    let notes: Vec<_> = plan
        .candidates
        .iter()
        .map(|c| (c.region.as_str(), c.eligible))
        .collect();
    assert_eq!(notes[0], ("us-west-2", true), "{plan:#?}");
    // The target's capacity was checked through the APIs.
    assert!(
        plan.candidates[0]
            .note
            .contains("asg web 1/1 InService, ecs app/web 1/1 running"),
        "{}",
        plan.candidates[0].note
    );
    assert!(plan
        .candidates
        .iter()
        .any(|c| c.region == "us-east-1" && !c.eligible && c.note == "the failing region"));
    let resources: Vec<_> = plan.steps.iter().map(|s| s.resource.as_str()).collect();
    assert_eq!(
        resources,
        [
            "asg:us-west-2/web",
            "ecs:us-west-2/app/web",
            &format!("route53:{}/api.example.test./A", account.zone_id),
            &format!("cloudfront:{}/origin:app", account.distribution_id),
            &format!(
                "cloudfront:{}/origin-group:app-group",
                account.distribution_id
            ),
            "verify",
        ]
    );
    // Every change says what it replaces, before anything is done.
    assert!(
        plan.steps[0].before.contains(r#""desired":1"#)
            && plan.steps[0].after.contains(r#""desired":4"#),
        "{:?}",
        plan.steps[0]
    );
    assert!(plan.steps[2].needs_control_plane && plan.steps[3].needs_control_plane);
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("control planes are hosted in us-east-1")),
        "{:?}",
        plan.warnings
    );
    // Planned, not approved: nothing changed.
    assert_eq!(account.read(), seeded_state());

    let approval = planned.approval("cli:test", now_ms()).unwrap();
    w.publish(&approval).await;
    let done = w.phase("fo-1", FailoverPhase::Completed).await;
    let steps = done.plan.unwrap().steps;
    assert!(
        steps.iter().all(|s| s.status() == StepStatus::Done),
        "{steps:#?}"
    );

    let after = account.read();
    assert_eq!(after["records"], failed_over_records());
    assert_eq!(after["origin"], json!({"app": "usw2.origin.example.test"}));
    // The origin group tries us-west-2's origin first now.
    assert_eq!(after["origin_group"], json!(["usw2", "use1"]));
    assert_eq!(
        after["asg"]["us-west-2"],
        json!({"desired": 4, "max": 10, "min": 1})
    );
    assert_eq!(after["ecs"]["us-west-2"], json!(3));
    // The failing region is never scaled down.
    assert_eq!(
        after["asg"]["us-east-1"],
        seeded_state()["asg"]["us-east-1"]
    );
    assert_eq!(after["ecs"]["us-east-1"], json!(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_mode_publishes_the_plan_and_changes_nothing_even_when_approved() {
    let account = Account::seed();
    let mut w = World::start().await;
    let _failover = w.start_failover(account.config(Mode::Plan));
    w.request("fo-plan").await;
    let planned = w.phase("fo-plan", FailoverPhase::Planned).await;
    assert_eq!(planned.mode(), rg_proto::v1::FailoverMode::Plan);
    assert_eq!(planned.plan.as_ref().unwrap().steps.len(), 6);
    w.publish(&planned.approval("cli:test", now_ms()).unwrap())
        .await;
    w.phases.drain_for(Duration::from_secs(3)).await;
    assert!(
        !w.phases.seen.iter().any(|(_, d)| d.phase() == FailoverPhase::Step || d.phase() == FailoverPhase::Completed),
        "plan mode executed something: {:#?}",
        w.phases.seen
    );
    assert_eq!(account.read(), seeded_state());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_missing_in_the_zone_fails_the_plan_with_the_reason_before_any_change() {
    let account = Account::seed();
    let mut config = account.config(Mode::Auto);
    config.route53[0].name = "missing.example.test.".into();
    let mut w = World::start().await;
    let _failover = w.start_failover(config);
    w.request("fo-bad").await;
    let failed = w.phase("fo-bad", FailoverPhase::Failed).await;
    // The failed phase still says which candidates were considered.
    let considered: Vec<&str> = failed
        .plan
        .as_ref()
        .map(|p| p.candidates.iter().map(|c| c.region.as_str()).collect())
        .unwrap_or_default();
    assert!(
        considered.contains(&"us-west-2") && considered.contains(&"us-east-1"),
        "{considered:?}"
    );
    assert!(
        failed
            .error
            .contains("record missing.example.test. A in zone")
            && failed.error.contains("does not exist"),
        "{}",
        failed.error
    );
    assert_eq!(account.read(), seeded_state());
}

fn step_done(d: &FailoverDecision, prefix: &str) -> bool {
    d.phase() == FailoverPhase::Step
        && d.plan.as_ref().is_some_and(|p| {
            p.steps
                .get(d.step_index as usize)
                .is_some_and(|s| s.resource.starts_with(prefix) && s.status() == StepStatus::Done)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloudfront_failure_rolls_back_route53_and_capacity_exactly() {
    let account = Account::seed();
    // CloudFront answers from a second endpoint, which goes away mid-way.
    let mut cdn = Account::seed();
    let mut config = account.config(Mode::Auto);
    config
        .aws
        .endpoints
        .insert("cloudfront".into(), cdn.moto.url());
    config.cloudfront[0].distribution_id = cdn.distribution_id.clone();
    config.cloudfront_origin_groups[0].distribution_id = cdn.distribution_id.clone();
    let mut w = World::start().await;
    let _failover = w.start_failover(config);
    w.request("fo-cf").await;
    // The first change is made: CloudFront's endpoint stops answering.
    w.phases
        .wait_for("the first step done", WAIT, |_, d| {
            d.id == "fo-cf" && step_done(d, "asg:")
        })
        .await;
    cdn.moto.kill();

    let rolled = w.phase("fo-cf", FailoverPhase::RolledBack).await;
    assert!(rolled.error.contains("cloudfront"), "{}", rolled.error);
    // One line, the call and the cause: no SDK debug output.
    assert!(
        !rolled.error.contains('\n') && rolled.error.len() < 600,
        "{}",
        rolled.error
    );
    let steps = rolled.plan.unwrap().steps;
    let status: Vec<_> = steps
        .iter()
        .map(|s| (s.resource.split(':').next().unwrap().to_owned(), s.status()))
        .collect();
    assert_eq!(
        status,
        [
            ("asg".to_owned(), StepStatus::RolledBack),
            ("ecs".to_owned(), StepStatus::RolledBack),
            ("route53".to_owned(), StepStatus::RolledBack),
            ("cloudfront".to_owned(), StepStatus::Failed),
            ("cloudfront".to_owned(), StepStatus::Pending),
            ("verify".to_owned(), StepStatus::Pending),
        ],
        "{steps:#?}"
    );
    assert!(steps[3].error.contains("cloudfront:"), "{}", steps[3].error);
    // Route 53 and the capacities are exactly as before.
    let after = account.read();
    let seeded = seeded_state();
    for key in ["records", "asg", "ecs"] {
        assert_eq!(after[key], seeded[key], "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_killed_after_route53_is_rolled_back_by_the_next_start() {
    let account = Account::seed();
    let mut w = World::start().await;
    let first = w.start_failover(account.config(Mode::Auto));
    w.request("fo-kill").await;
    w.phases
        .wait_for("the Route 53 step done", WAIT, |_, d| {
            d.id == "fo-kill" && step_done(d, "route53:")
        })
        .await;
    first.abort().await;
    assert_eq!(
        account.read()["records"],
        failed_over_records(),
        "Route 53 was changed before the kill"
    );

    let mut config = account.config(Mode::Auto);
    config.replica = Some("test-2".into());
    let _second = w.start_failover(config);
    let rolled = w.phase("fo-kill", FailoverPhase::RolledBack).await;
    assert!(rolled.error.contains("stopped mid-way"), "{}", rolled.error);
    assert_eq!(rolled.actor, "failover:test-2");
    assert_eq!(account.read(), seeded_state());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_and_one_request_make_one_failover() {
    let account = Account::seed();
    let mut w = World::start().await;
    let replicas: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let mut c = account.config(Mode::Auto);
            c.replica = Some(name.into());
            w.start_failover(c)
        })
        .collect();
    w.request("fo-once").await;
    w.phase("fo-once", FailoverPhase::Completed).await;
    w.phases.drain_for(Duration::from_secs(2)).await;
    let mine: Vec<_> = w
        .phases
        .seen
        .iter()
        .filter(|(_, d)| d.id == "fo-once")
        .collect();
    let count = |p: FailoverPhase| mine.iter().filter(|(_, d)| d.phase() == p).count();
    assert_eq!(
        (
            count(FailoverPhase::Planned),
            count(FailoverPhase::Completed)
        ),
        (1, 1)
    );
    let actors: std::collections::BTreeSet<_> = mine
        .iter()
        .filter(|(_, d)| d.phase() != FailoverPhase::Requested)
        .map(|(_, d)| d.actor.as_str())
        .collect();
    assert_eq!(actors.len(), 1, "more than one replica acted: {actors:?}");
    drop(replicas);
}

/// Found by an unseen fault mix (a NATS server's disk full): the plan was
/// published before the journal write, which failed; the request came
/// again and was planned anew toward another region, so one failover had
/// conflicting plans live and the stream kept the first. Now a plan that
/// cannot be journaled is not published, and the request, retried, gets
/// exactly one plan once the journal takes writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_that_cannot_be_journaled_is_not_published_and_one_plan_follows() {
    let account = Account::seed();
    let mut w = World::start().await;
    let _failover = w.start_failover(account.config(Mode::Plan));
    w.wait_failover_ready().await;
    // The journal refuses writes: its bucket's stream takes no message
    // larger than 1 byte.
    let set_max = |size: i32| {
        let js = w.js.clone();
        async move {
            let mut stream = js.get_stream("KV_RG_FAILOVER").await.unwrap();
            let mut config = stream.info().await.unwrap().config.clone();
            config.max_message_size = size;
            js.update_stream(config).await.unwrap();
        }
    };
    set_max(1).await;
    w.request("fo-journal").await;
    w.phases.drain_for(Duration::from_secs(4)).await;
    let planned = |w: &World| {
        w.phases
            .seen
            .iter()
            .filter(|(_, d)| d.id == "fo-journal" && d.phase() == FailoverPhase::Planned)
            .count()
    };
    assert_eq!(
        planned(&w),
        0,
        "a plan was published that the journal does not hold"
    );
    set_max(-1).await;
    w.phase("fo-journal", FailoverPhase::Planned).await;
    w.phases.drain_for(Duration::from_secs(3)).await;
    assert_eq!(planned(&w), 1, "{:#?}", w.phases.seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_switches_flip_on_failover_and_an_approved_failback_restores_them() {
    let account = Account::seed();
    let mut w = World::start().await;
    let port = rg_testkit::free_port();
    let switches: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut config = account.config(Mode::Approve);
    config.switches.enabled = true;
    config.switches.listen = switches;
    config.failback_after = Duration::from_secs(2);
    let _failover = w.start_failover(config);
    let status = |region: &'static str| async move {
        rg_testkit::http::get(switches, &format!("/switch/{region}"))
            .await
            .map(|r| r.status)
    };
    rg_testkit::wait_until("the switches answer", WAIT, || async {
        match status("us-east-1").await {
            Some(code) => rg_testkit::Waited::Done(code),
            None => rg_testkit::Waited::NotYet("no answer".into()),
        }
    })
    .await;
    assert_eq!(
        (status("us-east-1").await, status("us-west-2").await),
        (Some(200), Some(200))
    );

    w.request("fo-sw").await;
    let planned = w.phase("fo-sw", FailoverPhase::Planned).await;
    let resources: Vec<_> = planned
        .plan
        .as_ref()
        .unwrap()
        .steps
        .iter()
        .map(|s| s.resource.clone())
        .collect();
    assert_eq!(
        resources[2], "switch:us-east-1",
        "the data-plane switch comes before the record edit: {resources:?}"
    );
    assert!(!planned.plan.as_ref().unwrap().steps[2].needs_control_plane);
    w.publish(&planned.approval("cli:test", now_ms()).unwrap())
        .await;
    w.phase("fo-sw", FailoverPhase::Completed).await;
    assert_eq!(
        (status("us-east-1").await, status("us-west-2").await),
        (Some(503), Some(200))
    );

    // us-east-1 stays healthy: a failback is proposed, and waits for approval.
    let failback = w.phase("fo-sw:failback", FailoverPhase::Planned).await;
    assert!(failback.failback);
    assert_eq!(
        (failback.from_region.as_str(), failback.to_region.as_str()),
        ("us-west-2", "us-east-1")
    );
    let back: Vec<_> = failback
        .plan
        .as_ref()
        .unwrap()
        .steps
        .iter()
        .map(|s| s.resource.split(':').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        back,
        ["cloudfront", "cloudfront", "route53", "switch"],
        "traffic steps undone, last first; capacity left"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        status("us-east-1").await,
        Some(503),
        "a failback waits for approval"
    );
    w.publish(&failback.approval("cli:test", now_ms()).unwrap())
        .await;
    w.phase("fo-sw:failback", FailoverPhase::Completed).await;
    assert_eq!(
        (status("us-east-1").await, status("us-west-2").await),
        (Some(200), Some(200))
    );
    let after = account.read();
    let seeded = seeded_state();
    assert_eq!(after["records"], seeded["records"]);
    assert_eq!(after["origin"], seeded["origin"]);
    assert_eq!(after["origin_group"], seeded["origin_group"]);
    assert_eq!(
        after["asg"]["us-west-2"]["desired"],
        json!(4),
        "capacity added by the failover stays"
    );
}

/// A failover in auto mode whose verification asks Debian's unbound,
/// serving `name` with `address`, for the application's name.
/// The failback gate: us-east-1 scores above the (lowered) bar with
/// DynamoDB failing, yet no failback is proposed until DynamoDB has been
/// healthy for the whole `failback_after`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_failback_is_proposed_while_dynamodb_still_fails_in_the_failed_region() {
    let account = Account::seed();
    let mut w = World::start().await;
    let mut config = account.config(Mode::Approve);
    config.failback_after = Duration::from_secs(2);
    // Only the gate can hold the failback back: the score passes.
    config.min_target_score = 0.3;
    let _failover = w.start_failover(config);
    let client = async_nats::connect(w.server.url()).await.unwrap();
    inject(&client, "us-east-1", "dynamodb", FaultKind::EmptyAnswer, 0).await;
    w.request("fo-gate").await;
    let planned = w.phase("fo-gate", FailoverPhase::Planned).await;
    w.publish(&planned.approval("cli:test", now_ms()).unwrap())
        .await;
    w.phase("fo-gate", FailoverPhase::Completed).await;

    // Four failback windows with DynamoDB still failing.
    w.phases.drain_for(Duration::from_secs(8)).await;
    let early: Vec<_> = w
        .phases
        .seen
        .iter()
        .filter(|(_, d)| d.id == "fo-gate:failback")
        .collect();
    assert!(
        early.is_empty(),
        "a failback while DynamoDB fails: {early:?}"
    );

    let cleared = now_ms();
    clear_all(&client).await;
    let proposed = w.phase("fo-gate:failback", FailoverPhase::Requested).await;
    assert!(
        proposed.at_unix_ms - cleared >= 2_000,
        "proposed {} ms after DynamoDB recovered; the gate needs 2 s",
        proposed.at_unix_ms - cleared
    );
}

async fn failover_verified_by_dns(id: &str, address: &str) -> (Account, FailoverDecision) {
    let account = Account::seed();
    let name = "api-test.amazonaws.com";
    let dns = rg_testkit::Unbound::start(&[(name, address)], &[]);
    let mut config = account.config(Mode::Auto);
    config.verify = Some(rg_failover::config::VerifyDns {
        name: name.into(),
        resolver: dns.addr(),
    });
    config.verify_timeout = Duration::from_secs(3);
    let mut w = World::start().await;
    let _failover = w.start_failover(config);
    w.request(id).await;
    let ended = w
        .phases
        .wait_for("the end", WAIT, |_, d| {
            d.id == id
                && matches!(
                    d.phase(),
                    FailoverPhase::Completed | FailoverPhase::RolledBack | FailoverPhase::Failed
                )
        })
        .await
        .1;
    drop(dns);
    (account, ended)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_asks_dns_for_the_target_regions_values() {
    let (_account, ended) = failover_verified_by_dns("fo-dns", "198.51.100.10").await;
    assert_eq!(ended.phase(), FailoverPhase::Completed, "{}", ended.error);
    let verify = ended.plan.unwrap().steps.pop().unwrap();
    assert!(
        verify.after.contains(r#""expected":["198.51.100.10"]"#),
        "{}",
        verify.after
    );
    assert_eq!(verify.status(), StepStatus::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_still_resolving_to_the_failed_region_rolls_the_failover_back() {
    let (account, ended) = failover_verified_by_dns("fo-dns-stale", "192.0.2.10").await;
    assert_eq!(ended.phase(), FailoverPhase::RolledBack, "{ended:#?}");
    assert!(
        ended
            .error
            .contains(r#"api-test.amazonaws.com resolves to ["192.0.2.10"]"#)
            && ended.error.contains(r#"expected ["198.51.100.10"]"#),
        "{}",
        ended.error
    );
    assert_eq!(account.read(), seeded_state());
}

/// Runs `regionguard <args>` against the test's NATS; its stdout.
fn cli(nats: &rg_bus::NatsConfig, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_regionguard"))
        .args(args)
        .args(["--nats", &nats.servers[0]])
        .env_remove("RG_CONFIG")
        .env("USER", "tester")
        .output()
        .expect("regionguard runs");
    assert!(
        out.status.success(),
        "regionguard {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_requests_and_approves_a_failover_from_the_cli() {
    let account = Account::seed();
    let mut w = World::start().await;
    // The failover manager as a user runs it: a process with a config file.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("regionguard.toml");
    let metrics_port = rg_testkit::free_port();
    std::fs::write(&config, account.toml(metrics_port)).unwrap();
    let _failover = tokio::process::Command::new(env!("CARGO_BIN_EXE_regionguard"))
        .args(["failover", "--config"])
        .arg(&config)
        .args(["--nats", &w.nats.servers[0]])
        .env_remove("RG_CONFIG")
        .env("RG_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    w.request("fo-warmup").await; // waits for the consumer and for health
    w.phase("fo-warmup", FailoverPhase::Planned).await;

    // The warm-up plan turned down: recorded, and an approval of it that
    // slips past every check (published raw, its own message id) is
    // ignored: the failovers completed below are only the two approved.
    let said = cli(
        &w.nats,
        &[
            "failover",
            "reject",
            "fo-warmup",
            "--reason",
            "only a drill",
        ],
    );
    assert!(
        said.contains("rejected failover fo-warmup (us-east-1 -> us-west-2) as cli:tester (rejected by cli:tester: only a drill)"),
        "{said}"
    );
    let rejected = w.phase("fo-warmup", FailoverPhase::Rejected).await;
    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], metrics_port));
    wait_until("the rejection is journaled", WAIT, || async move {
        let m = rg_testkit::http::get(metrics_addr, "/metrics").await;
        let recorded = m.is_some_and(|m| {
            m.body
                .contains(r#"regionguard_failover_rejections_total{outcome="recorded"} 1"#)
        });
        if recorded {
            Waited::Done(())
        } else {
            Waited::NotYet("no rejection recorded".to_owned())
        }
    })
    .await;
    let mut sneaky = rejected.clone();
    sneaky.set_phase(FailoverPhase::Approved);
    sneaky.actor = "cli:mallory".into();
    w.publish(&sneaky).await;
    // Approving it the proper way: its latest phase is now that raw
    // approval (approvable again), but the answer's message id is taken
    // by the rejection, and the command says so.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_regionguard"))
        .args([
            "failover",
            "approve",
            "fo-warmup",
            "--nats",
            &w.nats.servers[0],
        ])
        .env_remove("RG_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("failover fo-warmup was already rejected by cli:tester"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let said = cli(
        &w.nats,
        &[
            "failover",
            "request",
            "--from",
            "us-east-1",
            "--reason",
            "drill",
        ],
    );
    let id = said.split_whitespace().nth(2).expect("the id").to_owned();
    assert!(
        said.starts_with("requested failover manual-us-east-1-"),
        "{said}"
    );
    // The command waited for the plan and said what it is.
    assert!(
        said.contains("planned: us-east-1 -> us-west-2")
            && said.contains(&format!("approve with: regionguard failover approve {id}")),
        "{said}"
    );
    let planned = w.phase(&id, FailoverPhase::Planned).await;
    assert_eq!(
        (planned.reason.as_str(), planned.to_region.as_str()),
        ("drill", "us-west-2")
    );

    let said = cli(&w.nats, &["failover", "approve", &id]);
    assert!(
        said.contains(&format!(
            "approved failover {id} (us-east-1 -> us-west-2) as cli:tester"
        )),
        "{said}"
    );
    let done = w.phase(&id, FailoverPhase::Completed).await;
    assert!(done.aws_calls >= 10, "{}", done.aws_calls);
    assert_eq!(
        account.read()["origin"],
        json!({"app": "usw2.origin.example.test"})
    );
    // Approving it again is refused with the reason.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_regionguard"))
        .args(["failover", "approve", &id, "--nats", &w.nats.servers[0]])
        .env_remove("RG_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is completed, not planned"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A request the service refuses (the cooldown) exits 3 with the reason.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_regionguard"))
        .args([
            "failover",
            "request",
            "--from",
            "us-east-1",
            "--nats",
            &w.nats.servers[0],
        ])
        .env_remove("RG_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("refused:") && stderr.contains("cooldown"),
        "{stderr}"
    );

    // The failback by hand: planned, approved, every record back.
    let said = cli(&w.nats, &["failover", "failback", &id]);
    assert!(
        said.contains(&format!(
            "requested failback {id}:failback away from us-west-2"
        )) && said.contains("planned: us-west-2 -> us-east-1"),
        "{said}"
    );
    cli(&w.nats, &["failover", "approve", &format!("{id}:failback")]);
    w.phase(&format!("{id}:failback"), FailoverPhase::Completed)
        .await;
    assert_eq!(account.read()["records"], seeded_state()["records"]);

    // What it did is on its metrics.
    let metrics = rg_testkit::http::get(
        std::net::SocketAddr::from(([127, 0, 0, 1], metrics_port)),
        "/metrics",
    )
    .await
    .unwrap()
    .body;
    for line in [
        r#"regionguard_failover_phases_total{phase="completed"} 2"#,
        r#"regionguard_failover_phases_total{phase="planned"} 3"#,
        r#"regionguard_failover_phases_total{phase="failed"} 1"#,
        r#"regionguard_failover_steps_total{kind="route53_record",outcome="done"} 2"#,
        r#"regionguard_failover_steps_total{kind="cloudfront_origin_group",outcome="done"} 2"#,
        r#"regionguard_failover_steps_total{kind="verify",outcome="done"} 1"#,
    ] {
        assert!(metrics.contains(line), "/metrics lacks {line}:\n{metrics}");
    }
    let calls: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("regionguard_failover_aws_calls_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        calls >= u64::from(done.aws_calls),
        "{calls} < {}",
        done.aws_calls
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_with_an_aws_endpoint_fails_over_a_seeded_account_once_approved_from_the_cli() {
    init_logging();
    let account = Account::seed();
    let resources = account.toml(rg_testkit::free_port());
    let (mut up, ports) = Up::start(
        &["us-east-1", "us-west-2", "eu-west-1"],
        &resources,
        &["--aws-endpoint", &account.moto.url()],
    )
    .await;
    let said = format!(
        "[7/8] failover: approve mode, plans on rg.decisions.failover.planned, AWS at {}",
        account.moto.url()
    );
    assert!(up.printed.contains(&said), "{}", up.printed);
    let client = async_nats::connect(format!("nats://127.0.0.1:{}", ports.nats))
        .await
        .unwrap();
    let mut phases = client.subscribe("rg.decisions.failover.>").await.unwrap();
    client.flush().await.unwrap();
    // Every region has a health score first.
    tokio::time::sleep(Duration::from_secs(4)).await;
    up.cli(&[
        "fault",
        "inject",
        "--region",
        "us-east-1",
        "--service",
        "dynamodb",
        "--kind",
        "empty-answer",
    ]);

    let planned = next_phase(&mut phases, FailoverPhase::Planned).await;
    assert_eq!(planned.to_region, "us-west-2", "{planned:#?}");
    assert_eq!(
        account.read(),
        seeded_state(),
        "approve mode waits for approval"
    );

    let said = up.cli(&["failover", "approve", &planned.id]);
    assert!(said.contains("approved failover"), "{said}");
    next_phase(&mut phases, FailoverPhase::Completed).await;
    let after = account.read();
    assert_eq!(after["records"], failed_over_records());
    assert_eq!(after["origin"], json!({"app": "usw2.origin.example.test"}));
    assert_eq!(after["origin_group"], json!(["usw2", "use1"]));

    let (status, rest) = up.stop().await;
    assert!(status.success(), "{status}: {rest}");
    assert!(rest.contains("stopped failover (exit status: 0)"), "{rest}");
}

/// The next decision of phase `want` on `phases` (a failed one fails the
/// test with its reason).
async fn next_phase(phases: &mut async_nats::Subscriber, want: FailoverPhase) -> FailoverDecision {
    loop {
        let m = tokio::time::timeout(WAIT, futures::StreamExt::next(phases))
            .await
            .unwrap_or_else(|_| panic!("no {want:?} phase within {WAIT:?}"))
            .expect("subscription open");
        let d = FailoverDecision::decode(m.payload.as_ref()).expect("a FailoverDecision");
        if d.phase() == want {
            return d;
        }
        assert_ne!(d.phase(), FailoverPhase::Failed, "{d:#?}");
    }
}
