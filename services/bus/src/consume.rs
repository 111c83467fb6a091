//! Durable pull consumers and the one consumer loop every service uses:
//! decode → decide → publish → ack, with an [`Outcome`] per message.
//!
//! The ack policy is the `match` in [`run`]:
//! - the handler returned [`Outcome::Handled`] → ack;
//! - the payload did not decode → copy to the dead-letter stream, wait for
//!   its PubAck, then ack (a poison message is never redelivered forever);
//! - [`Outcome::Transient`] → nak with a delay: JetStream redelivers it;
//! - while the handler works, "in progress" every third of the ack wait,
//!   so a long handler keeps its message and a short ack wait still
//!   redelivers quickly what a dead instance held;
//! - [`Outcome::Stop`] or shutdown → leave the message unacked (it will be
//!   redelivered to the next instance) and return.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer},
    AckKind,
};
use futures::StreamExt;
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::codec;
use crate::deadletter::DeadLetter;
use crate::metrics as m;

/// What the handler did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Fully handled (anything it had to publish got its PubAck): ack.
    Handled,
    /// Could not be handled now (a publish timed out, NATS is away): nak so
    /// JetStream redelivers it after a delay.
    Transient(String),
    /// Stop consuming without acking this message.
    Stop,
}

/// Where a message sits in its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Sequence in the stream.
    pub stream_sequence: u64,
    /// How many times it has been delivered (1 on first delivery).
    pub delivered: i64,
    /// Messages still pending for this consumer after this one.
    pub pending: u64,
}

/// A durable consumer to create (or reuse).
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Stream name, e.g. `RG_HEALTH`.
    pub stream: String,
    /// Durable name: the consumer's position survives restarts under it.
    pub durable: String,
    /// Subject filter, e.g. `rg.health.>` or `rg.health.us-east-1.>`.
    pub filter: String,
    /// Where a new consumer starts.
    pub deliver: DeliverPolicy,
    /// Time the server waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// Max unacknowledged messages outstanding.
    pub max_ack_pending: i64,
}

impl ConsumerSpec {
    /// A spec with the defaults (all messages, 30 s ack wait, 10,000 pending).
    pub fn new(
        stream: impl Into<String>,
        durable: impl Into<String>,
        filter: impl Into<String>,
    ) -> Self {
        Self {
            stream: stream.into(),
            durable: durable.into(),
            filter: filter.into(),
            deliver: DeliverPolicy::All,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 10_000,
        }
    }
}

/// Creating or reading the consumer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumeError {
    /// The stream is missing or JetStream did not answer.
    #[error("opening stream {stream} for consumer {durable}: {message}")]
    Stream {
        /// The stream.
        stream: String,
        /// The consumer.
        durable: String,
        /// The client's message.
        message: String,
    },
    /// The consumer could not be created or read.
    #[error("creating consumer {durable} on {stream}: {message}")]
    Consumer {
        /// The stream.
        stream: String,
        /// The consumer.
        durable: String,
        /// The client's message.
        message: String,
    },
}

/// Creates the durable consumer, or binds to it when it exists.
pub async fn durable(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
) -> Result<PullConsumer, ConsumeError> {
    let stream = js
        .get_stream(&spec.stream)
        .await
        .map_err(|e| ConsumeError::Stream {
            stream: spec.stream.clone(),
            durable: spec.durable.clone(),
            message: e.to_string(),
        })?;
    stream
        .get_or_create_consumer(
            &spec.durable,
            pull::Config {
                durable_name: Some(spec.durable.clone()),
                filter_subject: spec.filter.clone(),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: spec.deliver,
                ack_wait: spec.ack_wait,
                max_ack_pending: spec.max_ack_pending,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| ConsumeError::Consumer {
            stream: spec.stream.clone(),
            durable: spec.durable.clone(),
            message: e.to_string(),
        })
}

/// Delay before a nak'ed message is redelivered.
const NAK_DELAY: Duration = Duration::from_secs(1);

/// Consumes `M` messages until `shutdown` or [`Outcome::Stop`].
///
/// In-flight means: the one message handed to `handle`. On shutdown the loop
/// lets that call finish (its publishes get their PubAcks), acks it, and
/// returns; it pulls nothing more.
pub async fn run<M, F, Fut>(
    consumer: PullConsumer,
    dead_letter: DeadLetter,
    shutdown: CancellationToken,
    mut handle: F,
) -> Result<(), ConsumeError>
where
    M: Message + Default,
    F: FnMut(M, Delivery) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let name = consumer.cached_info().name.clone();
    let stream = consumer.cached_info().stream_name.clone();
    // A handler that works longer than the ack wait (a failover) keeps its
    // message: "in progress" every third of the ack wait.
    let progress_every = (consumer.cached_info().config.ack_wait / 3).max(Duration::from_secs(1));
    pull_loop(consumer, dead_letter, shutdown, move |decoded: M, delivery, message| {
        let handled = handle(decoded, delivery);
        let (name, stream) = (name.clone(), stream.clone());
        async move {
            tokio::pin!(handled);
            let mut tick = tokio::time::interval(progress_every);
            tick.tick().await;
            let outcome = loop {
                tokio::select! {
                    outcome = &mut handled => break outcome,
                    _ = tick.tick() => {
                        if let Err(e) = message.ack_with(AckKind::Progress).await {
                            tracing::debug!(consumer = %name, error = %e, "in-progress ack failed");
                        }
                    }
                }
            };
            match outcome {
                // Handled: ack so it is not redelivered.
                Outcome::Handled => {
                    if let Err(e) = message.ack().await {
                        tracing::warn!(consumer = %name, error = %e, "ack failed; the message will be redelivered");
                    }
                    m::consumed(&stream, &name);
                    Step::Continue
                }
                // Not handled now: ask for redelivery after a delay.
                Outcome::Transient(reason) => {
                    tracing::warn!(consumer = %name, subject = %message.subject, %reason, "handling failed; redelivery requested");
                    if let Err(e) = message.ack_with(AckKind::Nak(Some(NAK_DELAY))).await {
                        tracing::warn!(consumer = %name, error = %e, "nak failed; redelivery after ack wait");
                    }
                    Step::Continue
                }
                // Stop without acking: the next instance gets this message.
                Outcome::Stop => Step::Stop,
            }
        }
    })
    .await
}

/// A decoded message whose ack is up to the receiver (see [`feed`]).
#[derive(Debug)]
pub struct Delivered<M> {
    /// The decoded payload.
    pub message: M,
    /// Where it sits in its stream.
    pub delivery: Delivery,
    /// Ack or nak it when it has been dealt with; dropping it unacked means
    /// JetStream redelivers it after the ack wait.
    pub pending: Pending,
}

/// The ack of a [`Delivered`] message.
#[derive(Debug)]
pub struct Pending {
    message: jetstream::Message,
}

impl Pending {
    /// The subject the message was published on.
    pub fn subject(&self) -> &str {
        self.message.subject.as_str()
    }

    /// Acks it; returns false (logged) when the ack could not be sent, in
    /// which case JetStream redelivers the message later.
    pub async fn ack(self) -> bool {
        match self.message.ack().await {
            Ok(()) => {
                if let Ok(info) = self.message.info() {
                    m::consumed(info.stream, info.consumer);
                }
                true
            }
            Err(e) => {
                tracing::warn!(subject = %self.message.subject, error = %e, "ack failed; the message will be redelivered");
                false
            }
        }
    }

    /// Tells JetStream the message is still being worked on, which resets
    /// its ack wait (a receiver that holds messages longer than the ack
    /// wait sends this periodically).
    pub async fn progress(&self) {
        if let Err(e) = self.message.ack_with(AckKind::Progress).await {
            tracing::debug!(subject = %self.message.subject, error = %e, "in-progress ack failed");
        }
    }

    /// Asks for redelivery after `delay`.
    pub async fn nak(self, delay: Duration) {
        if let Err(e) = self.message.ack_with(AckKind::Nak(Some(delay))).await {
            tracing::warn!(subject = %self.message.subject, error = %e, "nak failed; redelivery after ack wait");
        }
    }
}

/// Pulls `M` messages and sends them, decoded, to `tx` until `shutdown` (or
/// until the receiver is gone); the receiver acks each when it has dealt
/// with it. This is the loop for a consumer that decides on groups of
/// messages (a probe round) and must not ack one before its group is
/// decided. Undecodable payloads are dead-lettered and acked here, as in
/// [`run`].
pub async fn feed<M>(
    consumer: PullConsumer,
    dead_letter: DeadLetter,
    shutdown: CancellationToken,
    tx: tokio::sync::mpsc::Sender<Delivered<M>>,
) -> Result<(), ConsumeError>
where
    M: Message + Default,
{
    pull_loop(
        consumer,
        dead_letter,
        shutdown,
        move |decoded: M, delivery, message| {
            let tx = tx.clone();
            async move {
                let delivered = Delivered {
                    message: decoded,
                    delivery,
                    pending: Pending { message },
                };
                match tx.send(delivered).await {
                    Ok(()) => Step::Continue,
                    Err(_) => Step::Stop,
                }
            }
        },
    )
    .await
}

/// How long one pull request waits on the server. Short, so that when the
/// consumer's leader dies the next request (to the new leader) goes out
/// within seconds; an idle consumer sends one request per period.
pub const PULL_EXPIRES: Duration = Duration::from_secs(4);
/// The server's idle heartbeat on a pull request; two missed ones mean the
/// server that held the request is gone, and the loop pulls afresh.
pub const PULL_HEARTBEAT: Duration = Duration::from_secs(1);

/// Starts pulling from `consumer` with [`PULL_EXPIRES`] and
/// [`PULL_HEARTBEAT`]: every reader of a stream pulls this way.
pub(crate) async fn pull(
    consumer: &PullConsumer,
) -> Result<pull::Stream, async_nats::jetstream::consumer::StreamError> {
    consumer
        .stream()
        .expires(PULL_EXPIRES)
        .heartbeat(PULL_HEARTBEAT)
        .messages()
        .await
}

/// A consumer that delivered nothing for this long is asked whether it
/// should have (see [`undelivered`]).
const STALL_CHECK_AFTER: Duration = Duration::from_secs(5);
/// A consumer found with messages waiting is asked again after this long;
/// still the same: stalled, and the loop pulls afresh.
const STALL_CONFIRM: Duration = Duration::from_millis(1500);
/// How long the stall check waits for the consumer's leader.
const STALL_ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// What the stall check saw: messages waiting for a consumer with room to
/// deliver them.
#[derive(Debug, Clone, Copy)]
struct Suspect {
    /// The last stream sequence the consumer delivered.
    delivered: u64,
    /// Messages waiting.
    waiting: u64,
    /// When they were first seen waiting.
    since: tokio::time::Instant,
}

/// Asks the consumer's leader whether messages wait that it could deliver
/// (below its max ack pending). None: nothing waits, the consumer is full,
/// or the leader does not answer (the pull errors say so).
async fn undelivered(consumer: &PullConsumer) -> Option<Suspect> {
    let info = tokio::time::timeout(STALL_ASK_TIMEOUT, consumer.get_info())
        .await
        .ok()?
        .ok()?;
    let max = info.config.max_ack_pending;
    let room = max <= 0 || (info.num_ack_pending as i64) < max;
    (info.num_pending > 0 && room).then(|| Suspect {
        delivered: info.delivered.stream_sequence,
        waiting: info.num_pending,
        since: tokio::time::Instant::now(),
    })
}

/// Asks the leader of `stream`'s consumer `consumer` to step down (the
/// caller logged why); a failure is logged, and the next check tries again.
async fn step_down(js: &jetstream::Context, stream: &str, consumer: &str) {
    let subject = format!("CONSUMER.LEADER.STEPDOWN.{stream}.{consumer}");
    let asked = tokio::time::timeout(
        STALL_ASK_TIMEOUT,
        js.request::<_, _, serde_json::Value>(subject, &serde_json::json!({})),
    )
    .await;
    match asked {
        Ok(Ok(answer)) => {
            tracing::info!(%consumer, %answer, "consumer leader asked to step down")
        }
        Ok(Err(e)) => tracing::warn!(%consumer, error = %e, "consumer leader stepdown failed"),
        Err(_) => tracing::warn!(%consumer, "consumer leader stepdown not answered within 2 s"),
    }
}

/// Logs that `consumer` has a new leader and is pulled afresh: at info
/// while it is paused (that is what ends the pause), else at debug.
fn new_leader(consumer: &str, leader: &str, paused: bool) {
    if paused {
        tracing::info!(
            consumer,
            leader,
            "the consumer has a new leader; pulling from it"
        );
    } else {
        tracing::debug!(
            consumer,
            leader,
            "the consumer has a new leader; pulling from it"
        );
    }
}

/// Whether a pull loop goes on.
enum Step {
    Continue,
    Stop,
}

/// Pulls until `shutdown` or [`Step::Stop`]: decodes each message and hands
/// it, with the message to ack, to `on`; a payload that does not decode is
/// copied to the dead-letter stream and acked (or nak'ed when that copy
/// fails).
async fn pull_loop<M, F, Fut>(
    consumer: PullConsumer,
    dead_letter: DeadLetter,
    shutdown: CancellationToken,
    mut on: F,
) -> Result<(), ConsumeError>
where
    M: Message + Default,
    F: FnMut(M, Delivery, jetstream::Message) -> Fut,
    Fut: Future<Output = Step>,
{
    let name = consumer.cached_info().name.clone();
    let stream = consumer.cached_info().stream_name.clone();
    // Since when the loop has not been able to pull (logged when it ends).
    let mut paused: Option<(tokio::time::Instant, String)> = None;
    // Stalls found since the last delivered message.
    let mut stalls = 0u32;
    // The stall check runs on its own clock, kept across reopens: a pull
    // that errors every 2 s (missed heartbeats from a leader that does not
    // deliver) must not keep postponing it (seen after a hung server: the
    // loop reopened for 30 s, the check never ran).
    let mut check_at = tokio::time::Instant::now() + STALL_CHECK_AFTER;
    let mut suspect: Option<Suspect> = None;
    // Pull errors since the last delivered message, and when one was last
    // logged at warn (a long pause says so every 10 s, not only at debug).
    let mut errors = 0u32;
    let mut warned_at = tokio::time::Instant::now();
    // A new leader of this consumer: pull afresh at once (a request held
    // by the old leader is gone with it) instead of after missed
    // heartbeats.
    let mut elections =
        crate::elected::Elections::of_consumer(&dead_letter.context().client(), &stream, &name)
            .await;
    'reopen: loop {
        let pulling = pull(&consumer);
        let mut messages = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            r = pulling => match r {
                Ok(messages) => messages,
                Err(e) => {
                    if paused.is_none() {
                        tracing::warn!(consumer = %name, error = %e, "cannot start pulling; retrying every 1s");
                        paused = Some((tokio::time::Instant::now(), e.to_string()));
                    }
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue 'reopen,
                        leader = elections.next() => {
                            new_leader(&name, &leader, paused.is_some());
                            continue 'reopen;
                        }
                    }
                }
            },
        };
        // The stall check: while nothing is delivered, ask the consumer's
        // leader now and then whether something should have been.
        loop {
            let next = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                next = messages.next() => next,
                leader = elections.next() => {
                    new_leader(&name, &leader, paused.is_some());
                    continue 'reopen;
                }
                _ = tokio::time::sleep_until(check_at) => {
                    let now = tokio::time::Instant::now();
                    match (undelivered(&consumer).await, suspect.take()) {
                        // The same messages waited through two checks:
                        // the pull is stuck (a request held by a server
                        // that no longer leads the consumer, or lost).
                        (Some(seen), Some(before)) if seen.delivered == before.delivered => {
                            m::consumer_stalled(&name);
                            stalls += 1;
                            if stalls == 1 {
                                tracing::warn!(consumer = %name, waiting = seen.waiting, delivered = seen.delivered, "consumer stalled: messages wait and nothing is delivered; pulling afresh");
                            } else {
                                // Pulling afresh did not help: the leader
                                // itself does not deliver (a server-side
                                // stall after elections); another replica
                                // takes over.
                                tracing::warn!(consumer = %name, waiting = seen.waiting, delivered = seen.delivered, stalls, "consumer still stalled after pulling afresh; asking its leader to step down");
                                step_down(dead_letter.context(), &stream, &name).await;
                            }
                            paused.get_or_insert((
                                before.since,
                                format!("stalled with {} messages waiting", seen.waiting),
                            ));
                            // The fresh pull (or the new leader) gets its
                            // time before the next check.
                            check_at = now + STALL_CHECK_AFTER;
                            continue 'reopen;
                        }
                        (Some(seen), _) => {
                            suspect = Some(seen);
                            check_at = now + STALL_CONFIRM;
                        }
                        (None, _) => check_at = now + STALL_CHECK_AFTER,
                    }
                    continue;
                }
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(e)) => {
                    // Missed heartbeats and pull errors happen while NATS,
                    // or the server holding the consumer's leader, is away:
                    // pull afresh, which reaches the new leader once one is
                    // elected.
                    m::consumer_error(&name);
                    errors += 1;
                    if paused.is_none() {
                        tracing::warn!(consumer = %name, error = %e, "pull interrupted (the consumer's server may be gone); pulling afresh");
                        paused = Some((tokio::time::Instant::now(), e.to_string()));
                        warned_at = tokio::time::Instant::now();
                    } else if warned_at.elapsed() >= Duration::from_secs(10) {
                        tracing::warn!(consumer = %name, error = %e, errors, paused_for = ?paused.as_ref().map(|p| p.0.elapsed()), "still no delivery: pulls keep failing; pulling afresh");
                        warned_at = tokio::time::Instant::now();
                    } else {
                        tracing::debug!(consumer = %name, error = %e, "pull error");
                    }
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_millis(200)) => continue 'reopen,
                        leader = elections.next() => {
                            new_leader(&name, &leader, paused.is_some());
                            continue 'reopen;
                        }
                    }
                }
                None => {
                    tracing::warn!(consumer = %name, "message stream ended; reopening");
                    continue 'reopen;
                }
            };
            // A message delivered: whatever stalled is over.
            stalls = 0;
            errors = 0;
            check_at = tokio::time::Instant::now() + STALL_CHECK_AFTER;
            suspect = None;
            if let Some((since, cause)) = paused.take() {
                let paused_for = since.elapsed();
                m::ConsumerResumed {
                    consumer: &name,
                    paused_for,
                    cause: &cause,
                }
                .emit();
            }
            let delivery = match message.info() {
                Ok(info) => Delivery {
                    stream_sequence: info.stream_sequence,
                    delivered: info.delivered,
                    pending: info.pending,
                },
                Err(_) => Delivery {
                    stream_sequence: 0,
                    delivered: 1,
                    pending: 0,
                },
            };
            match codec::decode::<M>(&message.payload) {
                Ok(decoded) => {
                    if let Step::Stop = on(decoded, delivery, message).await {
                        return Ok(());
                    }
                }
                Err(e) => {
                    let payload = message.payload.clone();
                    if dead_letter
                        .park(
                            Pending { message },
                            payload,
                            "undecodable",
                            &e.to_string(),
                            NAK_DELAY,
                        )
                        .await
                    {
                        m::consumed(&stream, &name);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::jetstream::stream;

    /// The stall check's question, asked of a real server: messages wait
    /// and the consumer has room → a suspect; full, or nothing waiting →
    /// none.
    #[tokio::test]
    async fn undelivered_names_waiting_messages_only_when_they_could_be_delivered() {
        let server = rg_testkit::NatsServer::start();
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = jetstream::new(client);
        js.create_stream(stream::Config {
            name: "T".into(),
            subjects: vec!["t.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        let mut spec = ConsumerSpec::new("T", "c", "t.>");
        spec.max_ack_pending = 2;
        let consumer = durable(&js, &spec).await.unwrap();
        assert!(undelivered(&consumer).await.is_none(), "empty stream");

        for i in 0..3 {
            js.publish(format!("t.{i}"), "x".into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        let seen = undelivered(&consumer).await.expect("3 messages wait");
        assert_eq!((seen.waiting, seen.delivered), (3, 0));

        // Two delivered and held: the consumer is full, nothing is stuck.
        let mut batch = consumer.fetch().max_messages(2).messages().await.unwrap();
        let mut held = Vec::new();
        while let Some(m) = batch.next().await {
            held.push(m.unwrap());
        }
        assert_eq!(held.len(), 2);
        assert!(
            undelivered(&consumer).await.is_none(),
            "full at max ack pending"
        );

        for m in held {
            m.double_ack().await.unwrap();
        }
        let seen = undelivered(&consumer).await.expect("room again, one waits");
        assert_eq!((seen.waiting, seen.delivered), (1, 2));
    }
}
