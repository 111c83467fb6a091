//! Changing faults at run time: requests on `<prefix>.sim.faults` (core NATS
//! request/reply, what `regionguard fault` sends), scenario steps, and
//! expiry.
//!
//! No queue group: every simulator instance subscribed applies a request
//! (so scaled-out simulators stay in step); the requester reads the first
//! reply.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use prost::Message;
use rg_bus::NatsConfig;
use rg_proto::v1::{FaultReply, FaultRequest};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::scenario::{Action, Scenario};
use crate::state::State;

/// Serves fault requests until `shutdown`. NATS being away is not an error:
/// the client reconnects by itself and the DNS side keeps answering.
pub(crate) async fn serve_requests(
    state: Arc<State>,
    nats: NatsConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let client = tokio::select! {
        biased;
        _ = shutdown.cancelled() => return Ok(()),
        // Core NATS only, but a server cut off from its cluster would keep
        // its requests from everyone on the other side: watched like the
        // others.
        c = rg_bus::connect::connect_watched(&nats, "regionguard-simulator", &shutdown) => c?,
    };
    let subject = nats.subjects().sim_faults();
    let mut requests = client.subscribe(subject.clone()).await?;
    tracing::info!(%subject, "accepting fault requests");
    loop {
        let message = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            m = requests.next() => match m {
                Some(m) => m,
                None => anyhow::bail!("the subscription to {subject} ended"),
            },
        };
        let reply = match FaultRequest::decode(message.payload.as_ref()) {
            Ok(request) => state.apply(&request, "nats"),
            Err(e) => {
                rg_bus::metrics::decode_failed("simulator");
                tracing::warn!(%subject, error = %e, bytes = message.payload.len(), "undecodable fault request");
                FaultReply {
                    error: format!("undecodable FaultRequest: {e}"),
                    ..Default::default()
                }
            }
        };
        match message.reply {
            Some(to) => {
                if let Err(e) = client.publish(to, reply.encode_to_vec().into()).await {
                    tracing::warn!(error = %e, "could not send the fault reply");
                }
            }
            None => tracing::debug!("fault request without a reply subject (applied anyway)"),
        }
    }
    let _flushed = client.flush().await;
    Ok(())
}

/// Plays a scenario from `start`, step by step, until its end or `shutdown`.
pub(crate) async fn play(
    state: Arc<State>,
    scenario: Scenario,
    origin: String,
    start: Instant,
    shutdown: CancellationToken,
) {
    tracing::info!(scenario = %origin, steps = scenario.steps.len(), "playing scenario");
    for (i, step) in scenario.steps.into_iter().enumerate() {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(start + step.at) => {}
        }
        let label = format!("scenario {origin} step {} (at {:?})", i + 1, step.at);
        let reply = match step.action {
            Action::Inject => state.inject(step.spec, &label),
            Action::Clear => state.clear(step.spec, &label),
        };
        if !reply.error.is_empty() {
            tracing::warn!(step = %label, error = %reply.error, "scenario step refused");
        }
    }
    tracing::info!(scenario = %origin, "scenario finished");
}

/// Drops expired faults every 250 ms until `shutdown`.
pub(crate) async fn expire(state: Arc<State>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => state.expire(),
        }
    }
}
