//! What the anomaly model sees of a health check.
//!
//! A [`Check`] is one observation (from a `HealthEvent`, or a row of a
//! recorded CSV). Its features:
//!
//! - `success`: 1 when the lookup succeeded, 0 when it failed;
//! - `response_time`: the lookup time in milliseconds;
//! - `hour`: hour of day (UTC) of the observation. It can only tell
//!   something once the model has seen a day of history: before that every
//!   row of a batch shares the hour and, in baseline mode, a new hour lies
//!   outside the trained range and would isolate every row. So the hour
//!   stays neutral (0) until the history spans [`HOUR_NEEDS`];
//! - `norm_latency`: the lookup time divided by the median of the same
//!   endpoint's (and vantage's) recent successful lookups. This is what makes
//!   a uniform slow-down visible: 30 % slower everywhere is 1.3 for every
//!   row, far outside a history of values near 1.0.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use ndarray::Array2;

/// How long the history must span before the hour of day is used.
pub const HOUR_NEEDS: Duration = Duration::from_secs(23 * 3600);

/// The floor of an endpoint's latency median in `norm_latency`, ms.
pub const NORM_FLOOR_MS: f64 = 1.0;

/// Successful lookups remembered per endpoint for its latency median.
const LATENCY_WINDOW: usize = 32;

/// One health check.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// When it was observed, unix ms.
    pub timestamp_ms: i64,
    /// Region.
    pub region: String,
    /// Service.
    pub service: String,
    /// The name probed.
    pub endpoint: String,
    /// Who observed it ("" when unknown).
    pub vantage: String,
    /// Whether the lookup succeeded.
    pub success: bool,
    /// Lookup time, ms (finite, >= 0).
    pub response_time_ms: f64,
}

impl Check {
    fn hour(&self) -> f64 {
        (self.timestamp_ms.div_euclid(3_600_000) % 24) as f64
    }
}

/// A feature of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    /// 1 = success, 0 = failure.
    Success,
    /// Lookup time, ms.
    ResponseTime,
    /// Hour of day, UTC.
    Hour,
    /// Lookup time over the endpoint's recent median.
    NormLatency,
}

impl Feature {
    /// Every feature, in the default order.
    pub const ALL: [Feature; 4] = [
        Feature::Success,
        Feature::ResponseTime,
        Feature::Hour,
        Feature::NormLatency,
    ];

    /// Its name in config, CSV headers and alert reasons.
    pub fn name(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::ResponseTime => "response_time",
            Self::Hour => "hour",
            Self::NormLatency => "norm_latency",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == s.trim())
    }
}

/// Per-endpoint latency medians, learned from accepted (normal) checks.
#[derive(Debug, Clone, Default)]
pub struct LatencyMedians {
    /// Endpoint, then vantage (nested so lookups need no allocation).
    recent: HashMap<String, HashMap<String, Window>>,
}

/// The recent successful lookups of one endpoint, with their median kept
/// up to date (computed on change, read for every row of every batch).
#[derive(Debug, Clone, Default)]
struct Window {
    values: VecDeque<f64>,
    median: f64,
}

impl LatencyMedians {
    /// Learns from a check the model accepted as normal.
    pub fn observe(&mut self, check: &Check) {
        if !check.success {
            return;
        }
        let window = self
            .recent
            .entry(check.endpoint.clone())
            .or_default()
            .entry(check.vantage.clone())
            .or_default();
        if window.values.len() == LATENCY_WINDOW {
            window.values.pop_front();
        }
        window.values.push_back(check.response_time_ms);
        let mut v: Vec<f64> = window.values.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        window.median = if v.len() % 2 == 0 {
            (v[mid - 1] + v[mid]) / 2.0
        } else {
            v[mid]
        };
    }

    /// The median of an endpoint's recent successful lookups, if any.
    pub fn median(&self, check: &Check) -> Option<f64> {
        self.recent
            .get(&check.endpoint)?
            .get(&check.vantage)
            .filter(|w| !w.values.is_empty())
            .map(|w| w.median)
    }
    /// `response_time / median`, 1.0 without history. The median is floored
    /// at [`NORM_FLOOR_MS`]: below a millisecond, differences are scheduling
    /// noise of the machine, not the health of a resolver, and a ratio of
    /// two such values would make noise look like an outage.
    pub fn normalized(&self, check: &Check) -> f64 {
        match self.median(check) {
            Some(m) => check.response_time_ms / m.max(NORM_FLOOR_MS),
            None => 1.0,
        }
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.recent.clear();
    }
}

/// The feature matrix of `checks` (rows in order, columns in `features`
/// order). `use_hour = false` makes the hour column 0.
pub fn matrix(
    checks: &[Check],
    features: &[Feature],
    medians: &LatencyMedians,
    use_hour: bool,
) -> Array2<f64> {
    let norms: Vec<f64> = checks.iter().map(|c| medians.normalized(c)).collect();
    matrix_with_norms(checks, &norms, features, use_hour)
}

/// As [`matrix`], with each check's `norm_latency` given (for history rows:
/// as it was when the row was seen, before the row itself joined its
/// endpoint's median; normalizing a row by a median it is part of would
/// pull it towards 1 and make new rows look more extreme than old ones).
pub fn matrix_with_norms(
    checks: &[Check],
    norms: &[f64],
    features: &[Feature],
    use_hour: bool,
) -> Array2<f64> {
    let mut x = Array2::zeros((checks.len(), features.len()));
    for (i, c) in checks.iter().enumerate() {
        for (j, f) in features.iter().enumerate() {
            x[[i, j]] = match f {
                Feature::Success => f64::from(u8::from(c.success)),
                Feature::ResponseTime => c.response_time_ms,
                Feature::Hour if use_hour => c.hour(),
                Feature::Hour => 0.0,
                Feature::NormLatency => norms.get(i).copied().unwrap_or(1.0),
            };
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn check(endpoint: &str, ms: f64, success: bool, ts: i64) -> Check {
        Check {
            timestamp_ms: ts,
            region: "us-east-1".into(),
            service: "ec2".into(),
            endpoint: endpoint.into(),
            vantage: "v".into(),
            success,
            response_time_ms: ms,
        }
    }

    #[test]
    fn features_of_a_check() {
        let mut b = LatencyMedians::default();
        for ms in [10.0, 12.0, 11.0] {
            b.observe(&check("a", ms, true, 0));
        }
        b.observe(&check("a", 2000.0, false, 0));
        let rows = [
            check("a", 22.0, true, 15 * 3_600_000 + 5),
            check("b", 5.0, false, 0),
        ];
        let x = matrix(&rows, &Feature::ALL, &b, true);
        assert_eq!(x.row(0).to_vec(), [1.0, 22.0, 15.0, 2.0]);
        assert_eq!(x.row(1).to_vec(), [0.0, 5.0, 0.0, 1.0]);
        let x = matrix(&rows, &Feature::ALL, &b, false);
        assert_eq!(x[[0, 2]], 0.0);
    }

    #[test]
    fn names_round_trip() {
        for f in Feature::ALL {
            assert_eq!(Feature::parse(f.name()), Some(f));
        }
        assert_eq!(Feature::parse("bogus"), None);
    }
}
