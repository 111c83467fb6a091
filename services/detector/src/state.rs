//! Alert state across restarts, in a JetStream key-value bucket: per
//! endpoint its agreed status and open alert (`thr.<region>.<endpoint>`),
//! per region its anomaly episode (`anom.<region>`), as JSON. A restarted
//! detector loads it, so it neither fires an open alert again nor loses the
//! id a later resolution must carry.

use async_nats::jetstream;
use rg_bus::state::{StateBucket, StateError, Typed};

use crate::engine::{AnomalyEpisode, Saved};
use crate::silence::OpenSilence;
use crate::threshold::EndpointState;

/// The detector's bucket.
#[derive(Clone, Debug)]
pub struct StateStore {
    endpoints: Typed<EndpointState>,
    anomalies: Typed<AnomalyEpisode>,
    silences: Typed<OpenSilence>,
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
        Ok(Self {
            endpoints: Typed::new(bucket.clone(), "thr"),
            anomalies: Typed::new(bucket.clone(), "anom"),
            silences: Typed::new(bucket, "silence"),
        })
    }

    /// Everything saved (unreadable entries are logged, counted and
    /// skipped).
    pub async fn load(&self) -> Result<Vec<Saved>, StateError> {
        let mut out = Vec::new();
        for (key, state) in self.endpoints.load().await? {
            match endpoint_key(&key) {
                Some((region, endpoint)) => out.push(Saved::Endpoint(region, endpoint, state)),
                None => {
                    tracing::warn!(%key, "saved endpoint state under a key that names no region; ignored")
                }
            }
        }
        for (region, episode) in self.anomalies.load().await? {
            out.push(Saved::Anomaly(region, episode));
        }
        Ok(out)
    }

    /// The open silences, by region.
    pub async fn silences(&self) -> Result<Vec<(String, OpenSilence)>, StateError> {
        self.silences.load().await
    }

    /// Records an open silence of `region` (`None`: it resolved).
    pub async fn save_silence(
        &self,
        region: &str,
        open: Option<&OpenSilence>,
    ) -> Result<(), StateError> {
        match open {
            Some(o) => self.silences.put(region, o).await,
            None => self.silences.delete(region).await,
        }
    }

    /// Saves one change.
    pub async fn save(&self, saved: &Saved) -> Result<(), StateError> {
        match saved {
            Saved::Endpoint(region, endpoint, state) => {
                self.endpoints
                    .put(&format!("{region}.{endpoint}"), state)
                    .await
            }
            Saved::Anomaly(region, episode) => self.anomalies.put(region, episode).await,
        }
    }
}

/// `<region>.<endpoint>` (a region name has no dot; an endpoint has).
fn endpoint_key(key: &str) -> Option<(String, String)> {
    let (region, endpoint) = key.split_once('.')?;
    Some((region.to_owned(), endpoint.to_owned()))
}

#[cfg(test)]
mod tests {
    use rg_proto::domain::Status;

    use super::*;

    #[test]
    fn an_endpoint_key_splits_at_the_region() {
        assert_eq!(
            endpoint_key("us-east-1.dynamodb.us-east-1.amazonaws.com"),
            Some((
                "us-east-1".into(),
                "dynamodb.us-east-1.amazonaws.com".into()
            ))
        );
        assert_eq!(endpoint_key("x"), None);
    }

    #[test]
    fn a_state_saved_before_better_rounds_existed_still_loads() {
        let state: EndpointState =
            serde_json::from_slice(br#"{"status":"critical","consecutive_rounds":3,"open":null}"#)
                .expect("old state");
        assert_eq!(state.status, Status::Critical);
        assert_eq!(state.better_rounds, 0);
    }
}
