//! Small service state across restarts, in a JetStream key-value bucket
//! (e.g. the alerts a service has open), so a restarted service neither
//! repeats what it already sent nor forgets what it must later resolve.
//!
//! [`StateBucket`] is the bucket (bytes, revisions, compare-and-set);
//! [`Typed`] is how services keep state in it: one kind of value as JSON
//! under one key prefix, an unreadable entry ignored, logged and counted
//! (`regionguard_state_unreadable_total{bucket}`) rather than fatal.

use std::marker::PhantomData;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::StreamExt;

/// A key-value bucket of service state.
#[derive(Clone)]
pub struct StateBucket {
    kv: kv::Store,
    name: String,
    /// Elections of the bucket's leader: a read or a plain write sent to a
    /// leader that died is never answered, and is sent again the moment
    /// another is elected instead of after the request timeout (5 s).
    elections: crate::elected::Elections,
}

impl std::fmt::Debug for StateBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateBucket")
            .field("name", &self.name)
            .finish()
    }
}

/// The bucket could not be used.
#[derive(Debug, thiserror::Error)]
#[error("state bucket {bucket}: {message}")]
pub struct StateError {
    /// The bucket.
    pub bucket: String,
    /// What failed.
    pub message: String,
}

impl StateBucket {
    /// Creates the bucket if needed (idempotent) and opens it. Entries live
    /// 30 days; one revision is kept per key; reads are answered by the
    /// bucket's leader (no direct gets from replicas).
    ///
    /// The bucket's stream is provisioned like the other streams rather
    /// than with async-nats' `create_key_value`, whose account query does
    /// not parse NATS 2.9's answer (Debian's server).
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        description: &str,
        replicas: usize,
    ) -> Result<Self, StateError> {
        let fail = |e: &dyn std::fmt::Display| StateError {
            bucket: bucket.to_owned(),
            message: e.to_string(),
        };
        let config = jetstream::stream::Config {
            name: format!("KV_{bucket}"),
            description: Some(description.to_owned()),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            max_age: Duration::from_secs(30 * 24 * 3600),
            num_replicas: replicas.max(1),
            allow_rollup: true,
            deny_delete: true,
            // Reads go to the bucket's stream leader, not to any replica:
            // a replica may answer with an older value (the failover
            // journal must not), and a direct get routed to a replica on a
            // hung server times out where the leader (elected among the
            // servers that answer) replies. Seen in the hung-server test:
            // the failover journal timed out three times in a row.
            allow_direct: false,
            discard: jetstream::stream::DiscardPolicy::New,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        crate::streams::ensure(js, config)
            .await
            .map_err(|e| fail(&e))?;
        let kv = js.get_key_value(bucket).await.map_err(|e| fail(&e))?;
        let elections =
            crate::elected::Elections::of_stream(&js.client(), &format!("KV_{bucket}")).await;
        Ok(Self {
            kv,
            name: bucket.to_owned(),
            elections,
        })
    }

    /// Runs `op`; when the bucket elects a new leader while it waits, runs
    /// it once more at once (an answer owed by a dead leader never comes).
    /// Only for operations that are safe to repeat: reads, puts, deletes;
    /// never a compare-and-set, which would find its own first write and
    /// call it someone else's.
    async fn repeatable<T, F, Fut>(&self, what: &str, op: F) -> T
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let mut elections = self.elections.clone();
        elections.forget();
        tokio::select! {
            done = op() => done,
            leader = elections.next() => {
                tracing::debug!(bucket = %self.name, %leader, what, "the bucket has a new leader; asking it again");
                op().await
            }
        }
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every key with its value.
    pub async fn load(&self) -> Result<Vec<(String, Bytes)>, StateError> {
        self.repeatable("load", || self.load_once()).await
    }

    async fn load_once(&self) -> Result<Vec<(String, Bytes)>, StateError> {
        let fail = |e: &dyn std::fmt::Display| StateError {
            bucket: self.name.clone(),
            message: e.to_string(),
        };
        let mut keys = self.kv.keys().await.map_err(|e| fail(&e))?;
        let mut names = Vec::new();
        while let Some(k) = keys.next().await {
            names.push(k.map_err(|e| fail(&e))?);
        }
        let mut out = Vec::with_capacity(names.len());
        for key in names {
            if let Some(value) = self.kv.get(key.clone()).await.map_err(|e| fail(&e))? {
                out.push((key, value));
            }
        }
        Ok(out)
    }

    /// Stores `value` under `key` (letters, digits, `-`, `_`, `.`, `/`,
    /// `=`).
    pub async fn put(&self, key: &str, value: Bytes) -> Result<(), StateError> {
        self.repeatable("put", || self.kv.put(key, value.clone()))
            .await
            .map(|_| ())
            .map_err(|e| StateError {
                bucket: self.name.clone(),
                message: e.to_string(),
            })
    }

    /// The value under `key` and its revision, if any.
    pub async fn entry(&self, key: &str) -> Result<Option<(Bytes, u64)>, StateError> {
        match self.repeatable("get", || self.kv.entry(key)).await {
            Ok(Some(e)) if e.operation == kv::Operation::Put => Ok(Some((e.value, e.revision))),
            Ok(_) => Ok(None),
            Err(e) => Err(StateError {
                bucket: self.name.clone(),
                message: e.to_string(),
            }),
        }
    }

    /// Compare-and-set: stores `value` only if `key` is at `revision` (0:
    /// only if it does not exist). `Ok(None)` when someone else changed it
    /// first; the new revision otherwise.
    pub async fn swap(
        &self,
        key: &str,
        value: Bytes,
        revision: u64,
    ) -> Result<Option<u64>, StateError> {
        let result = if revision == 0 {
            self.kv.create(key, value).await.map_err(|e| {
                (
                    e.kind() == kv::CreateErrorKind::AlreadyExists,
                    e.to_string(),
                )
            })
        } else {
            self.kv.update(key, value, revision).await.map_err(|e| {
                (
                    e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                    e.to_string(),
                )
            })
        };
        match result {
            Ok(rev) => Ok(Some(rev)),
            Err((true, _)) => Ok(None),
            Err((false, message)) if message.contains("wrong last sequence") => Ok(None),
            Err((false, message)) => Err(StateError {
                bucket: self.name.clone(),
                message,
            }),
        }
    }

    /// Removes `key`.
    pub async fn delete(&self, key: &str) -> Result<(), StateError> {
        self.repeatable("delete", || self.kv.delete(key))
            .await
            .map_err(|e| StateError {
                bucket: self.name.clone(),
                message: e.to_string(),
            })
    }
}

/// Values of type `T` as JSON under `<prefix>.<key>` in a bucket.
#[derive(Clone)]
pub struct Typed<T> {
    bucket: StateBucket,
    prefix: String,
    kind: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Typed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Typed")
            .field("bucket", &self.bucket.name)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl<T: serde::Serialize + serde::de::DeserializeOwned> Typed<T> {
    /// The values under `prefix` (without the dot) in `bucket`.
    pub fn new(bucket: StateBucket, prefix: &str) -> Self {
        Self {
            bucket,
            prefix: prefix.to_owned(),
            kind: PhantomData,
        }
    }

    /// The bucket's key of `key`.
    pub fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.prefix)
    }

    /// Every value under the prefix, by key (without the prefix);
    /// unreadable entries are skipped, logged and counted.
    pub async fn load(&self) -> Result<Vec<(String, T)>, StateError> {
        let start = format!("{}.", self.prefix);
        let mut out = Vec::new();
        for (key, value) in self.bucket.load().await? {
            let Some(short) = key.strip_prefix(&start) else {
                continue;
            };
            if let Some(v) = self.decode(&key, &value) {
                out.push((short.to_owned(), v));
            }
        }
        Ok(out)
    }

    /// The value of `key` (`None` when absent or unreadable).
    pub async fn get(&self, key: &str) -> Result<Option<T>, StateError> {
        Ok(self.entry(key).await?.and_then(|(v, _)| v))
    }

    /// The value of `key` with its revision; the value is `None` when the
    /// entry is unreadable.
    async fn entry(&self, key: &str) -> Result<Option<(Option<T>, u64)>, StateError> {
        let full = self.key(key);
        Ok(self
            .bucket
            .entry(&full)
            .await?
            .map(|(value, rev)| (self.decode(&full, &value), rev)))
    }

    /// Stores `value` under `key`.
    pub async fn put(&self, key: &str, value: &T) -> Result<(), StateError> {
        self.bucket.put(&self.key(key), self.encode(value)?).await
    }

    /// Removes `key`.
    pub async fn delete(&self, key: &str) -> Result<(), StateError> {
        self.bucket.delete(&self.key(key)).await
    }

    fn encode(&self, value: &T) -> Result<Bytes, StateError> {
        serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| StateError {
                bucket: self.bucket.name.clone(),
                message: format!("encoding {}: {e}", self.prefix),
            })
    }

    fn decode(&self, key: &str, value: &[u8]) -> Option<T> {
        match serde_json::from_slice(value) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(bucket = %self.bucket.name, %key, error = %e, "unreadable saved state; ignored");
                crate::metrics::state_unreadable(&self.bucket.name);
                None
            }
        }
    }
}
