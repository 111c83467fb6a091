//! Detection on a DNS server regionguard did not write: Debian's unbound
//! behind Debian's dnsdist, which applies faults per name (no answer, an
//! rcode, a delay) and delays on every answer, changed while the system
//! runs. Every service is the real binary as a process of its own.
//!
//! - Several faults at once in a region (a DynamoDB lookup timing out while
//!   ELB fails at once): nothing of the slow failure is cut off by the fast
//!   one; the DynamoDB alert, the cascade's critical alert and the failover
//!   request come within the probe timeout + 1 s of the first failed lookup.
//! - A busy machine (shared delay of 5 to 40 ms on every answer, in bursts
//!   of tens of seconds): no anomaly alert, no threshold alert above medium,
//!   no request.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use rg_proto::v1::{Alert, AlertState, FailoverDecision, HealthEvent, Severity};
use rg_testkit::{init_logging, Dnsdist, NatsServer, ServiceProcess, Unbound};

use crate::harness::*;

/// Every name the probers look up, answered by unbound.
fn zone() -> Vec<(String, String)> {
    let mut records = Vec::new();
    for (r, region) in rg_proto::domain::DEFAULT_REGIONS.iter().enumerate() {
        for (s, service) in rg_proto::domain::DEFAULT_SERVICES.iter().enumerate() {
            records.push((
                format!("{service}.{region}.amazonaws.com"),
                format!("10.{r}.{s}.1"),
            ));
        }
    }
    records
}

/// NATS, unbound behind dnsdist, and regionguard's services as processes:
/// `vantages` probers per region asking dnsdist, the detector and the
/// cascade service (each with its `/metrics`).
struct World {
    server: NatsServer,
    dns: Dnsdist,
    _unbound: Unbound,
    procs: Vec<ServiceProcess>,
    metrics: BTreeMap<String, SocketAddr>,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl World {
    fn start(vantages: usize, prober: &str) -> Self {
        init_logging();
        let server = NatsServer::start();
        let records = zone();
        let pairs: Vec<(&str, &str)> = records
            .iter()
            .map(|(n, ip)| (n.as_str(), ip.as_str()))
            .collect();
        let unbound = Unbound::start(&pairs, &[]);
        let dns = Dnsdist::start(unbound.addr());
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("regionguard.toml");
        std::fs::write(
            &config,
            format!(
                "[nats]\nservers = [\"{}\"]\nrequest_timeout = \"2s\"\nconnect_timeout = \"1s\"\n\
                 [prober]\nresolvers = [\"{}\"]\n{prober}\n",
                server.url(),
                dns.addr()
            ),
        )
        .unwrap();
        let mut world = Self {
            server,
            dns,
            _unbound: unbound,
            procs: Vec::new(),
            metrics: BTreeMap::new(),
            dir,
            config,
        };
        for region in rg_proto::domain::DEFAULT_REGIONS {
            for v in 0..vantages {
                let vantage = format!("{region}-{}", ["a", "b", "c"][v]);
                world.spawn(
                    &format!("prober-{vantage}"),
                    "PROBER",
                    &["prober", "--region", region, "--vantage", &vantage],
                );
            }
        }
        world.spawn("detector", "DETECTOR", &["detector"]);
        world.spawn("cascade", "CASCADE", &["cascade"]);
        world
    }

    fn spawn(&mut self, name: &str, section: &str, args: &[&str]) {
        let (process, metrics) =
            spawn_service(name, section, args, &self.config, self.dir.path(), &[]);
        self.metrics.insert(name.to_owned(), metrics);
        self.procs.push(process);
    }

    fn process(&mut self, name: &str) -> &mut ServiceProcess {
        self.procs
            .iter_mut()
            .find(|p| p.name() == name)
            .unwrap_or_else(|| panic!("no process {name}"))
    }

    async fn metric(&self, service: &str, name: &str) -> f64 {
        let text = rg_testkit::http::get(self.metrics[service], "/metrics")
            .await
            .map(|r| r.body)
            .unwrap_or_default();
        counter(&text, name, &[])
    }

    /// Waits until the detector has decided `n` rounds of every region.
    async fn rounds_decided(&self, n: f64) {
        let addr = self.metrics["detector"];
        rg_testkit::wait_until(
            &format!("{n} rounds decided in every region"),
            Duration::from_secs(90),
            || async move {
                let text = rg_testkit::http::get(addr, "/metrics")
                    .await
                    .map(|r| r.body)
                    .unwrap_or_default();
                let each: Vec<f64> = rg_proto::domain::DEFAULT_REGIONS
                    .iter()
                    .map(|r| {
                        counter(
                            &text,
                            "regionguard_detector_rounds_total",
                            &[&format!("region=\"{r}\"")],
                        )
                    })
                    .collect();
                if each.iter().all(|c| *c >= n) {
                    rg_testkit::Waited::Done(())
                } else {
                    rg_testkit::Waited::NotYet(format!("{each:?}"))
                }
            },
        )
        .await;
    }

    fn stop(mut self) {
        for p in &mut self.procs {
            let status = p.terminate(Duration::from_secs(15));
            assert!(
                status.is_some_and(|s| s.success()),
                "{} did not stop cleanly: {status:?}\n{}",
                p.name(),
                p.log_tail(20)
            );
        }
        drop(self.server);
    }
}

fn firing(a: &Alert) -> bool {
    a.state == AlertState::Firing as i32
}

/// A region, its faults (service, fault), and whether DynamoDB's is a DNS
/// failure (then the cascade requests a failover at once).
type FaultMix<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);

/// The probe timeout of the tests with faults.
const TIMEOUT: Duration = Duration::from_secs(1);

/// One fault mix in `region`: applies `faults`, finds the round in which
/// DynamoDB first failed, and measures from that round's first failed
/// lookup to the DynamoDB threshold alert, the cascade's critical alert and
/// (with `request`) the failover request.
async fn mixed_faults(
    world: &World,
    region: &str,
    faults: &[(&str, &str)],
    request: bool,
) -> BTreeMap<&'static str, i64> {
    let url = world.server.url();
    let mut alerts = AlertFeed::open(&url).await;
    let mut requests =
        Feed::<FailoverDecision>::subscribe(&url, "rg.decisions.failover.requested").await;
    let mut events = Feed::<HealthEvent>::subscribe(&url, &format!("rg.health.{region}.>")).await;
    let dynamodb = format!("dynamodb.{region}.amazonaws.com");
    for (service, fault) in faults {
        let name = format!("{service}.{region}.amazonaws.com");
        match *fault {
            "timeout" => world.dns.drop_queries(&name),
            f if f.starts_with("delay ") => world.dns.delay(&name, f[6..].parse().unwrap()),
            rcode => world.dns.answer_rcode(&name, rcode),
        }
    }
    let (_, first_ddb) = events
        .wait_for(
            "a failed DynamoDB lookup",
            Duration::from_secs(20),
            |_, e| {
                e.endpoint == dynamodb
                    && !e.confirmation
                    && e.status() == rg_proto::v1::Status::Critical
            },
        )
        .await;
    let round = first_ddb.round_id;
    let (_, ddb_alert) = alerts
        .wait_for(
            "the DynamoDB threshold alert",
            Duration::from_secs(15),
            |s, a| s == "rg.alerts.threshold.critical" && a.endpoint == dynamodb && firing(a),
        )
        .await;
    let (_, cascade) = alerts
        .wait_for(
            "the cascade's critical alert",
            Duration::from_secs(15),
            |s, a| s == "rg.alerts.cascade.critical" && a.region == region && firing(a),
        )
        .await;
    let request_at = if request {
        let (_, r) = requests
            .wait_for("the failover request", Duration::from_secs(15), |_, d| {
                d.from_region == region
            })
            .await;
        Some(r.at_unix_ms)
    } else {
        None
    };
    // Every lookup of the round, to find its first failure.
    events.drain_for(Duration::from_millis(300)).await;
    let first_failed = events
        .seen
        .iter()
        .map(|(_, e)| e)
        .filter(|e| {
            e.round_id == round && !e.confirmation && e.status() != rg_proto::v1::Status::Healthy
        })
        .map(|e| e.observed_at_unix_ms)
        .min()
        .unwrap();
    assert!(
        ddb_alert.id.ends_with(&format!(":{round}")),
        "the DynamoDB alert is about round {round}: {}",
        ddb_alert.id
    );
    for (service, _) in faults {
        assert!(
            cascade.summary.contains(&format!("{service} critical")),
            "the cascade alert names {service}: {}",
            cascade.summary
        );
    }
    assert!(
        !ddb_alert.predicted_impact.is_empty() && !ddb_alert.recommended_actions.is_empty(),
        "a threshold alert says what it will hurt and what to do: {ddb_alert:#?}"
    );
    let mut took = BTreeMap::new();
    took.insert(
        "threshold alert",
        ddb_alert.emitted_at_unix_ms - first_failed,
    );
    took.insert("cascade alert", cascade.emitted_at_unix_ms - first_failed);
    if let Some(at) = request_at {
        took.insert("failover request", at - first_failed);
    }
    eprintln!("{region} {faults:?}: from the first failed lookup (round {round}): {took:?}");
    world.dns.clear();
    alerts
        .wait_for(
            "the DynamoDB alert to resolve",
            Duration::from_secs(20),
            |_, a| a.id == ddb_alert.id && a.state == AlertState::Resolved as i32,
        )
        .await;
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_dynamodb_failure_is_not_masked_by_fast_failures_of_other_services() {
    let world = World::start(
        2,
        "interval = \"3s\"\ntimeout = \"1s\"\n[prober.confirm]\nspacing = \"100ms\"",
    );
    world.rounds_decided(3.0).await;
    let budget = (TIMEOUT + Duration::from_secs(1)).as_millis() as i64;

    // The case: DynamoDB gets no answer while ELB answers SERVFAIL
    // at once; then a refusal among fast failures; then a slow DynamoDB.
    let cases: [FaultMix; 3] = [
        (
            "us-east-1",
            &[
                ("dynamodb", "timeout"),
                ("elasticloadbalancing", "SERVFAIL"),
            ],
            true,
        ),
        (
            "us-west-2",
            &[
                ("elasticloadbalancing", "NXDOMAIN"),
                ("dynamodb", "REFUSED"),
                ("ec2", "SERVFAIL"),
            ],
            true,
        ),
        (
            "eu-west-1",
            &[
                ("dynamodb", "delay 600"),
                ("elasticloadbalancing", "SERVFAIL"),
            ],
            false,
        ),
    ];
    for (region, faults, dns_failure) in cases {
        let took = mixed_faults(&world, region, faults, dns_failure).await;
        for (what, ms) in &took {
            // A DynamoDB that answers, slowly, is critical at once for the
            // detector; for the cascade it is not a DNS failure, so the
            // region's severity builds over `confirm_rounds` (2) rounds.
            let allowed = if dns_failure || *what == "threshold alert" {
                budget
            } else {
                budget + 3_000
            };
            assert!(
                *ms <= allowed,
                "{region} {faults:?}: the {what} came {ms} ms after the first failed lookup (allowed {allowed} ms)"
            );
        }
    }

    // No event was left unjudged: none came after its round was decided.
    for (service, metric) in [
        ("detector", "regionguard_detector_late_events_total"),
        ("cascade", "regionguard_cascade_late_events_total"),
    ] {
        assert_eq!(world.metric(service, metric).await, 0.0, "{metric}");
    }
    world.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prober_killed_and_restarted_under_the_same_id_is_judged_again() {
    let mut world = World::start(
        3,
        "interval = \"3s\"\ntimeout = \"1s\"\n[prober.confirm]\nspacing = \"100ms\"",
    );
    world.rounds_decided(2.0).await;
    // One prober of us-east-1 dies, and comes back under the same id.
    world.process("prober-us-east-1-c").kill9();
    tokio::time::sleep(Duration::from_secs(10)).await;
    world.process("prober-us-east-1-c").start_again();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let late_before = world
        .metric("detector", "regionguard_detector_late_events_total")
        .await;
    // A DynamoDB timeout at all three vantages is judged with all three.
    let url = world.server.url();
    let mut alerts = AlertFeed::open(&url).await;
    world.dns.drop_queries("dynamodb.us-east-1.amazonaws.com");
    let (_, alert) = alerts
        .wait_for("the DynamoDB alert", Duration::from_secs(15), |s, a| {
            s == "rg.alerts.threshold.critical" && firing(a)
        })
        .await;
    assert!(
        alert.summary.ends_with("(timeout) at 3/3 vantage points"),
        "{}",
        alert.summary
    );
    world.dns.clear();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let late_after = world
        .metric("detector", "regionguard_detector_late_events_total")
        .await;
    assert_eq!(
        late_after, late_before,
        "rounds after the restart left events unjudged"
    );
    world.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_machine_whose_latency_wanders_raises_no_anomaly_no_warning_above_medium_and_no_request(
) {
    let rounds = soak_rounds();
    let world = World::start(2, "interval = \"1s\"\ntimeout = \"400ms\"");
    let url = world.server.url();
    let mut alerts = AlertFeed::open(&url).await;
    let mut requests =
        Feed::<FailoverDecision>::subscribe(&url, "rg.decisions.failover.requested").await;
    // Past the anomaly model's warm-up (200 rows of history: 7 regions'
    // worth of rounds) before the machine gets busy.
    world.rounds_decided(20.0).await;
    let started = SystemTime::now();

    // Busy spells of 10 to 40 s, each at a shared delay of 5 to 40 ms on
    // every answer (changing every few seconds), between quiet spells of
    // 10 to 30 s. A fixed seed: the same weather every run.
    let mut seed: u64 = 0x5eed_1e55;
    let mut next = move |lo: u64, hi: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (seed >> 33) % (hi - lo + 1)
    };
    let end = tokio::time::Instant::now() + Duration::from_secs(rounds);
    let (mut busy_s, mut spells, mut delays) = (0u64, 0u32, Vec::new());
    while tokio::time::Instant::now() < end {
        let quiet = Duration::from_secs(next(10, 30));
        tokio::time::sleep(quiet.min(end.saturating_duration_since(tokio::time::Instant::now())))
            .await;
        let spell_end = tokio::time::Instant::now() + Duration::from_secs(next(10, 40));
        spells += 1;
        while tokio::time::Instant::now() < spell_end.min(end) {
            let ms = next(5, 40) as u32;
            delays.push(ms);
            world.dns.delay_all(ms);
            let hold = Duration::from_secs(next(2, 6));
            tokio::time::sleep(hold).await;
            busy_s += hold.as_secs();
        }
        world.dns.delay_all(0);
    }
    alerts.drain_for(Duration::from_secs(5)).await;
    requests.drain_for(Duration::from_millis(100)).await;

    let mut by_subject: BTreeMap<String, u64> = BTreeMap::new();
    for (subject, a) in &alerts.seen {
        if firing(a) {
            *by_subject.entry(subject.clone()).or_default() += 1;
            eprintln!("busy soak alert on {subject}: {}", a.summary);
        }
    }
    let held_back = world
        .metric("detector", "regionguard_detector_anomaly_held_back_total")
        .await;
    let decided = world
        .metric("detector", "regionguard_detector_rounds_total")
        .await;
    eprintln!(
        "busy soak: {rounds} s of 3 regions x 2 vantages x 7 endpoints at 1 s rounds through dnsdist+unbound; \
         {spells} busy spells, {busy_s} s busy, shared delays {delays:?} ms; \
         {decided} region-rounds decided; anomaly verdicts held back by the practical floor: {held_back}; \
         alerts fired by subject: {by_subject:?}; failover requests: {}; since {started:?}",
        requests.seen.len()
    );
    let loud: Vec<&(String, Alert)> = alerts
        .seen
        .iter()
        .filter(|(s, a)| {
            firing(a)
                && (s.starts_with("rg.alerts.anomaly.") || a.severity > Severity::Medium as i32)
        })
        .collect();
    assert!(loud.is_empty(), "false alarms on a busy machine: {loud:#?}");
    assert!(requests.seen.is_empty(), "requests: {:#?}", requests.seen);
    assert!(
        spells > 0 && !delays.is_empty(),
        "the machine was never busy"
    );
    world.stop();
}
