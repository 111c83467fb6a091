//! The failover manager: from a failover request to traffic in a healthy
//! region, verified, with automatic rollback. The most careful code in
//! regionguard: it changes production.
//!
//! - Consumes: `<p>.decisions.failover.requested` and `.approved`
//!   (RG_DECISIONS) with the durable consumers `failover` and
//!   `failover-approvals` (replicas share them, so one request goes to one
//!   replica); `<p>.health.>` with an ordered consumer, for each region's
//!   health score.
//! - Publishes: every phase on `<p>.decisions.failover.<phase>` (planned,
//!   step, completed, failed, rolled_back): the audit trail.
//! - Guarantees: a plan lists every change (before → after) before any is
//!   made; `plan` (the default) changes nothing; one failover at a time
//!   across replicas (a compare-and-set lock with a lease in the
//!   `RG_FAILOVER` bucket); every step is journaled there before and after
//!   it runs, so a replica killed mid-way is rolled back by the next one to
//!   start; a failed step undoes the steps before it, in reverse order.
//!   In-flight on shutdown: the step running finishes; the failover is then
//!   left journaled as executing and rolled back at the next start.
//!
//! # Layout
//! - [`config`] — the `[failover]` section, resources per region.
//! - [`health`] — region scores and candidates.
//! - [`plan`] — the steps, each with the state it replaces.
//! - [`aws`] — Route 53, CloudFront, Auto Scaling, ECS through the SDK.
//! - [`execute`] — steps, verification, rollback.
//! - [`resolve`] — the DNS lookup verification makes.
//! - [`journal`] — the lock and the journal in JetStream KV.
//! - `switches` — the data-plane routing switches' HTTP endpoint.
//! - [`telemetry`] — metrics.
#![warn(missing_docs)]

pub mod aws;
pub mod config;
pub mod execute;
pub mod health;
pub mod journal;
pub mod plan;
pub mod resolve;
mod switches;
pub mod telemetry;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use async_nats::jetstream::consumer::DeliverPolicy;
use rg_bus::consume::{ConsumerSpec, Outcome};
use rg_bus::tail::{self, Event, From};
use rg_bus::{Bus, BusError, NatsConfig, Stream};
use rg_proto::domain::Observation;
use rg_proto::v1::{FailoverDecision, FailoverPhase, FailoverPlan, HealthEvent};
use tokio_util::sync::CancellationToken;

pub use config::{Config, Mode};
use health::RegionHealth;
use journal::{Journal, Record};

/// Runs the failover service until `shutdown`.
pub async fn run(
    config: Config,
    nats: NatsConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    telemetry::describe();
    let replica = config.replica.clone().unwrap_or_else(default_replica);
    let bus = match Bus::connect(&nats, "regionguard-failover", &shutdown).await {
        Ok(bus) => bus,
        Err(BusError::Cancelled) => return Ok(()),
        Err(e) => return Err(e).context("connecting to NATS"),
    };
    let journal = Journal::open(
        &bus.js,
        &config.state_bucket,
        nats.streams.replicas,
        &replica,
    )
    .await?;
    let aws = match config.mode {
        Mode::Observe => None,
        _ => Some(Arc::new(aws::Aws::new(&config.aws).await)),
    };
    tracing::info!(mode = ?config.mode, %replica, endpoint = config.aws.endpoint_url.as_deref().unwrap_or("AWS"), regions = ?config.declared_regions(), "failover manager starting");

    let health = Arc::new(Mutex::new(RegionHealth::default()));
    let since = SystemTime::now()
        .checked_sub(config.health_window)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut events = tail::spawn::<HealthEvent>(
        bus.js.clone(),
        bus.subjects.stream(Stream::Health),
        bus.subjects.health_all(),
        From::Time(since),
        "failover",
        shutdown.clone(),
    );
    let feed = health.clone();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if let Event::Message(m) = e {
                if let Ok(o) = Observation::try_from(&m.message) {
                    feed.lock().unwrap_or_else(|p| p.into_inner()).observe(&o);
                }
            }
        }
    });

    let service = Arc::new(Service {
        config,
        bus,
        journal,
        aws,
        health,
        replica,
        shutdown: shutdown.clone(),
    });
    service.recover().await;
    if service.config.switches.enabled {
        let addr = service.config.switches.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the routing switches on {addr}"))?;
        let bound = listener.local_addr().unwrap_or(addr);
        tracing::info!(addr = %bound, "routing switches on http://{bound}/switch/<region> (200: take traffic, 503: drain)");
        tokio::spawn(switches::serve(listener, service.clone(), shutdown.clone()));
    }
    if !service.config.failback_after.is_zero() && service.config.mode != Mode::Observe {
        tokio::spawn(propose_failbacks(service.clone(), shutdown.clone()));
    }

    // Two consumers, one per phase acted on (the rest of the trail is
    // never delivered): approvals first, so that once the requests'
    // consumer (the one `regionguard up` waits for) exists, both do.
    let approvals = service
        .consume(
            format!("{}-approvals", service.config.durable),
            FailoverPhase::Approved,
            shutdown.clone(),
        )
        .await?;
    let requests = service
        .consume(
            service.config.durable.clone(),
            FailoverPhase::Requested,
            shutdown.clone(),
        )
        .await?;
    // Both in this task (not spawned): whatever stops this task stops
    // them, mid-step if need be, as a killed process would.
    let (a, r) = tokio::join!(approvals, requests);
    a.context("consuming approvals")?;
    r.context("consuming requests")?;
    Ok(())
}

/// Proposes the failback of each completed failover once its failed
/// region has been healthy (score at least `min_target_score`) for
/// `failback_after` without a break. The request goes through the normal
/// path: planned, then executed once approved (or at once in auto mode
/// with `failback_auto`).
async fn propose_failbacks(service: Arc<Service>, shutdown: CancellationToken) {
    let mut healthy_since: std::collections::HashMap<String, i64> = Default::default();
    let mut proposed = std::collections::HashSet::new();
    let tick = (service.config.failback_after / 4)
        .clamp(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let Ok(completed) = service.journal.completed().await else {
            continue;
        };
        let now = rg_bus::unix_now_ms();
        let since = now - service.config.health_window.as_millis() as i64;
        for d in completed {
            let id = format!("{}:failback", d.id);
            if proposed.contains(&id) {
                continue;
            }
            let score = service
                .health
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .score(&d.from_region, since, &service.config.criticality);
            let healthy = score.is_some_and(|s| s.score >= service.config.min_target_score);
            if !healthy {
                healthy_since.remove(&d.id);
                continue;
            }
            let first = *healthy_since.entry(d.id.clone()).or_insert(now);
            if now - first < service.config.failback_after.as_millis() as i64 {
                continue;
            }
            if matches!(service.journal.get(&id).await, Ok(Some(_))) {
                proposed.insert(id);
                continue;
            }
            let mut request = FailoverDecision {
                id: id.clone(),
                from_region: d.to_region.clone(),
                to_region: d.from_region.clone(),
                reason: format!(
                    "{} has been healthy for {:?} since failover {}",
                    d.from_region, service.config.failback_after, d.id
                ),
                failback: true,
                ..Default::default()
            };
            request.set_phase(FailoverPhase::Requested);
            tracing::info!(failover = %d.id, region = %d.from_region, "proposing a failback");
            service.publish(request, FailoverPhase::Requested).await;
            proposed.insert(id);
        }
    }
}

fn default_replica() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    format!(
        "{}-{}",
        if host.is_empty() { "failover" } else { &host },
        std::process::id()
    )
}

struct Service {
    config: Config,
    bus: Bus,
    journal: Journal,
    aws: Option<Arc<aws::Aws>>,
    health: Arc<Mutex<RegionHealth>>,
    replica: String,
    shutdown: CancellationToken,
}

impl Service {
    /// Opens the durable consumer of one phase's subject and returns the
    /// task that handles it until `shutdown`. Replicas share it, so each
    /// message goes to one replica; one at a time per consumer (a replica
    /// executing a failover keeps its message with in-progress acks).
    async fn consume(
        self: &Arc<Self>,
        durable: String,
        phase: FailoverPhase,
        shutdown: CancellationToken,
    ) -> anyhow::Result<impl std::future::Future<Output = Result<(), rg_bus::consume::ConsumeError>>>
    {
        let mut spec = ConsumerSpec::new(
            self.bus.subjects.stream(Stream::Decisions),
            durable,
            self.bus.subjects.failover(phase.token()),
        );
        // A new consumer acts on what is published from now on, not on
        // the history.
        spec.deliver = DeliverPolicy::New;
        spec.max_ack_pending = 1;
        // Short: a replica that dies holding a message gives it up within 30 s.
        spec.ack_wait = Duration::from_secs(30);
        let consumer = rg_bus::consume::durable(&self.bus.js, &spec).await?;
        tracing::info!(consumer = %spec.durable, filter = %spec.filter, "consuming failover decisions");
        let dead = self.bus.dead_letter(&spec.durable);
        let s = self.clone();
        // Boxed: a failover's future is large (the AWS SDK's), and two of
        // them inline would overflow a thread's stack in a debug build.
        Ok(Box::pin(rg_bus::consume::run::<FailoverDecision, _, _>(
            consumer,
            dead,
            shutdown,
            move |d, _| {
                let s = s.clone();
                Box::pin(async move { s.handle(d).await })
            },
        )))
    }

    fn actor(&self) -> String {
        format!("failover:{}", self.replica)
    }

    /// Publishes a phase (waits for its PubAck). The message id makes a
    /// phase published again after a restart a duplicate JetStream drops.
    async fn publish(&self, mut d: FailoverDecision, phase: FailoverPhase) -> FailoverDecision {
        d.set_phase(phase);
        d.actor = self.actor();
        d.at_unix_ms = rg_bus::unix_now_ms();
        d.set_mode(self.config.mode.as_proto());
        let subject = self.bus.subjects.failover(phase.token());
        let msg_id = format!(
            "{}:{}:{}:{}",
            d.id,
            phase.token(),
            d.step_index,
            d.plan
                .as_ref()
                .map_or(0, |p| p.steps.iter().filter(|s| s.status != 1).count())
        );
        let mut backoff = Duration::from_millis(200);
        loop {
            match self
                .bus
                .publisher
                .publish(subject.clone(), &d, Some(&msg_id))
                .await
            {
                Ok(_) => {
                    telemetry::phase(phase);
                    break;
                }
                Err(e) if self.shutdown.is_cancelled() => {
                    // The journal still holds the state; the next start
                    // recovers from it.
                    tracing::error!(%subject, failover = %d.id, error = %e, "failover phase not stored and shutting down: the journal keeps the state");
                    telemetry::unpublished();
                    break;
                }
                Err(e) => {
                    tracing::warn!(%subject, error = %e, retry_in = ?backoff, "failover phase not stored; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::info!(failover = %d.id, phase = phase.token(), from = %d.from_region, to = %d.to_region, error = %d.error, "failover phase");
        d
    }

    async fn handle(&self, d: FailoverDecision) -> Outcome {
        match d.phase() {
            FailoverPhase::Requested => self.on_request(d).await,
            FailoverPhase::Approved => self.on_approval(d).await,
            // Not delivered by the consumers' filters.
            other => {
                tracing::debug!(failover = %d.id, phase = other.token(), "phase ignored");
                Outcome::Handled
            }
        }
    }

    async fn on_request(&self, request: FailoverDecision) -> Outcome {
        match self.journal.get(&request.id).await {
            Ok(Some(_)) => return Outcome::Handled, // handled before (a redelivery)
            Ok(None) => {}
            Err(e) => return Outcome::Transient(e.to_string()),
        }
        if self.config.mode == Mode::Observe {
            tracing::info!(failover = %request.id, from = %request.from_region, reason = %request.reason, "failover requested (observe mode: nothing planned)");
            let _saved = self.journal.put(&request.id, &Record::observed()).await;
            return Outcome::Handled;
        }
        // Cooldown per region.
        match self.journal.last_failover(&request.from_region).await {
            Ok(Some(at))
                if rg_bus::unix_now_ms() - at < self.config.cooldown.as_millis() as i64 =>
            {
                let mut refused = request.clone();
                refused.error = format!(
                    "cooldown: a failover from {} started {} s ago (cooldown {:?})",
                    request.from_region,
                    (rg_bus::unix_now_ms() - at) / 1000,
                    self.config.cooldown
                );
                self.publish(refused, FailoverPhase::Failed).await;
                let _saved = self.journal.put(&request.id, &Record::refused()).await;
                return Outcome::Handled;
            }
            Ok(_) => {}
            Err(e) => return Outcome::Transient(e.to_string()),
        }
        let planned = match self.plan(&request).await {
            Ok(d) => d,
            Err(message) => {
                let mut failed = request.clone();
                failed.error = format!("no plan: {message}");
                self.publish(failed, FailoverPhase::Failed).await;
                let _saved = self.journal.put(&request.id, &Record::refused()).await;
                return Outcome::Handled;
            }
        };
        let planned = self.publish(planned, FailoverPhase::Planned).await;
        if let Err(e) = self
            .journal
            .put(&planned.id, &Record::planned(&planned))
            .await
        {
            return Outcome::Transient(e.to_string());
        }
        if self.config.mode == Mode::Auto && planned.failback && !self.config.failback_auto {
            tracing::info!(failover = %planned.id, "failback planned: it waits for approval (failover.failback_auto = false)");
            return Outcome::Handled;
        }
        if self.config.mode == Mode::Auto {
            match self.journal.automated_within_hour().await {
                Ok(n) if n >= self.config.max_automated_per_hour => {
                    tracing::warn!(failover = %planned.id, limit = self.config.max_automated_per_hour, "velocity limit reached: this failover waits for approval");
                }
                Ok(_) => return self.execute(planned, true).await,
                Err(e) => return Outcome::Transient(e.to_string()),
            }
        }
        Outcome::Handled
    }

    async fn on_approval(&self, approval: FailoverDecision) -> Outcome {
        let record = match self.journal.get(&approval.id).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                tracing::warn!(failover = %approval.id, "approval of a failover this service never planned; ignored");
                return Outcome::Handled;
            }
            Err(e) => return Outcome::Transient(e.to_string()),
        };
        if !record.is_planned() {
            tracing::info!(failover = %approval.id, state = %record.state, "approval of a failover that is not waiting for one; ignored");
            return Outcome::Handled;
        }
        if self.config.mode != Mode::Approve && self.config.mode != Mode::Auto {
            tracing::info!(failover = %approval.id, mode = ?self.config.mode, "approved, but this service runs in plan mode: nothing is executed");
            return Outcome::Handled;
        }
        let Some(planned) = record.decision() else {
            return Outcome::Handled;
        };
        self.execute(planned, false).await
    }

    /// What AWS and the switches hold now, for a plan from `from` to `target`.
    async fn read_current(&self, from: &str, target: &str) -> Result<plan::Current, String> {
        let aws = self.aws.as_ref().ok_or("no AWS clients (observe mode)")?;
        let mut current = aws
            .read(&self.config, from, target)
            .await
            .map_err(|e| format!("reading the current state: {e}"))?;
        if self.config.switches.enabled {
            for region in [from, target] {
                let on = self
                    .journal
                    .switch(region)
                    .await
                    .map_err(|e| format!("reading the routing switches: {e}"))?;
                current.switches.insert(region.to_owned(), on);
            }
        }
        Ok(current)
    }

    /// The failback plan of the failover a failback request names.
    async fn plan_failback(&self, request: &FailoverDecision) -> Result<FailoverDecision, String> {
        let aws = self.aws.as_ref().ok_or("no AWS clients (observe mode)")?;
        let original = request.id.strip_suffix(":failback").unwrap_or(&request.id);
        let completed = self
            .journal
            .get(original)
            .await
            .map_err(|e| e.to_string())?
            .and_then(|r| r.decision())
            .ok_or_else(|| format!("no completed failover {original} to fail back"))?;
        let steps = completed.plan.clone().unwrap_or_default();
        let act = execute::Actuators {
            aws,
            journal: &self.journal,
        };
        let mut now = Vec::new();
        for (i, s) in steps.steps.iter().enumerate() {
            if let Ok(after) = plan::Change::from_json(&s.after) {
                if let Ok(current) = act.read_now(&after).await {
                    now.push((i, current));
                }
            }
        }
        let rationale = format!(
            "{} has been healthy for {:?}: traffic returns to it as before failover {original}",
            completed.from_region, self.config.failback_after
        );
        let plan =
            plan::failback(&steps, &now, Vec::new(), rationale).map_err(|e| e.to_string())?;
        Ok(FailoverDecision {
            from_region: completed.to_region.clone(),
            to_region: completed.from_region.clone(),
            plan: Some(plan),
            failback: true,
            error: String::new(),
            ..request.clone()
        })
    }

    /// Deep health, target, current state, plan.
    async fn plan(&self, request: &FailoverDecision) -> Result<FailoverDecision, String> {
        if request.failback {
            return self.plan_failback(request).await;
        }
        let aws = self.aws.as_ref().ok_or("no AWS clients (observe mode)")?;
        let declared = self.config.declared_regions();
        let mut regions = self
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .regions();
        regions.extend(declared.iter().cloned());
        let since = rg_bus::unix_now_ms() - self.config.health_window.as_millis() as i64;
        let mut candidates = self
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .candidates(
                &request.from_region,
                &regions,
                since,
                self.config.min_target_score,
                &self.config.criticality,
            );
        if !declared.is_empty() {
            for c in candidates
                .iter_mut()
                .filter(|c| c.eligible && !declared.contains(&c.region))
            {
                c.eligible = false;
                c.note = format!("{}; no resources are declared for it", c.note);
            }
        }
        // API checks in each eligible candidate: its declared capacity
        // exists and runs what it should now.
        for c in candidates.iter_mut().filter(|c| c.eligible) {
            let Some(res) = self.config.regions.get(&c.region) else {
                continue;
            };
            let mut groups = Vec::new();
            for g in &res.autoscaling_groups {
                let found = aws
                    .group(&c.region, g)
                    .await
                    .map_err(|e| format!("checking {} in {}: {e}", g, c.region))?;
                groups.push((
                    g.clone(),
                    found.map(|(_, _, desired, in_service)| (desired, in_service)),
                ));
            }
            let mut services = Vec::new();
            for svc in &res.ecs_services {
                let found = aws
                    .service(&c.region, &svc.cluster, &svc.service)
                    .await
                    .map_err(|e| {
                        format!(
                            "checking {}/{} in {}: {e}",
                            svc.cluster, svc.service, c.region
                        )
                    })?;
                services.push((format!("{}/{}", svc.cluster, svc.service), found));
            }
            match health::capacity_check(&groups, &services) {
                Ok(note) if !note.is_empty() => c.note = format!("{}; {note}", c.note),
                Ok(_) => {}
                Err(why) => {
                    c.eligible = false;
                    c.note = format!("{}; {why}", c.note);
                }
            }
        }
        {
            candidates.sort_by(|a, b| {
                b.eligible
                    .cmp(&a.eligible)
                    .then(b.health_score.total_cmp(&a.health_score))
            });
        }
        let (target, rationale) = plan::choose_target(&candidates).map_err(|e| e.to_string())?;
        let current = self.read_current(&request.from_region, &target).await?;
        let plan = plan::build(
            &self.config,
            &request.from_region,
            &target,
            &current,
            candidates,
            rationale,
        )
        .map_err(|e| e.to_string())?;
        Ok(FailoverDecision {
            to_region: target,
            plan: Some(plan),
            error: String::new(),
            ..request.clone()
        })
    }

    /// Takes the lock, re-checks that nothing changed since the plan, runs
    /// the steps, and reports the end.
    async fn execute(&self, planned: FailoverDecision, automated: bool) -> Outcome {
        let Some(aws) = self.aws.clone() else {
            return Outcome::Handled;
        };
        let lease = match self.journal.lock(&planned.id).await {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                telemetry::lock_busy();
                return Outcome::Transient("another failover holds the lock".into());
            }
            Err(e) => return Outcome::Transient(e.to_string()),
        };
        let calls_before = aws.calls();
        // The state each step replaces must still be what the plan says.
        let mut decision = planned.clone();
        let Some(mut plan) = decision.plan.take() else {
            return Outcome::Handled;
        };
        if let Err(changed) = self.still_current(&planned, &plan).await {
            let mut failed = planned.clone();
            failed.error = format!("not executed: {changed}; a new request will be planned afresh");
            self.publish(failed, FailoverPhase::Failed).await;
            let _saved = self
                .journal
                .put(&planned.id, &Record::finished("failed", &planned))
                .await;
            lease.release().await;
            return Outcome::Handled;
        }
        let _saved = self
            .journal
            .mark_started(&planned.from_region, automated)
            .await;
        let limits = execute::Limits {
            verify_timeout: self.config.verify_timeout,
            verify_interval: self.config.verify_interval,
            insync_timeout: self.config.aws.insync_timeout,
        };
        let base = decision.clone();
        let held = &lease;
        let counter = aws.clone();
        let act = execute::Actuators {
            aws: &aws,
            journal: &self.journal,
        };
        let ended = execute::run(&act, &mut plan, 0, limits, |p: FailoverPlan, i: usize| {
            let mut step = base.clone();
            step.plan = Some(p);
            step.step_index = i as u32;
            step.aws_calls = (counter.calls() - calls_before) as u32;
            async move {
                let _saved = self.journal.put(&step.id, &Record::executing(&step)).await;
                held.renew().await;
                self.publish(step, FailoverPhase::Step).await;
            }
        })
        .await;
        decision.plan = Some(plan);
        decision.aws_calls = (aws.calls() - calls_before) as u32;
        let (phase, state) = match &ended {
            execute::Ended::Completed => (FailoverPhase::Completed, "completed"),
            execute::Ended::RolledBack { error, .. } => {
                decision.error = error.clone();
                (FailoverPhase::RolledBack, "rolled_back")
            }
            execute::Ended::Failed { error, .. } => {
                decision.error = format!("{error}: an operator must act");
                (FailoverPhase::Failed, "failed")
            }
        };
        let decision = self.publish(decision, phase).await;
        let _saved = self
            .journal
            .put(&decision.id, &Record::finished(state, &decision))
            .await;
        if decision.failback && state == "completed" {
            if let Some(original) = decision.id.strip_suffix(":failback") {
                if let Ok(Some(r)) = self.journal.get(original).await {
                    let mut d = r.decision().unwrap_or_default();
                    d.failback = true; // failed back: not proposed again
                    let _saved = self
                        .journal
                        .put(original, &Record::finished("failed_back", &d))
                        .await;
                }
            }
        }
        tracing::info!(failover = %decision.id, outcome = state, aws_calls = aws.calls(), "failover ended");
        lease.release().await;
        Outcome::Handled
    }

    async fn still_current(
        &self,
        planned: &FailoverDecision,
        plan: &FailoverPlan,
    ) -> Result<(), String> {
        let again = if planned.failback {
            self.plan_failback(planned).await?.plan.unwrap_or_default()
        } else {
            let current = self
                .read_current(&planned.from_region, &planned.to_region)
                .await?;
            plan::build(
                &self.config,
                &planned.from_region,
                &planned.to_region,
                &current,
                Vec::new(),
                String::new(),
            )
            .map_err(|e| e.to_string())?
        };
        let steps = |p: &FailoverPlan| {
            p.steps
                .iter()
                .map(|s| (s.resource.clone(), s.before.clone(), s.after.clone()))
                .collect::<Vec<_>>()
        };
        if steps(&again) != steps(plan) {
            return Err("the resources changed since the plan was made".into());
        }
        Ok(())
    }

    /// A failover left executing by a replica that died is rolled back.
    async fn recover(&self) {
        let Some(aws) = self.aws.clone() else { return };
        let unfinished = match self.journal.executing().await {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the failover journal; unfinished failovers are not recovered");
                return;
            }
        };
        for mut d in unfinished {
            tracing::warn!(failover = %d.id, "a failover was left executing (its replica stopped mid-way): rolling it back");
            let Ok(Some(lease)) = self.journal.lock(&d.id).await else {
                tracing::warn!(failover = %d.id, "another replica holds the lock; it will recover this failover");
                continue;
            };
            let Some(mut plan) = d.plan.take() else {
                continue;
            };
            let limits = execute::Limits {
                verify_timeout: self.config.verify_timeout,
                verify_interval: self.config.verify_interval,
                insync_timeout: self.config.aws.insync_timeout,
            };
            let n = plan.steps.len();
            let base = d.clone();
            let act = execute::Actuators {
                aws: &aws,
                journal: &self.journal,
            };
            let undone = execute::rollback(
                &act,
                &mut plan,
                n,
                limits,
                &mut |p: FailoverPlan, i: usize| {
                    let mut step = base.clone();
                    step.plan = Some(p);
                    step.step_index = i as u32;
                    async move {
                        let _saved = self.journal.put(&step.id, &Record::executing(&step)).await;
                        self.publish(step, FailoverPhase::Step).await;
                    }
                },
            )
            .await;
            d.plan = Some(plan);
            let (phase, state) = match undone {
                Ok(()) => {
                    d.error =
                        "the failover service stopped mid-way; every step done was rolled back"
                            .into();
                    (FailoverPhase::RolledBack, "rolled_back")
                }
                Err(e) => {
                    d.error = format!("the failover service stopped mid-way and the rollback failed: {e}: an operator must act");
                    (FailoverPhase::Failed, "failed")
                }
            };
            let d = self.publish(d, phase).await;
            let _saved = self.journal.put(&d.id, &Record::finished(state, &d)).await;
            lease.release().await;
        }
    }
}
