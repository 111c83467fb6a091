//! Faults through the simulator's NATS control subject, and the
//! DynamoDB outage most tests start from.

use super::*;

/// Sends a fault request to the simulator over NATS.
pub(crate) async fn fault_request(client: &async_nats::Client, action: Action) -> FaultReply {
    let reply = client
        .request(
            "rg.sim.faults",
            FaultRequest {
                action: Some(action),
            }
            .encode_to_vec()
            .into(),
        )
        .await
        .expect("fault request answered");
    FaultReply::decode(reply.payload.as_ref()).expect("fault reply decodes")
}

/// Injects a fault on one service of one region.
pub(crate) async fn inject(
    client: &async_nats::Client,
    region: &str,
    service: &str,
    kind: FaultKind,
    latency_ms: u32,
) -> FaultReply {
    let reply = fault_request(
        client,
        Action::Inject(FaultSpec {
            region: region.into(),
            service: service.into(),
            kind: kind as i32,
            latency_ms,
            ..Default::default()
        }),
    )
    .await;
    assert!(reply.error.is_empty(), "inject refused: {}", reply.error);
    reply
}

/// Clears every fault.
pub(crate) async fn clear_all(client: &async_nats::Client) {
    let reply = fault_request(client, Action::Clear(FaultSpec::default())).await;
    assert!(reply.error.is_empty(), "clear refused: {}", reply.error);
    assert!(
        reply.active.is_empty(),
        "faults left after clear: {:?}",
        reply.active
    );
}

/// What a DynamoDB outage in us-east-1 raises: the threshold alert and the
/// cascade alert, both firing.
pub(crate) struct Outage {
    pub(crate) threshold: rg_proto::v1::Alert,
    pub(crate) cascade: rg_proto::v1::Alert,
}

/// Injects a DynamoDB empty answer in us-east-1 and waits (20 s each) for
/// the critical threshold alert and the critical cascade alert.
pub(crate) async fn dynamodb_outage(client: &async_nats::Client, alerts: &mut AlertFeed) -> Outage {
    use rg_proto::v1::AlertState;
    inject(client, "us-east-1", "dynamodb", FaultKind::EmptyAnswer, 0).await;
    let (_, threshold) = alerts
        .wait_for("the threshold alert", Duration::from_secs(20), |s, a| {
            s == "rg.alerts.threshold.critical" && a.state() == AlertState::Firing
        })
        .await;
    let (_, cascade) = alerts
        .wait_for("the cascade alert", Duration::from_secs(20), |s, a| {
            s == "rg.alerts.cascade.critical" && a.state() == AlertState::Firing
        })
        .await;
    Outage { threshold, cascade }
}
