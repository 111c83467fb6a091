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

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use async_nats::jetstream::consumer::DeliverPolicy;
use prost::Message;
use rg_bus::consume::{ConsumerSpec, Delivered};
use rg_bus::{Bus, BusError, NatsConfig, Stream};
use rg_proto::domain::Observation;
use rg_proto::v1::HealthEvent;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use config::Config;
use engine::{Added, Decided, Engine};
pub use rg_rounds::quorum;

/// Runs a detector until `shutdown`.
pub async fn run(
    config: Config,
    nats: NatsConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    telemetry::describe();
    let bus = match Bus::connect(&nats, "regionguard-detector", &shutdown).await {
        Ok(bus) => bus,
        Err(BusError::Cancelled) => return Ok(()),
        Err(e) => return Err(e).context("connecting to NATS"),
    };
    let store =
        state::StateStore::open(&bus.js, &config.state_bucket, nats.streams.replicas).await?;
    let saved = store.load().await?;
    tracing::info!(bucket = %config.state_bucket, entries = saved.len(), "loaded alert state");
    let mut engine: Engine<rg_bus::consume::Pending> = Engine::new(config.engine(), saved);

    // One durable consumer per region filter (NATS 2.9 has one filter per
    // consumer), all feeding one channel.
    let stream = bus.subjects.stream(Stream::Health);
    let filters: Vec<(String, String)> = if config.regions.is_empty() {
        vec![(config.durable.clone(), bus.subjects.health_all())]
    } else {
        config
            .regions
            .iter()
            .map(|r| {
                (
                    format!("{}-{r}", config.durable),
                    bus.subjects.health_region(r),
                )
            })
            .collect()
    };
    let (tx, mut rx) = mpsc::channel::<Delivered<HealthEvent>>(8192);
    let feeders = tokio_util::task::TaskTracker::new();
    let stop_feeding = shutdown.child_token();
    let start = SystemTime::now()
        .checked_sub(config.start_lookback)
        .unwrap_or(UNIX_EPOCH);
    for (durable, filter) in &filters {
        let mut spec = ConsumerSpec::new(stream.clone(), durable.clone(), filter.clone());
        spec.deliver = DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::from(start),
        };
        spec.max_ack_pending = config.max_pending;
        // Events wait for their round to be decided: a round, plus settle,
        // plus slack.
        spec.ack_wait = config.round_timeout + Duration::from_secs(30);
        let consumer = rg_bus::consume::durable(&bus.js, &spec)
            .await
            .with_context(|| format!("opening consumer {durable}"))?;
        tracing::info!(consumer = %durable, %filter, "consuming health events");
        feeders.spawn(rg_bus::consume::feed(
            consumer,
            bus.dead_letter(durable),
            stop_feeding.clone(),
            tx.clone(),
        ));
    }
    drop(tx);
    feeders.close();
    let dead_letter = bus.dead_letter(&config.durable);

    loop {
        let due = engine.next_due();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            delivered = rx.recv() => {
                let Some(d) = delivered else { break };
                admit(&mut engine, d, &dead_letter).await;
            }
            _ = sleep_until(due) => {}
        }
        for decided in engine.decide_due(Instant::now(), now_ms()) {
            if !publish(&bus, &store, decided, &shutdown).await {
                break;
            }
        }
    }
    stop_feeding.cancel();
    feeders.wait().await;
    let (rounds, events) = engine.held();
    if rounds > 0 {
        tracing::info!(
            rounds,
            events,
            "stopping with undecided rounds; their events stay unacked for the next detector"
        );
    }
    Ok(())
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Validates an event and hands it to the engine; an invalid one is
/// dead-lettered, a late one acked.
async fn admit(
    engine: &mut Engine<rg_bus::consume::Pending>,
    d: Delivered<HealthEvent>,
    dead_letter: &rg_bus::deadletter::DeadLetter,
) {
    match Observation::try_from(&d.message) {
        Ok(obs) => match engine.add(obs, d.pending, Instant::now()) {
            Added::Held => telemetry::event(),
            Added::Late(pending) => {
                telemetry::late();
                pending.ack().await;
            }
        },
        Err(e) => {
            let subject = d.pending.subject().to_owned();
            match dead_letter
                .send(
                    &subject,
                    d.message.encode_to_vec().into(),
                    e.as_metrics_label(),
                    &e.to_string(),
                )
                .await
            {
                Ok(()) => {
                    d.pending.ack().await;
                }
                Err(pe) => {
                    tracing::warn!(%subject, error = %pe, "could not dead-letter an invalid event; redelivery requested");
                    d.pending.nak(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// Publishes a decided round's alerts (each waits for its PubAck), saves
/// its state, then acks its events. Retries while NATS is away; returns
/// false when shutdown interrupted it (the events stay unacked).
async fn publish(
    bus: &Bus,
    store: &state::StateStore,
    decided: Decided<rg_bus::consume::Pending>,
    shutdown: &CancellationToken,
) -> bool {
    let mut backoff = Duration::from_millis(200);
    let mut published = 0;
    let mut saved = 0;
    loop {
        let mut failed = None;
        while published < decided.alerts.len() {
            let a = &decided.alerts[published];
            let subject = bus.subjects.alert(a.source, a.severity.as_str());
            match bus
                .publisher
                .publish(subject, &a.alert, Some(&a.msg_id))
                .await
            {
                Ok(stored) => {
                    telemetry::alert(a, stored.duplicate);
                    published += 1;
                }
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        if failed.is_none() {
            while saved < decided.saved.len() {
                match store.save(&decided.saved[saved]).await {
                    Ok(()) => saved += 1,
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
        }
        let Some(error) = failed else { break };
        tracing::warn!(region = %decided.region, round = decided.round, %error, retry_in = ?backoff, "could not publish a decided round; retrying");
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    telemetry::round(&decided);
    for pending in decided.acks {
        pending.ack().await;
    }
    true
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
