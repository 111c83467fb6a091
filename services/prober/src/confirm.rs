//! Confirmation across vantage points: publishes this prober's requests on
//! `<p>.confirm.<region>` and runs a burst for each request of another
//! vantage point of the region (core NATS: a request missed while
//! disconnected is simply not confirmed; the next round probes anyway).

use std::sync::Arc;

use futures::StreamExt;
use prost::Message;
use rg_bus::NatsConfig;
use rg_proto::v1::ConfirmRequest;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::round::Prober;
use crate::telemetry;

/// Runs until `shutdown`.
pub async fn run(
    prober: Arc<Prober>,
    nats: NatsConfig,
    mut asks: mpsc::Receiver<ConfirmRequest>,
    shutdown: CancellationToken,
) {
    let plan = prober.plan();
    let (region, vantage) = (plan.region.to_string(), plan.vantage.clone());
    let subject = nats.subjects().confirm(&region);
    let name = format!("regionguard-prober-confirm-{vantage}");
    let client = tokio::select! {
        _ = shutdown.cancelled() => return,
        // Its own connection, watched like the publishing one: on a server
        // cut off from the cluster, the other vantages' confirmation
        // requests would not reach it.
        c = rg_bus::connect::connect_watched(&nats, &name, &shutdown) => match c {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "confirmation with other vantage points is off: cannot connect");
                return;
            }
        },
    };
    let mut requests = match client.subscribe(subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%subject, error = %e, "confirmation with other vantage points is off: cannot subscribe");
            return;
        }
    };
    tracing::info!(%subject, "confirming with the region's other vantage points");
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            Some(ask) = asks.recv() => {
                if let Err(e) = client.publish(subject.clone(), ask.encode_to_vec().into()).await {
                    telemetry::confirm_request_dropped();
                    tracing::debug!(error = %e, "confirmation request not sent");
                }
            }
            Some(m) = requests.next() => {
                let Ok(request) = ConfirmRequest::decode(m.payload.as_ref()) else {
                    rg_bus::metrics::decode_failed("prober-confirm");
                    tracing::warn!(%subject, bytes = m.payload.len(), "undecodable confirmation request ignored");
                    continue;
                };
                if request.vantage == vantage || request.region != region {
                    continue;
                }
                telemetry::confirm_from_peer();
                let prober = prober.clone();
                tokio::spawn(async move {
                    if !prober.confirm_for_peer(&request).await {
                        tracing::debug!(endpoint = %request.endpoint, "asked to confirm an endpoint this prober does not probe");
                    }
                });
            }
            else => return,
        }
    }
}
