//! Background noise: what a healthy network does to answers anyway, for
//! soak tests of false alarms.
//!
//! Every query that no fault affects gets a delay drawn from a Pareto
//! distribution (a heavy tail: most answers come at about `latency`, a few
//! take tens or hundreds of times longer), and with small probabilities no
//! answer at all (a lost packet) or SERVFAIL (a resolver hiccup). A fault
//! that matches a query replaces the noise for it.

use std::time::Duration;

use serde::Deserialize;

use crate::faults::Effect;

/// `[simulator.noise]`. All zero by default: no noise.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NoiseConfig {
    /// The smallest delay added to an answer, and the scale of the tail.
    /// Default `0s` (no delay).
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// Pareto shape of the delay: P(delay > x) = (latency / x)^tail_alpha.
    /// Smaller is heavier; 1.5 gives 0.3 % of answers above 20 × latency.
    /// 0 adds exactly `latency`. Default `0`.
    pub tail_alpha: f64,
    /// No delay exceeds this. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub max_latency: Duration,
    /// Share of queries left unanswered, 0 to 1. Default `0`.
    pub loss: f64,
    /// Share of queries answered SERVFAIL, 0 to 1. Default `0`.
    pub servfail: f64,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            tail_alpha: 0.0,
            max_latency: Duration::from_secs(5),
            loss: 0.0,
            servfail: 0.0,
        }
    }
}

impl NoiseConfig {
    /// True when it changes nothing.
    pub fn is_off(&self) -> bool {
        self.latency.is_zero() && self.loss == 0.0 && self.servfail == 0.0
    }

    /// Problems with the values, as (key, message) under `noise.`.
    pub(crate) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        for (key, v) in [("noise.loss", self.loss), ("noise.servfail", self.servfail)] {
            if !(0.0..=1.0).contains(&v) {
                p.push((key, format!("{v} is outside 0..=1")));
            }
        }
        if self.loss + self.servfail > 1.0 {
            p.push(("noise.servfail", "loss + servfail exceed 1".into()));
        }
        if !(self.tail_alpha >= 0.0 && self.tail_alpha.is_finite()) {
            p.push((
                "noise.tail_alpha",
                format!("{} must be 0 or more", self.tail_alpha),
            ));
        }
        if self.max_latency > Duration::from_secs(60) {
            p.push(("noise.max_latency", "at most 60s".into()));
        }
        p
    }

    /// What the noise does to one query, given three uniform draws in
    /// [0, 1): `fate` picks loss or SERVFAIL, `size` the delay.
    pub fn effect(&self, fate: f64, size: f64) -> Option<Effect> {
        if fate < self.loss {
            return Some(Effect::Timeout);
        }
        if fate < self.loss + self.servfail {
            return Some(Effect::Servfail);
        }
        if self.latency.is_zero() {
            return None;
        }
        let delay = if self.tail_alpha > 0.0 {
            // Inverse transform: x_m / U^(1/α), U in (0, 1].
            let u = (1.0 - size).max(f64::MIN_POSITIVE);
            self.latency
                .mul_f64(u.powf(-1.0 / self.tail_alpha).min(1e6))
        } else {
            self.latency
        };
        Some(Effect::Latency {
            fixed: delay.min(self.max_latency),
            jitter: Duration::ZERO,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delay(e: Option<Effect>) -> Duration {
        match e {
            Some(Effect::Latency { fixed, .. }) => fixed,
            other => panic!("not a delay: {other:?}"),
        }
    }

    #[test]
    fn off_by_default() {
        let n = NoiseConfig::default();
        assert!(n.is_off());
        assert_eq!(n.effect(0.0, 0.5), None);
        assert!(n.problems().is_empty());
    }

    #[test]
    fn loss_then_servfail_then_delay() {
        let n = NoiseConfig {
            latency: Duration::from_millis(2),
            loss: 0.01,
            servfail: 0.02,
            ..Default::default()
        };
        assert_eq!(n.effect(0.005, 0.0), Some(Effect::Timeout));
        assert_eq!(n.effect(0.02, 0.0), Some(Effect::Servfail));
        assert_eq!(delay(n.effect(0.5, 0.9)), Duration::from_millis(2));
    }

    #[test]
    fn the_tail_follows_the_pareto_law() {
        let n = NoiseConfig {
            latency: Duration::from_millis(1),
            tail_alpha: 1.5,
            ..Default::default()
        };
        // Quantiles by inverse transform: the median is 2^(1/α) × latency,
        // and P(delay > 100 ms) = 100^-1.5 = 0.001.
        let median = delay(n.effect(0.5, 0.5)).as_secs_f64() * 1000.0;
        assert!((median - 2f64.powf(1.0 / 1.5)).abs() < 1e-6, "{median}");
        let p999 = delay(n.effect(0.5, 0.999)).as_secs_f64() * 1000.0;
        assert!((p999 - 100.0).abs() < 1e-3, "{p999}");
        assert_eq!(delay(n.effect(0.5, 0.0)), Duration::from_millis(1));
        // Capped.
        assert_eq!(
            delay(n.effect(0.5, 1.0 - 1e-12)),
            NoiseConfig::default().max_latency
        );
    }

    #[test]
    fn bad_values_are_named() {
        let n = NoiseConfig {
            loss: 1.5,
            servfail: -0.1,
            tail_alpha: f64::NAN,
            max_latency: Duration::from_secs(120),
            ..Default::default()
        };
        let keys: Vec<_> = n.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "noise.loss",
                "noise.servfail",
                "noise.servfail",
                "noise.tail_alpha",
                "noise.max_latency"
            ]
        );
    }
}
