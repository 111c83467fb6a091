//! Faults: what they match, what they do, and the table of active ones.
//!
//! A fault matches an exact name, or a region and/or a service (an empty
//! field matches any). When several match a query, the most specific wins
//! (name, then region and service, then one of them, then a fault on
//! everything); among equals, the newest. Its `probability` then decides
//! whether this query is affected (no fallback to a less specific fault).

use std::time::Duration;

use rg_proto::domain::{Region, ServiceName};
use rg_proto::v1::{FaultKind, FaultSpec};

use crate::zone::Located;

/// What a fault does to an answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Effect {
    /// Answer normally after `fixed` plus a uniform 0..`jitter`.
    Latency {
        /// Fixed delay.
        fixed: Duration,
        /// Upper bound of the random extra delay.
        jitter: Duration,
    },
    /// rcode NXDOMAIN.
    Nxdomain,
    /// rcode SERVFAIL.
    Servfail,
    /// rcode REFUSED.
    Refused,
    /// NOERROR without records: the October 2025 DynamoDB failure.
    EmptyAnswer,
    /// No answer at all.
    Timeout,
}

impl Effect {
    /// Short label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Latency { .. } => "latency",
            Self::Nxdomain => "nxdomain",
            Self::Servfail => "servfail",
            Self::Refused => "refused",
            Self::EmptyAnswer => "empty_answer",
            Self::Timeout => "timeout",
        }
    }
}

/// A fault request that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FaultError {
    /// No kind given.
    #[error(
        "the fault kind is missing (latency, nxdomain, servfail, refused, empty-answer or timeout)"
    )]
    MissingKind,
    /// A kind number the schema does not define.
    #[error("unknown fault kind {0}")]
    UnknownKind(i32),
    /// A kind name that is not one of ours.
    #[error(
        "unknown fault kind {0:?} (latency, nxdomain, servfail, refused, empty-answer or timeout)"
    )]
    UnknownKindName(String),
    /// A latency fault without any delay.
    #[error("a latency fault needs latency_ms or jitter_ms above 0")]
    NoDelay,
    /// More than a minute of delay.
    #[error("latency_ms + jitter_ms must not exceed 60000 (one minute)")]
    TooSlow,
    /// Probability outside [0, 1].
    #[error("probability {0} is outside 0..=1")]
    Probability(String),
    /// A region, service or name that is not valid.
    #[error("{field} {value:?} is not valid: {reason}")]
    BadTarget {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// Why.
        reason: String,
    },
    /// Clearing by an id that does not exist.
    #[error("no active fault has id {0:?}")]
    NoSuchId(String),
}

/// Parses a fault kind as typed by an operator: `latency`, `nxdomain`,
/// `servfail`, `refused`, `empty-answer` (or `empty_answer`, `empty`),
/// `timeout`.
pub fn parse_fault_kind(s: &str) -> Result<FaultKind, FaultError> {
    match s.to_ascii_lowercase().replace('_', "-").as_str() {
        "latency" | "slow" => Ok(FaultKind::Latency),
        "nxdomain" => Ok(FaultKind::Nxdomain),
        "servfail" => Ok(FaultKind::Servfail),
        "refused" => Ok(FaultKind::Refused),
        "empty-answer" | "empty" | "nodata" => Ok(FaultKind::EmptyAnswer),
        "timeout" | "drop" => Ok(FaultKind::Timeout),
        _ => Err(FaultError::UnknownKindName(s.to_owned())),
    }
}

/// The operator's name of a kind (`empty-answer`).
pub fn kind_name(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::Unspecified => "unspecified",
        FaultKind::Latency => "latency",
        FaultKind::Nxdomain => "nxdomain",
        FaultKind::Servfail => "servfail",
        FaultKind::Refused => "refused",
        FaultKind::EmptyAnswer => "empty-answer",
        FaultKind::Timeout => "timeout",
    }
}

/// An active fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Its id (`f1`, `f2`, ...).
    pub id: String,
    /// Region matched (`None` = any).
    pub region: Option<Region>,
    /// Service matched (`None` = any).
    pub service: Option<ServiceName>,
    /// Exact name matched (lowercase, no trailing dot).
    pub name: Option<String>,
    /// What it does.
    pub effect: Effect,
    /// Share of matching queries affected, in (0, 1].
    pub probability: f64,
    /// When it ends, unix ms.
    pub expires_at_unix_ms: Option<i64>,
    /// Queries it may still affect (`None` = no limit).
    pub remaining: Option<Budget>,
    /// Injection order (newer wins ties).
    order: u64,
}

/// How many more queries a fault may affect, shared by its copies and
/// spent under the table's read lock.
#[derive(Debug, Clone)]
pub struct Budget(std::sync::Arc<std::sync::atomic::AtomicU32>);

impl Budget {
    fn new(n: u32) -> Self {
        Self(std::sync::Arc::new(std::sync::atomic::AtomicU32::new(n)))
    }

    /// What is left.
    pub fn left(&self) -> u32 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Takes one; false when none is left.
    fn spend(&self) -> bool {
        self.0
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok()
    }
}

impl PartialEq for Budget {
    fn eq(&self, other: &Self) -> bool {
        self.left() == other.left()
    }
}

impl Fault {
    /// Validates a wire spec into a fault.
    pub fn from_spec(
        spec: &FaultSpec,
        id: String,
        order: u64,
        now_unix_ms: i64,
    ) -> Result<Self, FaultError> {
        let kind =
            FaultKind::try_from(spec.kind).map_err(|_| FaultError::UnknownKind(spec.kind))?;
        let effect = match kind {
            FaultKind::Unspecified => return Err(FaultError::MissingKind),
            FaultKind::Latency => {
                if spec.latency_ms == 0 && spec.jitter_ms == 0 {
                    return Err(FaultError::NoDelay);
                }
                if u64::from(spec.latency_ms) + u64::from(spec.jitter_ms) > 60_000 {
                    return Err(FaultError::TooSlow);
                }
                Effect::Latency {
                    fixed: Duration::from_millis(spec.latency_ms.into()),
                    jitter: Duration::from_millis(spec.jitter_ms.into()),
                }
            }
            FaultKind::Nxdomain => Effect::Nxdomain,
            FaultKind::Servfail => Effect::Servfail,
            FaultKind::Refused => Effect::Refused,
            FaultKind::EmptyAnswer => Effect::EmptyAnswer,
            FaultKind::Timeout => Effect::Timeout,
        };
        let probability = if spec.probability == 0.0 {
            1.0
        } else {
            spec.probability
        };
        if !(probability > 0.0 && probability <= 1.0) {
            return Err(FaultError::Probability(spec.probability.to_string()));
        }
        let (region, service, name) = target(spec)?;
        let expires_at_unix_ms =
            (spec.duration_ms > 0).then(|| now_unix_ms.saturating_add(spec.duration_ms as i64));
        Ok(Self {
            id,
            region,
            service,
            name,
            effect,
            probability,
            expires_at_unix_ms,
            remaining: (spec.times > 0).then(|| Budget::new(spec.times)),
            order,
        })
    }

    /// The wire form, as listed by the simulator.
    pub fn to_spec(&self) -> FaultSpec {
        let (kind, latency_ms, jitter_ms) = match self.effect {
            Effect::Latency { fixed, jitter } => (
                FaultKind::Latency,
                fixed.as_millis() as u32,
                jitter.as_millis() as u32,
            ),
            Effect::Nxdomain => (FaultKind::Nxdomain, 0, 0),
            Effect::Servfail => (FaultKind::Servfail, 0, 0),
            Effect::Refused => (FaultKind::Refused, 0, 0),
            Effect::EmptyAnswer => (FaultKind::EmptyAnswer, 0, 0),
            Effect::Timeout => (FaultKind::Timeout, 0, 0),
        };
        FaultSpec {
            region: self
                .region
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            service: self
                .service
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            name: self.name.clone().unwrap_or_default(),
            kind: kind as i32,
            latency_ms,
            jitter_ms,
            duration_ms: 0,
            probability: self.probability,
            id: self.id.clone(),
            expires_at_unix_ms: self.expires_at_unix_ms.unwrap_or(0),
            times: self.remaining.as_ref().map_or(0, Budget::left),
        }
    }

    /// How specifically this fault matches a query for `name` (located in
    /// the zone or not); `None` when it does not match.
    fn specificity(&self, name: &str, located: Option<&Located>) -> Option<u8> {
        if let Some(n) = &self.name {
            return (n == name).then_some(3);
        }
        let region_ok = self
            .region
            .as_ref()
            .is_none_or(|r| located.is_some_and(|l| &l.region == r));
        let service_ok = self
            .service
            .as_ref()
            .is_none_or(|s| located.is_some_and(|l| &l.service == s));
        if !(region_ok && service_ok) {
            return None;
        }
        Some(u8::from(self.region.is_some()) + u8::from(self.service.is_some()))
    }

    fn expired(&self, now_unix_ms: i64) -> bool {
        self.expires_at_unix_ms.is_some_and(|t| t <= now_unix_ms)
            || self.remaining.as_ref().is_some_and(|b| b.left() == 0)
    }

    /// One line for logs: `f3 us-east-1/dynamodb empty_answer`.
    pub fn describe(&self) -> String {
        let target = match &self.name {
            Some(n) => n.clone(),
            None => format!(
                "{}/{}",
                self.region.as_ref().map_or("*", Region::as_str),
                self.service.as_ref().map_or("*", ServiceName::as_str)
            ),
        };
        format!("{} {target} {}", self.id, self.effect.as_str())
    }
}

type Target = (Option<Region>, Option<ServiceName>, Option<String>);

/// The region, service and name fields of a spec, validated (empty = any).
fn target(spec: &FaultSpec) -> Result<Target, FaultError> {
    let bad = |field: &'static str, value: &str, reason: String| FaultError::BadTarget {
        field,
        value: value.to_owned(),
        reason,
    };
    let region = match spec.region.as_str() {
        "" => None,
        r => Some(Region::parse(r).map_err(|e| bad("region", r, e.to_string()))?),
    };
    let service = match spec.service.as_str() {
        "" => None,
        s => Some(ServiceName::parse(s).map_err(|e| bad("service", s, e.to_string()))?),
    };
    let name = match spec.name.trim_end_matches('.') {
        "" => None,
        n if n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }) =>
        {
            Some(n.to_ascii_lowercase())
        }
        n => return Err(bad("name", n, "not a DNS name".into())),
    };
    Ok((region, service, name))
}

/// The active faults.
#[derive(Debug, Default)]
pub struct FaultTable {
    faults: Vec<Fault>,
    injected: u64,
}

impl FaultTable {
    /// Adds a fault from a spec; returns it.
    pub fn inject(&mut self, spec: &FaultSpec, now_unix_ms: i64) -> Result<Fault, FaultError> {
        let order = self.injected + 1;
        let fault = Fault::from_spec(spec, format!("f{order}"), order, now_unix_ms)?;
        self.injected = order;
        self.faults.push(fault.clone());
        Ok(fault)
    }

    /// Removes the faults `filter` selects: by id, or by region/service/name
    /// (each empty field matching any); an all-empty filter removes every
    /// fault. Returns what was removed.
    pub fn clear(&mut self, filter: &FaultSpec) -> Result<Vec<Fault>, FaultError> {
        let removed: Vec<Fault> = if !filter.id.is_empty() {
            let Some(i) = self.faults.iter().position(|f| f.id == filter.id) else {
                return Err(FaultError::NoSuchId(filter.id.clone()));
            };
            vec![self.faults.remove(i)]
        } else {
            let (region, service, name) = target(filter)?;
            let selected = |f: &Fault| {
                region.as_ref().is_none_or(|r| f.region.as_ref() == Some(r))
                    && service
                        .as_ref()
                        .is_none_or(|s| f.service.as_ref() == Some(s))
                    && name.as_ref().is_none_or(|n| f.name.as_ref() == Some(n))
            };
            let (gone, kept) = std::mem::take(&mut self.faults)
                .into_iter()
                .partition(|f| selected(f));
            self.faults = kept;
            gone
        };
        Ok(removed)
    }

    /// Drops expired faults and returns them.
    pub fn expire(&mut self, now_unix_ms: i64) -> Vec<Fault> {
        let (gone, kept) = std::mem::take(&mut self.faults)
            .into_iter()
            .partition(|f| f.expired(now_unix_ms));
        self.faults = kept;
        gone
    }

    /// The active faults, oldest first.
    pub fn active(&self, now_unix_ms: i64) -> Vec<Fault> {
        self.faults
            .iter()
            .filter(|f| !f.expired(now_unix_ms))
            .cloned()
            .collect()
    }

    /// The effect on a query for `name`, if any. `roll` is a uniform random
    /// number in [0, 1) for the probability check.
    pub fn effect_for(
        &self,
        name: &str,
        located: Option<&Located>,
        now_unix_ms: i64,
        roll: f64,
    ) -> Option<(Effect, &str)> {
        if self.faults.is_empty() {
            return None;
        }
        let chosen = self
            .faults
            .iter()
            .filter(|f| !f.expired(now_unix_ms))
            .filter_map(|f| f.specificity(name, located).map(|s| (s, f.order, f)))
            .max_by_key(|(s, order, _)| (*s, *order))
            .map(|(_, _, f)| f)?;
        if roll >= chosen.probability {
            return None;
        }
        if let Some(budget) = &chosen.remaining {
            if !budget.spend() {
                return None; // spent by a concurrent query
            }
        }
        Some((chosen.effect, chosen.id.as_str()))
    }

    /// Number of active faults.
    pub fn len(&self) -> usize {
        self.faults.len()
    }

    /// True when no fault is active.
    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::Zone;

    fn spec(region: &str, service: &str, kind: FaultKind) -> FaultSpec {
        FaultSpec {
            region: region.into(),
            service: service.into(),
            kind: kind as i32,
            ..Default::default()
        }
    }

    fn zone() -> Zone {
        Zone::new(
            &["us-east-1".into(), "us-west-2".into()],
            &["dynamodb".into(), "ec2".into()],
            "amazonaws.com",
        )
    }

    fn effect(t: &FaultTable, name: &str) -> Option<Effect> {
        t.effect_for(name, zone().locate(name).as_ref(), 0, 0.0)
            .map(|(e, _)| e)
    }

    #[test]
    fn the_most_specific_fault_wins() {
        let mut t = FaultTable::default();
        t.inject(
            &FaultSpec {
                kind: FaultKind::Latency as i32,
                latency_ms: 30,
                ..spec("us-east-1", "", FaultKind::Latency)
            },
            0,
        )
        .unwrap();
        t.inject(&spec("us-east-1", "dynamodb", FaultKind::EmptyAnswer), 0)
            .unwrap();
        t.inject(
            &FaultSpec {
                name: "E1.DynamoDB.us-east-1.amazonaws.com.".into(),
                ..spec("", "", FaultKind::Servfail)
            },
            0,
        )
        .unwrap();
        assert_eq!(
            effect(&t, "dynamodb.us-east-1.amazonaws.com"),
            Some(Effect::EmptyAnswer)
        );
        assert_eq!(
            effect(&t, "e1.dynamodb.us-east-1.amazonaws.com"),
            Some(Effect::Servfail)
        );
        assert!(matches!(
            effect(&t, "ec2.us-east-1.amazonaws.com"),
            Some(Effect::Latency { .. })
        ));
        assert_eq!(effect(&t, "ec2.us-west-2.amazonaws.com"), None);
        // A newer fault of the same specificity takes over.
        t.inject(&spec("us-east-1", "dynamodb", FaultKind::Timeout), 0)
            .unwrap();
        assert_eq!(
            effect(&t, "dynamodb.us-east-1.amazonaws.com"),
            Some(Effect::Timeout)
        );
    }

    #[test]
    fn faults_expire_and_clear() {
        let mut t = FaultTable::default();
        let f = t
            .inject(
                &FaultSpec {
                    duration_ms: 1000,
                    ..spec("us-east-1", "ec2", FaultKind::Nxdomain)
                },
                5_000,
            )
            .unwrap();
        assert_eq!(f.expires_at_unix_ms, Some(6_000));
        assert_eq!(t.active(5_999).len(), 1);
        assert!(t.active(6_000).is_empty());
        assert_eq!(t.expire(6_000).len(), 1);
        t.inject(&spec("us-east-1", "ec2", FaultKind::Refused), 0)
            .unwrap();
        t.inject(&spec("us-west-2", "ec2", FaultKind::Refused), 0)
            .unwrap();
        let gone = t
            .clear(&FaultSpec {
                region: "us-west-2".into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(
            t.clear(&FaultSpec {
                id: "f9".into(),
                ..Default::default()
            }),
            Err(FaultError::NoSuchId("f9".into()))
        );
        assert_eq!(t.clear(&FaultSpec::default()).unwrap().len(), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn probability_selects_a_share_of_queries() {
        let mut t = FaultTable::default();
        t.inject(
            &FaultSpec {
                probability: 0.3,
                ..spec("", "ec2", FaultKind::Servfail)
            },
            0,
        )
        .unwrap();
        let name = "ec2.us-east-1.amazonaws.com";
        let located = zone().locate(name);
        assert!(t.effect_for(name, located.as_ref(), 0, 0.29).is_some());
        assert!(t.effect_for(name, located.as_ref(), 0, 0.31).is_none());
    }

    #[test]
    fn a_fault_with_times_affects_exactly_that_many_queries_then_ends() {
        let mut t = FaultTable::default();
        t.inject(
            &FaultSpec {
                times: 2,
                ..spec("", "dynamodb", FaultKind::Timeout)
            },
            0,
        )
        .unwrap();
        let name = "dynamodb.us-east-1.amazonaws.com";
        let located = zone().locate(name);
        assert_eq!(t.active(0)[0].to_spec().times, 2);
        assert!(t.effect_for(name, located.as_ref(), 0, 0.0).is_some());
        assert!(t.effect_for(name, located.as_ref(), 0, 0.0).is_some());
        assert!(t.effect_for(name, located.as_ref(), 0, 0.0).is_none());
        assert!(t.active(0).is_empty(), "spent: no longer listed");
        assert_eq!(t.expire(0).len(), 1, "and swept");
    }

    #[test]
    fn bad_specs_are_refused_with_a_reason() {
        let mut t = FaultTable::default();
        assert_eq!(
            t.inject(&spec("us-east-1", "", FaultKind::Unspecified), 0),
            Err(FaultError::MissingKind)
        );
        assert_eq!(
            t.inject(&spec("us-east-1", "", FaultKind::Latency), 0),
            Err(FaultError::NoDelay)
        );
        assert!(matches!(
            t.inject(
                &FaultSpec {
                    probability: 1.5,
                    ..spec("", "", FaultKind::Refused)
                },
                0
            ),
            Err(FaultError::Probability(_))
        ));
        assert!(matches!(
            t.inject(&spec("US EAST", "", FaultKind::Refused), 0),
            Err(FaultError::BadTarget {
                field: "region",
                ..
            })
        ));
        assert!(t.is_empty());
        assert_eq!(parse_fault_kind("empty_answer"), Ok(FaultKind::EmptyAnswer));
        assert!(parse_fault_kind("explode")
            .unwrap_err()
            .to_string()
            .contains("explode"));
    }
}
