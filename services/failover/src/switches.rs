//! The routing switches' HTTP endpoint: `GET /switch/<region>` answers 200
//! ("take traffic") or 503 ("drain") from the journal, for Route 53 health
//! checks that the user points at it (one per region, on the failover
//! records). Every replica serves the same answers. If the journal cannot
//! be read (NATS away), the last known answer stands: a bus outage must not
//! drain every region at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::service::Service;

#[derive(Clone)]
struct Switches {
    service: Arc<Service>,
    last_known: Arc<Mutex<HashMap<String, bool>>>,
}

pub(crate) async fn serve(
    listener: TcpListener,
    service: Arc<Service>,
    shutdown: CancellationToken,
) {
    let state = Switches {
        service,
        last_known: Arc::default(),
    };
    let app = Router::new()
        .route("/switch/{region}", get(switch))
        .route("/healthz", get(|| std::future::ready("ok\n")))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "the routing switch server stopped");
    }
}

async fn switch(
    State(s): State<Switches>,
    Path(region): Path<String>,
) -> (StatusCode, &'static str) {
    let read = s.service.journal.switch(&region).await;
    let take = {
        let mut known = s.last_known.lock().unwrap_or_else(|p| p.into_inner());
        match read {
            Ok(on) => {
                known.insert(region.clone(), on);
                on
            }
            Err(e) => {
                tracing::warn!(%region, error = %e, "routing switch unreadable; answering the last known state");
                known.get(&region).copied().unwrap_or(true)
            }
        }
    };
    if take {
        (StatusCode::OK, "take traffic\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "drain\n")
    }
}
