//! Access: the sample NATS users of `deploy/nats/auth.conf` run the whole
//! pipeline, each service confined to its own subjects; a wrong password is
//! refused; the dashboard's state-changing calls need the token.

use std::time::Duration;

use async_nats::ConnectOptions;
use rg_proto::v1::FailoverDecision;
use rg_testkit::{init_logging, wait_until, NatsServer, Waited};

use crate::harness::*;

const ROLES: [&str; 8] = [
    "admin",
    "prober",
    "simulator",
    "detector",
    "cascade",
    "failover",
    "notifier",
    "gateway",
];
const TOKEN: &str = "access-test-token-0123456789";

fn password(role: &str) -> String {
    format!("{role}-pass-{}", std::process::id())
}

/// The server config: the passwords (as the variables auth.conf reads),
/// then the repository's auth.conf as it is.
fn server_config() -> String {
    let auth = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nats/auth.conf"),
    )
    .expect("deploy/nats/auth.conf");
    let mut vars = String::new();
    for role in ROLES {
        vars.push_str(&format!(
            "RG_{}_PASSWORD: \"{}\"\n",
            role.to_uppercase(),
            password(role)
        ));
    }
    format!("{vars}\n{auth}")
}

/// The user a service of [`Processes`] runs as.
fn role_of(service: &str) -> &str {
    service.split('-').next().unwrap_or(service)
}

/// A client as `role`, and the server errors (permission violations) it
/// is told about.
async fn client_as(
    url: &str,
    role: &str,
) -> (
    async_nats::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = ConnectOptions::with_user_and_password(role.into(), password(role))
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ignored = tx.send(e.to_string());
                }
            }
        })
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connecting as {role}: {e}"));
    (client, rx)
}

/// Publishes on `subject` as that client and returns the server's error
/// (a permission violation), or `None` when none comes within 2 s.
async fn violation(
    client: &async_nats::Client,
    errors: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    subject: &str,
) -> Option<String> {
    client
        .publish(subject.to_owned(), bytes::Bytes::from_static(b"x"))
        .await
        .expect("publish");
    client.flush().await.expect("flush");
    tokio::time::timeout(Duration::from_secs(2), errors.recv())
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_nats_users_run_the_pipeline_and_keep_each_service_to_its_subjects() {
    init_logging();
    let server = NatsServer::start_with_config(&server_config());
    let url = server.url();

    // An administrator provisions the streams and buckets once.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_regionguard"))
        .args(["provision", "--nats", &url])
        .env_remove("RG_CONFIG")
        .env("RG_NATS__USER", "admin")
        .env("RG_NATS__PASSWORD", password("admin"))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "RG_HEALTH",
        "RG_ALERTS",
        "RG_DECISIONS",
        "KV_RG_DETECTOR",
        "KV_RG_NOTIFIER_SENT",
    ] {
        assert!(printed.contains(name), "{name} not provisioned:\n{printed}");
    }

    // Every service as its own user, with nothing more than auth.conf
    // grants it: the pipeline runs end to end.
    let receiver = rg_testkit::Receiver::start().await;
    let extra = format!(
        "[[notifier.sinks]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}/hook\"\n",
        receiver.url()
    );
    let mut system = Processes::start_with(&url, &extra, &[("notifier", "NOTIFIER")], |name| {
        let role = role_of(name);
        let mut env = vec![
            ("RG_NATS__USER".to_owned(), role.to_owned()),
            ("RG_NATS__PASSWORD".to_owned(), password(role)),
        ];
        if role == "gateway" {
            env.push(("RG_GATEWAY__TOKEN".to_owned(), TOKEN.to_owned()));
        }
        env
    })
    .observed_as("admin", &password("admin"));
    system.wait_all_healthy().await;
    let (admin, _) = client_as(&url, "admin").await;
    let mut alerts = AlertFeed::open_as(&url, "admin", &password("admin")).await;
    let mut decisions = Feed::<FailoverDecision>::subscribe_as(
        &url,
        "rg.decisions.failover.>",
        "admin",
        &password("admin"),
    )
    .await;
    dynamodb_outage(&admin, &mut alerts).await;
    wait_plan(&mut decisions).await;
    wait_notice(&receiver, "dynamodb").await;
    // An operator's on-demand readiness check reaches the failover
    // service, whose answer (nothing is declared to check) comes back.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_regionguard"))
        .args(["failover", "readiness", "--wait", "20s", "--nats", &url])
        .env_remove("RG_CONFIG")
        .env("RG_NATS__USER", "admin")
        .env("RG_NATS__PASSWORD", password("admin"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("no [failover.regions.<region>] is declared"),
        "the failover service answers a readiness check: {said}"
    );
    let log = server.log_tail(400);
    assert!(
        !log.contains("Violation"),
        "a service needed more than auth.conf grants:\n{log}"
    );

    // A prober may publish health events and nothing else.
    let (prober, mut errors) = client_as(&url, "prober").await;
    let js = async_nats::jetstream::new(prober.clone());
    js.publish(
        "rg.health.us-east-1.dynamodb",
        bytes::Bytes::from_static(b"\x0a\x01x"),
    )
    .await
    .expect("send")
    .await
    .expect("a prober's health event is stored");
    for subject in [
        "rg.alerts.threshold.critical",
        "rg.alerts.cascade.critical",
        "rg.decisions.failover.requested",
        "rg.decisions.failover.approved",
        "rg.sim.faults",
        "rg.snapshots.dashboard",
        "$JS.API.STREAM.DELETE.RG_HEALTH",
        "$JS.API.STREAM.UPDATE.RG_ALERTS",
    ] {
        let e = violation(&prober, &mut errors, subject)
            .await
            .unwrap_or_else(|| panic!("a prober published on {subject}"));
        assert!(
            e.contains("Permissions Violation") && e.contains(subject),
            "{e}"
        );
    }

    // The gateway writes snapshots, and cannot publish a decision (or
    // inject a fault).
    let (gateway, mut errors) = client_as(&url, "gateway").await;
    assert_eq!(
        violation(&gateway, &mut errors, "rg.snapshots.dashboard").await,
        None
    );
    for subject in [
        "rg.decisions.failover.requested",
        "rg.decisions.failover.planned",
        "rg.decisions.failover.approved",
        "rg.decisions.failover.completed",
        "rg.alerts.cascade.critical",
        "rg.sim.faults",
    ] {
        let e = violation(&gateway, &mut errors, subject)
            .await
            .unwrap_or_else(|| panic!("the gateway published on {subject}"));
        assert!(
            e.contains("Permissions Violation") && e.contains(subject),
            "{e}"
        );
    }

    // A wrong password is refused at once, with the reason.
    let mut nats = nats_config(&url);
    nats.user = Some("prober".into());
    nats.password = Some("not-the-password".into());
    let refused = rg_bus::connect::connect_once(&nats, "e2e-wrong-password")
        .await
        .expect_err("a wrong password is refused");
    let text = refused.to_string();
    assert!(
        text.contains("refused") && text.contains("nats.user/password"),
        "{text}"
    );
    // ... and a service given it stops and says why.
    let mut wrong = rg_testkit::ServiceProcess::start(
        "prober-wrong-password",
        std::path::Path::new(env!("CARGO_BIN_EXE_regionguard")),
        &[
            "prober",
            "--config",
            &system.config.display().to_string(),
            "--region",
            "us-east-1",
        ],
        &[
            ("RG_NATS__USER", "prober"),
            ("RG_NATS__PASSWORD", "not-the-password"),
        ],
        system.dir.path(),
    );
    let w = &mut wrong;
    wait_until(
        "the refused prober to exit",
        Duration::from_secs(15),
        || {
            let running = w.is_running();
            async move {
                if running {
                    Waited::NotYet("running".into())
                } else {
                    Waited::Done(())
                }
            }
        },
    )
    .await;
    assert!(wrong.log().contains("refused"), "{}", wrong.log());

    // The dashboard's state-changing calls need the token.
    let http = system.http;
    for (path, body) in [
        ("/api/failovers/fo-x/approve", "{}"),
        ("/api/faults", r#"{"list": true}"#),
    ] {
        for headers in [
            vec![],
            vec![("Authorization", "Bearer wrong-token-0123456789")],
        ] {
            let r = rg_testkit::http::request(http, "POST", path, &headers, body)
                .await
                .unwrap();
            assert_eq!(r.status, 401, "{path} with {headers:?}: {}", r.body);
        }
    }

    system.stop_all();
}

/// The README's commands run as a service's user (the CLI inside the
/// gateway's container under the auth override): what the server refuses
/// is said, instead of "no simulator answered" or a service that "never
/// started".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_as_a_service_user_says_what_the_server_refused() {
    init_logging();
    let server = NatsServer::start_with_config(&server_config());
    let url = server.url();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_regionguard"))
            .args(args)
            .args(["--nats", &url])
            .env_remove("RG_CONFIG")
            .env("RG_LOG", "error")
            .env("RG_NATS__USER", "gateway")
            .env("RG_NATS__PASSWORD", password("gateway"))
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, said) = run(&["fault", "list"]);
    assert_ne!(code, Some(0), "{said}");
    assert!(
        said.contains("the NATS user \"gateway\" may not do this")
            && said.contains("rg.sim.faults")
            && !said.contains("no simulator answered"),
        "{said}"
    );
    let (_, said) = run(&["status"]);
    assert!(
        said.contains("note: the server refused the NATS user \"gateway\""),
        "{said}"
    );
    // tail: an error and an exit, not a warning and a wait forever (a
    // tail that hangs is stopped by `timeout`, exit 124).
    let started = tokio::time::Instant::now();
    let out = std::process::Command::new("timeout")
        .args(["20", env!("CARGO_BIN_EXE_regionguard")])
        .args(["tail", "rg.alerts.>", "--json", "--count", "1"])
        .args(["--nats", &url])
        .env_remove("RG_CONFIG")
        .env("RG_LOG", "error")
        .env("RG_NATS__USER", "gateway")
        .env("RG_NATS__PASSWORD", password("gateway"))
        .output()
        .unwrap();
    let (code, said) = (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("the NATS user \"gateway\" may not subscribe to rg.alerts.>"),
        "{said}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "tail took {:?}",
        started.elapsed()
    );
}
