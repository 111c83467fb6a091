//! The `[rounds]` section: how rounds are judged, shared by every service
//! that judges them (the detector, the cascade service) and by the
//! dashboard gateway's quorum, so they cannot disagree.

use std::time::Duration;

use rg_bus::{Problems, Validate};
use serde::Deserialize;

use crate::{Quorum, RoundTiming};

/// The `[rounds]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RoundSettings {
    /// Vantages that must agree: `"majority"` of those reporting, or a
    /// number. Default `"majority"`.
    pub quorum: Quorum,
    /// A round not complete by itself is decided once the next round has
    /// been arriving for this long. Default `2s`.
    #[serde(with = "humantime_serde")]
    pub settle: Duration,
    /// ... or this long after its first event at the latest. Default `60s`.
    #[serde(with = "humantime_serde")]
    pub round_timeout: Duration,
    /// Once a majority of vantages confirmed a failure, wait at most this
    /// long for lookups and re-probes still on their way before deciding
    /// the round (a round is decided at once when nothing more is on its
    /// way). Longer than the probers' `timeout` plus `(confirm.count - 1)
    /// x confirm.spacing`. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub confirmed_wait: Duration,
    /// Rounds older than this (a backlog after downtime) update state
    /// without alerting. Default `10m`.
    #[serde(with = "humantime_serde")]
    pub quiet_older_than: Duration,
    /// A new durable consumer starts this far back in the health stream.
    /// Default `1m`.
    #[serde(with = "humantime_serde")]
    pub start_lookback: Duration,
    /// Health events held unacknowledged at most per consumer (rounds not
    /// yet decided). Default `100000`.
    pub max_pending: i64,
}

impl Default for RoundSettings {
    fn default() -> Self {
        let timing = RoundTiming::default();
        Self {
            quorum: Quorum::Majority,
            settle: timing.settle,
            round_timeout: timing.round_timeout,
            confirmed_wait: timing.confirmed_wait,
            quiet_older_than: Duration::from_secs(10 * 60),
            start_lookback: Duration::from_secs(60),
            max_pending: 100_000,
        }
    }
}

impl RoundSettings {
    /// When a round book decides.
    pub fn timing(&self) -> RoundTiming {
        RoundTiming {
            settle: self.settle,
            round_timeout: self.round_timeout,
            confirmed_wait: self.confirmed_wait,
        }
    }

    /// How long a consumer's events may stay unacknowledged: a round, plus
    /// settle, plus slack.
    pub fn ack_wait(&self) -> Duration {
        self.round_timeout + Duration::from_secs(30)
    }
}

impl Validate for RoundSettings {
    fn validate(&self, p: &mut Problems) {
        if self.settle.is_zero() {
            p.push("settle", "must be greater than zero");
        }
        if self.round_timeout < self.settle {
            p.push("round_timeout", "must not be shorter than settle");
        }
        if self.confirmed_wait.is_zero() {
            p.push("confirmed_wait", "must be greater than zero");
        }
        if self.max_pending < 1 {
            p.push("max_pending", "must be at least 1");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_setting_is_named() {
        let s = RoundSettings {
            settle: Duration::ZERO,
            round_timeout: Duration::ZERO,
            confirmed_wait: Duration::ZERO,
            max_pending: 0,
            ..Default::default()
        };
        let mut p = Problems::default();
        s.validate(&mut p);
        let keys: Vec<&str> = p.list().iter().map(|x| x.key.as_str()).collect();
        assert_eq!(keys, ["settle", "confirmed_wait", "max_pending"]);
        let mut ok = Problems::default();
        RoundSettings::default().validate(&mut ok);
        assert!(ok.is_empty(), "{:?}", ok.list());
    }

    #[test]
    fn the_section_reads_from_toml() {
        let s: RoundSettings = toml::from_str("quorum = 2\nsettle = \"500ms\"").expect("toml");
        assert_eq!(s.quorum, Quorum::AtLeast(2));
        assert_eq!(s.settle, Duration::from_millis(500));
        assert_eq!(s.round_timeout, Duration::from_secs(60));
    }
}
