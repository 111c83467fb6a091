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
//! - [`silence`] — a region none of whose vantages reported.
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
pub mod silence;
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
    if config.silence.enabled {
        let open = store.silences().await?;
        tokio::spawn(watch_silence(
            bus.clone(),
            store.clone(),
            config.clone(),
            open,
            shutdown.clone(),
        ));
    }
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

/// How far back the silence watch reads at start, to learn the regions
/// and when each last reported.
const SILENCE_LOOKBACK: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Watches every covered region's latest health event (its own reader of
/// the health stream, from [`SILENCE_LOOKBACK`] ago) and publishes a
/// silence alert when a region goes quiet, its resolution when it reports
/// again. Judges only while its reader is known current.
async fn watch_silence(
    bus: Bus,
    store: state::StateStore,
    config: Config,
    open: Vec<(String, silence::OpenSilence)>,
    shutdown: CancellationToken,
) {
    use rg_bus::tail::{self, Event, From};
    let after = config.silence_after();
    let regions = (!config.regions.is_empty()).then(|| config.regions.iter().cloned().collect());
    let mut watch =
        silence::Watch::new(after, config.silence.serving_regions.clone(), regions, open);
    let since = std::time::SystemTime::now()
        .checked_sub(SILENCE_LOOKBACK)
        .unwrap_or(std::time::UNIX_EPOCH);
    let (mut events, fresh) = tail::spawn_watched::<rg_proto::v1::HealthEvent>(
        bus.js.clone(),
        bus.subjects.stream(rg_bus::Stream::Health),
        bus.subjects.health_all(),
        From::Time(since),
        "detector-silence",
        shutdown.clone(),
    );
    tracing::info!(after = ?after, serving = ?config.silence.serving_regions, "watching for silent regions");
    let mut caught_up = false;
    // The reader's last verification, as seen at the previous tick: a jump
    // longer than GAP means the view went unvouched for a while (NATS
    // away, a stalled reader), and the probers may have buffered events.
    let gap = after / 2 + std::time::Duration::from_secs(1);
    let mut verified_before = 0i64;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        let changes = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            e = events.recv() => match e {
                None => return,
                Some(Event::CaughtUp) => {
                    caught_up = true;
                    Vec::new()
                }
                Some(Event::Message(m)) => {
                    // History by the prober's clock; live events by ours.
                    let at = if m.history {
                        m.message.observed_at_unix_ms
                    } else {
                        rg_bus::unix_now_ms()
                    };
                    watch.seen(&m.message.region, at).into_iter().collect()
                }
            },
            _ = tick.tick() => {
                let verified = fresh.verified_at_ms();
                let now = rg_bus::unix_now_ms();
                if verified_before > 0 && verified - verified_before > gap.as_millis() as i64 {
                    // Give every region a full silence to report again.
                    watch.grace(now);
                    tracing::info!(unvouched_for = ?std::time::Duration::from_millis((verified - verified_before) as u64), "the health view was not known current for a while (NATS away, or its reader stalled); every region gets a full silence_after to report before it is called silent");
                }
                verified_before = verified;
                if caught_up && verified > 0 {
                    watch.check(verified, now)
                } else {
                    Vec::new()
                }
            }
        };
        for change in changes {
            let (alert, severity, msg_id) = silence::alert(&change, rg_bus::unix_now_ms());
            let subject = bus.subjects.alert("silence", severity.as_str());
            match bus
                .publisher
                .publish_until_stored(subject, &alert, Some(&msg_id), &shutdown)
                .await
            {
                None => return,
                Some(Ok(stored)) => telemetry::silence(&alert, severity, stored.duplicate),
                Some(Err(e)) => {
                    tracing::error!(id = %alert.id, error = %e, "silence alert cannot be published; dropped")
                }
            }
            let (region, open) = match &change {
                silence::Change::Fired(r, o) => (r, Some(o)),
                silence::Change::Resolved(r, _, _) => (r, None),
            };
            if let Err(e) = store.save_silence(region, open).await {
                tracing::warn!(%region, error = %e, "could not save the silence state; a restart may repeat it (JetStream drops the repeat within its duplicate window)");
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
