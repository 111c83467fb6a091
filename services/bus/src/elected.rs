//! Hearing a JetStream leader election as it happens.
//!
//! When the server leading a stream or a consumer dies, its followers wait
//! 4-9 s (nats-server's Raft election timeout, fixed) before electing
//! another. Until then a pull request or a publish sent to the group goes
//! unanswered, and a client only notices by timing out (missed heartbeats,
//! a PubAck timeout): seconds more on top of the election. The new leader
//! announces itself on `$JS.EVENT.ADVISORY.{STREAM,CONSUMER}.LEADER_ELECTED`;
//! an [`Elections`] listens there, so that the pull loop pulls afresh and
//! the prober sends its unacknowledged events again the moment a leader is
//! back instead of at the next timeout.
//!
//! Only a hint: when the advisory is not heard (a user not allowed to
//! subscribe to it, a server that does not send it), the timeouts still
//! work as before.

use async_nats::Client;
use futures::StreamExt;
use tokio::sync::watch;

/// The elections of one stream's or one consumer's leader, heard on a
/// subscription of its own that ends when the last clone is dropped. A
/// clone hears the same elections and keeps its own place among them.
#[derive(Debug, Clone)]
pub struct Elections {
    heard: watch::Receiver<Option<String>>,
}

impl Elections {
    /// Elections of `stream`'s leader.
    pub async fn of_stream(client: &Client, stream: &str) -> Self {
        Self::listen(
            client,
            format!("$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.{stream}"),
        )
        .await
    }

    /// Elections of the leader of `stream`'s consumer `consumer`.
    pub async fn of_consumer(client: &Client, stream: &str, consumer: &str) -> Self {
        Self::listen(
            client,
            format!("$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.{stream}.{consumer}"),
        )
        .await
    }

    /// Elections of any stream's leader (`STREAM.LEADER_ELECTED.*`): for a
    /// publisher that does not know which stream a subject goes to.
    pub async fn of_any_stream(client: &Client) -> Self {
        Self::listen(
            client,
            "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.*".to_owned(),
        )
        .await
    }

    /// Never hears anything (where no client is at hand).
    pub fn none() -> Self {
        let (_, heard) = watch::channel(None);
        Self { heard }
    }

    async fn listen(client: &Client, subject: String) -> Self {
        let (tx, heard) = watch::channel(None);
        match client.subscribe(subject.clone()).await {
            Ok(mut sub) => {
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            _ = tx.closed() => break,
                            advisory = sub.next() => match advisory {
                                Some(m) => {
                                    tx.send_replace(Some(leader_of(&m.payload)));
                                }
                                None => break,
                            },
                        }
                    }
                    // Dropping `sub` unsubscribes.
                });
            }
            Err(e) => {
                tracing::debug!(%subject, error = %e, "cannot listen for leader elections; relying on timeouts")
            }
        }
        Self { heard }
    }

    /// Forgets what was heard so far: [`next`](Self::next) then waits for
    /// an election after this moment.
    pub fn forget(&mut self) {
        self.heard.borrow_and_update();
    }

    /// Resolves when a leader was elected since the last call (with the
    /// new leader's server name, or "?"); never, when nothing listens.
    pub async fn next(&mut self) -> String {
        if self.heard.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        self.heard
            .borrow_and_update()
            .clone()
            .unwrap_or_else(|| "?".into())
    }
}

/// The `leader` of an advisory's JSON payload, or "?".
fn leader_of(payload: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v.get("leader")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_leader_is_read_from_the_advisory_and_garbage_is_not_a_panic() {
        let advisory = br#"{"type":"io.nats.jetstream.advisory.v1.consumer_leader_elected","stream":"S","consumer":"c","leader":"n2","replicas":[]}"#;
        assert_eq!(leader_of(advisory), "n2");
        assert_eq!(leader_of(b"not json"), "?");
        assert_eq!(leader_of(br#"{"leader":3}"#), "?");
    }

    /// A real server: a consumer leader step-down (which elects a new
    /// leader) is heard; a quiet consumer is not.
    #[tokio::test]
    async fn a_step_down_is_heard_by_the_consumers_listener() {
        let cluster = rg_testkit::NatsCluster::start(3);
        let client = async_nats::connect(
            cluster
                .nodes()
                .iter()
                .map(|n| n.url().parse().unwrap())
                .collect::<Vec<async_nats::ServerAddr>>(),
        )
        .await
        .unwrap();
        let js = async_nats::jetstream::new(client.clone());
        let stream = loop {
            let made = js
                .get_or_create_stream(async_nats::jetstream::stream::Config {
                    name: "E".into(),
                    subjects: vec!["e.>".into()],
                    num_replicas: 3,
                    ..Default::default()
                })
                .await;
            match made {
                Ok(s) => break s,
                // A forming cluster: not enough peers known yet.
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        };
        for name in ["c", "quiet"] {
            stream
                .get_or_create_consumer(
                    name,
                    async_nats::jetstream::consumer::pull::Config {
                        durable_name: Some(name.into()),
                        num_replicas: 3,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
        }
        let mut heard = Elections::of_consumer(&client, "E", "c").await;
        let mut quiet = Elections::of_consumer(&client, "E", "quiet").await;
        client.flush().await.unwrap();
        let answer: serde_json::Value = js
            .request("CONSUMER.LEADER.STEPDOWN.E.c", &serde_json::json!({}))
            .await
            .unwrap();
        assert_eq!(answer["success"], true, "{answer}");
        let leader = tokio::time::timeout(Duration::from_secs(15), heard.next())
            .await
            .expect("the election after the step-down was heard");
        assert!(leader.starts_with('n'), "new leader named: {leader}");
        assert!(
            tokio::time::timeout(Duration::from_millis(500), quiet.next())
                .await
                .is_err(),
            "another consumer's election heard"
        );
    }
}
