//! The lock and the journal, in a JetStream key-value bucket
//! (`RG_FAILOVER`), shared by every failover replica.
//!
//! - `lock`: one failover at a time across replicas. Taken by
//!   compare-and-set (create when absent, or update at the revision read
//!   when the holder's lease has expired), renewed after every step,
//!   deleted when the failover ends. A holder that dies loses it when its
//!   lease (`LEASE`) runs out.
//! - `failover.<id>`: the failover's state (`observed`, `refused`,
//!   `planned`, `executing`, `completed`, `rolled_back`, `failed`) and the
//!   decision with its plan, each step's status included, written after
//!   every step: a replica starting finds any failover left `executing`.
//! - `region.<region>`: when the last failover away from it started (the
//!   cooldown); `automated`: start times of automated failovers in the last
//!   hour (the velocity limit).

use std::time::Duration;

use async_nats::jetstream;
use base64::Engine as _;
use prost::Message;
use rg_bus::state::{StateBucket, StateError};
use rg_proto::v1::FailoverDecision;
use serde::{Deserialize, Serialize};

/// How long a lock holder that stopped renewing keeps the lock.
pub const LEASE: Duration = Duration::from_secs(120);

const LOCK: &str = "lock";

/// A failover's entry in the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// `observed`, `refused`, `planned`, `executing`, `completed`,
    /// `rolled_back` or `failed`.
    pub state: String,
    /// The decision (with its plan) as protobuf, base64.
    #[serde(default)]
    pub decision: String,
}

impl Record {
    fn with(state: &str, d: Option<&FailoverDecision>) -> Self {
        Self {
            state: state.to_owned(),
            decision: d
                .map(|d| base64::engine::general_purpose::STANDARD.encode(d.encode_to_vec()))
                .unwrap_or_default(),
        }
    }
    /// Seen in observe mode.
    pub fn observed() -> Self {
        Self::with("observed", None)
    }
    /// Not planned (cooldown, no target, bad config).
    pub fn refused() -> Self {
        Self::with("refused", None)
    }
    /// Planned, waiting for approval (or about to run).
    pub fn planned(d: &FailoverDecision) -> Self {
        Self::with("planned", Some(d))
    }
    /// Running; the plan holds each step's status.
    pub fn executing(d: &FailoverDecision) -> Self {
        Self::with("executing", Some(d))
    }
    /// Ended.
    pub fn finished(state: &str, d: &FailoverDecision) -> Self {
        Self::with(state, Some(d))
    }
    /// Waiting for approval.
    pub fn is_planned(&self) -> bool {
        self.state == "planned"
    }
    /// The decision recorded.
    pub fn decision(&self) -> Option<FailoverDecision> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.decision)
            .ok()?;
        FailoverDecision::decode(bytes.as_slice()).ok()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct LockValue {
    holder: String,
    failover: String,
    expires_at_ms: i64,
}

/// The bucket.
pub struct Journal {
    bucket: StateBucket,
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
        Ok(Self {
            bucket: StateBucket::open(
                js,
                bucket,
                "regionguard failover: lock and journal",
                replicas,
            )
            .await?,
            replica: replica.to_owned(),
        })
    }

    /// The journal entry of a failover.
    pub async fn get(&self, id: &str) -> Result<Option<Record>, StateError> {
        Ok(self
            .bucket
            .entry(&key(id))
            .await?
            .and_then(|(v, _)| serde_json::from_slice(&v).ok()))
    }

    /// Writes a failover's entry.
    pub async fn put(&self, id: &str, record: &Record) -> Result<(), StateError> {
        let value = serde_json::to_vec(record).unwrap_or_default();
        self.bucket.put(&key(id), value.into()).await
    }

    /// The decisions of every failover in `state`.
    async fn in_state(&self, state: &str) -> Result<Vec<FailoverDecision>, StateError> {
        Ok(self
            .bucket
            .load()
            .await?
            .into_iter()
            .filter(|(k, _)| k.starts_with("failover."))
            .filter_map(|(_, v)| serde_json::from_slice::<Record>(&v).ok())
            .filter(|r| r.state == state)
            .filter_map(|r| r.decision())
            .collect())
    }

    /// Every failover left executing.
    pub async fn executing(&self) -> Result<Vec<FailoverDecision>, StateError> {
        self.in_state("executing").await
    }

    /// Takes the lock for `failover`; `None` when a live holder has it.
    pub async fn lock(&self, failover: &str) -> Result<Option<Lease<'_>>, StateError> {
        let now = rg_bus::unix_now_ms();
        let value = |expires| {
            serde_json::to_vec(&LockValue {
                holder: self.replica.clone(),
                failover: failover.to_owned(),
                expires_at_ms: expires,
            })
            .unwrap_or_default()
        };
        let revision = match self.bucket.entry(LOCK).await? {
            None => 0,
            Some((v, rev)) => match serde_json::from_slice::<LockValue>(&v) {
                Ok(held) if held.expires_at_ms > now && held.failover != failover => {
                    tracing::info!(holder = %held.holder, failover = %held.failover, "the failover lock is held");
                    return Ok(None);
                }
                Ok(held) if held.expires_at_ms <= now => {
                    tracing::warn!(holder = %held.holder, failover = %held.failover, "taking over an expired failover lock");
                    rev
                }
                _ => rev,
            },
        };
        let expires = now + LEASE.as_millis() as i64;
        Ok(self
            .bucket
            .swap(LOCK, value(expires).into(), revision)
            .await?
            .map(|rev| Lease {
                journal: self,
                failover: failover.to_owned(),
                revision: std::sync::atomic::AtomicU64::new(rev),
            }))
    }

    /// When the last failover away from `region` started.
    pub async fn last_failover(&self, region: &str) -> Result<Option<i64>, StateError> {
        Ok(self
            .bucket
            .entry(&format!("region.{region}"))
            .await?
            .and_then(|(v, _)| std::str::from_utf8(&v).ok()?.parse().ok()))
    }

    /// Automated failovers started within the last hour.
    pub async fn automated_within_hour(&self) -> Result<u32, StateError> {
        let hour_ago = rg_bus::unix_now_ms() - 3_600_000;
        Ok(self
            .automated()
            .await?
            .into_iter()
            .filter(|t| *t > hour_ago)
            .count() as u32)
    }

    async fn automated(&self) -> Result<Vec<i64>, StateError> {
        Ok(self
            .bucket
            .entry("automated")
            .await?
            .and_then(|(v, _)| serde_json::from_slice(&v).ok())
            .unwrap_or_default())
    }

    /// Records that a failover away from `region` starts now.
    pub async fn mark_started(&self, region: &str, automated: bool) -> Result<(), StateError> {
        let now = rg_bus::unix_now_ms();
        self.bucket
            .put(&format!("region.{region}"), now.to_string().into())
            .await?;
        if automated {
            let mut times = self.automated().await?;
            times.retain(|t| *t > now - 3_600_000);
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
}

impl Journal {
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
        let mut completed = self.in_state("completed").await?;
        completed.retain(|d| !d.failback);
        Ok(completed)
    }
}

impl Lease<'_> {
    /// Extends the lease (after each step).
    pub async fn renew(&self) {
        let value = serde_json::to_vec(&LockValue {
            holder: self.journal.replica.clone(),
            failover: self.failover.clone(),
            expires_at_ms: rg_bus::unix_now_ms() + LEASE.as_millis() as i64,
        })
        .unwrap_or_default();
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

fn key(id: &str) -> String {
    // Keys allow letters, digits, '-', '_', '.', '/', '='.
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_=".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("failover.{safe}")
}
