//! The detector through a real `nats-server -js`: faults injected in the
//! simulator become threshold alerts (and resolutions) and anomaly alerts on
//! `rg.alerts.>`; quorum across vantages; restarts; bad input.

use std::time::Duration;

use prost::Message;
use rg_proto::v1::{AlertSource, AlertState, FaultKind, HealthEvent, Status};
use rg_testkit::{init_logging, NatsServer};

use crate::harness::*;

const INTERVAL: Duration = Duration::from_millis(500);
const WAIT: Duration = Duration::from_secs(20);
const DYNAMODB: &str = "dynamodb.us-east-1.amazonaws.com";

fn firing(a: &rg_proto::v1::Alert) -> bool {
    a.state == AlertState::Firing as i32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_become_alerts_that_resolve_and_survive_a_restart() {
    init_logging();
    let server = NatsServer::start();
    let nats = nats_config(&server.url());
    let (dns, simulator) = start_simulator(&nats).await;
    let prober = start_prober(prober_config("us-east-1", dns, INTERVAL), &nats);
    let mut alerts = AlertFeed::open(&server.url()).await;
    let detector = start_detector(detector_config(), &nats);
    let client = async_nats::connect(server.url()).await.unwrap();

    // A few normal rounds decided first.
    wait_rounds_decided(&server.url(), "detector", 3).await;

    // The October 2025 failure: one critical alert for DynamoDB, on the
    // critical subject, naming the error and the vantage count.
    inject(&client, "us-east-1", "dynamodb", FaultKind::EmptyAnswer, 0).await;
    let (subject, fired) = alerts
        .wait_for("a critical alert for dynamodb", WAIT, |_, a| {
            a.endpoint == DYNAMODB && firing(a)
        })
        .await;
    assert_eq!(subject, "rg.alerts.threshold.critical");
    assert_eq!(fired.source, AlertSource::Threshold as i32);
    assert_eq!(fired.status, Status::Critical as i32);
    assert_eq!(
        fired.summary,
        format!("{DYNAMODB} is critical (empty_answer) at 1/1 vantage points")
    );
    assert!(!fired.evidence.is_empty());

    // A detector restarted while the fault lasts does not alert again.
    detector.stop().await;
    let detector = start_detector(detector_config(), &nats);
    alerts.drain_for(INTERVAL * 6).await;
    let repeats = alerts
        .seen
        .iter()
        .filter(|(_, a)| a.endpoint == DYNAMODB && firing(a))
        .count();
    assert_eq!(
        repeats, 1,
        "the open alert was sent again after a restart: {:#?}",
        alerts.seen
    );

    // Cleared: the same alert resolves (same id, same subject).
    clear_all(&client).await;
    let (subject, resolved) = alerts
        .wait_for("the dynamodb alert to resolve", WAIT, |_, a| {
            a.id == fired.id && a.state == AlertState::Resolved as i32
        })
        .await;
    assert_eq!(subject, "rg.alerts.threshold.critical");
    assert!(resolved.ended_at_unix_ms >= fired.started_at_unix_ms);

    // The whole region 30 ms slower: far outside its history (lookups of
    // a fraction of a millisecond), but under the practical floor (50 ms)
    // and every threshold: nothing anyone should be woken for.
    for service in rg_proto::domain::DEFAULT_SERVICES {
        inject(&client, "us-east-1", service, FaultKind::Latency, 30).await;
    }
    alerts.drain_for(INTERVAL * 12).await;
    let noise: Vec<_> = alerts
        .seen
        .iter()
        .filter(|(s, a)| firing(a) && s.starts_with("rg.alerts.anomaly."))
        .collect();
    assert!(noise.is_empty(), "a 30 ms slow-down alerted: {noise:#?}");
    clear_all(&client).await;

    // The whole region 150 ms slower: every endpoint is slower than its
    // history by more than the floor, which the anomaly model (baseline
    // mode) reports.
    for service in rg_proto::domain::DEFAULT_SERVICES {
        inject(&client, "us-east-1", service, FaultKind::Latency, 150).await;
    }
    let (subject, anomaly) = alerts
        .wait_for("an anomaly alert for us-east-1", WAIT, |s, a| {
            s == "rg.alerts.anomaly.high" && firing(a)
        })
        .await;
    assert_eq!(subject, "rg.alerts.anomaly.high");
    assert_eq!(anomaly.region, "us-east-1");
    assert!(anomaly.flagged_share > 0.5, "{anomaly:?}");
    assert!(
        !anomaly.anomalies.is_empty() && !anomaly.anomalies[0].reasons.is_empty(),
        "{anomaly:?}"
    );
    // 150 ms is also a threshold warning for EC2 (default priority).
    alerts
        .wait_for("a warning for ec2", WAIT, |s, a| {
            s == "rg.alerts.threshold.medium" && a.endpoint.starts_with("ec2.") && firing(a)
        })
        .await;

    detector.stop().await;
    prober.stop().await;
    simulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_vantage_of_three_is_not_a_quorum_two_are() {
    init_logging();
    let server = NatsServer::start();
    let nats = nats_config(&server.url());
    let dir = tempfile::tempdir().unwrap();
    // Three vantages, each asking its own simulator. Simulator b fails
    // DynamoDB and EC2, simulator c fails EC2 only: EC2 is critical at 2 of
    // 3 vantages, DynamoDB at 1 of 3.
    let scenario = |name: &str, services: &[&str]| {
        let path = dir.path().join(name);
        let steps: String = services
            .iter()
            .map(|s| format!("[[step]]\nat = \"0s\"\nregion = \"us-east-1\"\nservice = \"{s}\"\nkind = \"timeout\"\n"))
            .collect();
        std::fs::write(&path, steps).unwrap();
        Some(path)
    };
    let quiet = |scenario| rg_simulator::Config {
        control: false,
        scenario,
        ..Default::default()
    };
    let (dns_a, sim_a) = start_simulator_with(&nats, quiet(None)).await;
    let (dns_b, sim_b) =
        start_simulator_with(&nats, quiet(scenario("b.toml", &["dynamodb", "ec2"]))).await;
    let (dns_c, sim_c) = start_simulator_with(&nats, quiet(scenario("c.toml", &["ec2"]))).await;
    let mut probers = Vec::new();
    for (vantage, dns) in [("use1-a", dns_a), ("use1-b", dns_b), ("use1-c", dns_c)] {
        let mut config = prober_config("us-east-1", dns, INTERVAL);
        config.vantage = Some(vantage.into());
        config.services = vec!["dynamodb".into(), "ec2".into()];
        probers.push(start_prober(config, &nats));
    }
    let mut alerts = AlertFeed::open(&server.url()).await;
    let mut config = detector_config();
    config.anomaly.enabled = false;
    let detector = start_detector(config, &nats);

    let (subject, ec2) = alerts
        .wait_for("a critical alert for ec2", WAIT, |_, a| {
            a.endpoint.starts_with("ec2.") && firing(a)
        })
        .await;
    assert_eq!(
        subject, "rg.alerts.threshold.high",
        "ec2 is default priority: severity high"
    );
    assert_eq!(
        ec2.summary,
        "ec2.us-east-1.amazonaws.com is critical (timeout) at 2/3 vantage points"
    );
    let evidence = &ec2.evidence[0];
    assert_eq!((evidence.agreeing, evidence.reporting), (2, 3));
    // The rounds that made EC2 critical held DynamoDB's 1-of-3 too.
    alerts.drain_for(INTERVAL * 4).await;
    let dynamodb: Vec<_> = alerts
        .seen
        .iter()
        .filter(|(_, a)| a.endpoint.starts_with("dynamodb."))
        .collect();
    assert!(
        dynamodb.is_empty(),
        "one vantage of three made an alert: {dynamodb:#?}"
    );

    detector.stop().await;
    for p in probers {
        p.stop().await;
    }
    for s in [sim_a, sim_b, sim_c] {
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_and_invalid_events_are_dead_lettered_by_the_detector() {
    init_logging();
    let server = NatsServer::start();
    let nats = nats_config(&server.url());
    let detector = start_detector(detector_config(), &nats);
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    // The detector provisions the streams; wait for them.
    rg_testkit::wait_until("the health stream", WAIT, || async {
        match js.get_stream("RG_HEALTH").await {
            Ok(_) => rg_testkit::Waited::Done(()),
            Err(e) => rg_testkit::Waited::NotYet(e.to_string()),
        }
    })
    .await;
    js.publish("rg.health.us-east-1.ec2", vec![0xff, 0x00, 0xff].into())
        .await
        .unwrap()
        .await
        .unwrap();
    let invalid = HealthEvent {
        region: "US EAST".into(),
        service: "ec2".into(),
        endpoint: "x".into(),
        vantage: "v".into(),
        status: 1,
        priority: 1,
        ..Default::default()
    };
    js.publish("rg.health.us-east-1.ec2", invalid.encode_to_vec().into())
        .await
        .unwrap()
        .await
        .unwrap();

    let dead = rg_testkit::wait_until("two dead letters", WAIT, || async {
        let Ok(mut stream) = js.get_stream("RG_DEADLETTER").await else {
            return rg_testkit::Waited::NotYet("no dead-letter stream yet".into());
        };
        let n = stream.info().await.map(|i| i.state.messages).unwrap_or(0);
        if n >= 2 {
            rg_testkit::Waited::Done(n)
        } else {
            rg_testkit::Waited::NotYet(format!("{n} dead letters"))
        }
    })
    .await;
    assert_eq!(dead, 2);
    let stream = js.get_stream("RG_DEADLETTER").await.unwrap();
    let reasons: Vec<String> = futures::future::join_all((1..=2).map(|seq| {
        let stream = stream.clone();
        async move {
            let m = stream.get_raw_message(seq).await.unwrap();
            m.headers
                .get(rg_bus::deadletter::REASON_HEADER)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        }
    }))
    .await;
    assert!(reasons[0].contains("HealthEvent"), "{reasons:?}");
    assert!(reasons[1].contains("region"), "{reasons:?}");
    // Still running.
    assert!(!detector.is_finished());
    detector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detectors_split_the_regions_between_them() {
    init_logging();
    let server = NatsServer::start();
    let nats = nats_config(&server.url());
    let (dns, simulator) = start_simulator(&nats).await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut alerts = AlertFeed::open(&server.url()).await;
    let mut probers = Vec::new();
    for region in ["us-east-1", "eu-west-1"] {
        let mut config = prober_config(region, dns, INTERVAL);
        config.services = vec!["dynamodb".into()];
        probers.push(start_prober(config, &nats));
    }
    let mut config = detector_config();
    config.regions = vec!["eu-west-1".into()];
    config.durable = "detector-eu".into();
    config.anomaly.enabled = false;
    let detector = start_detector(config, &nats);
    inject(&client, "", "dynamodb", FaultKind::Nxdomain, 0).await;

    alerts
        .wait_for("an alert for eu-west-1", WAIT, |_, a| {
            a.region == "eu-west-1" && firing(a)
        })
        .await;
    alerts.drain_for(INTERVAL * 4).await;
    let foreign: Vec<_> = alerts
        .seen
        .iter()
        .filter(|(_, a)| a.region != "eu-west-1")
        .collect();
    assert!(
        foreign.is_empty(),
        "a detector for eu-west-1 alerted on another region: {foreign:#?}"
    );

    detector.stop().await;
    for p in probers {
        p.stop().await;
    }
    simulator.stop().await;
}
