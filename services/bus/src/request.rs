//! Core NATS request/reply with protobuf payloads (no JetStream): how the
//! CLI and the gateway talk to the simulator's fault control.

use std::time::Duration;

use async_nats::RequestErrorKind;
use prost::Message;

/// A request got no usable reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Nobody subscribes to the subject.
    #[error("nobody answers on {subject}")]
    NoResponders {
        /// The subject asked.
        subject: String,
    },
    /// No reply within the timeout.
    #[error("no reply on {subject} within {timeout:?}")]
    TimedOut {
        /// The subject asked.
        subject: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// The reply did not decode.
    #[error("undecodable reply on {subject}: {message}")]
    Undecodable {
        /// The subject asked.
        subject: String,
        /// The decoder's message.
        message: String,
    },
    /// The client failed otherwise (e.g. not connected).
    #[error("request on {subject} failed: {message}")]
    Other {
        /// The subject asked.
        subject: String,
        /// The client's message.
        message: String,
    },
}

/// Sends `request` on `subject` and decodes the first reply as `R`.
pub async fn request<Q: Message, R: Message + Default>(
    client: &async_nats::Client,
    subject: &str,
    request: &Q,
    timeout: Duration,
) -> Result<R, RequestError> {
    let sent = client.request(subject.to_owned(), request.encode_to_vec().into());
    let answer = tokio::time::timeout(timeout, sent)
        .await
        .map_err(|_| RequestError::TimedOut {
            subject: subject.to_owned(),
            timeout,
        })?
        .map_err(|e| match e.kind() {
            RequestErrorKind::NoResponders => RequestError::NoResponders {
                subject: subject.to_owned(),
            },
            RequestErrorKind::TimedOut => RequestError::TimedOut {
                subject: subject.to_owned(),
                timeout,
            },
            _ => RequestError::Other {
                subject: subject.to_owned(),
                message: e.to_string(),
            },
        })?;
    R::decode(answer.payload.as_ref()).map_err(|e| {
        crate::metrics::decode_failed("request");
        RequestError::Undecodable {
            subject: subject.to_owned(),
            message: e.to_string(),
        }
    })
}
