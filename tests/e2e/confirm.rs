//! Confirm on failure: a prober re-probes what looks wrong at once, and
//! asks the region's other vantage points to do the same, so one lost
//! answer is seen for what it is.

use std::time::Duration;

use rg_proto::v1::{fault_request::Action, ErrorKind, FaultKind, FaultSpec, HealthEvent, Status};
use rg_testkit::{init_logging, NatsServer};

use crate::harness::*;

const INTERVAL: Duration = Duration::from_secs(2);
const ENDPOINT: &str = "dynamodb.us-east-1.amazonaws.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_lost_answer_is_a_confirmation_burst_at_every_vantage_and_no_alert() {
    init_logging();
    let server = NatsServer::start();
    let nats = nats_config(&server.url());
    let (dns, simulator) = start_simulator(&nats).await;
    let vantages = ["use1-a", "use1-b", "use1-c"];
    let probers: Vec<Running> = vantages
        .iter()
        .map(|v| {
            let mut c = prober_config("us-east-1", dns, INTERVAL);
            c.vantage = Some((*v).into());
            c.confirm.spacing = Duration::from_millis(100);
            start_prober(c, &nats)
        })
        .collect();
    let detector = start_detector(detector_config(), &nats);
    let mut alerts = AlertFeed::open(&server.url()).await;
    let mut events =
        Feed::<HealthEvent>::subscribe(&server.url(), "rg.health.us-east-1.dynamodb").await;
    let client = async_nats::connect(server.url()).await.unwrap();
    wait_rounds_decided(&server.url(), "detector", 2).await; // healthy rounds first

    // Exactly one lookup, by whichever vantage asks first, times out.
    let reply = fault_request(
        &client,
        Action::Inject(FaultSpec {
            name: ENDPOINT.into(),
            kind: FaultKind::Timeout as i32,
            times: 1,
            ..Default::default()
        }),
    )
    .await;
    assert!(reply.error.is_empty(), "{}", reply.error);
    let (_, lost) = events
        .wait_for("the lost answer", Duration::from_secs(15), |_, e| {
            e.error_kind == ErrorKind::Timeout as i32 && !e.confirmation
        })
        .await;
    assert_eq!(lost.status(), Status::Critical);

    // Every vantage re-probes it in the same round, at once: the one that
    // lost it by itself, the others because it asked them.
    for v in vantages {
        let (_, first) = events
            .wait_for(
                &format!("a confirmation from {v}"),
                Duration::from_secs(5),
                |_, e| e.vantage == v && e.confirmation && e.round_id == lost.round_id,
            )
            .await;
        let after = first.observed_at_unix_ms - lost.observed_at_unix_ms;
        assert!(
            (0..2_000).contains(&after),
            "{v} confirmed {after} ms after the loss"
        );
    }
    events.drain_for(Duration::from_secs(1)).await;
    let burst: Vec<&HealthEvent> = events
        .seen
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e.vantage == lost.vantage && e.confirmation && e.round_id == lost.round_id)
        .collect();
    assert_eq!(burst.len(), 3, "confirm.count re-probes: {burst:#?}");
    assert!(
        events
            .seen
            .iter()
            .filter(|(_, e)| e.confirmation)
            .all(|(_, e)| e.status() == Status::Healthy),
        "the re-probes find it healthy"
    );

    // The burst outvotes the lost answer: no alert about the endpoint.
    alerts.drain_for(INTERVAL * 3).await;
    let about: Vec<_> = alerts
        .seen
        .iter()
        .filter(|(_, a)| a.endpoint == ENDPOINT || a.service == "dynamodb")
        .collect();
    assert!(about.is_empty(), "{about:#?}");

    detector.stop().await;
    for p in probers {
        p.stop().await;
    }
    simulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_vantage_the_burst_outvotes_a_lost_answer() {
    // One vantage point is its own majority: without the burst, the lost
    // answer would be a critical DynamoDB alert.
    init_logging();
    let server = NatsServer::start();
    let nats = nats_config(&server.url());
    let (dns, simulator) = start_simulator(&nats).await;
    let mut config = prober_config("us-east-1", dns, INTERVAL);
    config.confirm.spacing = Duration::from_millis(100);
    let prober = start_prober(config, &nats);
    let detector = start_detector(detector_config(), &nats);
    let mut alerts = AlertFeed::open(&server.url()).await;
    let mut events =
        Feed::<HealthEvent>::subscribe(&server.url(), "rg.health.us-east-1.dynamodb").await;
    let client = async_nats::connect(server.url()).await.unwrap();
    wait_rounds_decided(&server.url(), "detector", 2).await;
    let reply = fault_request(
        &client,
        Action::Inject(FaultSpec {
            name: ENDPOINT.into(),
            kind: FaultKind::Timeout as i32,
            times: 1,
            ..Default::default()
        }),
    )
    .await;
    assert!(reply.error.is_empty(), "{}", reply.error);
    let (_, lost) = events
        .wait_for("the lost answer", Duration::from_secs(15), |_, e| {
            e.error_kind == ErrorKind::Timeout as i32 && !e.confirmation
        })
        .await;
    events
        .wait_for("the burst", Duration::from_secs(5), |_, e| {
            e.confirmation && e.round_id == lost.round_id
        })
        .await;
    alerts.drain_for(INTERVAL * 3).await;
    let about: Vec<_> = alerts
        .seen
        .iter()
        .filter(|(_, a)| a.service == "dynamodb")
        .collect();
    assert!(about.is_empty(), "{about:#?}");
    detector.stop().await;
    prober.stop().await;
    simulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_dynamodb_failure_is_an_alert_and_a_request_within_two_seconds_at_a_10s_interval(
) {
    // Without confirmation the round holding the failure is decided when
    // the next one has settled: more than 10 s after the failed lookup.
    const SLOW: Duration = Duration::from_secs(10);
    init_logging();
    let server = NatsServer::start();
    let nats = nats_config(&server.url());
    let (dns, simulator) = start_simulator(&nats).await;
    let probers: Vec<Running> = rg_proto::domain::DEFAULT_REGIONS
        .iter()
        .map(|r| {
            let mut c = prober_config(r, dns, SLOW);
            c.timeout = Duration::from_secs(1);
            start_prober(c, &nats)
        })
        .collect();
    let detector = start_detector(detector_config(), &nats);
    let cascade = start_cascade(cascade_config(), &nats);
    let mut alerts = AlertFeed::open(&server.url()).await;
    let mut requests = Feed::<rg_proto::v1::FailoverDecision>::subscribe(
        &server.url(),
        "rg.decisions.failover.requested",
    )
    .await;
    let mut events =
        Feed::<HealthEvent>::subscribe(&server.url(), "rg.health.us-east-1.dynamodb").await;
    let client = async_nats::connect(server.url()).await.unwrap();
    // Full rounds decided first (they tell who the vantages are).
    wait_rounds_decided(&server.url(), "detector", 2).await;
    wait_rounds_decided(&server.url(), "cascade", 2).await;

    inject(&client, "us-east-1", "dynamodb", FaultKind::EmptyAnswer, 0).await;
    let (_, failed) = events
        .wait_for("the first failed lookup", SLOW * 2, |_, e| {
            e.error_kind == ErrorKind::EmptyAnswer as i32 && !e.confirmation
        })
        .await;
    let (_, alert) = alerts
        .wait_for("the threshold alert", SLOW, |s, a| {
            s == "rg.alerts.threshold.critical" && a.endpoint == ENDPOINT
        })
        .await;
    let (_, request) = requests
        .wait_for("the failover request", SLOW, |_, d| {
            d.from_region == "us-east-1"
        })
        .await;
    let to_alert = alert.emitted_at_unix_ms - failed.observed_at_unix_ms;
    let to_request = request.at_unix_ms - failed.observed_at_unix_ms;
    eprintln!(
        "confirmed failure: alert {to_alert} ms, request {to_request} ms after the failed lookup"
    );
    assert!(
        to_alert < 2_000 && to_request < 2_000,
        "alert {to_alert} ms, request {to_request} ms after the failed lookup"
    );

    cascade.stop().await;
    detector.stop().await;
    for p in probers {
        p.stop().await;
    }
    simulator.stop().await;
}
