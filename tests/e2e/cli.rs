//! The `regionguard` binary as an operator uses it: config errors, tail and
//! fault control.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rg_proto::v1::{HealthEvent, Status};
use rg_testkit::{init_logging, NatsServer};

use crate::harness::*;

const WAIT_LONG: Duration = Duration::from_secs(20);

fn regionguard() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_regionguard"));
    c.env_remove("RG_CONFIG")
        .env_remove("RG_NATS_URL")
        .env("RG_LOG", "warn");
    c
}

fn run_with_config(args: &[&str], toml: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("regionguard.toml");
    std::fs::write(&path, toml).unwrap();
    regionguard()
        .args(args)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap()
}

#[test]
fn bad_config_exits_2_and_names_each_bad_key() {
    let cases = [
        ("[prober]\nintervall = \"5s\"\n", "prober.intervall"),
        ("[prober]\ninterval = \"-5s\"\n", "prober.interval"),
        (
            "[prober]\nresolvers = [\"300.1.1.1:53\"]\n",
            "prober.resolvers[0]",
        ),
        (
            "[nats]\nservers = [\"nats://127.0.0.1:4222\"]\nbogus = true\n",
            "nats.bogus",
        ),
    ];
    for (toml, key) in cases {
        for command in [
            &["check-config"][..],
            &["prober", "--region", "us-east-1"][..],
        ] {
            let out = run_with_config(command, toml);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{command:?} with {toml:?}: {stderr}"
            );
            assert!(
                stderr.contains(key),
                "{command:?}: stderr does not name {key}: {stderr}"
            );
        }
    }
}

#[test]
fn every_bad_key_is_reported_at_once() {
    let out = run_with_config(
        &["check-config"],
        "[prober]\ninterval = \"0s\"\nresolvers = [\"nope\"]\nconcurrency = 0\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for key in [
        "prober.interval",
        "prober.resolvers[0]",
        "prober.concurrency",
    ] {
        assert!(stderr.contains(key), "missing {key}: {stderr}");
    }
}

#[test]
fn the_documented_example_config_is_valid() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/config/regionguard.toml"
    );
    let out = regionguard()
        .args(["check-config", "--config", path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = regionguard().arg("check-config").output().unwrap();
    assert!(
        out.status.success(),
        "built-in defaults: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_each_message_as_a_json_line() {
    init_logging();
    let server = NatsServer::start();
    let nats = nats_config(&server.url());
    // Streams must exist for the JetStream publish below.
    let token = tokio_util::sync::CancellationToken::new();
    let bus = rg_bus::Bus::connect(&nats, "e2e-tail", &token)
        .await
        .unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_regionguard"))
        .args([
            "tail",
            "rg.health.>",
            "--count",
            "2",
            "--nats",
            &server.url(),
        ])
        .env("RG_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // tail says so on stderr once subscribed; publish until it has printed.
    let event = HealthEvent {
        region: "eu-west-1".into(),
        service: "s3".into(),
        status: Status::Warning as i32,
        response_time_us: 150_000,
        ..Default::default()
    };
    let publisher = tokio::spawn(async move {
        for _ in 0..50 {
            let _ignored = bus
                .publisher
                .publish("rg.health.eu-west-1.s3".into(), &event, None)
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let out = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    publisher.abort();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0]["subject"], "rg.health.eu-west-1.s3");
    assert_eq!(lines[0]["type"], "HealthEvent");
    assert_eq!(lines[0]["message"]["status"], "STATUS_WARNING");
    assert_eq!(lines[0]["message"]["response_time_us"], "150000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_cli_injects_lists_and_clears() {
    init_logging();
    let server = NatsServer::start();
    let nats = nats_config(&server.url());
    let (_dns, simulator) = start_simulator(&nats).await;
    let url = server.url();
    let cli = move |args: &[&str]| {
        let out = regionguard()
            .args(args)
            .args(["--nats", &url])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The simulator subscribes right after start; retry briefly until it answers.
    let mut inject = (None, String::new(), String::new());
    for _ in 0..50 {
        inject = tokio::task::block_in_place(|| {
            cli(&[
                "fault",
                "inject",
                "--region",
                "us-east-1",
                "--service",
                "dynamodb",
                "--kind",
                "empty-answer",
                "--for",
                "120s",
            ])
        });
        if inject.0 == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(inject.0, Some(0), "{inject:?}");
    assert!(
        inject.1.contains("us-east-1/dynamodb") && inject.1.contains("empty-answer"),
        "{inject:?}"
    );
    assert!(inject.1.contains("expires in"), "{inject:?}");

    let bad = tokio::task::block_in_place(|| {
        cli(&[
            "fault",
            "inject",
            "--region",
            "us-east-1",
            "--kind",
            "explode",
        ])
    });
    assert_eq!(bad.0, Some(2), "{bad:?}");
    assert!(bad.2.contains("explode"), "{bad:?}");

    let list = tokio::task::block_in_place(|| cli(&["fault", "list", "--json"]));
    let reply: serde_json::Value = serde_json::from_str(&list.1).unwrap();
    assert_eq!(reply["active"].as_array().unwrap().len(), 1, "{list:?}");

    let clear = tokio::task::block_in_place(|| cli(&["fault", "clear", "--all"]));
    assert_eq!(clear.0, Some(0), "{clear:?}");
    assert!(clear.1.contains("no active faults"), "{clear:?}");
    simulator.stop().await;
}

#[test]
fn fault_cli_without_a_simulator_says_what_to_start() {
    let server = NatsServer::start();
    let out = regionguard()
        .args(["fault", "list", "--nats", &server.url()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("regionguard simulator"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_the_system_and_stops_everything_it_started() {
    init_logging();
    let (mut up, ports) = Up::start(&["us-east-1", "eu-west-1"], "", &[]).await;
    let (nats_port, dns_port, http_port) = (ports.nats, ports.dns, ports.http);
    let config = up.config.clone();
    let text = up.printed.clone();
    assert!(text.contains("started nats-server -js"), "{text}");
    assert!(
        text.contains("prober us-east-1: publishing")
            && text.contains("prober eu-west-1: publishing"),
        "{text}"
    );

    assert!(
        text.contains(&format!("dashboard on http://127.0.0.1:{http_port}/")),
        "{text}"
    );
    assert!(text.contains("[7/8] failover: plan mode"), "{text}");
    // The dashboard's API answers with both regions' endpoints.
    let http: std::net::SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    let snapshot = rg_testkit::http::get(http, "/api/snapshot")
        .await
        .expect("the gateway answers");
    assert_eq!(snapshot.status, 200, "{}", snapshot.body);
    assert!(
        snapshot.body.contains("\"region\":\"us-east-1\"")
            && snapshot.body.contains("\"region\":\"eu-west-1\""),
        "{}",
        snapshot.body
    );
    // ... and, within a few rounds, every endpoint healthy (2 regions x 7).
    rg_testkit::wait_until(
        "every endpoint healthy",
        Duration::from_secs(30),
        || async {
            let Some(r) = rg_testkit::http::get(http, "/api/snapshot").await else {
                return rg_testkit::Waited::NotYet("no answer".into());
            };
            let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
            let (healthy, total) = (
                num(&v["summary"]["healthy"]),
                num(&v["summary"]["total_endpoints"]),
            );
            if total == 14.0 && healthy == total {
                rg_testkit::Waited::Done(())
            } else {
                rg_testkit::Waited::NotYet(format!("{healthy}/{total} healthy"))
            }
        },
    )
    .await;

    // Health events of both regions are flowing through the NATS it started.
    let client = async_nats::connect(format!("nats://127.0.0.1:{nats_port}"))
        .await
        .unwrap();
    let mut sub = client.subscribe("rg.health.>").await.unwrap();
    let mut regions = std::collections::BTreeSet::new();
    while regions.len() < 2 {
        let m = tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut sub))
            .await
            .expect("health events within 10s")
            .unwrap();
        let e = <HealthEvent as prost::Message>::decode(m.payload.as_ref()).unwrap();
        regions.insert(e.region);
    }
    drop(sub);

    // `regionguard status` sees every component.
    let status = regionguard()
        .args(["status", "--config"])
        .arg(&config)
        .env_remove("RG_CONFIG")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    for component in [
        "nats",
        "prober",
        "detector",
        "cascade",
        "failover",
        "gateway",
        "simulator",
    ] {
        assert!(
            said.lines()
                .any(|l| l.split_whitespace().take(2).collect::<Vec<_>>() == [component, "OK"]),
            "{component} not OK:\n{said}"
        );
    }
    assert!(
        said.contains("us-east-1: 1 vantage(s), eu-west-1: 1 vantage(s)"),
        "{said}"
    );

    // The October 2025 failure through the whole system: a critical
    // cascade alert, a failover plan, then recovery.
    let mut critical = client
        .subscribe("rg.alerts.cascade.critical")
        .await
        .unwrap();
    let mut planned = client
        .subscribe("rg.decisions.failover.planned")
        .await
        .unwrap();
    up.cli(&[
        "fault",
        "inject",
        "--region",
        "us-east-1",
        "--service",
        "dynamodb",
        "--kind",
        "empty-answer",
    ]);
    let m = next_message(&mut critical)
        .await
        .expect("a critical cascade alert within 30s");
    let alert = <rg_proto::v1::Alert as prost::Message>::decode(m.payload.as_ref()).unwrap();
    assert_eq!(alert.region, "us-east-1");
    assert_eq!(alert.state(), rg_proto::v1::AlertState::Firing);
    let m = next_message(&mut planned)
        .await
        .expect("a failover plan within 30s");
    let plan =
        <rg_proto::v1::FailoverDecision as prost::Message>::decode(m.payload.as_ref()).unwrap();
    assert_eq!(
        (plan.from_region.as_str(), plan.to_region.as_str()),
        ("us-east-1", "eu-west-1"),
        "{plan:?}"
    );
    up.cli(&["fault", "clear", "--all"]);
    let m = next_message(&mut critical)
        .await
        .expect("the cascade alert resolved within 30s");
    let resolved = <rg_proto::v1::Alert as prost::Message>::decode(m.payload.as_ref()).unwrap();
    assert_eq!(
        resolved.state(),
        rg_proto::v1::AlertState::Resolved,
        "{resolved:?}"
    );
    assert_eq!(resolved.id, alert.id);
    drop(client);

    // SIGTERM stops every service, then NATS, and up exits 0.
    let (status, rest) = up.stop().await;
    assert!(status.success(), "{status}: {rest}");
    for name in [
        "simulator",
        "prober-us-east-1",
        "prober-eu-west-1",
        "detector",
        "cascade",
        "gateway",
        "failover",
        "nats",
    ] {
        assert!(
            rest.contains(&format!("stopped {name} (exit status: 0)")),
            "{name} not stopped cleanly:\n{rest}"
        );
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", nats_port)).is_err(),
        "nats-server still running"
    );
    assert!(
        std::net::UdpSocket::bind(("127.0.0.1", dns_port)).is_ok(),
        "the simulator still holds its port"
    );
    // No process it started is left: each got this test's config path.
    let mine = config.display().to_string();
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&mine) && !c.contains(" status "))
        .collect();
    assert!(left.is_empty(), "left running: {left:#?}");
}

/// The next message of `sub` within 30 s.
async fn next_message(sub: &mut async_nats::Subscriber) -> Option<async_nats::Message> {
    tokio::time::timeout(Duration::from_secs(30), futures::StreamExt::next(sub))
        .await
        .ok()
        .flatten()
}

/// One HTTP/1.0 GET on loopback; returns the body.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prober_process_serves_metrics_and_drains_on_sigterm() {
    init_logging();
    let server = NatsServer::start();
    let nats = nats_config(&server.url());
    let (dns, simulator) = start_simulator(&nats).await;
    let metrics_port = rg_testkit::free_port();
    let mut feed = HealthFeed::open(&nats, "e2e-process").await;
    let mut prober = tokio::process::Command::new(env!("CARGO_BIN_EXE_regionguard"))
        .args([
            "prober",
            "--region",
            "us-west-2",
            "--vantage",
            "usw2-proc",
            "--interval",
            "1s",
        ])
        .args(["--resolver", &dns.to_string(), "--nats", &server.url()])
        .env("RG_PROBER__TIMEOUT", "300ms")
        .env(
            "RG_PROBER__METRICS_LISTEN",
            format!("127.0.0.1:{metrics_port}"),
        )
        .env("RG_LOG", "warn")
        .env_remove("RG_CONFIG")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    feed.wait_for("an event from the prober process", WAIT_LONG, |e| {
        e.vantage == "usw2-proc"
    })
    .await;

    // The event reached the stream; the prober counts it once its PubAck
    // is back, a moment later.
    let metrics = rg_testkit::wait_until("the published counter", WAIT_LONG, || async move {
        let m = tokio::task::spawn_blocking(move || http_get(metrics_port, "/metrics"))
            .await
            .unwrap();
        if m.contains("regionguard_prober_events_published_total") {
            rg_testkit::Waited::Done(m)
        } else {
            rg_testkit::Waited::NotYet(m)
        }
    })
    .await;
    for name in [
        "regionguard_prober_lookups_total{",
        "regionguard_prober_lookup_duration_seconds_bucket{",
        "regionguard_prober_events_published_total",
        "regionguard_nats_events_total{",
        "regionguard_up{service=\"prober\"} 1",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}:\n{metrics}");
    }
    let health = tokio::task::spawn_blocking(move || http_get(metrics_port, "/healthz"))
        .await
        .unwrap();
    assert_eq!(health.trim(), "ok");

    let pid = prober.id().unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(Duration::from_secs(15), prober.wait())
        .await
        .expect("stops within 15s")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status}");
    simulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_pipeline_times_every_stage_and_finds_no_event_lost() {
    // The benchmark of BENCHMARKS.md, small: two injections into a system
    // started by `up`, its report read as JSON.
    init_logging();
    let (mut up, ports) = Up::start(
        &["us-east-1", "eu-west-1"],
        "[cascade.failover]\ncooldown = \"1s\"\n",
        &[],
    )
    .await;
    // A few healthy rounds decided.
    wait_rounds_decided(&format!("nats://127.0.0.1:{}", ports.nats), "detector", 3).await;
    let pid = up.child.id().unwrap().to_string();
    let out = up.cli(&[
        "bench",
        "pipeline",
        "--injections",
        "2",
        "--raw-messages",
        "2000",
        "--stage-timeout",
        "30s",
        "--up-pid",
        &pid,
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(out.trim()).expect("a JSON report");
    let stages = report["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 4, "{report:#}");
    for s in stages {
        assert_eq!(
            s["seen"], 2,
            "every injection reached {}: {report:#}",
            s["name"]
        );
        let p50 = s["p50_ms"].as_f64().unwrap();
        assert!(p50 > 0.0 && p50 < 5_000.0, "{s}");
    }
    assert!(report["injections"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["recovered"] == true));
    let loss = &report["loss"];
    assert_eq!(loss["lost"], 0, "{loss}");
    assert!(loss["events"].as_u64().unwrap() > 14, "{loss}");
    let names: Vec<&str> = report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for service in [
        "nats-server",
        "simulator",
        "prober us-east-1",
        "detector",
        "cascade",
        "gateway",
    ] {
        assert!(
            names.contains(&service),
            "{service} not measured: {names:?}"
        );
    }
    assert!(
        report["raw"]["publish_per_second"].as_f64().unwrap() > 0.0,
        "{report:#}"
    );
    let (status, _) = up.stop().await;
    assert!(status.success());
}

/// Without CA certificates the AWS SDK's HTTPS client panics when it is
/// built (seen in a container made from debian:bookworm-slim): regionguard
/// looks first and says what is missing, in `check-config --aws` and in the
/// failover service, which exits with that message instead of a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ca_certificates_the_aws_side_says_so_instead_of_panicking() {
    let dir = tempfile::tempdir().unwrap();
    // The loader reads SSL_CERT_FILE and SSL_CERT_DIR when either is set
    // (this machine sets both): an empty file and an empty directory.
    let empty = dir.path().join("no-certificates.pem");
    std::fs::write(&empty, "").unwrap();
    let no_dir = dir.path().join("no-certificates");
    std::fs::create_dir(&no_dir).unwrap();
    let server = NatsServer::start();
    let config = dir.path().join("regionguard.toml");
    std::fs::write(
        &config,
        format!(
            "[nats]\nservers = [\"{}\"]\n[failover]\nmode = \"plan\"\n",
            server.url()
        ),
    )
    .unwrap();

    let out = regionguard()
        .args([
            "check-config",
            "--aws",
            "--aws-endpoint",
            "http://127.0.0.1:9",
            "--config",
        ])
        .arg(&config)
        .env("SSL_CERT_FILE", &empty)
        .env("SSL_CERT_DIR", &no_dir)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("FAIL no CA certificate found"), "{said}");
    assert!(said.contains("ca-certificates"), "{said}");
    assert!(!said.contains("panicked"), "{said}");

    let out = regionguard()
        .args(["failover", "--config"])
        .arg(&config)
        .env("SSL_CERT_FILE", &empty)
        .env("SSL_CERT_DIR", &no_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
        .wait_with_output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the failover manager ran without CA certificates:\n{said}"
    );
    assert!(said.contains("starting the AWS clients"), "{said}");
    assert!(said.contains("no CA certificate found"), "{said}");
    assert!(!said.contains("panicked"), "{said}");
}

/// `failover request` when NATS cannot store it (here: no stream, as before
/// `provision` or during a JetStream outage): retried with one message id
/// for `--wait`, then exit status 6 saying it may still be stored, not a
/// bare failure that an operator would read as "nothing was asked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_request_nats_does_not_confirm_exits_6_and_says_it_may_still_be_stored() {
    let server = NatsServer::start();
    let started = tokio::time::Instant::now();
    let out = regionguard()
        .args([
            "failover",
            "request",
            "--from",
            "us-east-1",
            "--wait",
            "3s",
            "--nats",
        ])
        .arg(server.url())
        .output()
        .unwrap();
    let took = started.elapsed();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{said}");
    assert!(said.contains("NATS did not confirm the request"), "{said}");
    assert!(said.contains("at most once"), "{said}");
    assert!(
        said.contains("retrying"),
        "the retries are not shown:\n{said}"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
}
