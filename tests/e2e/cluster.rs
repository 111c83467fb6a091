//! The system on a three-node NATS JetStream cluster (processes on
//! loopback, every stream, bucket and consumer with 3 replicas), each node
//! killed with SIGKILL in turn while everything runs: the stream leaders,
//! the meta leader and the servers the views' readers sit on go with it.
//! What a user relies on is checked after each kill: the dashboard counts
//! every endpoint again within 10 s, a failover request made 5 s after the
//! kill gets a plan, the detector and the cascade service consume again
//! within seconds; and at the end, no health event lost or stored twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_nats::jetstream;
use futures::StreamExt;
use prost::Message;
use rg_proto::v1::{FailoverDecision, FailoverPhase, HealthEvent};
use rg_testkit::{init_logging, wait_until, Moto, NatsCluster, Waited};
use tokio::time::Instant;

use crate::harness::*;

/// How long after a kill the counters and the dashboard are sampled.
const SAMPLE_FOR: u64 = 30;

/// Which server holds what, as the cluster reports it.
#[derive(Debug, Default)]
struct Roles {
    meta_leader: String,
    /// Stream → leader.
    streams: BTreeMap<String, String>,
    /// "stream/consumer" → leader; ephemeral readers as "stream/(reader)".
    consumers: Vec<(String, String)>,
}

impl Roles {
    /// Whether `server` led any of `groups` (a stream's name, or
    /// "stream/durable" for a consumer): what a service must wait for
    /// the cluster to elect again.
    fn led_any(&self, server: &str, groups: &[&str]) -> bool {
        groups.iter().any(|g| {
            self.streams.get(*g).is_some_and(|l| l == server)
                || self.consumers.iter().any(|(c, l)| c == g && l == server)
        })
    }

    /// What `server` leads, in words.
    fn of(&self, server: &str) -> Vec<String> {
        let mut held = Vec::new();
        if self.meta_leader == server {
            held.push("meta leader".to_owned());
        }
        for (s, l) in &self.streams {
            if l == server {
                held.push(format!("{s} leader"));
            }
        }
        for (c, l) in &self.consumers {
            if l == server {
                held.push(c.clone());
            }
        }
        held
    }
}

async fn roles(js: &jetstream::Context, cluster: &NatsCluster) -> Roles {
    let mut r = Roles {
        meta_leader: cluster.meta_leader().unwrap_or_default(),
        ..Default::default()
    };
    let mut names = Vec::new();
    let mut listed = js.stream_names();
    while let Some(Ok(name)) = listed.next().await {
        names.push(name);
    }
    names.sort();
    for name in &names {
        let name = name.as_str();
        let Ok(mut stream) = js.get_stream(name).await else {
            continue;
        };
        if let Ok(info) = stream.info().await {
            if let Some(leader) = info.cluster.as_ref().and_then(|c| c.leader.clone()) {
                r.streams.insert(name.to_owned(), leader);
            }
        }
        let mut consumers = stream.consumers();
        while let Some(Ok(c)) = consumers.next().await {
            let leader = c
                .cluster
                .as_ref()
                .and_then(|c| c.leader.clone())
                .unwrap_or_default();
            let who = match &c.config.durable_name {
                Some(d) => format!("{name}/{d}"),
                None => format!("{name}/(reader)"),
            };
            r.consumers.push((who, leader));
        }
    }
    r
}

/// Publishes a failover request away from `from`, retrying while the
/// decisions stream has no leader.
async fn request_failover(js: &jetstream::Context, id: &str, from: &str) {
    let mut d = FailoverDecision {
        id: id.into(),
        from_region: from.into(),
        reason: format!("test: {from} is critical"),
        actor: "cascade".into(),
        at_unix_ms: now_ms(),
        ..Default::default()
    };
    d.set_phase(FailoverPhase::Requested);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stored = match js
            .publish("rg.decisions.failover.requested", d.encode_to_vec().into())
            .await
        {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match stored {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("cannot store the request: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Every 200 ms until `until`: the detector's and the cascade service's
/// consumed counters and the dashboard's endpoint count, with the time.
#[derive(Debug, Clone, Default)]
struct Sample {
    at: Duration,
    detector: f64,
    cascade: f64,
    endpoints: f64,
}

fn sample(
    detector: std::net::SocketAddr,
    cascade: std::net::SocketAddr,
    http: std::net::SocketAddr,
    start: Instant,
    until: Instant,
) -> Arc<Mutex<Vec<Sample>>> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let samples = out.clone();
    tokio::spawn(async move {
        let consumed = |text: &str, who: &str| {
            counter(
                text,
                "regionguard_bus_consumed_total",
                &[&format!("consumer=\"{who}\"")],
            )
        };
        while Instant::now() < until {
            let d = rg_testkit::http::get(detector, "/metrics").await;
            let c = rg_testkit::http::get(cascade, "/metrics").await;
            let s = snapshot(http).await;
            let entry = Sample {
                at: start.elapsed(),
                detector: d.map(|r| consumed(&r.body, "detector")).unwrap_or(-1.0),
                cascade: c.map(|r| consumed(&r.body, "cascade")).unwrap_or(-1.0),
                endpoints: s
                    .map(|s| num(&s["summary"]["total_endpoints"]))
                    .unwrap_or(-1.0),
            };
            samples.lock().unwrap().push(entry);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    out
}

/// The longest time a counter stood still after `from` (to the end of the
/// samples).
fn longest_pause(samples: &[Sample], from: Duration, value: impl Fn(&Sample) -> f64) -> Duration {
    let mut longest = Duration::ZERO;
    let mut since = from;
    let mut last = None;
    for s in samples.iter().filter(|s| s.at >= from) {
        let v = value(s);
        if last.is_some_and(|l| v > l) {
            since = s.at;
        }
        last = Some(v);
        longest = longest.max(s.at.saturating_sub(since));
    }
    longest
}

/// `regionguard status` against the system's config: its exit code, what
/// it printed, and how long it took.
fn status(config: &std::path::Path) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_regionguard"))
        .arg("status")
        .arg("--config")
        .arg(config)
        .env_remove("RG_CONFIG")
        .env_remove("RG_NATS_URL")
        .output()
        .expect("regionguard status runs");
    let took = started.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text, took)
}

/// Waits until every replica of every stream is current and every
/// durable consumer has a leader (after servers came back). Consumer
/// replicas are not waited for: nats-server 2.9.10 can leave a restarted
/// server's replica of an idle consumer behind for minutes (`regionguard
/// status` shows it).
pub(crate) async fn wait_replicas_current(js: &jetstream::Context) {
    wait_until(
        "every stream replica current, every consumer led",
        Duration::from_secs(90),
        || async move {
            let mut names = Vec::new();
            let mut listed = js.stream_names();
            while let Some(name) = listed.next().await {
                match name {
                    Ok(n) => names.push(n),
                    Err(e) => return Waited::NotYet(format!("listing streams: {e}")),
                }
            }
            for name in &names {
                let mut stream = match js.get_stream(name).await {
                    Ok(s) => s,
                    Err(e) => return Waited::NotYet(format!("{name}: {e}")),
                };
                let info = match stream.info().await {
                    Ok(i) => i.clone(),
                    Err(e) => return Waited::NotYet(format!("{name}: {e}")),
                };
                if let Some(why) = lagging(name, info.cluster.as_ref()) {
                    return Waited::NotYet(why);
                }
                let mut consumers = stream.consumers();
                while let Some(c) = consumers.next().await {
                    let c = match c {
                        Ok(c) => c,
                        Err(e) => return Waited::NotYet(format!("{name} consumers: {e}")),
                    };
                    if c.config.durable_name.is_some()
                        && c.cluster.as_ref().is_none_or(|c| c.leader.is_none())
                    {
                        return Waited::NotYet(format!("{name}/{}: no leader", c.name));
                    }
                }
            }
            Waited::Done(())
        },
    )
    .await;
}

/// Why a Raft group is not whole and current, if it is not.
fn lagging(
    what: &str,
    cluster: Option<&async_nats::jetstream::stream::ClusterInfo>,
) -> Option<String> {
    let Some(cluster) = cluster else {
        return Some(format!("{what}: no cluster info"));
    };
    if cluster.leader.is_none() {
        return Some(format!("{what}: no leader"));
    }
    if cluster.replicas.len() != 2 || cluster.replicas.iter().any(|p| !p.current) {
        return Some(format!("{what}: replicas {:?}", cluster.replicas));
    }
    None
}

/// Which server a round kills.
#[derive(Debug, Clone, Copy)]
enum Victim {
    /// The leader of the health stream.
    HealthLeader,
    /// The JetStream meta leader.
    MetaLeader,
    /// The server the gateway's health reader sits on (its leader).
    ReaderNode,
}

/// The system on a fresh three-node cluster, in its steady state.
struct ClusterWorld {
    cluster: NatsCluster,
    _moto: Moto,
    system: Processes,
    js: jetstream::Context,
    phases: Feed<FailoverDecision>,
    urls: String,
    since: SystemTime,
}

async fn cluster_world() -> ClusterWorld {
    init_logging();
    let since = SystemTime::now();
    let cluster = NatsCluster::start(3);
    let urls = cluster.urls();
    let moto = Moto::start();
    let extra = format!(
        "health_window = \"30s\"\n\
         [failover.aws]\nendpoint_url = \"{}\"\nemulator_credentials = true\nmax_attempts = 2\n\
         [nats.streams]\nreplicas = 3\n",
        moto.url()
    );
    // Endpoints drop out of the dashboard 5 s after their last event, so a
    // view that stops reading shows at once. NATS requests get the default
    // 5 s (the other tests' 2 s is short for a cluster that lost a server).
    let system = Processes::start_with(&urls, &extra, &[], |name| {
        let mut env = vec![("RG_NATS__REQUEST_TIMEOUT".to_owned(), "5s".to_owned())];
        if name == "gateway" {
            env.push(("RG_GATEWAY__STALE_AFTER".to_owned(), "5s".to_owned()));
        }
        env
    });
    system.wait_all_healthy().await;
    let client = async_nats::connect(server_addrs(&urls)).await.unwrap();
    let js = jetstream::new(client);
    let phases = Feed::<FailoverDecision>::subscribe(&urls, "rg.decisions.failover.>").await;
    // Steady state: every replica current, the services a few rounds in.
    wait_replicas_current(&js).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    ClusterWorld {
        cluster,
        _moto: moto,
        system,
        js,
        phases,
        urls,
        since,
    }
}

/// Kills the server that holds `role`, with SIGKILL, and checks what a
/// user relies on; the server stays dead.
async fn kill_and_check(w: &mut ClusterWorld, role: Victim, from: &str) -> usize {
    let (cluster, system, js, phases) = (&mut w.cluster, &mut w.system, &w.js, &mut w.phases);
    let (detector, cascade) = (
        system.metrics_addr("detector"),
        system.metrics_addr("cascade"),
    );
    // Who holds the role, as the cluster reports it (asked again while a
    // report is incomplete).
    let deadline = Instant::now() + Duration::from_secs(20);
    let (held, victim) = loop {
        let held = roles(js, cluster).await;
        let leader = match role {
            Victim::HealthLeader => held.streams.get("RG_HEALTH").cloned(),
            Victim::MetaLeader => Some(held.meta_leader.clone()),
            Victim::ReaderNode => held
                .consumers
                .iter()
                .find(|(c, _)| c == "RG_HEALTH/(reader)")
                .map(|(_, l)| l.clone()),
        };
        if let Some(i) = leader.as_deref().and_then(|l| cluster.index_of(l)) {
            break (held, i);
        }
        assert!(
            Instant::now() < deadline,
            "no server holds {role:?}: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("cluster: {role:?} is n{}", victim + 1);
    let name = format!("n{}", victim + 1);
    let killed_at = Instant::now();
    let samples = sample(
        detector,
        cascade,
        system.http,
        killed_at,
        killed_at + Duration::from_secs(SAMPLE_FOR),
    );
    cluster.node(victim).kill9();
    eprintln!("cluster: killed {name}, which held {:?}", held.of(&name));

    // A failover request 5 s after the kill gets a plan.
    tokio::time::sleep_until(killed_at + Duration::from_secs(5)).await;
    let id = format!("cluster-{victim}");
    request_failover(js, &id, from).await;
    let (_, outcome) = phases
        .wait_for("a plan or a refusal", Duration::from_secs(30), |_, d| {
            d.id == id && matches!(d.phase(), FailoverPhase::Planned | FailoverPhase::Failed)
        })
        .await;
    let answered = killed_at.elapsed();
    assert_eq!(
        outcome.phase(),
        FailoverPhase::Planned,
        "kill of {name}: the request made 5 s after it was refused: {}",
        outcome.error
    );
    assert_ne!(outcome.to_region, from, "{outcome:#?}");

    // Within 10 s, the dashboard counts every endpoint again (and goes
    // on counting them).
    tokio::time::sleep_until(killed_at + Duration::from_secs(SAMPLE_FOR)).await;
    let samples = samples.lock().unwrap().clone();
    // Where the dead server led the health stream, nothing is stored
    // until its replicas elect a leader (4-9 s): the view can only
    // catch up after that.
    let catch_up = if held.led_any(&name, &["RG_HEALTH"]) {
        Duration::from_secs(12)
    } else {
        Duration::from_secs(10)
    };
    let short: Vec<_> = samples
        .iter()
        .filter(|s| s.at >= catch_up && s.endpoints != 21.0)
        .map(|s| (s.at.as_millis(), s.endpoints))
        .collect();
    let back_at = samples
        .iter()
        .rev()
        .take_while(|s| s.endpoints == 21.0)
        .last()
        .map(|s| s.at);
    eprintln!(
        "cluster: kill of {name}: the dashboard counts every endpoint again from {back_at:?} on"
    );
    let fewest = samples
        .iter()
        .map(|s| s.endpoints)
        .fold(f64::INFINITY, f64::min);
    let detector_pause = longest_pause(&samples, Duration::ZERO, |s| s.detector);
    let cascade_pause = longest_pause(&samples, Duration::ZERO, |s| s.cascade);
    eprintln!(
            "cluster: kill of {name}: plan {answered:?} after the kill; fewest endpoints on the dashboard {fewest}; detector paused {detector_pause:?}, cascade {cascade_pause:?}"
        );
    if !short.is_empty() {
        eprintln!(
            "--- gateway log ---\n{}",
            system.get("gateway").log_tail(40)
        );
        for (i, n) in cluster.nodes().iter().enumerate() {
            let log = n.log_tail(3000);
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| !l.contains("connect to route"))
                .filter(|l| l.contains("[WRN]") || l.contains("[ERR]") || l.contains("leader"))
                .collect();
            eprintln!("--- n{} ---\n{}", i + 1, lines.join("\n"));
        }
    }
    assert!(
            short.is_empty(),
            "kill of {name}: the dashboard did not count all 21 endpoints {catch_up:?} after it (ms, count): {short:?}"
        );
    // A service waits for the cluster only where the dead server led
    // something it reads or writes: nats-server elects a new leader
    // of a Raft group 4-9 s after the old one stops (its fixed
    // election timeout), and the service notices a lost pull within
    // 2 s. Elsewhere it must not pause at all beyond its rounds.
    for (service, pause, groups) in [
        (
            "detector",
            detector_pause,
            &[
                "RG_HEALTH",
                "RG_HEALTH/detector",
                "RG_ALERTS",
                "KV_RG_DETECTOR",
            ][..],
        ),
        (
            "cascade",
            cascade_pause,
            &[
                "RG_HEALTH",
                "RG_HEALTH/cascade",
                "RG_ALERTS",
                "RG_DECISIONS",
                "KV_RG_CASCADE",
            ][..],
        ),
    ] {
        let waited = held.led_any(&name, groups);
        let limit = if waited {
            Duration::from_secs(12)
        } else {
            Duration::from_secs(3)
        };
        assert!(
                pause <= limit,
                "kill of {name}: {service} paused {pause:?} (limit {limit:?}; it had to wait for an election: {waited})"
            );
    }

    // `status` on the degraded cluster (elections over): fast, the
    // running services running (with a warning that their replicas on
    // the dead server are not current).
    let (code, said, took) = status(&system.config);
    eprintln!("cluster: status with {name} down took {took:?}:\n{said}");
    assert!(
        took <= Duration::from_millis(2500),
        "status took {took:?}:\n{said}"
    );
    assert!(!said.contains("DOWN"), "kill of {name}: {said}");
    for service in ["detector", "cascade", "failover"] {
        assert!(
            said.lines().any(|l| l.trim_start().starts_with(service)
                && (l.contains(" OK ") || l.contains(" WARN "))
                && l.contains("running (")),
            "kill of {name}: {service} is not running:\n{said}"
        );
    }
    assert_eq!(code, Some(0), "{said}");

    victim
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_leaders_server_can_die_without_the_system_losing_its_view() {
    let mut w = cluster_world().await;
    kill_and_check(&mut w, Victim::HealthLeader, "us-east-1").await;
    w.system.stop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_meta_leaders_server_can_die_without_the_system_losing_its_view() {
    let mut w = cluster_world().await;
    kill_and_check(&mut w, Victim::MetaLeader, "us-west-2").await;
    w.system.stop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readers_server_can_die_and_a_lost_quorum_comes_back_with_every_event() {
    let mut w = cluster_world().await;
    let victim = kill_and_check(&mut w, Victim::ReaderNode, "eu-west-1").await;
    w.cluster.node(victim).start_again();
    let (cluster, system, js, phases, urls, since) = (
        &mut w.cluster,
        &mut w.system,
        &w.js,
        &mut w.phases,
        &w.urls,
        w.since,
    );
    let (a, b) = match victim {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    wait_replicas_current(js).await;

    // Two nodes die at once: JetStream has no quorum. `status` says so
    // instead of calling the services down, and everything resumes when
    // they are back; the probers keep their events meanwhile.
    cluster.node(a).kill9();
    cluster.node(b).kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (code, said, took) = status(&system.config);
    eprintln!("cluster: status without quorum took {took:?}:\n{said}");
    assert!(
        took <= Duration::from_millis(2500),
        "status took {took:?}:\n{said}"
    );
    assert!(said.contains("no quorum: only 1 of the 3"), "{said}");
    assert!(!said.contains("DOWN"), "{said}");
    assert_eq!(code, Some(3), "cannot tell is exit code 3:\n{said}");
    tokio::time::sleep(Duration::from_secs(7)).await;
    let back = Instant::now();
    cluster.node(a).start_again();
    cluster.node(b).start_again();
    wait_replicas_current(js).await;
    let id = "cluster-quorum".to_owned();
    request_failover(js, &id, "us-east-1").await;
    let (_, outcome) = phases
        .wait_for(
            "a plan after the quorum came back",
            Duration::from_secs(60),
            |_, d| {
                d.id == id && matches!(d.phase(), FailoverPhase::Planned | FailoverPhase::Failed)
            },
        )
        .await;
    assert_eq!(outcome.phase(), FailoverPhase::Planned, "{}", outcome.error);
    eprintln!(
        "cluster: quorum back; a plan {:?} after the nodes restarted",
        back.elapsed()
    );
    wait_dashboard_endpoints(system.http, 21.0, Duration::from_secs(30)).await;
    // Every service pulls again: a durable consumer whose pull got stuck
    // across the elections is found stalled and pulls afresh within
    // about 7 s (5 s idle, then confirmed 1.5 s later).
    let config = system.config.clone();
    let whole = Instant::now();
    let said = wait_until(
        "status OK once the cluster is whole",
        Duration::from_secs(20),
        || {
            let config = config.clone();
            async move {
                let (code, said, _) = tokio::task::spawn_blocking(move || status(&config))
                    .await
                    .unwrap();
                if code == Some(0) {
                    Waited::Done(said)
                } else {
                    Waited::NotYet(said)
                }
            }
        },
    )
    .await;
    eprintln!(
        "cluster: status OK {:?} after the plan and the dashboard:\n{said}",
        whole.elapsed()
    );
    for service in ["detector", "cascade", "failover"] {
        let text = system.metrics(service).await;
        let stalls: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("regionguard_bus_consumer_stalls_total"))
            .collect();
        eprintln!("cluster: {service}: consumer stalls found {stalls:?}");
    }

    // Every event the probers made is in the stream, once.
    system.stop_probers(Duration::from_secs(15));
    let events =
        read_stream::<HealthEvent>(urls, rg_bus::Stream::Health, "rg.health.>", since).await;
    crate::resilience::assert_every_event_once("cluster", &events);
    system.stop_all();
}

/// The server `connection` (a client's name) is connected to, from each
/// server's connection list.
async fn server_of(cluster: &NatsCluster, connection: &str) -> usize {
    wait_until(
        &format!("the server {connection} is connected to"),
        Duration::from_secs(10),
        || async move {
            for (i, node) in cluster.nodes().iter().enumerate() {
                let Some(r) = rg_testkit::http::get(node.monitor_addr(), "/connz?limit=1024").await
                else {
                    continue;
                };
                let connz: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
                let here = connz["connections"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["name"] == connection);
                if here {
                    return Waited::Done(i);
                }
            }
            Waited::NotYet("not in any connection list".into())
        },
    )
    .await
}

/// Found by an unseen fault mix (a partition): a server cut off from its
/// cluster keeps its clients (the TCP connection lives), so they never
/// move by themselves and everything through it fails for as long as the
/// fault lasts; the dashboard counted 0 endpoints for two minutes. Here the
/// gateway's server hangs (SIGSTOP: connections open, nothing answered, to
/// clients or to the cluster): every service on it leaves it for a server
/// that answers for JetStream, the dashboard counts every endpoint again,
/// and when the server thaws no event was lost or stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_is_left_and_the_view_and_decisions_go_on() {
    let mut w = cluster_world().await;
    let victim = server_of(&w.cluster, "regionguard-gateway").await;
    let name = format!("n{}", victim + 1);
    // The test's own client on another server.
    let url = w.cluster.nodes()[(victim + 1) % 3].url();
    let js = jetstream::new(async_nats::connect(url.clone()).await.unwrap());
    let (detector, cascade, http) = (
        w.system.metrics_addr("detector"),
        w.system.metrics_addr("cascade"),
        w.system.http,
    );
    // The test's own view of the decisions, on a server that stays up:
    // `w.phases` may sit on the one that hangs, and a client notices a
    // hung server only by its pings (a minute apart by default).
    let mut phases = Feed::<FailoverDecision>::subscribe(&url, "rg.decisions.failover.>").await;
    let hung_at = Instant::now();
    let samples = sample(
        detector,
        cascade,
        http,
        hung_at,
        hung_at + Duration::from_secs(SAMPLE_FOR),
    );
    let held = roles(&js, &w.cluster).await;
    w.cluster.node(victim).hang();
    eprintln!(
        "cluster: {name} (the gateway's server) hangs; it held {:?} (meta leader: {})",
        held.of(&name),
        held.meta_leader
    );

    // A failover request 5 s after the hang gets a plan.
    tokio::time::sleep_until(hung_at + Duration::from_secs(5)).await;
    let id = format!("hung-{victim}");
    request_failover(&js, &id, "us-east-1").await;
    let Some((_, outcome)) = phases
        .try_wait_for("a plan or a refusal", Duration::from_secs(30), |_, d| {
            d.id == id && matches!(d.phase(), FailoverPhase::Planned | FailoverPhase::Failed)
        })
        .await
    else {
        panic!(
            "{name} hung: no plan or refusal within 30 s of the request; the failover manager's log:\n{}",
            w.system.get("failover").log_tail(400)
        );
    };
    if std::env::var_os("RG_E2E_SERVICE_LOG").is_some() {
        let log = w.system.get("failover").log_tail(3000);
        let notable: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains("DEBUG") || l.contains("rg_bus") || l.contains("failover"))
            .collect();
        eprintln!(
            "cluster: the failover manager's log:\n{}",
            notable[notable.len().saturating_sub(80)..].join("\n")
        );
    }
    eprintln!(
        "cluster: {name} hung: the request made 5 s after got {:?} {:?} after the hang",
        outcome.phase(),
        hung_at.elapsed()
    );
    assert_eq!(
        outcome.phase(),
        FailoverPhase::Planned,
        "{name} hung: the request made 5 s after was refused: {}",
        outcome.error
    );
    tokio::time::sleep_until(hung_at + Duration::from_secs(SAMPLE_FOR)).await;
    let samples = samples.lock().unwrap().clone();
    let back_at = samples
        .iter()
        .rev()
        .take_while(|s| s.endpoints == 21.0)
        .last()
        .map(|s| s.at);
    let detector_pause = longest_pause(&samples, Duration::ZERO, |s| s.detector);
    let cascade_pause = longest_pause(&samples, Duration::ZERO, |s| s.cascade);
    eprintln!(
        "cluster: {name} hung: the dashboard counts every endpoint again from {back_at:?} on; detector paused {detector_pause:?}, cascade {cascade_pause:?}"
    );
    let left = counter(
        &w.system.metrics("gateway").await,
        "regionguard_nats_events_total",
        &["event=\"left_cut_off_server\""],
    );
    assert!(
        left >= 1.0,
        "the gateway did not leave the hung server:\n{}",
        w.system.get("gateway").log_tail(40)
    );
    assert!(
        back_at.is_some_and(|at| at <= Duration::from_secs(25)),
        "{name} hung: the dashboard did not count all 21 endpoints within 25 s (from {back_at:?}):\n{}",
        w.system.get("gateway").log_tail(150)
    );
    for (service, pause) in [("detector", detector_pause), ("cascade", cascade_pause)] {
        assert!(
            pause <= Duration::from_secs(20),
            "{name} hung: {service} paused {pause:?}"
        );
    }

    // `status` with the server still hung: quick, and nothing called down.
    let (_, said, took) = status(&w.system.config);
    eprintln!("cluster: status with {name} hung took {took:?}:\n{said}");
    assert!(
        took <= Duration::from_millis(2500),
        "status took {took:?}:\n{said}"
    );
    assert!(!said.contains("DOWN"), "{name} hung: {said}");

    // Thawed: it rejoins; every event the probers made is stored once.
    w.cluster.node(victim).resume();
    wait_replicas_current(&js).await;
    w.system.stop_probers(Duration::from_secs(15));
    let events =
        read_stream::<HealthEvent>(&url, rg_bus::Stream::Health, "rg.health.>", w.since).await;
    crate::resilience::assert_every_event_once("cluster", &events);
    w.system.stop_all();
}
