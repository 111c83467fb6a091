//! The per-region DNS prober.
//!
//! One instance probes one region (several replicas of a region may run,
//! each with its own vantage id). Every round it looks up every endpoint
//! through every configured resolver with its own DNS client (a real round
//! trip each time: no cache, no reuse), classifies the result by the status
//! rules, and publishes one `HealthEvent` per endpoint per resolver per
//! round.
//!
//! - Consumes: `<p>.confirm.<region>` (core NATS): other vantage points'
//!   requests to re-probe an endpoint now.
//! - Confirms: a lookup that fails or crosses a threshold is repeated
//!   `confirm.count` times `confirm.spacing` apart (events marked
//!   `confirmation`), and the region's other vantage points are asked to do
//!   the same.
//! - Publishes: `<p>.health.<region>.<service>` (stream RG_HEALTH), message
//!   id `<vantage>:<sequence>`.
//! - Guarantees: rounds keep their wall-clock schedule and never pile up;
//!   while NATS is unreachable probing goes on and events wait in a bounded
//!   buffer (oldest dropped and counted); an event is gone from the buffer
//!   only when JetStream acknowledged it; a retried publish is never stored
//!   twice. On shutdown the round in hand finishes and the buffer is
//!   flushed (for up to [`DRAIN_FOR`]); in-flight means "probed but not yet
//!   acknowledged by JetStream".
//!
//! # Layout
//! - [`config`] — the `[prober]` section and the [`config::Plan`] of one instance.
//! - [`endpoints`] — the names to look up.
//! - [`lookup`] — the DNS client and its timing.
//! - [`classify`] — the status rules.
//! - [`adaptive`] — adaptive warnings from each endpoint's own latency.
//! - [`round`] — one round, lookups to events.
//! - [`schedule`] — when rounds run.
//! - [`publish`] — the bounded buffer and the JetStream publisher.
//! - [`confirm`] — confirmation requests to and from the region's other
//!   vantage points.
//! - [`bench`] — a load generator over the same code (`regionguard bench probe`).
//! - [`telemetry`] — metrics and notable occurrences.
#![warn(missing_docs)]

pub mod adaptive;
pub mod bench;
pub mod classify;
pub mod config;
pub mod confirm;
pub mod endpoints;
pub mod lookup;
pub mod publish;
pub mod round;
pub mod schedule;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rg_bus::NatsConfig;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use round::Prober;

/// How long, after shutdown, buffered events may take to reach JetStream.
pub const DRAIN_FOR: Duration = Duration::from_secs(5);

/// Runs a prober until `shutdown`.
pub async fn run(
    config: Config,
    nats: NatsConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    telemetry::describe();
    let plan = config.plan(config::system_resolvers)?;
    let subjects = nats.subjects();
    let buffer = Arc::new(publish::EventBuffer::new(plan.buffer_capacity));
    let prober = Arc::new(
        Prober::new(plan, &subjects, buffer.clone())
            .await
            .context("setting up the prober")?,
    );
    let plan = prober.plan();
    tracing::info!(
        region = %plan.region,
        vantage = %plan.vantage,
        endpoints = plan.endpoints.len(),
        resolvers = %plan.resolvers.iter().map(|r| r.label()).collect::<Vec<_>>().join(","),
        interval = ?plan.interval,
        timeout = ?plan.timeout,
        subject = %subjects.health_region(plan.region.as_str()),
        "probing"
    );

    let drain = CancellationToken::new();
    let mut publisher = tokio::spawn(publish::run(
        buffer.clone(),
        nats.clone(),
        format!("regionguard-prober-{}", plan.vantage),
        shutdown.clone(),
        drain.clone(),
        DRAIN_FOR,
    ));
    if plan.confirm.count > 0 && plan.confirm.ask_peers {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        prober.set_peers(tx);
        tokio::spawn(confirm::run(
            prober.clone(),
            nats.clone(),
            rx,
            shutdown.clone(),
        ));
    }
    let rounds_stop = shutdown.child_token();
    let mut rounds = tokio::spawn(schedule::run(prober.clone(), rounds_stop.clone()));
    tokio::select! {
        // The publisher only ends early when it cannot go on (e.g. the
        // credentials are refused): stop probing and report why.
        ended = &mut publisher => {
            rounds_stop.cancel();
            let _finished = rounds.await;
            return flatten(ended);
        }
        _ = &mut rounds => {}
    }
    // No more events will come: let the publisher empty the buffer.
    drain.cancel();
    flatten(publisher.await)
}

fn flatten(
    joined: Result<Result<(), rg_bus::BusError>, tokio::task::JoinError>,
) -> anyhow::Result<()> {
    match joined {
        Ok(result) => result.context("publishing health events"),
        Err(e) => anyhow::bail!("the publisher task failed: {e}"),
    }
}
