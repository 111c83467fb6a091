//! The HTTP side: the dashboard's files, `/ws` (every snapshot as it is
//! built), the REST API, `/healthz` and `/metrics`.
//!
//! | route | what |
//! |---|---|
//! | `GET /api/snapshot` | the latest `DashboardSnapshot` (protobuf JSON) |
//! | `GET /api/alerts` | `{"alerts": [...]}`, newest first |
//! | `GET /api/decisions` | `{"decisions": [...]}`, the failover timeline, newest first |
//! | `GET /api/history?region=R&service=S` | response time per interval (p50/p95; `&vantages=1` per vantage), the last rounds' status, uptime over 1 h and 24 h, from RG_HEALTH; `&endpoint=E` for one endpoint, `&window=1h` (up to 24h), `&buckets=60` |
//! | `POST /api/failovers/{id}/approve` | approve a planned failover (token); body `{"approver": "..."}` |
//! | `POST /api/failovers/{id}/reject` | reject it (token); body `{"approver": "...", "reason": "..."}` |
//! | `POST /api/faults` | a `FaultRequest` as JSON to the simulator (token) |
//! | `GET /ws` | WebSocket: the latest snapshot at once, then each new one |
//! | `GET /healthz` | `{"status": "ok", ...}` |
//! | `GET /metrics` | Prometheus text |
//!
//! Errors are JSON `{"error": "..."}` with a message for the caller; the
//! details stay in the gateway's log.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rg_proto::v1::FaultRequest;
use serde_json::json;
use tower_http::services::{ServeDir, ServeFile};

use crate::hub::{ActionError, Hub};

/// What the HTTP handlers need.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) hub: Arc<Hub>,
    pub(crate) ws_send_timeout: Duration,
    /// The vantages' agreement rule (the history's round statuses).
    pub(crate) quorum: rg_rounds::Quorum,
}

pub(crate) fn router(state: AppState, dashboard_dir: PathBuf) -> Router {
    let api = Router::new()
        .route("/api/snapshot", get(snapshot))
        .route("/api/alerts", get(alerts))
        .route("/api/decisions", get(decisions))
        .route("/api/history", get(history))
        .route("/api/failovers/{id}/approve", post(approve))
        .route("/api/failovers/{id}/reject", post(reject))
        .route("/api/faults", post(fault))
        .route("/ws", get(ws))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state);
    let index = dashboard_dir.join("index.html");
    if index.is_file() {
        api.fallback_service(ServeDir::new(&dashboard_dir).fallback(ServeFile::new(index)))
    } else {
        tracing::warn!(dir = %dashboard_dir.display(), "the dashboard is not built: the API works, / explains how to build it");
        let dir = dashboard_dir.display().to_string();
        api.fallback(move || std::future::ready(not_built(&dir)))
    }
}

fn not_built(dir: &str) -> Response {
    let body = format!(
        "<!doctype html><title>regionguard</title><h1>The dashboard is not built</h1>\
         <p>No <code>index.html</code> in <code>{dir}</code>. Run <code>scripts/install-deps.sh</code> \
         (or <code>npm ci &amp;&amp; npm run build</code> in <code>dashboard/</code>), or point \
         <code>gateway.dashboard_dir</code> at a built dashboard.</p>\
         <p>The API works: <a href=\"/api/snapshot\">/api/snapshot</a>.</p>"
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

impl IntoResponse for ActionError {
    fn into_response(self) -> Response {
        let status = match &self {
            ActionError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ActionError::Disabled => StatusCode::FORBIDDEN,
            ActionError::NotFound(_) => StatusCode::NOT_FOUND,
            ActionError::Refused(_) => StatusCode::CONFLICT,
            ActionError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ActionError::Invalid(_) => StatusCode::BAD_REQUEST,
        };
        error(status, self.to_string())
    }
}

fn json_bytes(body: bytes::Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn snapshot(State(s): State<AppState>) -> Response {
    match s.hub.latest() {
        Some(p) => json_bytes(p.json.clone()),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no snapshot yet: the gateway is reading the streams (or waiting for NATS)",
        ),
    }
}

async fn alerts(State(s): State<AppState>) -> Response {
    let body = {
        let view = s.hub.view();
        let alerts: Vec<_> = view.alerts().collect();
        serde_json::to_vec(&json!({ "alerts": alerts }))
    };
    match body {
        Ok(b) => json_bytes(b.into()),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not encode the alerts",
        ),
    }
}

async fn decisions(State(s): State<AppState>) -> Response {
    let body = {
        let view = s.hub.view();
        let decisions: Vec<_> = view.timeline().collect();
        serde_json::to_vec(&json!({ "decisions": decisions }))
    };
    match body {
        Ok(b) => json_bytes(b.into()),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not encode the decisions",
        ),
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryParams {
    region: String,
    service: String,
    #[serde(default)]
    endpoint: String,
    /// `1h`, `30m`, `24h` (humantime); default 1 h.
    #[serde(default)]
    window: String,
    #[serde(default)]
    buckets: Option<u32>,
    #[serde(default)]
    vantages: Option<String>,
}

/// How long one history read may take.
const HISTORY_READ: Duration = Duration::from_secs(10);

async fn history(
    State(s): State<AppState>,
    query: Result<axum::extract::Query<HistoryParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(p)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "ask /api/history?region=us-east-1&service=dynamodb (optional: endpoint, window=1h up to 24h, buckets=60, vantages=1)",
        );
    };
    for (what, v) in [("region", &p.region), ("service", &p.service)] {
        if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return error(StatusCode::BAD_REQUEST, format!("bad {what} {v:?}"));
        }
    }
    let window = if p.window.is_empty() {
        Duration::from_secs(3600)
    } else {
        match humantime::parse_duration(&p.window) {
            Ok(w) if !w.is_zero() && w <= crate::history::MAX_WINDOW => w,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("bad window {:?}: a duration up to 24h, e.g. 1h", p.window),
                )
            }
        }
    };
    let Some(bus) = s.hub.bus() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "not connected to NATS yet");
    };
    let query = crate::history::Query {
        region: p.region.clone(),
        service: p.service.clone(),
        endpoint: (!p.endpoint.is_empty()).then(|| p.endpoint.clone()),
        window,
        buckets: p.buckets.unwrap_or(60),
        per_vantage: p
            .vantages
            .as_deref()
            .is_some_and(|v| v == "1" || v == "true"),
    };
    let now = rg_bus::unix_now_ms();
    let stream = bus.subjects.stream(rg_bus::Stream::Health);
    let filter = bus.subjects.health(&p.region, &p.service);
    // One read from a day back: the window's details and the day's uptime.
    let agg = crate::history::Aggregator::new(query, s.quorum, now);
    let from = rg_bus::tail::From::Time(agg.start());
    let read = rg_bus::tail::fold_once::<rg_proto::v1::HealthEvent, _>(
        &bus.js,
        &stream,
        &filter,
        from,
        HISTORY_READ,
        agg,
        |agg, m| agg.add(&m.message),
    )
    .await;
    let history = match read {
        Ok(agg) => agg.finish(),
        Err(e) => {
            tracing::warn!(region = %p.region, service = %p.service, error = %e, "history read failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("could not read the history: {e}"),
            );
        }
    };
    Json(history).into_response()
}

/// The token after `Bearer ` in the Authorization header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AnswerBody {
    /// Who answers (recorded in the audit trail).
    approver: String,
    /// Why (a rejection's reason, recorded with it).
    reason: String,
}

async fn approve(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    answer(s, id, headers, body, false).await
}

async fn reject(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    answer(s, id, headers, body, true).await
}

/// An approval or a rejection of failover `id`, by the token's holder.
async fn answer(
    s: AppState,
    id: String,
    headers: HeaderMap,
    body: bytes::Bytes,
    reject: bool,
) -> Response {
    if let Err(e) = s.hub.authorize(bearer(&headers)) {
        return e.into_response();
    }
    let body: AnswerBody = if body.is_empty() {
        AnswerBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "bad body (expected {{\"approver\": \"alice\", \"reason\": \"...\"}}): {e}"
                    ),
                )
            }
        }
    };
    let actor = crate::hub::actor("http", &body.approver);
    let answered = if reject {
        s.hub.reject(&id, &actor, &body.reason).await
    } else {
        s.hub.approve(&id, &actor).await
    };
    match answered {
        Ok(d) => Json(json!({ "decision": d })).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn fault(State(s): State<AppState>, headers: HeaderMap, body: bytes::Bytes) -> Response {
    if let Err(e) = s.hub.authorize(bearer(&headers)) {
        return e.into_response();
    }
    let request: FaultRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("bad fault request (expected e.g. {{\"inject\": {{\"region\": \"us-east-1\", \"service\": \"dynamodb\", \"kind\": \"FAULT_KIND_EMPTY_ANSWER\"}}}}): {e}"),
            )
        }
    };
    match s.hub.fault(&request).await {
        Ok(reply) => Json(reply).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn healthz(State(s): State<AppState>) -> Response {
    let nats = match s.hub.bus() {
        Some(bus) if rg_bus::connect::is_connected(&bus.client) => "connected",
        Some(_) => "disconnected",
        None => "connecting",
    };
    let latest = s.hub.latest();
    let (code, status) = match rg_bus::metrics::nats_health() {
        Ok(()) => (axum::http::StatusCode::OK, "ok".to_owned()),
        Err(why) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, why),
    };
    let body = Json(json!({
        "status": status,
        "service": "gateway",
        "nats": nats,
        "snapshot_sequence": latest.as_ref().map_or(0, |p| p.snapshot.sequence),
        "snapshot_at_unix_ms": latest.as_ref().map_or(0, |p| p.snapshot.generated_at_unix_ms),
    }));
    (code, body).into_response()
}

async fn metrics() -> String {
    rg_bus::metrics::render()
}

/// Read buffer per WebSocket connection: clients send nothing but control
/// frames, and the library's default (128 KiB) made 1,000 clients cost
/// 140 MiB.
const WS_READ_BUFFER: usize = 4 * 1024;

async fn ws(State(s): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| push_snapshots(socket, s))
}

/// Sends the latest snapshot, then each new one, until the client leaves
/// or cannot keep up. A client that fell behind the shared queue skips
/// the oldest snapshots (counted); one that cannot take a snapshot within
/// `ws_send_timeout` is disconnected (counted), so it never holds the
/// others back: every client has its own task, and snapshots are encoded
/// once and shared.
async fn push_snapshots(mut socket: WebSocket, s: AppState) {
    let mut snapshots = s.hub.subscribe("websocket");
    loop {
        tokio::select! {
            next = snapshots.next() => {
                let Some(p) = next else {
                    // The gateway is stopping.
                    let _closing = socket.send(Message::Close(None)).await;
                    break;
                };
                let Ok(text) = std::str::from_utf8(&p.json) else { continue };
                let send = socket.send(Message::Text(text.to_owned().into()));
                match tokio::time::timeout(s.ws_send_timeout, send).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break, // the client went away
                    Err(_) => {
                        snapshots.watcher().dropped("send timed out");
                        break;
                    }
                }
            }
            incoming = socket.recv() => match incoming {
                // Clients only listen; pings are answered by the library.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
}
