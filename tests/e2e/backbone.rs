//! The health-event backbone: simulator → prober → JetStream → a decoding
//! consumer, through a real `nats-server -js` each test starts itself.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use rg_proto::v1::{ErrorKind, FaultKind, HealthEvent, Status};
use rg_testkit::{init_logging, NatsServer, Unbound};

use crate::harness::*;

const INTERVAL: Duration = Duration::from_millis(600);
const WAIT: Duration = Duration::from_secs(15);

fn is(e: &HealthEvent, service: &str) -> bool {
    e.service == service && e.region == "us-east-1"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_kind_yields_its_status_and_error_kind() {
    init_logging();
    let server = NatsServer::start();
    let nats = nats_config(&server.url());
    let (dns, simulator) = start_simulator(&nats).await;
    let prober = start_prober(prober_config("us-east-1", dns, INTERVAL), &nats);
    let mut feed = HealthFeed::open(&nats, "e2e-faults").await;
    let client = async_nats::connect(server.url()).await.unwrap();

    // Healthy first: every one of the seven services answers.
    let healthy = feed
        .wait_for("a healthy dynamodb event", WAIT, |e| is(e, "dynamodb"))
        .await;
    assert_eq!(healthy.status, Status::Healthy as i32, "{healthy:?}");
    assert!(healthy.success && healthy.answer_count > 0, "{healthy:?}");
    assert_eq!(healthy.endpoint, "dynamodb.us-east-1.amazonaws.com");
    assert_eq!(healthy.vantage, "us-east-1-test");
    assert_eq!(healthy.resolver, dns.to_string());

    let cases = [
        (FaultKind::Nxdomain, ErrorKind::Nxdomain, 3),
        (FaultKind::Servfail, ErrorKind::Servfail, 2),
        (FaultKind::Refused, ErrorKind::Refused, 5),
        (FaultKind::EmptyAnswer, ErrorKind::EmptyAnswer, 0),
        (FaultKind::Timeout, ErrorKind::Timeout, 0),
    ];
    for (fault, expected, rcode) in cases {
        let injected_at = now_ms();
        inject(&client, "us-east-1", "dynamodb", fault, 0).await;
        let e = feed
            .wait_for(&format!("dynamodb {expected:?}"), WAIT, |e| {
                is(e, "dynamodb")
                    && e.observed_at_unix_ms >= injected_at
                    && e.error_kind != ErrorKind::None as i32
            })
            .await;
        assert_eq!(e.error_kind, expected as i32, "{fault:?}: {e:?}");
        assert_eq!(e.status, Status::Critical as i32, "{fault:?}: {e:?}");
        assert!(!e.success, "{fault:?}: {e:?}");
        assert_eq!(e.answer_count, 0, "{fault:?}: {e:?}");
        if expected != ErrorKind::Timeout {
            assert_eq!(e.rcode, rcode, "{fault:?}: {e:?}");
        }
        clear_all(&client).await;
        let cleared_at = now_ms();
        feed.wait_for("dynamodb healthy again", WAIT, |e| {
            is(e, "dynamodb")
                && e.observed_at_unix_ms >= cleared_at
                && e.status == Status::Healthy as i32
        })
        .await;
    }

    // 150 ms of added latency: critical for DynamoDB (critical priority,
    // > 100 ms), warning for EC2 (default priority, > 100 and <= 200 ms).
    let injected_at = now_ms();
    inject(&client, "us-east-1", "dynamodb", FaultKind::Latency, 150).await;
    inject(&client, "us-east-1", "ec2", FaultKind::Latency, 150).await;
    let d = feed
        .wait_for("slow dynamodb", WAIT, |e| {
            is(e, "dynamodb") && e.observed_at_unix_ms >= injected_at
        })
        .await;
    assert_eq!(d.status, Status::Critical as i32, "{d:?}");
    assert_eq!(d.error_kind, ErrorKind::None as i32, "{d:?}");
    assert!(d.response_time_us >= 150_000, "{d:?}");
    let e = feed
        .wait_for("slow ec2", WAIT, |e| {
            is(e, "ec2") && e.observed_at_unix_ms >= injected_at
        })
        .await;
    assert_eq!(e.status, Status::Warning as i32, "{e:?}");
    assert!(
        e.response_time_us >= 150_000 && e.response_time_us <= 200_000,
        "{e:?}"
    );

    prober.stop().await;
    simulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_keep_their_schedule_when_lookups_time_out() {
    init_logging();
    let server = NatsServer::start();
    let nats = nats_config(&server.url());
    let (dns, simulator) = start_simulator(&nats).await;
    let client = async_nats::connect(server.url()).await.unwrap();
    inject(&client, "us-east-1", "dynamodb", FaultKind::Timeout, 0).await;

    let interval = Duration::from_millis(500);
    let mut config = prober_config("us-east-1", dns, interval);
    config.services = vec!["dynamodb".into(), "ec2".into()];
    let timeout = config.timeout;
    let prober = start_prober(config, &nats);
    let mut feed = HealthFeed::open(&nats, "e2e-schedule").await;

    let mut ec2_rounds = Vec::new();
    let mut dynamodb = Vec::new();
    while ec2_rounds.len() < 8 {
        let e = feed
            .wait_for("events of eight rounds", WAIT, |_| true)
            .await;
        match e.service.as_str() {
            "ec2" => ec2_rounds.push(e.round_id),
            _ => dynamodb.push(e),
        }
    }
    // Every round ran, one after the other: none skipped, none twice.
    let expected: Vec<u64> = (ec2_rounds[0]..ec2_rounds[0] + 8).collect();
    assert_eq!(ec2_rounds, expected, "ec2 events by round");
    for e in &dynamodb {
        assert_eq!(e.error_kind, ErrorKind::Timeout as i32, "{e:?}");
        assert_eq!(e.response_time_us, timeout.as_micros() as u64, "{e:?}");
    }
    assert!(
        dynamodb.len() >= 7,
        "one timed-out dynamodb event per round: {}",
        dynamodb.len()
    );
    prober.stop().await;
    simulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_resolver_is_probed_separately_and_scenarios_schedule_faults() {
    init_logging();
    let server = NatsServer::start();
    let nats = nats_config(&server.url());
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("drill.toml");
    std::fs::write(
        &scenario,
        "[[step]]\nat = \"0s\"\nservice = \"s3\"\nkind = \"nxdomain\"\n",
    )
    .unwrap();
    let (clean, a) = start_simulator(&nats).await;
    let (faulty, b) = start_simulator_with(
        &nats,
        rg_simulator::Config {
            control: false,
            scenario: Some(scenario),
            ..Default::default()
        },
    )
    .await;
    let mut config = prober_config("eu-west-1", clean, INTERVAL);
    config.resolvers = vec![clean.to_string(), faulty.to_string()];
    config.services = vec!["ec2".into(), "s3".into()];
    let prober = start_prober(config, &nats);
    let mut feed = HealthFeed::open(&nats, "e2e-resolvers").await;

    // Take the second round (the first may have raced the scenario's step).
    let first = feed.wait_for("a first event", WAIT, |_| true).await;
    let round = first.round_id + 1;
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < 4 {
        // The round's regular events: an NXDOMAIN also sends a
        // confirmation burst with the same round id (other events).
        let e = feed
            .wait_for("four events of one round", WAIT, |e| {
                e.round_id == round && !e.confirmation
            })
            .await;
        let key = (e.service.clone(), e.resolver.clone());
        // The feed is a durable consumer: delivery is at least once, so the
        // same event may come twice (an ack lost on a busy machine). Two
        // different events for one endpoint and resolver would be the
        // prober's fault.
        if let Some(previous) = seen.get(&key) {
            assert_eq!(
                previous, &e,
                "two different events for one endpoint and resolver in round {round}"
            );
        }
        seen.insert(key, e);
    }
    let at =
        |service: &str, resolver: SocketAddr| &seen[&(service.to_owned(), resolver.to_string())];
    assert_eq!(at("ec2", clean).status, Status::Healthy as i32);
    assert_eq!(at("ec2", faulty).status, Status::Healthy as i32);
    assert_eq!(at("s3", clean).status, Status::Healthy as i32);
    let s3 = at("s3", faulty);
    assert_eq!(
        (s3.status, s3.error_kind),
        (Status::Critical as i32, ErrorKind::Nxdomain as i32),
        "{s3:?}"
    );
    prober.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prober_measures_a_dns_server_it_did_not_write() {
    init_logging();
    let unbound = Unbound::start(
        &[
            ("dynamodb.us-east-1.amazonaws.com", "10.1.1.1"),
            ("ec2.us-east-1.amazonaws.com", "10.1.1.2"),
        ],
        &["lambda.us-east-1.amazonaws.com"],
    );
    let server = NatsServer::start();
    let nats = nats_config(&server.url());
    let mut config = prober_config("us-east-1", unbound.addr(), INTERVAL);
    config.services = ["dynamodb", "ec2", "lambda", "s3"]
        .map(String::from)
        .to_vec();
    let prober = start_prober(config, &nats);
    let mut feed = HealthFeed::open(&nats, "e2e-unbound").await;

    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < 4 {
        let e = feed
            .wait_for("events for four services", WAIT, |_| true)
            .await;
        seen.insert(e.service.clone(), e);
    }
    let d = &seen["dynamodb"];
    assert_eq!(
        (d.status, d.answers.as_slice()),
        (Status::Healthy as i32, &["10.1.1.1".to_owned()][..]),
        "{d:?}"
    );
    assert!(
        d.response_time_us > 0 && d.response_time_us < 50_000,
        "{d:?}"
    );
    assert_eq!(seen["ec2"].answers, ["10.1.1.2"]);
    let l = &seen["lambda"];
    assert_eq!(
        (l.error_kind, l.status),
        (ErrorKind::EmptyAnswer as i32, Status::Critical as i32),
        "{l:?}"
    );
    let s = &seen["s3"];
    assert_eq!(
        (s.error_kind, s.rcode),
        (ErrorKind::Nxdomain as i32, 3),
        "{s:?}"
    );
    prober.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_buffered_while_nats_is_down_arrive_when_it_returns() {
    init_logging();
    let mut server = NatsServer::start();
    let nats = nats_config(&server.url());
    let (dns, simulator) = start_simulator(&nats).await;
    let mut config = prober_config("us-west-2", dns, Duration::from_millis(250));
    config.services = vec!["ec2".into()];
    let prober = start_prober(config, &nats);
    {
        let mut feed = HealthFeed::open(&nats, "e2e-outage-before").await;
        feed.wait_for("a first event", WAIT, |_| true).await;
    }

    server.stop();
    let down_from = now_ms();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let down_until = now_ms();
    server.start_again();
    tokio::time::sleep(Duration::from_secs(3)).await;
    prober.stop().await;
    simulator.stop().await;

    // Read the whole stream back: the sequence numbers of this vantage are
    // contiguous (nothing lost, nothing twice) and cover the outage.
    let mut feed = HealthFeed::open(&nats, "e2e-outage-after").await;
    let mut events = Vec::new();
    while let Some(e) = feed.next_within(Duration::from_secs(2)).await {
        events.push(e);
    }
    assert!(!events.is_empty());
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    let unique: BTreeSet<u64> = sequences.iter().copied().collect();
    assert_eq!(unique.len(), sequences.len(), "an event was stored twice");
    let (first, last) = (*unique.first().unwrap(), *unique.last().unwrap());
    assert_eq!(
        last - first + 1,
        unique.len() as u64,
        "events lost: {} of {}",
        last - first + 1 - unique.len() as u64,
        last - first + 1
    );
    let during = events
        .iter()
        .filter(|e| {
            e.observed_at_unix_ms > down_from + 300 && e.observed_at_unix_ms < down_until - 300
        })
        .count();
    assert!(
        during >= 5,
        "only {during} events observed during the 3 s outage reached the stream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payload_is_dead_lettered_and_the_consumer_keeps_going() {
    init_logging();
    let server = NatsServer::start();
    let nats = nats_config(&server.url());
    let mut feed = HealthFeed::open(&nats, "e2e-poison").await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());

    js.publish(
        "rg.health.us-east-1.ec2",
        vec![0xff, 0xff, 0xff, 0x01].into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let good = HealthEvent {
        region: "us-east-1".into(),
        service: "ec2".into(),
        endpoint: "ec2.us-east-1.amazonaws.com".into(),
        vantage: "v".into(),
        status: Status::Healthy as i32,
        ..Default::default()
    };
    js.publish(
        "rg.health.us-east-1.ec2",
        prost::Message::encode_to_vec(&good).into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let got = feed
        .wait_for("the good event after the bad one", WAIT, |_| true)
        .await;
    assert_eq!(got, good);

    let mut dead = js.get_stream("RG_DEADLETTER").await.unwrap();
    assert_eq!(dead.info().await.unwrap().state.messages, 1);
    let letter = dead
        .get_last_raw_message_by_subject("rg.deadletter.rg.health.us-east-1.ec2")
        .await
        .unwrap();
    assert_eq!(letter.payload.as_ref(), &[0xff, 0xff, 0xff, 0x01]);
    let headers = letter.headers;
    assert_eq!(
        headers
            .get(rg_bus::deadletter::ORIGINAL_SUBJECT_HEADER)
            .map(|v| v.as_str()),
        Some("rg.health.us-east-1.ec2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_is_idempotent_and_applies_a_changed_retention() {
    init_logging();
    let server = NatsServer::start();
    let mut nats = nats_config(&server.url());
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    use rg_bus::streams::{provision, Provisioned};

    let first = provision(&js, &nats).await.unwrap();
    assert!(
        first.iter().all(|p| matches!(p, Provisioned::Created(_))),
        "{first:?}"
    );
    let again = provision(&js, &nats).await.unwrap();
    assert!(
        again.iter().all(|p| matches!(p, Provisioned::Unchanged(_))),
        "{again:?}"
    );

    nats.streams.health_max_age = Duration::from_secs(3600);
    let changed = provision(&js, &nats).await.unwrap();
    assert!(
        changed.iter().any(|p| matches!(p, Provisioned::Updated(name, c) if name == "RG_HEALTH" && c.iter().any(|c| c.starts_with("max_age")))),
        "{changed:?}"
    );
    let mut health = js.get_stream("RG_HEALTH").await.unwrap();
    assert_eq!(
        health.info().await.unwrap().config.max_age,
        Duration::from_secs(3600)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_starting_together_provision_the_streams_without_conflict() {
    init_logging();
    let server = NatsServer::start();
    let nats = nats_config(&server.url());
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    // Eight services racing to create the same five streams.
    let attempts = (0..8).map(|_| {
        let (js, nats) = (js.clone(), nats.clone());
        tokio::spawn(async move { rg_bus::streams::provision(&js, &nats).await })
    });
    for result in futures::future::join_all(attempts).await {
        let outcome = result.unwrap();
        assert!(outcome.is_ok(), "{outcome:?}");
    }
    let mut names = Vec::new();
    let mut list = js.stream_names();
    while let Some(name) = futures::StreamExt::next(&mut list).await {
        names.push(name.unwrap());
    }
    names.sort();
    assert_eq!(
        names,
        [
            "RG_ALERTS",
            "RG_DEADLETTER",
            "RG_DECISIONS",
            "RG_HEALTH",
            "RG_SNAPSHOTS"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_used_and_a_refusal_is_a_clear_error() {
    init_logging();
    let server =
        NatsServer::start_with_config("authorization { user: prober, password: \"s3cret pass\" }");
    let mut nats = nats_config(&server.url());
    nats.user = Some("prober".into());
    nats.password = Some("s3cret pass".into());
    let (dns, simulator) = start_simulator(&nats).await;
    let prober = start_prober(prober_config("us-east-1", dns, INTERVAL), &nats);
    let mut feed = HealthFeed::open(&nats, "e2e-auth").await;
    let e = feed
        .wait_for("an event through an authenticated connection", WAIT, |_| {
            true
        })
        .await;
    assert_eq!(e.region, "us-east-1");
    prober.stop().await;
    simulator.stop().await;

    // A wrong password: the prober stops at once and says why, rather than
    // retrying forever.
    nats.password = Some("wrong".into());
    let failed = start_prober(prober_config("us-east-1", dns, INTERVAL), &nats);
    let error = failed
        .finished_within(Duration::from_secs(10))
        .await
        .expect_err("a refused prober fails");
    let text = format!("{error:#}");
    assert!(
        text.contains("refused") && text.contains("nats.user/password"),
        "{text}"
    );
}
