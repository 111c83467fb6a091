//! `regionguard bench snapshot` and `regionguard bench ws`: the gateway's
//! snapshot build time, and many WebSocket clients against a running
//! gateway (`scripts/bench_gateway.sh` runs both and measures the
//! gateway's CPU and memory).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use rg_gateway::bench::{quantile, SnapshotBench};

#[derive(Debug, Args)]
pub(crate) struct SnapshotArgs {
    /// Endpoints in the view.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    endpoints: usize,
    /// Vantage points per endpoint.
    #[arg(long, default_value_t = 3, value_name = "N")]
    vantages: usize,
    /// Regions.
    #[arg(long, default_value_t = 10, value_name = "N")]
    regions: usize,
    /// Services per region.
    #[arg(long, default_value_t = 50, value_name = "N")]
    services: usize,
    /// Snapshots to build.
    #[arg(long, default_value_t = 50, value_name = "N")]
    iterations: usize,
}

pub(crate) fn snapshot(args: SnapshotArgs) -> ExitCode {
    let r = rg_gateway::bench::run(SnapshotBench {
        endpoints: args.endpoints,
        vantages: args.vantages,
        regions: args.regions,
        services: args.services,
        iterations: args.iterations,
    });
    let q = |v: &[f64], p| quantile(v, p);
    let report = serde_json::json!({
        "endpoints": args.endpoints,
        "events_per_round": r.events_per_round,
        "snapshot_build_ms": { "p50": q(&r.build_ms, 0.5), "p95": q(&r.build_ms, 0.95), "max": q(&r.build_ms, 1.0) },
        "peer_prost_decode_round_ms": { "p50": q(&r.decode_round_ms, 0.5), "p95": q(&r.decode_round_ms, 0.95) },
        "ingest_round_ms": { "p50": q(&r.ingest_round_ms, 0.5), "p95": q(&r.ingest_round_ms, 0.95) },
        "build_over_decode": q(&r.build_ms, 0.5) / q(&r.decode_round_ms, 0.5).max(1e-9),
        "snapshot_json_bytes": r.json_bytes,
    });
    println!("{report}");
    ExitCode::SUCCESS
}

#[derive(Debug, Args)]
pub(crate) struct WsArgs {
    /// The gateway's HTTP address, e.g. 127.0.0.1:8080.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    gateway: String,
    /// WebSocket clients to hold open.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    clients: usize,
    /// How long to listen once all are connected.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    duration: Duration,
}

/// What one client saw.
#[derive(Debug, Default)]
struct Seen {
    received: u64,
    gaps: u64,
    delays_ms: Vec<f64>,
}

pub(crate) async fn ws(args: WsArgs) -> ExitCode {
    let url = format!("ws://{}/ws", args.gateway);
    let connected = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = tokio::sync::watch::channel(false);
    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        let (url, connected, failed, mut go, stop) = (
            url.clone(),
            connected.clone(),
            failed.clone(),
            start.1.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            let Ok((mut socket, _)) = tokio_tungstenite::connect_async(&url).await else {
                failed.fetch_add(1, Ordering::Relaxed);
                return seen;
            };
            connected.fetch_add(1, Ordering::Relaxed);
            let _ready = go.wait_for(|g| *g).await.is_ok();
            let mut last: Option<u64> = None;
            loop {
                let message = tokio::select! {
                    _ = stop.cancelled() => break,
                    m = socket.next() => m,
                };
                let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) = message else {
                    if message.is_none() {
                        break;
                    }
                    continue;
                };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                let n = |key: &str| {
                    v[key]
                        .as_str()
                        .and_then(|s| s.parse::<i64>().ok())
                        .unwrap_or(0)
                };
                let sequence = n("sequence") as u64;
                seen.received += 1;
                if let Some(l) = last {
                    seen.gaps += sequence.saturating_sub(l + 1);
                }
                last = Some(sequence);
                seen.delays_ms
                    .push((rg_bus::unix_now_ms() - n("generated_at_unix_ms")) as f64);
            }
            seen
        }));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while connected.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < args.clients as u64 {
        if tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "bench ws: {} clients connected to {url} ({} failed); listening for {:?}",
        connected.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        args.duration
    );
    let _started = start.0.send(true);
    tokio::time::sleep(args.duration).await;
    stop.cancel();
    let mut received = Vec::new();
    let mut gaps = 0;
    let mut delays = Vec::new();
    for t in tasks {
        if let Ok(seen) = t.await {
            received.push(seen.received as f64);
            gaps += seen.gaps;
            delays.extend(seen.delays_ms);
        }
    }
    received.sort_by(f64::total_cmp);
    delays.sort_by(f64::total_cmp);
    let report = serde_json::json!({
        "clients": args.clients,
        "connected": connected.load(Ordering::Relaxed),
        "failed": failed.load(Ordering::Relaxed),
        "snapshots_per_client": { "min": quantile(&received, 0.0), "p50": quantile(&received, 0.5), "max": quantile(&received, 1.0) },
        "skipped_total": gaps,
        "delivery_delay_ms": { "p50": quantile(&delays, 0.5), "p95": quantile(&delays, 0.95), "p99": quantile(&delays, 0.99) },
    });
    println!("{report}");
    if failed.load(Ordering::Relaxed) > 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
