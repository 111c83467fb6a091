//! Shared plumbing of every regionguard service, and nothing
//! service-specific.
//!
//! - Consumes nothing and publishes nothing by itself; it gives services the
//!   means to: [`Bus::connect`] connects to NATS (waiting with backoff while
//!   no server answers) and provisions the streams of DESIGN.md
//!   idempotently; [`publish::Publisher`] publishes protobuf messages and
//!   waits for their PubAck; [`consume`] pulls from durable consumers
//!   (one handler at a time with [`consume::run`], or several messages held
//!   at once with [`consume::feed`]); [`tail`] reads a stream without one;
//!   a payload that cannot be decoded goes to the dead-letter stream
//!   ([`deadletter::DeadLetter::park`]).
//! - Guarantees: a publish reports success only with its PubAck; a consumer
//!   acks only handled or dead-lettered messages.
//!
//! # Layout
//! - [`config`] — layered TOML + `RG_*` environment config, every bad key named.
//! - [`connect`] — the `[nats]` section and the connection.
//! - [`streams`] — stream provisioning.
//! - [`subjects`] — every subject and stream name.
//! - [`backoff`] — the retry delay every retry loop uses, stopping on shutdown.
//! - [`codec`] — protobuf encode/decode.
//! - [`publish`] — JetStream publish with PubAck and error kinds.
//! - [`consume`] — durable pull consumers and the consumer loop.
//! - [`deadletter`] — the dead-letter stream.
//! - [`elected`] — hearing a stream's or consumer's leader election as it happens.
//! - [`tail`] — read a stream from a point on, without a durable consumer (rebuildable views).
//! - [`request`] — core request/reply with protobuf payloads.
//! - [`telemetry`] — logging.
//! - [`metrics`] — shared metrics and the `/metrics` server.
//! - [`service`] — the harness every service subcommand runs through.
//! - [`state`] — small service state in a key-value bucket.
#![warn(missing_docs)]

pub mod backoff;
pub mod codec;
pub mod config;
pub mod connect;
pub mod consume;
pub mod cutoff;
pub mod deadletter;
pub mod elected;
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
    /// [`connect`](Self::connect) for a service's `run`: `None` when
    /// `shutdown` came first (the service just stops).
    pub async fn connect_or_stop(
        nats: &NatsConfig,
        name: &str,
        shutdown: &CancellationToken,
    ) -> Result<Option<Self>, BusError> {
        match Self::connect(nats, name, shutdown).await {
            Ok(bus) => Ok(Some(bus)),
            Err(BusError::Cancelled) => Ok(None),
            Err(e) => Err(e),
        }
    }

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
            c = connect::connect_watched(nats, name, shutdown) => c?,
        };
        let mut js = jetstream::new(client.clone());
        js.set_timeout(nats.request_timeout);
        let mut backoff = backoff::Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
        loop {
            let attempt = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Err(BusError::Cancelled),
                r = streams::provision(&js, nats) => r,
            };
            match attempt {
                Ok(_) => break,
                Err(e) if e.is_transient() => {
                    tracing::warn!(servers = %nats.servers_for_log(), error = %e, retry_in = ?backoff.delay(), "waiting for NATS JetStream");
                    if !backoff.wait(shutdown).await {
                        return Err(BusError::Cancelled);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Self {
            publisher: publish::Publisher::hearing_elections(js.clone()).await,
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

/// An id for this process among its peers: `<prefix>-<host>-<pid>`, the
/// host from `$HOSTNAME` or `/etc/hostname` (a container's id under
/// Docker), lowercased, anything but letters, digits and `-` made `-`;
/// `host` when neither names one. Probers' vantage ids and failover
/// replicas' names are made here.
pub fn instance_id(prefix: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok());
    format!(
        "{prefix}-{}-{}",
        host_token(host.as_deref()),
        std::process::id()
    )
}

/// A host name as an id token.
fn host_token(host: Option<&str>) -> String {
    let host = host.map(|h| h.trim().to_lowercase()).unwrap_or_default();
    if host.is_empty() {
        return "host".into();
    }
    host.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Wall-clock time in milliseconds since the unix epoch (0 before it), the
/// unit of every `*_unix_ms` field.
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_host_name_becomes_a_token() {
        assert_eq!(
            super::host_token(Some("Web_01.example.com\n")),
            "web-01-example-com"
        );
        assert_eq!(super::host_token(Some("  ")), "host");
        assert_eq!(super::host_token(None), "host");
    }
}
