//! The gateway against a real `nats-server -js`, the simulator and a prober
//! per region: the REST figures, faults turning a card critical, the
//! snapshot stream, the trend rebuilt after a restart, gRPC with a token,
//! and a thousand WebSocket clients.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use prost::Message;
use rg_proto::v1::control_service_client::ControlServiceClient;
use rg_proto::v1::{
    ApproveFailoverRequest, DashboardSnapshot, FailoverDecision, FailoverPhase, FaultKind,
    RejectFailoverRequest, WatchSnapshotsRequest,
};
use rg_testkit::{http, init_logging, wait_until, NatsServer, Waited};
use serde_json::Value;

use crate::harness::*;

const INTERVAL: Duration = Duration::from_millis(500);
const WAIT: Duration = Duration::from_secs(20);
const TOKEN: &str = "test-token-0123456789";

/// NATS, the simulator and a prober per region.
struct World {
    server: NatsServer,
    nats: rg_bus::NatsConfig,
    client: async_nats::Client,
    _simulator: Running,
    _probers: Vec<Running>,
}

impl World {
    async fn start() -> Self {
        init_logging();
        let server = NatsServer::start();
        let nats = nats_config(&server.url());
        let (simulator, probers) = start_regions(&nats, INTERVAL).await;
        let client = async_nats::connect(server.url()).await.unwrap();
        Self {
            server,
            nats,
            client,
            _simulator: simulator,
            _probers: probers,
        }
    }
}

/// Waits for a snapshot matching `pred`; panics with the last one.
async fn wait_snapshot(http: SocketAddr, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_until(what, WAIT, || async {
        match snapshot(http).await {
            Some(s) if pred(&s) => Waited::Done(s),
            Some(s) => Waited::NotYet(s["summary"].to_string()),
            None => Waited::NotYet("no snapshot yet".into()),
        }
    })
    .await
}

fn summary(s: &Value) -> (f64, f64, f64, f64) {
    let m = &s["summary"];
    (
        num(&m["total_endpoints"]),
        num(&m["healthy"]),
        num(&m["warning"]),
        num(&m["critical"]),
    )
}

fn service_status<'a>(s: &'a Value, region: &str, service: &str) -> &'a str {
    s["regions"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["region"] == region))
        .and_then(|r| r["services"].as_array())
        .and_then(|ss| ss.iter().find(|x| x["service"] == service))
        .and_then(|x| x["status"].as_str())
        .unwrap_or("absent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_adds_up_and_a_fault_turns_its_service_card_critical_within_two_intervals() {
    let w = World::start().await;
    let gw = start_gateway(gateway_config(INTERVAL), &w.nats).await;

    let s = wait_snapshot(gw.http, "21 healthy endpoints", |s| {
        summary(s) == (21.0, 21.0, 0.0, 0.0)
    })
    .await;
    // The arithmetic a user can check on the page.
    assert_eq!(num(&s["summary"]["uptime_percent"]), 100.0);
    let regions = s["regions"].as_array().unwrap();
    assert_eq!(regions.len(), 3);
    let mut rt_sum = 0.0;
    for r in regions {
        assert_eq!((num(&r["healthy"]), num(&r["total"])), (7.0, 7.0));
        let services = r["services"].as_array().unwrap();
        assert_eq!(services.len(), 7);
        for svc in services {
            assert_eq!(svc["status"], "STATUS_HEALTHY");
            // One endpoint per service: its mean is the endpoint's time.
            rt_sum += num(&svc["avg_response_time_us"]);
        }
    }
    let avg = num(&s["summary"]["avg_response_time_us"]);
    assert!(
        (avg - rt_sum / 21.0).abs() <= 1.0,
        "summary mean {avg} vs cards {}",
        rt_sum / 21.0
    );
    assert!(!s["trend"].as_array().unwrap().is_empty());
    assert_eq!(s["recent_alerts"], Value::Array(vec![]));
    assert_eq!(s["failover_timeline"], Value::Array(vec![]));

    // A fault through the gateway's own API (open on loopback without a
    // token) reaches the simulator...
    let injected = http::request(
        gw.http,
        "POST",
        "/api/faults",
        &[],
        r#"{"inject": {"region": "us-east-1", "service": "dynamodb", "kind": "FAULT_KIND_EMPTY_ANSWER"}}"#,
    )
    .await
    .expect("fault answered");
    assert_eq!(injected.status, 200, "{}", injected.body);
    let at = now_ms();
    // ... and turns the card critical within two intervals of the next probe.
    let s = wait_snapshot(gw.http, "dynamodb critical in us-east-1", |s| {
        service_status(s, "us-east-1", "dynamodb") == "STATUS_CRITICAL"
    })
    .await;
    let seen_after = num(&s["generated_at_unix_ms"]) as i64 - at;
    assert!(
        seen_after <= 3 * INTERVAL.as_millis() as i64,
        "critical only {seen_after} ms after the fault"
    );
    assert_eq!(summary(&s), (21.0, 20.0, 0.0, 1.0));
    assert_eq!(
        service_status(&s, "us-west-2", "dynamodb"),
        "STATUS_HEALTHY"
    );
    let east = s["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == "us-east-1")
        .unwrap();
    assert_eq!((num(&east["healthy"]), num(&east["total"])), (6.0, 7.0));
    // The card says why it is critical (a failed lookup is fast); a
    // healthy card says nothing.
    let card = |region: &str, service: &str| {
        s["regions"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["region"] == region))
            .and_then(|r| r["services"].as_array())
            .and_then(|ss| ss.iter().find(|x| x["service"] == service))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        card("us-east-1", "dynamodb")["reason"],
        "empty answer at 1/1 vantage",
        "{}",
        card("us-east-1", "dynamodb")
    );
    assert!(
        card("us-west-2", "dynamodb")["reason"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{}",
        card("us-west-2", "dynamodb")
    );

    // A bad fault request is refused with a reason, not a crash.
    let bad = http::request(gw.http, "POST", "/api/faults", &[], "{\"inject\": 7}")
        .await
        .unwrap();
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("bad fault request"), "{}", bad.body);

    // Every snapshot is also on the bus: the last one is in RG_SNAPSHOTS.
    let js = async_nats::jetstream::new(w.client.clone());
    let stream = js.get_stream("RG_SNAPSHOTS").await.unwrap();
    let stored = stream
        .get_last_raw_message_by_subject("rg.snapshots.dashboard")
        .await
        .unwrap();
    let on_bus = DashboardSnapshot::decode(stored.payload.as_ref()).unwrap();
    assert!(on_bus.sequence >= 2 && on_bus.summary.unwrap().total_endpoints == 21);

    // The alerts and decisions endpoints answer (empty without a detector).
    let alerts = http::get(gw.http, "/api/alerts").await.unwrap();
    assert_eq!(
        (alerts.status, alerts.body.as_str()),
        (200, r#"{"alerts":[]}"#)
    );
    let metrics = http::get(gw.http, "/metrics").await.unwrap();
    assert!(
        metrics.body.contains("regionguard_gateway_snapshots_total"),
        "{}",
        metrics.body
    );
    let health = http::get(gw.http, "/healthz").await.unwrap();
    assert!(
        health.body.contains(r#""nats":"connected""#),
        "{}",
        health.body
    );
    gw.running.stop().await;
    drop(w.server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_gateway_rebuilds_its_trend_from_the_stream() {
    let w = World::start().await;
    let gw = start_gateway(gateway_config(INTERVAL), &w.nats).await;
    let before = wait_snapshot(gw.http, "a trend of 8 healthy points", |s| {
        let trend = s["trend"].as_array().unwrap();
        trend
            .iter()
            .rev()
            .take(8)
            .filter(|p| num(&p["healthy"]) == 21.0)
            .count()
            == 8
    })
    .await;
    gw.running.stop().await;

    let gw = start_gateway(gateway_config(INTERVAL), &w.nats).await;
    let after = wait_snapshot(gw.http, "a first snapshot", |_| true).await;
    // The first snapshot of the new gateway already has the history: the
    // points before the restart, with the same counts.
    let old: BTreeMap<i64, f64> = before["trend"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (num(&p["at_unix_ms"]) as i64, num(&p["healthy"])))
        .collect();
    let new: BTreeMap<i64, f64> = after["trend"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (num(&p["at_unix_ms"]) as i64, num(&p["healthy"])))
        .collect();
    let shared: Vec<_> = old.iter().filter(|(at, _)| new.contains_key(at)).collect();
    assert!(shared.len() >= 8, "old trend {old:?}\nnew trend {new:?}");
    for (at, healthy) in shared.iter().rev().take(8) {
        assert_eq!(
            new[at], **healthy,
            "point at {at}: old {old:?}\nnew {new:?}"
        );
    }
    assert_eq!(
        num(&after["sequence"]),
        1.0,
        "the new gateway's first snapshot"
    );
    gw.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_streams_snapshots_and_approving_needs_the_token() {
    let w = World::start().await;
    let config = rg_gateway::Config {
        token: Some(TOKEN.into()),
        ..gateway_config(INTERVAL)
    };
    let gw = start_gateway(config, &w.nats).await;
    let mut client = ControlServiceClient::connect(format!("http://{}", gw.grpc))
        .await
        .expect("gRPC connect");

    // Watch: consecutive snapshots as they are built.
    let mut watch = client
        .watch_snapshots(WatchSnapshotsRequest {})
        .await
        .expect("watch")
        .into_inner();
    let mut sequences = Vec::new();
    while sequences.len() < 3 {
        let s = tokio::time::timeout(WAIT, watch.message())
            .await
            .expect("a snapshot within the deadline")
            .expect("stream ok")
            .expect("stream open");
        sequences.push(s.sequence);
    }
    assert!(
        sequences.windows(2).all(|p| p[1] == p[0] + 1),
        "{sequences:?}"
    );

    // Alerts stream as they are stored, filtered by severity and region.
    let mut alerts = client
        .watch_alerts(rg_proto::v1::WatchAlertsRequest {
            min_severity: rg_proto::v1::Severity::High as i32,
            region: "us-east-1".into(),
        })
        .await
        .expect("watch alerts")
        .into_inner();
    let js = async_nats::jetstream::new(w.client.clone());
    for (id, severity, region) in [
        ("a-low", rg_proto::v1::Severity::Low, "us-east-1"),
        ("a-elsewhere", rg_proto::v1::Severity::Critical, "eu-west-1"),
        ("a-critical", rg_proto::v1::Severity::Critical, "us-east-1"),
    ] {
        let alert = rg_proto::v1::Alert {
            id: id.into(),
            severity: severity as i32,
            region: region.into(),
            summary: format!("test alert {id}"),
            ..Default::default()
        };
        js.publish("rg.alerts.threshold.critical", alert.encode_to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let streamed = tokio::time::timeout(WAIT, alerts.message())
        .await
        .expect("an alert within the deadline")
        .unwrap()
        .unwrap();
    assert_eq!(
        streamed.id, "a-critical",
        "the filter let through {streamed:?}"
    );
    let feed = http::get(gw.http, "/api/alerts").await.unwrap();
    assert!(
        feed.body.contains("a-low") && feed.body.contains("a-critical"),
        "{}",
        feed.body
    );

    // A planned failover, as the failover service would publish it.
    let mut planned = FailoverDecision {
        id: "fo-test-1".into(),
        from_region: "us-east-1".into(),
        to_region: "us-west-2".into(),
        actor: "failover:test".into(),
        at_unix_ms: now_ms(),
        ..Default::default()
    };
    planned.set_phase(FailoverPhase::Planned);
    js.publish(
        "rg.decisions.failover.planned",
        planned.encode_to_vec().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let mut approvals = w
        .client
        .subscribe("rg.decisions.failover.approved")
        .await
        .unwrap();
    w.client.flush().await.unwrap();

    let approve = |token: Option<&str>, id: &str| {
        let mut request = tonic::Request::new(ApproveFailoverRequest {
            failover_id: id.into(),
            approver: "alice".into(),
        });
        if let Some(t) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        request
    };
    let refused = client
        .approve_failover(approve(None, "fo-test-1"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let wrong = client
        .approve_failover(approve(Some("test-token-wrong-0000"), "fo-test-1"))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
    let unknown = client
        .approve_failover(approve(Some(TOKEN), "no-such"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    // The gateway has read the planned phase once it is in the timeline.
    let approved = wait_until("the approval is accepted", WAIT, || {
        let mut client = client.clone();
        async move {
            match client
                .approve_failover(approve(Some(TOKEN), "fo-test-1"))
                .await
            {
                Ok(r) => Waited::Done(r.into_inner().decision.unwrap()),
                Err(e) => Waited::NotYet(format!("{e:?}")),
            }
        }
    })
    .await;
    assert_eq!(approved.phase(), FailoverPhase::Approved);
    assert_eq!(approved.actor, "grpc:alice");
    assert_eq!(
        (approved.from_region.as_str(), approved.to_region.as_str()),
        ("us-east-1", "us-west-2")
    );
    // Approved: a rejection is refused, saying why (over gRPC too).
    let mut reject = tonic::Request::new(RejectFailoverRequest {
        failover_id: "fo-test-1".into(),
        approver: "bob".into(),
        reason: "too late".into(),
    });
    reject
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let late = client.reject_failover(reject).await.unwrap_err();
    assert_eq!(late.code(), tonic::Code::FailedPrecondition, "{late:?}");
    assert!(
        late.message().contains("is approved, not planned"),
        "{late:?}"
    );
    // It is on the bus, where the failover service will read it.
    let on_bus = tokio::time::timeout(WAIT, approvals.next())
        .await
        .unwrap()
        .unwrap();
    let on_bus = FailoverDecision::decode(on_bus.payload.as_ref()).unwrap();
    assert_eq!(
        (on_bus.id.as_str(), on_bus.phase()),
        ("fo-test-1", FailoverPhase::Approved)
    );

    // Over HTTP the same rules hold.
    let no_token = http::request(gw.http, "POST", "/api/failovers/fo-test-1/approve", &[], "")
        .await
        .unwrap();
    assert_eq!(no_token.status, 401, "{}", no_token.body);
    let auth = format!("Bearer {TOKEN}");
    let fault = http::request(
        gw.http,
        "POST",
        "/api/faults",
        &[("Authorization", &auth)],
        r#"{"list": true}"#,
    )
    .await
    .unwrap();
    assert_eq!(fault.status, 200, "{}", fault.body);
    // InjectFault over gRPC without the token is refused too.
    let inject = rg_proto::v1::FaultRequest {
        action: Some(rg_proto::v1::fault_request::Action::Inject(
            rg_proto::v1::FaultSpec {
                region: "us-east-1".into(),
                kind: FaultKind::Nxdomain as i32,
                ..Default::default()
            },
        )),
    };
    let refused = client.inject_fault(inject).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    gw.running.stop().await;
}

/// Reads snapshots from one WebSocket; returns their sequence numbers.
async fn ws_client(http: SocketAddr, until_sequence: u64) -> Vec<u64> {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws"))
        .await
        .expect("websocket connect");
    let mut seen = Vec::new();
    while let Some(Ok(m)) = socket.next().await {
        if let tokio_tungstenite::tungstenite::Message::Text(text) = m {
            let v: Value = serde_json::from_str(&text).expect("snapshot JSON");
            let sequence = num(&v["sequence"]) as u64;
            seen.push(sequence);
            if sequence >= until_sequence {
                break;
            }
        }
    }
    let _closed = socket.close(None).await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_websocket_clients_each_get_every_snapshot_and_a_stuck_one_is_dropped() {
    let w = World::start().await;
    let interval = Duration::from_millis(500);
    let config = rg_gateway::Config {
        ws_send_timeout: Duration::from_millis(600),
        ws_send_buffer: 4096,
        ..gateway_config(interval)
    };
    let gw = start_gateway(config, &w.nats).await;
    let first = wait_snapshot(gw.http, "21 endpoints", |s| {
        num(&s["summary"]["total_endpoints"]) == 21.0
    })
    .await;

    // A client that connects and never reads, with a tiny receive buffer.
    let stuck = tokio::net::TcpSocket::new_v4().unwrap();
    stuck.set_recv_buffer_size(2048).unwrap();
    let stuck = stuck.connect(gw.http).await.unwrap();
    let (stuck, _) = tokio_tungstenite::client_async(format!("ws://{}/ws", gw.http), stuck)
        .await
        .expect("stuck client handshake");

    let start = num(&first["sequence"]) as u64;
    let until = start + 12;
    let clients: Vec<_> = (0..1000)
        .map(|_| tokio::spawn(ws_client(gw.http, until)))
        .collect();
    let mut complete = 0;
    for c in clients {
        let seen = tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .expect("client finished")
            .expect("client task");
        assert!(!seen.is_empty());
        // The first is the latest at connect time; from there, every one.
        assert!(
            seen.windows(2).all(|p| p[1] == p[0] + 1),
            "a client missed snapshots: {seen:?}"
        );
        assert_eq!(*seen.last().unwrap(), until);
        complete += 1;
    }
    assert_eq!(complete, 1000);

    // The stuck client was cut off and counted.
    wait_until("the stuck client is dropped", WAIT, || async {
        let m = http::get(gw.http, "/metrics")
            .await
            .map(|r| r.body)
            .unwrap_or_default();
        let dropped = m
            .lines()
            .find(|l| {
                l.starts_with("regionguard_gateway_watchers_dropped_total{interface=\"websocket\"}")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if dropped >= 1.0 {
            Waited::Done(())
        } else {
            Waited::NotYet(format!("dropped = {dropped}"))
        }
    })
    .await;
    drop(stuck);
    gw.running.stop().await;
}

/// `regionguard gateway` started from another working directory (as a
/// service manager does) serves the dashboard of the tree its binary was
/// built in: the relative `gateway.dashboard_dir` is not read against the
/// working directory alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_started_elsewhere_serves_the_dashboard_next_to_its_binary() {
    init_logging();
    let index = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard/dist/index.html");
    let index = std::fs::read_to_string(&index).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: the dashboard is not built (scripts/install-deps.sh builds it)",
            index.display()
        )
    });
    let server = NatsServer::start();
    let elsewhere = tempfile::tempdir().unwrap();
    let port = |_| rg_testkit::free_port();
    let (web, grpc, metrics) = (port(0), port(1), port(2));
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _killed = self.0.kill();
            let _reaped = self.0.wait();
        }
    }
    let _gateway = Stop(
        std::process::Command::new(env!("CARGO_BIN_EXE_regionguard"))
            .args(["gateway", "--nats", &server.url()])
            .args(["--listen", &format!("127.0.0.1:{web}")])
            .args(["--grpc-listen", &format!("127.0.0.1:{grpc}")])
            .env("RG_GATEWAY__METRICS_LISTEN", format!("127.0.0.1:{metrics}"))
            .env_remove("RG_CONFIG")
            .env("RG_LOG", "warn")
            .current_dir(elsewhere.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], web));
    wait_until("the dashboard on /", Duration::from_secs(20), || async {
        match http::get(addr, "/").await {
            Some(r) if r.status == 200 && r.body == index => Waited::Done(()),
            Some(r) => Waited::NotYet(format!(
                "{} {}",
                r.status,
                r.body.chars().take(300).collect::<String>()
            )),
            None => Waited::NotYet("no answer".into()),
        }
    })
    .await;
}

/// The nearest-rank percentile, written again here as the test's oracle.
fn nearest_rank(mut v: Vec<u64>, p: usize) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let rank = (p * v.len()).div_ceil(100).max(1);
    Some(v[rank - 1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_of_a_service_is_what_its_health_stream_holds() {
    let mut w = World::start().await;
    let gateway = start_gateway(gateway_config(INTERVAL), &w.nats).await;
    // Healthy rounds, then DynamoDB empty in us-east-1 for a while, then
    // healthy again.
    wait_rounds_stored(&w.server.url(), 4).await;
    inject(
        &w.client,
        "us-east-1",
        "dynamodb",
        FaultKind::EmptyAnswer,
        0,
    )
    .await;
    tokio::time::sleep(INTERVAL * 5).await;
    clear_all(&w.client).await;
    tokio::time::sleep(INTERVAL * 4).await;
    // Nothing more is on its way: what the gateway reads is all there is.
    for p in std::mem::take(&mut w._probers) {
        p.stop().await;
    }
    let r = http::get(
        gateway.http,
        "/api/history?region=us-east-1&service=dynamodb&window=10m&buckets=20&vantages=1",
    )
    .await
    .expect("the gateway answers");
    assert_eq!(r.status, 200, "{}", r.body);
    let h: Value = serde_json::from_str(&r.body).unwrap();

    // The stream, read here, summed up by the definitions the page states.
    let events: Vec<rg_proto::v1::HealthEvent> = read_stream(
        &w.server.url(),
        rg_bus::Stream::Health,
        "rg.health.us-east-1.dynamodb",
        std::time::UNIX_EPOCH,
    )
    .await
    .into_iter()
    .map(|(_, e)| e)
    .collect();
    let (from, to, bucket) = (
        h["from_unix_ms"].as_i64().unwrap(),
        h["to_unix_ms"].as_i64().unwrap(),
        h["bucket_ms"].as_i64().unwrap(),
    );
    let events: Vec<_> = events
        .into_iter()
        .filter(|e| e.observed_at_unix_ms >= from && e.observed_at_unix_ms <= to)
        .collect();
    assert!(events.len() > 20, "{} events", events.len());
    // One vantage here: a round's status is the worst it saw.
    let mut rounds: BTreeMap<u64, i32> = BTreeMap::new();
    for e in &events {
        let s = rounds.entry(e.round_id).or_insert(e.status);
        *s = (*s).max(e.status);
    }
    let name = |s: i32| match rg_proto::v1::Status::try_from(s).unwrap() {
        rg_proto::v1::Status::Healthy => "healthy",
        rg_proto::v1::Status::Warning => "warning",
        rg_proto::v1::Status::Critical => "critical",
        rg_proto::v1::Status::Unspecified => "unknown",
    };
    let want: Vec<(u64, &str)> = rounds.iter().map(|(r, s)| (*r, name(*s))).collect();
    let want = &want[want.len().saturating_sub(60)..];
    let got: Vec<(u64, &str)> = h["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["round_id"].as_u64().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want, "the status bar is the stream's rounds");
    let critical = rounds.values().filter(|s| name(**s) == "critical").count();
    let healthy = rounds.values().filter(|s| name(**s) == "healthy").count();
    assert!(
        critical >= 3 && healthy >= 3,
        "{critical} critical, {healthy} healthy rounds"
    );
    assert_eq!(h["uptime_1h"]["rounds"], rounds.len());
    assert_eq!(h["uptime_1h"]["healthy_rounds"], healthy);
    let percent = h["uptime_1h"]["percent"].as_f64().unwrap();
    assert!((percent - healthy as f64 * 100.0 / rounds.len() as f64).abs() < 1e-9);
    assert_eq!(
        h["uptime_24h"], h["uptime_1h"],
        "within the hour, the day is the hour"
    );
    // Response time per bucket: p50 and p95 of the answered lookups.
    let buckets = h["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 20);
    for (i, b) in buckets.iter().enumerate() {
        let times: Vec<u64> = events
            .iter()
            .filter(|e| {
                let at = e.observed_at_unix_ms;
                ((at - from) / bucket).min(19) == i as i64
            })
            .filter(|e| e.success)
            .map(|e| e.response_time_us)
            .collect();
        assert_eq!(b["answered"], times.len(), "bucket {i}");
        assert_eq!(
            b["p50_us"].as_u64(),
            nearest_rank(times.clone(), 50),
            "bucket {i}"
        );
        assert_eq!(b["p95_us"].as_u64(), nearest_rank(times, 95), "bucket {i}");
    }
    let failed: u64 = buckets.iter().map(|b| b["failed"].as_u64().unwrap()).sum();
    assert_eq!(failed, events.iter().filter(|e| !e.success).count() as u64);
    assert!(failed > 0);

    // Bad questions get a clear answer.
    for (path, says) in [
        ("/api/history?service=dynamodb", "ask /api/history?region="),
        (
            "/api/history?region=us-east-1&service=dynamodb&window=3d",
            "up to 24h",
        ),
        (
            "/api/history?region=us%20east&service=dynamodb",
            "bad region",
        ),
    ] {
        let r = http::get(gateway.http, path).await.unwrap();
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(r.body.contains(says), "{path}: {}", r.body);
    }
}
