//! `regionguard bench snapshot`: the time to build one dashboard snapshot
//! (trend point, figures, cards, JSON) from a view of many endpoints, next
//! to a peer measured in the same run: decoding one round of the same
//! endpoints' `HealthEvent`s from protobuf with prost, the least work any
//! consumer does per interval. The ratio says how the snapshot compares
//! with merely reading the round.

use prost::Message;
use rg_proto::v1::{HealthEvent, Status};
use tokio::time::Instant;

use crate::hub::Published;
use crate::view::{Limits, View};

/// What to build.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotBench {
    /// Endpoints in the view.
    pub endpoints: usize,
    /// Vantage points observing each endpoint.
    pub vantages: usize,
    /// Regions the endpoints are spread over.
    pub regions: usize,
    /// Services per region.
    pub services: usize,
    /// Snapshots to build (and rounds to decode).
    pub iterations: usize,
}

/// Timings, milliseconds.
#[derive(Debug, Clone)]
pub struct SnapshotReport {
    /// Snapshot build times (trend point, figures, cards, JSON), sorted.
    pub build_ms: Vec<f64>,
    /// Times to decode one round of events with prost, sorted.
    pub decode_round_ms: Vec<f64>,
    /// Times to take one round of decoded events into the view, sorted.
    pub ingest_round_ms: Vec<f64>,
    /// Size of one snapshot as JSON, bytes.
    pub json_bytes: usize,
    /// Events in one round.
    pub events_per_round: usize,
}

/// A median-ish quantile of sorted samples.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One round of events: every endpoint seen by every vantage at `at_ms`,
/// 90 % healthy, 7 % warning, 3 % critical, times spread 1–150 ms.
fn round(b: &SnapshotBench, at_ms: i64, seed: &mut u64) -> Vec<HealthEvent> {
    let mut next = || {
        // xorshift: deterministic, no dependency.
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    let mut events = Vec::with_capacity(b.endpoints * b.vantages);
    for i in 0..b.endpoints {
        let region = format!("region-{}", i % b.regions.max(1));
        let service = format!("service-{}", (i / b.regions.max(1)) % b.services.max(1));
        let endpoint = format!("e{i}.{service}.{region}.example.com");
        for v in 0..b.vantages {
            let roll = next() % 100;
            let status = match roll {
                0..=89 => Status::Healthy,
                90..=96 => Status::Warning,
                _ => Status::Critical,
            };
            let mut e = HealthEvent {
                region: region.clone(),
                service: service.clone(),
                endpoint: endpoint.clone(),
                vantage: format!("{region}-v{v}"),
                resolver: "127.0.0.1:53".into(),
                observed_at_unix_ms: at_ms,
                response_time_us: 1_000 + next() % 150_000,
                round_id: (at_ms / 1000) as u64,
                ..Default::default()
            };
            e.set_status(status);
            events.push(e);
        }
    }
    events
}

/// Runs the benchmark.
pub fn run(b: SnapshotBench) -> SnapshotReport {
    let interval_ms = 1_000;
    let mut view = View::new(Limits {
        quorum: rg_rounds::Quorum::Majority,
        stale_after_ms: 3 * interval_ms,
        interval_ms,
        trend_points: 20,
        alerts: 50,
        timeline: 50,
    });
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let start_ms = 1_800_000_000_000i64;
    let (mut build_ms, mut decode_ms, mut ingest_ms) = (Vec::new(), Vec::new(), Vec::new());
    let mut json_bytes = 0;
    let mut events_per_round = 0;
    for k in 0..b.iterations.max(1) + 20 {
        let at = start_ms + k as i64 * interval_ms;
        let encoded: Vec<Vec<u8>> = round(&b, at - 500, &mut seed)
            .iter()
            .map(Message::encode_to_vec)
            .collect();
        events_per_round = encoded.len();
        let t = Instant::now();
        let decoded: Vec<HealthEvent> = encoded
            .iter()
            .filter_map(|bytes| HealthEvent::decode(bytes.as_slice()).ok())
            .collect();
        let decode = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        for e in &decoded {
            view.observe(e);
        }
        let ingest = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        view.advance_to(at);
        let (snapshot, _stale) = view.snapshot(at);
        let published = Published::new(snapshot);
        let build = t.elapsed().as_secs_f64() * 1e3;
        json_bytes = published.json.len();
        // The first 20 rounds fill the trend window; measure the steady state.
        if k >= 20 {
            build_ms.push(build);
            decode_ms.push(decode);
            ingest_ms.push(ingest);
        }
    }
    for v in [&mut build_ms, &mut decode_ms, &mut ingest_ms] {
        v.sort_by(f64::total_cmp);
    }
    SnapshotReport {
        build_ms,
        decode_round_ms: decode_ms,
        ingest_round_ms: ingest_ms,
        json_bytes,
        events_per_round,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_benchmark_builds_snapshots_of_every_endpoint() {
        let r = run(SnapshotBench {
            endpoints: 200,
            vantages: 3,
            regions: 4,
            services: 5,
            iterations: 2,
        });
        assert_eq!(r.build_ms.len(), 2);
        assert_eq!(r.events_per_round, 600);
        assert!(r.json_bytes > 1000);
    }
}
