//! Getting events to JetStream without losing them while NATS is away.
//!
//! Rounds push encoded events into an [`EventBuffer`] (bounded: beyond
//! `buffer_capacity` the oldest are dropped and counted). One publisher
//! task takes them from the front in batches, sends a batch, and waits for
//! every PubAck; what did not get one goes back to the front, in order, and
//! is sent again after a backoff. Each event's message id is
//! `<vantage>:<sequence>`, so a retried publish that had in fact been stored
//! is dropped by JetStream's duplicate window, never stored twice.
//!
//! While the client is disconnected nothing is sent (the client would only
//! queue it): events wait in the buffer, and probing goes on.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use rg_bus::publish::PublishError;
use rg_bus::{Bus, BusError, NatsConfig};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::telemetry;

/// Events sent per batch before waiting for their PubAcks.
const BATCH: usize = 512;
/// Backoff between failed batches.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How often dropped events are summarized in the log.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(10);

/// One encoded event on its way to JetStream.
#[derive(Debug, Clone)]
pub struct EncodedEvent {
    /// `<p>.health.<region>.<service>`.
    pub subject: String,
    /// The encoded `HealthEvent`.
    pub payload: Bytes,
    /// `<vantage>:<sequence>`: the JetStream message id.
    pub msg_id: String,
}

/// The bounded queue between the rounds and the publisher.
#[derive(Debug)]
pub struct EventBuffer {
    // std Mutex: held for a push or a pop, never across an await.
    state: Mutex<BufferState>,
    capacity: usize,
    ready: Notify,
}

#[derive(Debug, Default)]
struct BufferState {
    queue: VecDeque<EncodedEvent>,
    dropped_unreported: u64,
}

impl EventBuffer {
    /// A buffer holding at most `capacity` events.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(BufferState::default()),
            capacity: capacity.max(1),
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BufferState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends an event; when full, drops the oldest (counted).
    pub fn push(&self, event: EncodedEvent) {
        let len = {
            let mut s = self.lock();
            if s.queue.len() >= self.capacity {
                s.queue.pop_front();
                s.dropped_unreported += 1;
                telemetry::dropped(1, "buffer_full");
            }
            s.queue.push_back(event);
            s.queue.len()
        };
        telemetry::buffered(len);
        self.ready.notify_one();
    }

    /// Takes up to `max` events from the front.
    fn take(&self, max: usize) -> Vec<EncodedEvent> {
        let mut s = self.lock();
        let n = s.queue.len().min(max);
        s.queue.drain(..n).collect()
    }

    /// Puts events that were not stored back at the front, in order. If
    /// the buffer filled up meanwhile, the oldest (these) are dropped.
    fn requeue(&self, events: Vec<EncodedEvent>) {
        let len = {
            let mut s = self.lock();
            for e in events.into_iter().rev() {
                s.queue.push_front(e);
            }
            let excess = s.queue.len().saturating_sub(self.capacity);
            if excess > 0 {
                s.queue.drain(..excess);
                s.dropped_unreported += excess as u64;
                telemetry::dropped(excess, "buffer_full");
            }
            s.queue.len()
        };
        telemetry::buffered(len);
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take_dropped_unreported(&self) -> u64 {
        std::mem::take(&mut self.lock().dropped_unreported)
    }
}

/// The publisher task. Connects (waiting while NATS is unreachable; events
/// buffer meanwhile), then publishes until `drain` is cancelled and the
/// buffer is empty, or `drain_for` has passed since `drain` was cancelled.
/// `shutdown` aborts waiting for a first connection.
pub async fn run(
    buffer: Arc<EventBuffer>,
    nats: NatsConfig,
    client_name: String,
    shutdown: CancellationToken,
    drain: CancellationToken,
    drain_for: Duration,
) -> Result<(), BusError> {
    let bus = match Bus::connect(&nats, &client_name, &shutdown).await {
        Ok(bus) => bus,
        Err(BusError::Cancelled) => {
            let lost = buffer.len();
            telemetry::dropped(lost, "shutdown");
            if lost > 0 {
                tracing::error!(
                    lost,
                    "shut down before NATS was reachable; buffered health events are lost"
                );
            }
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    tracing::info!(subject = %bus.subjects.health_all(), "publishing health events");
    // The health stream's new leader, heard at once: what waited for a
    // PubAck from a dead leader is sent again then, not after the timeout.
    let mut elections = rg_bus::elected::Elections::of_stream(
        &bus.client,
        &bus.subjects.stream(rg_bus::Stream::Health),
    )
    .await;
    let mut backoff = rg_bus::backoff::Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    let mut last_report = Instant::now();
    let mut drain_deadline: Option<Instant> = None;
    loop {
        if drain.is_cancelled() {
            let deadline = *drain_deadline.get_or_insert_with(|| Instant::now() + drain_for);
            if buffer.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let lost = buffer.len();
                telemetry::dropped(lost, "shutdown");
                tracing::error!(lost, servers = %nats.servers_for_log(), "could not publish every buffered event before shutting down");
                return Ok(());
            }
        }
        if last_report.elapsed() >= DROP_REPORT_EVERY {
            report_drops(&buffer);
            last_report = Instant::now();
        }
        if buffer.is_empty() {
            tokio::select! {
                biased;
                _ = drain.cancelled(), if !drain.is_cancelled() => {}
                _ = buffer.ready.notified() => {}
                _ = tokio::time::sleep(DROP_REPORT_EVERY) => {}
            }
            continue;
        }
        if !rg_bus::connect::is_connected(&bus.client) {
            // The client reconnects by itself; sending now would only queue
            // inside it. Events wait here, where the bound is ours.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let batch = buffer.take(BATCH);
        let sent = send_batch(&bus, batch, &mut elections).await;
        let (stored, failed, error) = (sent.stored, sent.retry, sent.error);
        telemetry::published(stored);
        if failed.is_empty() {
            backoff.reset();
            continue;
        }
        let retry = failed.len();
        buffer.requeue(failed);
        if let Some(leader) = sent.new_leader {
            // Stored once whatever happens: the ids are the same.
            tracing::info!(retry, %leader, "the health stream has a new leader; sending the unacknowledged events again");
            backoff.reset();
            continue;
        }
        match error {
            Some(PublishError::NoStream { .. }) => {
                let name = bus.subjects.stream(rg_bus::Stream::Health);
                if rg_bus::streams::exists(&bus.js, &name).await == Some(false) {
                    tracing::warn!(retry, stream = %name, "the health stream is gone; provisioning the streams again");
                    if let Err(e) = rg_bus::streams::provision(&bus.js, &nats).await {
                        tracing::error!(error = %e, "provisioning the streams failed");
                    }
                } else {
                    tracing::warn!(retry, stream = %name, retry_in = ?backoff.delay(), "the health stream does not answer (no leader for the moment: a cluster election takes 4-9 s); events kept, retrying");
                }
            }
            Some(e) => {
                tracing::warn!(retry, error = %e, retry_in = ?backoff.delay(), "events not acknowledged; retrying")
            }
            None => {}
        }
        // Not cut short by the drain: the drain deadline above ends the
        // loop. Cut short by an election: the new leader answers now.
        tokio::select! {
            _ = backoff.sleep() => {}
            leader = elections.next() => {
                tracing::info!(%leader, "the health stream has a new leader; retrying now");
                backoff.reset();
            }
        }
    }
}

/// What became of a batch.
struct Sent {
    /// Events stored (or found stored already).
    stored: usize,
    /// Events to send again, in order.
    retry: Vec<EncodedEvent>,
    /// The first retryable error.
    error: Option<PublishError>,
    /// The stream's new leader, when one was elected while PubAcks were
    /// awaited: the events without one are in `retry`.
    new_leader: Option<String>,
}

/// Sends a batch and waits for every PubAck, or until the stream elects a
/// new leader (a PubAck the old one owed will never come).
async fn send_batch(
    bus: &Bus,
    batch: Vec<EncodedEvent>,
    elections: &mut rg_bus::elected::Elections,
) -> Sent {
    elections.forget();
    let mut pending = Vec::with_capacity(batch.len());
    let mut failed = Vec::new();
    let mut first_error = None;
    let mut unsent = batch.into_iter();
    for event in unsent.by_ref() {
        match bus
            .publisher
            .send(
                event.subject.clone(),
                event.payload.clone(),
                Some(&event.msg_id),
                None,
            )
            .await
        {
            Ok(p) => pending.push((event, p)),
            Err(e) => {
                first_error = Some(e);
                failed.push(event);
                break;
            }
        }
    }
    // Whatever was not sent after a send failure is retried as well.
    failed.extend(unsent);
    let mut events = Vec::with_capacity(pending.len());
    let mut acks = futures::stream::FuturesUnordered::new();
    for (i, (event, p)) in pending.into_iter().enumerate() {
        events.push(event);
        acks.push(async move { (i, p.stored().await) });
    }
    let mut results: Vec<Option<Result<_, PublishError>>> = events.iter().map(|_| None).collect();
    let mut new_leader = None;
    loop {
        tokio::select! {
            next = acks.next() => match next {
                Some((i, result)) => results[i] = Some(result),
                None => break,
            },
            leader = elections.next() => {
                new_leader = Some(leader);
                break;
            }
        }
    }
    let mut stored = 0;
    let mut retry = Vec::new();
    for (event, result) in events.into_iter().zip(results) {
        match result {
            // No PubAck yet, and a new leader: send again.
            None => retry.push(event),
            Some(Ok(_)) => stored += 1,
            Some(Err(e)) if e.is_transient() || matches!(e, PublishError::NoStream { .. }) => {
                first_error.get_or_insert(e);
                retry.push(event);
            }
            Some(Err(e)) => {
                // Too large or refused: retrying cannot help.
                telemetry::dropped(1, "unpublishable");
                tracing::error!(subject = %event.subject, error = %e, "health event cannot be published; dropped");
            }
        }
    }
    // Retry in the original order: the ones that failed to ack were sent
    // before the ones that could not be sent.
    retry.extend(failed);
    Sent {
        stored,
        retry,
        error: first_error,
        new_leader,
    }
}

fn report_drops(buffer: &EventBuffer) {
    let dropped = buffer.take_dropped_unreported();
    if dropped > 0 {
        tracing::error!(
            dropped,
            capacity = buffer.capacity,
            "event buffer full while NATS is unreachable: oldest health events dropped (raise prober.buffer_capacity to keep more)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u64) -> EncodedEvent {
        EncodedEvent {
            subject: "rg.health.x.y".into(),
            payload: Bytes::new(),
            msg_id: format!("v:{i}"),
        }
    }

    fn ids(events: &[EncodedEvent]) -> Vec<&str> {
        events.iter().map(|e| e.msg_id.as_str()).collect()
    }

    #[test]
    fn a_full_buffer_drops_the_oldest() {
        let b = EventBuffer::new(3);
        for i in 0..5 {
            b.push(event(i));
        }
        assert_eq!(b.len(), 3);
        assert_eq!(b.take_dropped_unreported(), 2);
        assert_eq!(ids(&b.take(10)), ["v:2", "v:3", "v:4"]);
    }

    #[test]
    fn requeued_events_go_back_in_front_in_order() {
        let b = EventBuffer::new(4);
        for i in 0..4 {
            b.push(event(i));
        }
        let batch = b.take(2);
        b.push(event(4));
        b.push(event(5));
        b.requeue(batch);
        // Six events for four places: the two oldest (the requeued ones) go.
        assert_eq!(ids(&b.take(10)), ["v:2", "v:3", "v:4", "v:5"]);
        assert_eq!(b.take_dropped_unreported(), 2);
    }
}
