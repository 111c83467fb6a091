//! What the gateway's interfaces share: the view, the latest snapshot and
//! the live alert stream, plus the state-changing actions (approve or
//! reject a failover, change a fault) that HTTP and gRPC both offer.
//!
//! The view sits behind a std `Mutex`: every critical section is short and
//! synchronous (no `.await` inside), which is what std's mutex is for.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use rg_bus::Bus;
use rg_proto::v1::{Alert, DashboardSnapshot, FailoverDecision, FaultReply, FaultRequest};
use tokio::sync::{broadcast, watch, OnceCell};
use tokio_util::sync::CancellationToken;

use crate::config::Access;
use crate::telemetry::{self, Watcher};
use crate::view::View;

/// A built snapshot with its encodings, made once and shared by every
/// client.
#[derive(Debug)]
pub(crate) struct Published {
    pub(crate) snapshot: DashboardSnapshot,
    /// The canonical protobuf JSON (what `/api/snapshot` and `/ws` send).
    pub(crate) json: Bytes,
}

impl Published {
    pub(crate) fn new(snapshot: DashboardSnapshot) -> Self {
        let json = serde_json::to_vec(&snapshot).unwrap_or_default().into();
        Self { snapshot, json }
    }
}

/// Shared by the snapshot loop and every interface.
pub(crate) struct Hub {
    view: Mutex<View>,
    latest: watch::Sender<Option<Arc<Published>>>,
    /// Every snapshot, for watchers; a watcher further behind than the
    /// capacity skips the oldest (counted).
    snapshots: broadcast::Sender<Arc<Published>>,
    alerts: broadcast::Sender<Alert>,
    bus: OnceCell<Bus>,
    access: Access,
    /// Cancelled on shutdown: watchers end their streams, so the servers'
    /// graceful shutdown does not wait for clients that never leave.
    stopping: CancellationToken,
}

/// Why a state-changing call was refused or failed. The message is what
/// the caller sees: it says what to do, never internal details.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ActionError {
    #[error("missing or wrong bearer token")]
    Unauthenticated,
    #[error("state-changing calls are turned off on this gateway (gateway.read_only)")]
    Disabled,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Invalid(String),
}

impl Hub {
    pub(crate) fn new(
        view: View,
        access: Access,
        watch_queue: usize,
        stopping: CancellationToken,
    ) -> Arc<Self> {
        let (latest, _) = watch::channel(None);
        let (snapshots, _) = broadcast::channel(watch_queue.max(1));
        let (alerts, _) = broadcast::channel(1024);
        Arc::new(Self {
            view: Mutex::new(view),
            latest,
            snapshots,
            alerts,
            bus: OnceCell::new(),
            access,
            stopping,
        })
    }

    /// The view, locked. A poisoned lock (a panic while holding it) is taken
    /// over: the view is plain data and stays usable.
    pub(crate) fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn stopping(&self) -> &CancellationToken {
        &self.stopping
    }

    pub(crate) fn set_bus(&self, bus: Bus) {
        let _already = self.bus.set(bus);
    }

    pub(crate) fn bus(&self) -> Option<&Bus> {
        self.bus.get()
    }

    /// Makes `snapshot` the latest and hands it to every watcher.
    pub(crate) fn publish(&self, published: Arc<Published>) {
        self.latest.send_replace(Some(published.clone()));
        // No receiver is fine: nobody is watching.
        let _receivers = self.snapshots.send(published);
    }

    pub(crate) fn latest(&self) -> Option<Arc<Published>> {
        self.latest.borrow().clone()
    }

    /// Every snapshot from now on, starting with the latest, for one
    /// watcher on `interface`.
    pub(crate) fn subscribe(&self, interface: &'static str) -> Subscription {
        // Subscribe before reading the latest, so nothing falls between.
        let rx = self.snapshots.subscribe();
        Subscription {
            first: self.latest(),
            rx,
            last: None,
            watcher: Watcher::connected(interface),
            stopping: self.stopping.clone(),
        }
    }

    pub(crate) fn live_alert(&self, alert: Alert) {
        // No receiver is fine: nobody is watching.
        let _receivers = self.alerts.send(alert);
    }

    pub(crate) fn watch_alerts(&self) -> broadcast::Receiver<Alert> {
        self.alerts.subscribe()
    }

    /// Checks a state-changing call's bearer token (`presented`: the value
    /// after `Bearer `).
    pub(crate) fn authorize(&self, presented: Option<&str>) -> Result<(), ActionError> {
        let result = match &self.access {
            Access::Off => Err(ActionError::Disabled),
            Access::OpenOnLoopback => Ok(()),
            Access::Token(expected) => match presented {
                Some(p) if constant_time_eq(p.as_bytes(), expected.as_bytes()) => Ok(()),
                _ => Err(ActionError::Unauthenticated),
            },
        };
        if let Err(e) = &result {
            telemetry::refused(e);
        }
        result
    }

    /// Approves a planned failover: publishes its APPROVED phase and waits
    /// for the PubAck. `actor` goes into the audit trail.
    pub(crate) async fn approve(
        &self,
        failover_id: &str,
        actor: &str,
    ) -> Result<FailoverDecision, ActionError> {
        self.answer(failover_id, actor, None).await
    }

    /// Rejects a planned failover: publishes its REJECTED phase (who, and
    /// `reason`); the failover manager then ignores any approval of it.
    pub(crate) async fn reject(
        &self,
        failover_id: &str,
        actor: &str,
        reason: &str,
    ) -> Result<FailoverDecision, ActionError> {
        self.answer(failover_id, actor, Some(reason)).await
    }

    /// An operator's answer to a planned failover: an approval (`reject`
    /// `None`) or a rejection with its reason. Approval and rejection share
    /// one message id, so of two different answers sent at once only the
    /// first is stored; the second is told which won.
    async fn answer(
        &self,
        failover_id: &str,
        actor: &str,
        reject: Option<&str>,
    ) -> Result<FailoverDecision, ActionError> {
        let latest = self.view().failover(failover_id).cloned().ok_or_else(|| {
            ActionError::NotFound(format!(
                "no failover {failover_id:?} is known (see /api/decisions)"
            ))
        })?;
        let now = rg_bus::unix_now_ms();
        let answer = match reject {
            None => latest.approval(actor, now),
            Some(reason) => latest.rejection(actor, now, reason),
        }
        .map_err(|e| ActionError::Refused(e.to_string()))?;
        let verb = answer.phase().token();
        let bus = self
            .bus()
            .ok_or_else(|| ActionError::Unavailable("not connected to NATS yet".into()))?;
        let subject = bus.subjects.failover(verb);
        let stored = bus
            .publisher
            .publish(subject.clone(), &answer, Some(&answer.answer_msg_id()))
            .await
            .map_err(|e| {
                tracing::warn!(%subject, error = %e, "could not publish an operator's answer");
                ActionError::Unavailable(format!(
                    "the answer ({verb}) could not be stored; try again"
                ))
            })?;
        if stored.duplicate {
            let stream = bus.subjects.stream(rg_bus::Stream::Decisions);
            match bus
                .publisher
                .read_back::<FailoverDecision>(&stream, stored.sequence)
                .await
            {
                Ok(first) if first.phase() != answer.phase() => {
                    return Err(ActionError::Refused(format!(
                        "failover {failover_id} was already {} by {}",
                        first.phase().token(),
                        first.actor
                    )));
                }
                Ok(first) => return Ok(first),
                Err(e) => {
                    tracing::warn!(failover = %failover_id, error = %e, "an earlier answer was stored but cannot be read back");
                    return Err(ActionError::Refused(format!(
                        "failover {failover_id} was already answered (see /api/decisions)"
                    )));
                }
            }
        }
        tracing::info!(failover = %answer.id, %actor, from = %answer.from_region, to = %answer.to_region, error = %answer.error, "failover {verb}");
        self.view().decision(answer.clone());
        Ok(answer)
    }

    /// Sends a fault request to the simulator.
    pub(crate) async fn fault(&self, request: &FaultRequest) -> Result<FaultReply, ActionError> {
        if request.action.is_none() {
            return Err(ActionError::Invalid(
                "a fault request needs one of inject, clear or list".into(),
            ));
        }
        let bus = self
            .bus()
            .ok_or_else(|| ActionError::Unavailable("not connected to NATS yet".into()))?;
        let subject = bus.subjects.sim_faults();
        let timeout = std::time::Duration::from_secs(5);
        let reply: FaultReply = rg_bus::request::request(&bus.client, &subject, request, timeout)
            .await
            .map_err(|e| ActionError::Unavailable(format!("the simulator did not answer: {e}")))?;
        if !reply.error.is_empty() {
            return Err(ActionError::Invalid(reply.error));
        }
        Ok(reply)
    }
}

/// The audit trail's name for `approver` answering over `interface`
/// ("http:alice"; "anonymous" when no name was given).
pub(crate) fn actor(interface: &str, approver: &str) -> String {
    let approver = approver.trim();
    if approver.is_empty() {
        format!("{interface}:anonymous")
    } else {
        format!("{interface}:{approver}")
    }
}

/// One watcher's snapshots: the latest at once, then each new one in
/// order; one that fell behind the queue skips to what is still queued
/// (counted). Ends when the gateway stops.
pub(crate) struct Subscription {
    first: Option<Arc<Published>>,
    rx: broadcast::Receiver<Arc<Published>>,
    last: Option<u64>,
    watcher: Watcher,
    stopping: CancellationToken,
}

impl Subscription {
    /// The next snapshot, `None` when the gateway stops. Cancel-safe.
    pub(crate) async fn next(&mut self) -> Option<Arc<Published>> {
        if let Some(p) = self.first.take() {
            self.last = Some(p.snapshot.sequence);
            return Some(p);
        }
        loop {
            let received = tokio::select! {
                biased;
                _ = self.stopping.cancelled() => return None,
                r = self.rx.recv() => r,
            };
            match received {
                Ok(p) => {
                    let sequence = p.snapshot.sequence;
                    // The latest, sent first, may also be queued.
                    if self.last.is_some_and(|l| sequence <= l) {
                        continue;
                    }
                    self.last = Some(sequence);
                    return Some(p);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => self.watcher.skipped(n),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    pub(crate) fn watcher(&self) -> &Watcher {
        &self.watcher
    }
}

/// Compares without an early exit, so the time taken does not tell how
/// much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison_needs_the_exact_token() {
        assert!(constant_time_eq(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!constant_time_eq(b"0123456789abcdeX", b"0123456789abcdef"));
        assert!(!constant_time_eq(b"0123456789abcde", b"0123456789abcdef"));
        assert!(!constant_time_eq(b"", b"0123456789abcdef"));
        assert!(!constant_time_eq(b"0123456789abcdef0", b"0123456789abcdef"));
    }
}
