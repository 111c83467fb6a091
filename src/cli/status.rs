//! `regionguard status`: each component's health, read from NATS (its
//! streams, the services' durable consumers, the probers' latest health
//! events, the simulator's control subject) and from the gateway's
//! `/healthz`. `--healthz ADDR` checks one service's health endpoint
//! (what the compose health checks run).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, consumer};
use clap::Args;
use futures::StreamExt;
use rg_bus::tail::{Event, From};
use rg_bus::Stream;
use rg_proto::v1::{fault_request, FaultRequest, HealthEvent};

use super::config::Config;
use super::Globals;

/// `regionguard status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Check only this service's health endpoint (`host:port` of its
    /// `metrics_listen`, or the gateway's `listen`) and exit 0 when it
    /// answers 200: for container health checks.
    #[arg(long, value_name = "ADDR")]
    healthz: Option<SocketAddr>,
}

/// One line of the report.
struct Line {
    component: &'static str,
    state: State,
    detail: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Ok,
    /// Running, but something needs a look (lag, a region without events).
    Warn,
    /// Not running or not reachable.
    Down,
    /// Optional and not running.
    Off,
}

impl State {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warn => "WARN",
            Self::Down => "DOWN",
            Self::Off => "--",
        }
    }
}

pub(crate) async fn run(globals: Globals, args: StatusArgs) -> ExitCode {
    if let Some(addr) = args.healthz {
        return match super::http::get(addr, "/healthz").await {
            Some((200, _)) => ExitCode::SUCCESS,
            Some((code, body)) => {
                eprintln!("{addr}/healthz answered {code}: {}", body.trim());
                ExitCode::FAILURE
            }
            None => {
                eprintln!("{addr}/healthz did not answer within 2s");
                ExitCode::FAILURE
            }
        };
    }
    let config = match globals.load(Vec::new()) {
        Ok(c) => c,
        Err(e) => return super::config_error(&e),
    };
    println!("regionguard status ({})", config.nats.servers_for_log());
    let lines = report(&config).await;
    for l in &lines {
        println!("  {:<10} {:<5} {}", l.component, l.state.label(), l.detail);
    }
    if lines.iter().any(|l| l.state == State::Down) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn report(config: &Config) -> Vec<Line> {
    let mut out = Vec::new();
    let client = match rg_bus::connect::connect_once(&config.nats, "regionguard-status").await {
        Ok(c) => c,
        Err(e) => {
            out.push(Line {
                component: "nats",
                state: State::Down,
                detail: e.to_string(),
            });
            return out;
        }
    };
    let js = jetstream::new(client.clone());
    let subjects = config.nats.subjects();
    let server = client.server_info();
    let mut streams = Vec::new();
    for s in Stream::ALL {
        let name = subjects.stream(s);
        match js.get_stream(&name).await {
            Ok(mut stream) => match stream.info().await {
                Ok(i) => streams.push(format!("{name} {}", i.state.messages)),
                Err(_) => streams.push(format!("{name} ?")),
            },
            Err(_) => streams.push(format!("{name} missing")),
        }
    }
    let missing = streams.iter().any(|s| s.ends_with("missing"));
    out.push(Line {
        component: "nats",
        state: if missing { State::Warn } else { State::Ok },
        detail: format!(
            "nats-server {}, messages: {}{}",
            server.version,
            streams.join(", "),
            if missing {
                " (a missing stream is created by the first service to start)"
            } else {
                ""
            }
        ),
    });

    out.push(probers(config, &js).await);
    let consumers = consumers(&js, config).await;
    let detector_prefix = config.detector.durable.clone();
    out.push(services_line(
        "detector",
        &consumers,
        |stream, name| {
            stream == subjects.stream(Stream::Health) && name.starts_with(&detector_prefix)
        },
        true,
    ));
    out.push(services_line(
        "cascade",
        &consumers,
        |stream, name| stream == subjects.stream(Stream::Health) && name == config.cascade.durable,
        true,
    ));
    out.push(services_line(
        "failover",
        &consumers,
        |stream, name| {
            stream == subjects.stream(Stream::Decisions)
                && (name == config.failover.durable
                    || name == format!("{}-approvals", config.failover.durable))
        },
        true,
    ));
    out.push(services_line(
        "notifier",
        &consumers,
        |_, name| name == config.notifier.durable || name == config.notifier.decisions_durable,
        !config.notifier.sinks.is_empty(),
    ));
    out.push(gateway(config, &js).await);
    out.push(simulator(config, &client).await);
    out
}

/// Every durable consumer of regionguard's streams, by (stream, name).
async fn consumers(
    js: &jetstream::Context,
    config: &Config,
) -> BTreeMap<(String, String), consumer::Info> {
    let subjects = config.nats.subjects();
    let mut out = BTreeMap::new();
    for s in [Stream::Health, Stream::Alerts, Stream::Decisions] {
        let name = subjects.stream(s);
        let Ok(stream) = js.get_stream(&name).await else {
            continue;
        };
        let mut list = stream.consumers();
        while let Some(Ok(info)) = list.next().await {
            out.insert((name.clone(), info.name.clone()), info);
        }
    }
    out
}

/// A service is running when one of its consumers has a pull outstanding
/// or delivered within the last 30 s.
fn services_line(
    component: &'static str,
    consumers: &BTreeMap<(String, String), consumer::Info>,
    mine: impl Fn(&str, &str) -> bool,
    required: bool,
) -> Line {
    let now = time::OffsetDateTime::now_utc();
    let found: Vec<&consumer::Info> = consumers
        .iter()
        .filter(|((s, n), _)| mine(s, n))
        .map(|(_, i)| i)
        .collect();
    if found.is_empty() {
        return Line {
            component,
            state: if required { State::Down } else { State::Off },
            detail: if required {
                "no consumer: the service never started against this NATS".into()
            } else {
                "not running (no sinks configured)".into()
            },
        };
    }
    let running = found.iter().any(|i| {
        i.num_waiting > 0
            || i.delivered
                .last_active
                .is_some_and(|t| now - t < time::Duration::seconds(30))
    });
    let lag: u64 = found.iter().map(|i| i.num_pending).sum();
    let unacked: usize = found.iter().map(|i| i.num_ack_pending).sum();
    let names: Vec<&str> = found.iter().map(|i| i.name.as_str()).collect();
    let state = match (running, lag) {
        (false, _) => {
            if required {
                State::Down
            } else {
                State::Off
            }
        }
        (true, 0..=1000) => State::Ok,
        (true, _) => State::Warn,
    };
    Line {
        component,
        state,
        detail: format!(
            "{} ({}): {lag} waiting, {unacked} in flight",
            if running { "running" } else { "not pulling" },
            names.join(", ")
        ),
    }
}

/// Probers: the vantages that published in each configured region within
/// the last two probe intervals (plus 5 s).
async fn probers(config: &Config, js: &jetstream::Context) -> Line {
    let subjects = config.nats.subjects();
    let window = config.prober.interval * 2 + Duration::from_secs(5);
    let since = SystemTime::now()
        .checked_sub(window)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let token = tokio_util::sync::CancellationToken::new();
    let mut events = rg_bus::tail::spawn::<HealthEvent>(
        js.clone(),
        subjects.stream(Stream::Health),
        subjects.health_all(),
        From::Time(since),
        "status",
        token.clone(),
    );
    let mut vantages: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    let deadline = tokio::time::sleep(Duration::from_secs(5));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            e = events.recv() => match e {
                Some(Event::Message(m)) => {
                    vantages.entry(m.message.region.clone()).or_default().insert(m.message.vantage.clone());
                }
                Some(Event::CaughtUp) | None => break,
            }
        }
    }
    token.cancel();
    let mut regions: Vec<String> = config.prober.regions.clone();
    for r in vantages.keys() {
        if !regions.contains(r) {
            regions.push(r.clone());
        }
    }
    let silent: Vec<&String> = regions
        .iter()
        .filter(|r| !vantages.contains_key(*r))
        .collect();
    let parts: Vec<String> = regions
        .iter()
        .map(|r| match vantages.get(r) {
            Some(v) => format!("{r}: {} vantage(s)", v.len()),
            None => format!("{r}: none"),
        })
        .collect();
    Line {
        component: "prober",
        state: if vantages.is_empty() {
            State::Down
        } else if silent.is_empty() {
            State::Ok
        } else {
            State::Warn
        },
        detail: format!("health events in the last {window:?}: {}", parts.join(", ")),
    }
}

async fn gateway(config: &Config, js: &jetstream::Context) -> Line {
    let mut addr = config.gateway.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip([127, 0, 0, 1].into());
    }
    let health = super::http::get(addr, "/healthz").await;
    let subjects = config.nats.subjects();
    let last_snapshot = match js.get_stream(subjects.stream(Stream::Snapshots)).await {
        Ok(s) => s
            .get_last_raw_message_by_subject(&subjects.dashboard_snapshot())
            .await
            .ok()
            .map(|m| time::OffsetDateTime::now_utc() - m.time),
        Err(_) => None,
    };
    let snapshot = match last_snapshot {
        Some(age) => format!("last snapshot {} s ago", age.whole_seconds()),
        None => "no snapshot published".into(),
    };
    match health {
        Some((200, _)) => Line {
            component: "gateway",
            state: State::Ok,
            detail: format!("http://{addr}/healthz ok; {snapshot}"),
        },
        Some((code, body)) => Line {
            component: "gateway",
            state: State::Warn,
            detail: format!(
                "http://{addr}/healthz answered {code}: {}; {snapshot}",
                body.trim()
            ),
        },
        None => Line {
            component: "gateway",
            state: State::Down,
            detail: format!("http://{addr}/healthz does not answer; {snapshot}"),
        },
    }
}

async fn simulator(config: &Config, client: &async_nats::Client) -> Line {
    let subjects = config.nats.subjects();
    let list = FaultRequest {
        action: Some(fault_request::Action::List(true)),
    };
    match rg_bus::request::request::<_, rg_proto::v1::FaultReply>(
        client,
        &subjects.sim_faults(),
        &list,
        Duration::from_secs(2),
    )
    .await
    {
        Ok(reply) => Line {
            component: "simulator",
            state: State::Ok,
            detail: format!("{} active fault(s)", reply.active.len()),
        },
        Err(_) => Line {
            component: "simulator",
            state: State::Off,
            detail: "not running (fine when probing real AWS DNS)".into(),
        },
    }
}
