//! The dashboard gateway: the system's state for people and tools.
//!
//! - Consumes: `<p>.health.>` (RG_HEALTH), `<p>.alerts.>` (RG_ALERTS),
//!   `<p>.decisions.failover.>` and `<p>.decisions.readiness.*`
//!   (RG_DECISIONS) with ordered consumers (see
//!   [`rg_bus::tail`]): the gateway's state is a view it rebuilds from the
//!   streams every time it starts (the last 20 intervals of health, the
//!   recent alerts, the failover timeline), so a restarted gateway shows
//!   the same trend as before instead of starting empty. Nothing is acked,
//!   nothing is consumed away from the other services.
//! - Publishes: a `DashboardSnapshot` every interval on
//!   `<p>.snapshots.dashboard` (RG_SNAPSHOTS keeps the last), the same
//!   snapshot over WebSocket and gRPC; approvals on
//!   `<p>.decisions.failover.approved`; fault requests to the simulator.
//! - Serves: the dashboard and REST on `listen` (default 127.0.0.1:8080),
//!   the gRPC `ControlService` on `grpc_listen` (default 127.0.0.1:8081).
//! - Guarantees: every watcher gets every snapshot it can keep up with; a
//!   slow one skips to the newest (counted) or is disconnected after
//!   `ws_send_timeout` (counted), never slowing the others. State-changing
//!   calls need the configured bearer token. In-flight on shutdown: nothing
//!   (a snapshot being stored is abandoned; the next gateway makes one).
//!
//! # Layout
//! - [`config`] — the `[gateway]` section.
//! - `view` — endpoints, figures and trend (no I/O).
//! - `hub` — what the interfaces share; approve and fault actions.
//! - `http` — dashboard files, REST, WebSocket.
//! - `grpc` — the `ControlService`.
//! - [`telemetry`] — metrics.
//! - [`bench`] — snapshot build time (`regionguard bench snapshot`).
#![warn(missing_docs)]

pub mod bench;
pub mod config;
mod grpc;
mod history;
mod http;
mod hub;
pub mod telemetry;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use rg_bus::tail::{self, Event, From};
use rg_bus::{Bus, NatsConfig, Stream};
use rg_proto::domain::Observation;
use rg_proto::v1::{
    control_service_server::ControlServiceServer, Alert, FailoverDecision, HealthEvent, Readiness,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use config::Config;
use hub::{Hub, Published};
use view::{Limits, View};

/// A gateway whose listeners are bound.
pub struct Gateway {
    config: Config,
    http: TcpListener,
    grpc: TcpListener,
}

impl Gateway {
    /// Binds the HTTP and gRPC listeners (port 0 picks a free port).
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        let http = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the HTTP listener on {}", config.listen))?;
        let grpc = TcpListener::bind(config.grpc_listen)
            .await
            .with_context(|| format!("binding the gRPC listener on {}", config.grpc_listen))?;
        Ok(Self { config, http, grpc })
    }

    /// The HTTP address (dashboard, REST, WebSocket).
    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().unwrap_or(self.config.listen)
    }

    /// The gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().unwrap_or(self.config.grpc_listen)
    }

    /// Serves until `shutdown`.
    pub async fn run(self, nats: NatsConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
        rg_bus::metrics::install();
        telemetry::describe();
        let (http_addr, grpc_addr) = (self.http_addr(), self.grpc_addr());
        let config = self.config;
        let hub = Hub::new(
            View::new(Limits {
                quorum: config.quorum,
                stale_after_ms: config.stale_after.as_millis() as i64,
                interval_ms: config.interval.as_millis() as i64,
                trend_points: config.trend_points,
                alerts: config.recent_alerts,
                timeline: config.timeline,
            }),
            config.access(),
            config.watch_queue,
            shutdown.clone(),
        );
        match config.access() {
            config::Access::Off => tracing::info!("state-changing calls are off (read_only)"),
            config::Access::OpenOnLoopback => tracing::info!(
                "state-changing calls are open to loopback clients (no gateway.token)"
            ),
            config::Access::Token(_) => {
                tracing::info!("state-changing calls need the bearer token")
            }
        }

        let state = http::AppState {
            hub: hub.clone(),
            ws_send_timeout: config.ws_send_timeout,
            quorum: config.quorum,
        };
        let app = http::router(state, config.dashboard_dir.clone());
        let send_buffer = config.ws_send_buffer;
        let listener = axum::serve::ListenerExt::tap_io(self.http, move |tcp| {
            let _nodelay = tcp.set_nodelay(true);
            if send_buffer > 0 {
                let _sized = socket2::SockRef::from(&*tcp).set_send_buffer_size(send_buffer);
            }
        });
        let http_shutdown = shutdown.clone();
        let http_task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(http_shutdown.cancelled_owned())
                .await
        });
        tracing::info!(addr = %http_addr, "dashboard on http://{http_addr}/ (REST under /api, WebSocket /ws)");

        let grpc_incoming = tokio_stream::wrappers::TcpListenerStream::new(self.grpc);
        let control = ControlServiceServer::new(grpc::Control { hub: hub.clone() });
        let grpc_shutdown = shutdown.clone();
        let grpc_task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(control)
                .serve_with_incoming_shutdown(grpc_incoming, grpc_shutdown.cancelled_owned()),
        );
        tracing::info!(addr = %grpc_addr, "gRPC ControlService on {grpc_addr}");

        let result = feed(&config, &nats, &hub, &shutdown).await;
        shutdown.cancel();
        let _http_done = http_task.await;
        let _grpc_done = grpc_task.await;
        result
    }
}

/// Connects, rebuilds the view from the streams, then keeps it current and
/// builds a snapshot on every interval boundary until `shutdown`.
async fn feed(
    config: &Config,
    nats: &NatsConfig,
    hub: &Arc<Hub>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let Some(bus) = Bus::connect_or_stop(nats, "regionguard-gateway", shutdown)
        .await
        .context("connecting to NATS")?
    else {
        return Ok(());
    };
    hub.set_bus(bus.clone());
    let started = SystemTime::now();
    let started_ms = rg_bus::unix_now_ms();
    // Enough health history for every trend point, plus the staleness
    // window before the first one.
    let window = config.interval * config.trend_points as u32 + config.stale_after;
    let from = started
        .checked_sub(window)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let subjects = &bus.subjects;
    let mut health = tail::spawn::<HealthEvent>(
        bus.js.clone(),
        subjects.stream(Stream::Health),
        subjects.health_all(),
        From::Time(from),
        "gateway",
        shutdown.clone(),
    );
    let mut alerts = tail::spawn::<Alert>(
        bus.js.clone(),
        subjects.stream(Stream::Alerts),
        subjects.alerts_all(),
        From::Last(config.recent_alerts.max(1) as u64 * 4),
        "gateway",
        shutdown.clone(),
    );
    let mut decisions = tail::spawn::<FailoverDecision>(
        bus.js.clone(),
        subjects.stream(Stream::Decisions),
        subjects.failover(">"),
        From::Last(1000),
        "gateway",
        shutdown.clone(),
    );
    // Each region's latest readiness check (one per region is enough).
    let mut readiness = tail::spawn::<Readiness>(
        bus.js.clone(),
        subjects.stream(Stream::Decisions),
        subjects.readiness("*"),
        From::LastPerSubject,
        "gateway-readiness",
        shutdown.clone(),
    );
    tracing::info!(health_since = ?window, "rebuilding the view from the streams");
    let (publish_tx, publish_rx) = mpsc::channel::<Arc<Published>>(2);
    let publisher = tokio::spawn(store_snapshots(bus.clone(), publish_rx, shutdown.clone()));

    // Catch-up of the four tails: the first snapshot comes when all are
    // through their history, then on every interval boundary.
    let mut pending_catch_up = 4u8;
    let interval_ms = config.interval.as_millis() as i64;
    let mut due = None::<tokio::time::Instant>;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(e) = health.recv() => match e {
                Event::Message(m) => {
                    match Observation::try_from(&m.message) {
                        Ok(_) => {
                            let mut view = hub.view();
                            let at = m.message.observed_at_unix_ms;
                            if m.history && at < started_ms {
                                // A replay: the trend points fall on the
                                // events' own times.
                                view.advance_to(at);
                            }
                            view.observe(&m.message);
                            telemetry::event("health");
                        }
                        Err(e) => telemetry::invalid_event(&e.to_string()),
                    }
                }
                Event::CaughtUp => pending_catch_up = pending_catch_up.saturating_sub(1),
            },
            Some(e) = alerts.recv() => match e {
                Event::Message(m) => {
                    telemetry::event("alert");
                    if !m.history {
                        hub.live_alert(m.message.clone());
                    }
                    hub.view().alert(m.message);
                }
                Event::CaughtUp => pending_catch_up = pending_catch_up.saturating_sub(1),
            },
            Some(e) = readiness.recv() => match e {
                Event::Message(m) => {
                    telemetry::event("readiness");
                    hub.view().readiness(m.message);
                }
                Event::CaughtUp => pending_catch_up = pending_catch_up.saturating_sub(1),
            },
            Some(e) = decisions.recv() => match e {
                Event::Message(m) => {
                    telemetry::event("decision");
                    hub.view().decision(m.message);
                }
                Event::CaughtUp => pending_catch_up = pending_catch_up.saturating_sub(1),
            },
            _ = rg_rounds::feed::sleep_until(due) => {
                let now_ms = rg_bus::unix_now_ms();
                let published = build(hub, now_ms);
                hub.publish(published.clone());
                if publish_tx.try_send(published).is_err() {
                    telemetry::publish_failed("the bus is behind; this snapshot was not stored");
                }
                due = Some(next_boundary(interval_ms));
            }
        }
        if pending_catch_up == 0 && due.is_none() {
            let view = hub.view();
            tracing::info!(
                endpoints = view.known_endpoints(),
                alerts = view.alerts().count(),
                phases = view.timeline().count(),
                "view rebuilt; first snapshot now, then every {:?}",
                config.interval
            );
            due = Some(tokio::time::Instant::now());
        }
    }
    drop(publish_tx);
    let _stored = publisher.await;
    Ok(())
}

/// Advances the trend to `now_ms` and builds the snapshot.
fn build(hub: &Hub, now_ms: i64) -> Arc<Published> {
    let started = tokio::time::Instant::now();
    let (snapshot, stale) = {
        let mut view = hub.view();
        view.advance_to(now_ms);
        view.snapshot(now_ms)
    };
    let fresh = snapshot.summary.as_ref().map_or(0, |s| s.total_endpoints);
    let published = Arc::new(Published::new(snapshot));
    telemetry::snapshot(started.elapsed().as_secs_f64(), fresh, stale);
    published
}

/// The instant of the next multiple of `interval_ms` on the wall clock.
fn next_boundary(interval_ms: i64) -> tokio::time::Instant {
    let now = rg_bus::unix_now_ms();
    let wait = interval_ms - now.rem_euclid(interval_ms);
    tokio::time::Instant::now() + Duration::from_millis(wait.max(1) as u64)
}

/// Stores each snapshot on `<p>.snapshots.dashboard`, apart from the loop
/// so that a slow or absent NATS never delays the interfaces.
async fn store_snapshots(
    bus: Bus,
    mut rx: mpsc::Receiver<Arc<Published>>,
    shutdown: CancellationToken,
) {
    let subject = bus.subjects.dashboard_snapshot();
    while let Some(p) = rx.recv().await {
        let stored = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            r = bus.publisher.publish(subject.clone(), &p.snapshot, None) => r,
        };
        if let Err(e) = stored {
            telemetry::publish_failed(&e.to_string());
        }
    }
}
