//! The detector: threshold alerts agreed across vantage points, and
//! Isolation Forest anomaly detection over health events.
//!
//! - Consumes: `<p>.health.>` (stream RG_HEALTH) with a durable consumer, or
//!   one per region of `detector.regions` (`<durable>-<region>`), so that
//!   several detectors can split the regions between them.
//! - Publishes: `<p>.alerts.threshold.<severity>` when an endpoint's agreed
//!   status changes (and its resolution), `<p>.alerts.anomaly.high` when a
//!   round of a region looks abnormal; stream RG_ALERTS, message id
//!   `<alert id>:<state>:<reminder>`.
//! - Guarantees: an event is acked only after the round it belongs to has
//!   been decided and that round's alerts got their PubAcks and its state
//!   was saved; a detector that stops before (crash, shutdown) leaves the
//!   round's events unacked, and the next instance decides the round again,
//!   producing the same alert ids (dropped by JetStream's duplicate window).
//!   Open alerts survive restarts in the `RG_DETECTOR` key-value bucket. An
//!   undecodable or invalid event goes to the dead-letter stream. In-flight
//!   means: the rounds held undecided, and a decided round being published.
//!
//! # Layout
//! - [`config`] — the `[detector]` section.
//! - agreement across vantage points and rounds: the `rg-rounds` crate,
//!   shared with the cascade service.
//! - [`threshold`] — per-endpoint status changes and their alerts.
//! - [`features`] — what the anomaly model sees of a check.
//! - [`isolation_forest`] — the model, on linfa's traits.
//! - [`anomaly`] — batch and baseline assessment of a batch.
//! - [`engine`] — rounds in, decisions out (no I/O).
//! - [`state`] — alert state in a key-value bucket.
//! - [`replay`] — offline scoring of recorded checks (`regionguard replay`).
//! - [`bench`] — timing fit and score (`regionguard bench forest`).
//! - [`telemetry`] — metrics.
#![warn(missing_docs)]

pub mod anomaly;
pub mod bench;
pub mod config;
pub mod engine;
pub mod features;
pub mod isolation_forest;
pub mod replay;
pub mod state;
pub mod telemetry;
pub mod threshold;

use anyhow::Context as _;
use rg_bus::consume::Pending;
use rg_bus::{Bus, NatsConfig};
use rg_rounds::feed::{drive, Admitted, FeedSpec, HealthFeed};
use tokio_util::sync::CancellationToken;

pub use config::Config;
use engine::{Decided, Engine};
pub use rg_rounds::quorum;

/// Runs a detector until `shutdown`.
pub async fn run(
    config: Config,
    nats: NatsConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    telemetry::describe();
    let Some(bus) = Bus::connect_or_stop(&nats, "regionguard-detector", &shutdown)
        .await
        .context("connecting to NATS")?
    else {
        return Ok(());
    };
    let store =
        state::StateStore::open(&bus.js, &config.state_bucket, nats.streams.replicas).await?;
    let saved = store.load().await?;
    tracing::info!(bucket = %config.state_bucket, entries = saved.len(), "loaded alert state");
    let mut engine: Engine<Pending> = Engine::new(config.engine(), saved);
    let spec = FeedSpec::new(&config.durable, config.regions.clone(), &config.rounds);
    let feed = HealthFeed::open(&bus, &spec, &shutdown).await?;
    let (bus, store, stop) = (&bus, &store, &shutdown);
    let admitted = |a| match a {
        Admitted::Held => telemetry::event(),
        Admitted::Late => telemetry::late(),
    };
    drive(&mut engine, feed, &shutdown, admitted, move |decided| {
        publish(bus, store, decided, stop)
    })
    .await;
    Ok(())
}

/// Publishes a decided round's alerts (each waits for its PubAck), saves
/// its state, then acks its events. Retries while NATS is away; returns
/// false when shutdown interrupted it (the events stay unacked).
async fn publish(
    bus: &Bus,
    store: &state::StateStore,
    decided: Decided<Pending>,
    shutdown: &CancellationToken,
) -> bool {
    for a in &decided.alerts {
        let subject = bus.subjects.alert(a.source, a.severity.as_str());
        match bus
            .publisher
            .publish_until_stored(subject, &a.alert, Some(&a.msg_id), shutdown)
            .await
        {
            None => return false,
            Some(Ok(stored)) => telemetry::alert(a, stored.duplicate),
            Some(Err(e)) => {
                tracing::error!(id = %a.alert.id, error = %e, "alert cannot be published; dropped")
            }
        }
    }
    let mut backoff = rg_bus::backoff::Backoff::standard();
    for saved in &decided.saved {
        while let Err(e) = store.save(saved).await {
            tracing::warn!(error = %e, retry_in = ?backoff.delay(), "could not save alert state; retrying");
            if !backoff.wait(shutdown).await {
                return false;
            }
        }
    }
    telemetry::round(&decided);
    for pending in decided.acks {
        pending.ack().await;
    }
    true
}
