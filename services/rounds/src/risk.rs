//! The cascade risk score of a region.
//!
//! Each service `s` of the dependency map gets a **direct failure** `d(s)`
//! in [0, 1] from its own health in the region:
//!
//! ```text
//! d(s) = w(status) × agree(s) × persist(s)
//!   w(healthy) = 0, w(warning) = 0.4, w(critical) = 1
//!   agree(s)   = vantages agreeing / vantages reporting        (quorum share)
//!   persist(s) = min(1, rounds in that status / confirm_rounds),
//!                or 1 at once for a DNS failure of an "immediate" service
//!                (DynamoDB by default)
//! ```
//!
//! Failure then spreads along the map: a service is degraded when it fails
//! itself or through any dependency ("noisy-OR"), in dependency order:
//!
//! ```text
//! g(s) = 1 - (1 - d(s)) × Π over dependencies t of s of (1 - weight(s, t) × g(t))
//! ```
//!
//! and the region's **risk** is the criticality-weighted mean degradation:
//!
//! ```text
//! R = Σ criticality(s) × g(s) / Σ criticality(s)        in [0, 1]
//! ```
//!
//! R is 0 when every service is healthy, at most 1, and never lower when
//! more is failing (every `d` larger or equal): each step is a product of
//! terms in [0, 1] that can only shrink. The tests check these properties
//! over generated maps and inputs.

use crate::dependency_map::DependencyMap;

/// The assessment of a region.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// R, 0 to 1.
    pub score: f64,
    /// g(s) per map index.
    pub degradation: Vec<f64>,
    /// Per map index: the dependency through which most degradation came
    /// (`None` for a service degraded only by itself or not at all).
    pub via: Vec<Option<usize>>,
}

/// One service expected to suffer from another's failure.
#[derive(Debug, Clone, PartialEq)]
pub struct Impact {
    /// The dependent service.
    pub service: String,
    /// Its expected degradation, 0 to 1.
    pub degradation: f64,
    /// From the failing service to it, e.g. dynamodb, ec2, elasticloadbalancing.
    pub path: Vec<String>,
}

/// Applies the formula to direct failures `direct` (per map index; missing
/// or out-of-range values are clamped to [0, 1]).
pub fn assess(map: &DependencyMap, direct: &[f64]) -> Assessment {
    let n = map.len();
    let mut degradation = vec![0.0; n];
    let mut via = vec![None; n];
    for s in 0..n {
        let d = direct
            .get(s)
            .copied()
            .filter(|v| v.is_finite())
            .unwrap_or(0.0)
            .clamp(0.0, 1.0);
        let mut healthy = 1.0 - d;
        let mut strongest = (0.0, None);
        for &(t, w) in map.deps(s) {
            let through = w * degradation[t];
            healthy *= 1.0 - through;
            if through > strongest.0 {
                strongest = (through, Some(t));
            }
        }
        degradation[s] = (1.0 - healthy).clamp(0.0, 1.0);
        if strongest.0 > 0.0 && strongest.0 >= d {
            via[s] = strongest.1;
        }
    }
    let total: f64 = (0..n).map(|s| map.criticality(s)).sum();
    let score = if total > 0.0 {
        ((0..n)
            .map(|s| map.criticality(s) * degradation[s])
            .sum::<f64>()
            / total)
            .clamp(0.0, 1.0)
    } else {
        0.0
    };
    Assessment {
        score,
        degradation,
        via,
    }
}

impl Assessment {
    /// Services hurt by others' failures (degradation above `min` and above
    /// their own direct failure), worst first, with the path it comes by.
    pub fn impacts(&self, map: &DependencyMap, direct: &[f64], min: f64) -> Vec<Impact> {
        let mut out: Vec<Impact> = (0..map.len())
            .filter(|&s| self.degradation[s] >= min && self.via[s].is_some())
            .filter(|&s| self.degradation[s] > direct.get(s).copied().unwrap_or(0.0) + 1e-9)
            .map(|s| {
                let mut path = vec![map.name(s).to_owned()];
                let mut at = s;
                while let Some(t) = self.via[at] {
                    path.push(map.name(t).to_owned());
                    at = t;
                }
                path.reverse();
                Impact {
                    service: map.name(s).to_owned(),
                    degradation: self.degradation[s],
                    path,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.degradation
                .total_cmp(&a.degradation)
                .then(a.service.cmp(&b.service))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::dependency_map::{default_map, ServiceSpec};

    fn default() -> DependencyMap {
        DependencyMap::build(&default_map()).unwrap()
    }

    fn direct(map: &DependencyMap, failing: &[(&str, f64)]) -> Vec<f64> {
        let mut d = vec![0.0; map.len()];
        for (s, v) in failing {
            d[map.index_of(s).unwrap()] = *v;
        }
        d
    }

    #[test]
    fn dynamodb_down_hurts_its_dependents_through_the_map() {
        let m = default();
        let d = direct(&m, &[("dynamodb", 1.0)]);
        let a = assess(&m, &d);
        assert!(a.score > 0.5 && a.score < 0.6, "{}", a.score);
        let impacts = a.impacts(&m, &d, 0.05);
        let names: Vec<&str> = impacts.iter().map(|i| i.service.as_str()).collect();
        for s in ["ec2", "elasticloadbalancing", "lambda", "ecs", "sts", "rds"] {
            assert!(names.contains(&s), "{s} missing from {names:?}");
        }
        assert!(!names.contains(&"s3") && !names.contains(&"dynamodb"));
        let elb = impacts
            .iter()
            .find(|i| i.service == "elasticloadbalancing")
            .unwrap();
        assert_eq!(elb.path, ["dynamodb", "ec2", "elasticloadbalancing"]);
    }

    #[test]
    fn a_slow_ec2_is_a_moderate_risk() {
        let m = default();
        let a = assess(&m, &direct(&m, &[("ec2", 0.4)]));
        assert!(a.score > 0.1 && a.score < 0.25, "{}", a.score);
        assert_eq!(assess(&m, &vec![0.0; m.len()]).score, 0.0);
    }

    /// A random DAG: service i may depend on any j < i.
    fn arb_map() -> impl Strategy<Value = DependencyMap> {
        (1usize..10).prop_flat_map(|n| {
            (
                proptest::collection::vec(0.0f64..=1.0, n),
                proptest::collection::vec(
                    proptest::collection::vec(proptest::option::of(0.0f64..=1.0), n),
                    n,
                ),
            )
                .prop_map(move |(crit, edges)| {
                    let specs: BTreeMap<String, ServiceSpec> = (0..n)
                        .map(|i| {
                            let deps = (0..i)
                                .filter_map(|j| edges[i][j].map(|w| (format!("s{j:02}"), w)))
                                .collect();
                            (
                                format!("s{i:02}"),
                                ServiceSpec {
                                    criticality: crit[i],
                                    depends_on: deps,
                                },
                            )
                        })
                        .collect();
                    DependencyMap::build(&specs).unwrap()
                })
        })
    }

    proptest! {
        #[test]
        fn bounded_zero_when_healthy_and_monotone(
            map in arb_map(),
            base in proptest::collection::vec(0.0f64..=1.0, 10),
            bump in proptest::collection::vec(0.0f64..=1.0, 10),
        ) {
            let n = map.len();
            let d: Vec<f64> = base[..n].to_vec();
            let more: Vec<f64> = d.iter().zip(&bump).map(|(a, b)| (a + b).min(1.0)).collect();
            let a = assess(&map, &d);
            let b = assess(&map, &more);
            prop_assert!((0.0..=1.0).contains(&a.score));
            prop_assert!((0.0..=1.0).contains(&b.score));
            prop_assert!(b.score >= a.score - 1e-12, "more failing lowered the score: {} -> {}", a.score, b.score);
            for s in 0..n {
                prop_assert!(b.degradation[s] >= a.degradation[s] - 1e-12);
            }
            prop_assert_eq!(assess(&map, &vec![0.0; n]).score, 0.0);
        }
    }
}
