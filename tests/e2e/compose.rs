//! docker compose, run for real: `deploy/compose.yaml` (and its overrides)
//! with Debian's docker-compose, the regionguard image built from this
//! test's binary (`scripts/docker-image.sh`, `deploy/Dockerfile.host`) and
//! the base images `scripts/docker-deps.sh` makes (stand-ins built from
//! Debian's packages where nothing can be pulled). Each test has its own
//! compose project and dashboard port; they run one at a time (the compose
//! network's subnet is fixed) and `down -v` runs even when one fails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;
use tokio::sync::{Mutex, OnceCell};
use tokio::time::Instant;

use rg_testkit::{free_port, init_logging, wait_until, Waited};

const IMAGE: &str = "regionguard:e2e";

/// One compose project at a time: the network's subnet is fixed.
pub(crate) static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());
static IMAGE_BUILT: OnceCell<()> = OnceCell::const_new();

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The compose program: `docker compose` (v2) when the plugin answers,
/// else Debian's `docker-compose` (v1.29).
async fn compose_program() -> Vec<String> {
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .await
        .is_ok_and(|o| o.status.success());
    if v2 {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

/// Panics with what to run when there is no engine or a base image.
async fn require_docker() {
    let info = Command::new("docker").arg("info").output().await;
    assert!(
        info.as_ref().is_ok_and(|o| o.status.success()),
        "no Docker engine answers: run scripts/docker-deps.sh (as root; scripts/test.sh does) ({info:?})"
    );
    for image in ["debian:bookworm-slim", "nats:2.10-alpine"] {
        let found = Command::new("docker")
            .args(["image", "inspect", image])
            .output()
            .await
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "image {image} is missing: run scripts/docker-deps.sh"
        );
    }
    IMAGE_BUILT
        .get_or_init(|| async {
            let out = Command::new(repo().join("scripts/docker-image.sh"))
                .args(["--bin", env!("CARGO_BIN_EXE_regionguard"), "--tag", IMAGE])
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "building {IMAGE}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        })
        .await;
}

/// A compose project of its own, taken down with its volumes on drop.
struct Compose {
    program: Vec<String>,
    project: String,
    files: Vec<PathBuf>,
    http: SocketAddr,
    /// Variables the compose files read (passwords of the auth override).
    env: Vec<(String, String)>,
}

impl Compose {
    async fn new(name: &str, files: &[&str]) -> Compose {
        require_docker().await;
        let project = format!("rge2e{}{name}", std::process::id());
        Compose {
            program: compose_program().await,
            project,
            files: files
                .iter()
                .map(|f| repo().join("deploy").join(f))
                .collect(),
            http: SocketAddr::from(([127, 0, 0, 1], free_port())),
            env: Vec::new(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.program[0]);
        c.args(&self.program[1..]).args(["-p", &self.project]);
        for f in &self.files {
            c.arg("-f").arg(f);
        }
        c.args(args)
            .env("RG_IMAGE", IMAGE)
            .env("RG_HTTP_PORT", self.http.port().to_string())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true);
        c
    }

    /// Runs a compose command; panics with its output unless it succeeds.
    async fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().await.unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "compose {args:?} failed:\n{text}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `regionguard ARGS` inside the gateway's container, as the README
    /// says to run the CLI.
    async fn regionguard(&self, args: &[&str]) -> String {
        let mut all = vec!["exec", "-T", "gateway", "regionguard"];
        all.extend_from_slice(args);
        self.run(&all).await
    }

    /// `regionguard ARGS` in the gateway's container with `env` (`-e`),
    /// bounded by `timeout`: its exit code (124 when it was stopped) and
    /// what it printed.
    async fn regionguard_as(&self, env: &[&str], args: &[&str]) -> (Option<i32>, String) {
        let mut all = vec!["exec", "-T"];
        for e in env {
            all.extend(["-e", *e]);
        }
        all.extend(["gateway", "timeout", "30", "regionguard"]);
        all.extend_from_slice(args);
        let out = self.command(&all).output().await.unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// Every container of the project (running or not): id, service, and
    /// state (`healthy`, `starting`, `unhealthy`, or the state without a
    /// health check).
    async fn containers(&self) -> Vec<(String, String, String)> {
        let label = format!("label=com.docker.compose.project={}", self.project);
        let ids = docker(&["ps", "-aq", "--filter", &label]).await;
        let mut out = Vec::new();
        for id in ids.split_whitespace() {
            let state = docker(&[
                "inspect",
                "-f",
                "{{index .Config.Labels \"com.docker.compose.service\"}} {{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}",
                id,
            ])
            .await;
            let (service, health) = state.trim().split_once(' ').unwrap_or((state.trim(), ""));
            out.push((id.to_owned(), service.to_owned(), health.to_owned()));
        }
        out
    }

    /// Waits until `expected` containers are all healthy; returns how long.
    async fn wait_healthy(&self, expected: usize, deadline: Duration) -> Duration {
        let start = Instant::now();
        wait_until("every container healthy", deadline, || async {
            let all = self.containers().await;
            let healthy = all.iter().filter(|c| c.2 == "healthy").count();
            if all.len() == expected && healthy == expected {
                Waited::Done(())
            } else {
                Waited::NotYet(format!("{all:?}"))
            }
        })
        .await;
        start.elapsed()
    }

    /// Waits until the one-shot `provision` has exited and `healthy`
    /// other containers are healthy (the auth override); returns how long.
    async fn wait_provisioned(&self, healthy: usize) -> Duration {
        let start = Instant::now();
        wait_until(
            &format!("provision done and {healthy} containers healthy"),
            Duration::from_secs(120),
            || async {
                let all = self.containers().await;
                let provisioned = all.iter().any(|c| c.1 == "provision" && c.2 == "exited");
                let up = all.iter().filter(|c| c.2 == "healthy").count();
                if provisioned && up == healthy && all.len() == healthy + 1 {
                    Waited::Done(())
                } else {
                    Waited::NotYet(format!("{all:?}"))
                }
            },
        )
        .await;
        start.elapsed()
    }

    /// Waits (60 s at most) for the dashboard to list a planned failover
    /// away from `region`.
    async fn wait_plan_from(&self, region: &str) {
        wait_until("a failover plan", Duration::from_secs(60), || async {
            let decisions = self.api("/api/decisions").await.unwrap_or_default();
            let planned = decisions["decisions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|d| d["phase"] == "FAILOVER_PHASE_PLANNED" && d["from_region"] == region);
            if planned {
                Waited::Done(())
            } else {
                Waited::NotYet(format!("{decisions}"))
            }
        })
        .await;
    }

    async fn api(&self, path: &str) -> Option<Value> {
        let r = rg_testkit::http::get(self.http, path).await?;
        (r.status == 200)
            .then(|| serde_json::from_str(&r.body).ok())
            .flatten()
    }

    /// Waits for a snapshot with `total` endpoints, all healthy.
    async fn wait_all_healthy(&self, total: u64, deadline: Duration) {
        wait_until(
            "the dashboard counts every endpoint healthy",
            deadline,
            || async {
                let s = self.api("/api/snapshot").await;
                let m = s.as_ref().map(|s| &s["summary"]);
                let got = |k: &str| m.and_then(|m| m[k].as_u64()).unwrap_or(0);
                if got("total_endpoints") == total && got("healthy") == total {
                    Waited::Done(())
                } else {
                    Waited::NotYet(format!("{m:?}"))
                }
            },
        )
        .await;
    }

    async fn logs(&self) -> String {
        let out = self
            .command(&["logs", "--no-color", "--tail", "40"])
            .output()
            .await
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        // `down -v` even when the test failed: no container, network or
        // volume is left behind.
        let mut c = std::process::Command::new(&self.program[0]);
        c.args(&self.program[1..]).args(["-p", &self.project]);
        for f in &self.files {
            c.arg("-f").arg(f);
        }
        let _done = c
            .args(["down", "-v", "--remove-orphans", "-t", "5"])
            .env("RG_IMAGE", IMAGE)
            .env("RG_HTTP_PORT", self.http.port().to_string())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// `docker ARGS`, panicking with what it said when it fails.
async fn docker(args: &[&str]) -> String {
    crate::harness::docker(args)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// What `docker` lists of a project after it was taken down.
async fn leftovers(project: &str) -> Vec<String> {
    let label = format!("label=com.docker.compose.project={project}");
    let mut left = Vec::new();
    for (what, args) in [
        ("container", vec!["ps", "-aq", "--filter", &label]),
        ("network", vec!["network", "ls", "-q", "--filter", &label]),
        ("volume", vec!["volume", "ls", "-q", "--filter", &label]),
    ] {
        for id in docker(&args).await.split_whitespace() {
            left.push(format!("{what} {id}"));
        }
    }
    left
}

/// The number of vantages `regionguard status` reports for `region`.
fn vantages(status: &str, region: &str) -> Option<u32> {
    let at = status.find(&format!("{region}: "))? + region.len() + 2;
    status[at..].split(' ').next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_up_runs_healthy_decides_scales_and_down_leaves_nothing() {
    init_logging();
    let _one = ONE_AT_A_TIME.lock().await;
    let compose = Compose::new("base", &["compose.yaml"]).await;
    compose.run(&["up", "-d"]).await;

    // nats, simulator, 3 probers, detector, cascade, failover, notifier,
    // gateway.
    let took = compose.wait_healthy(10, Duration::from_secs(60)).await;
    eprintln!(
        "compose: 10 containers healthy {:.1} s after up",
        took.as_secs_f64()
    );
    compose.wait_all_healthy(21, Duration::from_secs(30)).await;
    let status = compose.regionguard(&["status"]).await;
    assert!(!status.contains("DOWN"), "{status}");

    // The October 2025 failure: the threshold alert, the cascade alert and
    // a plan, read from the gateway's API.
    compose
        .regionguard(&[
            "fault",
            "inject",
            "--region",
            "us-east-1",
            "--service",
            "dynamodb",
            "--kind",
            "empty-answer",
        ])
        .await;
    let injected = Instant::now();
    wait_until(
        "threshold and cascade alerts and a plan",
        Duration::from_secs(60),
        || async {
            let alerts = compose.api("/api/alerts").await.unwrap_or_default();
            let decisions = compose.api("/api/decisions").await.unwrap_or_default();
            let alert = |source: &str| {
                alerts["alerts"].as_array().into_iter().flatten().any(|a| {
                    a["source"] == source
                        && a["region"] == "us-east-1"
                        && a["severity"] == "SEVERITY_CRITICAL"
                })
            };
            let planned = decisions["decisions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|d| d["phase"] == "FAILOVER_PHASE_PLANNED" && d["from_region"] == "us-east-1");
            if alert("ALERT_SOURCE_THRESHOLD") && alert("ALERT_SOURCE_CASCADE") && planned {
                Waited::Done(())
            } else {
                Waited::NotYet(format!("alerts {alerts}\ndecisions {decisions}"))
            }
        },
    )
    .await;
    eprintln!(
        "compose: threshold alert, cascade alert and plan {:.1} s after the fault",
        injected.elapsed().as_secs_f64()
    );
    compose.regionguard(&["fault", "clear", "--all"]).await;
    compose.wait_all_healthy(21, Duration::from_secs(60)).await;

    // Three probers in us-east-1: three vantages.
    compose
        .run(&["up", "-d", "--scale", "prober-us-east-1=3"])
        .await;
    compose.wait_healthy(12, Duration::from_secs(60)).await;
    wait_until(
        "three vantages in us-east-1",
        Duration::from_secs(90),
        || async {
            let status = compose.regionguard(&["status"]).await;
            if vantages(&status, "us-east-1") == Some(3) {
                Waited::Done(())
            } else {
                Waited::NotYet(status)
            }
        },
    )
    .await;

    // One of them stops: the others carry on, nothing turns unhealthy.
    let (stopped, _, _) = compose
        .containers()
        .await
        .into_iter()
        .find(|c| c.1 == "prober-us-east-1")
        .unwrap();
    docker(&["stop", "-t", "5", &stopped]).await;
    let carried_on = compose.api("/api/snapshot").await.unwrap()["generated_at_unix_ms"]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap();
    compose.wait_all_healthy(21, Duration::from_secs(30)).await;
    wait_until(
        "new snapshots with every endpoint healthy",
        Duration::from_secs(40),
        || async {
            let s = compose.api("/api/snapshot").await.unwrap_or_default();
            let at = s["generated_at_unix_ms"]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
            let healthy = s["summary"]["healthy"].as_u64() == Some(21);
            if at > carried_on + 15_000 && healthy {
                Waited::Done(())
            } else {
                Waited::NotYet(format!("{}", s["summary"]))
            }
        },
    )
    .await;
    let running: Vec<_> = compose
        .containers()
        .await
        .into_iter()
        .filter(|c| c.0 != stopped && c.2 != "healthy")
        .collect();
    assert!(
        running.is_empty(),
        "after one prober stopped: {running:?}\n{}",
        compose.logs().await
    );

    // NATS stops for longer than `nats.unhealthy_after` (30 s): every
    // service's health check fails, and says why; not before those 30 s
    // (a short NATS blip turns nothing unhealthy). When NATS is back, all
    // are healthy again and the dashboard is whole.
    compose.run(&["stop", "-t", "5", "nats"]).await;
    let lost = Instant::now();
    let services = |all: Vec<(String, String, String)>| -> Vec<(String, String, String)> {
        all.into_iter()
            .filter(|c| c.0 != stopped && c.1 != "nats")
            .collect()
    };
    wait_until(
        "every service unhealthy without NATS",
        Duration::from_secs(150),
        || async {
            let all = services(compose.containers().await);
            if all.iter().all(|c| c.2 == "unhealthy") {
                Waited::Done(())
            } else {
                Waited::NotYet(format!("{all:?}"))
            }
        },
    )
    .await;
    let unhealthy_in = lost.elapsed();
    eprintln!(
        "compose: every service unhealthy {:.0} s after NATS stopped",
        unhealthy_in.as_secs_f64()
    );
    assert!(
        unhealthy_in >= Duration::from_secs(30),
        "unhealthy {unhealthy_in:?} after NATS stopped, before nats.unhealthy_after (30 s)"
    );
    for (id, service, _) in services(compose.containers().await) {
        let log = docker(&["inspect", "-f", "{{json .State.Health.Log}}", &id]).await;
        assert!(
            log.contains("no NATS connection for"),
            "{service}'s health check does not say why it fails: {log}"
        );
    }
    compose.run(&["start", "nats"]).await;
    let back = Instant::now();
    wait_until(
        "every service healthy again with NATS back",
        Duration::from_secs(90),
        || async {
            let all = compose.containers().await;
            let running: Vec<_> = all.iter().filter(|c| c.0 != stopped).collect();
            if running.iter().all(|c| c.2 == "healthy") {
                Waited::Done(())
            } else {
                Waited::NotYet(format!("{running:?}"))
            }
        },
    )
    .await;
    compose.wait_all_healthy(21, Duration::from_secs(60)).await;
    eprintln!(
        "compose: healthy again {:.0} s after NATS came back",
        back.elapsed().as_secs_f64()
    );

    let project = compose.project.clone();
    drop(compose);
    let left = leftovers(&project).await;
    assert!(left.is_empty(), "down -v left {left:?}");
}

/// The cluster override: three NATS containers (R3 streams), every service
/// given all three. One NATS container killed: the services carry on (a
/// fault still gives a plan) and no health event is lost or stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_cluster_loses_a_nats_container_without_losing_an_event() {
    init_logging();
    let _one = ONE_AT_A_TIME.lock().await;
    // The first node's client port on the host, to read the stream.
    let dir = tempfile::tempdir().unwrap();
    let nats_port = free_port();
    let publish = dir.path().join("publish-nats.yaml");
    std::fs::write(
        &publish,
        format!("services:\n  nats:\n    ports:\n      - \"127.0.0.1:{nats_port}:4222\"\n"),
    )
    .unwrap();
    let compose = Compose::new(
        "cluster",
        &[
            "compose.yaml",
            "compose.cluster.yaml",
            publish.to_str().unwrap(),
        ],
    )
    .await;
    let since = std::time::SystemTime::now();
    compose.run(&["up", "-d"]).await;
    let took = compose.wait_healthy(12, Duration::from_secs(90)).await;
    eprintln!(
        "compose cluster: 12 containers healthy {:.1} s after up",
        took.as_secs_f64()
    );
    compose.wait_all_healthy(21, Duration::from_secs(60)).await;

    let (victim, _, _) = compose
        .containers()
        .await
        .into_iter()
        .find(|c| c.1 == "nats-2")
        .unwrap();
    docker(&["kill", &victim]).await;
    let killed = Instant::now();
    compose
        .regionguard(&[
            "fault",
            "inject",
            "--region",
            "us-east-1",
            "--service",
            "dynamodb",
            "--kind",
            "empty-answer",
        ])
        .await;
    compose.wait_plan_from("us-east-1").await;
    eprintln!(
        "compose cluster: nats-2 killed; a plan {:.1} s later",
        killed.elapsed().as_secs_f64()
    );
    compose.regionguard(&["fault", "clear", "--all"]).await;
    compose.wait_all_healthy(21, Duration::from_secs(60)).await;

    // Probers stopped (they drain what they hold), then every event they
    // made is in the stream once.
    compose
        .run(&[
            "stop",
            "-t",
            "15",
            "prober-us-east-1",
            "prober-us-west-2",
            "prober-eu-west-1",
        ])
        .await;
    let events = crate::harness::read_stream::<rg_proto::v1::HealthEvent>(
        &format!("nats://127.0.0.1:{nats_port}"),
        rg_bus::Stream::Health,
        "rg.health.>",
        since,
    )
    .await;
    crate::resilience::assert_every_event_once("compose cluster", &events);
    let project = compose.project.clone();
    drop(compose);
    let left = leftovers(&project).await;
    assert!(left.is_empty(), "down -v left {left:?}");
}

/// A password for each user of `deploy/nats/auth.conf`, as the variables
/// the auth override reads (the administrator's first).
fn passwords() -> Vec<(String, String)> {
    [
        "ADMIN",
        "PROBER",
        "SIMULATOR",
        "DETECTOR",
        "CASCADE",
        "FAILOVER",
        "NOTIFIER",
        "GATEWAY",
    ]
    .iter()
    .map(|u| {
        (
            format!("RG_{u}_PASSWORD"),
            format!("pw-{}-{}", u.to_lowercase(), std::process::id()),
        )
    })
    .collect()
}

/// The cluster and auth overrides together (with compose.cluster-auth.yaml
/// last): three NATS nodes, each with the users of auth.conf, streams of 3
/// replicas made by `provision`. A node is killed and an outage injected:
/// a plan still comes, and no service needed more than its user may (the
/// elections after the kill are heard through the advisories auth.conf
/// grants; a missing grant shows as a violation in the servers' logs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_cluster_with_a_user_per_service_survives_a_node_kill_within_its_rights() {
    init_logging();
    let _one = ONE_AT_A_TIME.lock().await;
    let mut compose = Compose::new(
        "clusterauth",
        &[
            "compose.yaml",
            "compose.cluster.yaml",
            "compose.auth.yaml",
            "compose.cluster-auth.yaml",
        ],
    )
    .await;
    compose.env = passwords();
    let as_admin = [
        "RG_NATS__USER=admin".to_owned(),
        format!("RG_NATS__PASSWORD={}", compose.env[0].1),
    ];
    let as_admin: Vec<&str> = as_admin.iter().map(String::as_str).collect();
    compose.run(&["up", "-d"]).await;
    // 3 NATS nodes, provision (exits), simulator, 3 probers, detector,
    // cascade, failover, notifier, gateway.
    let took = compose.wait_provisioned(12).await;
    eprintln!(
        "compose cluster+auth: provisioned and 12 containers healthy {:.1} s after up",
        took.as_secs_f64()
    );
    compose.wait_all_healthy(21, Duration::from_secs(60)).await;
    let (code, said) = compose.regionguard_as(&as_admin, &["status"]).await;
    assert_eq!(code, Some(0), "status as the administrator: {said}");

    let nats: Vec<(String, String)> = compose
        .containers()
        .await
        .into_iter()
        .filter(|c| c.1.starts_with("nats"))
        .map(|c| (c.0, c.1))
        .collect();
    assert_eq!(nats.len(), 3, "{nats:?}");
    let victim = &nats.iter().find(|c| c.1 == "nats-2").unwrap().0;
    docker(&["kill", victim]).await;
    let killed = Instant::now();
    let (code, said) = compose
        .regionguard_as(
            &as_admin,
            &[
                "fault",
                "inject",
                "--region",
                "us-east-1",
                "--service",
                "dynamodb",
                "--kind",
                "empty-answer",
            ],
        )
        .await;
    assert_eq!(code, Some(0), "fault inject as the administrator: {said}");
    compose.wait_plan_from("us-east-1").await;
    eprintln!(
        "compose cluster+auth: nats-2 killed; a plan {:.1} s later",
        killed.elapsed().as_secs_f64()
    );
    let (code, said) = compose
        .regionguard_as(&as_admin, &["fault", "clear", "--all"])
        .await;
    assert_eq!(code, Some(0), "{said}");
    compose.wait_all_healthy(21, Duration::from_secs(60)).await;

    // Nobody was refused anything, elections included.
    let services = compose.logs().await;
    let heard = services.matches("has a new leader").count();
    eprintln!("compose cluster+auth: {heard} election(s) heard in the services' last log lines");
    for (id, name) in &nats {
        // nats-server logs to standard error.
        let out = Command::new("docker")
            .args(["logs", id])
            .output()
            .await
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let refused: Vec<&str> = all.lines().filter(|l| l.contains("Violation")).collect();
        assert!(
            refused.is_empty(),
            "{name}: a service needed more than auth.conf grants:\n{}",
            refused.join("\n")
        );
    }

    let project = compose.project.clone();
    drop(compose);
    let left = leftovers(&project).await;
    assert!(left.is_empty(), "down -v left {left:?}");
}

/// The auth override: a user per service, `provision` first as the
/// administrator. Every service healthy; the README's commands as the
/// administrator answer truly; as the gateway's user they say what the
/// user may not do instead of blaming a service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_auth_override_runs_and_the_cli_says_what_a_user_may_not() {
    init_logging();
    let _one = ONE_AT_A_TIME.lock().await;
    let mut compose = Compose::new("auth", &["compose.yaml", "compose.auth.yaml"]).await;
    compose.env = passwords();
    let admin_password = compose.env[0].1.clone();
    compose.run(&["up", "-d"]).await;

    // nats, provision (exits), simulator, 3 probers, detector, cascade,
    // failover, notifier, gateway.
    let took = compose.wait_provisioned(10).await;
    eprintln!(
        "compose auth: provisioned and 10 containers healthy {:.1} s after up",
        took.as_secs_f64()
    );
    compose.wait_all_healthy(21, Duration::from_secs(60)).await;

    let as_admin = [
        "RG_NATS__USER=admin".to_owned(),
        format!("RG_NATS__PASSWORD={admin_password}"),
    ];
    let as_admin: Vec<&str> = as_admin.iter().map(String::as_str).collect();

    // As the administrator (the README's way): status true and whole.
    let (code, said) = compose.regionguard_as(&as_admin, &["status"]).await;
    assert_eq!(code, Some(0), "{said}");
    for line in said.lines().skip(1) {
        assert!(
            !line.contains(" DOWN ") && !line.contains(" ? "),
            "status as the administrator: {said}"
        );
    }
    // tail sees the alert a fault makes.
    let mut tail = {
        let mut all = vec!["exec", "-T"];
        for e in &as_admin {
            all.extend(["-e", *e]);
        }
        all.extend([
            "gateway",
            "timeout",
            "60",
            "regionguard",
            "tail",
            "rg.alerts.>",
            "--json",
            "--count",
            "1",
        ]);
        compose.command(&all)
    };
    let inject = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        compose
            .regionguard_as(
                &as_admin,
                &[
                    "fault",
                    "inject",
                    "--region",
                    "us-west-2",
                    "--service",
                    "sqs",
                    "--kind",
                    "nxdomain",
                ],
            )
            .await
    };
    let (tailed, (code, injected)) = tokio::join!(tail.output(), inject);
    assert_eq!(
        code,
        Some(0),
        "fault inject as the administrator: {injected}"
    );
    let tailed = tailed.unwrap();
    let line = String::from_utf8_lossy(&tailed.stdout);
    assert!(
        tailed.status.success() && line.contains("\"Alert\""),
        "tail as the administrator: {line}{}",
        String::from_utf8_lossy(&tailed.stderr)
    );
    let (code, cleared) = compose
        .regionguard_as(&as_admin, &["fault", "clear", "--all"])
        .await;
    assert_eq!(code, Some(0), "{cleared}");

    // As the gateway's own user (the container's default): each says what
    // the user may not do, quickly, and nothing blames a service.
    let (code, said) = compose.regionguard_as(&[], &["fault", "list"]).await;
    assert_ne!(code, Some(0), "{said}");
    assert!(
        said.contains("the NATS user \"gateway\" may not do this")
            && !said.contains("no simulator answered"),
        "fault as the gateway's user: {said}"
    );
    let (code, said) = compose
        .regionguard_as(&[], &["tail", "rg.alerts.>", "--json"])
        .await;
    assert_eq!(
        code,
        Some(1),
        "tail as the gateway's user (124: it hung): {said}"
    );
    assert!(
        said.contains("the NATS user \"gateway\" may not subscribe to rg.alerts.>"),
        "{said}"
    );
    let (_, said) = compose.regionguard_as(&[], &["status"]).await;
    assert!(
        said.contains("note: the server refused the NATS user \"gateway\""),
        "status as the gateway's user: {said}"
    );

    let project = compose.project.clone();
    drop(compose);
    let left = leftovers(&project).await;
    assert!(left.is_empty(), "down -v left {left:?}");
}
