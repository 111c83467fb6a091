//! Alert state across restarts, in a JetStream key-value bucket: per
//! endpoint its agreed status and open alert (`thr.<region>.<endpoint>`),
//! per region its anomaly episode (`anom.<region>`), as JSON. A restarted
//! detector loads it, so it neither fires an open alert again nor loses the
//! id a later resolution must carry.

use std::time::Duration;

use async_nats::jetstream::{self, kv};

use futures::StreamExt;

use crate::engine::Saved;

/// The bucket.
#[derive(Clone)]
pub struct StateStore {
    kv: kv::Store,
}

/// The bucket could not be used.
#[derive(Debug, thiserror::Error)]
#[error("alert state bucket {bucket}: {message}")]
pub struct StateError {
    /// The bucket.
    pub bucket: String,
    /// What failed.
    pub message: String,
}

impl StateStore {
    /// Creates the bucket if needed (idempotent) and opens it.
    ///
    /// The bucket's stream is provisioned like the other streams rather
    /// than with async-nats' `create_key_value`, whose account query does
    /// not parse NATS 2.9's answer (Debian's server).
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        replicas: usize,
    ) -> Result<Self, StateError> {
        let fail = |e: &dyn std::fmt::Display| StateError {
            bucket: bucket.to_owned(),
            message: e.to_string(),
        };
        let max_age = Duration::from_secs(30 * 24 * 3600);
        let config = jetstream::stream::Config {
            name: format!("KV_{bucket}"),
            description: Some(
                "regionguard detector: open alerts and endpoint status (key-value bucket)".into(),
            ),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            max_age,
            num_replicas: replicas.max(1),
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: jetstream::stream::DiscardPolicy::New,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        rg_bus::streams::ensure(js, config)
            .await
            .map_err(|e| fail(&e))?;
        let kv = js.get_key_value(bucket).await.map_err(|e| fail(&e))?;
        Ok(Self { kv })
    }

    /// Everything saved (undecodable entries are logged and skipped).
    pub async fn load(&self) -> Result<Vec<Saved>, StateError> {
        let fail = |e: &dyn std::fmt::Display| StateError {
            bucket: self.kv.name.clone(),
            message: e.to_string(),
        };
        let mut keys = self.kv.keys().await.map_err(|e| fail(&e))?;
        let mut names = Vec::new();
        while let Some(k) = keys.next().await {
            names.push(k.map_err(|e| fail(&e))?);
        }
        let mut out = Vec::new();
        for key in names {
            let Some(value) = self.kv.get(key.clone()).await.map_err(|e| fail(&e))? else {
                continue;
            };
            match decode(&key, &value) {
                Some(saved) => out.push(saved),
                None => tracing::warn!(%key, "unreadable saved alert state; ignored"),
            }
        }
        Ok(out)
    }

    /// Saves one change.
    pub async fn save(&self, saved: &Saved) -> Result<(), StateError> {
        let (key, value) = encode(saved);
        self.kv
            .put(key, value.into())
            .await
            .map(|_| ())
            .map_err(|e| StateError {
                bucket: self.kv.name.clone(),
                message: e.to_string(),
            })
    }
}

fn encode(saved: &Saved) -> (String, Vec<u8>) {
    match saved {
        Saved::Endpoint(region, endpoint, state) => (
            format!("thr.{region}.{endpoint}"),
            serde_json::to_vec(state).unwrap_or_default(),
        ),
        Saved::Anomaly(region, episode) => (
            format!("anom.{region}"),
            serde_json::to_vec(episode).unwrap_or_default(),
        ),
    }
}

fn decode(key: &str, value: &[u8]) -> Option<Saved> {
    if let Some(rest) = key.strip_prefix("thr.") {
        let (region, endpoint) = rest.split_once('.')?;
        return Some(Saved::Endpoint(
            region.to_owned(),
            endpoint.to_owned(),
            serde_json::from_slice(value).ok()?,
        ));
    }
    let region = key.strip_prefix("anom.")?;
    Some(Saved::Anomaly(
        region.to_owned(),
        serde_json::from_slice(value).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use rg_proto::domain::Status;

    use super::*;
    use crate::threshold::EndpointState;

    #[test]
    fn keys_round_trip() {
        let s = Saved::Endpoint(
            "us-east-1".into(),
            "dynamodb.us-east-1.amazonaws.com".into(),
            EndpointState {
                status: Status::Critical,
                consecutive_rounds: 3,
                open: None,
            },
        );
        let (k, v) = encode(&s);
        assert_eq!(k, "thr.us-east-1.dynamodb.us-east-1.amazonaws.com");
        assert_eq!(decode(&k, &v), Some(s));
        assert_eq!(decode("thr.x", b"{}"), None);
        assert_eq!(decode("other", b"{}"), None);
    }
}
