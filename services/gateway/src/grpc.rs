//! The gRPC `ControlService` (proto/regionguard/v1/control.proto).
//! Read-only calls are open; `ApproveFailover` and `InjectFault` need
//! `authorization: Bearer <token>` (see [`crate::config::Access`]).

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use rg_proto::v1::control_service_server::ControlService;
use rg_proto::v1::{
    Alert, ApproveFailoverRequest, ApproveFailoverResponse, DashboardSnapshot, FaultReply,
    FaultRequest, GetSnapshotRequest, RejectFailoverRequest, RejectFailoverResponse, Severity,
    WatchAlertsRequest, WatchSnapshotsRequest,
};
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

use crate::hub::{ActionError, Hub};
use crate::telemetry::Watcher;

pub(crate) struct Control {
    pub(crate) hub: Arc<Hub>,
}

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl From<ActionError> for Status {
    fn from(e: ActionError) -> Self {
        let message = e.to_string();
        match e {
            ActionError::Unauthenticated => Status::unauthenticated(message),
            ActionError::Disabled => Status::permission_denied(message),
            ActionError::NotFound(_) => Status::not_found(message),
            ActionError::Refused(_) => Status::failed_precondition(message),
            ActionError::Unavailable(_) => Status::unavailable(message),
            ActionError::Invalid(_) => Status::invalid_argument(message),
        }
    }
}

fn bearer<T>(request: &Request<T>) -> Option<&str> {
    request
        .metadata()
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

#[tonic::async_trait]
impl ControlService for Control {
    async fn get_snapshot(
        &self,
        _request: Request<GetSnapshotRequest>,
    ) -> Result<Response<DashboardSnapshot>, Status> {
        match self.hub.latest() {
            Some(p) => Ok(Response::new(p.snapshot.clone())),
            None => Err(Status::unavailable(
                "no snapshot yet: the gateway is reading the streams",
            )),
        }
    }

    type WatchSnapshotsStream = Streamed<DashboardSnapshot>;

    async fn watch_snapshots(
        &self,
        _request: Request<WatchSnapshotsRequest>,
    ) -> Result<Response<Self::WatchSnapshotsStream>, Status> {
        let mut snapshots = self.hub.subscribe("grpc");
        let stream = async_stream(move |tx| async move {
            while let Some(p) = snapshots.next().await {
                if tx.send(Ok(p.snapshot.clone())).await.is_err() {
                    break; // the client went away
                }
            }
        });
        Ok(Response::new(stream))
    }

    type WatchAlertsStream = Streamed<Alert>;

    async fn watch_alerts(
        &self,
        request: Request<WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let filter = request.into_inner();
        let min = filter.min_severity();
        let mut rx = self.hub.watch_alerts();
        let stopping = self.hub.stopping().clone();
        let stream = async_stream(move |tx| async move {
            let watcher = Watcher::connected("grpc_alerts");
            loop {
                let next = tokio::select! {
                    _ = stopping.cancelled() => break,
                    n = rx.recv() => n,
                };
                let alert = match next {
                    Ok(a) => a,
                    Err(RecvError::Lagged(n)) => {
                        watcher.skipped(n);
                        continue;
                    }
                    Err(RecvError::Closed) => break,
                };
                let severe_enough = min == Severity::Unspecified || alert.severity >= min as i32;
                let in_region = filter.region.is_empty() || alert.region == filter.region;
                if severe_enough && in_region && tx.send(Ok(alert)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn approve_failover(
        &self,
        request: Request<ApproveFailoverRequest>,
    ) -> Result<Response<ApproveFailoverResponse>, Status> {
        self.hub.authorize(bearer(&request))?;
        let r = request.into_inner();
        let actor = answering(&r.failover_id, &r.approver)?;
        let decision = self.hub.approve(&r.failover_id, &actor).await?;
        Ok(Response::new(ApproveFailoverResponse {
            decision: Some(decision),
        }))
    }

    async fn reject_failover(
        &self,
        request: Request<RejectFailoverRequest>,
    ) -> Result<Response<RejectFailoverResponse>, Status> {
        self.hub.authorize(bearer(&request))?;
        let r = request.into_inner();
        let actor = answering(&r.failover_id, &r.approver)?;
        let decision = self.hub.reject(&r.failover_id, &actor, &r.reason).await?;
        Ok(Response::new(RejectFailoverResponse {
            decision: Some(decision),
        }))
    }

    async fn inject_fault(
        &self,
        request: Request<FaultRequest>,
    ) -> Result<Response<FaultReply>, Status> {
        self.hub.authorize(bearer(&request))?;
        Ok(Response::new(self.hub.fault(&request.into_inner()).await?))
    }
}

/// The audit trail's actor of an answer to failover `id` by `approver`.
fn answering(id: &str, approver: &str) -> Result<String, Status> {
    if id.is_empty() {
        return Err(Status::invalid_argument("failover_id is empty"));
    }
    Ok(crate::hub::actor("grpc", approver))
}

/// A response stream fed by a task: `body` gets the sending half and runs
/// until the client goes away (the channel closes) or it returns.
fn async_stream<T, F, Fut>(body: F) -> Streamed<T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(body(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
