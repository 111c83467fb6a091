//! Silence as a signal: every prober of one region stops (what an outage
//! of the region hosting them looks like) and the detector raises
//! `rg.alerts.silence.<severity>` within `silence.after` + 1 interval,
//! critical for a serving region, high for another; it resolves when the
//! probers return. A NATS outage, which silences every region at once, is
//! not called silence.

use std::time::Duration;

use tokio::time::Instant;

use rg_proto::v1::{AlertSource, AlertState, Severity};
use rg_testkit::{init_logging, NatsServer};

use crate::harness::*;

const INTERVAL: Duration = Duration::from_secs(1);

fn silence_detector() -> rg_detector::Config {
    let mut c = detector_config();
    c.probe_interval = INTERVAL;
    c.silence.serving_regions = vec!["us-east-1".into()];
    c.anomaly.enabled = false;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_whose_probers_all_stop_raises_a_silence_alert_that_resolves_when_they_return() {
    init_logging();
    let server = NatsServer::start();
    let nats = nats_config(&server.url());
    let (dns, _simulator) = start_simulator(&nats).await;
    let mut probers: Vec<Option<Running>> = rg_proto::domain::DEFAULT_REGIONS
        .map(|r| Some(start_prober(prober_config(r, dns, INTERVAL), &nats)))
        .into_iter()
        .collect();
    let _detector = start_detector(silence_detector(), &nats);
    wait_rounds_stored(&server.url(), 3).await;
    let mut alerts = AlertFeed::open(&server.url()).await;
    let after = INTERVAL * 3;

    for (index, region, severity) in [
        (0, "us-east-1", Severity::Critical),
        (2, "eu-west-1", Severity::High),
    ] {
        probers[index].take().expect("running").stop().await;
        let stopped = Instant::now();
        let (subject, fired) = alerts
            .wait_for("the silence alert", Duration::from_secs(20), |_, a| {
                a.source() == AlertSource::Silence && a.region == region
            })
            .await;
        let took = stopped.elapsed();
        eprintln!(
            "silence: {region}: alert {took:?} after its prober stopped: {}",
            fired.summary
        );
        assert_eq!(fired.state(), AlertState::Firing, "{fired:#?}");
        assert_eq!(fired.severity(), severity, "{fired:#?}");
        assert_eq!(
            subject,
            format!("rg.alerts.silence.{}", severity_name(severity))
        );
        assert!(
            took <= after + INTERVAL + Duration::from_millis(1500),
            "{region}: silence alert after {took:?} (silence_after {after:?} + 1 interval)"
        );
        assert!(
            fired.summary.contains("no health event from any vantage"),
            "{}",
            fired.summary
        );

        probers[index] = Some(start_prober(prober_config(region, dns, INTERVAL), &nats));
        let (_, resolved) = alerts
            .wait_for("the silence to resolve", Duration::from_secs(20), |_, a| {
                a.id == fired.id && a.state() == AlertState::Resolved
            })
            .await;
        assert!(
            resolved.ended_at_unix_ms > fired.started_at_unix_ms,
            "{resolved:#?}"
        );
    }
    // Only those two: the running regions never went silent.
    let silences: Vec<_> = alerts
        .seen
        .iter()
        .filter(|(_, a)| a.source() == AlertSource::Silence)
        .map(|(s, a)| format!("{s} {} {:?}", a.region, a.state()))
        .collect();
    assert_eq!(silences.len(), 4, "{silences:#?}");

    // NATS away for longer than the silence: every region was quiet in the
    // stream, and that is NATS, not silence.
    let mut server = server;
    server.stop();
    tokio::time::sleep(after * 3).await;
    server.start_again();
    let mut alerts = AlertFeed::open(&server.url()).await;
    alerts.drain_for(after * 3).await;
    let called: Vec<_> = alerts
        .seen
        .iter()
        .filter(|(_, a)| a.source() == AlertSource::Silence && a.state() == AlertState::Firing)
        .map(|(_, a)| a.summary.clone())
        .collect();
    assert!(
        called.is_empty(),
        "a NATS outage was called silence: {called:#?}"
    );
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        _ => "high",
    }
}
