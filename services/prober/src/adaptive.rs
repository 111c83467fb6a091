//! Adaptive warnings: each endpoint's own recent latency, per resolver.
//!
//! The fixed thresholds of the status rules cannot suit every endpoint: a
//! name that normally answers in 3 ms and now takes 60 ms is still
//! "healthy" under a 100 ms threshold, and a name on another continent
//! that always takes 90 ms is a permanent DynamoDB "warning". With
//! `[prober.adaptive]` on, each (endpoint, resolver) keeps a histogram of
//! its successful lookup times over the last `window`, and a lookup is a
//! warning when it is slower than `max(factor × q, q + margin)`, where `q`
//! is the `quantile` of that history. Failed lookups and lookups above the
//! fixed `warning_max` stay critical: adaptation never hides an outage.
//!
//! What joins the history: every successful lookup while the history is
//! still short (fewer than `min_samples`; the fixed thresholds apply
//! meanwhile), then only lookups within the adaptive limit. So a slow-down
//! stays a warning instead of becoming normal after a few rounds; if it
//! lasts, the old samples age out of the window, the history is short
//! again, and the new level is learnt: a lasting change is accepted after
//! one `window`.
//!
//! The history is a ring of `SLOTS` histograms, each covering
//! `window / SLOTS`, with logarithmic buckets (6 per doubling, about 12 %
//! wide) from 10 µs to about a minute: 1.6 KiB per endpoint and resolver
//! however many lookups a window holds. A quantile is the upper edge of the
//! bucket that reaches it, so it errs up by at most a bucket width.

use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;

/// Slots of a window.
const SLOTS: usize = 6;
/// Buckets per doubling of the lookup time.
const PER_DOUBLING: f64 = 6.0;
/// Lower edge of the first bucket above bucket 0, microseconds.
const FIRST_US: f64 = 10.0;
/// Buckets: 0 holds [0, 10 µs), the last everything from about 60 s up.
const BUCKETS: usize = 137;

/// `[prober.adaptive]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveConfig {
    /// Warn on an endpoint's own recent latency, besides the fixed
    /// thresholds. Default `false`.
    pub enabled: bool,
    /// How far back the history reaches. Default `1h`.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// The quantile of the history that is "normal" for the endpoint,
    /// in (0, 1). Default `0.99`.
    pub quantile: f64,
    /// A lookup slower than `factor` × the quantile is a warning (at
    /// least 1). Default `2.0`.
    pub factor: f64,
    /// ... and slower than the quantile plus `margin` (so a 0.3 ms
    /// endpoint is not a warning at 0.7 ms). Default `10ms`.
    #[serde(with = "humantime_serde")]
    pub margin: Duration,
    /// Successful lookups in the window before the history is used; the
    /// fixed thresholds apply until then. Default `30`.
    pub min_samples: u32,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            window: Duration::from_secs(3600),
            quantile: 0.99,
            factor: 2.0,
            margin: Duration::from_millis(10),
            min_samples: 30,
        }
    }
}

impl AdaptiveConfig {
    /// The slowest lookup time that is not a warning for an endpoint whose
    /// history's quantile is `q`.
    pub fn limit(&self, q: Duration) -> Duration {
        // Saturating: a huge factor or margin means "never a warning", not
        // a panic on every lookup.
        Duration::try_from_secs_f64(q.as_secs_f64() * self.factor)
            .unwrap_or(Duration::MAX)
            .max(q.saturating_add(self.margin))
    }

    /// Problems with the values, as (key, message) under `adaptive.`.
    pub(crate) fn problems(&self, interval: Duration) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if !self.enabled {
            return p;
        }
        if !(self.quantile > 0.0 && self.quantile < 1.0) {
            p.push((
                "adaptive.quantile",
                format!("{} is outside (0, 1)", self.quantile),
            ));
        }
        if !(1.0..=1000.0).contains(&self.factor) {
            p.push((
                "adaptive.factor",
                format!("{} is outside 1..=1000", self.factor),
            ));
        }
        if self.min_samples == 0 {
            p.push(("adaptive.min_samples", "must be at least 1".into()));
        }
        if self.window.as_millis() < SLOTS as u128 {
            p.push(("adaptive.window", "must be at least 6ms".into()));
        } else if !interval.is_zero() {
            let rounds = self.window.as_secs_f64() / interval.as_secs_f64();
            if rounds < f64::from(self.min_samples) {
                p.push((
                    "adaptive.window",
                    format!(
                        "{:?} holds only {rounds:.0} rounds of {interval:?}, fewer than min_samples ({}): the history would never be used",
                        self.window, self.min_samples
                    ),
                ));
            }
        }
        p
    }
}

/// The histograms of one (endpoint, resolver).
#[derive(Debug, Clone)]
struct History {
    /// Which slot period each slot holds (`unix ms / slot length`).
    period: [u64; SLOTS],
    counts: [[u16; BUCKETS]; SLOTS],
}

impl History {
    fn new() -> Self {
        Self {
            period: [u64::MAX; SLOTS],
            counts: [[0; BUCKETS]; SLOTS],
        }
    }

    /// Is slot `i` within the window ending in period `now`?
    fn live(&self, i: usize, now: u64) -> bool {
        let p = self.period[i];
        p != u64::MAX && p <= now && now - p < SLOTS as u64
    }

    fn total(&self, now: u64) -> u32 {
        (0..SLOTS)
            .filter(|&i| self.live(i, now))
            .map(|i| self.counts[i].iter().map(|&c| u32::from(c)).sum::<u32>())
            .sum()
    }

    /// The `q` quantile of the live slots, when they hold `min` samples.
    fn quantile(&self, now: u64, q: f64, min: u32) -> Option<Duration> {
        let total = self.total(now);
        if total < min || total == 0 {
            return None;
        }
        let rank = ((q * f64::from(total)).ceil() as u32).clamp(1, total);
        let mut seen = 0u32;
        for b in 0..BUCKETS {
            seen += (0..SLOTS)
                .filter(|&i| self.live(i, now))
                .map(|i| u32::from(self.counts[i][b]))
                .sum::<u32>();
            if seen >= rank {
                return Some(upper_edge(b));
            }
        }
        Some(upper_edge(BUCKETS - 1))
    }

    fn add(&mut self, now: u64, took: Duration) {
        let i = (now % SLOTS as u64) as usize;
        if self.period[i] != now {
            self.period[i] = now;
            self.counts[i] = [0; BUCKETS];
        }
        let b = bucket(took);
        self.counts[i][b] = self.counts[i][b].saturating_add(1);
    }
}

/// The bucket of a lookup time.
fn bucket(took: Duration) -> usize {
    let us = took.as_secs_f64() * 1e6;
    if us < FIRST_US {
        return 0;
    }
    let i = ((us / FIRST_US).log2() * PER_DOUBLING).floor() as usize + 1;
    i.min(BUCKETS - 1)
}

/// The upper edge of a bucket (the lower edge of the next).
fn upper_edge(b: usize) -> Duration {
    Duration::from_secs_f64(FIRST_US * 2f64.powf(b as f64 / PER_DOUBLING) / 1e6)
}

/// What the history says about one lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judgement {
    /// The history's quantile before this lookup, when it holds enough.
    pub baseline: Option<Duration>,
    /// True when the lookup is slower than the adaptive limit.
    pub above: bool,
}

/// The histories of every (endpoint, resolver) of a prober.
#[derive(Debug)]
pub struct AdaptiveHistory {
    config: AdaptiveConfig,
    slot_ms: u64,
    // One std Mutex per history: lookups of different endpoints never wait
    // for each other, and none is held across an await.
    histories: Vec<Mutex<Option<Box<History>>>>,
}

impl AdaptiveHistory {
    /// Histories for `n` (endpoint, resolver) pairs.
    pub fn new(config: AdaptiveConfig, n: usize) -> Self {
        let slot_ms = (config.window.as_millis() as u64 / SLOTS as u64).max(1);
        Self {
            config,
            slot_ms,
            histories: (0..n).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AdaptiveConfig {
        &self.config
    }

    /// Judges a successful lookup of pair `i` that took `took`, sent at
    /// `at_unix_ms`, against the history, and adds it to the history when
    /// it belongs there (see the module's documentation). Failed lookups
    /// are neither judged nor learnt: call [`AdaptiveHistory::baseline`].
    pub fn observe(&self, i: usize, at_unix_ms: i64, took: Duration) -> Judgement {
        let Some(slot) = self.histories.get(i) else {
            return Judgement {
                baseline: None,
                above: false,
            };
        };
        let now = at_unix_ms.max(0) as u64 / self.slot_ms;
        let mut guard = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let history = guard.get_or_insert_with(|| Box::new(History::new()));
        let baseline = history.quantile(now, self.config.quantile, self.config.min_samples);
        let above = baseline.is_some_and(|q| took > self.config.limit(q));
        if !above {
            history.add(now, took);
        }
        Judgement { baseline, above }
    }

    /// The current quantile of pair `i`, when its history holds enough.
    pub fn baseline(&self, i: usize, at_unix_ms: i64) -> Option<Duration> {
        let now = at_unix_ms.max(0) as u64 / self.slot_ms;
        let guard = self
            .histories
            .get(i)?
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard
            .as_ref()?
            .quantile(now, self.config.quantile, self.config.min_samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: f64) -> Duration {
        Duration::from_secs_f64(n / 1000.0)
    }

    fn on() -> AdaptiveConfig {
        AdaptiveConfig {
            enabled: true,
            ..Default::default()
        }
    }

    /// Feeds `n` lookups of `took(k)` 10 s apart from `start`; returns
    /// the judgements and the time after the last.
    fn feed(
        b: &AdaptiveHistory,
        start: i64,
        n: usize,
        took: impl Fn(usize) -> Duration,
    ) -> (Vec<Judgement>, i64) {
        let mut t = start;
        let mut out = Vec::new();
        for k in 0..n {
            out.push(b.observe(0, t, took(k)));
            t += 10_000;
        }
        (out, t)
    }

    #[test]
    fn buckets_are_about_twelve_percent_wide_and_cover_a_minute() {
        assert_eq!(bucket(Duration::ZERO), 0);
        assert_eq!(bucket(Duration::from_micros(9)), 0);
        assert_eq!(bucket(Duration::from_micros(10)), 1);
        for us in [15u64, 300, 3_000, 60_000, 900_000, 30_000_000] {
            let d = Duration::from_micros(us);
            let b = bucket(d);
            assert!(
                upper_edge(b - 1) <= d && d < upper_edge(b),
                "{us} µs in bucket {b}"
            );
            let width = upper_edge(b).as_secs_f64() / upper_edge(b - 1).as_secs_f64();
            assert!((width - 1.122).abs() < 0.01, "{width}");
        }
        assert!(upper_edge(BUCKETS - 2) >= Duration::from_secs(55));
        assert_eq!(bucket(Duration::from_secs(3600)), BUCKETS - 1);
    }

    #[test]
    fn a_3ms_endpoint_at_60ms_is_noticed() {
        let b = AdaptiveHistory::new(on(), 1);
        // Three milliseconds, give or take a little.
        let (warm, t) = feed(&b, 0, 60, |k| ms(2.5 + (k % 5) as f64 * 0.25));
        assert!(warm.iter().all(|j| !j.above), "normal lookups never warn");
        assert_eq!(
            warm[29].baseline, None,
            "fewer than min_samples: no baseline"
        );
        let q = warm[59].baseline.expect("a baseline after 30 samples");
        assert!(q >= ms(3.5) && q < ms(4.0), "{q:?}");
        let j = b.observe(0, t, ms(60.0));
        assert!(j.above, "60 ms against a 3.5 ms normal: {j:?}");
        // The limit is max(2 × q, q + 10 ms): 14.5 ms is above it, 13 ms
        // is not (and joins the history).
        assert!(b.observe(0, t, ms(14.5)).above);
        assert!(!b.observe(0, t, ms(13.0)).above);
    }

    #[test]
    fn a_90ms_endpoint_on_another_continent_is_not_a_permanent_warning() {
        let b = AdaptiveHistory::new(on(), 1);
        let (j, _) = feed(&b, 0, 400, |k| ms(85.0 + (k % 11) as f64));
        assert!(j.iter().all(|j| !j.above));
        let q = j[399].baseline.unwrap();
        assert!(q >= ms(95.0) && q < ms(107.0), "{q:?}");
    }

    #[test]
    fn a_lasting_slowdown_stays_a_warning_until_the_normal_samples_age_out() {
        let config = on();
        let (window, slot) = (
            config.window.as_millis() as i64,
            config.window.as_millis() as i64 / 6,
        );
        let b = AdaptiveHistory::new(config, 1);
        let (_, t) = feed(&b, 0, 100, |_| ms(3.0));
        let last_normal = t - 10_000;
        // 60 ms from now on, one lookup every 10 s.
        let (slow, _) = feed(&b, t, 500, |_| ms(60.0));
        let accepted = slow.iter().position(|j| !j.above).expect("learnt at last");
        assert!(
            slow[..accepted].iter().all(|j| j.above),
            "a warning all along"
        );
        assert!(
            slow[accepted..].iter().all(|j| !j.above),
            "{:?}",
            &slow[accepted..]
        );
        let accepted_at = t + accepted as i64 * 10_000;
        assert!(
            (last_normal + window - slot..=last_normal + window + slot).contains(&accepted_at),
            "accepted {} s after the last normal lookup",
            (accepted_at - last_normal) / 1000
        );
        assert!(slow[499].baseline.unwrap() >= ms(60.0));
    }

    #[test]
    fn old_samples_leave_the_window() {
        let b = AdaptiveHistory::new(on(), 1);
        let (_, _) = feed(&b, 0, 40, |_| ms(5.0));
        assert!(b.baseline(0, 390_000).is_some());
        assert_eq!(b.baseline(0, 3_600_000 + 600_000 + 400_000), None);
    }

    #[test]
    fn pairs_are_independent_and_out_of_range_is_harmless() {
        let b = AdaptiveHistory::new(on(), 2);
        for k in 0..40 {
            b.observe(0, k * 1000, ms(1.0));
            b.observe(1, k * 1000, ms(80.0));
        }
        assert!(b.observe(0, 50_000, ms(40.0)).above);
        assert!(!b.observe(1, 50_000, ms(40.0)).above);
        assert_eq!(
            b.observe(7, 0, ms(1.0)),
            Judgement {
                baseline: None,
                above: false
            }
        );
        assert_eq!(b.baseline(7, 0), None);
    }

    #[test]
    fn huge_factors_and_margins_saturate() {
        let c = AdaptiveConfig {
            factor: 1e300,
            margin: Duration::MAX,
            ..on()
        };
        assert_eq!(c.limit(ms(5.0)), Duration::MAX);
        let b = AdaptiveHistory::new(c, 1);
        let (j, _) = feed(&b, 0, 40, |_| ms(5.0));
        assert!(j.iter().all(|j| !j.above));
    }

    #[test]
    fn bad_settings_are_named() {
        let c = AdaptiveConfig {
            enabled: true,
            quantile: 1.0,
            factor: 0.5,
            min_samples: 0,
            ..Default::default()
        };
        let keys: Vec<_> = c
            .problems(Duration::from_secs(10))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            [
                "adaptive.quantile",
                "adaptive.factor",
                "adaptive.min_samples"
            ]
        );
        let short = AdaptiveConfig {
            enabled: true,
            window: Duration::from_secs(60),
            ..Default::default()
        };
        let p = short.problems(Duration::from_secs(10));
        assert_eq!(p.len(), 1);
        assert!(p[0].1.contains("fewer than min_samples"), "{}", p[0].1);
        assert!(AdaptiveConfig::default()
            .problems(Duration::ZERO)
            .is_empty());
    }
}
