//! Metrics shared by every service, and the `/metrics` + `/healthz` server.
//!
//! Names follow `regionguard_<service>_<thing>_<unit>[_total]`. Labels stay
//! low-cardinality (stream, consumer, error kind); never an endpoint name.
//! Each notable occurrence is one function or struct here that both logs
//! and counts, so the two never disagree.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, histogram, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::publish::PublishError;

/// Connection events (connected, disconnected, ...), by service and event.
pub const NATS_EVENTS: &str = "regionguard_nats_events_total";
/// Messages stored by JetStream (PubAck received), by stream.
pub const PUBLISHED: &str = "regionguard_bus_published_total";
/// Publishes the server dropped as duplicates of an earlier message id.
pub const DUPLICATES: &str = "regionguard_bus_duplicates_total";
/// Publishes that got no PubAck, by stream and error.
pub const PUBLISH_ERRORS: &str = "regionguard_bus_publish_errors_total";
/// Messages acked by a consumer, by stream and consumer.
pub const CONSUMED: &str = "regionguard_bus_consumed_total";
/// Pull errors seen by a consumer.
pub const CONSUMER_ERRORS: &str = "regionguard_bus_consumer_errors_total";
/// Payloads sent to the dead-letter stream, by consumer and reason.
pub const DEAD_LETTERS: &str = "regionguard_bus_dead_letters_total";
/// Payloads that did not decode (every service that decodes counts here).
pub const DECODE_FAILURES: &str = "regionguard_bus_decode_failures_total";
/// Stream readers (ordered consumers behind rebuilt views) found stalled
/// and recreated, by reader.
pub const READER_STALLS: &str = "regionguard_stream_reader_stalls_total";
/// Durable consumers found stalled (messages waiting, room to deliver,
/// nothing delivered) and pulled afresh, by consumer.
pub const CONSUMER_STALLS: &str = "regionguard_bus_consumer_stalls_total";
/// How long a durable consumer could not pull before it resumed, by
/// consumer.
pub const CONSUMER_PAUSE: &str = "regionguard_bus_consumer_pause_seconds";
/// Saved state entries that could not be read (ignored), by bucket.
pub const STATE_UNREADABLE: &str = "regionguard_state_unreadable_total";

/// Histogram buckets for lookup and pipeline latencies, in seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return
/// the same handle, so several services can run in one test process).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(NATS_EVENTS, Unit::Count, "NATS connection events by kind");
    describe_counter!(
        STATE_UNREADABLE,
        Unit::Count,
        "saved state entries that could not be read and were ignored, by bucket"
    );
    describe_counter!(
        PUBLISHED,
        Unit::Count,
        "messages stored by JetStream (PubAck received)"
    );
    describe_counter!(
        DUPLICATES,
        Unit::Count,
        "publishes dropped by JetStream as duplicates"
    );
    describe_counter!(
        PUBLISH_ERRORS,
        Unit::Count,
        "publishes without a PubAck, by error kind"
    );
    describe_counter!(CONSUMED, Unit::Count, "messages acked by a consumer");
    describe_counter!(
        CONSUMER_ERRORS,
        Unit::Count,
        "pull errors seen by a consumer"
    );
    describe_counter!(
        DEAD_LETTERS,
        Unit::Count,
        "payloads copied to the dead-letter stream"
    );
    describe_counter!(DECODE_FAILURES, Unit::Count, "payloads that did not decode");
    describe_counter!(
        READER_STALLS,
        Unit::Count,
        "stream readers found stalled (the stream held messages they did not deliver) and recreated"
    );
    describe_counter!(
        CONSUMER_STALLS,
        Unit::Count,
        "durable consumers found stalled (messages waiting and room to deliver them, nothing delivered) and pulled afresh"
    );
    describe_histogram!(
        CONSUMER_PAUSE,
        Unit::Seconds,
        "how long a durable consumer could not pull before it resumed"
    );
    describe_gauge!("regionguard_up", Unit::Count, "1 while the service runs");
    describe_histogram!(
        "regionguard_prober_lookup_duration_seconds",
        Unit::Seconds,
        "DNS lookup round-trip time"
    );
}

/// Since when (unix ms) this process has been without NATS; 0 while
/// connected or before it first tried.
static NATS_LOST_SINCE: AtomicI64 = AtomicI64::new(0);
/// `nats.unhealthy_after` in milliseconds.
static UNHEALTHY_AFTER_MS: AtomicI64 = AtomicI64::new(30_000);

/// A service starts connecting: it is without NATS from now until the
/// first `connected` event, and unhealthy once that lasts `after`.
pub(crate) fn nats_health_watch(after: Duration) {
    UNHEALTHY_AFTER_MS.store(after.as_millis() as i64, Ordering::Relaxed);
    let _ignored = NATS_LOST_SINCE.compare_exchange(
        0,
        crate::unix_now_ms(),
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
}

/// `Err(why)` once the process has been without NATS for longer than
/// `nats.unhealthy_after`: what `/healthz` answers with a 503.
pub fn nats_health() -> Result<(), String> {
    let since = NATS_LOST_SINCE.load(Ordering::Relaxed);
    if since == 0 {
        return Ok(());
    }
    let lost_ms = crate::unix_now_ms().saturating_sub(since);
    let after = UNHEALTHY_AFTER_MS.load(Ordering::Relaxed);
    if lost_ms > after {
        Err(format!(
            "no NATS connection for {} s (unhealthy after {} s without it)",
            lost_ms / 1000,
            after / 1000
        ))
    } else {
        Ok(())
    }
}

/// `/healthz`: 200 `ok`, or 503 with why when NATS has been gone too long.
async fn healthz() -> (axum::http::StatusCode, String) {
    match nats_health() {
        Ok(()) => (axum::http::StatusCode::OK, "ok\n".into()),
        Err(why) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("{why}\n"),
        ),
    }
}

/// Serves `/metrics` (Prometheus text) and `/healthz` on `listener` until
/// `shutdown`. The caller binds (port 0 is fine) and logs the address.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use axum::{routing::get, Router};
    let upkeep = handle.clone();
    let token = shutdown.clone();
    // Histograms need periodic upkeep when the exporter runs no HTTP server
    // of its own.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                biased;
                _ = token.cancelled() => break,
                _ = tick.tick() => upkeep.run_upkeep(),
            }
        }
    });
    let app = Router::new()
        .route("/metrics", get(move || std::future::ready(handle.render())))
        .route("/healthz", get(healthz));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// The process's metrics as Prometheus text (for a service that serves
/// `/metrics` on its own HTTP listener too).
pub fn render() -> String {
    install().render()
}

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// The stream label of a subject: its second token (`health`, `alerts`, ...).
pub(crate) fn stream_label(subject: &str) -> &'static str {
    match subject.split('.').nth(1) {
        Some("health") => "health",
        Some("alerts") => "alerts",
        Some("decisions") => "decisions",
        Some("snapshots") => "snapshots",
        Some("deadletter") => "deadletter",
        _ => "other",
    }
}

pub(crate) fn published(subject: &str, duplicate: bool) {
    let stream = stream_label(subject);
    if duplicate {
        counter!(DUPLICATES, "stream" => stream).increment(1);
    } else {
        counter!(PUBLISHED, "stream" => stream).increment(1);
    }
}

pub(crate) fn publish_failed(subject: &str, e: &PublishError) {
    counter!(PUBLISH_ERRORS, "stream" => stream_label(subject), "error" => e.as_metrics_label())
        .increment(1);
    // Per message at debug: the publishers log what they do about it.
    tracing::debug!(subject, error = %e, "publish failed");
}

pub(crate) fn consumed(stream: &str, consumer: &str) {
    counter!(CONSUMED, "stream" => stream.to_owned(), "consumer" => consumer.to_owned())
        .increment(1);
}

/// A payload that did not decode outside a consumer loop (e.g. a
/// request/reply message), counted under `who`.
pub fn decode_failed(who: &str) {
    counter!(DECODE_FAILURES, "consumer" => who.to_owned()).increment(1);
}

pub(crate) fn state_unreadable(bucket: &str) {
    counter!(STATE_UNREADABLE, "bucket" => bucket.to_owned()).increment(1);
}

pub(crate) fn server_changed(service: &str) {
    counter!(NATS_EVENTS, "service" => service.to_owned(), "event" => "server_changed")
        .increment(1);
}

/// A service left a server cut off from JetStream ([`crate::cutoff`]).
pub(crate) fn left_cut_off_server(service: &str) {
    counter!(NATS_EVENTS, "service" => service.to_owned(), "event" => "left_cut_off_server")
        .increment(1);
}

pub(crate) fn reader_stalled(reader: &str) {
    counter!(READER_STALLS, "reader" => reader.to_owned()).increment(1);
}

/// A durable consumer pulls again after an interruption.
pub(crate) struct ConsumerResumed<'a> {
    pub(crate) consumer: &'a str,
    pub(crate) paused_for: Duration,
    pub(crate) cause: &'a str,
}

impl ConsumerResumed<'_> {
    pub(crate) fn emit(&self) {
        histogram!(CONSUMER_PAUSE, "consumer" => self.consumer.to_owned())
            .record(self.paused_for.as_secs_f64());
        tracing::warn!(
            consumer = self.consumer,
            paused_for = ?self.paused_for,
            cause = self.cause,
            "consumer resumed"
        );
    }
}

pub(crate) fn consumer_stalled(consumer: &str) {
    counter!(CONSUMER_STALLS, "consumer" => consumer.to_owned()).increment(1);
}

pub(crate) fn consumer_error(consumer: &str) {
    counter!(CONSUMER_ERRORS, "consumer" => consumer.to_owned()).increment(1);
}

/// A NATS connection event.
pub(crate) struct NatsEvent<'a> {
    pub(crate) service: &'a str,
    pub(crate) servers: &'a str,
    pub(crate) event: &'a async_nats::Event,
}

impl NatsEvent<'_> {
    pub(crate) fn emit(&self) {
        use async_nats::Event;
        let label = match self.event {
            Event::Connected => "connected",
            Event::Disconnected => "disconnected",
            Event::LameDuckMode => "lame_duck",
            Event::Draining => "draining",
            Event::Closed => "closed",
            Event::SlowConsumer(_) => "slow_consumer",
            Event::ServerError(_) => "server_error",
            Event::ClientError(_) => "client_error",
        };
        counter!(NATS_EVENTS, "service" => self.service.to_owned(), "event" => label).increment(1);
        if let Event::ServerError(e) = self.event {
            crate::connect::note_server_error(&e.to_string());
        }
        match self.event {
            Event::Connected => NATS_LOST_SINCE.store(0, Ordering::Relaxed),
            Event::Disconnected => {
                let _ignored = NATS_LOST_SINCE.compare_exchange(
                    0,
                    crate::unix_now_ms(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            _ => {}
        }
        match self.event {
            Event::Connected => tracing::info!(servers = self.servers, "connected to NATS"),
            Event::Disconnected => {
                tracing::warn!(
                    servers = self.servers,
                    "disconnected from NATS; reconnecting with backoff"
                )
            }
            // Closing is what shutdown does.
            Event::Closed => tracing::debug!(servers = self.servers, "NATS connection closed"),
            other => tracing::warn!(servers = self.servers, event = %other, "NATS event"),
        }
    }
}

/// A payload that went to the dead-letter stream.
pub(crate) struct DeadLettered<'a> {
    pub(crate) consumer: &'a str,
    pub(crate) subject: &'a str,
    pub(crate) reason_label: &'static str,
    pub(crate) reason: &'a str,
}

impl DeadLettered<'_> {
    pub(crate) fn emit(&self) {
        counter!(DECODE_FAILURES, "consumer" => self.consumer.to_owned()).increment(1);
        counter!(DEAD_LETTERS, "consumer" => self.consumer.to_owned(), "reason" => self.reason_label).increment(1);
        tracing::warn!(
            consumer = self.consumer,
            subject = self.subject,
            reason = self.reason,
            "payload dead-lettered and acked"
        );
    }
}
