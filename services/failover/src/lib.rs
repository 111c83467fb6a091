//! The failover manager: from a failover request to traffic in a healthy
//! region, verified, with automatic rollback. The most careful code in
//! regionguard: it changes production.
//!
//! - Consumes: `<p>.decisions.failover.requested`, `.approved` and
//!   `.rejected` (RG_DECISIONS) with the durable consumers `failover`,
//!   `failover-approvals` and `failover-rejections` (replicas share them,
//!   so one request goes to one replica); `<p>.health.>` with an ordered consumer, for each region's
//!   health score.
//! - Publishes: every phase on `<p>.decisions.failover.<phase>` (planned,
//!   step, completed, failed, rolled_back): the audit trail; each region's
//!   readiness on `<p>.decisions.readiness.<region>` and, while a problem
//!   lasts, an alert on `<p>.alerts.readiness.<severity>`. Answers
//!   on-demand readiness checks on `<p>.failover.readiness` (core NATS).
//! - Guarantees: a plan lists every change (before → after) before any is
//!   made; `plan` (the default) changes nothing; one failover at a time
//!   across replicas (a compare-and-set lock with a lease in the
//!   `RG_FAILOVER` bucket); every step is journaled there before and after
//!   it runs, so a replica killed mid-way is rolled back by the next one to
//!   start; a failed step undoes the steps before it, in reverse order.
//!   In-flight on shutdown: the step running finishes; the failover is then
//!   left journaled as executing and rolled back at the next start.
//!
//! # Layout
//! - [`config`] — the `[failover]` section, resources per region.
//! - `service` — the consumer loop: a request or an approval in, phases out.
//! - [`admission`] — whether a failover goes ahead (mode, cooldown,
//!   velocity, lock), as pure functions.
//! - `current` — what AWS holds now: candidates' capacity, the state a
//!   plan is built from, and whether it changed since.
//! - `failback` — proposing and planning the way back.
//! - `recovery` — rolling back a failover a stopped replica left executing.
//! - [`error`] — what can go wrong, typed (AWS errors keep their kind).
//! - [`health`] — region scores from the DNS health events, and candidates.
//! - [`deep`] — what load balancers, instances and databases add to a score.
//! - [`plan`] — the steps, each with the state it replaces.
//! - [`aws`] — Route 53, CloudFront, Auto Scaling, ECS through the SDK.
//! - [`execute`] — steps, verification, rollback.
//! - [`resolve`] — the DNS lookup verification makes.
//! - [`journal`] — the lock and the journal in JetStream KV.
//! - [`readiness`] — whether a failover away from each region would work
//!   now, checked on a schedule and on demand.
//! - `switches` — the data-plane routing switches' HTTP endpoint.
//! - [`telemetry`] — metrics.
#![warn(missing_docs)]

pub mod account;
pub mod admission;
pub mod aws;
pub mod choose;
pub mod config;
mod current;
pub mod deep;
pub mod error;
pub mod execute;
mod failback;
pub mod gate;
pub mod health;
pub mod journal;
pub mod plan;
pub mod readiness;
mod recovery;
pub mod resolve;
pub mod route53;
mod service;
mod switches;
pub mod telemetry;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::Context as _;
use rg_bus::tail::{self, Event, From};
use rg_bus::{Bus, NatsConfig, Stream};
use rg_proto::domain::Observation;
use rg_proto::v1::{Alert, FailoverPhase, HealthEvent};
use tokio_util::sync::CancellationToken;

pub use config::{Config, Mode};
pub use error::{AwsError, AwsErrorKind, FailoverError};
use health::RegionHealth;
use journal::Journal;
use service::Service;

/// Runs the failover service until `shutdown`.
pub async fn run(
    config: Config,
    nats: NatsConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    telemetry::describe();
    let replica = config.replica.clone().unwrap_or_else(default_replica);
    let Some(bus) = Bus::connect_or_stop(&nats, "regionguard-failover", &shutdown)
        .await
        .context("connecting to NATS")?
    else {
        return Ok(());
    };
    let journal = Journal::open(
        &bus.js,
        &config.state_bucket,
        nats.streams.replicas,
        &replica,
    )
    .await?;
    let aws = match config.mode {
        Mode::Observe => None,
        _ => Some(Arc::new(
            aws::Aws::new(&config.aws)
                .await
                .context("starting the AWS clients")?,
        )),
    };
    tracing::info!(mode = config.mode.name(), %replica, endpoint = config.aws.endpoint_url.as_deref().unwrap_or("AWS"), regions = %config.declared_regions().into_iter().collect::<Vec<_>>().join(", "), "failover manager starting");

    let health = Arc::new(Mutex::new(RegionHealth::default()));
    let since = SystemTime::now()
        .checked_sub(config.health_window)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let (mut events, health_fresh) = tail::spawn_watched::<HealthEvent>(
        bus.js.clone(),
        bus.subjects.stream(Stream::Health),
        bus.subjects.health_all(),
        From::Time(since),
        "failover",
        shutdown.clone(),
    );
    let gate = Arc::new(Mutex::new(gate::FailbackGate::default()));
    let feed = health.clone();
    let gate_feed = gate.clone();
    let criticality = config.criticality.clone();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if let Event::Message(m) = e {
                if let Ok(o) = Observation::try_from(&m.message) {
                    feed.lock().unwrap_or_else(|p| p.into_inner()).observe(&o);
                    gate_feed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .observe(&o, &criticality);
                }
            }
        }
    });
    // Cascade alerts, for the failback gate: from far enough back to see
    // an alert still open.
    let alerts_since = SystemTime::now()
        .checked_sub((config.failback_after * 2).max(std::time::Duration::from_secs(3600)))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut alerts = tail::spawn::<Alert>(
        bus.js.clone(),
        bus.subjects.stream(Stream::Alerts),
        bus.subjects.alert("cascade", "*"),
        From::Time(alerts_since),
        "failover-gate",
        shutdown.clone(),
    );
    let gate_alerts = gate.clone();
    tokio::spawn(async move {
        while let Some(e) = alerts.recv().await {
            if let Event::Message(m) = e {
                gate_alerts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .alert(&m.message);
            }
        }
    });

    let service = Arc::new(Service {
        config,
        bus,
        journal,
        aws,
        health,
        health_fresh,
        gate,
        replica,
        shutdown: shutdown.clone(),
        readiness_lock: tokio::sync::Mutex::new(()),
    });
    service.recover().await;
    if service.config.switches.enabled {
        let addr = service.config.switches.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the routing switches on {addr}"))?;
        let bound = listener.local_addr().unwrap_or(addr);
        tracing::info!(addr = %bound, "routing switches on http://{bound}/switch/<region> (200: take traffic, 503: drain)");
        tokio::spawn(switches::serve(listener, service.clone(), shutdown.clone()));
    }
    if service.config.mode != Mode::Observe {
        tokio::spawn(readiness::run(service.clone(), shutdown.clone()));
    }
    if !service.config.failback_after.is_zero() && service.config.mode != Mode::Observe {
        tokio::spawn(failback::propose(service.clone(), shutdown.clone()));
    }

    // Three consumers, one per phase acted on (the rest of the trail is
    // never delivered; NATS 2.9 takes one filter per consumer): an
    // operator's answers first, so that once the requests' consumer (the
    // one `regionguard up` waits for) exists, all do.
    let approvals = service
        .consume(
            format!("{}-approvals", service.config.durable),
            FailoverPhase::Approved,
            shutdown.clone(),
        )
        .await?;
    let rejections = service
        .consume(
            format!("{}-rejections", service.config.durable),
            FailoverPhase::Rejected,
            shutdown.clone(),
        )
        .await?;
    let requests = service
        .consume(
            service.config.durable.clone(),
            FailoverPhase::Requested,
            shutdown.clone(),
        )
        .await?;
    // Both in this task (not spawned): whatever stops this task stops
    // them, mid-step if need be, as a killed process would.
    let (a, j, r) = tokio::join!(approvals, rejections, requests);
    a.context("consuming approvals")?;
    j.context("consuming rejections")?;
    r.context("consuming requests")?;
    Ok(())
}

/// `failover-<host>-<pid>`.
fn default_replica() -> String {
    rg_bus::instance_id("failover")
}
