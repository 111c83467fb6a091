//! `regionguard status`: each component's health, read from NATS (its
//! streams, the services' durable consumers, the probers' latest health
//! events, the simulator's control subject) and from the gateway's
//! `/healthz`. `--healthz ADDR` checks one service's health endpoint
//! (what the compose health checks run).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use clap::Args;
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
    /// Cannot be told now (JetStream has no quorum, a stream no leader,
    /// a check took too long): not the same as down.
    Unknown,
}

impl State {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warn => "WARN",
            Self::Down => "DOWN",
            Self::Off => "--",
            Self::Unknown => "?",
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
    // A line that cannot tell may be the user's permissions, not the
    // service: say what the server refused.
    let refused = rg_bus::connect::permission_violations();
    if !refused.is_empty() {
        println!(
            "  note: the server refused the NATS user {} ({}): lines marked ? or DOWN may only mean this user may not look; run status as the administrator (RG_NATS__USER=admin)",
            config
                .nats
                .user
                .as_deref()
                .map_or_else(|| "(none)".to_owned(), |u| format!("{u:?}")),
            refused.join("; ")
        );
    }
    if lines.iter().any(|l| l.state == State::Down) {
        ExitCode::FAILURE
    } else if lines.iter().any(|l| l.state == State::Unknown) {
        ExitCode::from(EXIT_UNKNOWN)
    } else {
        ExitCode::SUCCESS
    }
}

/// The exit code when nothing is down but something cannot be told.
const EXIT_UNKNOWN: u8 = 3;

/// How long any one check may take: the report comes within about this
/// (the checks run at once), also on a degraded cluster.
const CHECK_TIMEOUT: Duration = Duration::from_millis(1500);

/// `check`, or a line saying it took too long.
async fn within(component: &'static str, check: impl std::future::Future<Output = Line>) -> Line {
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(line) => line,
        Err(_) => Line {
            component,
            state: State::Unknown,
            detail: format!("cannot tell: no answer within {CHECK_TIMEOUT:?}"),
        },
    }
}

/// Whether JetStream answers: its API needs a meta leader, which needs a
/// quorum of the cluster's servers (and, after the leader's server died,
/// the 4-9 s nats-server takes to elect another).
enum JetStream {
    Up,
    /// Why it does not answer, in words.
    Unanswered(String),
}

async fn jetstream_state(client: &async_nats::Client, config: &Config) -> JetStream {
    // The account's JetStream info, read loosely: any answer without an
    // error means the meta leader answered.
    // Which other servers answer for JetStream is asked at the same time,
    // and waited for only when this one does not answer.
    let others = {
        let nats = config.nats.clone();
        tokio::spawn(async move {
            if nats.servers.len() >= 2 {
                rg_bus::cutoff::answering(&nats).await
            } else {
                Vec::new()
            }
        })
    };
    let (answer, reachable) = tokio::join!(
        tokio::time::timeout(
            CHECK_TIMEOUT,
            client.request("$JS.API.INFO", bytes::Bytes::new())
        ),
        reachable_servers(config),
    );
    let configured = config.nats.servers.len();
    if configured >= 2 && reachable * 2 <= configured {
        // Whatever a lone server still says (a leader that has not yet
        // stepped down) cannot be relied on.
        return JetStream::Unanswered(format!(
            "JetStream has no quorum: only {reachable} of the {configured} configured servers answer"
        ));
    }
    let why = match answer {
        Ok(Ok(reply)) => {
            let body: serde_json::Value =
                serde_json::from_slice(&reply.payload).unwrap_or_default();
            match body.get("error") {
                None if body.is_object() => {
                    others.abort();
                    return JetStream::Up;
                }
                Some(e) => format!(
                    "JetStream answers with an error ({})",
                    e["description"].as_str().unwrap_or("no description")
                ),
                None => "JetStream's answer is not JSON".to_owned(),
            }
        }
        Ok(Err(e)) => format!("JetStream does not answer ({e})"),
        Err(_) => format!("JetStream did not answer within {CHECK_TIMEOUT:?}"),
    };
    // Asked at the same time as JetStream above and bounded the same way:
    // by now it has answered, or nearly.
    let answering = tokio::time::timeout(Duration::from_millis(300), others)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let cause = if configured < 2 {
        "the server may have JetStream disabled or be starting".to_owned()
    } else if !answering.is_empty() {
        let info = client.server_info();
        format!(
            "the server this status is connected to ({}) has no JetStream while {} do: it is cut off from its cluster (a partition, a hung or failing server; services leave such a server once it has not answered for 4 s, which a cut-off cluster leader delays until it notices, up to about 20 s); run status again to be connected elsewhere",
            if info.server_name.is_empty() { format!("{}:{}", info.host, info.port) } else { info.server_name },
            config.nats.clone().with_servers(answering).servers_for_log()
        )
    } else {
        format!("{reachable} of the {configured} configured servers answer, enough for a quorum: JetStream has no meta leader for the moment (an election after a server died takes nats-server 4-9 s)")
    };
    JetStream::Unanswered(format!("{why}; {cause}"))
}

/// How many configured servers accept a TCP connection now.
async fn reachable_servers(config: &Config) -> usize {
    let probes = config
        .nats
        .servers
        .iter()
        .map(|url| rg_bus::connect::answers(url));
    futures::future::join_all(probes)
        .await
        .into_iter()
        .filter(|up| *up)
        .count()
}

async fn report(config: &Config) -> Vec<Line> {
    let mut out = Vec::new();
    let mut nats = config.nats.clone();
    nats.connect_timeout = nats.connect_timeout.min(Duration::from_secs(1));
    // Every configured server at once: a hung one must not cost its
    // connect timeout before the others are tried.
    let client = match rg_bus::connect::connect_first(&nats, "regionguard-status").await {
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
    let mut js = jetstream::new(client.clone());
    js.set_timeout(CHECK_TIMEOUT);
    let subjects = config.nats.subjects();
    // Every check at once, each with its own deadline.
    let (jetstream, streams, probers, consumers, gateway, simulator) = tokio::join!(
        jetstream_state(&client, config),
        within("nats", streams(&client, &js, config)),
        within("prober", probers(config, &js)),
        consumers(&js, config),
        within("gateway", gateway(config, &js)),
        within("simulator", simulator(config, &client)),
    );
    if let JetStream::Unanswered(why) = &jetstream {
        // Nothing JetStream holds can be read: say so instead of "down".
        let server = client.server_info();
        out.push(Line {
            component: "nats",
            state: State::Unknown,
            detail: format!(
                "connected to {} ({}:{}), but cannot tell more: {why}",
                server.server_name, server.host, server.port
            ),
        });
        for component in ["prober", "detector", "cascade", "failover", "notifier"] {
            out.push(Line {
                component,
                state: State::Unknown,
                detail: "cannot tell: JetStream does not answer (above)".into(),
            });
        }
        out.push(gateway);
        out.push(simulator);
        return out;
    }
    out.push(streams);
    out.push(probers);
    let detector_prefix = config.detector.durable.clone();
    let health = subjects.stream(Stream::Health);
    let decisions = subjects.stream(Stream::Decisions);
    out.push(services_line(
        "detector",
        &consumers,
        |stream, name| stream == health && name.starts_with(&detector_prefix),
        true,
    ));
    out.push(services_line(
        "cascade",
        &consumers,
        |stream, name| stream == health && name.starts_with(&config.cascade.durable),
        true,
    ));
    out.push(services_line(
        "failover",
        &consumers,
        |stream, name| {
            stream == decisions
                && (name == config.failover.durable
                    || name == format!("{}-approvals", config.failover.durable)
                    || name == format!("{}-rejections", config.failover.durable))
        },
        true,
    ));
    out.push(services_line(
        "notifier",
        &consumers,
        |_, name| name == config.notifier.durable || name == config.notifier.decisions_durable,
        !config.notifier.sinks.is_empty(),
    ));
    out.push(gateway);
    out.push(simulator);
    out
}

/// The NATS line: the server connected to and each stream's messages (a
/// stream without a leader is told from a missing one).
async fn streams(client: &async_nats::Client, js: &jetstream::Context, config: &Config) -> Line {
    use async_nats::jetstream::context::GetStreamErrorKind;
    let subjects = config.nats.subjects();
    let server = client.server_info();
    let checks = Stream::ALL.iter().map(|s| {
        let name = subjects.stream(*s);
        async move {
            let state = match js.get_stream(&name).await {
                Ok(mut stream) => match stream.info().await {
                    Ok(i) => {
                        let leaderless = i.cluster.as_ref().is_some_and(|c| c.leader.is_none());
                        if leaderless {
                            format!("{} (no leader)", i.state.messages)
                        } else {
                            i.state.messages.to_string()
                        }
                    }
                    Err(_) => "?".to_owned(),
                },
                Err(e) => match e.kind() {
                    GetStreamErrorKind::JetStream(j)
                        if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND =>
                    {
                        "missing".to_owned()
                    }
                    _ => "no leader or no answer".to_owned(),
                },
            };
            format!("{name} {state}")
        }
    });
    let streams = futures::future::join_all(checks).await;
    let missing = streams.iter().any(|s| s.ends_with("missing"));
    let unsure = streams
        .iter()
        .any(|s| s.ends_with("no answer") || s.ends_with("(no leader)") || s.ends_with('?'));
    Line {
        component: "nats",
        state: if missing || unsure {
            State::Warn
        } else {
            State::Ok
        },
        detail: format!(
            "connected to {} ({}:{}), nats-server {}; messages: {}{}",
            server.server_name,
            server.host,
            server.port,
            server.version,
            streams.join(", "),
            if missing {
                " (a missing stream is created by the first service to start)"
            } else {
                ""
            }
        ),
    }
}

/// The durable consumers the services use, each read by name from its
/// leader (listing every consumer of a stream waits on every server of a
/// cluster, a dead one too): by (stream, name), the consumer's info,
/// `None` when it does not exist, or why it could not be read.
type Consumers = BTreeMap<(String, String), Result<Option<consumer::Info>, String>>;

async fn consumers(js: &jetstream::Context, config: &Config) -> Consumers {
    use async_nats::jetstream::context::ConsumerInfoErrorKind;
    let subjects = config.nats.subjects();
    let health = subjects.stream(Stream::Health);
    let alerts = subjects.stream(Stream::Alerts);
    let decisions = subjects.stream(Stream::Decisions);
    let mut wanted: Vec<(String, String)> = Vec::new();
    // The round judges: one durable, or one per region when they split.
    for durable in [&config.detector.durable, &config.cascade.durable] {
        wanted.push((health.clone(), durable.clone()));
        for region in &config.prober.regions {
            wanted.push((health.clone(), format!("{durable}-{region}")));
        }
    }
    wanted.push((decisions.clone(), config.failover.durable.clone()));
    for answers in ["approvals", "rejections"] {
        wanted.push((
            decisions.clone(),
            format!("{}-{answers}", config.failover.durable),
        ));
    }
    wanted.push((alerts.clone(), config.notifier.durable.clone()));
    wanted.push((decisions.clone(), config.notifier.decisions_durable.clone()));
    let reads = wanted.into_iter().map(|(stream, name)| async move {
        let read = async {
            let s = js
                .get_stream_no_info(&stream)
                .await
                .map_err(|e| e.to_string())?;
            match s.consumer_info(&name).await {
                Ok(info) => Ok(Some(info)),
                Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        };
        let got = match tokio::time::timeout(CHECK_TIMEOUT, read).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
        };
        ((stream, name), got)
    });
    futures::future::join_all(reads).await.into_iter().collect()
}

/// A service is running when one of its consumers has a pull outstanding
/// or delivered within the last 30 s.
fn services_line(
    component: &'static str,
    consumers: &Consumers,
    mine: impl Fn(&str, &str) -> bool,
    required: bool,
) -> Line {
    let now = time::OffsetDateTime::now_utc();
    let mut found: Vec<&consumer::Info> = Vec::new();
    let mut unread: Vec<String> = Vec::new();
    for ((stream, name), got) in consumers.iter().filter(|((s, n), _)| mine(s, n)) {
        match got {
            Ok(Some(info)) => found.push(info),
            Ok(None) => {}
            Err(e) => unread.push(format!("{stream}/{name}: {e}")),
        }
    }
    if found.is_empty() && !unread.is_empty() {
        return Line {
            component,
            state: State::Unknown,
            detail: format!(
                "cannot tell: its consumer could not be read ({}); its stream may have no leader for the moment",
                unread.join("; ")
            ),
        };
    }
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
    // In a cluster: a consumer replica that is not current (a server
    // that came back and has not caught up) leaves no room for another
    // server failure.
    let behind: Vec<String> = found
        .iter()
        .flat_map(|i| {
            i.cluster.iter().flat_map(move |c| {
                c.replicas
                    .iter()
                    .filter(|p| !p.current)
                    .map(move |p| format!("{}'s replica on {} is not current", i.name, p.name))
            })
        })
        .collect();
    let state = match (running, lag) {
        (false, _) => {
            if required {
                State::Down
            } else {
                State::Off
            }
        }
        (true, 0..=1000) if behind.is_empty() => State::Ok,
        (true, _) => State::Warn,
    };
    Line {
        component,
        state,
        detail: format!(
            "{} ({}): {lag} waiting, {unacked} in flight{}",
            if running { "running" } else { "not pulling" },
            names.join(", "),
            if behind.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} (that server is down or catching up: one more server failure would stall the consumer)",
                    behind.join(", ")
                )
            }
        ),
    }
}

/// Probers: the vantages that published in each configured region within
/// the last two probe intervals (plus 5 s). Two reads at once: every event
/// of the window (several vantages of one region publish to the same
/// subjects, so only this counts them all), and the last event of each
/// subject (read from the stream's leader without a consumer, so it still
/// answers where creating a consumer is slow, on a degraded cluster).
async fn probers(config: &Config, js: &jetstream::Context) -> Line {
    let subjects = config.nats.subjects();
    let window = config.prober.interval * 2 + Duration::from_secs(5);
    let lasts = async {
        use futures::StreamExt;
        let stream = js
            .get_stream_no_info(subjects.stream(Stream::Health))
            .await
            .map_err(|e| e.to_string())?;
        let mut names = Vec::new();
        let mut listed = stream
            .info_with_subjects(subjects.health_all())
            .await
            .map_err(|e| e.to_string())?;
        while let Some(entry) = listed.next().await {
            names.push(entry.map_err(|e| e.to_string())?.0);
        }
        let lasts = names.iter().map(|subject| {
            let stream = &stream;
            async move { stream.get_last_raw_message_by_subject(subject).await.ok() }
        });
        Ok::<_, String>(futures::future::join_all(lasts).await)
    };
    let (health, health_all) = (subjects.stream(Stream::Health), subjects.health_all());
    let whole_window = rg_bus::tail::read_once::<HealthEvent>(
        js,
        &health,
        &health_all,
        rg_bus::tail::From::Time(std::time::SystemTime::now() - window),
        CHECK_TIMEOUT * 2 / 3,
    );
    let (lasts, whole_window) = tokio::join!(lasts, whole_window);
    let lasts = match lasts {
        Ok(l) => l,
        Err(e) => {
            return Line {
                component: "prober",
                state: State::Unknown,
                detail: format!("cannot tell: reading the health stream failed: {e}"),
            }
        }
    };
    let oldest = time::OffsetDateTime::now_utc() - window;
    let mut vantages: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for m in lasts.into_iter().flatten().filter(|m| m.time >= oldest) {
        if let Ok(e) = <HealthEvent as prost::Message>::decode(m.payload.as_ref()) {
            vantages.entry(e.region).or_default().insert(e.vantage);
        }
    }
    // Where the window could not be read, the count is a lower bound.
    let counted_all = whole_window.is_ok();
    for e in whole_window.into_iter().flatten().map(|t| t.message) {
        vantages.entry(e.region).or_default().insert(e.vantage);
    }
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
        detail: format!(
            "health events within {window:?}{}: {}",
            if counted_all {
                ""
            } else {
                " (the last of each region and service only: the window could not be read in time, so there may be more vantages)"
            },
            parts.join(", ")
        ),
    }
}

async fn gateway(config: &Config, js: &jetstream::Context) -> Line {
    let mut addr = config.gateway.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip([127, 0, 0, 1].into());
    }
    let health = super::http::get(addr, "/healthz").await;
    let subjects = config.nats.subjects();
    // The last snapshot's age; "no snapshot" only when the stream says so
    // (a server cut off from its cluster cannot tell).
    let (last_snapshot, snapshot) = match js.get_stream(subjects.stream(Stream::Snapshots)).await {
        Ok(s) => match s
            .get_last_raw_message_by_subject(&subjects.dashboard_snapshot())
            .await
        {
            Ok(m) => {
                let age = time::OffsetDateTime::now_utc() - m.time;
                (
                    Some(age),
                    format!("last snapshot {} s ago", age.whole_seconds()),
                )
            }
            Err(e)
                if e.kind()
                    == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
            {
                (None, "no snapshot published".to_owned())
            }
            Err(e) => (None, format!("cannot read the last snapshot ({e})")),
        },
        Err(e) => (None, format!("cannot read the snapshots stream ({e})")),
    };
    // Snapshots that stopped, or a view without fresh data, is what a user
    // of the dashboard sees; /healthz answering is not enough.
    let interval = config.gateway.interval;
    let stopped = last_snapshot
        .is_some_and(|age| age.whole_milliseconds() > 3 * interval.as_millis() as i128 + 2000);
    let view = match super::http::get(addr, "/api/snapshot").await {
        Some((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .map(|s| {
                let n = |k: &str| {
                    s["summary"][k]
                        .as_u64()
                        .or_else(|| s["summary"][k].as_str().and_then(|v| v.parse().ok()))
                        .unwrap_or(0)
                };
                (n("total_endpoints"), n("stale_endpoints"))
            }),
        _ => None,
    };
    let stale_view = match view {
        Some((0, 0)) => Some("its view holds no endpoint with fresh data".to_owned()),
        Some((total, stale)) if stale > 0 => Some(format!(
            "{stale} endpoint(s) without fresh data in its view ({total} fresh)"
        )),
        _ => None,
    };
    match health {
        Some((200, _)) if stopped || stale_view.is_some() => Line {
            component: "gateway",
            state: State::Warn,
            detail: format!(
                "http://{addr}/healthz ok; {snapshot}{}{}",
                if stopped {
                    format!(" (snapshots stopped: expected every {interval:?})")
                } else {
                    String::new()
                },
                stale_view.map(|v| format!("; {v}")).unwrap_or_default()
            ),
        },
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
