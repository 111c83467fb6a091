//! `regionguard failover approve ID`: finds the failover's latest phase in
//! the audit trail (RG_DECISIONS) and publishes its approval, the same
//! message the gateway's `ApproveFailover` publishes.
//! `regionguard failover request --from R`: a failover request by hand.

use std::process::ExitCode;

use rg_proto::v1::FailoverDecision;

/// Phases of the audit trail searched for the failover to approve.
const RECENT_PHASES: u64 = 10_000;

use super::Globals;

pub(crate) async fn run(globals: Globals, id: &str, approver: &str) -> ExitCode {
    let config = match globals.load(Vec::new()) {
        Ok(c) => c,
        Err(e) => return super::config_error(&e),
    };
    match approve(&config.nats, id, approver).await {
        Ok(d) => {
            println!(
                "approved failover {} ({} -> {}) as {}",
                d.id, d.from_region, d.to_region, d.actor
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn approve(
    nats: &rg_bus::NatsConfig,
    id: &str,
    approver: &str,
) -> Result<FailoverDecision, String> {
    let client = rg_bus::connect::connect_once(nats, "regionguard-approve")
        .await
        .map_err(|e| e.to_string())?;
    let js = async_nats::jetstream::new(client);
    let subjects = nats.subjects();
    let stream_name = subjects.stream(rg_bus::Stream::Decisions);
    // The recent audit trail, to find the failover's latest phase.
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
    let latest = latest.ok_or_else(|| format!("no failover {id:?} in {stream_name}"))?;
    let approval = latest
        .approval(&format!("cli:{approver}"), rg_bus::unix_now_ms())
        .map_err(|e| e.to_string())?;
    let publisher = rg_bus::publish::Publisher::new(js);
    publisher
        .publish(
            subjects.failover(approval.phase().token()),
            &approval,
            Some(&approval.approval_msg_id()),
        )
        .await
        .map_err(|e| format!("publishing the approval: {e}"))?;
    Ok(approval)
}

pub(crate) async fn request(
    globals: Globals,
    from: &str,
    reason: &str,
    requester: &str,
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
    let published = async {
        let client = rg_bus::connect::connect_once(&config.nats, "regionguard-request")
            .await
            .map_err(|e| e.to_string())?;
        let publisher = rg_bus::publish::Publisher::new(async_nats::jetstream::new(client));
        publisher
            .publish(
                config.nats.subjects().failover("requested"),
                &d,
                Some(&d.id),
            )
            .await
            .map_err(|e| format!("publishing the request: {e}"))
    };
    match published.await {
        Ok(_) => {
            println!("requested failover {} away from {from}", d.id);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
