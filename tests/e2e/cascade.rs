//! The cascade service through a real `nats-server -js`, the simulator and
//! a prober per region: outage alerts and failover requests.

use std::time::Duration;

use rg_proto::v1::{Alert, AlertState, FailoverDecision, FaultKind, Severity};
use rg_testkit::{init_logging, NatsServer};

use crate::harness::*;

const INTERVAL: Duration = Duration::from_millis(500);
const WAIT: Duration = Duration::from_secs(20);

/// NATS, the simulator, a prober per region, the cascade service, and
/// feeds of its alerts and requests.
struct World {
    server: NatsServer,
    nats: rg_bus::NatsConfig,
    client: async_nats::Client,
    simulator: Running,
    probers: Vec<Running>,
    cascade: Option<Running>,
    alerts: Feed<Alert>,
    requests: Feed<FailoverDecision>,
}

impl World {
    async fn start() -> Self {
        init_logging();
        let server = NatsServer::start();
        let nats = nats_config(&server.url());
        let (simulator, probers) = start_regions(&nats, INTERVAL).await;
        let alerts = Feed::subscribe(&server.url(), "rg.alerts.cascade.>").await;
        let requests = Feed::subscribe(&server.url(), "rg.decisions.failover.requested").await;
        let cascade = Some(start_cascade(cascade_config(), &nats));
        let client = async_nats::connect(server.url()).await.unwrap();
        // A few healthy rounds decided first.
        wait_rounds_decided(&server.url(), "cascade", 3).await;
        Self {
            server,
            nats,
            client,
            simulator,
            probers,
            cascade,
            alerts,
            requests,
        }
    }

    async fn stop(mut self) {
        if let Some(c) = self.cascade.take() {
            c.stop().await;
        }
        for p in self.probers {
            p.stop().await;
        }
        self.simulator.stop().await;
        drop(self.server);
    }
}

fn firing(a: &Alert) -> bool {
    a.state == AlertState::Firing as i32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_october_2025_replay_alerts_and_requests_a_failover_and_a_restart_repeats_nothing() {
    let mut w = World::start().await;
    assert!(
        w.alerts.seen.is_empty(),
        "healthy regions raised alerts: {:#?}",
        w.alerts.seen
    );

    let injected_at = now_ms();
    inject(
        &w.client,
        "us-east-1",
        "dynamodb",
        FaultKind::EmptyAnswer,
        0,
    )
    .await;
    let (subject, alert) = w
        .alerts
        .wait_for("a critical cascade alert for us-east-1", WAIT, |_, a| {
            a.region == "us-east-1" && firing(a)
        })
        .await;
    assert_eq!(subject, "rg.alerts.cascade.critical");
    assert_eq!(alert.severity, Severity::Critical as i32);
    // Within two probe intervals: the failing round began at most that
    // long after the record went empty.
    assert!(
        alert.started_at_unix_ms - injected_at <= 2 * INTERVAL.as_millis() as i64,
        "alert for a round starting {} ms after the fault",
        alert.started_at_unix_ms - injected_at
    );
    let hurt: Vec<&str> = alert
        .predicted_impact
        .iter()
        .map(|i| i.service.as_str())
        .collect();
    for s in ["ec2", "elasticloadbalancing", "lambda"] {
        assert!(
            hurt.contains(&s),
            "{s} not among the predicted impact {hurt:?}"
        );
    }
    assert!(
        alert.summary.contains("dynamodb critical (DNS failure"),
        "{}",
        alert.summary
    );
    assert!(alert.risk_score > 0.4, "{}", alert.risk_score);
    assert!(!alert.evidence.is_empty());
    let (_, request) = w
        .requests
        .wait_for("a failover request", WAIT, |_, r| {
            r.from_region == "us-east-1"
        })
        .await;
    assert!(
        request.reason.contains("us-west-2") || request.reason.contains("eu-west-1"),
        "{}",
        request.reason
    );
    assert_eq!(request.alert_id, alert.id);

    // Restarted during the outage: no alert or request is sent again.
    w.cascade.take().unwrap().stop().await;
    w.cascade = Some(start_cascade(cascade_config(), &w.nats));
    w.alerts.drain_for(INTERVAL * 6).await;
    w.requests.drain_for(Duration::ZERO).await;
    let fired: Vec<_> = w
        .alerts
        .seen
        .iter()
        .filter(|(_, a)| a.region == "us-east-1" && firing(a))
        .collect();
    assert_eq!(
        fired.len(),
        1,
        "alerts repeated after a restart: {fired:#?}"
    );
    assert_eq!(
        w.requests.seen.len(),
        1,
        "requests repeated after a restart: {:#?}",
        w.requests.seen
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_ec2_is_a_lower_severity_and_no_request() {
    let mut w = World::start().await;
    inject(&w.client, "us-west-2", "ec2", FaultKind::Latency, 150).await;
    let (subject, alert) = w
        .alerts
        .wait_for("an alert for us-west-2", WAIT, |_, a| {
            a.region == "us-west-2" && firing(a)
        })
        .await;
    assert!(
        alert.severity <= Severity::Medium as i32,
        "{subject}: {alert:#?}"
    );
    assert!(alert.summary.contains("ec2 warning"), "{}", alert.summary);
    // Long enough for every confirmation and hysteresis to pass.
    w.alerts.drain_for(INTERVAL * 8).await;
    w.requests.drain_for(Duration::ZERO).await;
    assert!(
        w.alerts
            .seen
            .iter()
            .all(|(_, a)| a.severity <= Severity::Medium as i32),
        "{:#?}",
        w.alerts.seen
    );
    assert!(
        w.requests.seen.is_empty(),
        "a slow EC2 asked for a failover: {:#?}",
        w.requests.seen
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_makes_at_most_one_request_per_cooldown() {
    let mut w = World::start().await;
    // Each spell covers two rounds with their re-probes: a failure shorter
    // than a confirmation burst is one lost answer, not a failure.
    for _ in 0..5 {
        inject(&w.client, "us-east-1", "dynamodb", FaultKind::Servfail, 0).await;
        tokio::time::sleep(INTERVAL * 2).await;
        clear_all(&w.client).await;
        tokio::time::sleep(INTERVAL * 2).await;
    }
    w.requests.drain_for(INTERVAL * 3).await;
    w.alerts.drain_for(Duration::ZERO).await;
    let failing = w
        .alerts
        .seen
        .iter()
        .filter(|(_, a)| a.region == "us-east-1" && firing(a))
        .count();
    assert!(
        failing >= 2,
        "the flapping was not seen: {:#?}",
        w.alerts.seen
    );
    assert_eq!(
        w.requests.seen.len(),
        1,
        "requests: {:#?}\nalerts: {:#?}",
        w.requests.seen,
        w.alerts
            .seen
            .iter()
            .map(|(s, a)| format!("{s} {}", a.summary))
            .collect::<Vec<_>>()
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_region_failing_is_critical_and_no_request_and_the_alert_says_why() {
    let mut w = World::start().await;
    inject(&w.client, "", "dynamodb", FaultKind::EmptyAnswer, 0).await;
    for region in ["us-east-1", "us-west-2", "eu-west-1"] {
        let (subject, alert) = w
            .alerts
            .wait_for(
                &format!("the reason {region} gets no failover"),
                WAIT,
                |_, a| {
                    a.region == region
                        && firing(a)
                        && a.summary.contains("no other region is healthy")
                },
            )
            .await;
        assert_eq!(subject, "rg.alerts.cascade.critical");
        assert!(
            alert.recommended_actions[0].starts_with("no failover"),
            "{:?}",
            alert.recommended_actions
        );
    }
    w.requests.drain_for(INTERVAL * 2).await;
    assert!(w.requests.seen.is_empty(), "{:#?}", w.requests.seen);
    w.stop().await;
}
