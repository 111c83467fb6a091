//! Reading a stream from a point on with an ordered consumer: no durable
//! position, no acks. This is for views a service rebuilds from the stream
//! every time it starts (the gateway's dashboard), where a durable
//! consumer's saved position would be wrong: it would resume mid-stream
//! without the state that came before it.
//!
//! The ordered consumer recreates itself after a gap or a NATS restart, so
//! a tail delivers every message in stream order, once.
//!
//! An ordered consumer lives on one server. When that server dies in a
//! cluster, the client notices only after two missed idle heartbeats
//! (about a minute) or when the server comes back, and says nothing in the
//! meantime. So a tail watches its reader: after [`PROBE_AFTER`] without a
//! message it asks the stream's leader whether a message it should have had
//! exists; when one does and still has not arrived [`STALL_AFTER`] later,
//! the reader is declared stalled (logged at WARN, counted in
//! `regionguard_stream_reader_stalls_total{reader}`) and recreated after the
//! last message delivered, on whichever server now answers. The
//! [`Freshness`] of a tail says when it was last known to be current, so a
//! service can refuse to decide from a view it cannot vouch for.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{
    self,
    consumer::{pull, AckPolicy, DeliverPolicy},
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

/// Silence after which a tail asks the stream whether it missed something.
pub const PROBE_AFTER: Duration = Duration::from_secs(2);
/// How often it asks again while the stream holds a message it did not
/// deliver.
const PROBE_BEHIND: Duration = Duration::from_secs(1);
/// How long a message the stream holds may stay undelivered before the
/// reader is declared stalled and recreated.
pub const STALL_AFTER: Duration = Duration::from_millis(1500);
/// How long a silent reader may stay unverified (the stream does not say
/// whether it missed something) before it is recreated anyway: a reader
/// left on a server cut off from its cluster, or on a replica the stream
/// reset, otherwise waits as long as the fault lasts.
const UNVERIFIED_AFTER: Duration = Duration::from_secs(10);
/// How long a reader nobody pulls from stays on the server.
const READER_INACTIVE: Duration = Duration::from_secs(30);
/// How long a probe of the stream may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// When a tail was last known to be current: a message arrived, or the
/// stream had nothing newer for it. Shared with the tail's task; cheap to
/// clone.
#[derive(Debug, Clone, Default)]
pub struct Freshness(Arc<AtomicI64>);

impl Freshness {
    fn mark(&self) {
        self.0.store(crate::unix_now_ms(), Ordering::Relaxed);
    }

    /// Unix milliseconds of the last time the tail was known current; 0
    /// before the first.
    pub fn verified_at_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    /// How long ago the tail was last known current (`None`: never).
    pub fn age(&self) -> Option<Duration> {
        match self.verified_at_ms() {
            0 => None,
            at => Some(Duration::from_millis(
                crate::unix_now_ms().saturating_sub(at).max(0) as u64,
            )),
        }
    }

    /// True when the tail was known current within `within`.
    pub fn is_fresh(&self, within: Duration) -> bool {
        self.age().is_some_and(|a| a <= within)
    }
}

/// Tails `stream` (filtered by `filter`) from `from`, decoding each message
/// as `M`, into the returned channel until `shutdown`. Undecodable
/// payloads are counted under `who` and skipped (the stream keeps them;
/// the durable consumers dead-letter them). Errors reading the stream are
/// retried with backoff and logged; a stalled reader is recreated.
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
    spawn_watched(js, stream, filter, from, who, shutdown).0
}

/// [`spawn`], with the tail's [`Freshness`].
pub fn spawn_watched<M>(
    js: jetstream::Context,
    stream: String,
    filter: String,
    from: From,
    who: &'static str,
    shutdown: CancellationToken,
) -> (mpsc::Receiver<Event<M>>, Freshness)
where
    M: Message + Default + Send + 'static,
{
    let (tx, rx) = mpsc::channel(4096);
    let freshness = Freshness::default();
    let fresh = freshness.clone();
    tokio::spawn(async move {
        // At most 2 s between attempts: a stream whose leader died answers
        // again as soon as its replicas elect one (4-9 s in nats-server).
        let mut backoff =
            crate::backoff::Backoff::new(Duration::from_millis(250), Duration::from_secs(2));
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
                &fresh,
            );
            let result = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                r = attempt => r,
            };
            match result {
                Ok(()) => return, // the receiver is gone
                Err(TailError::Stalled { behind_for, next }) => {
                    crate::metrics::reader_stalled(who);
                    tracing::warn!(%stream, %filter, reader = who, after = resume_after.unwrap_or(0), next, behind_for = ?behind_for, "stream reader stalled (the stream holds messages it did not deliver; its server may be gone); recreating it");
                    // Straight away: the stream answered, the reader did not.
                    backoff.reset();
                }
                Err(TailError::Failed(e)) => {
                    crate::metrics::consumer_error(who);
                    tracing::warn!(%stream, %filter, error = %e, retry_in = ?backoff.delay(), "reading the stream failed; retrying");
                    if !backoff.wait(&shutdown).await {
                        return;
                    }
                }
            }
        }
    });
    (rx, freshness)
}

/// Why one reading of the stream ended.
enum TailError {
    /// Reading failed.
    Failed(String),
    /// The stream holds `next` (and perhaps more) but the reader has not
    /// delivered it for `behind_for`.
    Stalled { behind_for: Duration, next: u64 },
}

impl std::convert::From<String> for TailError {
    fn from(e: String) -> Self {
        Self::Failed(e)
    }
}

/// What a probe of the stream found.
enum Probe {
    /// The first message at or after the asked sequence that the filter
    /// matches.
    Behind(u64),
    /// None: the reader is current.
    Current,
    /// The stream did not answer (no leader, no quorum, timeout).
    Unknown(String),
}

async fn probe(stream: &jetstream::stream::Stream, filter: &str, from_sequence: u64) -> Probe {
    use async_nats::jetstream::stream::LastRawMessageErrorKind as K;
    let asked = stream
        .raw_message_builder()
        .sequence(from_sequence.max(1))
        .next_by_subject(filter.to_owned())
        .send();
    match tokio::time::timeout(PROBE_TIMEOUT, asked).await {
        Ok(Ok(m)) => Probe::Behind(m.sequence),
        Ok(Err(e)) if e.kind() == K::NoMessageFound => Probe::Current,
        Ok(Err(e)) => Probe::Unknown(e.to_string()),
        Err(_) => Probe::Unknown(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
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
    fresh: &Freshness,
) -> Result<(), TailError> {
    let mut stream = js
        .get_stream(stream_name)
        .await
        .map_err(|e| format!("opening stream {stream_name}: {e}"))?;
    let info = stream
        .info()
        .await
        .map_err(|e| format!("reading stream {stream_name}: {e}"))?;
    let last = info.state.last_sequence;
    let replicas = info.config.num_replicas;
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
    // As many replicas as the stream: a one-replica reader is placed on
    // one of the stream's servers, a dead one included (nats-server keeps
    // it in the peer set), and its creation then times out; a replicated
    // reader needs only a quorum of them, and outlives the loss of one.
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: filter.to_owned(),
            deliver_policy,
            ack_policy: AckPolicy::None,
            num_replicas: replicas,
            inactive_threshold: READER_INACTIVE,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("creating a reader of {stream_name}: {e}"))?;
    let mut messages = crate::consume::pull(&consumer)
        .await
        .map_err(|e| format!("reading {stream_name}: {e}"))?;
    // Without acks nothing is redelivered: a delivery lost on the way (a
    // reconnect, a pull that died with its server) shows as a gap in the
    // consumer's sequence, and the reader starts again after the last
    // message it delivered.
    let mut consumer_sequence = 0u64;
    // A filtered tail may never see the stream's last message: it is caught
    // up once nothing is pending for it.
    let mut first = true;
    // Since when the stream has held a message this reader did not deliver.
    let mut behind_since: Option<tokio::time::Instant> = None;
    // Since when a silent reader could not be verified.
    let mut unknown_since: Option<tokio::time::Instant> = None;
    loop {
        let next = if !*caught_up && first {
            // With nothing matching the filter, no message ever comes: look
            // at the consumer's pending count after a short wait.
            match tokio::time::timeout(Duration::from_millis(500), messages.next()).await {
                Ok(m) => Some(m),
                Err(_) => {
                    *caught_up = true;
                    if tx.send(Event::CaughtUp).await.is_err() {
                        return Ok(());
                    }
                    None
                }
            }
        } else {
            let wait = if behind_since.is_some() {
                PROBE_BEHIND
            } else {
                PROBE_AFTER
            };
            tokio::time::timeout(wait, messages.next()).await.ok()
        };
        first = false;
        let Some(next) = next else {
            // Silence: is there something this reader should have had?
            let after = resume_after.unwrap_or(end);
            let probed = probe(&stream, filter, after + 1).await;
            if !matches!(probed, Probe::Unknown(_)) {
                unknown_since = None;
            }
            match probed {
                Probe::Current => {
                    behind_since = None;
                    fresh.mark();
                }
                Probe::Behind(next) => {
                    let since = *behind_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() >= STALL_AFTER {
                        return Err(TailError::Stalled {
                            behind_for: since.elapsed(),
                            next,
                        });
                    }
                }
                Probe::Unknown(e) => {
                    tracing::debug!(stream = stream_name, reader = who, error = %e, "cannot tell whether the reader is current");
                    let since = *unknown_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() >= UNVERIFIED_AFTER {
                        return Err(format!(
                            "the reader of {stream_name} has been silent and unverified for {:?} (the stream does not answer through this server: {e}); reading again",
                            since.elapsed()
                        )
                        .into());
                    }
                }
            }
            continue;
        };
        let message = match next {
            None => return Err(format!("the reader of {stream_name} ended").into()),
            Some(Err(e)) => {
                // A pull lost with its server: pull again from the same
                // reader (its replicas elect a leader); a lost delivery
                // shows as a sequence gap above. Pulls that keep failing
                // leave the reader unverified like a stream that does not
                // answer: recreated after the same time (an unseen fault
                // mix left a reader failing its pulls for 16 s after a
                // partition healed, while new events were stored).
                tracing::debug!(stream = stream_name, reader = who, error = %e, "pull interrupted; pulling again");
                let since = *unknown_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= UNVERIFIED_AFTER {
                    return Err(format!(
                        "the reader of {stream_name} has failed its pulls for {:?} ({e}); reading again",
                        since.elapsed()
                    )
                    .into());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                messages = crate::consume::pull(&consumer)
                    .await
                    .map_err(|e| format!("reading {stream_name}: {e}"))?;
                continue;
            }
            Some(Ok(m)) => m,
        };
        behind_since = None;
        unknown_since = None;
        let (sequence, pending) = match message.info() {
            Ok(i) => {
                if i.consumer_sequence != consumer_sequence + 1 {
                    return Err(format!(
                        "reading {stream_name}: delivery {} after {consumer_sequence} (a delivery was lost); reading again after {}",
                        i.consumer_sequence,
                        resume_after.unwrap_or(0)
                    )
                    .into());
                }
                consumer_sequence = i.consumer_sequence;
                (i.stream_sequence, i.pending)
            }
            Err(e) => {
                return Err(format!("a message from {stream_name} without metadata: {e}").into())
            }
        };
        *resume_after = Some(sequence);
        if pending == 0 {
            fresh.mark();
        }
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

/// The messages of `stream` matching `filter` from `from` to its end, read
/// once with a short-lived ordered consumer: what a service re-reads when
/// it cannot vouch for its view before a decision. Fails after `within`.
pub async fn read_once<M: Message + Default>(
    js: &jetstream::Context,
    stream_name: &str,
    filter: &str,
    from: From,
    within: Duration,
) -> Result<Vec<Tailed<M>>, String> {
    fold_once(
        js,
        stream_name,
        filter,
        from,
        within,
        Vec::new(),
        |out, m| {
            out.push(m);
        },
    )
    .await
}

/// [`read_once`] without keeping the messages: each is handed to `fold`
/// with the accumulator as it is read (e.g. a day of health events summed
/// up without holding them all). Undecodable messages are counted and
/// skipped.
pub async fn fold_once<M: Message + Default, A>(
    js: &jetstream::Context,
    stream_name: &str,
    filter: &str,
    from: From,
    within: Duration,
    init: A,
    mut fold: impl FnMut(&mut A, Tailed<M>),
) -> Result<A, String> {
    let mut acc = init;
    let read = async {
        let mut stream = js
            .get_stream(stream_name)
            .await
            .map_err(|e| format!("opening stream {stream_name}: {e}"))?;
        let deliver_policy = match from {
            From::Time(t) => DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::from(t.max(UNIX_EPOCH)),
            },
            From::Last(n) => {
                let last = stream
                    .info()
                    .await
                    .map_err(|e| format!("reading stream {stream_name}: {e}"))?
                    .state
                    .last_sequence;
                DeliverPolicy::ByStartSequence {
                    start_sequence: last.saturating_sub(n).saturating_add(1).max(1),
                }
            }
            From::LastPerSubject => DeliverPolicy::LastPerSubject,
            From::New => return Ok::<(), String>(()),
        };
        let replicas = stream
            .info()
            .await
            .map_err(|e| format!("reading stream {stream_name}: {e}"))?
            .config
            .num_replicas;
        let consumer = stream
            .create_consumer(pull::Config {
                filter_subject: filter.to_owned(),
                deliver_policy,
                ack_policy: AckPolicy::None,
                num_replicas: replicas,
                inactive_threshold: Duration::from_secs(5),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("creating a reader of {stream_name}: {e}"))?;
        if consumer.cached_info().num_pending == 0 {
            return Ok(());
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| format!("reading {stream_name}: {e}"))?;
        while let Some(next) = messages.next().await {
            let message = next.map_err(|e| format!("reading {stream_name}: {e}"))?;
            let info = message
                .info()
                .map_err(|e| format!("a message from {stream_name} without metadata: {e}"))?;
            let (sequence, pending) = (info.stream_sequence, info.pending);
            match M::decode(message.payload.as_ref()) {
                Ok(decoded) => fold(
                    &mut acc,
                    Tailed {
                        message: decoded,
                        subject: message.subject.to_string(),
                        stream_sequence: sequence,
                        history: true,
                    },
                ),
                Err(_) => crate::metrics::decode_failed("read-once"),
            }
            if pending == 0 {
                break;
            }
        }
        Ok(())
    };
    tokio::time::timeout(within, read)
        .await
        .map_err(|_| format!("reading {stream_name} took longer than {within:?}"))??;
    Ok(acc)
}
