//! The web dashboard in a real headless Chromium (Debian's `chromium`,
//! driven by `playwright-core` from `dashboard/tests/browser.mjs`), served
//! by a gateway fed by the simulator and real probers. Screenshots are kept
//! in `test-artifacts/`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::harness::*;
use rg_testkit::{init_logging, NatsServer};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Panics with what to run when the browser test's tools are missing.
fn require_browser_tools() -> PathBuf {
    let dashboard = repo().join("dashboard");
    let chromium = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    for (what, path) in [
        ("the built dashboard", dashboard.join("dist/index.html")),
        (
            "playwright-core",
            dashboard.join("node_modules/playwright-core/package.json"),
        ),
        ("Chromium", chromium),
    ] {
        assert!(
            path.exists(),
            "{what} is missing ({}): run scripts/install-deps.sh",
            path.display()
        );
    }
    dashboard
}

/// Runs the browser script; `on_request` answers each request it prints
/// (stop, start or freeze a part). Panics with its output unless it passes.
async fn run_browser(args: &[String], mut on_request: impl AsyncFnMut(&str) -> &'static str) {
    let dashboard = require_browser_tools();
    let mut child = Command::new("node")
        .arg("tests/browser.mjs")
        .args(args)
        .current_dir(&dashboard)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting node (run scripts/install-deps.sh)");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut text = String::new();
        let _read = stderr.read_to_string(&mut text).await;
        text
    });
    let mut passed = false;
    let run = async {
        while let Ok(Some(line)) = stdout.next_line().await {
            match line.trim() {
                "OK" => passed = true,
                request @ ("STOP-GATEWAY" | "START-GATEWAY" | "STOP-PROBER" | "START-PROBER"
                | "FREEZE-GATEWAY" | "THAW-GATEWAY" | "REQUEST-FAILOVER-A"
                | "REQUEST-FAILOVER-B") => {
                    let answer = on_request(request).await;
                    stdin
                        .write_all(format!("{answer}\n").as_bytes())
                        .await
                        .unwrap();
                    stdin.flush().await.unwrap();
                }
                other => eprintln!("browser: {other}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the browser test finished within 120 s");
    let status = child.wait().await.unwrap();
    let log = log.await.unwrap();
    assert!(
        passed && status.success(),
        "the browser test failed ({status}):\n{log}"
    );
    eprintln!("{log}");
}

fn artifacts() -> String {
    repo().join("test-artifacts").display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_chromium_matches_the_api_turns_critical_and_reconnects() {
    init_logging();
    let interval = Duration::from_millis(1000);
    let server = NatsServer::start();
    let nats = nats_config(&server.url());
    let (dns, _simulator) = start_simulator(&nats).await;
    let mut probers: Vec<_> = ["us-east-1", "us-west-2", "eu-west-1"]
        .into_iter()
        .map(|region| Some(start_prober(prober_config(region, dns, interval), &nats)))
        .collect();
    // The services whose alerts and failover requests the page shows.
    let _detector = start_detector(detector_config(), &nats);
    let _cascade = start_cascade(cascade_config(), &nats);
    let gateway = start_gateway(gateway_config(interval), &nats).await;
    let http = gateway.http;
    let mut gateway = Some(gateway);
    // The page reaches the gateway through a relay that can freeze its
    // connections: a hung gateway whose socket stays open.
    let relay = Relay::start(http).await;
    let args = vec![
        "--url".into(),
        format!("http://{}/", relay.addr),
        "--interval-ms".into(),
        interval.as_millis().to_string(),
        "--artifacts".into(),
        artifacts(),
    ];
    run_browser(&args, async |request| match request {
        "STOP-GATEWAY" => {
            gateway.take().expect("running").running.stop().await;
            "stopped"
        }
        "FREEZE-GATEWAY" => {
            relay.freeze();
            "frozen"
        }
        "THAW-GATEWAY" => {
            relay.thaw();
            "thawed"
        }
        "STOP-PROBER" => {
            probers[2].take().expect("running").stop().await;
            "stopped"
        }
        "START-PROBER" => {
            probers[2] = Some(start_prober(
                prober_config("eu-west-1", dns, interval),
                &nats,
            ));
            "started"
        }
        _ => {
            // Same port: the page reconnects to the address it knows.
            let config = rg_gateway::Config {
                listen: http,
                ..gateway_config(interval)
            };
            gateway = Some(start_gateway(config, &nats).await);
            "started"
        }
    })
    .await;
    assert!(repo().join("test-artifacts/dashboard-fault.png").is_file());
}

/// An operator answers two plans from the page, against a failover
/// manager in approve mode over moto: one rejected (after a wrong token),
/// one approved, which then runs; the account shows exactly the approved
/// failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_rejects_one_plan_and_approves_another_from_the_page() {
    use crate::failover::{failed_over_records, seeded_state, Account, World};
    let account = Account::seed();
    let mut w = World::start().await;
    let _failover = w.start_failover(account.config(rg_failover::Mode::Approve));
    let token = "ui-test-token-0123456789";
    let interval = Duration::from_millis(1000);
    let gateway = start_gateway(
        rg_gateway::Config {
            token: Some(token.into()),
            ..gateway_config(interval)
        },
        w.nats(),
    )
    .await;
    let args = vec![
        "--url".into(),
        format!("http://{}/", gateway.http),
        "--mode".into(),
        "answer".into(),
        "--token".into(),
        token.into(),
        "--interval-ms".into(),
        interval.as_millis().to_string(),
        "--artifacts".into(),
        artifacts(),
    ];
    let world = &w;
    run_browser(&args, async |request| {
        let id = if request == "REQUEST-FAILOVER-A" {
            "ui-reject"
        } else {
            "ui-approve"
        };
        world.request(id).await;
        "requested"
    })
    .await;
    let mut state = seeded_state();
    state["records"] = failed_over_records();
    let after = account.read();
    assert_eq!(
        after["records"], state["records"],
        "the approved failover moved the records"
    );
    assert_eq!(after["origin"]["app"], "usw2.origin.example.test");
    // The rejected one was journaled as such: approving it now is refused.
    let bearer = format!("Bearer {token}");
    let refused = rg_testkit::http::request(
        gateway.http,
        "POST",
        "/api/failovers/ui-reject/approve",
        &[("Authorization", &bearer)],
        r#"{"approver":"mallory"}"#,
    )
    .await
    .expect("the gateway answers");
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.body.contains("is rejected, not planned"),
        "{}",
        refused.body
    );
    let _ = w
        .phase("ui-approve", rg_proto::v1::FailoverPhase::Completed)
        .await;
}

/// Fifty AWS service names for the large layout.
const MANY_SERVICES: [&str; 50] = [
    "acm",
    "apigateway",
    "appsync",
    "athena",
    "autoscaling",
    "batch",
    "cloudformation",
    "cloudfront",
    "cloudtrail",
    "cloudwatch",
    "codebuild",
    "codedeploy",
    "cognito-idp",
    "config",
    "dynamodb",
    "ec2",
    "ecr",
    "ecs",
    "eks",
    "elasticache",
    "elasticbeanstalk",
    "elasticloadbalancing",
    "elasticmapreduce",
    "es",
    "events",
    "firehose",
    "glue",
    "guardduty",
    "iam",
    "kinesis",
    "kms",
    "lambda",
    "logs",
    "monitoring",
    "rds",
    "redshift",
    "route53",
    "s3",
    "sagemaker",
    "secretsmanager",
    "ses",
    "sns",
    "sqs",
    "ssm",
    "states",
    "sts",
    "swf",
    "transfer",
    "waf",
    "xray",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_stays_readable_at_30_regions_by_50_services() {
    init_logging();
    let interval = Duration::from_millis(5000);
    let regions: Vec<String> = (1..=30).map(|i| format!("test-region-{i}")).collect();
    let services: Vec<String> = MANY_SERVICES.iter().map(|s| s.to_string()).collect();
    let server = NatsServer::start();
    let nats = nats_config(&server.url());
    let (dns, _simulator) = start_simulator_with(
        &nats,
        rg_simulator::Config {
            regions: regions.clone(),
            services: services.clone(),
            ..Default::default()
        },
    )
    .await;
    let _probers: Vec<_> = regions
        .iter()
        .map(|region| {
            let config = rg_prober::Config {
                services: services.clone(),
                ..prober_config(region, dns, interval)
            };
            start_prober(config, &nats)
        })
        .collect();
    let gateway = start_gateway(gateway_config(interval), &nats).await;
    // Every endpoint has reported. Their status depends on how loaded the
    // machine is (a debug-build simulator answering 1,500 names in one
    // burst): this test is about the layout.
    rg_testkit::wait_until(
        "1,500 endpoints on the dashboard",
        Duration::from_secs(60),
        || async {
            match snapshot(gateway.http).await {
                Some(s) if num(&s["summary"]["total_endpoints"]) == 1500.0 => {
                    rg_testkit::Waited::Done(())
                }
                Some(s) => rg_testkit::Waited::NotYet(s["summary"].to_string()),
                None => rg_testkit::Waited::NotYet("no snapshot".into()),
            }
        },
    )
    .await;
    let args = vec![
        "--url".into(),
        format!("http://{}/", gateway.http),
        "--mode".into(),
        "layout".into(),
        "--regions".into(),
        "30".into(),
        "--services".into(),
        "50".into(),
        "--artifacts".into(),
        artifacts(),
    ];
    run_browser(&args, async |_| "unexpected").await;
    assert!(repo().join("test-artifacts/dashboard-30x50.png").is_file());
}
