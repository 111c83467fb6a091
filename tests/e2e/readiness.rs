//! Readiness: whether a failover away from each declared region would
//! work, checked against moto accounts (`aws_shapes.py`) into which one
//! kind of drift at a time is seeded and then fixed. Each test asserts the
//! exact problems the drift adds (so it fails if that check is removed),
//! the readiness alert it opens, and that fixing it clears both. The
//! account itself is never changed by a check.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt as _;
use prost::Message as _;
use rg_proto::v1::{Alert, AlertState, Readiness, ReadinessRun};

use crate::deep_health::RESOURCES;
use crate::failover::World;
use crate::failover_shapes::{python, Shaped, CDN_RESOURCES};

/// Problems by region.
type Problems = BTreeMap<String, BTreeSet<String>>;

/// A world whose failover service checks readiness on demand only.
async fn start(account: &Shaped, resources: &str) -> (World, crate::harness::Running) {
    let w = World::start().await;
    let mut config = account.config(resources);
    config.readiness_interval = Duration::ZERO;
    let failover = w.start_failover(config);
    w.wait_failover_ready().await;
    (w, failover)
}

/// Asks the failover service for a readiness check, as the CLI does.
async fn check(w: &World) -> ReadinessRun {
    let client = async_nats::connect(w.nats().servers[0].as_str())
        .await
        .unwrap();
    let ask = async_nats::Request::new().timeout(Some(Duration::from_secs(60)));
    let answer = client
        .send_request("rg.failover.readiness", ask)
        .await
        .expect("the failover service answers");
    let run = ReadinessRun::decode(answer.payload.as_ref()).expect("a ReadinessRun");
    assert!(run.error.is_empty(), "{}", run.error);
    run
}

fn problems(run: &ReadinessRun) -> Problems {
    run.regions
        .iter()
        .map(|r| (r.region.clone(), r.problems.iter().cloned().collect()))
        .collect()
}

fn region<'a>(run: &'a ReadinessRun, name: &str) -> &'a Readiness {
    run.regions
        .iter()
        .find(|r| r.region == name)
        .unwrap_or_else(|| panic!("no readiness of {name}: {run:#?}"))
}

fn seed_drift(account: &Shaped, kind: &str, fix: bool) {
    let url = account.moto.url();
    let zone = account.id("zone_id");
    let dist = account.id("distribution_id");
    let mut args = vec!["drift", "--endpoint", &url, "--kind", kind];
    if fix {
        args.push("--fix");
    }
    if !zone.is_empty() {
        args.extend(["--zone-id", &zone]);
    }
    if !dist.is_empty() {
        args.extend(["--distribution-id", &dist]);
    }
    python(&args);
}

/// Readiness alerts as they are published.
struct Alerts(async_nats::Subscriber);

impl Alerts {
    async fn open(w: &World) -> Self {
        let client = async_nats::connect(w.nats().servers[0].as_str())
            .await
            .unwrap();
        Self(client.subscribe("rg.alerts.readiness.>").await.unwrap())
    }

    /// The next readiness alert of `region` in `state`.
    async fn next(&mut self, region: &str, state: AlertState) -> (String, Alert) {
        let wait = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(m) = self.0.next().await {
                let a = Alert::decode(m.payload.as_ref()).expect("an Alert");
                if a.region == region && a.state() == state {
                    return (m.subject.to_string(), a);
                }
            }
            panic!("the alert subscription ended")
        });
        wait.await
            .unwrap_or_else(|_| panic!("no {state:?} readiness alert of {region}"))
    }
}

/// Seeds `kind`, checks that the problems it adds are exactly `added`
/// (on top of what the account had before), fixes it, and checks they
/// are gone. Returns the three runs.
async fn drift_adds_exactly(
    w: &World,
    account: &Shaped,
    kind: &str,
    added: &[(&str, &str)],
) -> [ReadinessRun; 3] {
    let before = check(w).await;
    seed_drift(account, kind, false);
    let drifted = check(w).await;
    let mut expected = problems(&before);
    for (region, problem) in added {
        expected
            .entry((*region).to_owned())
            .or_default()
            .insert((*problem).to_owned());
    }
    assert_eq!(problems(&drifted), expected, "{kind}: {drifted:#?}");
    seed_drift(account, kind, true);
    let fixed = check(w).await;
    assert_eq!(problems(&fixed), problems(&before), "{kind} fixed");
    [before, drifted, fixed]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_without_healthy_targets_is_reported_alerted_and_cleared() {
    let account = Shaped::seed("deep-health");
    let (w, _failover) = start(&account, RESOURCES).await;
    let mut alerts = Alerts::open(&w).await;
    let no_targets =
        "us-west-2: tg web: no healthy targets: 0/3 targets healthy (3 unused: Target.InvalidState)";
    let [before, drifted, fixed] = drift_adds_exactly(
        &w,
        &account,
        "targets",
        &[("us-east-1", no_targets), ("eu-west-1", no_targets)],
    )
    .await;
    // The account as seeded is ready everywhere, with nothing to say.
    for r in &before.regions {
        assert!(r.ready && r.problems.is_empty(), "{r:#?}");
    }
    assert_eq!(region(&before, "us-east-1").target, "us-west-2");
    // Still ready (eu-west-1 takes the traffic), but drifted: a medium
    // alert, resolved once the hosts are back.
    let use1 = region(&drifted, "us-east-1");
    assert!(use1.ready, "{use1:#?}");
    assert_eq!(use1.target, "eu-west-1");
    let (subject, fired) = alerts.next("us-east-1", AlertState::Firing).await;
    assert_eq!(subject, "rg.alerts.readiness.medium");
    assert!(fired.summary.contains(no_targets), "{}", fired.summary);
    assert_eq!(use1.alert_id, fired.id);
    let (_, resolved) = alerts.next("us-east-1", AlertState::Resolved).await;
    assert_eq!(resolved.id, fired.id);
    assert!(region(&fixed, "us-east-1").alert_id.is_empty());
    assert_eq!(region(&fixed, "us-east-1").target, "us-west-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_record_makes_every_failover_fail_until_it_is_back() {
    let account = Shaped::seed("deep-health");
    let (w, _failover) = start(&account, RESOURCES).await;
    let mut alerts = Alerts::open(&w).await;
    let before = check(&w).await;
    seed_drift(&account, "record", false);
    let drifted = check(&w).await;
    for r in &drifted.regions {
        assert!(!r.ready, "{r:#?}");
        assert!(
            !r.problems.is_empty() && r.problems.iter().all(|p| p.contains("api.deep.test.")),
            "every problem is the record: {:#?}",
            r.problems
        );
        assert!(
            r.problems[0].starts_with("a failover would fail: "),
            "{:?}",
            r.problems
        );
    }
    let (subject, fired) = alerts.next("us-east-1", AlertState::Firing).await;
    assert_eq!(subject, "rg.alerts.readiness.high");
    assert!(fired
        .summary
        .starts_with("a failover away from us-east-1 would fail"));
    seed_drift(&account, "record", true);
    let fixed = check(&w).await;
    assert_eq!(problems(&fixed), problems(&before));
    let (_, resolved) = alerts.next("us-east-1", AlertState::Resolved).await;
    assert_eq!(resolved.id, fired.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_scaling_maximum_below_what_the_primary_runs_is_reported() {
    let account = Shaped::seed("deep-health");
    let (w, _failover) = start(&account, RESOURCES).await;
    drift_adds_exactly(
        &w,
        &account,
        "asg-max",
        &[(
            "us-east-1",
            "us-west-2: asg web has a maximum of 3, below the 4 instances us-east-1 runs",
        )],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_is_gone_is_reported_for_every_region_that_would_need_it() {
    let account = Shaped::seed("deep-health");
    let (w, _failover) = start(&account, RESOURCES).await;
    let [_, drifted, _] = drift_adds_exactly(
        &w,
        &account,
        "replica",
        &[
            (
                "us-east-1",
                "eu-west-1 cannot take us-east-1's traffic: read replica orders-euw1 does not exist there",
            ),
            (
                "us-west-2",
                "eu-west-1 cannot take us-west-2's traffic: read replica orders-euw1 does not exist there",
            ),
        ],
    )
    .await;
    // Its deep health says so too.
    let euw1 = region(&drifted, "us-east-1")
        .candidates
        .iter()
        .find(|c| c.region == "eu-west-1")
        .unwrap();
    assert!(
        euw1.checks
            .iter()
            .any(|k| k.resource == "rds orders-euw1" && k.factor == 0.0),
        "{euw1:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_behaviour_whose_origin_is_gone_is_reported() {
    let account = Shaped::seed("cdn-standbys");
    let (w, _failover) = start(&account, CDN_RESOURCES).await;
    let dist = account.id("distribution_id");
    // Both behaviours that would send eu-west-1's traffic to its origin.
    let why = |behaviour: &str| {
        format!("distribution {dist} has no origin or origin group origin-eu-west-1 for CloudFront behaviour {behaviour} of distribution {dist}")
    };
    let mut added = Vec::new();
    for from in ["us-east-1", "us-west-2"] {
        for behaviour in ["default", "/static/*"] {
            added.push((
                from,
                format!("eu-west-1 cannot take {from}'s traffic: {}", why(behaviour)),
            ));
        }
    }
    let added: Vec<(&str, &str)> = added.iter().map(|(r, p)| (*r, p.as_str())).collect();
    drift_adds_exactly(&w, &account, "behaviour-origin", &added).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_changes_nothing_in_the_account_runs_on_its_own_and_counts_its_calls() {
    let account = Shaped::seed("deep-health");
    let seeded = account.dump();
    let w = World::start().await;
    let mut config = account.config(RESOURCES);
    config.readiness_interval = Duration::from_secs(2);
    let client = async_nats::connect(w.nats().servers[0].as_str())
        .await
        .unwrap();
    let mut published = client.subscribe("rg.decisions.readiness.*").await.unwrap();
    let _failover = w.start_failover(config);
    w.wait_failover_ready().await;
    // On its own, every interval: each region's result on its subject.
    let mut seen = BTreeSet::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while seen.len() < 3 {
            let m = published.next().await.expect("readiness published");
            let r = Readiness::decode(m.payload.as_ref()).expect("a Readiness");
            assert_eq!(
                m.subject.as_str(),
                format!("rg.decisions.readiness.{}", r.region)
            );
            seen.insert(r.region);
        }
    })
    .await
    .expect("a periodic check of every region");

    let mut calls = Vec::new();
    for _ in 0..3 {
        let run = check(&w).await;
        for r in &run.regions {
            assert!(r.ready && r.problems.is_empty(), "{r:#?}");
            println!(
                "readiness of {}: {} AWS calls, {} ms",
                r.region, r.aws_calls, r.duration_ms
            );
        }
        calls.push(run.regions.iter().map(|r| r.aws_calls).collect::<Vec<_>>());
    }
    assert!(calls[0].iter().all(|c| *c > 0), "{calls:?}");
    assert!(
        calls.windows(2).all(|w| w[0] == w[1]),
        "the same calls each run: {calls:?}"
    );
    assert_eq!(account.dump(), seeded, "0 differences after the checks");

    // The CLI says the same, and exits 0.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_regionguard"))
        .args(["failover", "readiness", "--nats", &w.nats().servers[0]])
        .env_remove("RG_CONFIG")
        .output()
        .expect("regionguard runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("us-east-1: ready: us-west-2 would take the traffic in"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pilot_lights_empty_ip_target_group_is_reported_its_instance_group_is_not() {
    let account = Shaped::seed("deep-health");
    // eu-west-1 also serves through an IP target group with no targets,
    // which no Auto Scaling group fills.
    let resources = RESOURCES.replacen(
        "[failover.regions.eu-west-1]\nautoscaling_groups = [\"web\"]\ntarget_groups = [\"web\"]",
        "[failover.regions.eu-west-1]\nautoscaling_groups = [\"web\"]\ntarget_groups = [\"web\", \"api-ip\"]",
        1,
    );
    assert_ne!(resources, RESOURCES);
    let (w, _failover) = start(&account, &resources).await;
    let no_ip_targets = "eu-west-1: tg api-ip: no targets registered (ip targets; nothing the failover scales registers any)";
    let web_of_euw1 = |run: &ReadinessRun| {
        region(run, "us-east-1")
            .candidates
            .iter()
            .find(|c| c.region == "eu-west-1")
            .and_then(|c| c.checks.iter().find(|k| k.resource == "tg web"))
            .cloned()
            .expect("eu-west-1's tg web")
    };
    // Warm: the IP group is empty, its instance group serves.
    let warm = check(&w).await;
    assert!(
        problems(&warm)["us-east-1"].contains(no_ip_targets),
        "{warm:#?}"
    );
    assert_eq!(web_of_euw1(&warm).detail, "2/2 targets healthy");
    // A pilot light: its instance group's emptiness is expected (a
    // failover's scaling fills it), its IP group's is still a problem.
    seed_drift(&account, "pilot-light", false);
    let pilot = check(&w).await;
    let web = web_of_euw1(&pilot);
    assert_eq!(
        (web.factor, web.detail.as_str(), web.disqualifies.as_str()),
        (
            1.0,
            "no targets yet: a pilot light, filled when a failover scales it up",
            ""
        )
    );
    for from in ["us-east-1", "us-west-2"] {
        assert_eq!(
            problems(&pilot)[from],
            [no_ip_targets.to_owned()]
                .into_iter()
                .collect::<BTreeSet<_>>(),
            "{from}: {pilot:#?}"
        );
    }
}
