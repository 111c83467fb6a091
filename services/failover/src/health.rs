//! Deep regional health: a score per region from the latest health events
//! of its services, and the choice of a target region.
//!
//! Each (endpoint, vantage point) keeps its latest observation. Within the
//! window, an observation counts 1 when healthy, 0.5 when a warning, 0 when
//! critical, less up to a fifth for a slow answer (the share of 200 ms it
//! took, capped at 1). A service scores the mean of its observations; the
//! region the criticality-weighted mean of its services (a service without
//! a configured criticality weighs 0.5). Candidates are ordered by score,
//! then by mean response time.

use std::collections::{BTreeMap, BTreeSet};

use rg_proto::domain::{Observation, Status};
use rg_proto::v1::RegionCandidate;

#[derive(Debug, Clone, Copy)]
struct Seen {
    status: Status,
    response_time_us: u64,
    at_ms: i64,
}

/// Latest observations of every region.
#[derive(Debug, Default)]
pub struct RegionHealth {
    /// region -> service -> "endpoint vantage" -> latest.
    seen: BTreeMap<String, BTreeMap<String, BTreeMap<String, Seen>>>,
}

/// A region's score at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// 0 (down) to 1 (fully healthy).
    pub score: f64,
    /// Mean response time of the observations counted, microseconds.
    pub avg_response_time_us: u64,
    /// Observations counted.
    pub observations: usize,
}

/// Response time at which an answer loses its full fifth, microseconds.
const SLOW_US: f64 = 200_000.0;

fn status_value(s: Status) -> f64 {
    match s {
        Status::Healthy => 1.0,
        Status::Warning => 0.5,
        Status::Critical => 0.0,
    }
}

impl RegionHealth {
    /// Takes one observation; an older one never replaces a newer.
    pub fn observe(&mut self, o: &Observation) {
        let key = format!("{} {} {}", o.endpoint, o.vantage, o.resolver);
        let seen = Seen {
            status: o.status,
            response_time_us: o.response_time.as_micros() as u64,
            at_ms: o.observed_at_unix_ms,
        };
        let slot = self
            .seen
            .entry(o.region.as_str().to_owned())
            .or_default()
            .entry(o.service.as_str().to_owned())
            .or_default()
            .entry(key)
            .or_insert(seen);
        if slot.at_ms <= seen.at_ms {
            *slot = seen;
        }
    }

    /// Regions with any observation.
    pub fn regions(&self) -> BTreeSet<String> {
        self.seen.keys().cloned().collect()
    }

    /// The score of `region` from observations no older than `since_ms`;
    /// `None` without any.
    pub fn score(
        &self,
        region: &str,
        since_ms: i64,
        criticality: &BTreeMap<String, f64>,
    ) -> Option<Score> {
        let services = self.seen.get(region)?;
        let (mut weighted, mut weights, mut rt_sum, mut n) = (0.0, 0.0, 0u128, 0usize);
        for (service, seen) in services {
            let fresh: Vec<&Seen> = seen.values().filter(|s| s.at_ms >= since_ms).collect();
            if fresh.is_empty() {
                continue;
            }
            let mean = fresh
                .iter()
                .map(|s| {
                    let slow = (s.response_time_us as f64 / SLOW_US).min(1.0);
                    status_value(s.status) * (1.0 - 0.2 * slow)
                })
                .sum::<f64>()
                / fresh.len() as f64;
            let w = criticality.get(service).copied().unwrap_or(0.5);
            weighted += w * mean;
            weights += w;
            rt_sum += fresh
                .iter()
                .map(|s| u128::from(s.response_time_us))
                .sum::<u128>();
            n += fresh.len();
        }
        if n == 0 {
            return None;
        }
        Some(Score {
            score: if weights > 0.0 {
                weighted / weights
            } else {
                0.0
            },
            avg_response_time_us: (rt_sum / n as u128) as u64,
            observations: n,
        })
    }

    /// Every region considered as a target for traffic leaving `from`, best
    /// first: eligible ones by score then response time, then the rest.
    pub fn candidates(
        &self,
        from: &str,
        regions: &BTreeSet<String>,
        since_ms: i64,
        min_score: f64,
        criticality: &BTreeMap<String, f64>,
    ) -> Vec<RegionCandidate> {
        let mut out: Vec<RegionCandidate> = regions
            .iter()
            .map(|region| {
                let score = self.score(region, since_ms, criticality);
                let (health_score, avg) = score
                    .as_ref()
                    .map_or((0.0, 0), |s| (s.score, s.avg_response_time_us));
                let (eligible, note) = if region == from {
                    (false, "the failing region".to_owned())
                } else if score.is_none() {
                    (false, "no health events within the window".to_owned())
                } else if health_score < min_score {
                    (
                        false,
                        format!("health {health_score:.2} is below the minimum {min_score:.2}"),
                    )
                } else {
                    (
                        true,
                        format!(
                            "health {health_score:.2}, {:.1} ms average",
                            avg as f64 / 1000.0
                        ),
                    )
                };
                RegionCandidate {
                    region: region.clone(),
                    health_score,
                    avg_response_time_us: avg,
                    eligible,
                    note,
                    running_capacity: -1,
                    ..Default::default()
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.eligible
                .cmp(&a.eligible)
                .then(b.health_score.total_cmp(&a.health_score))
                .then(a.avg_response_time_us.cmp(&b.avg_response_time_us))
                .then(a.region.cmp(&b.region))
        });
        out
    }
}

/// A candidate's capacity as the AWS APIs report it: each Auto Scaling
/// group (desired, InService) and ECS service (desired, running), `None`
/// when it does not exist. When all is in order (a group or service at 0
/// desired is fine: a pilot light the failover scales up), a note for the
/// plan and what runs in all (InService instances plus running tasks; -1
/// when nothing is declared); the reason it cannot take traffic otherwise.
pub fn capacity_check(
    groups: &[(String, Option<(i32, i32)>)],
    services: &[(String, Option<(i32, i32)>)],
) -> Result<(String, i64), String> {
    let mut notes = Vec::new();
    let mut running = 0i64;
    for (what, list, unit) in [("asg", groups, "InService"), ("ecs", services, "running")] {
        for (name, found) in list {
            match found {
                None => return Err(format!("{what} {name} does not exist")),
                Some((desired, have)) if have < desired => {
                    return Err(format!("{what} {name}: only {have}/{desired} {unit}"))
                }
                Some((desired, have)) => {
                    running += i64::from(*have);
                    notes.push(format!("{what} {name} {have}/{desired} {unit}"))
                }
            }
        }
    }
    if groups.is_empty() && services.is_empty() {
        running = -1;
    }
    Ok((notes.join(", "), running))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rg_proto::v1::{self, HealthEvent};

    fn obs(region: &str, service: &str, status: Status, rt_us: u64, at_ms: i64) -> Observation {
        let mut e = HealthEvent {
            region: region.into(),
            service: service.into(),
            endpoint: format!("{service}.{region}.amazonaws.com"),
            vantage: format!("{region}-a"),
            resolver: "127.0.0.1:53".into(),
            observed_at_unix_ms: at_ms,
            response_time_us: rt_us,
            round_id: 1,
            ..Default::default()
        };
        e.set_status(match status {
            Status::Healthy => v1::Status::Healthy,
            Status::Warning => v1::Status::Warning,
            Status::Critical => v1::Status::Critical,
        });
        e.set_priority(rg_proto::v1::Priority::Default);
        e.set_query_type(rg_proto::v1::QueryType::A);
        e.set_probe_kind(rg_proto::v1::ProbeKind::Dns);
        Observation::try_from(&e).expect("valid")
    }

    fn crit() -> BTreeMap<String, f64> {
        crate::config::default_criticality()
    }

    #[test]
    fn a_healthy_fast_region_scores_one_and_slowness_costs_up_to_a_fifth() {
        let mut h = RegionHealth::default();
        h.observe(&obs("a", "dynamodb", Status::Healthy, 0, 10));
        assert_eq!(h.score("a", 0, &crit()).unwrap().score, 1.0);
        h.observe(&obs("b", "dynamodb", Status::Healthy, 400_000, 10));
        assert!((h.score("b", 0, &crit()).unwrap().score - 0.8).abs() < 1e-9);
        h.observe(&obs("c", "dynamodb", Status::Warning, 0, 10));
        assert_eq!(h.score("c", 0, &crit()).unwrap().score, 0.5);
    }

    #[test]
    fn services_weigh_by_criticality_and_old_observations_do_not_count() {
        let mut h = RegionHealth::default();
        h.observe(&obs("a", "dynamodb", Status::Critical, 0, 10)); // weight 1.0
        h.observe(&obs("a", "sqs", Status::Healthy, 0, 10)); // weight 0.7
        let s = h.score("a", 0, &crit()).unwrap();
        assert!((s.score - 0.7 / 1.7).abs() < 1e-9, "{s:?}");
        assert!(h.score("a", 11, &crit()).is_none());
        assert!(h.score("nowhere", 0, &crit()).is_none());
    }

    #[test]
    fn capacity_that_is_missing_or_short_disqualifies_a_candidate() {
        let g = |n: &str, v: Option<(i32, i32)>| (n.to_owned(), v);
        assert_eq!(
            capacity_check(&[g("web", Some((2, 2)))], &[g("app/web", Some((0, 0)))]),
            Ok(("asg web 2/2 InService, ecs app/web 0/0 running".into(), 2))
        );
        assert_eq!(
            capacity_check(&[g("web", None)], &[]),
            Err("asg web does not exist".into())
        );
        assert_eq!(
            capacity_check(&[], &[g("app/web", Some((3, 1)))]),
            Err("ecs app/web: only 1/3 running".into())
        );
        assert_eq!(capacity_check(&[], &[]), Ok((String::new(), -1)));
    }

    #[test]
    fn candidates_put_the_best_eligible_region_first_and_say_why_others_are_not() {
        let mut h = RegionHealth::default();
        h.observe(&obs("us-east-1", "dynamodb", Status::Critical, 0, 10));
        h.observe(&obs("us-west-2", "dynamodb", Status::Healthy, 20_000, 10));
        h.observe(&obs("eu-west-1", "dynamodb", Status::Healthy, 5_000, 10));
        h.observe(&obs("ap-south-1", "dynamodb", Status::Warning, 5_000, 10));
        let regions: BTreeSet<String> = [
            "us-east-1",
            "us-west-2",
            "eu-west-1",
            "ap-south-1",
            "sa-east-1",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let c = h.candidates("us-east-1", &regions, 0, 0.8, &crit());
        let order: Vec<(&str, bool)> = c.iter().map(|c| (c.region.as_str(), c.eligible)).collect();
        assert_eq!(
            order,
            [
                ("eu-west-1", true),
                ("us-west-2", true),
                ("ap-south-1", false),
                ("sa-east-1", false),
                ("us-east-1", false)
            ]
        );
        assert_eq!(c[3].note, "no health events within the window");
        assert_eq!(c[4].note, "the failing region");
        assert!(c[2].note.contains("below the minimum"), "{}", c[2].note);
    }
}
