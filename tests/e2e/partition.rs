//! A real network partition and a fault at once: three `nats-server`
//! containers (Docker, the `nats:2.10-alpine` image, a stand-in built from
//! Debian's packages by `scripts/docker-deps.sh` where none can be pulled),
//! routed to each other over their own Docker network, reached by the
//! services on the host through published ports on another. `docker
//! network disconnect` cuts one node from its peers while its clients
//! still reach it: the node stays up, answers its clients, and has no
//! quorum. That node is the RG_HEALTH leader, and DynamoDB's regional
//! record goes empty at the same moment.
//!
//! What must hold: the outage is still detected and decided on the
//! majority side (threshold alert, cascade alert, failover plan); after
//! the partition heals, no health event is lost or stored twice.
//!
//! (The `testcontainers` crate is not used: its Docker client speaks API
//! 1.47 and up, and Debian 12's dockerd 20.10 answers at most 1.41.)

use std::time::{Duration, SystemTime};

use async_nats::jetstream;
use rg_proto::v1::{Alert, FailoverDecision, FailoverPhase, HealthEvent};
use rg_testkit::{init_logging, wait_until, Waited};
use tokio::process::Command;
use tokio::time::Instant;

use crate::harness::*;

const IMAGE: &str = "nats:2.10-alpine";

/// Three NATS containers: `clients` network with published ports, and a
/// `routes` network between them. Removed when dropped.
struct DockerCluster {
    prefix: String,
    /// Client URL of each node (`n1` first).
    urls: Vec<String>,
}

impl DockerCluster {
    async fn start() -> Self {
        let info = Command::new("docker").arg("info").output().await;
        assert!(
            info.as_ref().is_ok_and(|o| o.status.success()),
            "no Docker engine answers: run scripts/docker-deps.sh (as root; scripts/test.sh does)"
        );
        assert!(
            docker(&["image", "inspect", IMAGE]).await.is_ok(),
            "image {IMAGE} is missing: run scripts/docker-deps.sh"
        );
        let prefix = format!("rg-partition-{}", std::process::id());
        remove(&prefix);
        let (clients, routes) = (format!("{prefix}-clients"), format!("{prefix}-routes"));
        docker(&["network", "create", &clients]).await.unwrap();
        docker(&["network", "create", &routes]).await.unwrap();
        let route_list = "nats-route://n1:6222,nats-route://n2:6222,nats-route://n3:6222";
        let mut urls = Vec::new();
        for i in 1..=3 {
            let port = rg_testkit::free_port();
            let name = format!("{prefix}-n{i}");
            let server = format!("n{i}");
            let publish = format!("127.0.0.1:{port}:4222");
            let advertise = format!("n{i}:6222");
            // Created on the clients network (its published port stays
            // when the routes network is cut), then joined to the routes
            // network before it starts, so its peers resolve.
            docker(&[
                "create",
                "--name",
                &name,
                "--network",
                &clients,
                "-p",
                &publish,
                IMAGE,
                "-js",
                "-sd",
                "/data",
                "--name",
                &server,
                "--cluster_name",
                "rgpartition",
                "--cluster",
                "nats://0.0.0.0:6222",
                "--cluster_advertise",
                &advertise,
                "--routes",
                route_list,
                "--no_advertise",
            ])
            .await
            .unwrap();
            docker(&["network", "connect", "--alias", &server, &routes, &name])
                .await
                .unwrap();
            urls.push(format!("nats://127.0.0.1:{port}"));
        }
        for i in 1..=3 {
            docker(&["start", &format!("{prefix}-n{i}")]).await.unwrap();
        }
        let me = Self { prefix, urls };
        // A meta leader: JetStream answers through every node.
        for url in &me.urls {
            let url = url.clone();
            wait_until("a JetStream meta leader", Duration::from_secs(60), || {
                let url = url.clone();
                async move {
                    let Ok(c) = async_nats::connect(&url).await else {
                        return Waited::NotYet(format!("{url}: no connection"));
                    };
                    // "stream not found" is JetStream answering.
                    match jetstream::new(c).get_stream("RG_NO_SUCH_STREAM").await {
                        Err(e)
                            if e.to_string().contains("10059")
                                || e.to_string().contains("not found") =>
                        {
                            Waited::Done(())
                        }
                        Ok(_) => Waited::Done(()),
                        Err(e) => Waited::NotYet(format!("{url}: {e}")),
                    }
                }
            })
            .await;
        }
        me
    }

    fn urls(&self) -> String {
        self.urls.join(",")
    }

    /// Cuts node `n` (1-based) from its peers; its clients still reach it.
    async fn cut(&self, n: usize) {
        docker(&[
            "network",
            "disconnect",
            &format!("{}-routes", self.prefix),
            &format!("{}-n{n}", self.prefix),
        ])
        .await
        .unwrap();
    }

    async fn heal(&self, n: usize) {
        docker(&[
            "network",
            "connect",
            "--alias",
            &format!("n{n}"),
            &format!("{}-routes", self.prefix),
            &format!("{}-n{n}", self.prefix),
        ])
        .await
        .unwrap();
    }

    async fn logs(&self, n: usize) -> String {
        docker(&["logs", "--tail", "30", &format!("{}-n{n}", self.prefix)])
            .await
            .unwrap_or_else(|e| e)
    }
}

/// Removes the containers and networks named `prefix`-* (synchronously:
/// also on drop, after a failed assertion).
fn remove(prefix: &str) {
    for i in 1..=3 {
        let _gone = std::process::Command::new("docker")
            .args(["rm", "-f", "-v", &format!("{prefix}-n{i}")])
            .output();
    }
    for net in ["clients", "routes"] {
        let _gone = std::process::Command::new("docker")
            .args(["network", "rm", &format!("{prefix}-{net}")])
            .output();
    }
}

impl Drop for DockerCluster {
    fn drop(&mut self) {
        remove(&self.prefix);
    }
}

/// The leader of `stream`, as the cluster reports it (asked until known).
async fn stream_leader(js: &jetstream::Context, stream: &str) -> String {
    wait_until("a stream leader", Duration::from_secs(30), || async move {
        let Ok(mut s) = js.get_stream(stream).await else {
            return Waited::NotYet(format!("{stream}: not found"));
        };
        match s.info().await {
            Ok(i) => match i.cluster.as_ref().and_then(|c| c.leader.clone()) {
                Some(l) if !l.is_empty() => Waited::Done(l),
                _ => Waited::NotYet(format!("{stream}: no leader")),
            },
            Err(e) => Waited::NotYet(format!("{stream}: {e}")),
        }
    })
    .await
}

/// Injects DynamoDB's empty answer in us-east-1, asking again while no
/// simulator answers; returns how long it took.
async fn inject_until_answered(client: &async_nats::Client) -> Duration {
    use prost::Message as _;
    let started = Instant::now();
    let request = rg_proto::v1::FaultRequest {
        action: Some(rg_proto::v1::fault_request::Action::Inject(
            rg_proto::v1::FaultSpec {
                region: "us-east-1".into(),
                service: "dynamodb".into(),
                kind: rg_proto::v1::FaultKind::EmptyAnswer as i32,
                ..Default::default()
            },
        )),
    };
    loop {
        let asked = client.request("rg.sim.faults", request.encode_to_vec().into());
        match tokio::time::timeout(Duration::from_secs(2), asked).await {
            Ok(Ok(reply)) => {
                let reply = rg_proto::v1::FaultReply::decode(reply.payload.as_ref()).unwrap();
                assert!(reply.error.is_empty(), "inject refused: {}", reply.error);
                return started.elapsed();
            }
            _ if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => panic!("no simulator answered within 30 s of the partition: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_health_leader_and_a_dynamodb_outage_at_once_are_decided_and_lose_nothing() {
    init_logging();
    let _one_docker_test_at_a_time = crate::compose::ONE_AT_A_TIME.lock().await;
    let since = SystemTime::now();
    let cluster = DockerCluster::start().await;
    let urls = cluster.urls();
    let moto = rg_testkit::Moto::start();
    let extra = format!(
        "health_window = \"30s\"\n\
         [failover.aws]\nendpoint_url = \"{}\"\nemulator_credentials = true\nmax_attempts = 2\n\
         [nats.streams]\nreplicas = 3\n",
        moto.url()
    );
    let system = Processes::start_with(&urls, &extra, &[], |_| {
        vec![("RG_NATS__REQUEST_TIMEOUT".to_owned(), "5s".to_owned())]
    });
    system.wait_all_healthy().await;
    let client = async_nats::connect(server_addrs(&urls)).await.unwrap();
    let js = jetstream::new(client.clone());
    // Steady state first: every replica current, every endpoint on the
    // dashboard, a few rounds decided.
    crate::cluster::wait_replicas_current(&js).await;
    wait_dashboard_endpoints(system.http, 21.0, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    // The victim: the node leading RG_HEALTH. What is decided is read
    // through another node, on the majority side.
    let leader = stream_leader(&js, "RG_HEALTH").await;
    let victim: usize = leader.trim_start_matches('n').parse().unwrap();
    let majority = &cluster.urls[victim % 3];
    let mut alerts = Feed::<Alert>::subscribe(majority, "rg.alerts.>").await;
    let mut phases = Feed::<FailoverDecision>::subscribe(majority, "rg.decisions.failover.>").await;
    let majority_client = async_nats::connect(majority.as_str()).await.unwrap();

    let cut = Instant::now();
    cluster.cut(victim).await;
    // The simulator may sit on the node just cut off: asked through the
    // majority, it answers once it has left that node (as every service
    // does), so the request is repeated until then.
    let injected = inject_until_answered(&majority_client).await;
    eprintln!("partition: n{victim} (the RG_HEALTH leader) cut from its peers, DynamoDB empty in us-east-1 (the simulator answered {injected:?} after the cut)");
    let Some((_, threshold)) = alerts
        .try_wait_for("the threshold alert", Duration::from_secs(60), |_, a| {
            a.source() == rg_proto::v1::AlertSource::Threshold
                && a.service == "dynamodb"
                && a.region == "us-east-1"
                && a.severity() == rg_proto::v1::Severity::Critical
        })
        .await
    else {
        panic!(
            "no critical threshold alert within 60 s of the partition; n{victim}:\n{}",
            cluster.logs(victim).await
        );
    };
    let alerted = cut.elapsed();
    let (_, cascade) = alerts
        .wait_for("the cascade alert", Duration::from_secs(30), |_, a| {
            a.source() == rg_proto::v1::AlertSource::Cascade && a.region == "us-east-1"
        })
        .await;
    let cascaded = cut.elapsed();
    let (_, request) = phases
        .wait_for("a failover request", Duration::from_secs(30), |_, d| {
            d.from_region == "us-east-1" && d.phase() == FailoverPhase::Requested
        })
        .await;
    let requested = cut.elapsed();
    let (_, planned) = phases
        .wait_for("a failover plan", Duration::from_secs(30), |_, d| {
            d.from_region == "us-east-1"
                && matches!(d.phase(), FailoverPhase::Planned | FailoverPhase::Failed)
        })
        .await;
    let decided = cut.elapsed();
    eprintln!(
        "partition: threshold alert {alerted:?} after the cut ({}), cascade alert {cascaded:?} ({}), request {} {requested:?}, {} {decided:?} after ({})",
        threshold.summary,
        cascade.summary,
        request.id,
        planned.phase().token(),
        planned.error
    );
    // What the services said while it lasted (for a slow run in CI).
    let mut system = system;
    for name in [
        "prober-us-east-1",
        "detector",
        "cascade",
        "failover",
        "gateway",
    ] {
        let log = system.get(name).log();
        let said: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("server"))
            .collect();
        eprintln!(
            "partition: {name} said:\n  {}",
            said[said.len().saturating_sub(12)..].join("\n  ")
        );
    }
    assert_eq!(planned.phase(), FailoverPhase::Planned, "{}", planned.error);

    // The partition heals; every event made meanwhile arrives, once.
    tokio::time::sleep(Duration::from_secs(5)).await;
    clear_all(&majority_client).await;
    cluster.heal(victim).await;
    let healed = Instant::now();
    system.stop_probers(Duration::from_secs(30));
    let records = wait_until(
        "every health event stored once",
        Duration::from_secs(60),
        || {
            let urls = urls.clone();
            async move {
                let events =
                    read_stream::<HealthEvent>(&urls, rg_bus::Stream::Health, "rg.health.>", since)
                        .await;
                let records = crate::resilience::by_vantage(&events);
                if records.len() == 3 && records.values().all(|r| r.gaps == 0) {
                    Waited::Done(records)
                } else {
                    Waited::NotYet(format!(
                        "{:?}",
                        records
                            .iter()
                            .map(|(v, r)| (v.clone(), r.events, r.gaps, r.twice))
                            .collect::<Vec<_>>()
                    ))
                }
            }
        },
    )
    .await;
    for (vantage, r) in &records {
        eprintln!(
            "partition: {vantage}: {} events, {} gaps, {} stored twice ({:?} after healing)",
            r.events,
            r.gaps,
            r.twice,
            healed.elapsed()
        );
        assert_eq!(r.twice, 0, "{vantage} stored twice");
    }
    system.stop_all();
}
