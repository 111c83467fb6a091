//! A service's (or one endpoint's) history, read from RG_HEALTH on demand
//! for the dashboard: response time per interval, the status of the last
//! rounds, and uptime over the last hour and day.
//!
//! What the figures mean (the page says it too):
//! - **Response time**: of the lookups that got an answer (a failed
//!   lookup is fast or a timeout, neither a response time), every vantage
//!   and resolver, confirmations included; per bucket of the window, its
//!   median (p50) and 95th percentile (nearest rank), optionally per
//!   vantage. Failed lookups are counted per bucket.
//! - **A round's status**: what the vantages agree on for each endpoint
//!   in that probe round (each vantage votes the worst status it saw
//!   through any resolver; the gateway's quorum rule, as the cards), and
//!   for the service the worst of its endpoints.
//! - **Uptime**: healthy rounds / rounds with any observation, over the
//!   last hour and the last 24 hours (RG_HEALTH keeps a day by default);
//!   rounds nobody observed are not counted, so a silent region is not
//!   "up".

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use rg_proto::v1::{HealthEvent, Status};
use rg_rounds::Quorum;
use serde::Serialize;

use crate::view::{agreed_status, vote};

/// The longest window asked for.
pub(crate) const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Rounds listed in the status bar.
pub(crate) const ROUNDS_SHOWN: usize = 60;

/// What is asked: a service of a region, or one of its endpoints.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    pub(crate) region: String,
    pub(crate) service: String,
    /// One endpoint only (`None`: every endpoint of the service).
    pub(crate) endpoint: Option<String>,
    pub(crate) window: Duration,
    pub(crate) buckets: u32,
    /// Response time per vantage too.
    pub(crate) per_vantage: bool,
}

/// Response times of one bucket.
#[derive(Debug, Default)]
struct Samples {
    all: Vec<u64>,
    failed: u32,
    by_vantage: BTreeMap<String, Vec<u64>>,
}

/// One round: per endpoint, each vantage's worst status.
#[derive(Debug, Default)]
struct Round {
    at_ms: i64,
    votes: BTreeMap<String, BTreeMap<String, rg_proto::domain::Status>>,
}

/// Sums up health events as they are read.
#[derive(Debug)]
pub(crate) struct Aggregator {
    query: Query,
    quorum: Quorum,
    /// The window's start (buckets, endpoints, the status bar).
    from_ms: i64,
    /// The day's start: rounds are kept from here, for the day's uptime.
    day_from_ms: i64,
    to_ms: i64,
    bucket_ms: i64,
    buckets: Vec<Samples>,
    rounds: BTreeMap<u64, Round>,
    endpoints: std::collections::BTreeSet<String>,
}

impl Aggregator {
    /// For the window ending at `now_ms`.
    pub(crate) fn new(query: Query, quorum: Quorum, now_ms: i64) -> Self {
        let window_ms = i64::try_from(query.window.as_millis()).unwrap_or(i64::MAX);
        let n = query.buckets.clamp(1, 1440);
        let bucket_ms = (window_ms / i64::from(n)).max(1);
        Self {
            from_ms: now_ms - bucket_ms * i64::from(n),
            day_from_ms: now_ms - i64::try_from(MAX_WINDOW.as_millis()).unwrap_or(i64::MAX),
            to_ms: now_ms,
            bucket_ms,
            buckets: (0..n).map(|_| Samples::default()).collect(),
            rounds: BTreeMap::new(),
            endpoints: Default::default(),
            quorum,
            query,
        }
    }

    /// When the stream should be read from.
    /// One read serves the window and the day's uptime.
    pub(crate) fn start(&self) -> SystemTime {
        let from = u64::try_from(self.day_from_ms.min(self.from_ms).max(0)).unwrap_or(0);
        SystemTime::UNIX_EPOCH + Duration::from_millis(from)
    }

    /// Takes one event (others' regions, services and endpoints are
    /// skipped).
    pub(crate) fn add(&mut self, e: &HealthEvent) {
        if e.region != self.query.region || e.service != self.query.service {
            return;
        }
        if self
            .query
            .endpoint
            .as_ref()
            .is_some_and(|want| *want != e.endpoint)
        {
            return;
        }
        let at = e.observed_at_unix_ms;
        if at < self.day_from_ms.min(self.from_ms) || at > self.to_ms {
            return;
        }
        if at >= self.from_ms {
            self.endpoints.insert(e.endpoint.clone());
            let i = usize::try_from((at - self.from_ms) / self.bucket_ms)
                .unwrap_or(0)
                .min(self.buckets.len() - 1);
            let bucket = &mut self.buckets[i];
            if e.success {
                bucket.all.push(e.response_time_us);
                if self.query.per_vantage {
                    bucket
                        .by_vantage
                        .entry(e.vantage.clone())
                        .or_default()
                        .push(e.response_time_us);
                }
            } else {
                bucket.failed += 1;
            }
        }
        let Some(status) = vote(e.status()) else {
            return;
        };
        let round = self.rounds.entry(e.round_id).or_default();
        if round.at_ms == 0 || at < round.at_ms {
            round.at_ms = at;
        }
        let worst = round
            .votes
            .entry(e.endpoint.clone())
            .or_default()
            .entry(e.vantage.clone())
            .or_insert(status);
        if status > *worst {
            *worst = status;
        }
    }

    /// The history, with uptime over the last hour, the window and the day.
    pub(crate) fn finish(self) -> History {
        let rounds: Vec<RoundStatus> = self
            .rounds
            .iter()
            .filter_map(|(id, r)| {
                // The service: the worst of its endpoints' agreed status.
                let status = r
                    .votes
                    .values()
                    .filter_map(|votes| agreed_status(votes, self.quorum))
                    .max_by_key(|s| vote(*s))?;
                Some(RoundStatus {
                    round_id: *id,
                    at_unix_ms: r.at_ms,
                    status: name(status),
                })
            })
            .collect();
        let uptime_over = |since_ms: i64| {
            let counted: Vec<&RoundStatus> =
                rounds.iter().filter(|r| r.at_unix_ms >= since_ms).collect();
            let healthy = counted.iter().filter(|r| r.status == "healthy").count();
            Uptime {
                rounds: counted.len(),
                healthy_rounds: healthy,
                percent: if counted.is_empty() {
                    None
                } else {
                    Some(healthy as f64 * 100.0 / counted.len() as f64)
                },
            }
        };
        let last_hour = uptime_over(self.to_ms - 3_600_000);
        let whole = uptime_over(self.from_ms);
        let day = uptime_over(self.day_from_ms);
        let buckets = self
            .buckets
            .into_iter()
            .enumerate()
            .map(|(i, mut b)| Bucket {
                at_unix_ms: self.from_ms + self.bucket_ms * (i as i64 + 1),
                answered: b.all.len(),
                failed: b.failed,
                p50_us: percentile(&mut b.all, 50),
                p95_us: percentile(&mut b.all, 95),
                vantages: b
                    .by_vantage
                    .into_iter()
                    .map(|(v, mut t)| (v, percentile(&mut t, 50)))
                    .collect(),
            })
            .collect();
        // The status bar: the window's last rounds.
        let in_window: Vec<RoundStatus> = rounds
            .iter()
            .filter(|r| r.at_unix_ms >= self.from_ms)
            .cloned()
            .collect();
        let shown = in_window.len().saturating_sub(ROUNDS_SHOWN);
        History {
            region: self.query.region,
            service: self.query.service,
            endpoint: self.query.endpoint.unwrap_or_default(),
            endpoints: self.endpoints.into_iter().collect(),
            from_unix_ms: self.from_ms,
            to_unix_ms: self.to_ms,
            bucket_ms: self.bucket_ms,
            buckets,
            uptime_1h: last_hour,
            uptime_window: whole,
            uptime_24h: day,
            rounds: in_window[shown..].to_vec(),
            definition: DEFINITION,
        }
    }
}

/// How the page explains the figures.
const DEFINITION: &str =
    "response time: p50 and p95 of the lookups that got an answer, per interval; \
a round's status: what the vantages agree on per endpoint, the worst endpoint for the service; \
uptime: healthy rounds / rounds observed (rounds nobody observed are not counted)";

/// The nearest-rank percentile (`None` for no samples). Sorts `v`.
fn percentile(v: &mut [u64], p: u32) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    // Nearest rank: the smallest value with at least p % at or below it.
    let rank = (u64::from(p) * v.len() as u64).div_ceil(100).max(1);
    v.get(usize::try_from(rank).unwrap_or(usize::MAX) - 1)
        .copied()
        .or_else(|| v.last().copied())
}

fn name(s: Status) -> &'static str {
    match s {
        Status::Healthy => "healthy",
        Status::Warning => "warning",
        Status::Critical => "critical",
        Status::Unspecified => "unknown",
    }
}

/// What `/api/history` answers.
#[derive(Debug, Serialize)]
pub(crate) struct History {
    region: String,
    service: String,
    /// The endpoint asked for ("" for the whole service).
    endpoint: String,
    /// The endpoints seen in the window.
    endpoints: Vec<String>,
    from_unix_ms: i64,
    to_unix_ms: i64,
    bucket_ms: i64,
    buckets: Vec<Bucket>,
    /// Over the last hour.
    uptime_1h: Uptime,
    /// Over the whole window asked for.
    uptime_window: Uptime,
    /// Over the last 24 hours (the same read).
    uptime_24h: Uptime,
    /// The last rounds, oldest first.
    rounds: Vec<RoundStatus>,
    definition: &'static str,
}

#[derive(Debug, Serialize)]
struct Bucket {
    /// End of the bucket.
    at_unix_ms: i64,
    /// Lookups answered (their times make the percentiles).
    answered: usize,
    failed: u32,
    p50_us: Option<u64>,
    p95_us: Option<u64>,
    /// p50 per vantage (asked with `vantages=1`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    vantages: BTreeMap<String, Option<u64>>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Uptime {
    /// Healthy rounds / rounds, in percent; `None` without rounds.
    percent: Option<f64>,
    rounds: usize,
    healthy_rounds: usize,
}

#[derive(Debug, Clone, Serialize)]
struct RoundStatus {
    round_id: u64,
    at_unix_ms: i64,
    status: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(endpoint: &str, vantage: &str, round: u64, status: Status, us: u64) -> HealthEvent {
        let mut e = HealthEvent {
            region: "us-east-1".into(),
            service: "dynamodb".into(),
            endpoint: endpoint.into(),
            vantage: vantage.into(),
            round_id: round,
            observed_at_unix_ms: 1_000_000 + round as i64 * 1000,
            response_time_us: us,
            success: status != Status::Critical,
            ..Default::default()
        };
        e.set_status(status);
        e
    }

    fn query() -> Query {
        Query {
            region: "us-east-1".into(),
            service: "dynamodb".into(),
            endpoint: None,
            window: Duration::from_secs(60),
            buckets: 6,
            per_vantage: true,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut v, 50), Some(50));
        assert_eq!(percentile(&mut v, 95), Some(95));
        assert_eq!(percentile(&mut [7], 95), Some(7));
        assert_eq!(percentile(&mut [1, 2], 50), Some(1));
        assert_eq!(percentile(&mut [], 50), None);
    }

    #[test]
    fn rounds_take_the_vantages_agreement_and_uptime_counts_observed_rounds() {
        // Rounds 1..=10 at 1 s apart; the window is the last 60 s.
        let mut a = Aggregator::new(query(), Quorum::Majority, 1_000_000 + 11_000);
        for r in 1..=10u64 {
            // Two of three vantages see round 4 and 5 critical; one flaky
            // vantage sees round 8 critical (outvoted).
            let bad = r == 4 || r == 5;
            for (v, critical) in [("a", bad), ("b", bad), ("c", r == 8)] {
                let s = if critical {
                    Status::Critical
                } else {
                    Status::Healthy
                };
                a.add(&event(
                    "dynamodb.us-east-1.amazonaws.com",
                    v,
                    r,
                    s,
                    1000 * r,
                ));
            }
        }
        // Another service and another region are not counted.
        let mut other = event("ec2.us-east-1.amazonaws.com", "a", 3, Status::Critical, 5);
        other.service = "ec2".into();
        a.add(&other);
        let h = a.finish();
        let statuses: Vec<_> = h.rounds.iter().map(|r| r.status).collect();
        assert_eq!(statuses.len(), 10);
        assert_eq!(
            statuses.iter().filter(|s| **s == "critical").count(),
            2,
            "{statuses:?}"
        );
        assert_eq!(h.uptime_1h.rounds, 10);
        assert_eq!(h.uptime_1h.healthy_rounds, 8);
        assert_eq!(h.uptime_1h.percent, Some(80.0));
        // Answered lookups only make the times: 28 of 30 lookups.
        let answered: usize = h.buckets.iter().map(|b| b.answered).sum();
        let failed: u32 = h.buckets.iter().map(|b| b.failed).sum();
        assert_eq!((answered, failed), (25, 5));
        assert!(h.buckets.iter().any(|b| b.vantages.contains_key("c")));
    }
}
