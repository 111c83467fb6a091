//! The notifier: alerts and failover phases to Prometheus Alertmanager,
//! generic JSON webhooks, Slack-compatible webhooks and PagerDuty.
//!
//! - Consumes: `<p>.alerts.>` (RG_ALERTS, durable consumer `notifier`)
//!   and `<p>.decisions.failover.>` (RG_DECISIONS, durable consumer
//!   `notifier-decisions`), each new consumer starting five minutes back.
//! - Publishes: `<p>.alerts.notify.failed`, an `Alert` (source
//!   `notifier`) for each notice a sink never took, naming the sink, the
//!   error and the original message; the notifier skips its own subject.
//! - Guarantees: a message is acked only once every sink that wants it
//!   took it or gave up (after retries for `give_up_after`); a sink's
//!   notices go out in stream order (a resolution never overtakes its
//!   firing); each delivery is marked in the `RG_NOTIFIER_SENT` bucket, so
//!   a restarted notifier sends nothing twice; alerts firing in
//!   Alertmanager are kept in `RG_NOTIFIER` and sent again every
//!   `resend_interval`, as Alertmanager expects. In-flight on shutdown:
//!   the notices queued or being retried; their messages are not acked
//!   and come again at the next start.
//!
//! # Layout
//! - [`config`] — the `[notifier]` section and its sinks.
//! - [`notice`] — an alert or a failover phase, and each sink's payload.
//! - `sink` — queues, delivery with retries, Alertmanager's resends.
//! - [`telemetry`] — metrics.
#![warn(missing_docs)]

pub mod config;
pub mod notice;
mod sink;
pub mod telemetry;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer::DeliverPolicy;
use rg_bus::consume::{ConsumerSpec, Delivered, Pending};
use rg_bus::state::{StateBucket, Typed};
use rg_bus::{Bus, NatsConfig, Stream};
use rg_proto::v1::{Alert, AlertSource, AlertState, FailoverDecision, Severity};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use config::Config;
use notice::Notice;
use sink::{GaveUp, Job, Shared, Sink};

/// How far back a new consumer starts.
const LOOKBACK: Duration = Duration::from_secs(300);
/// In-progress acks for a message waiting on its sinks.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Runs the notifier until `shutdown`.
pub async fn run(
    config: Config,
    nats: NatsConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    telemetry::describe();
    let sinks: Vec<Arc<Sink>> = config
        .sinks
        .iter()
        .cloned()
        .map(|c| Sink::new(c).map(Arc::new))
        .collect::<anyhow::Result<_>>()?;
    let Some(bus) = Bus::connect_or_stop(&nats, "regionguard-notifier", &shutdown)
        .await
        .context("connecting to NATS")?
    else {
        return Ok(());
    };
    let replicas = nats.streams.replicas;
    let marks = StateBucket::open(
        &bus.js,
        &format!("{}_SENT", config.state_bucket),
        "regionguard notifier: what each sink took",
        replicas,
    )
    .await?;
    let firing_bucket = StateBucket::open(
        &bus.js,
        &config.state_bucket,
        "regionguard notifier: alerts firing in Alertmanager",
        replicas,
    )
    .await?;
    let (gave_up_tx, gave_up_rx) = mpsc::channel(64);
    let shared = Arc::new(Shared {
        marks,
        gave_up: gave_up_tx,
    });
    let mut queues = Vec::new();
    for s in &sinks {
        let (tx, rx) = mpsc::channel(s.config.queue);
        // Alerts firing in Alertmanager, kept to send again: `<sink>.<hash>`.
        let firing = Typed::<serde_json::Value>::new(firing_bucket.clone(), &s.config.name);
        let kept: BTreeMap<String, serde_json::Value> = firing.load().await?.into_iter().collect();
        tracing::info!(sink = %s.config.name, kind = s.config.kind.as_str(), min_severity = %s.config.min_severity, sources = ?s.config.sources, firing = kept.len(), "sink ready");
        tokio::spawn(sink::work(
            s.clone(),
            rx,
            shared.clone(),
            (firing, kept),
            shutdown.clone(),
        ));
        queues.push((s.clone(), tx));
    }
    if sinks.is_empty() {
        tracing::warn!("no [[notifier.sinks]] configured: alerts are consumed and nothing is sent");
    }
    tokio::spawn(report_failures(bus.clone(), gave_up_rx, shutdown.clone()));

    let since = time::OffsetDateTime::now_utc() - LOOKBACK;
    let open = |stream: Stream, durable: &str, filter: String| {
        let mut spec = ConsumerSpec::new(bus.subjects.stream(stream), durable.to_owned(), filter);
        spec.deliver = DeliverPolicy::ByStartTime { start_time: since };
        spec.ack_wait = Duration::from_secs(30);
        spec.max_ack_pending = 1024;
        spec
    };
    let alerts_spec = open(Stream::Alerts, &config.durable, bus.subjects.alerts_all());
    let decisions_spec = open(
        Stream::Decisions,
        &config.decisions_durable,
        bus.subjects.failover(">"),
    );
    let (alerts_tx, mut alerts) = mpsc::channel::<Delivered<Alert>>(64);
    let (decisions_tx, mut decisions) = mpsc::channel::<Delivered<FailoverDecision>>(64);
    for (spec, feed) in [
        (alerts_spec, Feed::Alerts(alerts_tx)),
        (decisions_spec, Feed::Decisions(decisions_tx)),
    ] {
        let consumer = rg_bus::consume::durable(&bus.js, &spec).await?;
        tracing::info!(consumer = %spec.durable, filter = %spec.filter, "consuming");
        let dead = bus.dead_letter(&spec.durable);
        let token = shutdown.clone();
        tokio::spawn(async move {
            let ended = match feed {
                Feed::Alerts(tx) => rg_bus::consume::feed(consumer, dead, token, tx).await,
                Feed::Decisions(tx) => rg_bus::consume::feed(consumer, dead, token, tx).await,
            };
            if let Err(e) = ended {
                tracing::error!(error = %e, "consumer stopped");
            }
        });
    }

    let own = bus.subjects.alert("notify", "");
    let dispatch = Dispatch {
        queues,
        marks: shared.clone(),
        shutdown: shutdown.clone(),
    };
    loop {
        let (notice, pending, stream, seq) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(d) = alerts.recv() => {
                if d.pending.subject().starts_with(&own) {
                    d.pending.ack().await; // our own failure notices
                    continue;
                }
                (Notice::from_alert(&d.message, &config.dashboard_url), d.pending, "RG_ALERTS", d.delivery.stream_sequence)
            }
            Some(d) = decisions.recv() => {
                if !config.failover_phases.iter().any(|p| p == d.message.phase().token()) {
                    d.pending.ack().await;
                    continue;
                }
                (Notice::from_failover(&d.message, &config.dashboard_url), d.pending, "RG_DECISIONS", d.delivery.stream_sequence)
            }
            else => break,
        };
        if !dispatch.send(notice, pending, stream, seq).await {
            break;
        }
    }
    Ok(())
}

enum Feed {
    Alerts(mpsc::Sender<Delivered<Alert>>),
    Decisions(mpsc::Sender<Delivered<FailoverDecision>>),
}

struct Dispatch {
    queues: Vec<(Arc<Sink>, mpsc::Sender<Job>)>,
    marks: Arc<Shared>,
    shutdown: CancellationToken,
}

impl Dispatch {
    /// Queues `notice` for every sink that wants it and has not taken it
    /// yet, and acks `pending` once they all are done. False on shutdown.
    async fn send(&self, notice: Notice, pending: Pending, stream: &str, seq: u64) -> bool {
        let notice = Arc::new(notice);
        let origin = format!("{stream}#{seq}");
        let mut waits = Vec::new();
        for (sink, queue) in &self.queues {
            if !sink.wants(&notice) {
                continue;
            }
            let mark = format!("{}.{stream}.{seq}", sink.config.name);
            match self.marks.marks.entry(&mark).await {
                Ok(Some(_)) => {
                    telemetry::already_sent(&sink.config.name);
                    tracing::info!(sink = %sink.config.name, id = %notice.id, "taken before a restart; not sent again");
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    // Cannot tell whether it was sent: ask again later.
                    tracing::warn!(error = %e, "reading the delivery marks failed; redelivery requested");
                    pending.nak(Duration::from_secs(2)).await;
                    return true;
                }
            }
            let (done, wait) = oneshot::channel();
            let job = Job {
                notice: notice.clone(),
                mark,
                origin: origin.clone(),
                done,
            };
            telemetry::queued(&sink.config.name, sink.config.queue - queue.capacity());
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return false,
                sent = queue.send(job) => if sent.is_err() { return false },
            }
            waits.push(wait);
        }
        tokio::spawn(ack_when_done(pending, waits));
        true
    }
}

/// Acks once every sink reported; keeps the message in progress until
/// then. A sink that stopped (shutdown) leaves it unacked: it comes again.
async fn ack_when_done(pending: Pending, waits: Vec<oneshot::Receiver<()>>) {
    let all = futures::future::join_all(waits);
    tokio::pin!(all);
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.tick().await;
    loop {
        tokio::select! {
            results = &mut all => {
                if results.iter().all(Result::is_ok) {
                    pending.ack().await;
                }
                return;
            }
            _ = tick.tick() => pending.progress().await,
        }
    }
}

/// Publishes each given-up notice on `<p>.alerts.notify.failed`, retrying
/// until stored or shutdown.
async fn report_failures(bus: Bus, mut rx: mpsc::Receiver<GaveUp>, shutdown: CancellationToken) {
    let subject = bus.subjects.alert("notify", "failed");
    while let Some(g) = rx.recv().await {
        let now = rg_bus::unix_now_ms();
        let alert = Alert {
            id: format!("notify:{}:{}", g.sink, g.origin),
            source: AlertSource::Notifier as i32,
            severity: severity_of(g.notice.severity) as i32,
            state: AlertState::Firing as i32,
            region: g.notice.region.clone(),
            service: g.notice.service.clone(),
            endpoint: g.notice.endpoint.clone(),
            summary: format!(
                "sink {} ({}) did not take {} after {} attempts: {} — notice: {}",
                g.sink,
                g.kind.as_str(),
                g.notice.id,
                g.attempts,
                g.error,
                g.notice.summary
            ),
            started_at_unix_ms: now,
            emitted_at_unix_ms: now,
            recommended_actions: vec![
                format!(
                    "check sink {} (its address, credentials, and whether it is up)",
                    g.sink
                ),
                format!("the original message is {} in the stream", g.origin),
            ],
            ..Default::default()
        };
        match bus
            .publisher
            .publish_until_stored(subject.clone(), &alert, Some(&alert.id), &shutdown)
            .await
        {
            None => {
                tracing::error!(id = %alert.id, "shutting down before the failure notice was stored; it is lost");
                return;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::error!(id = %alert.id, error = %e, "failure notice cannot be published; dropped")
            }
        }
    }
}

fn severity_of(name: &str) -> Severity {
    rg_proto::domain::Severity::from_name(name).map_or(Severity::Info, |s| s.to_wire())
}
