//! The dead-letter stream: a payload a consumer cannot decode is copied to
//! `<p>.deadletter.<original subject>` with its original subject and the
//! reason in headers, then acked. It is counted, never retried forever, and
//! never crashes the service.

use async_nats::HeaderMap;
use bytes::Bytes;

use crate::metrics as m;
use crate::publish::{PublishError, Publisher};
use crate::subjects::Subjects;

/// Header carrying the subject the payload was first published on.
pub const ORIGINAL_SUBJECT_HEADER: &str = "Rg-Original-Subject";
/// Header carrying why the payload was dead-lettered.
pub const REASON_HEADER: &str = "Rg-Reason";
/// Header naming the consumer that gave up on it.
pub const CONSUMER_HEADER: &str = "Rg-Consumer";

/// Sends undecodable payloads to the dead-letter stream.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    publisher: Publisher,
    subjects: Subjects,
    consumer: String,
}

impl DeadLetter {
    /// A dead-letter sender for `consumer` (its durable name, for the header).
    pub fn new(publisher: Publisher, subjects: Subjects, consumer: impl Into<String>) -> Self {
        Self {
            publisher,
            subjects,
            consumer: consumer.into(),
        }
    }

    /// The JetStream context it publishes with.
    pub(crate) fn context(&self) -> &async_nats::jetstream::Context {
        self.publisher.context()
    }

    /// Copies `payload` to the dead-letter stream and waits for the PubAck.
    /// `reason_label` is a fixed label for metrics; `reason` the full text.
    pub async fn send(
        &self,
        original_subject: &str,
        payload: Bytes,
        reason_label: &'static str,
        reason: &str,
    ) -> Result<(), PublishError> {
        let mut headers = HeaderMap::new();
        headers.insert(ORIGINAL_SUBJECT_HEADER, original_subject);
        headers.insert(REASON_HEADER, header_safe(reason).as_str());
        headers.insert(CONSUMER_HEADER, self.consumer.as_str());
        let subject = self.subjects.dead_letter(original_subject);
        self.publisher
            .send(subject, payload, None, Some(headers))
            .await?
            .stored()
            .await?;
        m::DeadLettered {
            consumer: &self.consumer,
            subject: original_subject,
            reason_label,
            reason,
        }
        .emit();
        Ok(())
    }

    /// What a consumer does with a message it cannot use: copies it here,
    /// then acks it (the poison message is gone from the consumer, kept in
    /// the dead-letter stream); when the copy is not stored, asks for
    /// redelivery after `retry_after` instead, so nothing is lost. True
    /// when it was dead-lettered.
    pub async fn park(
        &self,
        pending: crate::consume::Pending,
        payload: Bytes,
        reason_label: &'static str,
        reason: &str,
        retry_after: std::time::Duration,
    ) -> bool {
        let subject = pending.subject().to_owned();
        match self.send(&subject, payload, reason_label, reason).await {
            Ok(()) => pending.ack().await,
            Err(e) => {
                tracing::warn!(consumer = %self.consumer, %subject, error = %e, retry_in = ?retry_after, "dead-lettering failed; redelivery requested");
                pending.nak(retry_after).await;
                false
            }
        }
    }
}

/// Header values cannot hold line breaks; keep them short too.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(512)
        .collect()
}
