//! The service loop: a request or an approval comes in, the admission
//! rules say whether it goes ahead, and every phase goes out on the audit
//! trail and into the journal.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use rg_bus::consume::{ConsumerSpec, Outcome};
use rg_bus::{Bus, Stream};
use rg_proto::v1::{FailoverDecision, FailoverPhase, FailoverPlan};
use tokio_util::sync::CancellationToken;

use crate::admission::{self, AfterPlan, Hold, OnApproval, OnRequest, Policy};
use crate::config::Config;
use crate::health::RegionHealth;
use crate::journal::{Journal, State};
use crate::{aws, execute, telemetry};

pub(crate) struct Service {
    pub(crate) config: Config,
    pub(crate) bus: Bus,
    pub(crate) journal: Journal,
    pub(crate) aws: Option<Arc<aws::Aws>>,
    pub(crate) health: Arc<Mutex<RegionHealth>>,
    /// When the reader behind `health` was last known current.
    pub(crate) health_fresh: rg_bus::tail::Freshness,
    pub(crate) gate: Arc<Mutex<crate::gate::FailbackGate>>,
    pub(crate) replica: String,
    pub(crate) shutdown: CancellationToken,
    /// One readiness run at a time (periodic and on demand).
    pub(crate) readiness_lock: tokio::sync::Mutex<()>,
}

impl Service {
    /// Opens the durable consumer of one phase's subject and returns the
    /// task that handles it until `shutdown`. Replicas share it, so each
    /// message goes to one replica; one at a time per consumer (a replica
    /// executing a failover keeps its message with in-progress acks).
    pub(crate) async fn consume(
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

    fn policy(&self) -> Policy {
        Policy::from(&self.config)
    }

    /// The verification and Route 53 limits of a run.
    pub(crate) fn limits(&self) -> execute::Limits {
        execute::Limits {
            verify_timeout: self.config.verify_timeout,
            verify_interval: self.config.verify_interval,
            insync_timeout: self.config.aws.insync_timeout,
        }
    }

    /// Stamps a phase on a decision: the phase, who, when, in which mode.
    fn stamp(&self, mut d: FailoverDecision, phase: FailoverPhase) -> FailoverDecision {
        d.set_phase(phase);
        d.actor = self.actor();
        d.at_unix_ms = rg_bus::unix_now_ms();
        d.set_mode(self.config.mode.as_proto());
        d
    }

    /// Stamps and publishes a phase (see [`Self::store`]).
    pub(crate) async fn publish(
        &self,
        d: FailoverDecision,
        phase: FailoverPhase,
    ) -> FailoverDecision {
        self.store(self.stamp(d, phase)).await
    }

    /// Publishes a stamped phase (waits for its PubAck, retrying while NATS
    /// is away). The message id makes a phase published again after a
    /// restart a duplicate JetStream drops. A phase not stored before
    /// shutdown is logged and counted: the journal keeps the state, and the
    /// next start recovers from it.
    async fn store(&self, d: FailoverDecision) -> FailoverDecision {
        let phase = d.phase();
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
        match self
            .bus
            .publisher
            .publish_until_stored(subject.clone(), &d, Some(&msg_id), &self.shutdown)
            .await
        {
            Some(Ok(_)) => telemetry::phase(phase),
            None => {
                tracing::error!(%subject, failover = %d.id, "failover phase not stored and shutting down: the journal keeps the state");
                telemetry::unpublished();
            }
            Some(Err(e)) => {
                tracing::error!(%subject, failover = %d.id, error = %e, "failover phase cannot be stored: the journal keeps the state");
                telemetry::unpublished();
            }
        }
        tracing::info!(failover = %d.id, phase = phase.token(), from = %d.from_region, to = %d.to_region, error = %d.error, "failover phase");
        d
    }

    async fn handle(&self, d: FailoverDecision) -> Outcome {
        match d.phase() {
            FailoverPhase::Requested => self.on_request(d).await,
            FailoverPhase::Approved => self.on_approval(d).await,
            FailoverPhase::Rejected => self.on_rejection(d).await,
            // Not delivered by the consumers' filters.
            other => {
                tracing::debug!(failover = %d.id, phase = other.token(), "phase ignored");
                Outcome::Handled
            }
        }
    }

    async fn on_request(&self, request: FailoverDecision) -> Outcome {
        let record = match self.journal.get(&request.id).await {
            Ok(r) => r,
            Err(e) => return Outcome::Transient(e.to_string()),
        };
        // A request delivered again after its plan was journaled (the ack
        // was lost, or the service died before it was done): the journaled
        // plan is published again (the same message id: the stream keeps
        // one) and carried on, never a new plan with another target.
        if let Some(planned) = record
            .as_ref()
            .filter(|r| r.state == State::Planned)
            .and_then(crate::journal::Record::decision)
        {
            tracing::info!(failover = %planned.id, to = %planned.to_region, "request delivered again: its journaled plan is published again, not made anew");
            let planned = self.store(planned).await;
            return self.after_plan(planned).await;
        }
        let journaled = record.is_some();
        let last_started = match self.journal.last_failover(&request.from_region).await {
            Ok(at) => at,
            Err(e) => return Outcome::Transient(e.to_string()),
        };
        let policy = self.policy();
        match admission::on_request(
            &policy,
            rg_bus::unix_now_ms(),
            journaled,
            &request.from_region,
            last_started,
        ) {
            OnRequest::AlreadyHandled => return Outcome::Handled,
            OnRequest::Observe => {
                tracing::info!(failover = %request.id, from = %request.from_region, reason = %request.reason, "failover requested (observe mode: nothing planned)");
                self.journal.note(&request.id, State::Observed).await;
                return Outcome::Handled;
            }
            OnRequest::Refuse(why) => {
                let mut refused = request.clone();
                refused.error = why;
                self.publish(refused, FailoverPhase::Failed).await;
                self.journal.note(&request.id, State::Refused).await;
                return Outcome::Handled;
            }
            OnRequest::Plan => {}
        }
        let planned = match self.plan(&request).await {
            Ok(d) => d,
            Err(crate::current::NoPlan { error, candidates }) => {
                telemetry::error(&error);
                let mut failed = request.clone();
                failed.error = format!("no plan: {error}");
                if !candidates.is_empty() {
                    failed.plan = Some(FailoverPlan {
                        candidates,
                        rationale: failed.error.clone(),
                        ..Default::default()
                    });
                }
                self.publish(failed, FailoverPhase::Failed).await;
                self.journal.note(&request.id, State::Refused).await;
                return Outcome::Handled;
            }
        };
        // Journaled before it is published: an approval finds the plan only
        // in the journal, and a request delivered again finds it there
        // (above) instead of planning anew. A plan that cannot be journaled
        // is not published; the request is retried.
        let planned = self.stamp(planned, FailoverPhase::Planned);
        let record = crate::journal::Record::new(State::Planned, Some(&planned));
        if let Err(e) = self.journal.put(&planned.id, &record).await {
            return Outcome::Transient(e.to_string());
        }
        let planned = self.store(planned).await;
        self.after_plan(planned).await
    }

    /// What follows a journaled, published plan: execution, or waiting for
    /// an approval (and why).
    async fn after_plan(&self, planned: FailoverDecision) -> Outcome {
        let policy = self.policy();
        let automated = if policy.mode == crate::Mode::Auto {
            match self.journal.automated().await {
                Ok(starts) => starts,
                Err(e) => return Outcome::Transient(e.to_string()),
            }
        } else {
            Vec::new()
        };
        let irreversible = planned
            .plan
            .as_ref()
            .is_some_and(|p| p.steps.iter().any(|s| s.irreversible));
        match admission::after_plan(
            &policy,
            rg_bus::unix_now_ms(),
            planned.failback,
            irreversible,
            &automated,
        ) {
            AfterPlan::Execute => self.execute(planned, true).await,
            AfterPlan::AwaitApproval(Hold::Failback) => {
                tracing::info!(failover = %planned.id, "failback planned: it waits for approval (failover.failback_auto = false)");
                Outcome::Handled
            }
            AfterPlan::AwaitApproval(Hold::VelocityLimit(n)) => {
                tracing::warn!(failover = %planned.id, started_within_hour = n, limit = policy.max_automated_per_hour, "velocity limit reached: this failover waits for approval");
                Outcome::Handled
            }
            AfterPlan::AwaitApproval(Hold::Irreversible) => {
                tracing::warn!(failover = %planned.id, "the plan has an irreversible step (a database promotion): it waits for approval (failover.allow_irreversible = false)");
                Outcome::Handled
            }
            AfterPlan::AwaitApproval(Hold::PlanMode | Hold::ApproveMode) => Outcome::Handled,
        }
    }

    async fn on_approval(&self, approval: FailoverDecision) -> Outcome {
        let record = match self.journal.get(&approval.id).await {
            Ok(r) => r,
            Err(e) => return Outcome::Transient(e.to_string()),
        };
        match admission::on_approval(&self.policy(), record.as_ref().map(|r| r.state)) {
            OnApproval::Ignore(why) => {
                tracing::info!(failover = %approval.id, "{why}; ignored");
                Outcome::Handled
            }
            OnApproval::Execute => match record.and_then(|r| r.decision()) {
                Some(planned) => self.execute(planned, false).await,
                None => {
                    tracing::error!(failover = %approval.id, "the journal's plan of this failover is unreadable; nothing is executed");
                    Outcome::Handled
                }
            },
        }
    }

    /// Records an operator's rejection: the failover never runs, and an
    /// approval of it is ignored from now on.
    async fn on_rejection(&self, rejection: FailoverDecision) -> Outcome {
        let record = match self.journal.get(&rejection.id).await {
            Ok(r) => r,
            Err(e) => return Outcome::Transient(e.to_string()),
        };
        match admission::on_rejection(record.as_ref().map(|r| r.state)) {
            Ok(()) => {
                self.journal.record(&rejection, State::Rejected).await;
                telemetry::rejection(true);
                tracing::info!(failover = %rejection.id, actor = %rejection.actor, reason = %rejection.error, "failover rejected: it will not run");
            }
            Err(why) => {
                tracing::warn!(failover = %rejection.id, actor = %rejection.actor, "{why}; ignored")
            }
        }
        Outcome::Handled
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
            lease.release().await;
            return Outcome::Handled;
        };
        if let Err(changed) = self.still_current(&planned, &plan).await {
            telemetry::error(&changed);
            let mut failed = planned.clone();
            failed.error = format!("not executed: {changed}; a new request will be planned afresh");
            let failed = self.publish(failed, FailoverPhase::Failed).await;
            self.journal.record(&failed, State::Failed).await;
            lease.release().await;
            return Outcome::Handled;
        }
        if let Err(e) = self
            .journal
            .mark_started(&planned.from_region, automated)
            .await
        {
            tracing::error!(failover = %planned.id, error = %e, "could not record the start: the cooldown and the velocity limit will not count this failover");
            telemetry::journal_write_failed("started");
        }
        let limits = self.limits();
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
                self.journal.record(&step, State::Executing).await;
                held.renew().await;
                self.publish(step, FailoverPhase::Step).await;
            }
        })
        .await;
        decision.plan = Some(plan);
        decision.aws_calls = (aws.calls() - calls_before) as u32;
        let (phase, state) = match &ended {
            execute::Ended::Completed => (FailoverPhase::Completed, State::Completed),
            execute::Ended::RolledBack { error, .. } => {
                decision.error = error.clone();
                (FailoverPhase::RolledBack, State::RolledBack)
            }
            execute::Ended::Failed { error, .. } => {
                decision.error = format!("{error}: an operator must act");
                (FailoverPhase::Failed, State::Failed)
            }
        };
        let decision = self.publish(decision, phase).await;
        self.journal.record(&decision, state).await;
        if decision.failback && state == State::Completed {
            self.mark_failed_back(&decision).await;
        }
        tracing::info!(failover = %decision.id, outcome = state.name(), aws_calls = aws.calls(), "failover ended");
        lease.release().await;
        Outcome::Handled
    }
}
