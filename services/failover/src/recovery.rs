//! A failover left executing by a replica that stopped mid-way (killed,
//! crashed, lost its node) is rolled back by the next replica to start:
//! every step the journal shows done is undone, last first.

use rg_proto::v1::{FailoverPhase, FailoverPlan};

use crate::execute;
use crate::journal::State;
use crate::service::Service;

impl Service {
    /// Rolls back every failover the journal shows executing.
    pub(crate) async fn recover(&self) {
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
            let lease = match self.journal.lock(&d.id).await {
                Ok(Some(lease)) => lease,
                Ok(None) => {
                    tracing::warn!(failover = %d.id, "another replica holds the lock; it will recover this failover");
                    continue;
                }
                Err(e) => {
                    tracing::error!(failover = %d.id, error = %e, "cannot take the failover lock; this failover is recovered at the next start");
                    continue;
                }
            };
            let Some(mut plan) = d.plan.take() else {
                tracing::error!(failover = %d.id, "the journal holds no plan for this failover: nothing to roll back; an operator must check");
                lease.release().await;
                continue;
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
                self.limits(),
                &mut |p: FailoverPlan, i: usize| {
                    let mut step = base.clone();
                    step.plan = Some(p);
                    step.step_index = i as u32;
                    async move {
                        self.journal.record(&step, State::Executing).await;
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
                    (FailoverPhase::RolledBack, State::RolledBack)
                }
                Err(e) => {
                    d.error = format!("the failover service stopped mid-way and the rollback failed: {e}: an operator must act");
                    (FailoverPhase::Failed, State::Failed)
                }
            };
            let d = self.publish(d, phase).await;
            self.journal.record(&d, state).await;
            lease.release().await;
        }
    }
}
