//! Agreement across vantage points: what several probers of a region say,
//! together, about one endpoint in one round.
//!
//! Each vantage casts one vote per endpoint and round: the worst status it
//! saw for the endpoint through any of its resolvers. With `n` vantages
//! reporting and `k` required, the endpoint's status in the round is the
//! worst status `s` that at least `k` votes reach (a vote of critical also
//! counts as "at least warning"). So one prober of three seeing critical
//! does not make the endpoint critical; two do. With fewer than `k`
//! vantages reporting there is no quorum and nothing changes: silence is
//! not evidence of health.

use std::collections::BTreeMap;

use rg_proto::domain::Status;
use serde::Deserialize;

/// How many vantages must agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quorum {
    /// More than half of those reporting (1 of 1, 2 of 2, 2 of 3, 3 of 4).
    Majority,
    /// At least this many.
    AtLeast(usize),
}

impl Quorum {
    /// Votes needed when `n` vantages report.
    pub fn required(self, n: usize) -> usize {
        match self {
            Self::Majority => n / 2 + 1,
            Self::AtLeast(k) => k.max(1),
        }
    }
}

impl<'de> Deserialize<'de> for Quorum {
    /// `"majority"` or a number.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            Count(i64),
        }
        match Raw::deserialize(d)? {
            Raw::Word(w) if w == "majority" => Ok(Self::Majority),
            Raw::Count(k) if k >= 1 => Ok(Self::AtLeast(k as usize)),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "{w:?} is not \"majority\" or a number of vantages"
            ))),
            Raw::Count(k) => Err(serde::de::Error::custom(format!(
                "{k} vantages cannot form a quorum (at least 1)"
            ))),
        }
    }
}

/// What the vantages agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agreement {
    /// The status, the votes reaching it, and the vantages reporting.
    Agreed {
        /// Agreed status.
        status: Status,
        /// Votes at this status or worse (for healthy: healthy votes).
        agreeing: usize,
        /// Vantages that reported.
        reporting: usize,
    },
    /// Too few vantages reported.
    NoQuorum {
        /// Vantages that reported.
        reporting: usize,
        /// Votes needed.
        required: usize,
    },
}

/// Combines votes (one per vantage, keyed by the vantage's id).
pub fn agree<K>(votes: &BTreeMap<K, Status>, quorum: Quorum) -> Agreement {
    let n = votes.len();
    let k = quorum.required(n);
    if n == 0 || k > n {
        return Agreement::NoQuorum {
            reporting: n,
            required: k,
        };
    }
    for s in [Status::Critical, Status::Warning] {
        let c = votes.values().filter(|v| **v >= s).count();
        if c >= k {
            return Agreement::Agreed {
                status: s,
                agreeing: c,
                reporting: n,
            };
        }
    }
    let healthy = votes.values().filter(|v| **v == Status::Healthy).count();
    Agreement::Agreed {
        status: Status::Healthy,
        agreeing: healthy,
        reporting: n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    fn votes(v: &[Status]) -> BTreeMap<String, Status> {
        v.iter()
            .enumerate()
            .map(|(i, s)| (format!("v{i}"), *s))
            .collect()
    }

    fn status(v: &[Status], q: Quorum) -> Option<Status> {
        match agree(&votes(v), q) {
            Agreement::Agreed { status, .. } => Some(status),
            Agreement::NoQuorum { .. } => None,
        }
    }

    #[test]
    fn one_of_three_is_not_enough_two_are() {
        assert_eq!(
            status(&[Critical, Healthy, Healthy], Quorum::Majority),
            Some(Healthy)
        );
        assert_eq!(
            status(&[Critical, Critical, Healthy], Quorum::Majority),
            Some(Critical)
        );
        assert_eq!(
            agree(&votes(&[Critical, Critical, Healthy]), Quorum::Majority),
            Agreement::Agreed {
                status: Critical,
                agreeing: 2,
                reporting: 3
            }
        );
    }

    #[test]
    fn critical_votes_count_towards_warning() {
        assert_eq!(
            status(&[Critical, Warning, Healthy], Quorum::Majority),
            Some(Warning)
        );
        assert_eq!(status(&[Critical], Quorum::Majority), Some(Critical));
        assert_eq!(
            status(&[Critical, Healthy], Quorum::Majority),
            Some(Healthy)
        );
    }

    #[test]
    fn too_few_vantages_is_no_quorum() {
        assert_eq!(status(&[Critical], Quorum::AtLeast(2)), None);
        assert_eq!(status(&[], Quorum::Majority), None);
        assert_eq!(
            status(&[Critical, Critical, Healthy, Healthy], Quorum::AtLeast(2)),
            Some(Critical)
        );
    }

    #[test]
    fn quorum_parses_from_config() {
        #[derive(Deserialize)]
        struct C {
            q: Quorum,
        }
        assert_eq!(
            toml::from_str::<C>("q = \"majority\"").map(|c| c.q).ok(),
            Some(Quorum::Majority)
        );
        assert_eq!(
            toml::from_str::<C>("q = 2").map(|c| c.q).ok(),
            Some(Quorum::AtLeast(2))
        );
        assert!(toml::from_str::<C>("q = 0").is_err());
        assert!(toml::from_str::<C>("q = \"most\"").is_err());
    }
}
