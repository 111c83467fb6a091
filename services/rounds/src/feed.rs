//! The health events a round-judging service consumes: durable consumers
//! on the health stream (one per region filter, since NATS 2.9 allows one
//! filter per consumer), merged into one channel, decoded and validated.
//! An event that decodes but is invalid (a region with dots, an unknown
//! status) is dead-lettered and acked here; the rest come out with their
//! ack, which the service sends once the event's round is decided.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use async_nats::jetstream::consumer::DeliverPolicy;
use prost::Message;
use rg_bus::consume::{ConsumerSpec, Delivered, Pending};
use rg_bus::deadletter::DeadLetter;
use rg_bus::{Bus, Stream};
use rg_proto::domain::Observation;
use rg_proto::v1::HealthEvent;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Where and how to consume.
#[derive(Debug, Clone)]
pub struct FeedSpec {
    /// Durable name (`<durable>-<region>` per region filter).
    pub durable: String,
    /// Regions to consume; empty = all.
    pub regions: Vec<String>,
    /// A new consumer starts this far back.
    pub start_lookback: Duration,
    /// Events held unacked at most.
    pub max_pending: i64,
    /// Time before JetStream redelivers an unacked event (longer than a
    /// round takes to decide).
    pub ack_wait: Duration,
}

impl FeedSpec {
    /// The feed of consumer `durable` over `regions` (empty: all), with
    /// the `[rounds]` settings: events wait unacknowledged until their
    /// round is decided.
    pub fn new(durable: &str, regions: Vec<String>, rounds: &crate::RoundSettings) -> Self {
        Self {
            durable: durable.to_owned(),
            regions,
            start_lookback: rounds.start_lookback,
            max_pending: rounds.max_pending,
            ack_wait: rounds.ack_wait(),
        }
    }
}

/// The merged, validated feed.
pub struct HealthFeed {
    rx: mpsc::Receiver<Delivered<HealthEvent>>,
    tasks: TaskTracker,
    stop: CancellationToken,
    dead_letter: DeadLetter,
}

impl HealthFeed {
    /// Opens (or binds to) the consumers and starts pulling.
    pub async fn open(
        bus: &Bus,
        spec: &FeedSpec,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let stream = bus.subjects.stream(Stream::Health);
        let filters: Vec<(String, String)> = if spec.regions.is_empty() {
            vec![(spec.durable.clone(), bus.subjects.health_all())]
        } else {
            spec.regions
                .iter()
                .map(|r| {
                    (
                        format!("{}-{r}", spec.durable),
                        bus.subjects.health_region(r),
                    )
                })
                .collect()
        };
        let (tx, rx) = mpsc::channel::<Delivered<HealthEvent>>(8192);
        let tasks = TaskTracker::new();
        let stop = shutdown.child_token();
        let start = SystemTime::now()
            .checked_sub(spec.start_lookback)
            .unwrap_or(UNIX_EPOCH);
        for (durable, filter) in &filters {
            let mut consumer_spec =
                ConsumerSpec::new(stream.clone(), durable.clone(), filter.clone());
            consumer_spec.deliver = DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::from(start),
            };
            consumer_spec.max_ack_pending = spec.max_pending;
            consumer_spec.ack_wait = spec.ack_wait;
            let consumer = rg_bus::consume::durable(&bus.js, &consumer_spec)
                .await
                .with_context(|| format!("opening consumer {durable}"))?;
            tracing::info!(consumer = %durable, %filter, "consuming health events");
            tasks.spawn(rg_bus::consume::feed(
                consumer,
                bus.dead_letter(durable),
                stop.clone(),
                tx.clone(),
            ));
        }
        tasks.close();
        Ok(Self {
            rx,
            tasks,
            stop,
            dead_letter: bus.dead_letter(&spec.durable),
        })
    }

    /// The next valid event and its ack; `None` when the feed ended.
    pub async fn next(&mut self) -> Option<(Observation, Pending)> {
        loop {
            let d = self.rx.recv().await?;
            match Observation::try_from(&d.message) {
                Ok(obs) => return Some((obs, d.pending)),
                Err(e) => {
                    let payload = d.message.encode_to_vec().into();
                    self.dead_letter
                        .park(
                            d.pending,
                            payload,
                            e.as_metrics_label(),
                            &e.to_string(),
                            Duration::from_secs(1),
                        )
                        .await;
                }
            }
        }
    }

    /// Stops pulling and waits for the pullers.
    pub async fn close(self) {
        self.stop.cancel();
        self.tasks.wait().await;
    }
}

/// Sleeps until `due`, or forever without one (for a `select!` arm).
pub async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A service that judges complete rounds (the detector, the cascade
/// service): it holds observations and hands out steps to publish.
pub trait Judge {
    /// What one decision produces, for the caller's `publish`.
    type Step;
    /// Takes an observation with its ack.
    fn add(&mut self, obs: Observation, ack: Pending, now: Instant) -> crate::Added<Pending>;
    /// When the next round completes.
    fn next_due(&self) -> Option<Instant>;
    /// Decides what is complete at `now` (`now_ms`: wall clock, unix ms).
    fn step(&mut self, now: Instant, now_ms: i64) -> Vec<Self::Step>;
    /// Rounds and observations held.
    fn held(&self) -> (usize, usize);
}

/// Whether an observation went into a round or came too late.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// Held in its round.
    Held,
    /// Its round was decided already (acked, unused).
    Late,
}

/// The loop of a round-judging service: feed observations to `judge`,
/// decide rounds as they complete, hand each step to `publish` (which
/// publishes, saves and acks; false = shutdown interrupted it), until
/// `shutdown`. Late observations are acked here. Undecided rounds are left
/// unacked for the next instance.
pub async fn drive<J, F, Fut>(
    judge: &mut J,
    mut feed: HealthFeed,
    shutdown: &CancellationToken,
    mut admitted: impl FnMut(Admitted),
    mut publish: F,
) where
    J: Judge,
    F: FnMut(J::Step) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    'run: loop {
        let due = judge.next_due();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            next = feed.next() => {
                let Some((obs, pending)) = next else { break };
                match judge.add(obs, pending, Instant::now()) {
                    crate::Added::Held => admitted(Admitted::Held),
                    crate::Added::Late(pending) => {
                        admitted(Admitted::Late);
                        pending.ack().await;
                    }
                }
            }
            _ = sleep_until(due) => {}
        }
        for step in judge.step(Instant::now(), rg_bus::unix_now_ms()) {
            if !publish(step).await {
                break 'run;
            }
        }
    }
    feed.close().await;
    let (rounds, events) = judge.held();
    if rounds > 0 {
        tracing::info!(
            rounds,
            events,
            "stopping with undecided rounds; their events stay unacked for the next instance"
        );
    }
}
