//! The lock and the journal, in a JetStream key-value bucket
//! (`RG_FAILOVER`), shared by every failover replica.
//!
//! - `lock`: one failover at a time across replicas. Taken by
//!   compare-and-set (create when absent, or update at the revision read
//!   when the holder's lease has expired), renewed after every step,
//!   deleted when the failover ends. A holder that dies loses it when its
//!   lease (`LEASE`) runs out.
//! - `failover.<id>`: the failover's [`State`] and the decision with its
//!   plan, each step's status included, written after every step: a
//!   replica starting finds any failover left `executing`.
//! - `region.<region>`: when the last failover away from it started (the
//!   cooldown); `automated`: start times of automated failovers in the last
//!   hour (the velocity limit).

use std::time::Duration;

use async_nats::jetstream;
use base64::Engine as _;
use prost::Message;
use rg_bus::backoff::Backoff;
use rg_bus::state::{StateBucket, StateError, Typed};
use rg_proto::v1::FailoverDecision;
use serde::{Deserialize, Serialize};

use crate::admission::{self, Holder, Lock};

/// How long a lock holder that stopped renewing keeps the lock.
pub const LEASE: Duration = Duration::from_secs(120);

const LOCK: &str = "lock";

/// Where a failover is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Seen in observe mode; nothing planned.
    Observed,
    /// Not planned (cooldown, no target, bad config).
    Refused,
    /// Planned, waiting for approval (or about to run).
    Planned,
    /// Running; the plan holds each step's status.
    Executing,
    /// Every step done and verified.
    Completed,
    /// A step failed; the steps done before it were undone.
    RolledBack,
    /// A step failed and so did its rollback, or nothing was run because
    /// the resources changed: an operator must look.
    Failed,
    /// Completed, then failed back (not proposed for failback again).
    FailedBack,
    /// Planned, then rejected by an operator: never executed.
    Rejected,
}

impl State {
    /// The state's name as stored and logged.
    pub fn name(self) -> &'static str {
        match self {
            Self::Observed => "observed",
            Self::Refused => "refused",
            Self::Planned => "planned",
            Self::Executing => "executing",
            Self::Completed => "completed",
            Self::RolledBack => "rolled_back",
            Self::Failed => "failed",
            Self::FailedBack => "failed_back",
            Self::Rejected => "rejected",
        }
    }
}

/// A failover's entry in the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Where the failover is.
    pub state: State,
    /// The decision (with its plan) as protobuf, base64.
    #[serde(default)]
    pub decision: String,
}

impl Record {
    /// A record of `state`, with the decision when there is one.
    pub fn new(state: State, d: Option<&FailoverDecision>) -> Self {
        Self {
            state,
            decision: d
                .map(|d| base64::engine::general_purpose::STANDARD.encode(d.encode_to_vec()))
                .unwrap_or_default(),
        }
    }

    /// The decision recorded.
    pub fn decision(&self) -> Option<FailoverDecision> {
        if self.decision.is_empty() {
            return None;
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.decision)
            .ok()?;
        FailoverDecision::decode(bytes.as_slice()).ok()
    }
}

/// The bucket.
pub struct Journal {
    bucket: StateBucket,
    failovers: Typed<Record>,
    regions: Typed<i64>,
    readiness: Typed<crate::readiness::OpenAlert>,
    replica: String,
}

/// A held lock; renew it while working, release it when done.
pub struct Lease<'a> {
    journal: &'a Journal,
    failover: String,
    revision: std::sync::atomic::AtomicU64,
}

impl Journal {
    /// Opens (or creates) the bucket.
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        replicas: usize,
        replica: &str,
    ) -> Result<Self, StateError> {
        let bucket = StateBucket::open(
            js,
            bucket,
            "regionguard failover: lock and journal",
            replicas,
        )
        .await?;
        Ok(Self {
            failovers: Typed::new(bucket.clone(), "failover"),
            regions: Typed::new(bucket.clone(), "region"),
            readiness: Typed::new(bucket.clone(), "readiness"),
            bucket,
            replica: replica.to_owned(),
        })
    }

    /// The journal entry of a failover.
    pub async fn get(&self, id: &str) -> Result<Option<Record>, StateError> {
        self.failovers.get(&key(id)).await
    }

    /// Writes a failover's entry.
    pub async fn put(&self, id: &str, record: &Record) -> Result<(), StateError> {
        self.failovers.put(&key(id), record).await
    }

    /// Writes a failover's entry, trying three times; a write that still
    /// fails is logged at ERROR and counted
    /// (`regionguard_failover_journal_write_failures_total`), never
    /// dropped silently: the failover goes on (stopping mid-way would be
    /// worse), but a replica that dies before the next write may not
    /// recover it.
    pub async fn record(&self, d: &FailoverDecision, state: State) {
        let record = Record::new(state, Some(d));
        self.write(&d.id, &record).await;
    }

    /// [`record`](Self::record) without a decision (observed, refused).
    pub async fn note(&self, id: &str, state: State) {
        self.write(id, &Record::new(state, None)).await;
    }

    async fn write(&self, id: &str, record: &Record) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let mut tries = 0;
        loop {
            tries += 1;
            match self.put(id, record).await {
                Ok(()) => return,
                Err(e) if tries < 3 => {
                    tracing::warn!(failover = %id, state = record.state.name(), error = %e, retry_in = ?backoff.delay(), "journal write failed; retrying");
                    backoff.sleep().await;
                }
                Err(e) => {
                    tracing::error!(failover = %id, state = record.state.name(), error = %e, "journal write failed: the journal does not have this state");
                    crate::telemetry::journal_write_failed(record.state.name());
                    return;
                }
            }
        }
    }

    /// The decisions of every failover in `state`.
    async fn in_state(&self, state: State) -> Result<Vec<FailoverDecision>, StateError> {
        Ok(self
            .failovers
            .load()
            .await?
            .into_iter()
            .filter(|(_, r)| r.state == state)
            .filter_map(|(_, r)| r.decision())
            .collect())
    }

    /// Every failover left executing.
    pub async fn executing(&self) -> Result<Vec<FailoverDecision>, StateError> {
        self.in_state(State::Executing).await
    }

    /// Takes the lock for `failover`; `None` when a live holder has it.
    pub async fn lock(&self, failover: &str) -> Result<Option<Lease<'_>>, StateError> {
        let now = rg_bus::unix_now_ms();
        let held = self
            .bucket
            .entry(LOCK)
            .await?
            .map(|(v, rev)| (serde_json::from_slice::<Holder>(&v).ok(), rev));
        let revision = match admission::lock(held, failover, now) {
            Lock::Take(rev) => rev,
            Lock::TakeOver(rev, held) => {
                tracing::warn!(holder = %held.holder, failover = %held.failover, "taking over an expired failover lock");
                rev
            }
            Lock::Busy(held) => {
                tracing::info!(holder = %held.holder, failover = %held.failover, "the failover lock is held");
                return Ok(None);
            }
        };
        let value = self.holder(failover);
        Ok(self
            .bucket
            .swap(LOCK, value.into(), revision)
            .await?
            .map(|rev| Lease {
                journal: self,
                failover: failover.to_owned(),
                revision: std::sync::atomic::AtomicU64::new(rev),
            }))
    }

    fn holder(&self, failover: &str) -> Vec<u8> {
        serde_json::to_vec(&Holder {
            holder: self.replica.clone(),
            failover: failover.to_owned(),
            expires_at_ms: rg_bus::unix_now_ms() + LEASE.as_millis() as i64,
        })
        .unwrap_or_default()
    }

    /// The readiness alert open for `region`, if any.
    pub async fn readiness_alert(
        &self,
        region: &str,
    ) -> Result<Option<crate::readiness::OpenAlert>, StateError> {
        self.readiness.get(region).await
    }

    /// Records (or, with `None`, clears) the readiness alert open for
    /// `region`.
    pub async fn set_readiness_alert(
        &self,
        region: &str,
        open: Option<&crate::readiness::OpenAlert>,
    ) -> Result<(), StateError> {
        match open {
            Some(open) => self.readiness.put(region, open).await,
            None => self.readiness.delete(region).await,
        }
    }

    /// When the last failover away from `region` started.
    pub async fn last_failover(&self, region: &str) -> Result<Option<i64>, StateError> {
        self.regions.get(region).await
    }

    /// When the automated failovers of the last hour started.
    pub async fn automated(&self) -> Result<Vec<i64>, StateError> {
        Ok(self
            .bucket
            .entry("automated")
            .await?
            .and_then(|(v, _)| serde_json::from_slice(&v).ok())
            .unwrap_or_default())
    }

    /// Records that a failover away from `region` starts now (the
    /// cooldown), and when `automated`, its start (the velocity limit).
    pub async fn mark_started(&self, region: &str, automated: bool) -> Result<(), StateError> {
        let now = rg_bus::unix_now_ms();
        self.regions.put(region, &now).await?;
        if automated {
            let mut times = self.automated().await?;
            times.retain(|t| admission::automated_within(&[*t], now) > 0);
            times.push(now);
            self.bucket
                .put(
                    "automated",
                    serde_json::to_vec(&times).unwrap_or_default().into(),
                )
                .await?;
        }
        Ok(())
    }

    /// Whether `region`'s routing switch takes traffic (true when never set).
    pub async fn switch(&self, region: &str) -> Result<bool, StateError> {
        Ok(self
            .bucket
            .entry(&format!("switch.{region}"))
            .await?
            .is_none_or(|(v, _)| v.as_ref() != b"drain"))
    }

    /// Sets `region`'s routing switch.
    pub async fn set_switch(&self, region: &str, take_traffic: bool) -> Result<(), StateError> {
        let value: &'static [u8] = if take_traffic { b"take" } else { b"drain" };
        self.bucket
            .put(
                &format!("switch.{region}"),
                bytes::Bytes::from_static(value),
            )
            .await?;
        crate::telemetry::switch(region, take_traffic);
        Ok(())
    }

    /// Completed failovers not failed back yet, with their decisions.
    pub async fn completed(&self) -> Result<Vec<FailoverDecision>, StateError> {
        let mut completed = self.in_state(State::Completed).await?;
        completed.retain(|d| !d.failback);
        Ok(completed)
    }
}

impl Lease<'_> {
    /// Extends the lease (after each step).
    pub async fn renew(&self) {
        let value = self.journal.holder(&self.failover);
        let rev = self.revision.load(std::sync::atomic::Ordering::Relaxed);
        match self.journal.bucket.swap(LOCK, value.into(), rev).await {
            Ok(Some(new)) => self
                .revision
                .store(new, std::sync::atomic::Ordering::Relaxed),
            Ok(None) => {
                tracing::error!(failover = %self.failover, "the failover lock was taken over while this failover ran (its lease expired)")
            }
            Err(e) => {
                tracing::warn!(failover = %self.failover, error = %e, "could not renew the failover lock")
            }
        }
    }

    /// Gives the lock up.
    pub async fn release(self) {
        if let Err(e) = self.journal.bucket.delete(LOCK).await {
            tracing::warn!(failover = %self.failover, error = %e, "could not release the failover lock; it expires with its lease");
        }
    }
}

/// A failover id as a key (keys allow letters, digits, `-`, `_`, `.`,
/// `/`, `=`).
fn key(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_=".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_stored_by_their_names_and_old_records_still_read() {
        for state in [
            State::Observed,
            State::Refused,
            State::Planned,
            State::Executing,
            State::Completed,
            State::RolledBack,
            State::Failed,
            State::FailedBack,
        ] {
            let json = serde_json::to_string(&Record::new(state, None)).expect("json");
            assert_eq!(
                json,
                format!(r#"{{"state":"{}","decision":""}}"#, state.name())
            );
            let back: Record = serde_json::from_str(&json).expect("back");
            assert_eq!(back.state, state);
        }
        // As written before the state was an enum.
        let old: Record = serde_json::from_str(r#"{"state":"rolled_back","decision":""}"#)
            .expect("a record of an earlier version");
        assert_eq!(old.state, State::RolledBack);
        assert!(serde_json::from_str::<Record>(r#"{"state":"exploded"}"#).is_err());
    }

    #[test]
    fn a_record_keeps_its_decision() {
        let d = FailoverDecision {
            id: "fo-1".into(),
            from_region: "us-east-1".into(),
            ..Default::default()
        };
        let r = Record::new(State::Planned, Some(&d));
        assert_eq!(r.decision(), Some(d));
        assert_eq!(Record::new(State::Refused, None).decision(), None);
    }

    #[test]
    fn ids_become_keys() {
        assert_eq!(
            key("cascade:us-east-1:42:failback"),
            "cascade_us-east-1_42_failback"
        );
    }
}
