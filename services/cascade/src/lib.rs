//! The cascade service: from the health of every service in a region and
//! the dependency map, the risk that a failure cascades; outage alerts when
//! a region's severity changes; failover requests away from a region that
//! is going down, when another can take its traffic.
//!
//! - Consumes: `<p>.health.>` (stream RG_HEALTH), durable consumer
//!   `cascade`, grouped into rounds per region with the detector's quorum
//!   rules (`rg-rounds`).
//! - Publishes: `<p>.alerts.cascade.<severity>` (stream RG_ALERTS), one per
//!   change of a region's severity and its resolution; and
//!   `<p>.decisions.failover.requested` (stream RG_DECISIONS). Message ids
//!   derive from what a message is about, so a round decided again after a
//!   restart is dropped by JetStream's duplicate window.
//! - Guarantees: an event is acked once its round's alerts and requests are
//!   stored and the region's state is saved (bucket `RG_CASCADE`: open
//!   alerts, service counters, last request for the cooldown); a restarted
//!   service resumes from it. In-flight means: the rounds held undecided.
//!
//! # Layout
//! - [`config`] — the `[cascade]` section.
//! - [`dependency_map`], [`risk`] — services, dependencies, criticality
//!   and the risk score (formula in its docs); in `rg-rounds`, since the
//!   detector's threshold alerts predict impact from the same map.
//! - [`engine`] — rounds in; alerts, requests and state out (no I/O).
//! - [`telemetry`] — metrics.
#![warn(missing_docs)]

pub mod config;
pub use rg_rounds::{dependency_map, risk};
pub mod engine;
pub mod telemetry;

use anyhow::Context as _;
use rg_bus::consume::Pending;
use rg_bus::state::{StateBucket, Typed};
use rg_bus::{Bus, NatsConfig};
use rg_rounds::feed::{drive, Admitted, FeedSpec, HealthFeed};
use tokio_util::sync::CancellationToken;

pub use config::Config;
use engine::{Engine, Publication, RegionState, Step};

/// Runs the cascade service until `shutdown`.
pub async fn run(
    config: Config,
    nats: NatsConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    telemetry::describe();
    let map =
        dependency_map::DependencyMap::build(&config.services).context("the dependency map")?;
    let Some(bus) = Bus::connect_or_stop(&nats, "regionguard-cascade", &shutdown)
        .await
        .context("connecting to NATS")?
    else {
        return Ok(());
    };
    let regions = Typed::<RegionState>::new(
        StateBucket::open(
            &bus.js,
            &config.state_bucket,
            "regionguard cascade: regions' state",
            nats.streams.replicas,
        )
        .await?,
        "region",
    );
    let saved = regions.load().await?;
    tracing::info!(bucket = %config.state_bucket, regions = saved.len(), services = map.len(), "loaded region state");
    let mut engine: Engine<Pending> = Engine::new(&config, map, saved);
    let spec = FeedSpec::new(&config.durable, Vec::new(), &config.rounds);
    let feed = HealthFeed::open(&bus, &spec, &shutdown).await?;
    let (bus, regions, stop) = (&bus, &regions, &shutdown);
    let admitted = |a| {
        if a == Admitted::Late {
            telemetry::late();
        }
    };
    drive(&mut engine, feed, &shutdown, admitted, move |step| {
        publish(bus, regions, step, stop)
    })
    .await;
    Ok(())
}

/// Publishes a step's alerts and requests (each waits for its PubAck),
/// saves the region, then acks. False when shutdown interrupted it.
async fn publish(
    bus: &Bus,
    regions: &Typed<RegionState>,
    step: Step<Pending>,
    shutdown: &CancellationToken,
) -> bool {
    for item in &step.out {
        let (subject, result) = match item {
            Publication::Alert {
                severity,
                alert,
                msg_id,
            } => {
                let subject = bus.subjects.alert("cascade", severity.as_str());
                let r = bus
                    .publisher
                    .publish_until_stored(subject.clone(), alert, Some(msg_id), shutdown)
                    .await;
                (subject, r)
            }
            Publication::Request { decision, msg_id } => {
                let subject = bus.subjects.failover("requested");
                let r = bus
                    .publisher
                    .publish_until_stored(subject.clone(), decision, Some(msg_id), shutdown)
                    .await;
                (subject, r)
            }
        };
        match result {
            None => return false,
            Some(Ok(stored)) => telemetry::published(&step.region, item, stored.duplicate),
            Some(Err(e)) => tracing::error!(%subject, error = %e, "cannot be published; dropped"),
        }
    }
    if let Some(state) = &step.saved {
        telemetry::risk(&step.region, state.risk);
        let mut backoff = rg_bus::backoff::Backoff::standard();
        while let Err(e) = regions.put(&step.region, state).await {
            tracing::warn!(error = %e, retry_in = ?backoff.delay(), "could not save region state; retrying");
            if !backoff.wait(shutdown).await {
                return false;
            }
        }
    }
    for pending in step.acks {
        pending.ack().await;
    }
    true
}
