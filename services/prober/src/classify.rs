//! The status rules of DESIGN.md: a failed lookup is critical; otherwise
//! the lookup time against the thresholds of the endpoint's priority, a
//! value exactly on a threshold belonging to the better class.

use std::time::Duration;

use rg_proto::domain::{LookupError, Priority, Status};

use crate::adaptive::Judgement;

/// One priority's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    healthy_max: Duration,
    warning_max: Duration,
}

impl Thresholds {
    /// Healthy up to `healthy_max`, warning up to `warning_max`, critical
    /// above (both inclusive).
    pub const fn new(healthy_max: Duration, warning_max: Duration) -> Self {
        Self {
            healthy_max,
            warning_max,
        }
    }
}

/// Thresholds for each priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThresholdsByPriority {
    /// For [`Priority::Default`].
    pub default: Thresholds,
    /// For [`Priority::Critical`].
    pub critical: Thresholds,
}

impl Default for ThresholdsByPriority {
    fn default() -> Self {
        Self {
            default: Thresholds::new(Duration::from_millis(100), Duration::from_millis(200)),
            critical: Thresholds::new(Duration::from_millis(50), Duration::from_millis(100)),
        }
    }
}

impl ThresholdsByPriority {
    /// How long a lookup of `priority` may take before it is critical
    /// whatever it answers (its `warning_max`).
    pub fn critical_after(&self, priority: Priority) -> Duration {
        match priority {
            Priority::Default => self.default.warning_max,
            Priority::Critical => self.critical.warning_max,
        }
    }

    /// The status of one lookup.
    pub fn classify(
        &self,
        priority: Priority,
        error: Option<LookupError>,
        response_time: Duration,
    ) -> Status {
        if error.is_some() {
            return Status::Critical;
        }
        let t = match priority {
            Priority::Default => self.default,
            Priority::Critical => self.critical,
        };
        if response_time <= t.healthy_max {
            Status::Healthy
        } else if response_time <= t.warning_max {
            Status::Warning
        } else {
            Status::Critical
        }
    }

    /// The status of one lookup with adaptive warnings: failures and
    /// lookups above the fixed `warning_max` stay critical; below that, once
    /// the endpoint has a history (`judgement.baseline`), the history
    /// decides between healthy and warning instead of `healthy_max`.
    pub fn classify_adaptive(
        &self,
        priority: Priority,
        error: Option<LookupError>,
        response_time: Duration,
        judgement: Judgement,
    ) -> Status {
        let fixed = self.classify(priority, error, response_time);
        match (fixed, judgement.baseline) {
            (Status::Critical, _) | (_, None) => fixed,
            (_, Some(_)) if judgement.above => Status::Warning,
            (_, Some(_)) => Status::Healthy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn default_priority_at_and_around_every_boundary() {
        let t = ThresholdsByPriority::default();
        let c = |d| t.classify(Priority::Default, None, d);
        assert_eq!(c(Duration::ZERO), Status::Healthy);
        assert_eq!(c(ms(100) - US), Status::Healthy);
        assert_eq!(
            c(ms(100)),
            Status::Healthy,
            "exactly 100 ms belongs to the better class"
        );
        assert_eq!(c(ms(100) + US), Status::Warning);
        assert_eq!(c(ms(200) - US), Status::Warning);
        assert_eq!(c(ms(200)), Status::Warning);
        assert_eq!(c(ms(200) + US), Status::Critical);
        assert_eq!(c(ms(5000)), Status::Critical);
    }

    #[test]
    fn critical_priority_at_and_around_every_boundary() {
        let t = ThresholdsByPriority::default();
        let c = |d| t.classify(Priority::Critical, None, d);
        assert_eq!(c(ms(50) - US), Status::Healthy);
        assert_eq!(c(ms(50)), Status::Healthy);
        assert_eq!(c(ms(50) + US), Status::Warning);
        assert_eq!(c(ms(100)), Status::Warning);
        assert_eq!(c(ms(100) + US), Status::Critical);
        // The same 150 ms is a warning for EC2 and critical for DynamoDB.
        assert_eq!(c(ms(150)), Status::Critical);
        assert_eq!(
            t.classify(Priority::Default, None, ms(150)),
            Status::Warning
        );
    }

    #[test]
    fn every_failed_lookup_is_critical_however_fast() {
        let t = ThresholdsByPriority::default();
        for e in [
            LookupError::Nxdomain,
            LookupError::Servfail,
            LookupError::Refused,
            LookupError::EmptyAnswer,
            LookupError::Timeout,
            LookupError::Io,
            LookupError::OtherRcode,
        ] {
            for p in [Priority::Default, Priority::Critical] {
                assert_eq!(t.classify(p, Some(e), US), Status::Critical, "{e} at {p:?}");
            }
        }
    }

    #[test]
    fn adaptive_history_decides_below_the_fixed_critical_threshold_only() {
        let t = ThresholdsByPriority::default();
        let known = |above| Judgement {
            baseline: Some(ms(3)),
            above,
        };
        let unknown = Judgement {
            baseline: None,
            above: false,
        };
        let c = |p, e, d, j| t.classify_adaptive(p, e, d, j);
        // A 3 ms endpoint at 60 ms: healthy by the fixed rule, a warning by
        // its own history.
        assert_eq!(
            c(Priority::Default, None, ms(60), known(true)),
            Status::Warning
        );
        // A normally-90 ms DynamoDB answer: healthy by its history.
        assert_eq!(
            c(Priority::Critical, None, ms(90), known(false)),
            Status::Healthy
        );
        // Without a history yet, the fixed rule.
        assert_eq!(
            c(Priority::Critical, None, ms(90), unknown),
            Status::Warning
        );
        // Above warning_max or failed: critical whatever the history says.
        assert_eq!(
            c(Priority::Critical, None, ms(101), known(false)),
            Status::Critical
        );
        assert_eq!(
            c(
                Priority::Default,
                Some(LookupError::EmptyAnswer),
                ms(1),
                known(false)
            ),
            Status::Critical
        );
    }

    #[test]
    fn thresholds_come_from_config() {
        let t = ThresholdsByPriority {
            default: Thresholds::new(ms(10), ms(20)),
            critical: Thresholds::new(ms(1), ms(2)),
        };
        assert_eq!(t.classify(Priority::Default, None, ms(15)), Status::Warning);
        assert_eq!(
            t.classify(Priority::Critical, None, ms(3)),
            Status::Critical
        );
    }
}
