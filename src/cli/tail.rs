//! `regionguard tail [SUBJECT]`: subscribe and print each message, decoded
//! from protobuf by its subject: on a terminal one line a message for a
//! person (time, subject, severity or status, what it says), otherwise (or
//! with `--json`) one JSON line a message for programs.
//!
//! This is how an operator subscribes to alert subjects without writing
//! code: `regionguard tail 'rg.alerts.*.critical'`. A payload that does not
//! decode is printed as such (a line with an `error` field in JSON); tail
//! keeps going.

use std::io::Write;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use futures::StreamExt;
use prost::Message;
use rg_proto::v1;
use serde_json::{json, Value};

use super::Globals;

#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// Subject to subscribe to (NATS wildcards allowed). Default: every
    /// regionguard subject (`<prefix>.>`).
    subject: Option<String>,
    /// Exit after this many messages.
    #[arg(long, short = 'n', value_name = "N")]
    count: Option<u64>,
    /// Print JSON lines (the default when stdout is not a terminal).
    #[arg(long, conflicts_with = "human")]
    json: bool,
    /// Print lines for a person (the default on a terminal).
    #[arg(long)]
    human: bool,
    /// With the human format: also what an alert predicts and recommends,
    /// and a plan's steps, indented under its line.
    #[arg(long, short = 'v')]
    verbose: bool,
}

pub(crate) async fn run(globals: Globals, args: TailArgs) -> ExitCode {
    let config = match globals.load(Vec::new()) {
        Ok(c) => c,
        Err(e) => return super::config_error(&e),
    };
    let subjects = config.nats.subjects();
    let subject = args.subject.unwrap_or_else(|| subjects.all());
    let client = match rg_bus::connect::connect_once(&config.nats, "regionguard-tail").await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut sub = match client.subscribe(subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Error: subscribing to {subject}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Make sure the subscription reached the server before saying so.
    if let Err(e) = client.flush().await {
        eprintln!(
            "Error: NATS at {} did not answer: {e}",
            config.nats.servers_for_log()
        );
        return ExitCode::FAILURE;
    }
    // A subscription the user may not make is refused with an error after
    // the fact (the subscription itself "succeeds"): the server sent it
    // before answering the flush; give its callback a moment.
    let mut waited = std::time::Duration::ZERO;
    while waited < REFUSAL_WAIT {
        if let Some(refused) = refused_subscription() {
            return say_refused(&config, &subject, &refused);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += std::time::Duration::from_millis(50);
    }
    eprintln!(
        "tailing {subject} on {} (Ctrl-C to stop)",
        config.nats.servers_for_log()
    );
    // Refusals can come later too (after a reconnect): checked now and then.
    let mut check = tokio::time::interval(std::time::Duration::from_secs(1));
    let json = args.json || (!args.human && !std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let mut seen = 0u64;
    let stdout = std::io::stdout();
    loop {
        let message = tokio::select! {
            m = sub.next() => match m { Some(m) => m, None => break },
            _ = tokio::signal::ctrl_c() => break,
            _ = check.tick() => {
                if let Some(refused) = refused_subscription() {
                    return say_refused(&config, &subject, &refused);
                }
                continue;
            }
        };
        let line = if json {
            to_json_line(subjects.prefix(), &message.subject, &message.payload)
        } else {
            super::tail_human::line(
                subjects.prefix(),
                &message.subject,
                &message.payload,
                args.verbose,
            )
        };
        let mut out = stdout.lock();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            // stdout closed (e.g. piped into `head`): stop quietly.
            break;
        }
        seen += 1;
        if args.count.is_some_and(|n| seen >= n) {
            break;
        }
    }
    ExitCode::SUCCESS
}

/// How long tail waits after subscribing for the server to refuse it.
const REFUSAL_WAIT: std::time::Duration = std::time::Duration::from_millis(300);

/// The server's "Permissions Violation for Subscription to ..." error, if
/// it sent one to this process.
fn refused_subscription() -> Option<String> {
    rg_bus::connect::permission_violations()
        .into_iter()
        .find(|v| v.contains("for Subscription"))
}

/// Says that the NATS user may not subscribe, and how to tail instead.
fn say_refused(config: &super::config::Config, subject: &str, refused: &str) -> ExitCode {
    let user = config
        .nats
        .user
        .as_deref()
        .map_or_else(|| "(none)".to_owned(), |u| format!("{u:?}"));
    eprintln!(
        "Error: the NATS user {user} may not subscribe to {subject} (the server said: {refused}); tail as a user that may, e.g. the administrator (RG_NATS__USER=admin and its password)"
    );
    ExitCode::FAILURE
}

/// Whether `subject` is `<p>.decisions.readiness.<region>`.
pub(crate) fn is_readiness(prefix: &str, subject: &str) -> bool {
    subject
        .strip_prefix(prefix)
        .is_some_and(|s| s.starts_with(".decisions.readiness."))
}

/// Decodes a payload by its subject and renders one JSON line.
pub(crate) fn to_json_line(prefix: &str, subject: &str, payload: &[u8]) -> String {
    let received = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let kind = subject
        .strip_prefix(prefix)
        .and_then(|s| s.strip_prefix('.'))
        .and_then(|s| s.split('.').next());
    let decoded: Result<(&str, Value), String> = match kind {
        Some("health") => decode::<v1::HealthEvent>(payload).map(|v| ("HealthEvent", v)),
        Some("alerts") => decode::<v1::Alert>(payload).map(|v| ("Alert", v)),
        Some("decisions") if is_readiness(prefix, subject) => {
            decode::<v1::Readiness>(payload).map(|v| ("Readiness", v))
        }
        Some("decisions") => {
            decode::<v1::FailoverDecision>(payload).map(|v| ("FailoverDecision", v))
        }
        Some("snapshots") => {
            decode::<v1::DashboardSnapshot>(payload).map(|v| ("DashboardSnapshot", v))
        }
        Some("sim") => decode::<v1::FaultRequest>(payload)
            .map(|v| ("FaultRequest", v))
            .or_else(|_| decode::<v1::FaultReply>(payload).map(|v| ("FaultReply", v))),
        Some("confirm") => decode::<v1::ConfirmRequest>(payload).map(|v| ("ConfirmRequest", v)),
        Some("deadletter") => Ok((
            "DeadLetter",
            json!({"bytes": payload.len(), "note": "the undecodable payload a consumer set aside; its original subject is in the Rg-Original-Subject header"}),
        )),
        _ => Err("no regionguard message type is published on this subject".into()),
    };
    let line = match decoded {
        Ok((name, message)) => {
            json!({"subject": subject, "received_at_unix_ms": received, "type": name, "message": message})
        }
        Err(error) => {
            json!({"subject": subject, "received_at_unix_ms": received, "error": error, "bytes": payload.len()})
        }
    };
    line.to_string()
}

fn decode<M: Message + Default + serde::Serialize>(payload: &[u8]) -> Result<Value, String> {
    let message = M::decode(payload).map_err(|e| format!("undecodable payload: {e}"))?;
    serde_json::to_value(&message).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_events_render_with_enum_names() {
        let e = v1::HealthEvent {
            region: "us-east-1".into(),
            status: v1::Status::Critical as i32,
            ..Default::default()
        };
        let line: Value = serde_json::from_str(&to_json_line(
            "rg",
            "rg.health.us-east-1.ec2",
            &e.encode_to_vec(),
        ))
        .unwrap();
        assert_eq!(line["type"], "HealthEvent");
        assert_eq!(line["message"]["status"], "STATUS_CRITICAL");
    }

    #[test]
    fn garbage_renders_as_an_error_line() {
        let line: Value =
            serde_json::from_str(&to_json_line("rg", "rg.health.x.y", &[0xff, 0xff])).unwrap();
        assert!(line["error"].as_str().unwrap().contains("undecodable"));
        assert_eq!(line["bytes"], 2);
    }
}
