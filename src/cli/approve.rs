//! `regionguard failover approve ID` and `failover reject ID`: find the
//! failover's latest phase in the audit trail (RG_DECISIONS) and publish
//! its approval or rejection, the same messages the gateway publishes.
//! `regionguard failover request --from R`: a failover request by hand.

use std::process::ExitCode;

use rg_proto::v1::FailoverDecision;

/// Phases of the audit trail searched for the failover to approve.
const RECENT_PHASES: u64 = 10_000;

use super::Globals;

/// `failover approve ID` (`reject` `None`) or `failover reject ID`.
pub(crate) async fn run(
    globals: Globals,
    id: &str,
    approver: &str,
    reject: Option<&str>,
) -> ExitCode {
    let config = match globals.load(Vec::new()) {
        Ok(c) => c,
        Err(e) => return super::config_error(&e),
    };
    let what = if reject.is_some() {
        "rejection"
    } else {
        "approval"
    };
    match publish_answer(&config.nats, id, approver, reject).await {
        Ok(Answer::Unconfirmed) => unconfirmed(what, id, PUBLISH_PATIENCE),
        Ok(Answer::Stored(d)) => {
            println!(
                "{} failover {} ({} -> {}) as {}{}",
                d.phase().token(),
                d.id,
                d.from_region,
                d.to_region,
                d.actor,
                if d.error.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", d.error)
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The latest phase of failover `id` in the audit trail.
async fn latest_phase(
    nats: &rg_bus::NatsConfig,
    js: &async_nats::jetstream::Context,
    id: &str,
) -> Result<FailoverDecision, String> {
    let subjects = nats.subjects();
    let stream_name = subjects.stream(rg_bus::Stream::Decisions);
    let stop = tokio_util::sync::CancellationToken::new();
    let mut trail = rg_bus::tail::spawn::<FailoverDecision>(
        js.clone(),
        stream_name.clone(),
        subjects.stream_subject(rg_bus::Stream::Decisions),
        rg_bus::tail::From::Last(RECENT_PHASES),
        "approve",
        stop.clone(),
    );
    let mut latest: Option<FailoverDecision> = None;
    let read = tokio::time::timeout(nats.request_timeout * 5, async {
        while let Some(event) = trail.recv().await {
            match event {
                rg_bus::tail::Event::Message(m) if m.message.id == id => latest = Some(m.message),
                rg_bus::tail::Event::Message(_) => {}
                rg_bus::tail::Event::CaughtUp => break,
            }
        }
    })
    .await;
    stop.cancel();
    if read.is_err() {
        return Err(format!("reading {stream_name} took too long"));
    }
    latest.ok_or_else(|| format!("no failover {id:?} in {stream_name}"))
}

/// An operator's answer, stored or not confirmed.
enum Answer {
    Stored(Box<FailoverDecision>),
    Unconfirmed,
}

/// Publishes the approval (or, with `reject`, the rejection) of `id`.
/// Both share one message id: when a different answer was stored first,
/// says which.
async fn publish_answer(
    nats: &rg_bus::NatsConfig,
    id: &str,
    approver: &str,
    reject: Option<&str>,
) -> Result<Answer, String> {
    let client = rg_bus::connect::connect_first(nats, "regionguard-approve")
        .await
        .map_err(|e| e.to_string())?;
    let js = async_nats::jetstream::new(client);
    let latest = latest_phase(nats, &js, id).await?;
    let actor = format!("cli:{approver}");
    let now = rg_bus::unix_now_ms();
    let answer = match reject {
        None => latest.approval(&actor, now),
        Some(reason) => latest.rejection(&actor, now, reason),
    }
    .map_err(|e| e.to_string())?;
    let publisher = rg_bus::publish::Publisher::hearing_elections(js).await;
    let stored = publish_confirmed(
        &publisher,
        nats.subjects().failover(answer.phase().token()),
        &answer,
        &answer.answer_msg_id(),
        PUBLISH_PATIENCE,
    )
    .await
    .map_err(|e| format!("publishing the {}: {e}", answer.phase().token()))?;
    let Some(stored) = stored else {
        return Ok(Answer::Unconfirmed);
    };
    if stored.duplicate {
        let stream = nats.subjects().stream(rg_bus::Stream::Decisions);
        let first: FailoverDecision = publisher.read_back(&stream, stored.sequence).await?;
        if first.phase() != answer.phase() {
            return Err(format!(
                "failover {id} was already {} by {}",
                first.phase().token(),
                first.actor
            ));
        }
        return Ok(Answer::Stored(Box::new(first)));
    }
    Ok(Answer::Stored(Box::new(answer)))
}

/// `failover request` exit status: refused, or failed without a change.
const EXIT_REFUSED: u8 = 3;
/// `failover request` exit status: executed and rolled back.
const EXIT_ROLLED_BACK: u8 = 4;
/// `failover request` exit status: no answer within `--wait`.
const EXIT_NO_ANSWER: u8 = 5;
/// `failover request` / `approve` exit status: NATS did not confirm that
/// the request was stored within the time allowed; it may still be stored
/// (retries use the same message id, so never twice).
const EXIT_UNCONFIRMED: u8 = 6;
/// How long a request or approval is retried (same message id) while NATS
/// does not confirm it, when no `--wait` bounds it.
const PUBLISH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Publishes `d` under `msg_id`, retrying (same id: stored at most once)
/// while NATS is away or electing, for at most `patience`. `Ok(false)`:
/// not confirmed in time, which does not mean not stored.
async fn publish_confirmed(
    publisher: &rg_bus::publish::Publisher,
    subject: String,
    d: &FailoverDecision,
    msg_id: &str,
    patience: std::time::Duration,
) -> Result<Option<rg_bus::publish::Stored>, String> {
    let give_up = tokio_util::sync::CancellationToken::new();
    let timer = {
        let give_up = give_up.clone();
        tokio::spawn(async move {
            tokio::time::sleep(patience).await;
            give_up.cancel();
        })
    };
    let outcome = publisher
        .publish_until_stored(subject, d, Some(msg_id), &give_up)
        .await;
    timer.abort();
    match outcome {
        Some(Ok(stored)) => Ok(Some(stored)),
        Some(Err(e)) => Err(e.to_string()),
        None => Ok(None),
    }
}

/// What to tell when a request or approval was not confirmed stored.
fn unconfirmed(what: &str, id: &str, patience: std::time::Duration) -> ExitCode {
    eprintln!(
        "Error: NATS did not confirm the {what} for {id} within {patience:?} (the warnings above say why: no stream, a cluster election or partition, or NATS down). \
         It may still be stored when NATS recovers, at most once (same message id): check `regionguard tail 'rg.decisions.failover.>'` \
         or the dashboard's timeline before asking again."
    );
    ExitCode::from(EXIT_UNCONFIRMED)
}

pub(crate) async fn request(
    globals: Globals,
    from: &str,
    reason: &str,
    requester: &str,
    wait: std::time::Duration,
) -> ExitCode {
    let config = match globals.load(Vec::new()) {
        Ok(c) => c,
        Err(e) => return super::config_error(&e),
    };
    if let Err(e) = rg_proto::domain::Region::parse(from) {
        eprintln!("Error: --from: {e}");
        return ExitCode::from(rg_bus::service::EXIT_CONFIG);
    }
    let now = rg_bus::unix_now_ms();
    let mut d = FailoverDecision {
        id: format!("manual-{from}-{now}"),
        from_region: from.to_owned(),
        reason: reason.to_owned(),
        actor: format!("cli:{requester}"),
        at_unix_ms: now,
        ..Default::default()
    };
    d.set_phase(rg_proto::v1::FailoverPhase::Requested);
    let client = match connect(&config.nats).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    send_and_wait(&config.nats, client, d, wait).await
}

/// `failover failback ID`: asks for the failback of completed failover
/// `id` now, as the service itself proposes it after `failback_after`.
pub(crate) async fn failback(
    globals: Globals,
    id: &str,
    requester: &str,
    wait: std::time::Duration,
) -> ExitCode {
    let config = match globals.load(Vec::new()) {
        Ok(c) => c,
        Err(e) => return super::config_error(&e),
    };
    let client = match connect(&config.nats).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let js = async_nats::jetstream::new(client.clone());
    let done = match latest_phase(&config.nats, &js, id).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if done.failback {
        eprintln!("Error: {id} is a failback; fail back failovers only");
        return ExitCode::from(EXIT_REFUSED);
    }
    if done.phase() != rg_proto::v1::FailoverPhase::Completed {
        eprintln!(
            "Error: failover {id} is {}, not completed: nothing to fail back",
            done.phase().token()
        );
        return ExitCode::from(EXIT_REFUSED);
    }
    let mut d = FailoverDecision {
        id: format!("{id}:failback"),
        from_region: done.to_region.clone(),
        to_region: done.from_region.clone(),
        reason: format!("failback of {id} requested by an operator"),
        actor: format!("cli:{requester}"),
        at_unix_ms: rg_bus::unix_now_ms(),
        failback: true,
        ..Default::default()
    };
    d.set_phase(rg_proto::v1::FailoverPhase::Requested);
    send_and_wait(&config.nats, client, d, wait).await
}

/// Exit status of `failover readiness`: ready, but a standby drifted.
const EXIT_DRIFT: u8 = 2;

/// `failover readiness`: asks the failover service to check every
/// declared region now, and prints what it found.
pub(crate) async fn readiness(globals: Globals, wait: std::time::Duration, json: bool) -> ExitCode {
    use prost::Message as _;
    let config = match globals.load(Vec::new()) {
        Ok(c) => c,
        Err(e) => return super::config_error(&e),
    };
    let client = match connect(&config.nats).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let subject = config.nats.subjects().readiness_check();
    if !json {
        println!("asking the failover service to check every declared region (up to {wait:?})");
    }
    let ask = async_nats::Request::new().timeout(Some(wait));
    let asked = tokio::time::timeout(
        wait + std::time::Duration::from_secs(1),
        client.send_request(subject, ask),
    )
    .await;
    let msg = match asked {
        Ok(Ok(msg)) => msg,
        Ok(Err(e)) if e.kind() == async_nats::client::RequestErrorKind::NoResponders => {
            eprintln!("Error: no failover service answers: start it (`regionguard failover`, or `regionguard up`) in plan, approve or auto mode");
            return ExitCode::from(EXIT_NO_ANSWER);
        }
        Ok(Err(e)) if e.kind() == async_nats::client::RequestErrorKind::TimedOut => {
            eprintln!("Error: the failover service did not answer within {wait:?}: a check reads every declared resource of every region; try a longer --wait");
            return ExitCode::from(EXIT_NO_ANSWER);
        }
        Ok(Err(e)) => {
            eprintln!("Error: asking the failover service: {e}");
            return ExitCode::FAILURE;
        }
        Err(_) => {
            eprintln!("Error: no answer within {wait:?}");
            return ExitCode::from(EXIT_NO_ANSWER);
        }
    };
    let run = match rg_proto::v1::ReadinessRun::decode(msg.payload.as_ref()) {
        Ok(run) => run,
        Err(e) => {
            eprintln!("Error: the failover service's answer does not decode: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !run.error.is_empty() {
        eprintln!("Error: {}", run.error);
        return ExitCode::FAILURE;
    }
    for r in &run.regions {
        if json {
            println!("{}", readiness_json(r));
            continue;
        }
        if r.ready {
            let n = r.steps.len();
            println!(
                "{}: ready: {} would take the traffic in {n} step{}",
                r.region,
                r.target,
                if n == 1 { "" } else { "s" }
            );
        } else {
            println!("{}: NOT READY", r.region);
        }
        for p in &r.problems {
            println!("  problem: {p}");
        }
        for w in &r.warnings {
            println!("  warning: {w}");
        }
        println!("  ({} AWS calls, {} ms)", r.aws_calls, r.duration_ms);
    }
    if run.regions.iter().any(|r| !r.ready) {
        ExitCode::from(EXIT_REFUSED)
    } else if run.regions.iter().any(|r| !r.problems.is_empty()) {
        ExitCode::from(EXIT_DRIFT)
    } else {
        ExitCode::SUCCESS
    }
}

/// One region's readiness as a JSON line.
fn readiness_json(r: &rg_proto::v1::Readiness) -> serde_json::Value {
    serde_json::json!({
        "region": r.region,
        "ready": r.ready,
        "target": r.target,
        "summary": r.summary,
        "problems": r.problems,
        "warnings": r.warnings,
        "steps": r.steps.iter().map(|s| &s.resource).collect::<Vec<_>>(),
        "candidates": r.candidates.iter().map(|c| serde_json::json!({
            "region": c.region,
            "eligible": c.eligible,
            "health_score": c.health_score,
            "dns_score": c.dns_score,
            "note": c.note,
            "checks": c.checks.iter().map(|k| serde_json::json!({
                "resource": k.resource, "factor": k.factor, "detail": k.detail,
                "disqualifies": k.disqualifies,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "alert_id": r.alert_id,
        "checked_at_unix_ms": r.checked_at_unix_ms,
        "duration_ms": r.duration_ms,
        "aws_calls": r.aws_calls,
    })
}

/// A connection for a request, or the exit code after saying why not.
async fn connect(nats: &rg_bus::NatsConfig) -> Result<async_nats::Client, ExitCode> {
    rg_bus::connect::connect_first(nats, "regionguard-request")
        .await
        .map_err(|e| {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        })
}

/// Publishes request `d` and, unless `wait` is zero, waits for the
/// failover service's answer and reports it.
async fn send_and_wait(
    nats: &rg_bus::NatsConfig,
    client: async_nats::Client,
    d: FailoverDecision,
    wait: std::time::Duration,
) -> ExitCode {
    let subjects = nats.subjects();
    let from = d.from_region.clone();
    // Subscribed before the request goes out: no answer can be missed.
    let answers = if wait.is_zero() {
        None
    } else {
        match client.subscribe(subjects.failover(">")).await {
            Ok(sub) => Some(sub),
            Err(e) => {
                eprintln!("Error: subscribing to the failover phases: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let publisher =
        rg_bus::publish::Publisher::hearing_elections(async_nats::jetstream::new(client)).await;
    let started = tokio::time::Instant::now();
    let patience = if wait.is_zero() {
        PUBLISH_PATIENCE
    } else {
        wait
    };
    match publish_confirmed(
        &publisher,
        subjects.failover("requested"),
        &d,
        &d.id,
        patience,
    )
    .await
    {
        Ok(Some(_)) => {}
        Ok(None) => return unconfirmed("request", &d.id, patience),
        Err(e) => {
            eprintln!("Error: publishing the request: {e}");
            return ExitCode::FAILURE;
        }
    }
    // The answer gets what is left of --wait (at least a second).
    let wait = wait
        .saturating_sub(started.elapsed())
        .max(std::time::Duration::from_secs(1));
    let Some(answers) = answers else {
        println!(
            "queued request {} away from {from} (not waiting for the answer; see `regionguard tail 'rg.decisions.failover.>'`)",
            d.id
        );
        return ExitCode::SUCCESS;
    };
    println!(
        "requested {} {} away from {from}; waiting up to {wait:?} for the failover service",
        if d.failback { "failback" } else { "failover" },
        d.id
    );
    match answer(answers, &d.id, wait).await {
        Some(a) => report(&a),
        None => {
            eprintln!(
                "no answer within {wait:?}: the failover service is not running, runs in observe mode (requests are only logged), or cannot store its answer for the moment (a NATS election or partition); the request {} stays queued",
                d.id
            );
            ExitCode::from(EXIT_NO_ANSWER)
        }
    }
}

/// The failover service's first answer to request `id`: a planned,
/// completed, failed or rolled-back phase.
async fn answer(
    mut sub: async_nats::Subscriber,
    id: &str,
    wait: std::time::Duration,
) -> Option<FailoverDecision> {
    use futures::StreamExt as _;
    use prost::Message as _;
    use rg_proto::v1::FailoverPhase as P;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let msg = tokio::time::timeout_at(deadline, sub.next()).await.ok()??;
        let Ok(d) = FailoverDecision::decode(msg.payload.as_ref()) else {
            continue;
        };
        if d.id == id
            && matches!(
                d.phase(),
                P::Planned | P::Completed | P::Failed | P::RolledBack
            )
        {
            return Some(d);
        }
    }
}

fn report(d: &FailoverDecision) -> ExitCode {
    use rg_proto::v1::FailoverPhase as P;
    let plan = d.plan.clone().unwrap_or_default();
    let candidates = || {
        for c in &plan.candidates {
            let verdict = if c.verdict.is_empty() {
                &c.note
            } else {
                &c.verdict
            };
            println!("  {} {:.2}: {verdict}", c.region, c.health_score);
            for check in c.checks.iter().filter(|k| k.factor < 1.0) {
                println!(
                    "      {} {:.2}: {}",
                    check.resource, check.factor, check.detail
                );
            }
        }
    };
    match d.phase() {
        P::Planned => {
            println!(
                "planned: {} -> {} in {} steps ({} mode)",
                d.from_region,
                d.to_region,
                plan.steps.len(),
                format!("{:?}", d.mode()).to_lowercase()
            );
            println!("{}", plan.rationale);
            println!("candidates:");
            candidates();
            println!("steps:");
            for (i, step) in plan.steps.iter().enumerate() {
                println!(
                    "  {}. {}{}{}{}",
                    i + 1,
                    step.resource,
                    step_changes(&step.before, &step.after),
                    if step.needs_control_plane {
                        " [control plane]"
                    } else {
                        ""
                    },
                    if step.irreversible {
                        " (IRREVERSIBLE)"
                    } else {
                        ""
                    }
                );
            }
            for w in &plan.warnings {
                println!("warning: {w}");
            }
            if d.mode() == rg_proto::v1::FailoverMode::Approve {
                println!("approve with: regionguard failover approve {}", d.id);
            }
            ExitCode::SUCCESS
        }
        P::Completed => {
            println!("completed: {} -> {}", d.from_region, d.to_region);
            ExitCode::SUCCESS
        }
        P::RolledBack => {
            eprintln!("rolled back: {}", d.error);
            ExitCode::from(EXIT_ROLLED_BACK)
        }
        _ => {
            eprintln!("refused: {}", d.error);
            candidates();
            ExitCode::from(EXIT_REFUSED)
        }
    }
}

/// What a step changes, as `: path before -> after, ...` (empty when it
/// changes nothing, e.g. verification).
fn step_changes(before: &str, after: &str) -> String {
    let (Ok(b), Ok(a)) = (
        serde_json::from_str::<serde_json::Value>(before),
        serde_json::from_str::<serde_json::Value>(after),
    ) else {
        return String::new();
    };
    let mut changes = Vec::new();
    diff("", &b, &a, &mut changes);
    if changes.is_empty() {
        String::new()
    } else {
        format!(": {}", changes.join(", "))
    }
}

/// The leaves that differ between `b` and `a`, by path. Records are named
/// by their set identifier when they have one.
fn diff(path: &str, b: &serde_json::Value, a: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (b, a) {
        (Value::Object(bo), Value::Object(ao)) => {
            let keys: std::collections::BTreeSet<&String> = bo.keys().chain(ao.keys()).collect();
            for k in keys {
                let (bv, av) = (
                    bo.get(k).unwrap_or(&Value::Null),
                    ao.get(k).unwrap_or(&Value::Null),
                );
                diff(&join(k), bv, av, out);
            }
        }
        (Value::Array(ba), Value::Array(aa)) if ba.len() == aa.len() => {
            for (i, (bv, av)) in ba.iter().zip(aa).enumerate() {
                let label = av["set_identifier"]
                    .as_str()
                    .map_or_else(|| i.to_string(), str::to_owned);
                diff(&format!("{path}[{label}]"), bv, av, out);
            }
        }
        _ if b != a => {
            let show = |v: &Value| match v {
                Value::Null => "none".to_owned(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push(format!("{path} {} -> {}", show(b), show(a)));
        }
        _ => {}
    }
}
