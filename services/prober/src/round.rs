//! One probe round: every endpoint through every resolver, each result
//! classified and turned into a `HealthEvent` for the publisher.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use prost::Message;
use rg_bus::Subjects;
use rg_proto::domain::{LookupError, Status};
use rg_proto::v1;
use tokio::time::Instant;

use crate::adaptive::{AdaptiveHistory, Judgement};
use crate::config::{Plan, Resolver};
use crate::endpoints::Endpoint;
use crate::lookup::{LookupEngine, LookupOutcome, PreparedQuery};
use crate::publish::{EncodedEvent, EventBuffer};
use crate::telemetry;

/// An endpoint ready to probe: its query encoded, its subject formatted.
struct Target {
    endpoint: Endpoint,
    query: PreparedQuery,
    subject: String,
}

/// A resolver with its engine.
struct Path {
    label: String,
    engine: LookupEngine,
}

/// Why a lookup was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// The round's lookup.
    Scheduled,
    /// A re-probe of a confirmation burst.
    Confirmation,
}

/// What a round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundSummary {
    /// Lookups made.
    pub lookups: usize,
    /// How many were critical.
    pub critical: usize,
}

/// A prober instance: its plan, its sockets and its event counter.
pub struct Prober {
    plan: Plan,
    targets: Vec<Target>,
    paths: Vec<Path>,
    buffer: Arc<EventBuffer>,
    sequence: AtomicU64,
    last_status: Mutex<HashMap<(usize, usize), Status>>,
    /// The newest round each (target, path) ran a burst for: one burst per
    /// round, however many reasons to confirm there are (its own failure,
    /// the same lookup still outstanding past the critical threshold, a
    /// peer's request).
    bursts: Mutex<HashMap<(usize, usize), u64>>,
    /// The round each target last asked the peers about.
    asked: Mutex<HashMap<usize, u64>>,
    /// Where requests to the region's other vantage points go.
    peers: std::sync::OnceLock<tokio::sync::mpsc::Sender<v1::ConfirmRequest>>,
    /// Each (target, path)'s latency history, with adaptive warnings on.
    adaptive: Option<AdaptiveHistory>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("region", &self.plan.region)
            .field("vantage", &self.plan.vantage)
            .field("endpoints", &self.targets.len())
            .field("resolvers", &self.paths.len())
            .finish()
    }
}

/// The prober could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A socket towards a resolver could not be opened.
    #[error("opening UDP sockets towards resolver {resolver}: {source}")]
    Socket {
        /// The resolver.
        resolver: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An endpoint name cannot be encoded in a query.
    #[error(transparent)]
    Encode(#[from] crate::lookup::EncodeError),
}

impl Prober {
    /// Opens the sockets and encodes the queries of `plan`. Events go to
    /// `buffer`, on subjects from `subjects`.
    pub async fn new(
        plan: Plan,
        subjects: &Subjects,
        buffer: Arc<EventBuffer>,
    ) -> Result<Self, SetupError> {
        let mut targets = Vec::with_capacity(plan.endpoints.len());
        for endpoint in &plan.endpoints {
            targets.push(Target {
                query: PreparedQuery::new(&endpoint.name, plan.query)?,
                subject: subjects.health(endpoint.region.as_str(), endpoint.service.as_str()),
                endpoint: endpoint.clone(),
            });
        }
        let mut paths = Vec::with_capacity(plan.resolvers.len());
        for resolver in &plan.resolvers {
            let engine = LookupEngine::new(resolver.addr, plan.sockets_per_resolver)
                .await
                .map_err(|source| SetupError::Socket {
                    resolver: resolver.label(),
                    source,
                })?;
            paths.push(Path {
                label: resolver.label(),
                engine,
            });
        }
        let start_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        let adaptive = plan
            .adaptive
            .enabled
            .then(|| AdaptiveHistory::new(plan.adaptive.clone(), targets.len() * paths.len()));
        Ok(Self {
            adaptive,
            plan,
            targets,
            paths,
            buffer,
            // Sequences start at the start time in microseconds, so they keep
            // increasing across restarts of a vantage and
            // `<vantage>:<sequence>` stays a unique message id.
            sequence: AtomicU64::new(start_us),
            last_status: Mutex::new(HashMap::new()),
            bursts: Mutex::new(HashMap::new()),
            asked: Mutex::new(HashMap::new()),
            peers: std::sync::OnceLock::new(),
        })
    }

    /// The plan it runs.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Lookups per round: endpoints × resolvers.
    pub fn lookups_per_round(&self) -> usize {
        self.targets.len() * self.paths.len()
    }

    /// The resolvers, as labelled in events.
    pub fn resolvers(&self) -> Vec<Resolver> {
        self.plan.resolvers.clone()
    }

    /// Runs one round: every endpoint through every resolver, at most
    /// `concurrency` lookups at once; each result is published. A lookup
    /// that is not healthy is confirmed (see [`Prober::probe_watched`]).
    pub async fn round(self: &Arc<Self>, round_id: u64) -> RoundSummary {
        let started = Instant::now();
        let critical = AtomicUsize::new(0);
        let pairs =
            (0..self.targets.len()).flat_map(|t| (0..self.paths.len()).map(move |p| (t, p)));
        futures::stream::iter(pairs)
            .for_each_concurrent(self.plan.concurrency, |(t, p)| {
                let critical = &critical;
                async move {
                    if self.probe_watched(t, p, round_id).await == Status::Critical {
                        critical.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .await;
        let summary = RoundSummary {
            lookups: self.lookups_per_round(),
            critical: critical.into_inner(),
        };
        telemetry::round_done(
            round_id,
            summary.lookups,
            summary.critical,
            started.elapsed(),
        );
        summary
    }

    /// Probes target `t` through path `p` once, publishes the event, and
    /// confirms what is not healthy: a burst of re-probes in the
    /// background, and a request to the region's other vantage points.
    ///
    /// A lookup still unanswered when it passes the endpoint's critical
    /// threshold is critical whatever comes back, so its confirmation
    /// starts then, not when the lookup times out: a DynamoDB timeout is
    /// confirmed about one timeout after the lookup was sent instead of
    /// two.
    pub async fn probe_watched(self: &Arc<Self>, t: usize, p: usize, round_id: u64) -> Status {
        let lookup = self.probe(t, p, round_id);
        let status = match self.critical_after(t) {
            None => lookup.await,
            Some(after) => {
                tokio::pin!(lookup);
                tokio::select! {
                    status = &mut lookup => status,
                    () = tokio::time::sleep(after) => {
                        self.confirm(t, p, round_id, Status::Critical);
                        lookup.await
                    }
                }
            }
        };
        if status != Status::Healthy {
            self.confirm(t, p, round_id, status);
        }
        status
    }

    /// How long a lookup of target `t` may stay unanswered before it is
    /// critical whatever it answers; `None` when confirmation is off or
    /// the lookup times out first.
    fn critical_after(&self, t: usize) -> Option<Duration> {
        if self.plan.confirm.count == 0 {
            return None;
        }
        let after = self
            .plan
            .thresholds
            .critical_after(self.targets[t].endpoint.priority);
        (after < self.plan.timeout).then_some(after)
    }

    /// Confirms target `t` through path `p` in `round_id`: asks the peers
    /// (once per round) and starts a burst in the background (one per
    /// round), so a burst of slow lookups never holds the round past its
    /// slot.
    fn confirm(self: &Arc<Self>, t: usize, p: usize, round_id: u64, status: Status) {
        if self.plan.confirm.count == 0 {
            return;
        }
        self.ask_peers(t, round_id, status);
        let me = Arc::clone(self);
        tokio::spawn(async move { me.burst(t, p, round_id).await });
    }

    /// Probes target `t` through path `p` once and publishes the event.
    pub async fn probe(&self, t: usize, p: usize, round_id: u64) -> Status {
        self.probe_timed(t, p, round_id).await.0
    }

    /// As [`Prober::probe`], also returning the error kind and lookup time.
    pub async fn probe_timed(
        &self,
        t: usize,
        p: usize,
        round_id: u64,
    ) -> (Status, Option<LookupError>, Duration) {
        let (target, path) = (&self.targets[t], &self.paths[p]);
        let outcome = path.engine.lookup(&target.query, self.plan.timeout).await;
        let (error, took) = (outcome.error, outcome.response_time);
        (
            self.record(t, p, round_id, outcome, Probe::Scheduled),
            error,
            took,
        )
    }

    /// Sends requests to the region's other vantage points to `tx`
    /// (`lib.rs` publishes them on `<p>.confirm.<region>`).
    pub fn set_peers(&self, tx: tokio::sync::mpsc::Sender<v1::ConfirmRequest>) {
        let _first = self.peers.set(tx);
    }

    /// Asks the peers to confirm target `t`, once per round.
    fn ask_peers(&self, t: usize, round_id: u64, status: Status) {
        let Some(tx) = self.peers.get() else { return };
        {
            let mut asked = self
                .asked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if asked.insert(t, round_id) == Some(round_id) {
                return;
            }
        }
        let request = v1::ConfirmRequest {
            region: self.plan.region.to_string(),
            endpoint: self.targets[t].endpoint.name.clone(),
            round_id,
            vantage: self.plan.vantage.clone(),
            status: v1::Status::from(status) as i32,
        };
        if tx.try_send(request).is_err() {
            telemetry::confirm_request_dropped();
            // Not asked after all: the event must not say so, or consumers
            // would wait for bursts that never come.
            let mut asked = self
                .asked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if asked.get(&t) == Some(&round_id) {
                asked.remove(&t);
            }
        }
    }

    /// Whether the peers were asked about target `t` in `round_id`.
    fn peers_asked(&self, t: usize, round_id: u64) -> bool {
        self.peers.get().is_some()
            && self
                .asked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&t)
                == Some(&round_id)
    }

    /// A confirmation burst: target `t` through path `p`, `confirm.count`
    /// re-probes started `confirm.spacing` apart (the first at once; each
    /// waits for its own answer, not for the one before), each event marked
    /// `confirmation`. One burst per (target, path) and round: a second
    /// reason to confirm in the same round is served by the first burst.
    pub async fn burst(&self, t: usize, p: usize, round_id: u64) {
        {
            let mut bursts = self
                .bursts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if bursts.get(&(t, p)).is_some_and(|r| *r >= round_id) {
                return;
            }
            bursts.insert((t, p), round_id);
        }
        telemetry::burst();
        let spacing = self.plan.confirm.spacing;
        futures::future::join_all((0..self.plan.confirm.count).map(|k| async move {
            tokio::time::sleep(spacing * k).await;
            let outcome = self.paths[p]
                .engine
                .lookup(&self.targets[t].query, self.plan.timeout)
                .await;
            self.record(t, p, round_id, outcome, Probe::Confirmation);
        }))
        .await;
    }

    /// Bursts for an endpoint another vantage point asks about, through
    /// every resolver at once. False when this prober does not probe it.
    pub async fn confirm_for_peer(&self, request: &v1::ConfirmRequest) -> bool {
        let Some(t) = self
            .targets
            .iter()
            .position(|x| x.endpoint.name == request.endpoint)
        else {
            return false;
        };
        futures::future::join_all(
            (0..self.paths.len()).map(|p| self.burst(t, p, request.round_id)),
        )
        .await;
        true
    }

    /// Number of targets and paths (for load generators).
    pub fn shape(&self) -> (usize, usize) {
        (self.targets.len(), self.paths.len())
    }

    fn record(
        &self,
        t: usize,
        p: usize,
        round_id: u64,
        outcome: LookupOutcome,
        probe: Probe,
    ) -> Status {
        let (target, path) = (&self.targets[t], &self.paths[p]);
        let e = &target.endpoint;
        let thresholds = &self.plan.thresholds;
        let (status, baseline) = match &self.adaptive {
            None => (
                thresholds.classify(e.priority, outcome.error, outcome.response_time),
                None,
            ),
            Some(adaptive) => {
                let i = t * self.paths.len() + p;
                let judgement = if outcome.error.is_none() {
                    adaptive.observe(i, outcome.sent_at_unix_ms, outcome.response_time)
                } else {
                    Judgement {
                        baseline: adaptive.baseline(i, outcome.sent_at_unix_ms),
                        above: false,
                    }
                };
                let fixed = thresholds.classify(e.priority, outcome.error, outcome.response_time);
                let status = thresholds.classify_adaptive(
                    e.priority,
                    outcome.error,
                    outcome.response_time,
                    judgement,
                );
                if status != fixed {
                    telemetry::adaptive_override(&e.region, &e.service, fixed, status);
                }
                (status, judgement.baseline)
            }
        };
        telemetry::lookup(
            &e.region,
            &e.service,
            status,
            outcome.error,
            outcome.response_time,
        );
        self.note_change(t, p, status, &outcome);
        let confirmation = probe == Probe::Confirmation;
        // A scheduled probe that is not healthy asks the peers before its
        // event goes out, so the event can say so.
        if !confirmation && status != Status::Healthy && self.plan.confirm.count > 0 {
            self.ask_peers(t, round_id, status);
        }
        let peers_asked =
            !confirmation && status != Status::Healthy && self.peers_asked(t, round_id);
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let event = v1::HealthEvent {
            region: e.region.to_string(),
            service: e.service.to_string(),
            endpoint: e.name.clone(),
            vantage: self.plan.vantage.clone(),
            round_id,
            observed_at_unix_ms: outcome.sent_at_unix_ms,
            resolver: path.label.clone(),
            query_type: self.plan.query.to_wire() as i32,
            success: outcome.error.is_none(),
            rcode: u32::from(outcome.rcode),
            answer_count: outcome.answers.len() as u32,
            error_kind: v1::ErrorKind::from(outcome.error) as i32,
            response_time_us: outcome.response_time.as_micros() as u64,
            status: v1::Status::from(status) as i32,
            priority: v1::Priority::from(e.priority) as i32,
            probe_kind: v1::ProbeKind::Dns as i32,
            confirmation,
            answers: outcome.answers,
            sequence,
            baseline_us: baseline.map_or(0, |d| d.as_micros() as u64),
            burst_size: self.plan.confirm.count,
            peers_asked,
            round_lookups: u32::try_from(self.lookups_per_round()).unwrap_or(u32::MAX),
        };
        self.buffer.push(EncodedEvent {
            subject: target.subject.clone(),
            payload: event.encode_to_vec().into(),
            msg_id: format!("{}:{sequence}", self.plan.vantage),
        });
        status
    }

    /// Logs an endpoint's status when it changes (not every lookup).
    fn note_change(&self, t: usize, p: usize, status: Status, outcome: &LookupOutcome) {
        let previous = {
            let mut last = self
                .last_status
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            last.insert((t, p), status)
        };
        if previous == Some(status) {
            return;
        }
        let e = &self.targets[t].endpoint;
        let resolver = &self.paths[p].label;
        let took_ms = outcome.response_time.as_secs_f64() * 1000.0;
        let error = outcome.error.map_or("none", |e| e.as_str());
        match previous {
            None if status == Status::Healthy => {
                tracing::debug!(endpoint = %e.name, %resolver, took_ms, "healthy")
            }
            None => {
                tracing::info!(endpoint = %e.name, %resolver, %status, error, took_ms, detail = outcome.detail.as_deref().unwrap_or(""), "endpoint is not healthy")
            }
            Some(before) => tracing::info!(
                endpoint = %e.name,
                %resolver,
                from = %before,
                to = %status,
                error,
                took_ms,
                detail = outcome.detail.as_deref().unwrap_or(""),
                "endpoint status changed"
            ),
        }
    }
}
