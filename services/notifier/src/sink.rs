//! One sink: its HTTP client, its bounded queue and the worker that
//! delivers each notice with retries, in order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use rg_bus::state::{StateBucket, Typed};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::{SinkConfig, SinkKind};
use crate::notice::Notice;
use crate::telemetry;

/// A notice for one sink, and how to report it done.
#[derive(Debug)]
pub(crate) struct Job {
    /// What to send.
    pub(crate) notice: Arc<Notice>,
    /// Key of the "delivered" mark in the marks bucket.
    pub(crate) mark: String,
    /// Where it came from (`RG_ALERTS#123`), for the failure notice.
    pub(crate) origin: String,
    /// Sent once the sink took it or gave up; dropped (unsent) on
    /// shutdown, so the message is not acked and comes again.
    pub(crate) done: oneshot::Sender<()>,
}

/// What one attempt gave.
#[derive(Debug)]
enum Attempt {
    /// Worth trying again (connection refused, timeout, 5xx, 429, 408).
    Retry(String),
    /// Refused for good (another 4xx): retrying will not help.
    Refused(String),
}

/// A configured sink, ready to post.
#[derive(Debug)]
pub(crate) struct Sink {
    pub(crate) config: SinkConfig,
    url: String,
    routing_key: String,
    http: reqwest::Client,
}

/// A notice a sink gave up on.
#[derive(Debug)]
pub(crate) struct GaveUp {
    pub(crate) sink: String,
    pub(crate) kind: SinkKind,
    pub(crate) notice: Arc<Notice>,
    pub(crate) origin: String,
    pub(crate) attempts: u32,
    pub(crate) error: String,
}

impl Sink {
    /// From config (validated: the URL and key resolve).
    pub(crate) fn new(config: SinkConfig) -> anyhow::Result<Self> {
        let url = config
            .resolved_url()
            .map_err(|e| anyhow::anyhow!("sink {}: {e}", config.name))?;
        let url = match config.kind {
            SinkKind::Alertmanager => format!("{}/api/v2/alerts", url.trim_end_matches('/')),
            _ => url,
        };
        let routing_key = config
            .resolved_routing_key()
            .map_err(|e| anyhow::anyhow!("sink {}: {e}", config.name))?
            .unwrap_or_default();
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("regionguard-notifier/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            config,
            url,
            routing_key,
            http,
        })
    }

    /// Whether this sink takes the notice (source and severity).
    pub(crate) fn wants(&self, n: &Notice) -> bool {
        self.config.sources.iter().any(|s| s == n.source) && n.rank() >= self.config.min_rank()
    }

    fn hold_ms(&self) -> i64 {
        (self.config.resend_interval * 4).as_millis() as i64
    }

    fn body(&self, n: &Notice, now_ms: i64) -> Value {
        match self.config.kind {
            SinkKind::Alertmanager => Value::Array(vec![n.alertmanager(now_ms, self.hold_ms())]),
            SinkKind::Webhook => n.webhook(),
            SinkKind::Slack => n.slack(),
            SinkKind::Pagerduty => n.pagerduty(&self.routing_key),
        }
    }

    /// One POST. Errors never carry the URL (it may hold a secret).
    async fn post(&self, body: &Value) -> Result<(), Attempt> {
        let sent = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).unwrap_or_default())
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return Err(Attempt::Retry(e.without_url().to_string())),
        };
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let why = format!(
            "HTTP {status}: {}",
            text.chars().take(200).collect::<String>().trim()
        );
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            Err(Attempt::Retry(why))
        } else {
            Err(Attempt::Refused(why))
        }
    }
}

/// What the workers share.
pub(crate) struct Shared {
    /// Marks of what each sink took: `<sink>.<stream>.<seq>`.
    pub(crate) marks: StateBucket,
    /// Where given-up notices go.
    pub(crate) gave_up: mpsc::Sender<GaveUp>,
}

/// Delivers the sink's jobs in order until `shutdown`. For Alertmanager,
/// also sends every firing alert again each `resend_interval`.
pub(crate) async fn work(
    sink: Arc<Sink>,
    mut jobs: mpsc::Receiver<Job>,
    shared: Arc<Shared>,
    (store, mut firing): (Typed<Value>, BTreeMap<String, Value>),
    shutdown: CancellationToken,
) {
    let name = sink.config.name.clone();
    let mut resend = tokio::time::interval(sink.config.resend_interval);
    resend.tick().await;
    loop {
        let job = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            job = jobs.recv() => match job {
                Some(job) => job,
                None => return,
            },
            _ = resend.tick(), if sink.config.kind == SinkKind::Alertmanager && !firing.is_empty() => {
                let now = rg_bus::unix_now_ms();
                let hold = sink.hold_ms();
                let alerts: Vec<Value> = firing
                    .values()
                    .cloned()
                    .map(|mut a| {
                        a["endsAt"] = crate::notice::rfc3339(now + hold).into();
                        a
                    })
                    .collect();
                match sink.post(&Value::Array(alerts)).await {
                    Ok(()) => tracing::debug!(sink = %name, alerts = firing.len(), "firing alerts sent again"),
                    Err(Attempt::Retry(e) | Attempt::Refused(e)) => {
                        tracing::warn!(sink = %name, error = %e, "sending firing alerts again failed; next try in resend_interval");
                    }
                }
                continue;
            }
        };
        let Some(outcome) = deliver(&sink, &job, &shutdown).await else {
            return; // shutting down: the job's message comes again
        };
        match outcome {
            Ok(attempts) => {
                telemetry::delivered(&name, sink.config.kind, attempts);
                tracing::info!(sink = %name, id = %job.notice.id, severity = job.notice.severity, resolved = job.notice.resolved, attempts, "notice delivered");
                if let Err(e) = shared.marks.put(&job.mark, Bytes::from_static(b"1")).await {
                    tracing::warn!(sink = %name, error = %e, "could not record the delivery; a restart may send it again");
                }
                if sink.config.kind == SinkKind::Alertmanager {
                    let key = format!("{:016x}", fnv1a(&job.notice.id));
                    if job.notice.resolved {
                        firing.remove(&key);
                        if let Err(e) = store.delete(&key).await {
                            tracing::warn!(sink = %name, error = %e, "could not forget a resolved alert; a restart may send it again until Alertmanager's hold ends");
                        }
                    } else if job.notice.source != "failover" {
                        // Alerts are kept firing until resolved; a failover
                        // notice is an event and lapses after the hold.
                        let alert = job.notice.alertmanager(0, 0);
                        if let Err(e) = store.put(&key, &alert).await {
                            tracing::warn!(sink = %name, error = %e, "could not keep a firing alert; a restart will not send it again");
                        }
                        firing.insert(key, alert);
                    }
                }
            }
            Err((attempts, error)) => {
                telemetry::gave_up(&name, sink.config.kind);
                tracing::error!(sink = %name, id = %job.notice.id, attempts, error = %error, "notice not delivered: giving up");
                let g = GaveUp {
                    sink: name.clone(),
                    kind: sink.config.kind,
                    notice: job.notice.clone(),
                    origin: job.origin.clone(),
                    attempts,
                    error,
                };
                if shared.gave_up.send(g).await.is_err() {
                    return;
                }
            }
        }
        let _told = job.done.send(());
    }
}

/// Posts one job until it is taken, refused, or `give_up_after` passes.
/// None on shutdown.
async fn deliver(
    sink: &Sink,
    job: &Job,
    shutdown: &CancellationToken,
) -> Option<Result<u32, (u32, String)>> {
    let began = Instant::now();
    let mut backoff = rg_bus::backoff::Backoff::new(sink.config.backoff, sink.config.max_backoff);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let body = sink.body(&job.notice, rg_bus::unix_now_ms());
        let error = match sink.post(&body).await {
            Ok(()) => return Some(Ok(attempts)),
            Err(Attempt::Refused(e)) => return Some(Err((attempts, e))),
            Err(Attempt::Retry(e)) => e,
        };
        telemetry::failed_attempt(&sink.config.name, sink.config.kind);
        if began.elapsed() + backoff.delay() > sink.config.give_up_after {
            return Some(Err((
                attempts,
                format!("{error} (still failing after {:?})", began.elapsed()),
            )));
        }
        tracing::warn!(sink = %sink.config.name, id = %job.notice.id, attempts, retry_in = ?backoff.delay(), error = %error, "sink did not take the notice; retrying");
        if !backoff.wait(shutdown).await {
            return None;
        }
    }
}

/// FNV-1a, 64 bits: a stable short key for an alert id.
pub(crate) fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
