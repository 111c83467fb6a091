//! Shared plumbing of every regionguard service, and nothing
//! service-specific.
//!
//! - Consumes nothing and publishes nothing by itself; it gives services the
//!   means to: [`Bus::connect`] connects to NATS (waiting with backoff while
//!   no server answers) and provisions the streams of DESIGN.md
//!   idempotently; [`publish::Publisher`] publishes protobuf messages and
//!   waits for their PubAck; [`consume::run`] is the one consumer loop
//!   (decode → handle → ack, undecodable payloads to the dead-letter stream).
//! - Guarantees: a publish reports success only with its PubAck; a consumer
//!   acks only handled or dead-lettered messages.
//!
//! # Layout
//! - [`config`] — layered TOML + `RG_*` environment config, every bad key named.
//! - [`connect`] — the `[nats]` section and the connection.
//! - [`streams`] — stream provisioning.
//! - [`subjects`] — every subject and stream name.
//! - [`codec`] — protobuf encode/decode.
//! - [`publish`] — JetStream publish with PubAck and error kinds.
//! - [`consume`] — durable pull consumers and the consumer loop.
//! - [`deadletter`] — the dead-letter stream.
//! - [`tail`] — read a stream from a point on, without a durable consumer (rebuildable views).
//! - [`request`] — core request/reply with protobuf payloads.
//! - [`telemetry`] — logging.
//! - [`metrics`] — shared metrics and the `/metrics` server.
//! - [`service`] — the harness every service binary runs through.
//! - [`state`] — small service state in a key-value bucket.
#![warn(missing_docs)]

pub mod codec;
pub mod config;
pub mod connect;
pub mod consume;
pub mod deadletter;
pub mod metrics;
pub mod publish;
pub mod request;
pub mod service;
pub mod state;
pub mod streams;
pub mod subjects;
pub mod tail;
pub mod telemetry;

use std::time::Duration;

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;

pub use config::{ConfigError, Problems, Validate};
pub use connect::NatsConfig;
pub use subjects::{Stream, Subjects};

/// A connected bus: the client, its JetStream context, a publisher and the
/// subject names.
#[derive(Clone, Debug)]
pub struct Bus {
    /// The NATS client.
    pub client: async_nats::Client,
    /// Its JetStream context.
    pub js: jetstream::Context,
    /// Publisher over `js`.
    pub publisher: publish::Publisher,
    /// Subject names under the configured prefix.
    pub subjects: Subjects,
}

/// Connecting gave up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// Options or credentials are wrong: retrying will not help.
    #[error(transparent)]
    Connect(#[from] connect::ConnectError),
    /// Streams conflict with the config.
    #[error(transparent)]
    Provision(#[from] streams::ProvisionError),
    /// Shutdown was requested before the bus was ready.
    #[error("shut down before NATS became available")]
    Cancelled,
}

impl Bus {
    /// Connects as `name` and provisions the streams, retrying with backoff
    /// (and a log line each time) while NATS or JetStream does not answer.
    /// Returns [`BusError::Cancelled`] if `shutdown` fires first.
    pub async fn connect(
        nats: &NatsConfig,
        name: &str,
        shutdown: &CancellationToken,
    ) -> Result<Self, BusError> {
        let client = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Err(BusError::Cancelled),
            c = connect::connect(nats, name) => c?,
        };
        let mut js = jetstream::new(client.clone());
        js.set_timeout(nats.request_timeout);
        let mut delay = Duration::from_millis(250);
        loop {
            let attempt = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Err(BusError::Cancelled),
                r = streams::provision(&js, nats) => r,
            };
            match attempt {
                Ok(_) => break,
                Err(e) if e.is_transient() => {
                    tracing::warn!(servers = %nats.servers_for_log(), error = %e, retry_in = ?delay, "waiting for NATS JetStream");
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => return Err(BusError::Cancelled),
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Self {
            publisher: publish::Publisher::new(js.clone()),
            subjects: nats.subjects(),
            client,
            js,
        })
    }

    /// A dead-letter sender for the named consumer.
    pub fn dead_letter(&self, consumer: &str) -> deadletter::DeadLetter {
        deadletter::DeadLetter::new(self.publisher.clone(), self.subjects.clone(), consumer)
    }
}

/// Wall-clock time in milliseconds since the unix epoch (0 before it), the
/// unit of every `*_unix_ms` field.
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
