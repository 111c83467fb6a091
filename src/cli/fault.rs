//! `regionguard fault inject|clear|list`: fault control of a running
//! simulator over NATS request/reply on `<prefix>.sim.faults`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use rg_proto::v1::{fault_request::Action, FaultKind, FaultReply, FaultRequest, FaultSpec};

use super::Globals;

#[derive(Debug, Subcommand)]
pub(crate) enum FaultCommand {
    /// Inject a fault, e.g. `fault inject --region us-east-1 --service
    /// dynamodb --kind empty-answer --for 120s`.
    Inject(InjectArgs),
    /// Clear faults by id, by region/service/name, or all of them.
    Clear(ClearArgs),
    /// List the active faults.
    List(OutputArgs),
}

#[derive(Debug, Args)]
pub(crate) struct Match {
    /// Region to match (default: any).
    #[arg(long)]
    region: Option<String>,
    /// Service to match (default: any).
    #[arg(long)]
    service: Option<String>,
    /// Exact DNS name to match, e.g. dynamodb.us-east-1.amazonaws.com.
    #[arg(long)]
    name: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct OutputArgs {
    /// Print the reply as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct InjectArgs {
    #[command(flatten)]
    matching: Match,
    /// latency, nxdomain, servfail, refused, empty-answer or timeout.
    #[arg(long)]
    kind: String,
    /// For latency: fixed delay added to each answer, e.g. 150ms.
    #[arg(long, value_parser = humantime::parse_duration)]
    latency: Option<Duration>,
    /// For latency: random extra delay of up to this much, e.g. 20ms.
    #[arg(long, value_parser = humantime::parse_duration)]
    jitter: Option<Duration>,
    /// How long the fault lasts, e.g. 120s (default: until cleared).
    #[arg(long = "for", value_parser = humantime::parse_duration, value_name = "DURATION")]
    duration: Option<Duration>,
    /// Share of queries affected, 0 to 1 (default 1: all).
    #[arg(long)]
    probability: Option<f64>,
    /// Affect only the next N matching queries, then end (e.g. 1: exactly
    /// one lost answer).
    #[arg(long, value_name = "N")]
    times: Option<u32>,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ClearArgs {
    /// Id of the fault to clear (as printed by inject or list).
    #[arg(long)]
    id: Option<String>,
    #[command(flatten)]
    matching: Match,
    /// Clear every fault.
    #[arg(long, conflicts_with_all = ["id", "region", "service", "name"])]
    all: bool,
    #[command(flatten)]
    output: OutputArgs,
}

pub(crate) async fn run(globals: Globals, command: FaultCommand) -> ExitCode {
    let (request, json) = match build(command) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match globals.load(Vec::new()) {
        Ok(c) => c,
        Err(e) => return super::config_error(&e),
    };
    let subject = config.nats.subjects().sim_faults();
    let reply = match send(&config.nats, &subject, &request).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reply).unwrap_or_default()
        );
    } else {
        print_reply(&reply);
    }
    if reply.error.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("Error: the simulator refused the request: {}", reply.error);
        ExitCode::FAILURE
    }
}

fn build(command: FaultCommand) -> Result<(FaultRequest, bool), String> {
    let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64).unwrap_or(0);
    Ok(match command {
        FaultCommand::Inject(a) => {
            let kind =
                rg_simulator::faults::parse_fault_kind(&a.kind).map_err(|e| e.to_string())?;
            if kind == FaultKind::Latency && a.latency.is_none() && a.jitter.is_none() {
                return Err("--kind latency needs --latency (and optionally --jitter)".into());
            }
            let spec = FaultSpec {
                region: a.matching.region.unwrap_or_default(),
                service: a.matching.service.unwrap_or_default(),
                name: a.matching.name.unwrap_or_default(),
                kind: kind as i32,
                latency_ms: ms(a.latency) as u32,
                jitter_ms: ms(a.jitter) as u32,
                duration_ms: ms(a.duration),
                probability: a.probability.unwrap_or(0.0),
                times: a.times.unwrap_or(0),
                ..Default::default()
            };
            (
                FaultRequest {
                    action: Some(Action::Inject(spec)),
                },
                a.output.json,
            )
        }
        FaultCommand::Clear(a) => {
            let filter = FaultSpec {
                id: a.id.unwrap_or_default(),
                region: a.matching.region.unwrap_or_default(),
                service: a.matching.service.unwrap_or_default(),
                name: a.matching.name.unwrap_or_default(),
                ..Default::default()
            };
            let empty = filter.id.is_empty()
                && filter.region.is_empty()
                && filter.service.is_empty()
                && filter.name.is_empty();
            if empty && !a.all {
                return Err(
                    "say which faults to clear: --id, --region/--service/--name, or --all".into(),
                );
            }
            (
                FaultRequest {
                    action: Some(Action::Clear(filter)),
                },
                a.output.json,
            )
        }
        FaultCommand::List(o) => (
            FaultRequest {
                action: Some(Action::List(true)),
            },
            o.json,
        ),
    })
}

/// How long a request nobody received is asked again.
const NO_RESPONDERS_RETRY_FOR: Duration = Duration::from_secs(5);

/// Sends a fault request and decodes the reply.
pub(crate) async fn send(
    nats: &rg_bus::NatsConfig,
    subject: &str,
    request: &FaultRequest,
) -> Result<FaultReply, String> {
    let client = rg_bus::connect::connect_first(nats, "regionguard-fault")
        .await
        .map_err(|e| e.to_string())?;
    // "No responders" means nobody got the request, so asking again is
    // safe: a simulator whose NATS server just went away is reconnecting
    // (seen right after a cluster node was killed). A timeout is not
    // retried: the simulator may have acted on it.
    let deadline = tokio::time::Instant::now() + NO_RESPONDERS_RETRY_FOR;
    let mut said = false;
    let answer = loop {
        let answer: Result<FaultReply, _> =
            rg_bus::request::request(&client, subject, request, nats.request_timeout).await;
        match answer {
            Err(rg_bus::request::RequestError::NoResponders { .. })
                if tokio::time::Instant::now() < deadline =>
            {
                if !said {
                    eprintln!("no simulator answers on {subject} yet (it may be reconnecting to NATS); asking again for up to {NO_RESPONDERS_RETRY_FOR:?}");
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => break other,
        }
    };
    answer.map_err(|e| match e {
            rg_bus::request::RequestError::NoResponders { .. } => format!("no simulator is listening on {subject}: start `regionguard simulator` (or `regionguard up`)"),
            rg_bus::request::RequestError::TimedOut { .. } => match refused(nats, subject) {
                Some(why) => why,
                None => format!("no simulator answered on {subject} within {:?} (is `regionguard simulator` running with control enabled, and NATS at {} reachable?)", nats.request_timeout, nats.servers_for_log()),
            },
            e => e.to_string(),
        })
}

/// When the server refused this user `subject`: what to say instead of
/// "no simulator answered".
fn refused(nats: &rg_bus::NatsConfig, subject: &str) -> Option<String> {
    let violations = rg_bus::connect::permission_violations();
    let hit = violations.iter().find(|v| v.contains(subject))?;
    Some(format!(
        "the NATS user {} may not do this: the server refused it ({hit}); run the command as a user allowed to, e.g. the administrator (RG_NATS__USER=admin RG_NATS__PASSWORD=...)",
        nats.user.as_deref().map_or_else(|| "(none)".to_owned(), |u| format!("{u:?}"))
    ))
}

fn print_reply(reply: &FaultReply) {
    if !reply.changed.is_empty() {
        println!("changed:");
        for f in &reply.changed {
            println!("  {}", describe(f));
        }
    }
    if reply.active.is_empty() {
        println!("no active faults");
    } else {
        println!("active faults:");
        for f in &reply.active {
            println!("  {}", describe(f));
        }
    }
}

fn describe(f: &FaultSpec) -> String {
    let target = if !f.name.is_empty() {
        f.name.clone()
    } else {
        format!(
            "{}/{}",
            if f.region.is_empty() { "*" } else { &f.region },
            if f.service.is_empty() {
                "*"
            } else {
                &f.service
            }
        )
    };
    let kind = FaultKind::try_from(f.kind)
        .map(|k| k.as_str_name())
        .unwrap_or("?");
    let kind = kind
        .trim_start_matches("FAULT_KIND_")
        .to_lowercase()
        .replace('_', "-");
    let mut s = format!("{:<6} {target:<40} {kind}", f.id);
    if f.latency_ms > 0 || f.jitter_ms > 0 {
        s.push_str(&format!(" {}ms+{}ms", f.latency_ms, f.jitter_ms));
    }
    if f.probability > 0.0 && f.probability < 1.0 {
        s.push_str(&format!(" p={}", f.probability));
    }
    if f.times > 0 {
        s.push_str(&format!(" x{} left", f.times));
    }
    if f.expires_at_unix_ms > 0 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        s.push_str(&format!(
            " (expires in {}s)",
            ((f.expires_at_unix_ms - now).max(0) + 999) / 1000
        ));
    }
    s
}
