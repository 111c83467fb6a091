//! Reading a stream from a point on with an ordered consumer: no durable
//! position, no acks. This is for views a service rebuilds from the stream
//! every time it starts (the gateway's dashboard), where a durable
//! consumer's saved position would be wrong: it would resume mid-stream
//! without the state that came before it.
//!
//! The ordered consumer recreates itself after a gap or a NATS restart, so
//! a tail delivers every message in stream order, once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{
    self,
    consumer::{pull::OrderedConfig, DeliverPolicy},
};
use futures::StreamExt;
use prost::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Where a tail starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// Messages stored at or after this time.
    Time(SystemTime),
    /// The last `n` messages matching the filter (approximately: the last
    /// `n` of the stream, then filtered).
    Last(u64),
    /// The last message of every subject the filter matches, then every
    /// message stored since.
    LastPerSubject,
    /// Only messages stored from now on.
    New,
}

/// One message of a tail.
#[derive(Debug, Clone)]
pub struct Tailed<M> {
    /// The decoded message.
    pub message: M,
    /// Its subject.
    pub subject: String,
    /// Its sequence in the stream.
    pub stream_sequence: u64,
    /// True for messages that were in the stream when the tail started
    /// (history), false for messages stored since.
    pub history: bool,
}

/// What a tail delivers.
#[derive(Debug, Clone)]
pub enum Event<M> {
    /// A message.
    Message(Tailed<M>),
    /// Every message that was in the stream when the tail started has been
    /// delivered (sent once, also when there was none).
    CaughtUp,
}

/// Tails `stream` (filtered by `filter`) from `from`, decoding each message
/// as `M`, into the returned channel until `shutdown`. Undecodable
/// payloads are counted under `who` and skipped (the stream keeps them;
/// the durable consumers dead-letter them). Errors reading the stream are
/// retried with backoff and logged.
pub fn spawn<M>(
    js: jetstream::Context,
    stream: String,
    filter: String,
    from: From,
    who: &'static str,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Event<M>>
where
    M: Message + Default + Send + 'static,
{
    let (tx, rx) = mpsc::channel(4096);
    tokio::spawn(async move {
        let mut backoff =
            crate::backoff::Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
        // After a failure, resume after the last message delivered.
        let mut resume_after: Option<u64> = None;
        let mut caught_up = false;
        let mut history_end: Option<u64> = None;
        loop {
            let attempt = tail_once::<M>(
                &js,
                &stream,
                &filter,
                from,
                who,
                &tx,
                &mut resume_after,
                &mut caught_up,
                &mut history_end,
            );
            let result = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                r = attempt => r,
            };
            match result {
                Ok(()) => return, // the receiver is gone
                Err(e) => {
                    crate::metrics::consumer_error(who);
                    tracing::warn!(%stream, %filter, error = %e, retry_in = ?backoff.delay(), "reading the stream failed; retrying");
                    if !backoff.wait(&shutdown).await {
                        return;
                    }
                }
            }
        }
    });
    rx
}

#[allow(clippy::too_many_arguments)]
async fn tail_once<M: Message + Default>(
    js: &jetstream::Context,
    stream_name: &str,
    filter: &str,
    from: From,
    who: &'static str,
    tx: &mpsc::Sender<Event<M>>,
    resume_after: &mut Option<u64>,
    caught_up: &mut bool,
    history_end: &mut Option<u64>,
) -> Result<(), String> {
    let mut stream = js
        .get_stream(stream_name)
        .await
        .map_err(|e| format!("opening stream {stream_name}: {e}"))?;
    let info = stream
        .info()
        .await
        .map_err(|e| format!("reading stream {stream_name}: {e}"))?;
    let last = info.state.last_sequence;
    let end = *history_end.get_or_insert(last);
    let deliver_policy = match (*resume_after, from) {
        (Some(seq), _) => DeliverPolicy::ByStartSequence {
            start_sequence: seq + 1,
        },
        (None, From::Time(t)) => DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::from(t.max(UNIX_EPOCH)),
        },
        (None, From::Last(n)) => DeliverPolicy::ByStartSequence {
            start_sequence: last.saturating_sub(n).saturating_add(1).max(1),
        },
        (None, From::LastPerSubject) => DeliverPolicy::LastPerSubject,
        (None, From::New) => DeliverPolicy::New,
    };
    if !*caught_up && (end == 0 || from == From::New || resume_after.is_some_and(|s| s >= end)) {
        *caught_up = true;
        if tx.send(Event::CaughtUp).await.is_err() {
            return Ok(());
        }
    }
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: filter.to_owned(),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("creating an ordered consumer on {stream_name}: {e}"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("reading {stream_name}: {e}"))?;
    // A filtered tail may never see the stream's last message: it is caught
    // up once nothing is pending for it.
    let mut first = true;
    loop {
        let next = if !*caught_up && first {
            // With nothing matching the filter, no message ever comes: look
            // at the consumer's pending count after a short wait.
            match tokio::time::timeout(Duration::from_millis(500), messages.next()).await {
                Ok(m) => m,
                Err(_) => {
                    *caught_up = true;
                    if tx.send(Event::CaughtUp).await.is_err() {
                        return Ok(());
                    }
                    messages.next().await
                }
            }
        } else {
            messages.next().await
        };
        first = false;
        let message = match next {
            None => return Err(format!("the ordered consumer on {stream_name} ended")),
            Some(Err(e)) => return Err(format!("reading {stream_name}: {e}")),
            Some(Ok(m)) => m,
        };
        let (sequence, pending) = match message.info() {
            Ok(i) => (i.stream_sequence, i.pending),
            Err(e) => {
                return Err(format!(
                    "a message from {stream_name} without metadata: {e}"
                ))
            }
        };
        *resume_after = Some(sequence);
        let history = sequence <= end;
        match M::decode(message.payload.as_ref()) {
            Ok(decoded) => {
                let event = Event::Message(Tailed {
                    message: decoded,
                    subject: message.subject.to_string(),
                    stream_sequence: sequence,
                    history,
                });
                if tx.send(event).await.is_err() {
                    return Ok(());
                }
            }
            Err(_) => crate::metrics::decode_failed(who),
        }
        if !*caught_up && (pending == 0 || sequence >= end) {
            *caught_up = true;
            if tx.send(Event::CaughtUp).await.is_err() {
                return Ok(());
            }
        }
    }
}
