//! `regionguard failover approve ID`: finds the failover's latest phase in
//! the audit trail (RG_DECISIONS) and publishes its approval, the same
//! message the gateway's `ApproveFailover` publishes.
//! `regionguard failover request --from R`: a failover request by hand.

use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use prost::Message;
use rg_proto::v1::FailoverDecision;

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
    let stream = js
        .get_stream(&stream_name)
        .await
        .map_err(|e| format!("reading {stream_name}: {e}"))?;
    // The audit trail's recent phases, newest last.
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: subjects.stream_subject(rg_bus::Stream::Decisions),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("reading {stream_name}: {e}"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("reading {stream_name}: {e}"))?;
    let mut latest: Option<FailoverDecision> = None;
    loop {
        let next = tokio::time::timeout(Duration::from_millis(500), messages.next()).await;
        let Ok(Some(Ok(m))) = next else { break };
        if let Ok(d) = FailoverDecision::decode(m.payload.as_ref()) {
            if d.id == id {
                latest = Some(d);
            }
        }
        if m.info().map(|i| i.pending == 0).unwrap_or(true) {
            break;
        }
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
