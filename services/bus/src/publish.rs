//! JetStream publishing. A publish is done only when its PubAck arrives;
//! the error kind tells the caller whether to retry.

use std::future::IntoFuture;

use async_nats::jetstream::{self, context::PublishAckFuture, context::PublishErrorKind};
use async_nats::HeaderMap;
use bytes::Bytes;
use prost::Message;

use crate::codec;
use crate::metrics as m;

/// A publish that did not get its PubAck.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// No PubAck in time, connection lost, or the server is busy
    /// (`MaxAckPending`): retry or buffer.
    #[error("publishing to {subject} did not complete ({reason}); will retry")]
    Transient {
        /// The subject.
        subject: String,
        /// What happened.
        reason: String,
    },
    /// No stream answered for the subject (NATS said "no responders"): the
    /// stream is missing, or it has no leader for the moment (in a cluster,
    /// while its replicas elect one after a node died). Retried.
    #[error("no stream answered for {subject}: the stream has no leader for the moment (a cluster election) or does not exist")]
    NoStream {
        /// The subject.
        subject: String,
    },
    /// The message exceeds the server's max payload; retrying will not help.
    #[error("message for {subject} is larger than the server's max payload")]
    TooLarge {
        /// The subject.
        subject: String,
    },
    /// Anything else the server refused.
    #[error("publishing to {subject} refused: {reason}")]
    Refused {
        /// The subject.
        subject: String,
        /// The server's reason.
        reason: String,
    },
}

impl PublishError {
    /// True when the same publish may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// Fixed label for metrics.
    pub fn as_metrics_label(&self) -> &'static str {
        match self {
            Self::Transient { .. } => "transient",
            Self::NoStream { .. } => "no_stream",
            Self::TooLarge { .. } => "too_large",
            Self::Refused { .. } => "refused",
        }
    }

    fn from_nats(subject: &str, e: &jetstream::context::PublishError) -> Self {
        let subject = subject.to_owned();
        match e.kind() {
            PublishErrorKind::TimedOut
            | PublishErrorKind::BrokenPipe
            | PublishErrorKind::MaxAckPending => Self::Transient {
                subject,
                reason: e.to_string(),
            },
            PublishErrorKind::StreamNotFound => Self::NoStream { subject },
            PublishErrorKind::MaxPayloadExceeded => Self::TooLarge { subject },
            // `Other` covers "no responders" while disconnected: retryable.
            PublishErrorKind::Other => Self::Transient {
                subject,
                reason: e.to_string(),
            },
            _ => Self::Refused {
                subject,
                reason: e.to_string(),
            },
        }
    }
}

/// What the server said when it stored a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Sequence number in the stream.
    pub sequence: u64,
    /// True when the server had already stored a message with the same id
    /// within the duplicate window (nothing new was stored).
    pub duplicate: bool,
}

/// Publishes protobuf messages to JetStream and waits for their PubAcks.
#[derive(Clone, Debug)]
pub struct Publisher {
    js: jetstream::Context,
    /// Stream leader elections, when listened for
    /// ([`Publisher::hearing_elections`]).
    elections: crate::elected::Elections,
}

impl Publisher {
    /// The JetStream context it publishes with.
    pub(crate) fn context(&self) -> &jetstream::Context {
        &self.js
    }
}

/// A publish sent but not yet acknowledged; await [`Sent::stored`].
#[derive(Debug)]
pub struct Sent {
    subject: String,
    ack: PublishAckFuture,
}

impl Sent {
    /// Waits for the PubAck.
    pub async fn stored(self) -> Result<Stored, PublishError> {
        let result = self.ack.into_future().await;
        finish(
            &self.subject,
            result.map_err(|e| PublishError::from_nats(&self.subject, &e)),
        )
    }
}

fn finish(
    subject: &str,
    r: Result<jetstream::publish::PublishAck, PublishError>,
) -> Result<Stored, PublishError> {
    match r {
        Ok(ack) => {
            m::published(subject, ack.duplicate);
            Ok(Stored {
                sequence: ack.sequence,
                duplicate: ack.duplicate,
            })
        }
        Err(e) => {
            m::publish_failed(subject, &e);
            Err(e)
        }
    }
}

impl Publisher {
    /// A publisher on this JetStream context.
    pub fn new(js: jetstream::Context) -> Self {
        Self {
            js,
            elections: crate::elected::Elections::none(),
        }
    }

    /// A publisher that also listens for stream leader elections: a
    /// [`publish_until_stored`](Self::publish_until_stored) with a message
    /// id sends again the moment a stream elects a leader, instead of
    /// waiting out the PubAck timeout for an answer the dead leader owes
    /// (the id keeps it stored once).
    pub async fn hearing_elections(js: jetstream::Context) -> Self {
        let elections = crate::elected::Elections::of_any_stream(&js.client()).await;
        Self { js, elections }
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Publishes `message` and waits for the PubAck. `msg_id` (when given)
    /// makes the publish idempotent within the stream's duplicate window.
    pub async fn publish<M: Message>(
        &self,
        subject: String,
        message: &M,
        msg_id: Option<&str>,
    ) -> Result<Stored, PublishError> {
        self.send(subject, codec::encode(message), msg_id, None)
            .await?
            .stored()
            .await
    }

    /// The message stored at `sequence` in `stream`, decoded: what a
    /// publish reported as a duplicate was stored as (the PubAck of a
    /// duplicate carries the first message's sequence), e.g. to tell
    /// whether an earlier, different message with the same id won.
    pub async fn read_back<M: Message + Default>(
        &self,
        stream: &str,
        sequence: u64,
    ) -> Result<M, String> {
        let stream = self
            .js
            .get_stream_no_info(stream)
            .await
            .map_err(|e| format!("stream {stream}: {e}"))?;
        let raw = stream
            .get_raw_message(sequence)
            .await
            .map_err(|e| format!("message {sequence}: {e}"))?;
        M::decode(raw.payload.as_ref()).map_err(|e| format!("message {sequence}: {e}"))
    }

    /// Publishes and waits for the PubAck, retrying with backoff (200 ms up
    /// to 5 s, each retry logged) while NATS is away or the server is
    /// busy. Returns `None` when `shutdown` came first, else the outcome of
    /// the last try (an error only when retrying cannot help).
    pub async fn publish_until_stored<M: Message>(
        &self,
        subject: String,
        message: &M,
        msg_id: Option<&str>,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Option<Result<Stored, PublishError>> {
        let mut backoff = crate::backoff::Backoff::standard();
        loop {
            let mut elections = self.elections.clone();
            elections.forget();
            let attempt = self.publish(subject.clone(), message, msg_id);
            let outcome = match msg_id {
                // Without an id a second send could be stored twice.
                None => attempt.await,
                Some(_) => tokio::select! {
                    outcome = attempt => outcome,
                    leader = elections.next() => {
                        tracing::info!(%subject, %leader, "a stream has a new leader; publishing again now");
                        continue;
                    }
                },
            };
            match outcome {
                Err(e) if e.is_transient() || matches!(e, PublishError::NoStream { .. }) => {
                    tracing::warn!(%subject, error = %e, retry_in = ?backoff.delay(), "publish not acknowledged; retrying");
                    if !backoff.wait(shutdown).await {
                        return None;
                    }
                }
                other => return Some(other),
            }
        }
    }

    /// Sends a raw payload (with optional headers) without waiting for the
    /// PubAck, so that many publishes can be in flight at once.
    pub async fn send(
        &self,
        subject: String,
        payload: Bytes,
        msg_id: Option<&str>,
        headers: Option<HeaderMap>,
    ) -> Result<Sent, PublishError> {
        let mut publish = jetstream::message::PublishMessage::build().payload(payload);
        if let Some(headers) = headers {
            publish = publish.headers(headers);
        }
        if let Some(id) = msg_id {
            publish = publish.message_id(id);
        }
        match self.js.send_publish(subject.clone(), publish).await {
            Ok(ack) => Ok(Sent { subject, ack }),
            Err(e) => {
                let e = PublishError::from_nats(&subject, &e);
                m::publish_failed(&subject, &e);
                Err(e)
            }
        }
    }
}
