//! Leaving a server that is cut off from JetStream.
//!
//! A NATS client stays on its server while the TCP connection lives. A
//! server cut off from the rest of its cluster (a network partition, a
//! failing store) keeps the connection, so the client never moves by
//! itself, and every publish, pull and key-value call through it fails
//! until the partition heals: an unseen fault mix held services on such a
//! server for the whole of a 35 s partition, and the region whose prober
//! sat there went silent.
//!
//! [`watch`] asks the connected server for JetStream's account info every
//! [`CHECK_EVERY`]. After [`CUT_OFF_AFTER`] without an answer it asks each
//! configured server over a short connection of its own; when some of them
//! answer, it reconnects to those (logged at WARN, counted as
//! `regionguard_nats_events_total{event="left_cut_off_server"}`) and then
//! gives the client every configured server again. While none answers (a
//! cluster-wide election, a lost quorum) nothing moves.

use std::time::Duration;

use async_nats::Client;
use tokio_util::sync::CancellationToken;

use crate::connect::{connect_once, is_connected, NatsConfig};

/// How often the connected server is asked.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// How long the connected server may fail to answer for JetStream before
/// the other servers are asked.
pub const CUT_OFF_AFTER: Duration = Duration::from_secs(4);
/// How long one question may take.
const ASK_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long the move to another server may take.
const MOVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the server behind `client` answers JetStream's account info
/// without an error (a server without a meta leader answers with one).
pub async fn jetstream_answers(client: &Client) -> bool {
    let asked = client.request("$JS.API.INFO", bytes::Bytes::new());
    match tokio::time::timeout(ASK_TIMEOUT, asked).await {
        Ok(Ok(reply)) => serde_json::from_slice::<serde_json::Value>(&reply.payload)
            .is_ok_and(|v| v.get("error").is_none()),
        _ => false,
    }
}

/// The configured servers that answer for JetStream, each asked over a
/// connection of its own (all at once; about [`ASK_TIMEOUT`] in all).
pub async fn answering(config: &NatsConfig) -> Vec<String> {
    let asks = config.servers.iter().map(|addr| async move {
        let one = config.clone().with_servers([addr.clone()]);
        let asked = async {
            match connect_once(&one, "regionguard-cutoff-check").await {
                Ok(client) => jetstream_answers(&client).await,
                Err(_) => false,
            }
        };
        let answers = tokio::time::timeout(ASK_TIMEOUT, asked)
            .await
            .unwrap_or(false);
        answers.then(|| addr.clone())
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Watches `client` (of `service`) until `shutdown`; see the module.
pub async fn watch(
    client: Client,
    config: NatsConfig,
    service: String,
    shutdown: CancellationToken,
) {
    if config.servers.len() < 2 {
        // One configured server: nowhere to go.
        return;
    }
    let mut failing_since: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !is_connected(&client) {
            failing_since = None;
            continue;
        }
        if jetstream_answers(&client).await {
            failing_since = None;
            continue;
        }
        let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() < CUT_OFF_AFTER {
            continue;
        }
        let healthy = answering(&config).await;
        if healthy.is_empty() {
            tracing::debug!(service, "no configured NATS server answers for JetStream (an election or a lost quorum): staying");
            continue;
        }
        let info = client.server_info();
        let from = format!("{} ({}:{})", info.server_name, info.host, info.port);
        let to = config
            .clone()
            .with_servers(healthy.clone())
            .servers_for_log();
        tracing::warn!(service, server = %from, silent_for = ?since.elapsed(), answering = %to, "the NATS server this service is connected to has not answered for JetStream (cut off from its cluster?) while others do: reconnecting to them");
        crate::metrics::left_cut_off_server(&service);
        let before = info.server_id.clone();
        if let Err(e) = client.set_server_pool(healthy.as_slice()).await {
            tracing::warn!(service, error = %e, "cannot narrow the server pool; staying");
            continue;
        }
        if let Err(e) = client.force_reconnect().await {
            tracing::warn!(service, error = %e, "cannot reconnect");
        }
        let moved = tokio::time::timeout(MOVE_TIMEOUT, async {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if is_connected(&client) && client.server_info().server_id != before {
                    return;
                }
            }
        })
        .await
        .is_ok();
        if !moved {
            tracing::warn!(
                service,
                "still on the same NATS server {MOVE_TIMEOUT:?} after asking to move"
            );
        }
        // Every configured server again, for the next failure.
        if let Err(e) = client.set_server_pool(config.servers.as_slice()).await {
            tracing::warn!(service, error = %e, "cannot restore the server pool");
        }
        failing_since = None;
    }
}
