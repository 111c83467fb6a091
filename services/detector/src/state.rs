//! Alert state across restarts, in a JetStream key-value bucket: per
//! endpoint its agreed status and open alert (`thr.<region>.<endpoint>`),
//! per region its anomaly episode (`anom.<region>`), as JSON. A restarted
//! detector loads it, so it neither fires an open alert again nor loses the
//! id a later resolution must carry.

use async_nats::jetstream;
use rg_bus::state::{StateBucket, StateError};

use crate::engine::Saved;

/// The detector's bucket.
#[derive(Clone, Debug)]
pub struct StateStore {
    bucket: StateBucket,
}

impl StateStore {
    /// Creates the bucket if needed and opens it.
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        replicas: usize,
    ) -> Result<Self, StateError> {
        let bucket = StateBucket::open(
            js,
            bucket,
            "regionguard detector: open alerts and endpoint status",
            replicas,
        )
        .await?;
        Ok(Self { bucket })
    }

    /// Everything saved (undecodable entries are logged and skipped).
    pub async fn load(&self) -> Result<Vec<Saved>, StateError> {
        let mut out = Vec::new();
        for (key, value) in self.bucket.load().await? {
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
        self.bucket.put(&key, value.into()).await
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
                better_rounds: 1,
            },
        );
        let (k, v) = encode(&s);
        assert_eq!(k, "thr.us-east-1.dynamodb.us-east-1.amazonaws.com");
        assert_eq!(decode(&k, &v), Some(s));
        assert_eq!(decode("thr.x", b"{}"), None);
        // A state saved before `better_rounds` existed still loads.
        assert!(decode(
            &k,
            br#"{"status":"critical","consecutive_rounds":3,"open":null}"#
        )
        .is_some());
        assert_eq!(decode("other", b"{}"), None);
    }
}
